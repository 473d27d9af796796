"""Failures stay contained: dead, silent, resetting and malformed upstreams; proxy_next_upstream with
nginx's conditions; truncated responses; non-idempotent requests never sent twice; error_page."""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_basic import request
from tests.integration.test_proxy_origin import (
    Origin,
    origins_fixture,  # noqa: F401  (the `origins` fixture)
    proxy_config,
)


def ups(name: str, *addrs: str, extra: str = "") -> str:
    lines = "\n".join(f"    - {a}" for a in addrs)
    return f"{name}:\n  servers:\n{lines}\n{extra}"


def loc(path: str, target: str, extra: str = "") -> str:
    return f"- location: {path}\n  proxy_pass: {target}\n{extra}\n"


def raw_get(port: int, path: str, timeout: float = 5.0) -> tuple[bytes, bytes, bool]:
    """GET over a raw socket: (head, body bytes received, whether the server closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head, body, closed


# ------------------------------------------------------------------------------------------ dead servers


def test_dead_server_is_skipped_and_traffic_moves(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    dead = f"127.0.0.1:{free_port()}"
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups("app", dead, a.addr), locations=loc("/", "http://app"))
    )
    pyginx.start()
    results = [request(pyginx.port, f"/d{i}")[0] for i in range(10)]
    assert results == [200] * 10
    assert len(a.seen("/d")) == 10
    log = pyginx.error_log()
    assert log.count("connect() failed (111: Connection refused) while connecting to upstream") == 1
    assert f'upstream: "http://{dead}/d' in log
    assert "upstream server temporarily disabled while connecting to upstream" in log


def test_everything_dead_gives_502(pyginx: Pyginx) -> None:
    d1, d2 = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups("app", d1, d2), locations=loc("/", "http://app"))
    )
    pyginx.start()
    assert request(pyginx.port, "/x")[0] == 502
    assert request(pyginx.port, "/y")[0] == 502
    log = pyginx.error_log()
    assert log.count("connect() failed (111: Connection refused)") == 2
    assert "no live upstreams while connecting to upstream" in log


def test_single_dead_server_is_retried_every_time(pyginx: Pyginx) -> None:
    dead = f"127.0.0.1:{free_port()}"
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups("app", dead), locations=loc("/", "http://app"))
    )
    pyginx.start()
    assert [request(pyginx.port, "/x")[0] for _ in range(3)] == [502] * 3
    log = pyginx.error_log()
    assert log.count("connect() failed") == 3  # a lone server is never marked down
    assert "no live upstreams" not in log


def test_backup_only_when_primaries_are_down(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    servers = f"app:\n  servers:\n    - {a.addr}\n    - {b.addr} backup\n"
    pyginx.write_config(proxy_config(pyginx.port, upstreams=servers, locations=loc("/", "http://app")))
    pyginx.start()
    for i in range(4):
        assert request(pyginx.port, f"/p{i}")[0] == 200
    assert len(a.seen("/p")) == 4 and not b.seen("/p")
    a.reset_all = True
    assert request(pyginx.port, "/q")[0] == 200  # a resets: the backup answers
    assert len(b.seen("/q")) == 1


# ------------------------------------------------------------------------------------------ timeouts


def test_silent_upstream_gives_504_within_the_timeout(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    pyginx.write_config(
        proxy_config(pyginx.port, locations=loc("/", f"http://{a.addr}", "  proxy_read_timeout: 1s"))
    )
    pyginx.start()
    t0 = time.monotonic()
    status, _, _ = request(pyginx.port, "/slow-head?delay=10")
    elapsed = time.monotonic() - t0
    assert status == 504
    assert 0.9 <= elapsed < 3.0
    assert "upstream timed out (110: Connection timed out) while reading response header from upstream" in (
        pyginx.error_log()
    )


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address whose connect() hangs: a listening socket whose tiny accept queue is full."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for c in fillers:
            c.close()
        srv.close()


def test_connect_timeout_gives_504(pyginx: Pyginx, blackhole: str) -> None:
    pyginx.write_config(
        proxy_config(pyginx.port, locations=loc("/", f"http://{blackhole}", "  proxy_connect_timeout: 1s"))
    )
    pyginx.start()
    t0 = time.monotonic()
    assert request(pyginx.port, "/c")[0] == 504
    assert 0.9 <= time.monotonic() - t0 < 3.0
    assert "upstream timed out (110: Connection timed out) while connecting to upstream" in pyginx.error_log()


def test_connect_timeout_moves_to_the_next_server(
    pyginx: Pyginx, blackhole: str, origins: list[Origin]
) -> None:
    a = origins[0]
    servers = ups("app", blackhole, a.addr)
    pyginx.write_config(
        proxy_config(
            pyginx.port, upstreams=servers, locations=loc("/", "http://app", "  proxy_connect_timeout: 500ms")
        )
    )
    pyginx.start()
    assert [request(pyginx.port, f"/n{i}")[0] for i in range(4)] == [200] * 4
    assert len(a.seen("/n")) == 4


def test_slow_body_after_headers_is_truncated(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    pyginx.write_config(
        proxy_config(pyginx.port, locations=loc("/", f"http://{a.addr}", "  proxy_read_timeout: 1s"))
    )
    pyginx.start()
    head, body, closed = raw_get(pyginx.port, "/slow-body?delay=5")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 1000" in head
    assert len(body) == 500 and closed  # truncated and closed, never complete
    assert "upstream timed out (110: Connection timed out) while reading upstream" in pyginx.error_log()


def test_slow_upstream_does_not_block_other_requests(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups("app", a.addr), locations=loc("/", "http://app"))
    )
    pyginx.start()
    slow: list[int] = []
    t = threading.Thread(target=lambda: slow.append(request(pyginx.port, "/slow-head?delay=2")[0]))
    t.start()
    wait_for(lambda: a.seen("/slow-head"), 5, "the slow request to reach the origin")
    for i in range(5):
        t0 = time.monotonic()
        assert request(pyginx.port, f"/fast{i}")[0] == 200
        assert time.monotonic() - t0 < 1.0
    t.join(10)
    assert slow == [200]


# ------------------------------------------------------------------------------------------ bad answers


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/reset",
            "recv() failed (104: Connection reset by peer) while reading response header from upstream",
        ),
        ("/close", "upstream prematurely closed connection while reading response header from upstream"),
        ("/raw?r=cl-te", 'upstream sent "Content-Length" and "Transfer-Encoding" headers at the same time'),
        ("/raw?r=dup-cl", "upstream sent duplicate header line"),
        ("/raw?r=bad-cl", 'upstream sent invalid "Content-Length" header'),
        ("/raw?r=bad-te", 'upstream sent unknown "Transfer-Encoding"'),
        ("/raw?r=bad-status", "upstream sent no valid HTTP/1.0 header"),
        ("/raw?r=garbage", "upstream sent no valid HTTP/1.0 header"),
        ("/raw?r=bad-header", "upstream sent invalid header"),
        ("/raw?r=huge-header", "upstream sent too big header while reading response header from upstream"),
    ],
)
def test_bad_upstream_answers_give_502(
    pyginx: Pyginx, origins: list[Origin], path: str, message: str
) -> None:
    a = origins[0]
    pyginx.write_config(proxy_config(pyginx.port, locations=loc("/", f"http://{a.addr}")))
    pyginx.start()
    status, _, body = request(pyginx.port, path)
    assert status == 502, body
    assert message in pyginx.error_log()
    assert request(pyginx.port, "/after")[0] == 200  # the worker is fine


@pytest.mark.parametrize("path", ["/truncate", "/truncate?chunked=1", "/raw?r=bad-chunk"])
def test_response_cut_short_reaches_the_client_truncated(
    pyginx: Pyginx, origins: list[Origin], path: str
) -> None:
    a = origins[0]
    pyginx.write_config(proxy_config(pyginx.port, locations=loc("/", f"http://{a.addr}")))
    pyginx.start()
    head, body, closed = raw_get(pyginx.port, path)
    assert head.startswith(b"HTTP/1.1 200")
    assert closed
    if b"Content-Length: 100" in head:
        assert len(body) < 100
    else:
        assert b"Transfer-Encoding: chunked" in head
        assert not body.endswith(b"0\r\n\r\n")  # never a complete chunked body
    # http.client refuses it as incomplete
    with pytest.raises(http.client.IncompleteRead):
        request(pyginx.port, path)


# ------------------------------------------------------------------------------------------ next upstream


def test_next_upstream_on_status(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    a.status_override = 502
    locations = loc("/retry/", "http://app", "  proxy_next_upstream: error timeout http_502") + loc(
        "/plain/", "http://app"
    )
    pyginx.write_config(proxy_config(pyginx.port, upstreams=ups("app", a.addr, b.addr), locations=locations))
    pyginx.start()
    plain = [request(pyginx.port, f"/plain/{i}") for i in range(2)]
    # without http_502 the upstream's 502 goes to the client as it is (and counts as no failure)
    assert sorted(r[0] for r in plain) == [200, 502]
    assert next(r for r in plain if r[0] == 502)[2] == b"status 502 from a"
    for i in range(4):
        assert request(pyginx.port, f"/retry/{i}")[0] == 200
    # a's 502 was retried on b, and a is now skipped for fail_timeout
    assert len(a.seen("/retry/")) == 1 and len(b.seen("/retry/")) == 4


def test_non_idempotent_request_is_not_sent_twice(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    a.reset_all = True
    locations = loc("/once/", "http://app") + loc(
        "/twice/", "http://app", "  proxy_next_upstream: error timeout non_idempotent"
    )
    pyginx.write_config(
        proxy_config(
            pyginx.port,
            upstreams=ups("app", a.addr, b.addr, extra="  keepalive: 0"),
            locations=locations,
        )
    )
    pyginx.start()
    posts = [request(pyginx.port, "/once/p", method="POST", body=b"data")[0] for _ in range(2)]
    # one of the two POSTs went to a, which reset it: 502, and b never saw that POST
    assert sorted(posts) == [200, 502]
    assert len(a.seen("/once/")) == 1 and len(b.seen("/once/")) == 1
    # a GET is retried on the next server
    assert request(pyginx.port, "/once/g")[0] == 200
    # with non_idempotent, the POST is retried too
    a.requests.clear()
    b.requests.clear()
    results = [request(pyginx.port, "/twice/p", method="POST", body=b"data")[0] for _ in range(2)]
    assert results == [200, 200]


def test_next_upstream_tries(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    a.reset_all = True
    b.reset_all = True
    c = Origin("c").start()
    try:
        locations = loc("/", "http://app", "  proxy_next_upstream_tries: 2")
        servers = ups("app", a.addr, b.addr, c.addr, extra="  keepalive: 0")
        pyginx.write_config(proxy_config(pyginx.port, upstreams=servers, locations=locations))
        pyginx.start()
        status, _, _ = request(pyginx.port, "/t")
        # the first two servers reset, and only two tries are allowed: c is never asked
        assert status == 502
        assert len(a.seen("/t")) + len(b.seen("/t")) == 2 and not c.seen("/t")
    finally:
        c.stop()


def test_post_on_a_dropped_pooled_connection_reaches_the_upstream_at_most_once(
    pyginx: Pyginx, origins: list[Origin]
) -> None:
    a = origins[0]
    a.drop_reused = True  # the origin gives up a kept-alive connection as the next request arrives
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups("app", a.addr), locations=loc("/", "http://app"))
    )
    pyginx.start()
    assert request(pyginx.port, "/warm")[0] == 200
    status, _, _ = request(pyginx.port, "/post", method="POST", body=b"once")
    assert len(a.seen("/post")) <= 1
    assert status in (200, 502)
    # a GET that meets a dropped pooled connection is sent again on a fresh one, transparently
    assert request(pyginx.port, "/warm2")[0] == 200
    assert request(pyginx.port, "/get")[0] == 200
    assert 1 <= len(a.seen("/get")) <= 2


# ------------------------------------------------------------------------------------------ error pages


def test_intercept_errors_with_error_page(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = f"""
- location: /i/
  proxy_pass: http://{a.addr}/
  proxy_intercept_errors: true
  error_page: {{404: /custom404, 502: /custom502}}
- location: /n/
  proxy_pass: http://{a.addr}/
- location: = /custom404
  return: 404 custom not found
- location: = /custom502
  return: 502 custom bad gateway
"""
    pyginx.write_config(proxy_config(pyginx.port, locations=locations))
    pyginx.start()
    status, _, body = request(pyginx.port, "/i/status?code=404")
    assert (status, body) == (404, b"custom not found")
    status, _, body = request(pyginx.port, "/i/status?code=500")  # no error_page for 500: passed through
    assert (status, body) == (500, b"status 500 from a")
    status, _, body = request(pyginx.port, "/n/status?code=404")
    assert (status, body) == (404, b"status 404 from a")
    # a 502 of pyginx's own (the upstream reset) also goes through error_page
    status, _, body = request(pyginx.port, "/i/reset")
    assert status == 502


def test_error_log_lines_have_nginx_context(pyginx: Pyginx) -> None:
    dead = f"127.0.0.1:{free_port()}"
    pyginx.write_config(proxy_config(pyginx.port, locations=loc("/", f"http://{dead}")))
    pyginx.start()
    request(pyginx.port, "/ctx?a=1", headers={"Host": "example.test"})
    line = next(ln for ln in pyginx.error_log().splitlines() if "connect() failed" in ln)
    assert re.search(
        r"\[error\] \d+#\d+: \*\d+ connect\(\) failed \(111: Connection refused\) while connecting to upstream, "
        r'client: 127\.0\.0\.1, server: localhost, request: "GET /ctx\?a=1 HTTP/1\.1", '
        rf'upstream: "http://{re.escape(dead)}/ctx\?a=1", host: "example\.test"',
        line,
    ), line
