"""Bodies both ways, byte-exact, with backpressure; HEAD; Expect; HTTP/1.0 clients; WebSocket tunnels."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_basic import request
from tests.integration.test_proxy_origin import (
    Origin,
    big_body,
    encode_frame,
    origin_fixture,  # noqa: F401  (the `origin` fixture)
    proxy_config,
    recv_frame,
)


def start(pyginx: Pyginx, origin: Origin, extra: str = "", http: str = "") -> None:
    ups = f"app:\n  servers:\n    - {origin.addr}\n  keepalive: 8\n"
    locations = f"""
- location: /
  proxy_pass: http://app
  client_max_body_size: 64m
{extra}
- location: /nobuf/
  proxy_pass: http://app/
  proxy_request_buffering: false
  client_max_body_size: 64m
"""
    pyginx.write_config(proxy_config(pyginx.port, upstreams=ups, locations=locations, http=http))
    pyginx.start()


def send_chunked(port: int, path: str, body: bytes, piece: int = 10_000) -> tuple[bytes, bytes]:
    """POST `body` chunked; returns (response head, de-chunked response body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        for i in range(0, len(body), piece):
            part = body[i : i + piece]
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        f = s.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.readline()
        out = b""
        if b"Transfer-Encoding: chunked" in head:
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if size == 0:
                    f.readline()
                    break
                out += f.read(size)
                f.readline()
        else:
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            out = f.read(length)
        return head, out


@pytest.mark.parametrize("location", ["/echo?chunked=1", "/nobuf/echo?chunked=1", "/echo"])
def test_chunked_request_and_response_bodies_are_byte_exact(
    pyginx: Pyginx, origin: Origin, location: str
) -> None:
    start(pyginx, origin)
    body = os.urandom(300_000)
    head, out = send_chunked(pyginx.port, location, body)
    assert head.startswith(b"HTTP/1.1 200")
    assert out == body
    seen = origin.seen("/echo")[-1]
    assert seen.body == body
    if location.startswith("/nobuf/"):
        assert seen.chunked  # streamed: re-chunked to the upstream
    else:
        assert not seen.chunked and seen.header("content-length") == str(len(body))  # buffered


def test_streamed_body_with_content_length(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    body = os.urandom(200_000)
    status, _, out = request(pyginx.port, "/nobuf/echo", method="PUT", body=body)
    assert status == 200 and out == body
    seen = origin.seen("/echo")[-1]
    assert seen.header("content-length") == str(len(body)) and not seen.chunked


@pytest.mark.parametrize("mode", ["", "&chunked=1", "&close=1"])
def test_big_responses_are_byte_exact(pyginx: Pyginx, origin: Origin, mode: str) -> None:
    start(pyginx, origin)
    size = 5_000_000 + 123
    status, headers, body = request(pyginx.port, f"/big?size={size}{mode}")
    assert status == 200
    assert len(body) == size and body == big_body(size)
    if mode:
        assert headers.get("transfer-encoding") == "chunked"  # re-chunked for the client
    else:
        assert headers["content-length"] == str(size)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_slow_client_does_not_make_the_worker_hold_the_response(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    master = pyginx.read_pid()
    assert master is not None
    worker = pyginx.wait_workers(master, 1)[0]  # its title is set just after the fork
    request(pyginx.port, "/warm")
    before = rss_kb(worker)
    size = 200 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET /big?size={size} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
        # the client reads nothing more: the origin must come to a stop far from the end
        last = [-1]

        def stalled() -> bool:
            now = origin.bytes_out
            same = now == last[0]
            last[0] = now
            return same and now > 0

        wait_for(stalled, 20, "the origin to be held back", interval=0.5)
        assert origin.bytes_out < size // 4
        grown_mb = (rss_kb(worker) - before) / 1024
        assert grown_mb < 30, f"worker grew by {grown_mb:.1f} MB for a stalled client"
        # now read it all: byte-exact
        total = len(got.partition(b"\r\n\r\n")[2])
        digest = hashlib.sha256(got.partition(b"\r\n\r\n")[2])
        while total < size:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            digest.update(chunk)
        assert total == size
        assert digest.digest() == hashlib.sha256(big_body(size)).digest()


def test_head_arriving_in_pieces(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    status, headers, body = request(pyginx.port, "/split-head?delay=0.3")
    assert status == 200 and body == b"whole" and headers["x-split"] == "yes"
    assert request(pyginx.port, "/after")[0] == 200  # and the connection was pooled in step
    assert origin.connections == 1


def test_pipelined_requests_are_answered_in_order(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    requests = [
        ("/p1", b"GET /p1 HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("/big", b"GET /big?size=100000 HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("/p3", b"GET /p3 HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("/echo", b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nping"),
        ("/p5", b"GET /p5 HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ]
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=10) as s:
        s.sendall(b"".join(raw for _, raw in requests))  # all in one write
        f = s.makefile("rb")
        for path, _ in requests:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = f.readline()
                assert line, f"closed before the answer to {path}"
                head += line
            assert head.startswith(b"HTTP/1.1 200"), (path, head)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = f.read(length)
            if path == "/echo":
                assert body == b"ping"
            elif path == "/big":
                assert body == big_body(100000)
            else:
                assert f'"target": "{path}"'.encode() in body
    pyginx.check_log()


def test_head_request(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    status, headers, body = request(pyginx.port, "/big?size=1234", method="HEAD")
    assert status == 200 and body == b""
    assert headers["content-length"] == "1234"
    assert request(pyginx.port, "/after")[0] == 200  # the pooled connection is still in step
    assert origin.connections == 1


def test_expect_100_continue_is_answered_by_pyginx(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        data = b""
        while not data.endswith(b"hello"):
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 200")
    seen = origin.seen("/echo")[-1]
    assert seen.header("expect") is None


def test_http10_client_gets_a_close_delimited_body(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=10) as s:
        s.sendall(b"GET /big?size=70000&chunked=1 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head
    assert body == big_body(70000)


# ------------------------------------------------------------------------------------------ WebSocket


def ws_connect(port: int, path: str = "/ws") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    expected = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    )
    assert b"Sec-WebSocket-Accept: " + expected in head
    assert b"Upgrade: websocket" in head and b"Connection: upgrade" in head.replace(
        b"Upgrade\r", b"upgrade\r"
    )
    return s


def test_websocket_echo_both_ways(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    s = ws_connect(pyginx.port)
    try:
        s.sendall(encode_frame(1, b"hello through pyginx", mask=True))
        assert recv_frame(s) == (1, b"hello through pyginx")
        big = os.urandom(300_000)
        s.sendall(encode_frame(2, big, mask=True))
        assert recv_frame(s) == (2, big)
        for i in range(20):
            msg = f"message {i}".encode()
            s.sendall(encode_frame(1, msg, mask=True))
            assert recv_frame(s) == (1, msg)
        s.sendall(encode_frame(8, b"\x03\xe8", mask=True))
        assert recv_frame(s)[0] == 8
        s.settimeout(5)
        assert s.recv(10) == b""  # the upstream closed: so does pyginx
    finally:
        s.close()
    seen = origin.seen("/ws")[-1]
    assert seen.header("upgrade") == "websocket" and (seen.header("connection") or "").lower() == "upgrade"


def test_websocket_idle_limit_is_proxy_read_timeout(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin, extra="  proxy_read_timeout: 1s")
    s = ws_connect(pyginx.port)
    try:
        s.sendall(encode_frame(1, b"ping", mask=True))
        assert recv_frame(s) == (1, b"ping")
        t0 = time.monotonic()
        s.settimeout(10)
        assert s.recv(10) == b""  # nothing moved for a second: closed
        assert 0.8 < time.monotonic() - t0 < 5
    finally:
        s.close()


def test_websocket_client_half_close_reaches_the_upstream_at_once(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin, extra="  proxy_read_timeout: 30s")
    s = ws_connect(pyginx.port)
    try:
        s.sendall(encode_frame(1, b"ping", mask=True))
        assert recv_frame(s) == (1, b"ping")
        t0 = time.monotonic()
        s.shutdown(socket.SHUT_WR)
        # the upstream saw the EOF (not the idle timeout 30 s later) and could still answer it
        assert recv_frame(s) == (1, b"bye")
        s.settimeout(10)
        assert s.recv(10) == b""  # then it closed, and so did pyginx
        assert time.monotonic() - t0 < 5
    finally:
        s.close()
    pyginx.check_log()


def test_upgrade_refused_by_upstream_is_a_normal_response(pyginx: Pyginx, origin: Origin) -> None:
    start(pyginx, origin)
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=10) as s:
        s.sendall(
            b"GET /status?code=426 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        data = b""
        while b"status 426" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 426")
