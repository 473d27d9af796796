"""One client connection: httptools parser glue, keep-alive, pipelining, limits, timeouts, flow control.

Requests are answered from the parser's callbacks: a synchronous handler (static files) writes its
response before `on_headers_complete` returns. An async handler (proxy) runs as a task while later
pipelined requests wait in `queue`, answered in order. Timeouts are deadlines checked by the server's
coarse sweep (no TimerHandle per request).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httptools

from pyginx.errors import HttpError
from pyginx.http import proxy_protocol
from pyginx.http.chunklimit import INVALID, TOO_LARGE, ChunkScan
from pyginx.http.request import Body, Request
from pyginx.http.uri import normalize_path, split_target, validate_host
from pyginx.log import error_log

if TYPE_CHECKING:
    from pyginx.http.server import ServerContext
    from pyginx.tls.variables import TlsInfo

# States of the connection, for timeouts and graceful shutdown.
WAIT_FIRST = 0  # connected, no byte of a request yet (client_header_timeout)
IDLE = 1  # keep-alive wait between requests (keepalive_timeout)
HEAD = 2  # reading a request head (client_header_timeout, one deadline for the whole head)
BUSY = 3  # a request is being handled
LINGER = 4  # response sent, discarding what the client still sends before closing
CLOSED = 5

_METHOD_TOKEN = re.compile(rb"[A-Z_\-]+\Z")
_MAX_HEADERS = 1000  # nginx's max_headers default (1.29.8; distributions backported it): more is a 494
# the most write() holds for the end of the loop turn: a small response (head and body) fits; a larger
# one goes to the transport at once, which applies the flow control
_HOLD_MAX = 16 * 1024
_MAX_QUEUED = 16  # pipelined requests parsed ahead of the one being answered, before reading pauses
_BODY_HIGH_WATER = 256 * 1024
_MAX_OFF_T = (1 << 63) - 1  # nginx's NGX_MAX_OFF_T_VALUE: the largest Content-Length or chunk size


# the major version of a request line whose target nginx accepts (origin or absolute form): nginx
# answers 505 for a major above 1 as soon as it reads one, whatever comes after it
_VERSION_MAJOR = re.compile(
    rb"(?m)^[A-Za-z_\-]+ +(?:/|[A-Za-z][A-Za-z0-9+.\-]*://)[!-~\x80-\xff]* +HTTP/([1-9][0-9]{0,8})"
)


def transfer_encoding_error(message: str, http10: bool, earlier: list[bytes]) -> HttpError:
    """nginx's verdict on a Transfer-Encoding llhttp refused (ngx_http_process_request_header):
    a duplicate header or HTTP/1.0 is 400, any value other than `chunked` is 501. `earlier` holds
    the values of Transfer-Encoding headers already parsed. (Content-Length together with it is
    let through llhttp, lenient_chunked_length, and judged in _build_request.)"""
    if earlier and "invalid `transfer-encoding` header value" in message:
        return HttpError(400, "duplicate Transfer-Encoding header")
    if http10:
        return HttpError(400, 'client sent HTTP/1.0 request with "Transfer-Encoding" header')
    return HttpError(501, 'client sent unknown "Transfer-Encoding"')


_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


def _percent_byte(m: re.Match[bytes]) -> bytes:
    return b"%%%02X" % m.group()[0]


_STOP = HttpError(0, "the connection reads no more requests")
# the header and URL pieces of a parked connection (park_idle): shared and never appended to (the next
# on_message_begin gives the connection lists of its own)
_PARKED_HEADERS: list[tuple[bytes, bytes]] = []
_PARKED_URL: list[bytes] = []
_PARK_AT_ONCE = 256  # open connections above which an idle one parks as soon as it is idle
_TIMED_OUT = "client timed out (110: Connection timed out)"


# A request's header names as sent -> (name, lower-case name, holds "_"): clients send the same few
# names again and again, so each is decoded once. Bounded: past the limit, names are decoded per use.
_header_names: dict[bytes, tuple[str, str, bool]] = {}
_HEADER_NAMES_MAX = 1024


def _header_name(raw: bytes) -> tuple[str, str, bool]:
    name = raw.decode("latin-1")
    lower = name.lower()
    known = (name, lower, "_" in lower)
    if len(_header_names) < _HEADER_NAMES_MAX and len(raw) <= 64:
        _header_names[raw] = known
    return known


class _ParseAbort(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in HttpConnection.pending_error."""


class HttpConnection(asyncio.Protocol):
    # Slots, not a __dict__: an idle keep-alive connection should cost as little memory as possible
    # (pyginx holds 10,000 of them per worker in a few KiB each).
    __slots__ = (
        "_begun",
        "_chunk_req",
        "_chunk_scan",
        "_chunk_sync",
        "_completed_in_feed",
        "_deferred",
        "_dispatch_again",
        "_dispatching",
        "_drain_waiters",
        "_dup_fd",
        "_feed",
        "_head_bytes",
        "_header_bytes",
        "_headers",
        "_line_prefix",
        "_linger_until",
        "_method_override",
        "_method_stash",
        "_out",
        "_sent_mark",
        "_slow",
        "_sock_fd",
        "_tail",
        "_upgrade_pending",
        "_url_len",
        "_url_parts",
        "_write_waiter",
        "active",
        "client_addr",
        "client_port",
        "closing_after_response",
        "conn_id",
        "ctx",
        "cur",
        "deadline",
        "keepalive_conf",
        "listen_key",
        "parse_failed",
        "parser",
        "pending_error",
        "proxy_protocol",
        "queue",
        "read_paused",
        "requests",
        "server_addr",
        "server_port",
        "state",
        "transport",
        "tunnel",
        "tunnel_eof",
        "tunnel_lost",
        "write_paused",
    )

    # Declared at class level so that type checkers see them across the request <-> connection cycle.
    conn_id: int
    client_addr: str
    client_port: int
    server_addr: str
    server_port: int
    requests: int
    # $scheme and the TLS side of the connection; pyginx/http/tls_conn.py's subclass sets both
    scheme = "http"
    tls: TlsInfo | None = None

    # the request scheme ($scheme, redirects); a TLS connection says "https"
    scheme = "http"

    def __init__(self, ctx: ServerContext, listen_key: tuple[str, int, str | None]) -> None:
        self.ctx = ctx
        self.listen_key = listen_key
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpRequestParser(self)  # None while parked (park_idle)
        self.parser.set_dangerous_leniencies(lenient_version=True, lenient_chunked_length=True)
        self.conn_id = 0
        self.client_addr = ""
        self.client_port = 0
        self.server_addr = ""
        self.server_port = 0
        self.state = WAIT_FIRST
        self.deadline = 0.0
        self.requests = 0
        self.queue: list[Request] = []  # short (<= _MAX_QUEUED): a list is smaller than a deque
        self.active: Request | None = None
        self.cur: Request | None = None  # the request whose bytes the parser is reading
        self.closing_after_response = False  # graceful shutdown / retirement: answer with close
        self.pending_error: HttpError | None = None
        self.parse_failed = False
        self._slow = False  # any reason for data_received to leave its fast path (see _special_input)
        self.read_paused = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._url_parts: list[bytes] = []
        self._url_len = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head_bytes = 0
        self._method_override: str | None = None
        self._method_stash: bytes | None = None
        self._completed_in_feed = 0
        self._line_prefix: bytes | None = b""  # see data_received
        self._begun = False  # between on_message_begin and on_message_complete
        self._dispatching = False
        self._dispatch_again = False
        self._deferred = False  # a request with a body waits in `queue` for the end of this feed
        self._linger_until = 0.0
        self._upgrade_pending: bytearray | None = None
        # a chunked body's size lines, followed beside llhttp (pyginx.http.chunklimit)
        self._chunk_scan: ChunkScan | None = None
        self._chunk_req: Request | None = None
        self._chunk_sync = False  # the scan starts where the head that announced it ends
        self._tail = b""  # the last bytes of a feed that ended inside a message head (for that)
        self.tunnel: Callable[[bytes], None] | None = None
        self.tunnel_lost: Callable[[Exception | None], None] | None = None
        self.tunnel_eof: Callable[[], None] | None = None
        self._dup_fd = -1
        self._sock_fd = -1
        self._write_waiter: asyncio.Future[None] | None = None
        self._sent_mark = 0
        self._feed = b""  # this feed's bytes while they begin a message (see _version)
        self._out = b""  # small writes held until the end of this loop turn (see write)
        self.keepalive_conf = ctx.default_server.settings
        # listen ... proxy_protocol: a Pending header until it is read, then its ProxyHeader
        self.proxy_protocol: Any = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        ctx = self.ctx
        self.conn_id = ctx.next_conn_id()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        # interned: thousands of connections from a few clients to a few listeners share the texts
        if isinstance(peer, tuple):
            self.client_addr, self.client_port = sys.intern(peer[0]), peer[1]
        else:
            self.client_addr = "unix:"
        if isinstance(local, tuple):
            self.server_addr, self.server_port = sys.intern(local[0]), local[1]
        else:
            self.server_addr = f"unix:{local}" if local else "unix:"
        # the socket's descriptor is asked for by sendfile() only: uvloop keeps the socket object it
        # makes for get_extra_info("socket"), which an idle connection need not hold
        self.transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        ctx.connection_opened(self)
        if ctx.proxy_protocol_listens and self.listen_key in ctx.proxy_protocol_listens:
            self.proxy_protocol = proxy_protocol.Pending()
            self._slow = True  # the header comes first: read in _special_input
        self.state = WAIT_FIRST
        self.deadline = time.monotonic() + self.keepalive_conf.client_header_timeout
        if ctx.accepting_closed and not ctx.graceful_keep_idle:
            # accepted in the instant before shutdown: still answer the first request, then close
            self.closing_after_response = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._out = b""
        self.state = CLOSED
        self._slow = True
        self.deadline = 0.0
        if self.tunnel_lost is not None:
            self.tunnel_lost(exc)
        for req in ([self.active] if self.active else []) + list(self.queue):
            req.client_closed = True
            req.body.fail(HttpError(499, "client closed connection"))
            if req.on_client_closed is not None:
                callback, req.on_client_closed = req.on_client_closed, None
                callback()
        self._wake_writers(ConnectionResetError("client closed the connection"))
        if self._dup_fd >= 0:
            try:
                self.ctx.loop.remove_writer(self._dup_fd)
            except Exception:
                pass
            os.close(self._dup_fd)
            self._dup_fd = -1
        active = self.active
        if active is not None and not active.finished and not active.head_sent:
            # logged as nginx logs a request the client abandoned (499) once the handler stops
            active.status = 499
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._sent_mark = self.transport.get_write_buffer_size() if self.transport else 0
        if self.deadline == 0.0 or self.state == BUSY:
            self.deadline = time.monotonic() + self._send_timeout()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.state == BUSY:
            self.deadline = 0.0
        self._wake_writers(None)

    def eof_received(self) -> bool | None:
        if self.tunnel_eof is not None:
            self.tunnel_eof()
            return True  # half-close: the tunnel decides when to close our side
        if self.state in (WAIT_FIRST, IDLE, LINGER) or (self.state == HEAD and self.active is None):
            self.close()
            return None
        # half-closed client with a request in progress: finish answering, then close
        self.closing_after_response = True
        active = self.active
        if active is not None:
            active.keep_alive = False
            if active.on_client_closed is not None and not active.head_sent:
                # nginx's ngx_http_upstream_check_broken_connection: a client that closed its side
                # while the upstream has not answered yet has gone away (499); the proxy decides
                # what that means (proxy_ignore_client_abort)
                callback, active.on_client_closed = active.on_client_closed, None
                callback()
        return True

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self._slow:
            # tunnels, lingering close, refused input, upgrades and half-read methods: rare paths
            replaced = self._special_input(data)
            if replaced is None:
                return
            data = replaced
        prefix = self._line_prefix
        self._completed_in_feed = 0
        # a feed that begins a message holds its request line first: the version is read from it
        self._feed = data if prefix == b"" and not self._begun and self._method_override is None else b""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0]
            if self.active is None and not self.queue and self.tunnel is None:
                # already answered without switching protocols (no proxy there): as nginx, the
                # connection goes on with HTTP, so what follows is the next request
                self._line_prefix = b""
                if offset < len(data):
                    self.data_received(data[offset:])
                return
            self._upgrade_pending = bytearray(data[offset:])
            self._slow = True
            if self._deferred:
                self._deferred = False
                self._dispatch_queue()
            return
        except httptools.HttpParserInvalidMethodError:
            if (
                prefix is not None
                and self._completed_in_feed == 0
                and self._retry_unknown_method(prefix + data)
            ):
                return
            self._parse_error(HttpError(400, "invalid method"), self._refused_line(prefix, data))
            return
        except httptools.HttpParserCallbackError:
            error = self.pending_error or HttpError(500, "internal error in parser callback")
            self.pending_error = None
            if error is _STOP:
                self.parse_failed = self._slow = True
                return
            self._parse_error(error, self._refused_line(prefix, data))
            return
        except httptools.HttpParserInvalidURLError as exc:
            if prefix is not None and not self._completed_in_feed and self._retry_raw_bytes(prefix + data):
                return
            error = self._classify(str(exc), data if prefix is None else prefix + data)
            self._parse_error(error, self._refused_line(prefix, data))
            return
        except httptools.HttpParserError as exc:
            error = self._classify(str(exc), data if prefix is None else prefix + data)
            self._parse_error(error, self._refused_line(prefix, data))
            return
        self._feed = b""
        if self._chunk_sync:
            self._start_chunk_scan(prefix, data)
        if self._deferred:
            self._deferred = False
            self._dispatch_queue()
        if self._begun:
            self._partial_message(prefix, data)
        else:
            self._line_prefix = b""  # a clean message boundary at the end of this chunk
            if self.state == IDLE and len(self.ctx.connections) > _PARK_AT_ONCE:
                # many connections open: park now rather than at the next sweep, so that a burst of
                # new keep-alive connections never holds a parser each at once
                self.park_idle()

    def _special_input(self, data: bytes) -> bytes | None:
        """Input while the connection is not simply parsing; returns the bytes to parse, or None."""
        if self.proxy_protocol is not None and type(self.proxy_protocol) is proxy_protocol.Pending:
            got = proxy_protocol.receive(self, data)
            if got is None:
                return None
            self._slow = False  # nothing else is special on a connection that has just begun
            if not got:
                return None
            data = got
        if self.tunnel is not None:
            self.tunnel(data)
            return None
        if self.state == LINGER:
            now = time.monotonic()
            self.deadline = min(self._linger_until, now + self.keepalive_conf.lingering_timeout)
            return None
        if self.parse_failed or self.state == CLOSED:
            return None
        if self._chunk_scan is not None and not self._chunk_sync and not self._scan_chunks(data):
            return None
        if self._upgrade_pending is not None:
            self._upgrade_pending += data
            return None
        if self._method_stash is not None:
            data = self._method_stash + data
            self._method_stash = None
            self._slow = False
            self.parser = self._new_parser()
            self.cur = None
        if self.parser is None:  # parked while idle (park_idle): a fresh parser for the next request
            self.parser = self._new_parser()
            self._slow = self._chunk_scan is not None or self._upgrade_pending is not None
        return data

    def park_idle(self) -> None:
        """A keep-alive connection idle between requests gives back what only a request needs: the
        parser (about 0.9 KiB) and the last head's header and URL pieces; the next bytes bring a
        new parser (a third of a microsecond). nginx frees its request buffers when it goes idle the
        same way (ngx_http_set_keepalive). Called by the server's sweep, so a busy connection keeps
        its parser between requests."""
        if (
            self.state != IDLE
            or self._slow
            or self.parser is None
            or self._begun
            or self.active is not None
            or self.cur is not None
            or self.queue
            or self._line_prefix != b""
        ):
            return
        self.parser = None
        self._slow = True  # data_received goes through _special_input, which makes a new parser
        # shared and empty: on_message_begin gives the next head lists of its own
        self._headers = _PARKED_HEADERS
        self._url_parts = _PARKED_URL
        self._tail = b""

    def _partial_message(self, prefix: bytes | None, data: bytes) -> None:
        """A chunk ended inside a request head (or body): keep the request line's bytes, enforce
        the header size limits, and refuse a request line without a version (HTTP/0.9)."""
        # The bytes of a request line still being read are kept (bounded), so that a method llhttp
        # does not know can be re-parsed once complete (_retry_unknown_method) and a request line
        # without a version is refused at its end instead of waiting for headers.
        self._tail = data[-3:]
        if self._completed_in_feed or self._headers or prefix is None:
            self._line_prefix = None  # the message began mid-chunk or is past its request line
        elif len(prefix) + len(data) <= self._header_limit():
            line = prefix + data
            self._line_prefix = line
            if self._url_len and b"\n" in line.lstrip(b"\r\n"):
                first = line.lstrip(b"\r\n").split(b"\n", 1)[0]
                if b" HTTP/" not in first:
                    self._parse_error(HttpError(400, "HTTP/0.9 request"))
                    return
        else:
            self._line_prefix = None
        if self.state == HEAD:
            self._head_bytes += len(data)
            limit = self._header_limit()
            if self._head_bytes > limit:
                if not self._headers and self._url_len + len(data) > limit:
                    self._parse_error(HttpError(414, "request line too long"))
                else:
                    self._parse_error(HttpError(494, "header too large"))

    def _new_parser(self) -> Any:
        parser = httptools.HttpRequestParser(self)
        parser.set_dangerous_leniencies(lenient_version=True, lenient_chunked_length=True)
        return parser

    def _retry_unknown_method(self, data: bytes) -> bool:  # noqa: C901
        """llhttp knows a fixed list of methods; nginx accepts any token of A-Z, `_` and `-`
        (and answers 405 where the handler does not support it). Re-parse such a request with a
        stand-in method and remember the real one."""
        stripped = data.lstrip(b"\r\n")
        space = stripped.find(b" ")
        if space < 0:
            # nginx has no limit on a method's length but the header buffers (a long one is a 405)
            limit = self._header_limit()
            if len(stripped) < limit and _METHOD_TOKEN.match(stripped) is not None or not stripped:
                self._method_stash = data
                self._slow = True
                self._line_prefix = b""  # the stash holds every byte of the line so far
                self.parser = self._new_parser()
                self.cur = None
                self.state = HEAD
                return True
            return False
        token = stripped[:space]
        if _METHOD_TOKEN.match(token) is None or len(token) > self._header_limit():
            return False
        self.parser = self._new_parser()
        self.cur = None
        self._line_prefix = None
        self._method_override = token.decode("ascii")
        self.data_received(b"GET" + stripped[space:])
        return True

    def _retry_raw_bytes(self, data: bytes) -> bool:
        """nginx takes bytes 0x80-0xFF in a request-target as they are; llhttp refuses them. A
        request line holding some is parsed again with those bytes percent-encoded, which gives
        the same $uri once decoded ($request_uri shows them escaped)."""
        stripped = data.lstrip(b"\r\n")
        end = stripped.find(b"\n")
        if end < 0:
            if len(stripped) > self._header_limit():
                return False
            # not the whole line yet: kept, and parsed again once more bytes come (_special_input)
            self._method_stash = stripped
            self._slow = True
            self._line_prefix = b""
            self.parser = self._new_parser()
            self.cur = None
            self.state = HEAD
            return True
        line = stripped[:end]
        if _HIGH_BYTE.search(line) is None:
            return False
        self.parser = self._new_parser()
        self.cur = None
        self._line_prefix = None
        self.data_received(_HIGH_BYTE.sub(_percent_byte, line) + stripped[end:])
        return True

    def _header_limit(self) -> int:
        number, size = self.keepalive_conf.large_client_header_buffers
        return number * size + self.keepalive_conf.client_header_buffer_size

    def _classify(self, message: str, seen: bytes) -> HttpError:
        """The status nginx gives a request llhttp refused; `seen` holds the bytes of this feed."""
        lowered = message.lower()
        majors = _VERSION_MAJOR.findall(seen)
        if majors and int(majors[-1]) > 1:
            return HttpError(505, "HTTP version not supported")  # nginx: at the request line
        if "transfer-encoding" in lowered:
            try:
                http10 = self.parser.get_http_version() == "1.0"
            except Exception:
                http10 = False
            earlier_error = self._checks_before_te(http10)
            if earlier_error is not None:
                return earlier_error
            earlier = [v for n, v in self._headers if n.lower() == b"transfer-encoding"]
            return transfer_encoding_error(lowered, http10, earlier)
        if "version" in lowered or "expected dot" in lowered:
            # nginx answers 505 as soon as the major version exceeds 1 (HTTP/10.0, HTTP/3)
            majors = _VERSION_MAJOR.findall(seen)
            if majors and int(majors[-1]) > 1:
                return HttpError(505, "HTTP version not supported")
        return HttpError(400, message)

    def _checks_before_te(self, http10: bool) -> HttpError | None:
        """What nginx refuses before it looks at Transfer-Encoding (the header handlers as each
        line arrives, then ngx_http_process_request_header): Host and Content-Length."""
        try:  # the request line's URI first
            path, _, absolute_host = split_target(
                b"".join(self._url_parts).decode("utf-8", "surrogateescape")
            )
            normalize_path(path, True)
            if absolute_host is not None:
                validate_host(absolute_host)
        except HttpError as exc:
            return exc
        hosts = [v for n, v in self._headers if n.lower() == b"host"]
        lengths = [v for n, v in self._headers if n.lower() == b"content-length"]
        if len(hosts) > 1:
            return HttpError(400, "duplicate Host header")
        if len(lengths) > 1:
            return HttpError(400, "duplicate Content-Length header")
        try:
            if hosts:
                validate_host(hosts[0].decode("latin-1").strip(" "))
        except HttpError as exc:
            return exc
        if not hosts and not http10:
            return HttpError(400, 'client sent HTTP/1.1 request without "Host" header')
        if lengths and not lengths[0].strip(b" ").isdigit():
            return HttpError(400, 'client sent invalid "Content-Length" header')
        return None

    # parser callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        if self.state >= LINGER:
            # a response closed the connection (or began its lingering close) in the middle of
            # this feed: nothing after it is read as a request
            self.pending_error = _STOP
            raise _ParseAbort
        self._begun = True
        self._tail = b""
        now = time.monotonic()
        if self.state in (WAIT_FIRST, IDLE):
            self.deadline = now + self.keepalive_conf.client_header_timeout
        self.state = HEAD if self.active is None else self.state
        self._url_parts = []
        self._url_len = 0
        self._headers = []
        self._header_bytes = 0
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url_parts.append(url)
        self._url_len += len(url)
        if self._url_len > self.keepalive_conf.large_client_header_buffers[1]:
            self.pending_error = HttpError(414, "request line too long")
            raise _ParseAbort

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        number, large = self.keepalive_conf.large_client_header_buffers
        self._header_bytes += size
        if size > large or self._header_bytes > number * large or len(self._headers) >= _MAX_HEADERS:
            self.pending_error = HttpError(494, "request header too large")
            raise _ParseAbort
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = self._method_override or parser.get_method().decode("ascii")
        self._method_override = None
        url = b"".join(self._url_parts).decode("utf-8", "surrogateescape")
        version = self._version(parser)
        major, _, minor = version.partition(".")
        req = Request(self, method, url, 1 if minor != "0" else 0, version)
        req.request_length = self._url_len + self._header_bytes + len(method) + 14  # line, headers, CRLF
        self.cur = req
        try:
            if major != "1":
                if major == "0":
                    raise HttpError(400, "HTTP/0.9 is not supported")
                raise HttpError(505, "HTTP version not supported")
            self._build_request(req, parser)
        except HttpError as error:
            req.error_status = error.status
            req.keep_alive = False
            self.parse_failed = self._slow = True
            req.vars["parse_error"] = error.reason
        if req.chunked and not self.parse_failed:
            # follow its size lines from the end of this head; only when no other message ended in
            # this feed, so that the head's end can be found (else the running total still counts)
            self._chunk_req = req
            self._chunk_scan = ChunkScan() if self._completed_in_feed == 0 else None
            self._chunk_sync = self._chunk_scan is not None
            self._slow = True
        if self.active is None and not self.queue and not self._dispatching:
            if req.has_body and not self.parse_failed:
                # nginx reads the body bytes that came with the head before it answers (to discard
                # them or pass them on), so a bad chunk among them makes the answer a 400: a request
                # with a body is answered once this feed has been parsed (data_received)
                self.queue.append(req)
                self._deferred = True
                return
            # the common case: nothing ahead of this request, answer it now
            self.active = req
            self.state = BUSY
            self.deadline = 0.0
            self.ctx.process(req)
        else:
            self.queue.append(req)
            if self.active is None:
                self._dispatch_queue()
            elif len(self.queue) >= _MAX_QUEUED:
                self._pause_reading()
        if self.parse_failed:
            raise _ParseAbort

    def _version(self, parser: Any) -> str:
        """The request's HTTP version, "1.1" or the like. httptools formats it anew for every call
        (a cost on the hot path); the first message of a feed that began it has its request line
        at the feed's start, where the two usual versions are recognised as they are."""
        data = self._feed
        if data:
            self._feed = b""
            end = data.find(b"\n")
            if end > 0:
                if data.endswith(b" HTTP/1.1\r", 0, end):
                    return "1.1"
                if data.endswith(b" HTTP/1.0\r", 0, end):
                    return "1.0"
        return str(parser.get_http_version())

    def _build_request(self, req: Request, parser: Any) -> None:
        headers = req.headers
        header_list = req.header_list
        host_count = 0
        te: str | None = None
        bad_length = False
        underscores = self.keepalive_conf.underscores_in_headers
        names = _header_names
        for raw_name, raw_value in self._headers:
            known = names.get(raw_name)
            if known is None:
                known = _header_name(raw_name)
            name, lower, underscore = known
            value = raw_value.decode("latin-1").strip(" \t")
            if underscore and not underscores:
                continue  # nginx's ignore_invalid_headers: dropped, not an error
            header_list.append((name, value))
            if lower in headers:
                if lower == "host":
                    raise HttpError(400, "duplicate Host header")
                if lower == "transfer-encoding" or lower == "content-length":
                    raise HttpError(400, f"duplicate {name} header")
                sep = "; " if lower == "cookie" else ", "
                headers[lower] = headers[lower] + sep + value
            else:
                headers[lower] = value
            if lower == "host":
                host_count += 1
                if b"\t" in raw_value:  # nginx strips only spaces: a TAB stays in the value
                    raise HttpError(400, "client sent invalid host header")
            elif lower == "transfer-encoding":
                te = value if b"\t" not in raw_value else raw_value.decode("latin-1")
            elif lower == "content-length" and b"\t" in raw_value:
                bad_length = True
        if req.http_minor == 1 and host_count == 0:
            raise HttpError(400, 'client sent HTTP/1.1 request without "Host" header')
        path, args, absolute_host = split_target(req.request_uri)
        if "host" in headers:
            # validated even when the absolute-form target names the host (nginx checks the header
            # as it arrives, before the request line's host takes precedence)
            req.host = validate_host(headers["host"])
        if absolute_host is not None:
            req.host = validate_host(absolute_host)
        req.args = args
        self._choose_server(req)
        # nginx parses the URI with the request line: a bad one is 400 before any header verdict
        req.uri = normalize_path(path, req.settings.merge_slashes)
        cl = headers.get("content-length")
        # nginx's order (ngx_http_process_request_header): Content-Length validity, then
        # Transfer-Encoding: HTTP/1.0 -> 400, not `chunked` -> 501, with Content-Length -> 400
        if cl is not None and (bad_length or not (cl.isascii() and cl.isdigit()) or int(cl) > _MAX_OFF_T):
            # nginx's ngx_atoof: 2^63 or more does not fit off_t, so the header is invalid (400)
            raise HttpError(400, 'client sent invalid "Content-Length" header')
        if te is not None:
            if req.http_minor == 0:
                raise HttpError(400, 'client sent HTTP/1.0 request with "Transfer-Encoding" header')
            if te.lower() != "chunked":
                raise HttpError(501, f'client sent unknown "Transfer-Encoding": "{te}"')
            if cl is not None:
                raise HttpError(
                    400, 'client sent "Content-Length" and "Transfer-Encoding" headers at the same time'
                )
            req.chunked = True
            req.has_body = True
            req.body = Body()
        elif cl is not None:
            req.content_length = int(cl)
            req.has_body = req.content_length > 0
            if req.has_body:
                req.body = Body()
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and req.http_minor == 1:
            req.expect_continue = True
        if req.method == "TRACE":
            raise HttpError(405, "TRACE method")
        if req.method == "CONNECT":
            # nginx refuses CONNECT (allow_connect off) and closes: what follows it on the connection
            # (a body, bytes meant for a tunnel) must never be read as the next request
            raise HttpError(405, "CONNECT method")
        req.keep_alive = bool(parser.should_keep_alive()) and req.settings.keepalive_timeout > 0
        if self.requests + 1 >= req.settings.keepalive_requests:
            req.keep_alive = False
        if parser.should_upgrade():
            req.upgrade = True

    def _choose_server(self, req: Request) -> None:
        table = self.ctx.server_tables.get(self.listen_key)
        if table is not None:
            req.server = table.find(req.host)
        req.settings = req.server.settings
        if not req.host:
            req.host = req.server.primary_name or ""

    # chunked bodies --------------------------------------------------

    def _start_chunk_scan(self, prefix: bytes | None, data: bytes) -> None:
        """The feed that brought a chunked request's head is parsed: find where the head ended in
        it and scan the body bytes after it."""
        self._chunk_sync = False
        if prefix == b"":
            seen, before = data, 0  # the message began in this feed
        elif prefix is not None:
            seen, before = prefix + data, len(prefix)  # its request line began in an earlier one
        else:
            seen, before = self._tail + data, len(self._tail)
        start = len(seen) - len(seen.lstrip(b"\r\n"))
        end = seen.find(b"\r\n\r\n", start)
        if end < 0 or end + 4 < before:
            self._chunk_scan = None
            return
        self._scan_chunks(data[end + 4 - before :])

    def _scan_chunks(self, data: bytes) -> bool:
        """Judge a chunked body's size lines in `data`; False when the body was refused."""
        scan, req = self._chunk_scan, self._chunk_req
        assert scan is not None and req is not None
        verdict = scan.feed(data, req.settings.client_max_body_size)
        if scan.done or verdict:
            self._chunk_scan = self._chunk_req = None
        if not verdict:
            return True
        if req.body.complete or req.body.error is not None:
            return True
        if verdict == TOO_LARGE:
            # for a reader of the body (413, then the close of that status); a handler that answered
            # without it (`return`, a 405) discards it, and nginx applies no limit to that
            if not req.body.discard:
                self.body_too_large(req, scan.announced - scan.last, scan.last)
            return True
        if verdict == INVALID:
            self._parse_error(HttpError(400, "client sent invalid chunked body"))
        return False

    def body_too_large(self, req: Request, received: int, more: int) -> None:
        body = req.body
        if req.chunked:
            req.log_error("error", f"client intended to send too large chunked body: {received}+{more} bytes")
        else:
            req.log_error("error", f"client intended to send too large body: {received + more} bytes")
        body.fail(HttpError(413, "client intended to send too large body"))
        body.discard = True
        body.chunks = []

    def on_body(self, data: bytes) -> None:
        req = self.cur
        if req is None:
            return
        body = req.body
        body.feed(data)
        limit = req.settings.client_max_body_size
        if limit and body.size > limit and body.error is None and not body.discard:
            self.body_too_large(req, body.size - len(data), len(data))
        if body.discard:
            body.chunks = []
        elif req is not self.active or body.buffered() > _BODY_HIGH_WATER:
            if body.buffered() > _BODY_HIGH_WATER:
                self._pause_reading()
        if self.state == HEAD or (req is self.active and req.body.waiter is not None):
            self.deadline = time.monotonic() + req.settings.client_body_timeout
        elif self.state == IDLE and req.finished:  # discarding after the answer (request_done)
            self.deadline = min(self._linger_until, time.monotonic() + req.settings.lingering_timeout)

    def on_message_complete(self) -> None:
        self._begun = False
        self._completed_in_feed += 1
        req = self.cur
        self.cur = None
        if req is not None and req.has_body:
            req.body.finish()
            if self.state == IDLE and req.finished:  # discarded whole: now the keep-alive wait
                self.deadline = time.monotonic() + req.settings.keepalive_timeout

    # ------------------------------------------------------------------ body reading hooks

    def body_wanted(self, req: Request) -> None:
        """A handler starts reading the body: 100 Continue if expected, start the body timer."""
        if req.expect_continue and self.transport is not None:
            req.expect_continue = False
            self.flush_out()
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not req.body.complete:
            self.deadline = time.monotonic() + req.settings.client_body_timeout

    def body_consumed(self) -> None:
        if self.read_paused and len(self.queue) < _MAX_QUEUED:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------------ dispatching

    def _dispatch_queue(self) -> None:
        """Start the next queued request; iterative so long pipelines do not recurse."""
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        try:
            while self.active is None and self.queue and self.state < LINGER:
                self._dispatch_again = False
                req = self.queue.pop(0)
                self.active = req
                self.state = BUSY
                self.deadline = 0.0
                if self.read_paused and len(self.queue) < _MAX_QUEUED and not self._body_backlog():
                    self._resume_reading()
                self.ctx.process(req)
        finally:
            self._dispatching = False

    def _body_backlog(self) -> bool:
        cur = self.cur
        return cur is not None and cur.body.buffered() > _BODY_HIGH_WATER

    def _refused_line(self, prefix: bytes | None, data: bytes) -> str:
        """The request line of a message refused before its head was complete, for $request: nginx
        falls back to the raw bytes up to the first CR or LF. Known when the message began in the
        bytes kept for this feed."""
        if prefix is None or self._completed_in_feed or self.cur is not None:
            return ""
        raw = (prefix + data).lstrip(b"\r\n")
        end = len(raw)
        for stop in (raw.find(b"\r"), raw.find(b"\n")):
            if 0 <= stop < end:
                end = stop
        return raw[:end].decode("utf-8", "surrogateescape")

    def _parse_error(self, error: HttpError, line: str = "") -> None:
        """A request that cannot be parsed: answered in its turn, then the connection closes."""
        self.parse_failed = self._slow = True
        if self.cur is not None and self.cur in self.queue:
            waiting = self.cur
            if not waiting.error_status:
                # its body is malformed before its turn came (or before the end of the feed that
                # brought its head): it is answered with the error, as nginx does
                waiting.error_status = error.status
                waiting.keep_alive = False
                waiting.vars["parse_error"] = error.reason
                self.cur = None
                self._deferred = False
                if self.active is None:
                    self._dispatch_queue()
            return  # (else already queued by on_headers_complete with its error)
        if self.cur is not None and self.cur.finished:
            # the body of a request already answered was malformed: nothing more to say, close
            self.cur = None
            if self.active is None:
                self.close()
            else:
                self.closing_after_response = True
            return
        req = self.cur
        if req is None:
            req = Request(self, "GET", "", 1)
            req.request_line = line
        if req is self.active:
            # the body of the request being answered was malformed (bad chunk): no more requests
            req.body.fail(error)
            req.keep_alive = False
            self.closing_after_response = True
            return
        req.error_status = error.status
        req.keep_alive = False
        req.vars["parse_error"] = error.reason
        self.cur = None
        self.queue.append(req)
        if self.active is None:
            self._dispatch_queue()

    def request_done(self, req: Request, abort: bool = False) -> None:
        """Called by the request when its response is complete (or aborted)."""
        self.ctx.log_request(req)
        if req.cleanup is not None:
            req.run_cleanup()
        if req is not self.active:
            return
        self.active = None
        self.requests += 1
        if abort or self.state == CLOSED:
            self.close(abort=True)
            return
        if not req.keep_alive or self.closing_after_response:
            unread = req.has_body and not req.body.complete
            if unread or self.parse_failed or req.status in (400, 413, 414, 494, 501, 505):
                self._linger()
            else:
                self.close()
            return
        if req.has_body and not req.body.complete:
            req.body.discard = True
            req.body.chunks = []
        if self._upgrade_pending is not None:
            leftover = bytes(self._upgrade_pending)
            self._upgrade_pending = None
            self._slow = self.parse_failed or self._method_stash is not None
            self.state = IDLE
            if leftover:
                self.data_received(leftover)
        if self.queue:
            self._dispatch_queue()
        elif self.active is None and self.state != CLOSED:
            self.state = IDLE if self.cur is None or self.cur is req else HEAD
            if self.state == IDLE:
                now = time.monotonic()
                if self.cur is req:
                    # the rest of its body is still to be discarded: nginx waits for it at most
                    # lingering_timeout between reads and lingering_time in all, then closes
                    self._linger_until = now + req.settings.lingering_time
                    self.deadline = now + req.settings.lingering_timeout
                else:
                    self.deadline = now + req.settings.keepalive_timeout
            self.keepalive_conf = req.settings
            if self.read_paused:
                self._resume_reading()
            if self.ctx.close_idle_now:
                self.close()

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        """Send `data` after everything written before it.

        Small writes are held until the end of the event loop's turn (ServerContext.flush_writes)
        and then sent, one send per connection: the answers to every request that arrived in one
        epoll batch leave together, so the clients (often one process holding many connections)
        are woken once per batch instead of once per response. That wake-up is a large share of a
        small response's kernel time. Everything else that touches the transport (close, sendfile,
        write_eof, detach, pacing) calls flush_out first, so the bytes keep their order."""
        t = self.transport
        if t is None or self.state == CLOSED:
            return
        out = self._out
        if out:
            if len(out) + len(data) <= _HOLD_MAX:
                self._out = out + data
                return
            self._out = b""
            t.writelines((out, data))
            return
        if len(data) <= _HOLD_MAX:
            self._out = data
            self.ctx.hold_writes(self)
            return
        t.write(data)

    def flush_out(self) -> None:
        """Send what write() holds now (before the transport is used directly)."""
        out = self._out
        if out:
            self._out = b""
            t = self.transport
            if t is not None and self.state != CLOSED:
                t.write(out)

    def writelines(self, parts: Iterable[bytes]) -> None:
        t = self.transport
        if t is not None and self.state != CLOSED:
            if self._out:
                self.flush_out()
            t.writelines(parts)

    def _send_timeout(self) -> float:
        req = self.active
        return (req.settings if req is not None else self.keepalive_conf).send_timeout

    async def drain(self) -> None:
        if not self.write_paused or self.state == CLOSED:
            if self.state == CLOSED:
                raise ConnectionResetError("client closed the connection")
            return
        fut = self.ctx.loop.create_future()
        self._drain_waiters.append(fut)
        await fut

    def _wake_writers(self, exc: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)
        w = self._write_waiter
        if w is not None and not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)

    async def _wait_writable(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> bool:
        """Wait until the socket takes more (False: the client went away meanwhile)."""
        try:
            await fut
        except ConnectionError:
            return False
        finally:
            self._write_waiter = None
            if self._dup_fd >= 0:
                loop.remove_writer(self._dup_fd)
        return True

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Zero-copy file body: os.sendfile on the socket once the transport's buffer is empty."""
        t = self.transport
        if t is None or self.state == CLOSED:
            return 0
        if self._out:
            self.flush_out()  # the head written before: the buffer-empty wait below then covers it
        if self._sock_fd < 0:
            sock = t.get_extra_info("socket")
            if sock is None:
                return 0
            self._sock_fd = sock.fileno()
        loop = self.ctx.loop
        turns = 0
        while t.get_write_buffer_size() > 0:
            if self.state == CLOSED:
                return 0
            await self.drain()
            if t.get_write_buffer_size() > 0:
                # uvloop sends small writes (the response head) at the end of the loop turn: one
                # turn is enough in the common case; a client that is slow to read is polled
                await asyncio.sleep(0.0 if turns == 0 else 0.001)
                turns += 1
        sent_total = 0
        chunk_max = 1 << 21
        send_timeout = self._send_timeout()
        while count > 0 and self.state != CLOSED:
            try:
                n = os.sendfile(self._sock_fd, fd, offset, min(count, chunk_max))
            except (BlockingIOError, InterruptedError):
                if self._dup_fd < 0:
                    self._dup_fd = os.dup(self._sock_fd)
                fut: asyncio.Future[None] = loop.create_future()
                self._write_waiter = fut
                loop.add_writer(self._dup_fd, _set_done, fut)
                self.deadline = time.monotonic() + send_timeout
                if not await self._wait_writable(loop, fut):
                    break
                continue
            except OSError:
                break
            if n == 0:
                break  # the file shrank under us: the caller aborts (length and body disagree)
            offset += n
            count -= n
            sent_total += n
        if self.state == BUSY:
            self.deadline = 0.0
        return sent_total

    # ------------------------------------------------------------------ closing, timeouts

    def close(self, abort: bool = False) -> None:
        if self.state == CLOSED:
            return
        if self._out and not abort:
            self.flush_out()  # before the state says CLOSED: the last response goes out before the FIN
        self._out = b""
        self.state = CLOSED
        self._slow = True
        self.deadline = 0.0
        t = self.transport
        if t is not None:
            if abort:
                t.abort()
            else:
                t.close()

    def _linger(self) -> None:
        """nginx's lingering close: stop sending, keep reading (and dropping) for a while, so that
        unread request bytes do not make the kernel reset the connection under our response."""
        t = self.transport
        if t is None or self.state == CLOSED:
            return
        conf = self.active.settings if self.active is not None else self.keepalive_conf
        if conf.lingering_close == "off" or not t.can_write_eof():
            self.close()
            return
        self.state = LINGER
        now = time.monotonic()
        self._linger_until = now + conf.lingering_time
        self.deadline = now + conf.lingering_timeout
        self.parse_failed = self._slow = True
        if self.read_paused:
            self._resume_reading()
        try:
            self.flush_out()
            t.write_eof()
        except (OSError, RuntimeError):
            self.close()

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep when `deadline` has passed."""
        state = self.state
        if state == BUSY:
            t = self.transport
            if t is not None and self.write_paused:
                size = t.get_write_buffer_size()
                if size < self._sent_mark:  # progress since the last check: the timer restarts
                    self._sent_mark = size
                    self.deadline = now + self._send_timeout()
                    return
            req = self.active
            if req is not None and not req.body.complete and req.body.waiter is not None:
                req.body.fail(HttpError(408, "client timed out reading body"))
                req.keep_alive = False
                self.deadline = 0.0
                self.close(abort=True)
                return
            if self._write_waiter is not None or self.write_paused:
                if req is not None:
                    req.log_error("info", f"{_TIMED_OUT} while sending response to client")
                self.close(abort=True)  # send_timeout: nginx just closes
                self._wake_writers(ConnectionResetError("send timed out"))
                return
            self.deadline = 0.0
            return
        # header, keep-alive and lingering timeouts: close without a response, as nginx does
        if state == WAIT_FIRST:
            error_log().log(
                "info",
                f"{_TIMED_OUT} while waiting for request, client: {self.client_addr}, "
                f"server: {self.server_addr}:{self.server_port}",
                self.conn_id,
            )
        elif state == HEAD and self.active is None:
            self._log_head_timeout()
        self.close()

    def _log_head_timeout(self) -> None:
        """nginx logs a request whose head timed out (info) and writes a 408 access-log line for it."""
        parser = self.parser
        try:
            version = parser.get_http_version()
            method = self._method_override or parser.get_method().decode("ascii")
        except Exception:
            version, method = "0.0", ""
        if self._headers or version != "0.0":
            req = Request(
                self, method, b"".join(self._url_parts).decode("latin-1"), int(version[-1]), version
            )
            phase = "reading client request headers"
        else:
            req = Request(self, "GET", "", 1)
            req.request_line = self._refused_line(self._line_prefix, b"")
            phase = "reading client request line"
        for name, value in self._headers:
            if name.lower() == b"host":
                req.headers["host"] = value.decode("latin-1")
                break
        req.log_error("info", f"{_TIMED_OUT} while {phase}")
        req.status = 408
        req.end_time = time.monotonic()
        self.ctx.log_request(req)

    @property
    def reusable(self) -> bool:
        """Idle keep-alive, or no byte of a first request yet: nginx may close it to free a slot."""
        return self.state <= IDLE and self.cur is None and self.active is None and not self.queue

    def graceful(self, close_idle: bool) -> None:
        """Server shutdown: answer what is in flight with Connection: close."""
        self.closing_after_response = True
        if close_idle and self.state in (WAIT_FIRST, IDLE) and self.cur is None:
            self.close()

    def detach(self, req: Request) -> tuple[asyncio.Transport, Any]:
        """Give the raw transport to a tunnel. The caller sets `tunnel` (data from the client) and
        `tunnel_lost`; bytes the client sent after the upgrade request are returned first."""
        assert self.transport is not None
        self.flush_out()  # the 101 head, before the tunnel writes to the transport itself
        leftover = bytes(self._upgrade_pending or b"")
        self._upgrade_pending = None
        self.parse_failed = self._slow = True
        return self.transport, leftover


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
