"""Issue 12: connection floods and slow clients against the real daemon.

A full connection table must not lock everyone out: idle keep-alive and silent connections are
reused as nginx's ngx_drain_connections does, and a worker with no slot left stops accepting so that
its sibling takes the next clients. Slow clients are bounded by their timeouts. Every loop is
bounded in count and time."""

from __future__ import annotations

import socket
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
