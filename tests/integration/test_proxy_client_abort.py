"""A client that goes away while its request is proxied: the upstream connection is closed at once and
the request is logged with 499, as nginx does; with proxy_ignore_client_abort the upstream request is
let finish (and its connection kept for the next request)."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_basic import request
from tests.integration.test_proxy_origin import (
    Origin,
    origin_fixture,  # noqa: F401  (the `origin` fixture)
    proxy_config,
)


def start(pyginx: Pyginx, origin: Origin, extra: str = "") -> None:
    ups = f"app:\n  servers:\n    - {origin.addr}\n  keepalive: 4\n"
    locations = f"- location: /\n  proxy_pass: http://app\n{extra}"
    pyginx.write_config(proxy_config(pyginx.port, upstreams=ups, locations=locations))
    pyginx.start()


def send_then_vanish(port: int, path: str, origin: Origin, read_head: bool = False) -> float:
    """Send a request, wait until the origin has it (and, with read_head, until the response head
    arrived), then reset the connection. Returns when the client went away (time.monotonic())."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        wait_for(lambda: origin.seen(path.partition("?")[0]), 5, "the origin to get the request")
        if read_head:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, "closed before the head"
                data += chunk
        # SO_LINGER 0: close() resets the connection, so the server sees it lost at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return time.monotonic()
    finally:
        s.close()


def access_line(pyginx: Pyginx, path: str) -> str:
    log = Path(pyginx.prefix / "logs" / "access.log")

    def line() -> str | None:
        text = log.read_text() if log.exists() else ""
        found = [ln for ln in text.splitlines() if f'"GET {path} HTTP/1.1"' in ln]
        return found[-1] if found else None

    found: str = wait_for(line, 5, f"the access log line of {path}")
    return found


def test_client_gone_while_waiting_for_the_head_closes_the_upstream(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    gone = send_then_vanish(pyginx.port, "/hold?delay=10", origin)
    wait_for(lambda: origin.aborted, 3, "the upstream connection to be closed")
    assert origin.aborted[0] - gone < 2.0  # at once, not when the upstream answers
    entry = access_line(pyginx, "/hold?delay=10")
    # nginx's $upstream_status is "-" (no answer came) but the time spent waiting is there
    assert '" 499 ' in entry and 'us="-"' in entry and 'urt="0.' in entry, entry
    wait_for(
        lambda: (
            "client prematurely closed connection, so upstream connection is closed too "
            "while reading response header from upstream" in pyginx.error_log()
        ),
        5,
        "the error log line",
    )
    assert "[error]" not in pyginx.error_log()  # info, as nginx: not the upstream's fault
    # the server is unharmed and the balancer's connection count was given back
    assert request(pyginx.port, "/after")[0] == 200
    pyginx.check_log()


def test_client_gone_during_the_body_closes_the_upstream(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    gone = send_then_vanish(pyginx.port, "/hold?delay=10&partial=1", origin, read_head=True)
    wait_for(lambda: origin.aborted, 3, "the upstream connection to be closed")
    assert origin.aborted[0] - gone < 2.0
    entry = access_line(pyginx, "/hold?delay=10&partial=1")
    assert '" 200 ' in entry, entry  # the head went out with 200: nginx logs what it sent
    assert request(pyginx.port, "/after")[0] == 200
    pyginx.check_log()


def test_ignore_client_abort_lets_the_upstream_request_finish(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin, extra="  proxy_ignore_client_abort: true\n")
    send_then_vanish(pyginx.port, "/hold?delay=1", origin)
    entry = access_line(pyginx, "/hold?delay=1")  # written once the upstream answered, after 1 s
    assert origin.aborted == []
    assert '" 200 ' in entry and 'us="200"' in entry, entry
    # the response was read whole, so the connection went back to the pool and serves the next one
    assert request(pyginx.port, "/after")[0] == 200
    assert origin.connections == 1
    pyginx.check_log()
