"""One HTTP/2 stream standing in for the HTTP/1.1 connection under a Request.

A Request answers through a small interface of its connection (pyginx.http.stream.ClientStream):
`write`/`writelines` of the bytes it would put on an HTTP/1.1 connection, `drain`, `sendfile`,
`request_done`, `body_wanted`/`body_consumed`, and a few facts (addresses, ids, scheme, TLS). The
stream implements exactly that: the first bytes written are the response head the core built
(status line and header lines), which become a HEADERS frame without the HTTP/1.1 framing and
connection headers; what follows becomes DATA frames (chunked framing, when the core chose it, is
taken off again), sent as the peer's flow-control window allows. So static files, error pages,
redirects and the proxy run unchanged over HTTP/2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pyginx.errors import HttpError
from pyginx.http2.hpack_codec import encode

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.http.server import ServerContext
    from pyginx.http2.connection import H2Connection
    from pyginx.tls.variables import TlsInfo

# headers that mean something only to one HTTP/1.1 connection (RFC 9113 8.2.2): never sent in HTTP/2
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_FILE_CHUNK = 64 * 1024
_STREAM_HIGH_WATER = 256 * 1024  # bytes waiting for window before drain() blocks the handler


def parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bool]:
    """(status, headers, chunked) of a response head written by the core (`HTTP/1.1 200 OK\\r\\n...`)."""
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)[1]
    headers: list[tuple[bytes, bytes]] = [(b":status", status)]
    chunked = False
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        lower = name.strip().lower()
        if lower in _HOP_BY_HOP:
            if lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            continue
        headers.append((lower, value.strip()))
    return status, headers, chunked


# Response heads repeat (the same file within the same second, the same error page): their HEADERS
# block is made once. The key is the whole head, so nothing of one response can reach another's.
_HEAD_BLOCKS: dict[bytes, tuple[bytes, bytes, bool]] = {}
_HEAD_BLOCKS_MAX = 256


def response_block(head: bytes) -> tuple[bytes, bytes, bool]:
    """(status, HPACK block, chunked) of a response head written by the core."""
    known = _HEAD_BLOCKS.get(head)
    if known is not None:
        return known
    status, headers, chunked = parse_head(head)
    made = (status, encode(headers), chunked)
    if len(_HEAD_BLOCKS) >= _HEAD_BLOCKS_MAX:
        _HEAD_BLOCKS.clear()
    _HEAD_BLOCKS[head] = made
    return made


class H2Stream:
    """The connection-shaped side of one stream, for its Request (see the module docstring)."""

    scheme = "https"
    closing_after_response = False

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self.h2 = conn
        self.stream_id = stream_id
        self.ctx: ServerContext = conn.ctx
        self.tls: TlsInfo | None = conn.tls
        self.conn_id = conn.conn_id
        self.client_addr = conn.client_addr
        self.client_port = conn.client_port
        self.server_addr = conn.server_addr
        self.server_port = conn.server_port
        self.req: Request | None = None
        self.head_buf = b""  # response head bytes until its blank line
        self.head_done = False
        self.chunked = False
        self.pending: list[bytes] = []  # DATA waiting for flow-control window
        self.pending_size = 0
        self.ended = False  # request_done seen: END_STREAM once `pending` is out
        self.closed = False  # reset or finished: nothing more is sent
        self.unacked = 0  # request body bytes received but not yet given back as window
        self.body_deadline = 0.0
        # the connection's bookkeeping of this stream (connection.py)
        self.head_block: bytes | None = None  # the response head (HPACK), not yet framed
        self.dirty = False  # on the connection's list of streams with something to frame
        self.send_window = 0  # what the client lets us send on this stream
        self.recv_window = 0  # what we let the client send
        self.remote_closed = False  # END_STREAM received: the request is complete

    @property
    def requests(self) -> int:
        return self.h2.requests

    @property
    def write_paused(self) -> bool:
        return self.pending_size > _STREAM_HIGH_WATER or self.h2.write_paused

    # ------------------------------------------------------------------ what the Request calls

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if not self.head_done:
            self.head_buf += data
            end = self.head_buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.head_buf[: end + 2], self.head_buf[end + 4 :]
            self.head_buf = b""
            self.head_done = True
            status, block, self.chunked = response_block(head)
            if status.startswith(b"1"):
                self.head_done = False  # 100 Continue: HTTP/2 has no use for it here, drop it
                if rest:
                    self.write(rest)
                return
            self.h2.send_headers(self, block)
            if rest:
                self._data(rest)
            return
        if self.chunked:
            if data == b"0\r\n\r\n":
                return  # the end of a chunked body: END_STREAM says it
            data = _unchunk(data)
        self._data(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        items = list(parts)
        if self.chunked and self.head_done and len(items) == 3 and items[2] == b"\r\n":
            self._data(items[1])  # (size line, data, CRLF) from Request.write: the data alone
            return
        for part in items:
            self.write(part)

    def _data(self, data: bytes) -> None:
        if data and not self.closed:
            self.pending.append(data)
            self.pending_size += len(data)
            self.h2.flush_stream(self)

    async def drain(self) -> None:
        while self.write_paused and not self.closed:
            await self.h2.wait_writable(self)
        if self.closed and self.req is not None and self.req.client_closed:
            raise ConnectionResetError("the client reset the stream")

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """No sendfile under TLS and HTTP/2 framing: read and write, paced by the window."""
        sent = 0
        while count > 0 and not self.closed:
            chunk = os.pread(fd, min(count, _FILE_CHUNK), offset)
            if not chunk:
                break
            self._data(chunk)
            offset += len(chunk)
            count -= len(chunk)
            sent += len(chunk)
            try:
                await self.drain()
            except ConnectionError:
                break
        return sent

    def request_done(self, req: Request, abort: bool = False) -> None:
        self.ctx.log_request(req)
        self.h2.requests += 1
        self.h2.stream_done(self, abort)

    def body_too_large(self, req: Request, received: int, more: int) -> None:
        """A body over client_max_body_size: the request's reader gets nginx's 413."""

        req.log_error("error", f"client intended to send too large body: {received + more} bytes")
        req.body.fail(HttpError(413))

    def body_wanted(self, req: Request) -> None:
        self.h2.body_wanted(self)

    def body_consumed(self) -> None:
        self.h2.give_back_window(self)

    def detach(self, req: Request) -> tuple[Any, Any]:
        raise HttpError(400, "an Upgrade is not possible on an HTTP/2 stream")


def _unchunk(data: bytes) -> bytes:
    """Chunk framing written in one piece (size line, data, CRLF) taken off again."""
    line_end = data.find(b"\r\n")
    if line_end <= 0 or not data.endswith(b"\r\n"):
        return data
    try:
        size = int(data[:line_end], 16)
    except ValueError:
        return data
    body = data[line_end + 2 : -2]
    return body if len(body) == size else data
