"""A small origin server for the proxy tests, and a few tests of the origin itself.

`Origin` runs an asyncio server on 127.0.0.1 (a port picked at run time) in a thread of the test
process. What it answers depends on the request path, so that one origin can be slow, reset, send
malformed or ambiguous responses, close idle connections, echo bodies and WebSocket frames:

    /                       200, a JSON description of the request (origin name, method, target, headers, body)
    /echo                   the request body back (Content-Length); ?chunked=1 answers chunked
    /big?size=N             N bytes of a known pattern (?chunked=1: chunked; ?close=1: read-until-close)
    /status?code=N          that status, small body
    /slow-head?delay=S      wait S seconds before answering
    /slow-body?delay=S      head and half the body, S seconds, the rest
    /split-head?delay=S     the head in two writes S seconds apart (cut inside a header line)
    /hold?delay=S           wait up to S seconds for the proxy to close the connection (recorded in
                            `aborted`), else answer; &partial=1 sends the head and half the body first
    /reset                  RST without answering      /close   close without answering
    /truncate               Content-Length 100, 10 bytes, close     ?chunked=1: chunked, no last chunk
    /raw?r=NAME             a raw response from RAW (malformed and ambiguous ones)
    /redirect               302 to http://<Host>/target
    /ws                     WebSocket handshake, then every frame echoed back

Settings: `idle_close` (seconds: close keep-alive connections idle that long), `drop_reused` (read a
request on a reused connection and close it unanswered: a server that gave up the connection just as
the request arrived), `status_override` (answer everything with that status), `reset_all`. Counters:
`connections`, `closed`, `requests` (every request seen, whole), `aborted` (when a /hold saw the proxy
close). A WebSocket client's half-close is answered with a last text frame "bye", then a close.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import struct
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

PATTERN = bytes(range(256)) * 4
BIG_PIECE = PATTERN * 64  # /big writes 64 KiB at a time; its body is PATTERN repeated


def big_body(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


RAW = {
    "cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "dup-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bad-cl": b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello",
    "bad-te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "bad-status": b"HTTP/1.1 2xx Nope\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"this is not http at all\r\n\r\n",
    "bad-header": b"HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 0\r\n\r\n",
    "huge-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n",
    "accel": b"HTTP/1.1 200 OK\r\nX-Accel-Redirect: /protected/file?k=v\r\nContent-Length: 4\r\n\r\nnope",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    "hidden": (
        b"HTTP/1.1 200 OK\r\nServer: origin/1\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nX-Pad: x\r\n"
        b"X-Accel-Buffering: no\r\nX-Accel-Expires: 10\r\nConnection: X-Hop\r\nX-Hop: secret\r\n"
        b"Keep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
    ),
}


@dataclass
class SeenRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    conn_id: int
    chunked: bool

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Origin:
    name: str = "origin"
    idle_close: float | None = None
    drop_reused: bool = False
    status_override: int | None = None  # answer every request with this status
    reset_all: bool = False  # reset every connection on its first request
    bytes_out: int = 0  # body bytes written by /big (to watch backpressure)
    port: int = 0
    connections: int = 0
    closed: int = 0
    requests: list[SeenRequest] = field(default_factory=list)
    aborted: list[float] = field(default_factory=list)  # time.monotonic() of each /hold the proxy gave up

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------ control (from the test thread)

    def start(self) -> Origin:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            me = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not me]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self, path_prefix: str = "") -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.target.startswith(path_prefix)]

    # ------------------------------------------------------------------ serving

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            conn_id = self.connections
        self._writers.add(writer)
        served = 0
        try:
            while True:
                try:
                    if self.idle_close is not None and served:
                        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
                    else:
                        head = await reader.readuntil(b"\r\n\r\n")
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    break
                req = await self._read_request(head, reader, conn_id)
                with self._lock:
                    self.requests.append(req)
                if self.drop_reused and served:
                    break
                served += 1
                keep = await self._answer(req, reader, writer)
                if not keep or (req.header("connection") or "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # cancelled by stop(): finish quietly
        finally:
            self._writers.discard(writer)
            with self._lock:
                self.closed += 1
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(self, head: bytes, reader: asyncio.StreamReader, conn_id: int) -> SeenRequest:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
        hmap = {k.lower(): v for k, v in headers}
        body = b""
        chunked = hmap.get("transfer-encoding", "").lower() == "chunked"
        if chunked:
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif "content-length" in hmap:
            body = await reader.readexactly(int(hmap["content-length"]))
        return SeenRequest(method, target, version, headers, body, conn_id, chunked)

    async def _answer(self, req: SeenRequest, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        url = urlsplit(req.target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        accept_ranges = "Accept-Ranges: bytes\r\n" if q.get("ranges") else ""  # ?ranges=1
        if self.reset_all:
            path = "/reset"
        elif self.status_override is not None:
            code = self.status_override
            return await self._send(w, code, f"status {code} from {self.name}".encode())
        if path == "/reset":
            sock = w.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            return False
        if path == "/close":
            return False
        if path == "/raw":
            w.write(RAW[q["r"]])
            await w.drain()
            return False
        if path == "/slow-head":
            await asyncio.sleep(float(q.get("delay", "1")))
            return await self._send(w, 200, b"slow")
        if path == "/hold":
            return await self._hold(reader, w, float(q.get("delay", "5")), bool(q.get("partial")))
        if path == "/split-head":
            w.write(b"HTTP/1.1 200 OK\r\nX-Split: yes\r\nContent-Le")
            await w.drain()
            await asyncio.sleep(float(q.get("delay", "0.2")))
            w.write(b"ngth: 5\r\n\r\nwhole")
            await w.drain()
            return True
        if path == "/slow-body":
            body = b"x" * 1000
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body[:500])
            await w.drain()
            await asyncio.sleep(float(q.get("delay", "1")))
            w.write(body[500:])
            await w.drain()
            return True
        if path == "/truncate":
            if q.get("chunked"):
                w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
            else:
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            await w.drain()
            await asyncio.sleep(0.05)
            return False
        if path == "/status":
            code = int(q.get("code", "200"))
            return await self._send(w, code, f"status {code} from {self.name}".encode())
        if path == "/echo":
            return await self._send(w, 200, req.body, chunked=bool(q.get("chunked")))
        if path == "/big":
            size = int(q["size"])
            head_only = req.method == "HEAD"
            return await self._send_big(
                w, size, bool(q.get("chunked")), bool(q.get("close")), head_only, extra=accept_ranges
            )
        if path == "/redirect":
            host = req.header("host") or "x"
            w.write(
                f"HTTP/1.1 302 Found\r\nLocation: http://{host}/target/x\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await w.drain()
            return True
        if path == "/ws":
            await self._websocket(req, reader, w)
            return False
        info = {
            "origin": self.name,
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "headers": req.headers,
            "body": req.body.decode("latin-1"),
            "conn": req.conn_id,
        }
        return await self._send(w, 200, json.dumps(info).encode(), ctype="application/json", extra=accept_ranges)

    async def _hold(
        self, reader: asyncio.StreamReader, w: asyncio.StreamWriter, delay: float, partial: bool
    ) -> bool:
        """Wait for the proxy to close the connection (an abandoned request), else answer."""
        if partial:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
            await w.drain()
        try:
            got: bytes | None = await asyncio.wait_for(reader.read(1), delay)
        except TimeoutError:
            got = None
        except ConnectionError:
            got = b""
        if got == b"":
            with self._lock:
                self.aborted.append(time.monotonic())
            return False
        if partial:
            w.write(b"56789")
            await w.drain()
            return True
        return await self._send(w, 200, b"held")

    async def _send(
        self,
        w: asyncio.StreamWriter,
        status: int,
        body: bytes,
        chunked: bool = False,
        ctype: str = "text/plain",
        extra: str = "",
    ) -> bool:
        head = f"HTTP/1.1 {status} X\r\nServer: origin\r\nX-Origin: {self.name}\r\nContent-Type: {ctype}\r\n{extra}"
        if chunked:
            w.write(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 7000):
                piece = body[i : i + 7000]
                w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            w.write(b"0\r\n\r\n")
        else:
            w.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await w.drain()
        return True

    async def _send_big(
        self,
        w: asyncio.StreamWriter,
        size: int,
        chunked: bool,
        close: bool,
        head_only: bool = False,
        extra: str = "",
    ) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\n" + extra.encode())
        if chunked:
            w.write(b"Transfer-Encoding: chunked\r\n\r\n")
        elif close:
            w.write(b"Connection: close\r\n\r\n")
        else:
            w.write(b"Content-Length: %d\r\n\r\n" % size)
        if head_only:
            await w.drain()
            return True
        sent = 0
        while sent < size:
            piece = BIG_PIECE[: min(len(BIG_PIECE), size - sent)]
            w.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            await w.drain()
            self.bytes_out += len(piece)
        if chunked:
            w.write(b"0\r\n\r\n")
        await w.drain()
        return not close

    async def _websocket(
        self, req: SeenRequest, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        key = req.header("sec-websocket-key") or ""
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        w.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        await w.drain()
        while True:
            try:
                opcode, payload = await read_frame(reader)
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:  # the client half-closed between frames: a last word, then close
                    w.write(encode_frame(1, b"bye", mask=False))
                    await w.drain()
                return
            except ConnectionError:
                return
            if opcode == 8:  # close: answer it and stop
                w.write(encode_frame(8, payload, mask=False))
                await w.drain()
                return
            w.write(encode_frame(opcode, payload, mask=False))
            await w.drain()


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def encode_frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = b"\x01\x02\x03\x04"
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b2 & 0x80 else b""
    payload = await reader.readexactly(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b1 & 0x0F, payload


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Blocking read of one unmasked frame (client side of the tests)."""

    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            got = sock.recv(n - len(buf))
            if not got:
                raise ConnectionError("closed")
            buf += got
        return buf

    b1, b2 = exact(2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exact(8))
    return b1 & 0x0F, exact(n)


@pytest.fixture(name="origin")
def origin_fixture() -> Iterator[Origin]:
    o = Origin("a").start()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture(name="origins")
def origins_fixture() -> Iterator[list[Origin]]:
    started = [Origin("a").start(), Origin("b").start()]
    try:
        yield started
    finally:
        for o in started:
            o.stop()


# ------------------------------------------------------------------------------------------ self-tests


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_origin_describes_requests(origin: Origin) -> None:
    out = _get(origin.port, "/hello?x=1")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    info = json.loads(body)
    assert info["origin"] == "a" and info["target"] == "/hello?x=1"
    assert origin.seen("/hello")[0].method == "GET"


def test_origin_raw_and_big(origin: Origin) -> None:
    assert _get(origin.port, "/raw?r=cl-te") == RAW["cl-te"]
    out = _get(origin.port, "/big?size=3000&close=1")
    assert out.endswith((PATTERN * 3)[:3000])


def test_origin_idle_close(origin: Origin) -> None:
    origin.idle_close = 0.2
    with socket.create_connection(("127.0.0.1", origin.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert time.monotonic() - t0 < 3


# ------------------------------------------------------------------------------------------ configs


def proxy_config(port: int, *, upstreams: str = "", locations: str, http: str = "", workers: int = 1) -> str:
    """A pyginx configuration proxying to origins: `upstreams` is the YAML body of `http.upstreams`,
    `locations` the YAML list of the server's locations (both written at column 0). `= /` answers
    by itself, so that the harness's readiness probe never reaches an origin."""

    def indent(text: str, n: int) -> str:
        return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * n)

    parts = [
        f"worker_processes: {workers}",
        "error_log: logs/error.log info",
        "pid: logs/pyginx.pid",
        "worker_shutdown_timeout: 3s",
        "events:",
        "  worker_connections: 512",
        "http:",
        "  access_log: logs/access.log upstream",
        "  log_format:",
        '    upstream: \'$remote_addr "$request" $status ua="$upstream_addr" us="$upstream_status" '
        'urt="$upstream_response_time" uct="$upstream_connect_time" uht="$upstream_header_time"\'',
        "  keepalive_timeout: 10s",
    ]
    if http.strip():
        parts.append(indent(http, 2))
    if upstreams.strip():
        parts.append("  upstreams:")
        parts.append(indent(upstreams, 4))
    parts += [
        "  servers:",
        f"    - listen: 127.0.0.1:{port}",
        "      server_name: localhost",
        "      locations:",
        "        - location: = /",
        "          return: 200 ready",
        indent(locations, 8),
    ]
    return "\n".join(parts) + "\n"
