"""HTTP/2 frame by frame: pyginx's own frame layer (pyginx/http2/connection.py) seen from a raw client.

The client here is a TLS socket and hand-made frames (hpack for the header blocks), so that it can send
what well-behaved client libraries refuse to: malformed header blocks, frames on idle streams, bad
lengths. What it checks is RFC 9113 and nginx's answers: a malformed request is a 400 on its stream,
a protocol violation is GOAWAY with the error code the RFC names, and flow control and frame sizes are
honoured as the client set them.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

import hpack
import pytest

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_http2 import h2_config, origin_fixture, site_fixture  # noqa: F401
from tests.integration.test_tls_server import pki_fixture  # noqa: F401
from tests.integration.tlstools import Pki

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", sid) + payload


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None
    frames: list[tuple[int, int, int]] = field(default_factory=list)  # (type, flags, length)
    first_block: bytes = b""


class RawH2:
    def __init__(self, port: int, pki: Pki, settings: dict[int, int] | None = None) -> None:
        ctx = pki.client_context(["h2"])
        self.sock = ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost"
        )
        assert self.sock.selected_alpn_protocol() == "h2"
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.goaway: int | None = None  # the error code of the server's GOAWAY
        self.closed = False
        self.answers: dict[int, Answer] = {}
        self.done: set[int] = set()
        body = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, body))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        sid: int,
        path: str,
        method: str = "GET",
        extra: list[tuple[str, str]] | None = None,
        end: bool = True,
        raw: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = (
            raw
            if raw is not None
            else [(":method", method), (":scheme", "https"), (":authority", "localhost"), (":path", path)]
            + (extra or [])
        )
        block = self.encoder.encode(headers)
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid, block))

    def pump(self, timeout: float = 0.2) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            return
        except OSError:
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            kind, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9 : 9 + length], self.buf[9 + length :]
            self._frame(kind, flags, sid, payload)

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if kind == GOAWAY:
            self.goaway = int.from_bytes(payload[4:8], "big")
            return
        if kind == SETTINGS and not flags & 1:
            self.send(frame(SETTINGS, 1, 0))
            return
        if not sid:
            return
        answer = self.answers.setdefault(sid, Answer())
        answer.frames.append((kind, flags, len(payload)))
        if kind == HEADERS:
            if not answer.first_block:
                answer.first_block = payload
            for name, value in self.decoder.decode(payload):
                if name == ":status":
                    answer.status = int(value)
                else:
                    answer.headers[name] = value
        elif kind == DATA:
            answer.body += payload
        elif kind == RST_STREAM:
            answer.reset = int.from_bytes(payload, "big")
            self.done.add(sid)
        if kind in (HEADERS, DATA) and flags & END_STREAM:
            self.done.add(sid)

    def wait(self, sid: int, timeout: float = 5) -> Answer:
        deadline = time.monotonic() + timeout
        while (
            sid not in self.done and not self.closed and self.goaway is None and time.monotonic() < deadline
        ):
            self.pump()
        assert sid in self.done, f"stream {sid} did not finish: {self.answers.get(sid)}, goaway {self.goaway}"
        return self.answers[sid]

    def wait_goaway(self, timeout: float = 5) -> int | None:
        deadline = time.monotonic() + timeout
        while self.goaway is None and not self.closed and time.monotonic() < deadline:
            self.pump()
        return self.goaway

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    "headers, reason",
    [
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("X-Upper", "1")], "invalid header name"),
        ([(":method", "GET"), (":scheme", "https"), ("x-a", "1"), (":path", "/")], "pseudo-header after"),
        ([(":method", "GET"), (":path", "/")], "no :scheme header"),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), (":path", "/x")], "duplicate :path"),
        (
            [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":protocol", "x")],
            "unknown pseudo-header",
        ),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("x-a", "a\nb")], "invalid value"),
    ],
)
def test_malformed_header_blocks_get_nginx_400(
    site: Pyginx, pki: Pki, headers: list[tuple[str, str]], reason: str
) -> None:
    c = RawH2(site.port, pki)
    c.request(1, "", raw=headers)
    assert c.wait(1).status == 400
    c.request(3, "/v")  # the connection goes on, its HPACK state in step
    answer = c.wait(3)
    assert answer.status == 200 and answer.body == b"HTTP/2.0 https on h2"
    c.close()


def test_hop_by_hop_headers_are_dropped_and_cookies_joined(site: Pyginx, pki: Pki) -> None:
    c = RawH2(site.port, pki)
    c.request(
        1,
        "/api/te",
        method="POST",
        extra=[("transfer-encoding", "chunked"), ("content-length", "3"), ("connection", "close")],
        end=False,
    )
    c.send(frame(DATA, END_STREAM, 1, b"abc"))
    answer = c.wait(1)
    # the origin saw a body of the announced length: the client's Transfer-Encoding did not reach it
    assert answer.status == 200 and b'"body": 3' in answer.body
    c.close()


@pytest.mark.parametrize(
    "bad, code",
    [
        (frame(DATA, 0, 5, b"x"), 1),  # DATA on an idle stream: PROTOCOL_ERROR
        (frame(HEADERS, END_HEADERS, 2, b"\x82"), 1),  # an even (server) stream id
        (frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), 1),  # increment 0 on the connection
        (frame(PING, 0, 0, b"1234"), 6),  # PING of 4 bytes: FRAME_SIZE_ERROR
        (frame(SETTINGS, 0, 0, b"\x00\x05\x00\x00\x01\x00"), 1),  # MAX_FRAME_SIZE 256: below 16384
        (frame(SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00"), 3),  # INITIAL_WINDOW_SIZE 2^31: FLOW_CONTROL
        (frame(DATA, 0, 1, b"x" * 16385), 6),  # longer than SETTINGS_MAX_FRAME_SIZE
        (frame(RST_STREAM, 0, 9, b"\x00\x00\x00\x08"), 1),  # RST_STREAM of an idle stream
        (frame(5, END_HEADERS, 1, b"\x00\x00\x00\x02\x82"), 1),  # PUSH_PROMISE from a client
    ],
)
def test_protocol_violations_are_goaway_with_the_rfc_code(
    site: Pyginx, pki: Pki, bad: bytes, code: int
) -> None:
    c = RawH2(site.port, pki)
    c.send(bad)
    assert c.wait_goaway() == code
    c.close()
    assert "Traceback" not in site.error_log()


def test_invalid_preface_closes_the_connection(site: Pyginx, pki: Pki) -> None:
    ctx = pki.client_context(["h2"])
    sock = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", site.port), timeout=5), server_hostname="localhost"
    )
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    deadline = time.monotonic() + 5
    got = b""
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
        got += data
    assert b"HTTP/1.1 200" not in got
    sock.close()
    wait_for(lambda: "invalid HTTP/2 connection preface" in site.error_log(), what="the preface error")


def test_end_stream_rides_on_the_last_frame(site: Pyginx, pki: Pki) -> None:
    (site.prefix / "html" / "small.txt").write_bytes(b"hello")
    c = RawH2(site.port, pki)
    c.request(1, "/small.txt")
    answer = c.wait(1)
    assert answer.body == b"hello"
    assert answer.frames == [(HEADERS, END_HEADERS, answer.frames[0][2]), (DATA, END_STREAM, 5)]
    c.request(3, "/small.txt", method="HEAD")
    head = c.wait(3)
    assert head.frames == [(HEADERS, END_HEADERS | END_STREAM, head.frames[0][2])]
    assert head.headers["content-length"] == "5" and head.body == b""
    c.close()


def test_client_settings_table_size_frame_size_and_window_are_honoured(site: Pyginx, pki: Pki) -> None:
    # HEADER_TABLE_SIZE 0, MAX_FRAME_SIZE 64 KiB, INITIAL_WINDOW_SIZE 1000
    c = RawH2(site.port, pki, settings={1: 0, 5: 65536, 4: 1000})
    c.decoder.max_allowed_table_size = 0
    c.request(1, "/big.bin")
    deadline = time.monotonic() + 5
    while len(c.answers.get(1, Answer()).body) < 1000 and time.monotonic() < deadline:
        c.pump()
    for _ in range(3):
        c.pump()
    answer = c.answers[1]
    assert len(answer.body) == 1000  # exactly the stream's window, no more
    assert answer.first_block[:1] == b"\x20"  # a dynamic table size update to 0 comes first
    # open the windows: the rest arrives, in frames up to the client's 64 KiB
    c.send(
        frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**20))
        + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**20))
    )
    answer = c.wait(1)
    assert answer.body == bytes(range(256)) * 2048
    sizes = [length for kind, _, length in answer.frames if kind == DATA]
    assert max(sizes) > 16384 and max(sizes) <= 65536
    c.close()


def test_request_body_shorter_than_its_content_length_is_400(site: Pyginx, pki: Pki) -> None:
    c = RawH2(site.port, pki)
    c.request(1, "/api/short", method="POST", extra=[("content-length", "10")], end=False)
    c.send(frame(DATA, END_STREAM, 1, b"abc"))
    answer = c.wait(1)
    assert answer.status == 400, answer
    c.close()


def test_repeated_header_blocks_answer_each_their_own_path(site: Pyginx, pki: Pki) -> None:
    # the encoder indexes the fields, so later blocks are all references: the server remembers
    # decoded blocks while its table is unchanged, and must never answer one path with another's
    (site.prefix / "html" / "a.txt").write_bytes(b"A")
    (site.prefix / "html" / "b.txt").write_bytes(b"B")
    c = RawH2(site.port, pki)
    sid = 1
    for path in ["/a.txt", "/b.txt"] * 5 + ["/a.txt"]:
        c.request(sid, path, extra=[("x-n", str(sid % 3))])
        assert c.wait(sid).body == path[1:2].upper().encode()
        sid += 2
    c.close()
