"""One HTTP/2 connection (ALPN h2 over TLS): our own frame layer (frames.py) and HPACK (hpack_codec.py),
serving each stream through the ordinary request code (see stream.py).

Why not the `h2` library, which the first version used: its per-frame state machine and validation
cost about 85 % of an HTTP/2 request here (6.7k streams/s against nginx's 150k on one worker). A server
needs a small part of HTTP/2 (no push, no client side, no priorities), and this module does that part,
compiled by mypyc like the HTTP/1.1 path. The `h2` library stays the client of the tests, which check
this side frame by frame.

Defences against the known HTTP/2 attacks, each bounded per connection:

* rapid reset (CVE-2023-44487): streams the client resets before their response is complete, and
  streams we refuse, cost budget; past 2 x http2_max_concurrent_streams (plus one per two answered
  requests) the connection gets GOAWAY ENHANCE_YOUR_CALM (nginx 1.25.3 limits the same thing);
* CONTINUATION flood: a header block larger than the header limit (below), or of more than 64 frames,
  is a connection error, before any of it is decoded;
* HPACK bomb: SETTINGS_MAX_HEADER_LIST_SIZE is nginx's large_client_header_buffers (4 x 8k); a block
  that decodes to more is a connection error (ENHANCE_YOUR_CALM), whatever its compressed size;
* SETTINGS / PING flood: control frames (and PRIORITY, empty DATA, unknown frames) are counted; more
  than _CONTROL_BUDGET plus a few per answered request is ENHANCE_YOUR_CALM; and what they make us
  send (ACKs) is bounded by the transport buffer (a client that floods without reading is closed);
* zero-window stalls: a response that cannot send because the client keeps its window at 0 waits at
  most send_timeout, then the connection is closed (nginx's send_timeout);
* stream-count exhaustion: a stream beyond http2_max_concurrent_streams is refused alone (RST_STREAM
  REFUSED_STREAM, as nginx); a stream that holds a slot without sending its body is closed by
  client_body_timeout; an idle connection by keepalive_timeout.

Malformed requests are answered as nginx answers them: a bad header name or value, a missing or
repeated pseudo-header is a 400 on that stream; protocol violations are the connection errors of
RFC 9113 (GOAWAY with the code it names).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Final

import hpack

from pyginx.errors import HttpError
from pyginx.http.request import Body, Request
from pyginx.http.uri import normalize_path, split_target, validate_host
from pyginx.http2 import frames as f
from pyginx.http2.hpack_codec import TABLE_SIZE_ZERO, DecodedBlock, HeaderDecoder
from pyginx.http2.stream import H2Stream
from pyginx.log import error_log

if TYPE_CHECKING:
    from pyginx.http.router import ListenKey
    from pyginx.http.server import ServerContext
    from pyginx.tls.variables import TlsInfo

_CONTROL_BUDGET: Final = 200  # SETTINGS + PING frames a connection may send before it must ask for something
_TRANSPORT_HIGH: Final = 1024 * 1024  # our unsent bytes for a client that does not read: past this, close
_CHECK_EVERY: Final = 0.5
_FLUSH_NOW: Final = 64 * 1024  # DATA waiting past this is written at once, not at the end of the turn
_MAX_CONTINUATIONS: Final = 64
_OUR_TABLE_SIZE: Final = 4096  # SETTINGS_HEADER_TABLE_SIZE we decode with: the default, as nginx


class H2ConnectionError(Exception):
    """A connection error (RFC 9113 5.4.1): GOAWAY with `code`, then close; `reason` goes to the log."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class H2Connection(asyncio.Protocol):
    def __init__(self, ctx: ServerContext, listen_key: ListenKey, tls: TlsInfo | None) -> None:
        self.ctx = ctx
        self.listen_key = listen_key
        self.tls = tls
        table = ctx.server_tables.get(listen_key)
        server = table.default if table is not None else ctx.default_server
        if tls is not None and tls.server_name and table is not None:
            server = table.find(tls.server_name.lower())
        self.settings = s = server.settings
        self.transport: asyncio.Transport | None = None
        self.conn_id = 0
        self.client_addr = ""
        self.client_port = 0
        self.server_addr = ""
        self.server_port = 0
        self.requests = 0
        self.streams: dict[int, H2Stream] = {}
        self.write_paused = False
        self.closed = False
        self.goaway_sent = False
        self.deadline = 0.0
        self.idle_since = time.monotonic()
        self.stalled_since = 0.0  # a response waits for window since (zero-window stall)
        self.resets = 0
        self.control_frames = 0
        number, size = s.large_client_header_buffers
        self.header_limit = number * size
        self.max_streams = s.http2_max_concurrent_streams
        self.decoder = HeaderDecoder(self.header_limit, _OUR_TABLE_SIZE)
        self.buf = b""  # bytes of a frame not yet complete
        self.preface_seen = False
        self.settings_seen = False
        self.out: list[bytes] = []  # frames for the next write
        self.dirty: list[H2Stream] = []  # streams with headers or DATA to put into frames
        self.last_stream_id = 0  # the highest stream the client opened
        # what we may send: the connection's window and the client's settings
        self.send_window = f.DEFAULT_WINDOW
        self.peer_window = f.DEFAULT_WINDOW
        self.peer_frame = f.DEFAULT_FRAME_SIZE
        self.peer_table_size = _OUR_TABLE_SIZE
        self.size_update_owed = False
        # what the client may send: the connection window, and each new stream's
        self.recv_window = f.DEFAULT_WINDOW
        # until the client acknowledges our SETTINGS it may use the default 65535 for a stream
        self.stream_recv_window = max(f.DEFAULT_WINDOW, s.http2_body_preread_size)
        # a header block being received (HEADERS, then CONTINUATION frames)
        self.block_sid = 0
        self.block_parts: list[bytes] = []
        self.block_size = 0
        self.block_frames = 0
        self.block_end_stream = False
        self.block_bad_priority = False
        self.writable_waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self.control_while_paused = 0  # SETTINGS/PING received while our output does not drain

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        t = self.transport
        assert t is not None
        ctx = self.ctx
        self.conn_id = ctx.next_conn_id()
        peer = t.get_extra_info("peername")
        local = t.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.client_addr, self.client_port = peer[0], peer[1]
        if isinstance(local, tuple):
            self.server_addr, self.server_port = local[0], local[1]
        t.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)
        ctx.connection_opened(self)
        s = self.settings
        self.out.append(
            f.settings(
                [
                    (f.MAX_CONCURRENT_STREAMS, self.max_streams),
                    (f.INITIAL_WINDOW_SIZE, s.http2_body_preread_size),
                    (f.MAX_HEADER_LIST_SIZE, self.header_limit),
                    (f.ENABLE_PUSH, 0),
                ]
            )
        )
        # the connection-level window (all streams' bodies in flight): http2_recv_buffer_size
        extra = s.http2_recv_buffer_size - f.DEFAULT_WINDOW
        if extra > 0:
            self.out.append(f.window_update(0, extra))
            self.recv_window += extra
        self._flush()
        self._schedule_check()
        if ctx.accepting_closed:
            self.graceful(close_idle=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = 0.0
        for stream in list(self.streams.values()):
            self._client_gone(stream)
        self.streams.clear()
        self.dirty = []
        self._wake_writers()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.control_while_paused = 0
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buf + data if self.buf else data
        try:
            used = self._frames(buf)
        except H2ConnectionError as error:
            self._abort_connection(error.code, error.reason)
            return
        self.buf = buf[used:] if used < len(buf) else b""
        self._flush()  # every stream answered from these frames leaves in one write

    def eof_received(self) -> bool | None:
        return None

    # ------------------------------------------------------------------ frames in

    def _frames(self, buf: bytes) -> int:
        """Handle every complete frame in `buf`; the number of bytes used."""
        at = 0
        n = len(buf)
        if not self.preface_seen:
            if n < len(f.PREFACE):
                if not f.PREFACE.startswith(buf):
                    raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent invalid HTTP/2 connection preface")
                return 0
            if not buf.startswith(f.PREFACE):
                raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent invalid HTTP/2 connection preface")
            self.preface_seen = True
            at = len(f.PREFACE)
        while n - at >= 9 and not self.closed:
            length, kind, flags, sid = f.parse_head(buf, at)
            if length > f.DEFAULT_FRAME_SIZE:  # the SETTINGS_MAX_FRAME_SIZE we leave at its default
                raise H2ConnectionError(
                    f.FRAME_SIZE_ERROR, f"client sent frame with too large length: {length}"
                )
            end = at + 9 + length
            if end > n:
                break
            payload = buf[at + 9 : end]
            at = end
            self._frame(kind, flags, sid, payload)
        return at

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if not self.settings_seen:
            if kind != f.SETTINGS or flags & f.ACK:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent no SETTINGS frame first")
            self.settings_seen = True
        if self.block_sid and kind != f.CONTINUATION:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent a frame inside a header block")
        if kind == f.DATA:
            self._on_data(flags, sid, payload)
        elif kind == f.HEADERS:
            self._on_headers(flags, sid, payload)
        elif kind == f.CONTINUATION:
            self._on_continuation(flags, sid, payload)
        elif kind == f.WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif kind == f.RST_STREAM:
            self._on_rst_stream(sid, payload)
        elif kind == f.SETTINGS:
            self._on_settings(flags, sid, payload)
        elif kind == f.PING:
            if sid:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent PING frame with incorrect identifier")
            if len(payload) != 8:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "client sent PING frame with incorrect length")
            if not flags & f.ACK:
                self.out.append(f.ping_ack(payload))
            self._control_frame()
        elif kind == f.PRIORITY:
            if not sid:
                raise H2ConnectionError(
                    f.PROTOCOL_ERROR, "client sent PRIORITY frame with incorrect identifier"
                )
            if len(payload) != 5:
                self._stream_error(sid, f.FRAME_SIZE_ERROR)
            self._control_frame()  # priorities are not used; a flood of them costs budget
        elif kind == f.GOAWAY:
            if sid:
                raise H2ConnectionError(
                    f.PROTOCOL_ERROR, "client sent GOAWAY frame with incorrect identifier"
                )
            self.goaway_sent = True  # the client said goodbye: finish what is open, then close
            self._close_if_done()
        elif kind == f.PUSH_PROMISE:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent PUSH_PROMISE frame")
        else:
            self._control_frame()  # an unknown frame type is ignored (section 4.1), not for free

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if not flags & f.PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent padded frame with incorrect length")
        return payload[1 : len(payload) - payload[0]]

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if not sid or not sid & 1:
            raise H2ConnectionError(
                f.PROTOCOL_ERROR, f"client sent HEADERS frame with incorrect identifier {sid}"
            )
        payload = self._unpad(flags, payload)
        self.block_bad_priority = False
        if flags & f.PRIORITY_FLAG:
            if len(payload) < 5:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "client sent HEADERS frame with incorrect length")
            self.block_bad_priority = (f.u32(payload) & 0x7FFFFFFF) == sid  # a stream depending on itself
            payload = payload[5:]
        self.block_sid = sid
        self.block_parts = [payload]
        self.block_size = len(payload)
        self.block_frames = 1
        self.block_end_stream = bool(flags & f.END_STREAM)
        if flags & f.END_HEADERS:
            self._header_block()
        elif self.block_size > self.header_limit:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "client sent too large header")

    def _on_continuation(self, flags: int, sid: int, payload: bytes) -> None:
        if not self.block_sid or sid != self.block_sid:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent unexpected CONTINUATION frame")
        self.block_parts.append(payload)
        self.block_size += len(payload)
        self.block_frames += 1
        if self.block_size > self.header_limit or self.block_frames > _MAX_CONTINUATIONS:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "client sent too large header (CONTINUATION flood)")
        if flags & f.END_HEADERS:
            self._header_block()

    def _header_block(self) -> None:
        sid = self.block_sid
        parts = self.block_parts
        block = parts[0] if len(parts) == 1 else b"".join(parts)
        self.block_sid = 0
        self.block_parts = []
        try:
            headers = self.decoder.decode(block)
        except hpack.OversizedHeaderListError:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "client sent too large header") from None
        except Exception as exc:  # any undecodable block (hpack errors, bad indexes): the client's fault
            raise H2ConnectionError(
                f.COMPRESSION_ERROR, f"client sent invalid HPACK data ({exc!r})"
            ) from None
        end_stream = self.block_end_stream
        stream = self.streams.get(sid)
        if stream is not None:  # trailers of a request body: accepted, not passed on
            if stream.remote_closed:
                self._reset(stream, f.STREAM_CLOSED)
            elif not end_stream:
                self._reset(stream, f.PROTOCOL_ERROR)
            else:
                self._remote_end(stream)
            return
        if sid <= self.last_stream_id:
            self._stream_error(sid, f.STREAM_CLOSED)  # a stream already finished (its HPACK state is kept)
            return
        self.last_stream_id = sid
        if self.block_bad_priority:
            self._stream_error(sid, f.PROTOCOL_ERROR)
            return
        self._request(sid, headers, end_stream)

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if not sid:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent DATA frame with incorrect identifier")
        flow = len(payload)  # padding counts against the windows too
        self.recv_window -= flow
        if self.recv_window < 0:
            raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "client violated connection flow control")
        data = self._unpad(flags, payload)
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.last_stream_id:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent DATA frame for an idle stream")
            self._connection_window_back(flow)  # a stream already done: its data goes, its window comes back
            return
        if stream.remote_closed:
            self._connection_window_back(flow)
            self._reset(stream, f.STREAM_CLOSED)
            return
        stream.recv_window -= flow
        if stream.recv_window < 0:
            self._connection_window_back(flow)
            self._reset(stream, f.FLOW_CONTROL_ERROR)
            return
        if not data and not flags & f.END_STREAM:
            self._control_frame()  # empty DATA frames move nothing: a flood of them costs budget
        self._body(stream, data, flow)
        if flags & f.END_STREAM and not stream.closed:
            self._remote_end(stream)

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(
                f.FRAME_SIZE_ERROR, "client sent WINDOW_UPDATE frame with incorrect length"
            )
        increment = f.u32(payload) & 0x7FFFFFFF
        if not sid:
            if not increment:
                raise H2ConnectionError(
                    f.PROTOCOL_ERROR, "client sent WINDOW_UPDATE frame with incorrect window increment 0"
                )
            self.send_window += increment
            if self.send_window > f.MAX_WINDOW:
                raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "client violated connection flow control")
            for waiting in self.streams.values():
                if waiting.pending:
                    self._mark(waiting)
        else:
            stream = self.streams.get(sid)
            if stream is None:
                if sid > self.last_stream_id:
                    raise H2ConnectionError(
                        f.PROTOCOL_ERROR, "client sent WINDOW_UPDATE frame for an idle stream"
                    )
                return
            if not increment:
                self._reset(stream, f.PROTOCOL_ERROR)
                return
            stream.send_window += increment
            if stream.send_window > f.MAX_WINDOW:
                self._reset(stream, f.FLOW_CONTROL_ERROR)
                return
            if stream.pending:
                self._mark(stream)
        self._wake_writers()

    def _on_rst_stream(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "client sent RST_STREAM frame with incorrect length")
        if not sid or sid > self.last_stream_id:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent RST_STREAM frame for an idle stream")
        stream = self.streams.get(sid)
        if stream is None:
            return
        if not stream.ended:
            self.resets += 1  # a request reset before its answer was complete
        self._drop(stream, None)
        self._client_gone(stream)
        self._check_resets()

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client sent SETTINGS frame with incorrect identifier")
        if flags & f.ACK:
            if payload:
                raise H2ConnectionError(
                    f.FRAME_SIZE_ERROR, "client sent SETTINGS frame with the ACK flag and nonzero length"
                )
            self.stream_recv_window = self.settings.http2_body_preread_size
            self._control_frame()
            return
        if len(payload) % 6:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "client sent SETTINGS frame with incorrect length")
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise H2ConnectionError(
                        f.FLOW_CONTROL_ERROR,
                        "client sent SETTINGS frame with incorrect INITIAL_WINDOW_SIZE value",
                    )
                delta = value - self.peer_window
                self.peer_window = value
                for stream in self.streams.values():
                    stream.send_window += delta  # may go below 0 (section 6.9.2)
                    if stream.send_window > f.MAX_WINDOW:
                        raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "client violated flow control")
                    if delta > 0 and stream.pending:
                        self._mark(stream)
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_FRAME_SIZE <= value <= f.MAX_FRAME_SIZE_LIMIT:
                    raise H2ConnectionError(
                        f.PROTOCOL_ERROR, "client sent SETTINGS frame with incorrect MAX_FRAME_SIZE value"
                    )
                self.peer_frame = value
            elif key == f.ENABLE_PUSH:
                if value > 1:
                    raise H2ConnectionError(
                        f.PROTOCOL_ERROR, "client sent SETTINGS frame with incorrect ENABLE_PUSH value"
                    )
            elif key == f.HEADER_TABLE_SIZE:
                if value < self.peer_table_size:
                    self.size_update_owed = True  # our next block says our table is 0
                self.peer_table_size = value
        self.out.append(f.SETTINGS_ACK)
        self._control_frame()
        self._wake_writers()

    def _control_frame(self) -> None:
        self.control_frames += 1
        if self.write_paused:
            self.control_while_paused += 1
        if self.control_frames > _CONTROL_BUDGET + 4 * self.requests:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "client sent too many SETTINGS or PING frames")

    def _check_resets(self) -> None:
        if self.resets > 2 * self.max_streams + self.requests // 2:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "client reset too many streams (rapid reset)")

    def _request(self, stream_id: int, headers: DecodedBlock, ended: bool) -> None:
        self.idle_since = 0.0
        if self.goaway_sent or len(self.streams) >= self.max_streams:
            if not self.goaway_sent:
                error_log().log(
                    "info",
                    f"concurrent streams exceeded {len(self.streams)}, client: {self.client_addr}",
                    self.conn_id,
                )
                self.resets += 1  # refusals are cheap for the client: they share the reset budget
            self._stream_error(stream_id, f.REFUSED_STREAM)
            if not self.streams:
                self.idle_since = time.monotonic()
            self._check_resets()
            return
        stream = H2Stream(self, stream_id)
        stream.send_window = self.peer_window
        stream.recv_window = self.stream_recv_window
        stream.remote_closed = ended
        self.streams[stream_id] = stream
        req = build_request(stream, headers, ended)
        stream.req = req
        if req.has_body:
            stream.body_deadline = time.monotonic() + req.settings.client_body_timeout
        self.ctx.process(req)

    def _body(self, stream: H2Stream, data: bytes, flow: int) -> None:
        req = stream.req
        if req is None:
            self._connection_window_back(flow)
            return
        stream.unacked += flow
        body = req.body
        body.feed(data)
        stream.body_deadline = time.monotonic() + req.settings.client_body_timeout
        limit = req.settings.client_max_body_size
        if limit and body.size > limit and body.error is None:
            body.fail(HttpError(413, "client intended to send too large body"))
            body.discard = True
        cl = req.content_length
        if cl is not None and body.size > cl and body.error is None:
            body.fail(HttpError(400, "client intended to send body data larger than declared"))
            body.discard = True
        if body.discard:
            body.chunks = []
            self.give_back_window(stream)
        elif body.waiter is not None or body.buffered() < self.settings.http2_body_preread_size:
            self.give_back_window(stream)

    def _remote_end(self, stream: H2Stream) -> None:
        stream.remote_closed = True
        stream.body_deadline = 0.0
        req = stream.req
        if req is not None and req.has_body:
            body = req.body
            cl = req.content_length
            if cl is not None and body.size < cl and body.error is None:
                body.fail(
                    HttpError(
                        400,
                        f"client prematurely closed stream: only {body.size} out of {cl} bytes of request body received",
                    )
                )
            body.finish()

    def give_back_window(self, stream: H2Stream) -> None:
        """Flow control for request bodies: the window opens again as the handler takes the bytes."""
        n = stream.unacked
        if n and not self.closed:
            stream.unacked = 0
            self._connection_window_back(n)
            if not stream.closed and not stream.remote_closed:
                stream.recv_window += n
                self.out.append(f.window_update(stream.stream_id, n))
            self._send()

    def _connection_window_back(self, n: int) -> None:
        if n > 0 and not self.closed:
            self.recv_window += n
            self.out.append(f.window_update(0, n))
            self._send()

    def body_wanted(self, stream: H2Stream) -> None:
        self.give_back_window(stream)

    # ------------------------------------------------------------------ frames out

    def send_headers(self, stream: H2Stream, block: bytes) -> None:
        """`block`: the response head, HPACK-encoded (hpack_codec.encode)."""
        if self.closed or stream.closed:
            return
        stream.head_block = block
        self._mark(stream)
        self._send()

    def flush_stream(self, stream: H2Stream) -> None:
        """`stream` has more to send: it goes into frames at the end of this turn, or now when a lot
        is waiting (so that the transport's buffer limits pace a large body's producer)."""
        if self.closed or stream.closed:
            return
        self._mark(stream)
        if stream.pending_size >= _FLUSH_NOW:
            self._flush()
        else:
            self._send()

    def _mark(self, stream: H2Stream) -> None:
        if not stream.dirty:
            stream.dirty = True
            self.dirty.append(stream)

    def _emit(self, stream: H2Stream) -> None:
        """The frames of what `stream` has ready: HEADERS, DATA as far as the windows allow, and
        END_STREAM on the last of them once the response is complete."""
        stream.dirty = False
        if stream.closed:
            return
        out = self.out
        sid = stream.stream_id
        ended = stream.ended
        block = stream.head_block
        if block is not None:
            stream.head_block = None
            if self.size_update_owed:
                block = TABLE_SIZE_ZERO + block
                self.size_update_owed = False
            last = ended and not stream.pending
            out.extend(f.header_frames(sid, block, last, self.peer_frame))
            if last:
                self._finish(stream)
                return
        pending = stream.pending
        while pending:
            window = self.send_window if self.send_window < stream.send_window else stream.send_window
            if window <= 0:
                # send_timeout runs from the last progress, as nginx's runs between two writes
                if not self.stalled_since:
                    self.stalled_since = time.monotonic()
                return
            self.stalled_since = 0.0
            chunk = pending[0]
            size = min(window, self.peer_frame, len(chunk))
            if size == len(chunk):
                pending.pop(0)
            else:
                pending[0] = chunk[size:]
                chunk = chunk[:size]
            stream.pending_size -= size
            self.send_window -= size
            stream.send_window -= size
            last = ended and not pending
            out.append(f.head(size, f.DATA, f.END_STREAM if last else 0, sid))
            out.append(chunk)
            if last:
                self._finish(stream)
                return
        if ended:
            out.append(f.head(0, f.DATA, f.END_STREAM, sid))
            self._finish(stream)

    def _finish(self, stream: H2Stream) -> None:
        """END_STREAM is out: the stream is done on our side. A response complete before its request
        body tells the client with RST_STREAM NO_ERROR that it may stop sending it."""
        self._drop(stream, None if stream.remote_closed else f.NO_ERROR)

    def _drop(self, stream: H2Stream, code: int | None) -> None:
        """`stream` ends here (RST_STREAM `code` first, unless None): out of the table, the connection
        window of a body nobody will read given back, and the idle clock started with the last one."""
        if code is not None:
            self._stream_error(stream.stream_id, code)
        stream.closed = True
        self.streams.pop(stream.stream_id, None)
        self._connection_window_back(stream.unacked)
        stream.unacked = 0
        if not self.streams:
            self.idle_since = time.monotonic()

    async def wait_writable(self, stream: H2Stream) -> None:
        fut = self.ctx.loop.create_future()
        self.writable_waiters.append(fut)
        await fut

    def _wake_writers(self) -> None:
        waiters, self.writable_waiters = self.writable_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def stream_done(self, stream: H2Stream, abort: bool) -> None:
        req = stream.req
        if req is not None and stream.unacked:
            self.give_back_window(stream)  # a body nobody read still frees the connection window
        if abort or (req is not None and req.client_closed) or not stream.head_done:
            # aborted, or a handler that finished without a head: nothing to say, reset the stream
            self._drop(stream, None if stream.closed else f.INTERNAL_ERROR)
            self._close_if_done()
            return
        stream.ended = True
        self._mark(stream)
        self._send()

    def _stream_error(self, sid: int, code: int) -> None:
        self.out.append(f.rst_stream(sid, code))
        self._send()

    def _reset(self, stream: H2Stream, code: int) -> None:
        """A stream error of ours (RST_STREAM): the stream ends, its request sees the client gone."""
        self._drop(stream, code)
        self._client_gone(stream)

    def _send(self) -> None:
        """Frames leave together at the end of this loop turn (_flush).

        Under TLS each transport write is a TLS record and a syscall; answering a batch of streams
        with one write instead of two or three per stream is most of what an HTTP/2 request costs."""
        if not self._flush_scheduled and not self.closed and self.transport is not None:
            self._flush_scheduled = True
            self.ctx.loop.call_soon(self._flush)

    def _write_out(self) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        if self.dirty:
            dirty, self.dirty = self.dirty, []
            for stream in dirty:
                self._emit(stream)
            if self.stalled_since and not any(s.pending for s in self.streams.values()):
                self.stalled_since = 0.0
            if self.writable_waiters:
                self._wake_writers()
        if self.out:
            data = b"".join(self.out)
            self.out = []
            t.write(data)
            if self.control_while_paused and not self.streams and t.get_write_buffer_size() > _TRANSPORT_HIGH:
                # control-frame answers piling up for a client that does not read (a large
                # response just finished may leave as much unsent: that alone is no flood)
                self._abort_connection(None, "client does not read (flood of control frames)")

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_out()
        self._close_if_done()

    # ------------------------------------------------------------------ ending

    def _client_gone(self, stream: H2Stream) -> None:
        stream.closed = True
        req = stream.req
        if req is None:
            return
        req.client_closed = True
        req.body.fail(HttpError(499, "client reset the stream"))
        if req.on_client_closed is not None:
            callback, req.on_client_closed = req.on_client_closed, None
            callback()
        self._wake_writers()

    def _abort_connection(self, code: int | None, reason: str) -> None:
        if self.closed:
            return
        error_log().log(
            "info",
            f"{reason}, client: {self.client_addr}, server: {self.server_addr}:{self.server_port}",
            self.conn_id,
        )
        self.dirty = []  # no more of any response: the error goes now
        if code is not None:
            self.out.append(f.goaway(self.last_stream_id, code))
        self.close(abort=code is None)

    def _close_if_done(self) -> None:
        if self.goaway_sent and not self.streams and not self.closed:
            self.close()

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        if not abort:
            self._write_out()  # frames still queued (the last END_STREAM, a GOAWAY) go first
            if self.closed:
                return  # the write found a client that does not read and aborted
        t = self.transport
        self.closed = True
        if t is not None:
            if abort:
                t.abort()
            else:
                t.close()

    def graceful(self, close_idle: bool) -> None:
        """Quit and reload: GOAWAY with the last stream we took; finish those, then close."""
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = True
        self.out.append(f.goaway(self.last_stream_id, f.NO_ERROR))
        self._write_out()
        self._close_if_done()

    # ------------------------------------------------------------------ timeouts (the server's sweep)

    def _schedule_check(self) -> None:
        self.deadline = time.monotonic() + _CHECK_EVERY

    def check_deadline(self, now: float) -> None:
        if self.closed:
            return
        s = self.settings
        if not self.streams and self.idle_since and now - self.idle_since > s.keepalive_timeout:
            self.graceful(close_idle=True)
            self.close()
            return
        if self.stalled_since and now - self.stalled_since > s.send_timeout:
            self._abort_connection(
                None, "client timed out (110: Connection timed out) while sending response to client"
            )
            return
        for stream in list(self.streams.values()):
            if stream.body_deadline and now > stream.body_deadline and stream.req is not None:
                stream.body_deadline = 0.0
                stream.req.body.fail(HttpError(408, "client timed out reading body"))
                self._drop(stream, f.CANCEL)
        self._schedule_check()


_PSEUDO: Final = frozenset({b":method", b":path", b":scheme", b":authority"})
# headers of one HTTP/1.1 connection (RFC 9113 8.2.2): dropped, so that none of them (above all
# Transfer-Encoding) can change how the core reads this stream
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_NAME_OK: Final = 0  # a name made of a-z 0-9 and '-'
_NAME_UNDERSCORE: Final = 1  # ... and '_': kept only with underscores_in_headers
_NAME_IGNORED: Final = 2  # another character nginx lets pass but ignores (ignore_invalid_headers)
_NAME_BAD: Final = 3  # upper case, a control character, space, ':' or DEL: the request is a 400
_name_kinds: dict[bytes, int] = {}


def name_kind(name: bytes) -> int:
    """How nginx's HTTP/2 code takes a header name (ngx_http_v2_validate_header)."""
    kind = _name_kinds.get(name, -1)
    if kind >= 0:
        return kind
    kind = _NAME_OK if name else _NAME_BAD
    for ch in name:
        if 0x61 <= ch <= 0x7A or 0x30 <= ch <= 0x39 or ch == 0x2D:
            continue
        if ch <= 0x20 or ch == 0x7F or ch == 0x3A or 0x41 <= ch <= 0x5A:
            kind = _NAME_BAD
            break
        if ch == 0x5F:
            kind = max(kind, _NAME_UNDERSCORE)
        else:
            kind = _NAME_IGNORED
    if len(_name_kinds) < 1024:
        _name_kinds[name] = kind
    return kind


_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]")


class Prepared:
    """What a header block says, before any request: the pseudo-headers, the regular headers as
    str, and nginx's 400 when it is malformed. Kept with a remembered block (hpack_codec), so a
    repeated block is read once per connection."""

    __slots__ = ("method", "path", "authority", "scheme", "headers", "error", "length")

    def __init__(
        self,
        method: str,
        path: str,
        authority: str,
        scheme: str,
        headers: list[tuple[str, str]],
        error: tuple[int, str] | None,
    ) -> None:
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme
        self.headers = headers
        self.error = error
        length = 0
        for name, value in headers:
            length += len(name) + len(value) + 4
        self.length = length + len(method) + len(path) + 12  # $request_length, as nginx counts it


def prepare(raw: list[tuple[bytes, bytes]], underscores: bool) -> Prepared:
    method = path = authority = scheme = ""
    headers: list[tuple[str, str]] = []
    cookies: list[str] = []
    error: tuple[int, str] | None = None
    seen_regular = False
    seen_pseudo: set[bytes] = set()
    for rn, rv in raw:
        problem = ""
        if _BAD_VALUE.search(rv) is not None:
            problem = f'client sent header "{rn.decode("latin-1")}" with invalid value'
        elif rn[:1] == b":":
            if seen_regular:
                problem = "client sent pseudo-header after a regular header"
            elif rn not in _PSEUDO:
                problem = f'client sent unknown pseudo-header "{rn.decode("latin-1")}"'
            elif rn in seen_pseudo:
                problem = f"client sent duplicate {rn.decode('latin-1')} header"
            else:
                seen_pseudo.add(rn)
                value = rv.decode("latin-1")
                if rn == b":method":
                    method = value
                elif rn == b":path":
                    path = value
                elif rn == b":authority":
                    authority = value
                else:
                    scheme = value
                continue
        else:
            seen_regular = True
            kind = name_kind(rn)
            if kind == _NAME_BAD:
                problem = f'client sent invalid header name: "{rn.decode("latin-1")}"'
            elif kind == _NAME_IGNORED or (kind == _NAME_UNDERSCORE and not underscores) or rn in _HOP_BY_HOP:
                continue
        if problem:
            if error is None:
                error = (400, problem)
            continue
        name = rn.decode("latin-1")
        value = rv.decode("latin-1")
        if name == "cookie":
            cookies.append(value)
        else:
            headers.append((name, value))
    if cookies:
        headers.append(("cookie", "; ".join(cookies)))
    if error is None:
        if not method:
            error = (400, "client sent no :method header")
        elif not scheme:
            error = (400, "client sent no :scheme header")
        elif not path:
            error = (400, "client sent no :path header")
    return Prepared(method, path, authority, scheme, headers, error)


def build_request(stream: H2Stream, block: DecodedBlock, ended: bool) -> Request:
    """The Request of a header block: pseudo-headers to method/target/host, as nginx maps them, and
    nginx's answer (400) to a malformed block."""
    conn = stream.h2
    p = block.prepared
    if not isinstance(p, Prepared):
        p = block.prepared = prepare(block.headers, conn.settings.underscores_in_headers)
    method = p.method
    path = p.path
    req = Request(stream, method or "GET", path, 1, "2.0")
    req.keep_alive = True
    headers = req.headers
    header_list = req.header_list
    for name, value in p.headers:
        header_list.append((name, value))
        headers[name] = headers[name] + ", " + value if name in headers else value
    if p.authority and "host" not in headers:
        headers["host"] = p.authority
        header_list.append(("host", p.authority))
    req.request_length = p.length
    ctx = stream.ctx
    try:
        if p.error is not None:
            raise HttpError(p.error[0], p.error[1])
        target_path, args, _ = split_target(path)
        host = headers.get("host", "")
        req.host = validate_host(host) if host else ""
        req.args = args
        table = ctx.server_tables.get(conn.listen_key)
        if table is not None:
            req.server = table.find(req.host)
        req.settings = req.server.settings
        if not req.host:
            req.host = req.server.primary_name or ""
        req.uri = normalize_path(target_path, req.settings.merge_slashes)
        cl = headers.get("content-length")
        if cl is not None:
            if not (cl.isascii() and cl.isdigit()):
                raise HttpError(400, 'client sent invalid "Content-Length" header')
            req.content_length = int(cl)
        if not ended:
            req.has_body = True
            req.body = Body()
        elif req.content_length:
            raise HttpError(400, "client prematurely closed stream: body shorter than Content-Length")
        if method == "TRACE":
            raise HttpError(405, "TRACE method")
    except HttpError as exc:
        req.error_status = exc.status
        req.vars["parse_error"] = exc.reason
    return req
