"""Issue 12: connection floods and slow clients against the real daemon.

A full connection table must not lock everyone out: idle keep-alive and silent connections are
reused as nginx's ngx_drain_connections does, and a worker with no slot left stops accepting so that
its sibling takes the next clients. Slow clients are bounded by their timeouts. Every loop is
bounded in count and time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.harness import Pyginx, basic_config, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.rawhttp import read_response

GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


@contextmanager
def held(port: int, count: int, first: bytes = b"", answered: bool = False) -> Iterator[list[socket.socket]]:
    """`count` connections kept open: silent, a partial head (`first`), or idle after a response."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            if first:
                s.sendall(first)
            if answered:
                assert read_response(s)[0] == 200
        yield socks
    finally:
        for s in socks:
            s.close()


def fresh_get(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return read_response(s)[0]


def test_full_table_of_idle_keepalive_connections_is_reused(pyginx: Pyginx) -> None:
    """Issue 12 item 2: with every slot held by an idle keep-alive connection, new clients are
    served (nginx closes the oldest idle ones) instead of being reset."""
    pyginx.write_config(
        basic_config(pyginx.port, workers=1).replace("worker_connections: 256", "worker_connections: 32")
    )
    pyginx.start()
    with held(pyginx.port, 32, first=GET, answered=True):
        assert [fresh_get(pyginx.port) for _ in range(10)] == [200] * 10
    wait_for(
        lambda: "worker_connections are not enough, reusing connections" in pyginx.error_log() or None,
        5,
        "warn",
    )
    assert "[alert]" not in pyginx.error_log()


def test_full_table_of_silent_connections_is_reused(pyginx: Pyginx) -> None:
    pyginx.write_config(
        basic_config(pyginx.port, workers=1).replace("worker_connections: 256", "worker_connections: 32")
    )
    pyginx.start()
    with held(pyginx.port, 40):
        assert [fresh_get(pyginx.port) for _ in range(10)] == [200] * 10


def test_full_worker_stops_accepting_so_its_sibling_serves(pyginx: Pyginx) -> None:
    """Issue 12 item 2: connections in the middle of a head cannot be reused; once one worker is
    full its sibling must take every new client (it kept accepting and resetting them)."""
    pyginx.write_config(
        basic_config(pyginx.port, workers=2).replace("worker_connections: 256", "worker_connections: 16")
    )
    master = pyginx.start(workers=2)
    partial = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
    with held(pyginx.port, 22, first=partial):
        # (the accept queue is FIFO: the held connections are taken before these)
        got = [fresh_get(pyginx.port) for _ in range(8)]
    assert got == [200] * 8
    assert len(pyginx.workers(master)) == 2


def _short_timeouts(port: int) -> str:
    text = basic_config(port, workers=1, http="lingering_timeout: 1s")
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        text = text.replace(f"{name}: 5s", f"{name}: 1s")
    return text.replace("access_log: logs/access.log", "access_log: logs/access.log combined")


def _wait_closed(s: socket.socket, limit: float) -> float:
    """Seconds until the server closed `s` (reading and dropping what it sends), at most `limit`."""
    t0 = time.monotonic()
    s.settimeout(limit)
    try:
        while s.recv(65536):
            pass
    except (TimeoutError, ConnectionResetError):
        pass
    return time.monotonic() - t0


def test_slow_clients_time_out_with_nginx_log_lines(pyginx: Pyginx) -> None:
    """Issue 12 item 6: header timeouts are logged with nginx's messages, and a request whose head
    timed out gets its 408 access-log line (nginx writes one; a connection that sent nothing gets none)."""
    pyginx.write_config(_short_timeouts(pyginx.port))
    pyginx.start()
    sends = [b"", b"GET /slow-line", b"GET /slow-head HTTP/1.1\r\nHost: localhost\r\nX-A: b"]
    socks = [socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) for _ in sends]
    try:
        for s, data in zip(socks, sends, strict=True):
            if data:
                s.sendall(data)
        for s in socks:
            assert _wait_closed(s, 4.0) < 3.5
    finally:
        for s in socks:
            s.close()
    log = pyginx.error_log()
    timed_out = "client timed out (110: Connection timed out)"
    wait_for(
        lambda: f"{timed_out} while reading client request headers" in pyginx.error_log() or None, 5, "log"
    )
    log = pyginx.error_log()
    assert f"{timed_out} while waiting for request, client: 127.0.0.1, server: 127.0.0.1:{pyginx.port}" in log
    assert (
        f'{timed_out} while reading client request line, client: 127.0.0.1, server: localhost, request: "GET /slow-line"'
        in log
    )
    assert 'request: "GET /slow-head HTTP/1.1", host: "localhost"' in log

    def access() -> str | None:
        text = (pyginx.prefix / "logs" / "access.log").read_text()
        return text if text.count(" 408 0 ") >= 2 else None

    text = wait_for(access, 5, "408 lines")  # flushed by the worker's log buffer
    assert '"GET /slow-line" 408 0 "-" "-"' in text
    assert '"GET /slow-head HTTP/1.1" 408 0 "-" "-"' in text
    assert text.count(" 408 ") == 2


def test_early_answer_with_stalled_body_closes_after_lingering_timeout(pyginx: Pyginx) -> None:
    """Issue 12 item 6: a request answered before its body came (405, `return`) while the client
    stalls mid-body: nginx discards for lingering_timeout, then closes (pyginx kept it for
    keepalive_timeout)."""
    pyginx.write_config(_short_timeouts(pyginx.port))
    pyginx.start()
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n0123456789")
        assert read_response(s)[0] == 200
        assert _wait_closed(s, 6.0) < 3.0  # lingering_timeout 1s (+ the 0.25 s sweep), not keepalive's 5 s


def test_body_sent_whole_after_early_answer_keeps_the_connection(pyginx: Pyginx) -> None:
    pyginx.write_config(_short_timeouts(pyginx.port))
    pyginx.start()
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n0123456789")
        assert read_response(s)[0] == 200
        s.sendall(b"0123456789" + GET)
        assert read_response(s)[0] == 200


def test_client_that_stops_reading_is_closed_after_send_timeout(pyginx: Pyginx) -> None:
    """A slow reader: send_timeout closes it, logged as nginx logs it; the worker stays."""
    pyginx.write_config(_short_timeouts(pyginx.port).replace("return: 200 ok", "root: html"))
    (pyginx.prefix / "html").mkdir(exist_ok=True)
    (pyginx.prefix / "html" / "big.bin").write_bytes(b"x" * (16 << 20))
    master = pyginx.start()
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.recv(100)

        def logged() -> bool | None:
            return "while sending response to client" in pyginx.error_log() or None

        wait_for(logged, 8, "send timeout")
    assert fresh_get(pyginx.port) in (200, 403, 404)
    assert len(pyginx.workers(master)) == 1
