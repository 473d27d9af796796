"""One HTTP request and the ways a handler answers it (see docs/handler-api.md).

The Request owns the response bookkeeping (status, bytes sent, chunked framing, add_header/expires,
error_page); the connection owns the socket, keep-alive and pipelining. A handler calls exactly one
of respond / send_error / redirect / internal_redirect / start..end / abort.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings, Location, Server
from pyginx.errors import HttpError
from pyginx.http import headers as hdr
from pyginx.http.bodyiter import body_chunks as _body_chunks
from pyginx.http.status import CLOSING_STATUSES, MSIE_PADDING, error_page_body
from pyginx.log import error_log

if TYPE_CHECKING:
    from pyginx.http.stream import ClientStream

MAX_INTERNAL_REDIRECTS = 10  # nginx's NGX_HTTP_MAX_URI_CHANGES


# ngx_http_finalize_request: 408, 444 and 499 close the connection without a response.
_CLOSE_WITHOUT_RESPONSE = frozenset({408, 444, 499})


def _padded_agent(agent: str | None) -> bool:
    """nginx's msie/chrome flags (ngx_http_process_user_agent), which turn on msie_padding."""
    if agent is None or "Opera" in agent:
        return False
    msie = agent.find("MSIE ")
    if msie >= 0 and msie + 7 < len(agent):
        return True
    return "Gecko/" not in agent and "Chrome/" in agent


class Body:
    """A request body arriving from the parser, consumed by at most one reader."""

    __slots__ = ("chunks", "size", "complete", "waiter", "error", "discard")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.waiter: asyncio.Future[None] | None = None
        self.error: HttpError | None = None
        self.discard = False

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if not self.discard:
            self.chunks.append(data)
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, error: HttpError) -> None:
        self.error = error
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def buffered(self) -> int:
        return sum(len(c) for c in self.chunks)


class _NoBody(Body):
    """The body of every request without one: complete from the start and shared (most requests
    have no body; this saves an object and two calls per request). Its mutators do nothing; the
    core only reads or waits on bodies of requests that have one (`has_body`)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.complete = True

    def feed(self, data: bytes) -> None:
        pass

    def finish(self) -> None:
        pass

    def fail(self, error: HttpError) -> None:
        pass


NO_BODY: Body = _NoBody()


class Request:
    """One request. Fields that most requests never change are class-level defaults, so creating a
    request sets only what differs (it is created for every request: this is a hot path)."""

    conn: ClientStream  # an HttpConnection, or an HTTP/2 stream (pyginx/http/stream.py)
    method: str
    request_uri: str
    request_line: str
    http_minor: int
    protocol: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    server: Server
    settings: HttpSettings
    vars: dict[str, str]
    start_time: float
    head_only: bool

    uri = "/"
    args = ""
    host = ""
    location: Location | None = None
    has_body = False
    content_length: int | None = None
    chunked = False
    expect_continue = False
    keep_alive = False
    captures: tuple[str | None, ...] | None = None
    end_time = 0.0
    status = 0
    bytes_sent = 0
    body_bytes_sent = 0
    request_length = 0
    out_headers: list[tuple[str, str]] | tuple[()] = ()
    # what $sent_http_* read besides out_headers: a cached file's pre-encoded entity headers, and the
    # Content-Length the head announced (None: none)
    sent_block = b""
    sent_length: int | None = None
    head_sent = False
    finished = False
    _chunked_out = False
    body: Body = NO_BODY  # replaced by a Body when the head announces one
    redirects = 0
    error_status = 0
    status_line: tuple[int, bytes] | None = None  # (status, line): a proxied response's own status line
    in_error_page = False
    client_closed = False
    upgrade = False
    internal = False
    # called once if the client goes away while the request is in flight (the proxy closes
    # its upstream connection then, as nginx does without proxy_ignore_client_abort)
    on_client_closed: Callable[[], None] | None = None
    # the proxy's $upstream_* variables, not yet in `vars`: computed and merged into `vars` when a
    # variable named upstream_* is first read (most requests never read them)
    upstream_vars: Callable[[], dict[str, str]] | None = None
    # the upstream's response head (pyginx.upstream.response.ResponseHead), for $upstream_http_*
    upstream_head: Any = None
    # the location's output header filters (pyginx/module.py), None when it has none
    filters: tuple[Any, ...] | None = None
    # set by a header filter that transforms the body: (data, last) -> data
    body_filter: Callable[[bytes, bool], bytes] | None = None
    # run once when the request is finished and logged (nginx's request pool cleanups: limit_conn)
    cleanup: list[Callable[[], None]] | None = None
    # limit_rate: the paced transport its response goes through (http/pacing.py)
    pacer: Any = None

    def __init__(
        self, conn: ClientStream, method: str, request_uri: str, http_minor: int, version: str = ""
    ) -> None:
        self.conn = conn
        self.method = method
        self.request_uri = request_uri
        self.http_minor = http_minor
        self.protocol = protocol = (
            f"HTTP/{version}" if version else ("HTTP/1.1" if http_minor else "HTTP/1.0")
        )
        self.request_line = f"{method} {request_uri} {protocol}"
        self.headers = {}
        self.header_list = []
        self.server = server = conn.ctx.default_server
        self.settings = server.settings
        self.vars = {}
        self.start_time = time.monotonic()
        self.head_only = method == "HEAD"

    # ------------------------------------------------------------------ reading

    def log_error(self, level: str, message: str) -> None:
        """An error-log line with nginx's request context."""
        log = error_log()
        if not log.enabled(level):
            return
        ctx = f", client: {self.conn.client_addr}, server: {self.server.primary_name}"
        if self.request_line:
            ctx += f', request: "{self.request_line}"'
        upstream = self.vars.get("upstream_log")
        if upstream:
            ctx += f', upstream: "{upstream}"'
        if "host" in self.headers:
            ctx += f', host: "{self.headers["host"]}"'
        log.log(level, message + ctx, self.conn.conn_id)

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        if self.cleanup is None:
            self.cleanup = []
        self.cleanup.append(fn)

    def run_cleanup(self) -> None:
        fns, self.cleanup = self.cleanup or [], None
        for fn in reversed(fns):
            try:
                fn()
            except Exception as exc:  # a cleanup must not keep the connection from going on
                self.log_error("alert", f"request cleanup failed: {exc!r}")

    def body_text(self) -> str:
        return b"".join(self.body.chunks).decode("utf-8", "surrogateescape")

    async def read_body(self) -> bytes:
        """The whole request body (client_max_body_size and client_body_timeout enforced)."""
        chunks = [c async for c in self.body_chunks()]
        return b"".join(chunks)

    def body_chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (client_max_body_size and client_body_timeout enforced)."""
        return _body_chunks(self)

    # ------------------------------------------------------------------ responding

    def _head_bytes(
        self, status: int, headers: list[tuple[str, str]], length: int | None, encoded: bytes | None = None
    ) -> bytes:
        """Build the response head; decides keep-alive and chunking for this response."""
        settings = self.settings
        if self.error_status and status == 200 and not self.head_sent:
            status = self.error_status
        self.status = status
        # error pages turn keep-alive off in send_error; `return 400 "text"` or a proxied 500 keep it
        keep = self.keep_alive and not self.conn.closing_after_response
        if self.has_body and not self.body.complete and not keep:
            keep = False
        chunked = False
        bodiless = status in (204, 304) or status < 200
        if length is None and not bodiless and not self.head_only:
            if self.http_minor >= 1 and settings.chunked_transfer_encoding:
                chunked = True
            else:
                keep = False
        self.keep_alive = keep
        self._chunked_out = chunked and not self.head_only
        out = hdr.build_head(self, status, headers, length, keep, chunked, encoded)
        self.head_sent = True
        return out

    def respond(
        self,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        has_length: bool | None = None,
        encoded: bytes | None = None,
    ) -> None:
        """A whole response in one write. `has_length=False` tells that `headers` holds no
        Content-Length (the core then needs not look for one); `encoded` is headers.encode_lines(headers)
        when the caller has it already."""
        if self.finished or self.head_sent:
            return
        if self.expect_continue:
            self.send_continue()
        headers = headers if headers is not None else []
        if self.filters is not None:
            status, headers, body = self._filter_whole(status, headers, body)
            has_length, encoded = False, None
        length: int | None = len(body)
        if has_length is None:
            for name, _value in headers:
                if name.lower() == "content-length":
                    length = None
                    break
        elif has_length:
            length = None
        head = self._head_bytes(status, headers, length, encoded)
        if self.head_only or status in (204, 304):
            body = b""
        self.bytes_sent += len(head) + len(body)
        self.body_bytes_sent += len(body)
        self.conn.write(head + body if body else head)
        self._finish()

    def respond_prebuilt(self, status: int, header_block: bytes, body: bytes, length: int) -> None:
        """Fast path for cached static files: header_block holds the entity headers (CRLF-terminated)."""
        if self.finished or self.head_sent:
            return
        if self.filters is not None:  # the location's output filters see every response
            lines = header_block.decode("latin-1").split("\r\n")
            pairs = [tuple(line.split(": ", 1)) for line in lines if line]
            self.respond(status, [(k, v) for k, v in pairs], body)
            return
        if self.expect_continue:
            self.send_continue()
        head = hdr.build_head_prebuilt(self, status, header_block, length)
        self.head_sent = True
        if self.head_only:
            body = b""
        self.bytes_sent += len(head) + len(body)
        self.body_bytes_sent += len(body)
        conn = self.conn
        conn.write(head + body if body else head)
        self.finished = True
        self.end_time = time.monotonic()
        conn.request_done(self)

    def start(
        self,
        status: int,
        headers: list[tuple[str, str]],
        content_length: int | None,
        encoded: bytes | None = None,
    ) -> None:
        """Send the response head now; the body follows with write()/sendfile() and end().
        `encoded`: as for respond()."""
        if self.expect_continue:
            self.send_continue()
        if self.filters is not None:
            for f in self.filters:
                status, headers, content_length = f.head(self, status, headers, content_length)
            encoded = None
        head = self._head_bytes(status, headers, content_length, encoded)
        self.bytes_sent += len(head)
        self.conn.write(head)

    def filters_recode(self, status: int, headers: list[tuple[str, str]], length: int) -> bool:
        """Whether an output filter (gzip) would re-code this response; then no range of it is
        served: nginx's range filter skips a response whose length a filter made unknown."""
        filters = self.filters
        if filters is None:
            return False
        return any(f.recodes is not None and f.recodes(self, status, headers, length) for f in filters)

    def _filter_whole(
        self, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """The output filters over a response whose whole body is in hand."""
        assert self.filters is not None
        headers = [h for h in headers if h[0].lower() != "content-length"]
        length: int | None = len(body)
        for f in self.filters:
            status, headers, length = f.head(self, status, headers, length)
        bf = self.body_filter
        if bf is not None:
            self.body_filter = None
            body = bf(body, True)
        return status, headers, body

    def write(self, data: bytes) -> None:
        if self.head_only or not data or self.finished:
            return
        bf = self.body_filter
        if bf is not None:
            data = bf(data, False)
            if not data:
                return
        self._write_raw(data)

    def _write_raw(self, data: bytes) -> None:
        n = len(data)
        self.body_bytes_sent += n
        if self._chunked_out:
            frame = b"%x\r\n" % n
            self.bytes_sent += n + len(frame) + 2
            self.conn.writelines((frame, data, b"\r\n"))
        else:
            self.bytes_sent += n
            self.conn.write(data)

    async def drain(self) -> None:
        await self.conn.drain()
        if self.client_closed:
            raise ConnectionResetError("client closed the connection")

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        if self.head_only or count <= 0:
            return
        if self.body_filter is not None:  # a filter must see the bytes: read them
            end = offset + count
            while offset < end:
                chunk = os.pread(fd, min(65536, end - offset), offset)
                if not chunk:
                    raise ConnectionAbortedError("file truncated while sending")
                offset += len(chunk)
                self.write(chunk)
                await self.drain()
            return
        sent = await self.conn.sendfile(fd, offset, count)
        self.bytes_sent += sent
        self.body_bytes_sent += sent
        if sent < count:
            raise ConnectionResetError("client closed the connection during sendfile")

    def end(self) -> None:
        if self.finished:
            return
        bf = self.body_filter
        if bf is not None:
            self.body_filter = None
            tail = bf(b"", True)
            if tail and not self.head_only:
                self._write_raw(tail)
        if self._chunked_out:
            self.bytes_sent += 5
            self.conn.write(b"0\r\n\r\n")
        self._finish()

    def abort(self) -> None:
        """Close the client connection now: the client sees a truncated response."""
        if self.finished:
            return
        if not self.status:
            self.status = 499 if self.client_closed else 502
        self.keep_alive = False
        self.finished = True
        self.end_time = time.monotonic()
        self.conn.request_done(self, abort=True)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.pacer is not None:  # limit_rate: done when its last byte is out (http/pacing.py)
            self.pacer.hold(self)
            return
        self.end_time = time.monotonic()
        self.conn.request_done(self)

    # ------------------------------------------------------------------ errors and redirects

    def send_error(self, status: int) -> None:
        """nginx's special response: error_page if configured, else the built-in page."""
        if self.finished:
            return
        if self.head_sent:
            self.abort()
            return
        if status in _CLOSE_WITHOUT_RESPONSE:
            # ngx_http_finalize_request closes the connection for these, error_page or not
            self.status = status
            self.keep_alive = False
            self.abort()
            return
        if status in CLOSING_STATUSES:
            self.keep_alive = False
        if not self.in_error_page or self.settings.recursive_error_pages:
            for code, uri, override in self.settings.error_page:
                if code == status:
                    if override != 0 and override != 200:
                        self.expect_continue = False  # nginx: expect_tested unless `=` or `=200`
                    self._error_page(status, uri, override)
                    return
        self._builtin_error(status)

    def _builtin_error(self, status: int) -> None:
        self.expect_continue = False  # an error page is not a discard: no 100 Continue before it
        body = error_page_body(status, self.settings.server_tokens)
        headers = [("Content-Type", "text/html")] if body else []
        if (
            body
            and status >= 400
            and self.settings.msie_padding
            and _padded_agent(self.headers.get("user-agent"))
        ):
            body += MSIE_PADDING
        self.out_headers = []
        self.respond(status, headers, body)

    def fail(self, status: int, exc: BaseException | None) -> None:
        """End the request after an error in a handler: an error page when nothing was sent yet, a
        truncated response otherwise; a handler's exception is logged with its traceback."""
        if exc is not None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
            self.log_error("alert", f"unexpected error in handler: {exc!r}\n{tb}")
        if self.finished:
            return
        if self.head_sent:
            self.abort()
        else:
            self.send_error(status)

    def send_continue(self) -> None:
        """`100 Continue` before a response that leaves the body unread: nginx's
        ngx_http_discard_request_body tests Expect first (even for a body already received)."""
        self.expect_continue = False
        self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _error_page(self, status: int, uri: str, override: int | None) -> None:
        from pyginx.http.variables import compile_template

        target = compile_template(uri)(self) if "$" in uri else uri
        self.in_error_page = True
        if target.startswith("@"):
            self.error_status = override if override is not None else status
            self.conn.ctx.dispatch_named(self, target[1:])
            return
        if target.startswith(("http://", "https://")) or not target.startswith("/"):
            code = override if override in (301, 302, 303, 307, 308) else 302
            self.redirect(code, target)
            return
        self.error_status = override if override is not None else status
        if self.method != "HEAD":
            self.method = "GET"
        path, _, args = target.partition("?")
        self.internal_redirect(path, args if args else None)

    def internal_redirect(self, uri: str, args: str | None = None) -> None:
        """Run location matching again for `uri` (index, try_files, error_page)."""
        self.redirects += 1
        if self.redirects > MAX_INTERNAL_REDIRECTS:
            self.log_error(
                "error", f'rewrite or internal redirection cycle while internally redirecting to "{uri}"'
            )
            self.error_status = 0
            self.in_error_page = True
            self._builtin_error(500)
            return
        self.uri = uri
        if args is not None:
            self.args = args
        self.internal = True
        self.conn.ctx.dispatch(self)

    def redirect(self, status: int, location: str) -> None:
        """A redirect with nginx's Location rules (absolute_redirect, port_in_redirect)."""
        self.expect_continue = False  # nginx's redirect pages come from its special response handler
        self.respond(
            status,
            [("Content-Type", "text/html"), ("Location", self.absolute_location(location))],
            error_page_body(status, self.settings.server_tokens),
        )

    def absolute_location(self, location: str) -> str:
        if not location.startswith("/") or not self.settings.absolute_redirect:
            return location
        s = self.settings
        if s.server_name_in_redirect and self.server.primary_name:
            host = self.server.primary_name
        else:
            host = self.host or self.server.primary_name or self.conn.server_addr
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = self.conn.server_port
        scheme = self.conn.scheme
        default_port = 443 if scheme == "https" else 80
        suffix = f":{port}" if s.port_in_redirect and port and port != default_port else ""
        return f"{scheme}://{host}{suffix}{location}"

    # ------------------------------------------------------------------ misc

    def take_over(self) -> tuple[asyncio.Transport, Any]:
        """Hand the raw client transport to a handler (Upgrade tunnels); see HttpConnection.detach."""
        return self.conn.detach(self)
