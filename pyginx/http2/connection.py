"""One HTTP/2 connection (ALPN h2 over TLS), driven by the `h2` library, serving each stream through
the ordinary request code (see stream.py).

Defences against the known HTTP/2 attacks, each bounded per connection:

* rapid reset (CVE-2023-44487): streams the client resets before their response is complete cost
  budget; past 2 x http2_max_concurrent_streams unanswered resets the connection gets GOAWAY
  ENHANCE_YOUR_CALM (nginx 1.25.3 limits the same thing);
* CONTINUATION flood: the h2 library refuses more than 64 CONTINUATION frames of one header block, and
  the decoded header list is bounded (below), so a never-ending header block is a connection error;
* HPACK bomb: SETTINGS_MAX_HEADER_LIST_SIZE is nginx's large_client_header_buffers (4 x 8k); a block
  that decodes to more is a connection error (COMPRESSION_ERROR / ENHANCE_YOUR_CALM), whatever its
  compressed size;
* SETTINGS / PING flood: control frames are counted; more than _CONTROL_BUDGET plus a few per answered
  request is ENHANCE_YOUR_CALM; and what they make us send (ACKs) is bounded by the transport buffer
  (a client that floods without reading is closed);
* zero-window stalls: a response that cannot send because the client keeps its window at 0 waits at
  most send_timeout, then the connection is closed (nginx's send_timeout);
* stream-count exhaustion: a stream beyond http2_max_concurrent_streams is refused alone (RST_STREAM
  REFUSED_STREAM, as nginx), a client that opens twice as many is a connection error; a stream that
  holds a slot without sending its body is closed by client_body_timeout; an idle connection by
  keepalive_timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from pyginx.errors import HttpError
from pyginx.http.request import Body, Request
from pyginx.http.uri import normalize_path, split_target, validate_host
from pyginx.http2.stream import H2Stream
from pyginx.log import error_log

if TYPE_CHECKING:
    from pyginx.http.router import ListenKey
    from pyginx.http.server import ServerContext
    from pyginx.tls.variables import TlsInfo

_CONTROL_BUDGET = 200  # SETTINGS + PING frames a connection may send before it must ask for something
_TRANSPORT_HIGH = 1024 * 1024  # our unsent bytes for a client that does not read: past this, close
_CHECK_EVERY = 0.5
_FLUSH_NOW = 64 * 1024  # DATA queued in h2 past this is written at once, not at the end of the turn


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
        self.unacked = 0
        number, size = s.large_client_header_buffers
        self.max_streams = s.http2_max_concurrent_streams
        # Outbound headers are the core's own response heads, already lower-cased, trimmed and free
        # of connection-specific fields (stream.parse_head): h2's per-header re-validation of them
        # would be a second pass over every response for nothing. Inbound headers stay validated.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: s.http2_body_preread_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: number * size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self.h2.decoder.max_header_list_size = number * size  # effective now, not at the client's ACK
        self.writable_waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self.queued_data = 0  # DATA bytes given to h2 since the last flush
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
        self.h2.initiate_connection()
        # The client is told http2_max_concurrent_streams; h2 itself is let to take more, so that a
        # stream over the limit is decoded (HPACK state stays in step) and refused alone with
        # RST_STREAM REFUSED_STREAM, as nginx does. Past twice the limit it is a connection error.
        self.h2.local_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 2 * self.max_streams + 8
        self.h2.local_settings.acknowledge()
        # the connection-level window (all streams' bodies in flight): http2_recv_buffer_size
        extra = self.settings.http2_recv_buffer_size - 65535
        if extra > 0:
            self.h2.increment_flow_control_window(extra)
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
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.TooManyStreamsError:
            self._abort_connection(
                h2.errors.ErrorCodes.REFUSED_STREAM, "client exceeded http2_max_concurrent_streams"
            )
            return
        except h2.exceptions.DenialOfServiceError as exc:
            self._abort_connection(
                h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, f"client sent too large header ({exc})"
            )
            return
        except h2.exceptions.ProtocolError as exc:
            self._abort_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR, f"client sent invalid HTTP/2 ({exc})")
            return
        except Exception as exc:  # hpack errors and the like: the client's fault, never a traceback
            self._abort_connection(
                h2.errors.ErrorCodes.COMPRESSION_ERROR, f"client sent invalid HTTP/2 ({exc!r})"
            )
            return
        for event in events:
            if self.closed:
                return
            self._event(event)
        self._flush()  # every stream answered from these frames leaves in one write

    def eof_received(self) -> bool | None:
        return None

    # ------------------------------------------------------------------ frames in

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event.stream_id, event.headers, event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            self._body(event.stream_id, event.data, event.flow_controlled_length)
            if event.stream_ended is not None:
                self._body_end(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._body_end(event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            if event.stream_ended is not None:
                self._body_end(event.stream_id)  # trailers of a request body: accepted, not passed on
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                if not stream.ended:
                    self.resets += 1  # a request reset before its answer was complete
                self._client_gone(stream)
                if self.resets > 2 * self.max_streams + self.requests // 2:
                    self._abort_connection(
                        h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "client reset too many streams (rapid reset)"
                    )
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self._control_frame()
            for stream in list(self.streams.values()):
                if stream.pending:
                    self.flush_stream(stream)
            self._wake_writers()
        elif isinstance(event, h2.events.PingReceived | h2.events.SettingsAcknowledged):
            self._control_frame()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_sent = True  # the client said goodbye: finish what is open, then close
            self._close_if_done()

    def _control_frame(self) -> None:
        self.control_frames += 1
        if self.write_paused:
            self.control_while_paused += 1
        if self.control_frames > _CONTROL_BUDGET + 4 * self.requests:
            self._abort_connection(
                h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "client sent too many SETTINGS or PING frames"
            )

    def _request(self, stream_id: int, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        self.idle_since = 0.0
        if self.goaway_sent or len(self.streams) >= self.max_streams:
            if not self.goaway_sent:
                error_log().log(
                    "info",
                    f"concurrent streams exceeded {len(self.streams)}, client: {self.client_addr}",
                    self.conn_id,
                )
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = H2Stream(self, stream_id)
        self.streams[stream_id] = stream
        req = build_request(stream, headers, ended)
        stream.req = req
        if req.has_body:
            stream.body_deadline = time.monotonic() + req.settings.client_body_timeout
        self.ctx.process(req)

    def _body(self, stream_id: int, data: bytes, flow: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.req is None:
            self.h2.acknowledge_received_data(flow, stream_id) if flow else None
            return
        req = stream.req
        stream.unacked += flow
        self.unacked += flow
        req.body.feed(data)
        stream.body_deadline = time.monotonic() + req.settings.client_body_timeout
        limit = req.settings.client_max_body_size
        if limit and req.body.size > limit and req.body.error is None:
            req.body.fail(HttpError(413, "client intended to send too large body"))
            req.body.discard = True
        if req.body.discard:
            req.body.chunks = []
            self.give_back_window(stream)
        elif req.body.waiter is not None or req.body.buffered() < self.settings.http2_body_preread_size:
            self.give_back_window(stream)

    def _body_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.req is not None:
            stream.body_deadline = 0.0
            stream.req.body.finish()

    def give_back_window(self, stream: H2Stream) -> None:
        """Flow control for request bodies: the window opens again as the handler takes the bytes."""
        if stream.unacked and not self.closed:
            n, stream.unacked = stream.unacked, 0
            self.unacked -= n
            try:
                self.h2.acknowledge_received_data(n, stream.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
            self._send()

    def body_wanted(self, stream: H2Stream) -> None:
        self.give_back_window(stream)

    # ------------------------------------------------------------------ frames out

    def send_headers(self, stream: H2Stream, headers: list[tuple[bytes, bytes]]) -> None:
        if self.closed or stream.closed:
            return
        try:
            self.h2.send_headers(stream.stream_id, headers)
        except h2.exceptions.ProtocolError:
            stream.closed = True
            return
        self._send()

    def flush_stream(self, stream: H2Stream) -> None:
        """Send what the window allows of `stream`'s pending DATA; END_STREAM once all is out."""
        if self.closed or stream.closed:
            return
        h2c = self.h2
        sid = stream.stream_id
        try:
            while stream.pending:
                window = h2c.local_flow_control_window(sid)
                if window <= 0:
                    # send_timeout runs from the last progress, as nginx's runs between two writes
                    if not self.stalled_since:
                        self.stalled_since = time.monotonic()
                    break
                self.stalled_since = 0.0
                chunk = stream.pending[0]
                size = min(window, h2c.max_outbound_frame_size, len(chunk))
                h2c.send_data(sid, chunk[:size])
                self.queued_data += size
                stream.pending_size -= size
                if size == len(chunk):
                    stream.pending.pop(0)
                else:
                    stream.pending[0] = chunk[size:]
            if not stream.pending:
                if self.stalled_since and not any(s.pending for s in self.streams.values()):
                    self.stalled_since = 0.0
                if stream.ended:
                    h2c.end_stream(sid)
                    stream.closed = True
                    self.streams.pop(sid, None)
                    self.idle_since = time.monotonic() if not self.streams else 0.0
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            stream.closed = True
            self.streams.pop(sid, None)
        self._send()
        if not stream.pending_size or stream.closed:
            self._wake_writers()
        self._close_if_done()

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
        if abort or (req is not None and req.client_closed):
            if not stream.closed:
                stream.closed = True
                try:
                    self.h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                except h2.exceptions.ProtocolError:
                    pass
            self.streams.pop(stream.stream_id, None)
            self._send()
            self._close_if_done()
            return
        if not stream.head_done and not stream.closed:
            # a handler that finished without a head: nothing to say, reset the stream
            stream.closed = True
            self.streams.pop(stream.stream_id, None)
            self._close_if_done()
            return
        stream.ended = True
        self.flush_stream(stream)

    def _send(self) -> None:
        """Frames are queued in h2: they leave together at the end of this loop turn (_flush).

        Under TLS each transport write is a TLS record and a syscall; answering a batch of streams
        with one write instead of three per stream (HEADERS, DATA, END_STREAM) is most of what an
        HTTP/2 request costs the worker."""
        if self.queued_data >= _FLUSH_NOW:
            # a large body leaves now, so that the transport's buffer limits (pause_writing, which
            # drain() waits on) pace its producer as on HTTP/1.1
            self._flush()
        elif not self._flush_scheduled and not self.closed and self.transport is not None:
            self._flush_scheduled = True
            self.ctx.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.queued_data = 0
        t = self.transport
        if t is None or self.closed:
            return
        data = self.h2.data_to_send()
        if data:
            t.write(data)
            if self.control_while_paused and not self.streams and t.get_write_buffer_size() > _TRANSPORT_HIGH:
                # control-frame answers piling up for a client that does not read (a large
                # response just finished may leave as much unsent: that alone is no flood)
                self._abort_connection(None, "client does not read (flood of control frames)")

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

    def _abort_connection(self, code: h2.errors.ErrorCodes | None, reason: str) -> None:
        if self.closed:
            return
        error_log().log(
            "info",
            f"{reason}, client: {self.client_addr}, server: {self.server_addr}:{self.server_port}",
            self.conn_id,
        )
        t = self.transport
        if code is not None and t is not None:
            try:
                self.h2.close_connection(error_code=code)
                t.write(self.h2.data_to_send())
            except Exception:
                pass
        self.close(abort=code is None)

    def _close_if_done(self) -> None:
        if self.goaway_sent and not self.streams and not self.closed:
            self.close()

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        if not abort:
            self._flush()  # frames still queued in h2 (the last END_STREAM, a GOAWAY) go first
            if self.closed:
                return  # the flush found a client that does not read and aborted
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
        self._flush()  # what h2 has queued goes before our own GOAWAY frame
        # h2's close_connection() would end its state machine and with it the streams still being
        # answered: the graceful GOAWAY is written as a frame of our own, the streams go on
        goaway = hyperframe.frame.GoAwayFrame(0)
        goaway.last_stream_id = self.h2.highest_inbound_stream_id
        goaway.error_code = 0
        if self.transport is not None:
            self.transport.write(goaway.serialize())
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
                self.streams.pop(stream.stream_id, None)
                stream.closed = True
                try:
                    self.h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
                except h2.exceptions.ProtocolError:
                    pass
                self._send()
        self._schedule_check()


def build_request(stream: H2Stream, raw: list[tuple[bytes, bytes]], ended: bool) -> Request:
    """The Request of a HEADERS frame: pseudo-headers to method/target/host, as nginx maps them."""
    method = path = authority = ""
    headers_list: list[tuple[str, str]] = []
    cookies: list[str] = []
    for rn, rv in raw:
        name = rn.decode("latin-1")
        value = rv.decode("latin-1")
        if name.startswith(":"):
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif name == ":authority":
                authority = value
            continue
        if name == "cookie":
            cookies.append(value)
            continue
        headers_list.append((name, value))
    if cookies:
        headers_list.append(("cookie", "; ".join(cookies)))
    req = Request(stream, method or "GET", path, 1, "2.0")
    req.keep_alive = True
    headers = req.headers
    for name, value in headers_list:
        req.header_list.append((name, value))
        headers[name] = headers[name] + ", " + value if name in headers else value
    if authority and "host" not in headers:
        headers["host"] = authority
        req.header_list.append(("host", authority))
    length = 0
    for name, value in headers_list:
        length += len(name) + len(value) + 4
    req.request_length = length + len(method) + len(path) + 12
    ctx = stream.ctx
    try:
        if not method or not path:
            raise HttpError(400, "client sent no :method or :path pseudo-header")
        target_path, args, absolute = split_target(path)
        host = headers.get("host", "")
        req.host = validate_host(host) if host else ""
        req.args = args
        table = ctx.server_tables.get(stream.h2.listen_key)
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
        del absolute
    except HttpError as error:
        req.error_status = error.status
        req.vars["parse_error"] = error.reason
    return req
