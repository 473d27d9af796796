"""Hostile clients against the running daemon (one worker, short timeouts): slowloris headers, a body
dribbled slower than client_body_timeout, thousands of idle connections, garbage bytes, half-closed
sockets with a request in flight, a client that never reads a large response (send_timeout).

After each: the worker is the same process (no crash, no respawn), other clients are served
meanwhile, the worker's sockets drop back to where they were (resources released), and the error log
has no traceback and no alert (checked by the fixture)."""

from __future__ import annotations

import os
import random
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.rawhttp import read_response, read_until_close

BIG = 32 * 1024 * 1024


def _config(port: int) -> str:
    return f"""
worker_processes: 1
worker_rlimit_nofile: 8192
error_log: logs/error.log info
events:
  worker_connections: 4096
http:
  access_log: logs/access.log
  keepalive_timeout: 2s
  client_header_timeout: 1s
  client_body_timeout: 1s
  send_timeout: 1s
  lingering_timeout: 1s
  client_max_body_size: 10m
  servers:
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: html
      locations:
        - location: /
        - {{location: = /ok, return: 200 ok}}
        - location: /up/
          proxy_pass: http://127.0.0.1:{port}/ok
"""


class Server:
    def __init__(self, pyginx: Pyginx, master: int) -> None:
        self.p = pyginx
        self.port = pyginx.port
        self.master = master
        (self.worker,) = pyginx.wait_workers(master, 1)

    def sockets(self) -> int:
        """Sockets the worker holds (listening ones included)."""
        fd_dir = Path(f"/proc/{self.worker}/fd")
        count = 0
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd).startswith("socket:"):
                    count += 1
            except OSError:
                pass
        return count

    def ok(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return read_until_close(s).endswith(b"\r\n\r\nok")

    def settled(self, baseline: int, what: str, timeout: float = 8.0) -> None:
        """The worker's sockets are back to the baseline, and it is the same worker."""
        wait_for(lambda: self.sockets() <= baseline, timeout, f"{what}: the worker to release its sockets")
        assert self.p.workers(self.master) == [self.worker], f"{what}: the worker was replaced"


@pytest.fixture
def server(pyginx: Pyginx) -> Iterator[Server]:  # noqa: F811
    (pyginx.prefix / "html" / "big.bin").write_bytes(os.urandom(1024) * (BIG // 1024))
    pyginx.write_config(_config(pyginx.port))
    master = pyginx.start()
    srv = Server(pyginx, master)
    yield srv
    assert srv.ok()
    assert pyginx.workers(master) == [srv.worker]


def _baseline(server: Server) -> int:
    assert server.ok()  # settles the health check's own connection first
    return wait_for(lambda: server.sockets() or None, 5, "a socket count")


def test_slowloris_headers_are_cut_at_client_header_timeout(server: Server) -> None:
    baseline = _baseline(server)
    conns = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(30)]
    start = time.monotonic()
    closed: set[int] = set()
    try:
        while len(closed) < len(conns) and time.monotonic() - start < 5:
            for i, s in enumerate(conns):
                if i in closed:
                    continue
                try:
                    s.sendall(b"GET / HTTP/1.1\r\nX: y\r\n"[: 1 + int((time.monotonic() - start) * 10) % 20])
                    s.setblocking(False)
                    if s.recv(100) == b"":
                        closed.add(i)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    closed.add(i)
            assert server.ok()  # others are served meanwhile
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        assert len(closed) == len(conns), "dribbling clients still connected"
        assert elapsed < 3.0  # one deadline for the whole header (1s) plus the sweep
    finally:
        for s in conns:
            s.close()
    server.settled(baseline, "slowloris")


def test_body_dribbled_slower_than_client_body_timeout(server: Server) -> None:
    baseline = _baseline(server)
    # proxy_pass reads the whole body first (proxy_request_buffering), so client_body_timeout
    # applies; as nginx, it is a limit between two reads, not for the whole body: a body dribbled
    # a byte every 0.3 s (2.4 s in all, over the 1 s timeout) is read to its end
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /up/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        for _ in range(8):
            time.sleep(0.3)
            s.sendall(b"x")
        assert read_response(s)[0] == 200
    # a pause longer than the timeout: the connection is closed without a response (nginx's 408)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /up/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nab")
        time.sleep(0.5)
        s.sendall(b"x")
        start = time.monotonic()
        out = read_until_close(s, timeout=5)
        assert b"HTTP/1.1" not in out
        assert 0.6 < time.monotonic() - start < 2.5
    assert server.ok()
    server.settled(baseline, "slow body")


def test_two_thousand_idle_connections(server: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4500:
        pytest.skip("not enough descriptors for 2000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4500), hard))
    baseline = _baseline(server)
    conns: list[socket.socket] = []
    try:
        for _ in range(2000):
            conns.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        assert server.ok()  # served while 2000 others sit idle
        # all of them are closed by client_header_timeout, without a response
        start = time.monotonic()
        for s in conns:
            s.settimeout(max(0.1, 6 - (time.monotonic() - start)))
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - start < 6
    finally:
        for s in conns:
            s.close()
    server.settled(baseline, "idle connections")
    # and the same again, closed by the clients this time
    conns = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(500)]
    for s in conns:
        s.close()
    assert server.ok()
    server.settled(baseline, "idle connections closed by clients")


def test_garbage_bytes(server: Server) -> None:
    baseline = _baseline(server)
    rng = random.Random(1234)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(150)]
    samples += [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
        b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"\xff" * 5000 + b"\r\n\r\n",
        b"\r\n" * 5000,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"POST /up/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ]

    def one(data: bytes) -> None:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(data)
                read_until_close(s, timeout=4)
        except OSError:
            pass

    threads = [threading.Thread(target=one, args=(d,)) for d in samples]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.ok()
    server.settled(baseline, "garbage")


def test_half_closed_sockets_with_a_request_in_flight(server: Server) -> None:
    baseline = _baseline(server)
    # the request is answered in full, then the connection closes; a proxied request whose client
    # closed its side before the upstream answered is abandoned instead (nginx's 499), unless the
    # answer was already on its way
    for target in (b"/ok", b"/up/", b"/big.bin"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            out = read_until_close(s, timeout=8)
            head, _, body = out.partition(b"\r\n\r\n")
            if target == b"/up/" and out == b"":
                continue
            assert head.startswith(b"HTTP/1.1 200"), (target, head[:100])
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert len(body) == length, target
    # half-closed in the middle of a head or of a body: closed, nothing answered
    for data in (b"GET /ok HTTP/1.1\r\nHost: loc", b"POST /up/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9\r\n\r\nab"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            start = time.monotonic()
            assert b"HTTP/1.1 200" not in read_until_close(s, timeout=5)
            assert time.monotonic() - start < 4
    # a pipelined pair, then half-close: both answered
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2)
        s.shutdown(socket.SHUT_WR)
        assert read_until_close(s, timeout=5).count(b"HTTP/1.1 200 OK") == 2
    server.settled(baseline, "half-closed")


@pytest.mark.parametrize("target", ["/big.bin", "/big.bin?range", "/up/"])
def test_client_that_never_reads(server: Server, target: str) -> None:
    baseline = _baseline(server)
    sockets = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.port))
            extra = b"Range: bytes=0-20000000\r\n" if target.endswith("range") else b""
            s.sendall(b"GET " + target.split("?")[0].encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n")
            sockets.append(s)
        assert server.ok()  # others are served while the response is stuck
        if target == "/up/":
            # a small response fits the buffers: the connection is simply kept alive, then closed
            # by keepalive_timeout
            start = time.monotonic()
            for s in sockets:
                st, _, body = read_response(s)
                assert (st, body) == (200, b"ok")
            for s in sockets:
                assert read_until_close(s, timeout=5) == b""
            assert time.monotonic() - start < 4.5
        else:
            # send_timeout (1s) without progress: the worker drops the connection
            wait_for(lambda: server.sockets() <= baseline, 6, "send_timeout to close the stuck connections")
    finally:
        for s in sockets:
            s.close()
    server.settled(baseline, f"never reading {target}")
