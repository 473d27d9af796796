"""The proxy content handler: `proxy_pass` to upstream servers, as nginx's proxy and upstream modules.

One request: evaluate the proxy variables, read the body (proxy_request_buffering on) or prepare to
stream it (off), then try servers chosen by the balancer until one answers or proxy_next_upstream says
stop. Each try: a connection (pooled when safe, else new, within proxy_connect_timeout), the request
(proxy_send_timeout), the response head (proxy_read_timeout between reads, at most proxy_buffer_size).
Then the response streams to the client with backpressure: when the client's buffer is full, reading
from the upstream pauses until it drains, so a slow client holds at most a read and the client
transport's buffer in memory. A 101 to an Upgrade request becomes a two-way tunnel (proxy_tunnel.py).

The request is a state machine driven by the upstream connection's callbacks (`_Proxy` is the
connection's sink): no task, future or timer handle per request on the common path, which is what a
proxied request costs in Python otherwise. Tasks remain where asyncio only offers coroutines (connect,
reading the client's body, streaming it upstream, waiting for a slow client, tunnels). Timeouts are
deadlines swept by pyginx.upstream.deadlines.

Decisions are delegated to pure modules (pyginx.upstream.balancer, .attempts, .response and
pyginx.handlers.proxy_headers); this module is the I/O glue and nginx's error-log wording.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from pyginx.config.model import ProxyPass, Upstream
from pyginx.errors import HttpError, UpstreamError, UpstreamInvalidHeader
from pyginx.handlers import proxy_cache
from pyginx.handlers import proxy_headers as ph
from pyginx.handlers.proxy_plan import Plan, hash_key, plan_for, resolve_upstream
from pyginx.handlers.proxy_tunnel import Tunnel, switching_head
from pyginx.http.headers import encode_lines
from pyginx.http.status import REASONS, STATUS_LINE_REASONS, upstream_status_line
from pyginx.http.variables import compile_template
from pyginx.tls.upstream import TLS_UPSTREAM, UpstreamTlsContext, handshake_error, ssl_name
from pyginx.upstream.attempts import Attempt, Attempts, final_status, may_retry, replayable
from pyginx.upstream.balancer import Peer, PeerState, Selection
from pyginx.upstream.deadlines import Deadlines, deadlines
from pyginx.upstream.pool import UpstreamConnection, open_connection
from pyginx.upstream.response import ResponseHead, ResponseParser
from pyginx.upstream.runtime import UpstreamRuntime, runtime_for

if TYPE_CHECKING:
    from pyginx.http.request import Request

# the reason phrases nginx would write itself (the upstream's own is passed when it differs)
_TABLE_REASONS: dict[int, str] = {code: REASONS[code] for code in STATUS_LINE_REASONS}


def status_line_for(status: int, reason: str) -> tuple[int, bytes]:
    return status, upstream_status_line(status, reason)


# nginx's error-log phrases for what the upstream connection was doing
CONNECTING = "while connecting to upstream"
SENDING = "while sending request to upstream"
READING_HEAD = "while reading response header from upstream"
READING_BODY = "while reading upstream"


def _with_head(attempts: Attempts, head: ResponseHead) -> dict[str, str]:
    out = attempts.variables()
    out["upstream_headers_raw"] = "\r\n".join(f"{k}: {v}" for k, v in head.headers)
    return out


class _Fail(Exception):
    """One try failed with a proxy_next_upstream condition; `message` is the error-log line."""

    def __init__(self, condition: str, message: str) -> None:
        super().__init__(message)
        self.condition = condition
        self.message = message
        # the "while ..." part of the message (what the connection was doing); an attribute, not a
        # property: mypyc's compiled exception classes crash on a property read (mypyc 2.4)
        at = message.find(" while ")
        self.phase = message[at + 1 :] if at >= 0 else ""


def _os_message(call: str, exc: OSError, phase: str) -> str:
    if exc.errno is not None:
        return f"{call}() failed ({exc.errno}: {exc.strerror}) {phase}"
    return f"{call}() failed ({exc}) {phase}"


def _timed_out(phase: str) -> _Fail:
    return _Fail("timeout", f"upstream timed out (110: Connection timed out) {phase}")


# --------------------------------------------------------------------------------------------------------
# the handler


def handle(req: Request) -> Awaitable[None] | None:
    """Start proxying `req`. None when the upstream connection's callbacks carry the request from
    here (the common case); a coroutine when something must be awaited first (resolving proxy_pass
    with variables, reading the client's body)."""
    plan = plan_for(req)
    if plan.settings.proxy_cache is not None:
        return proxy_cache.handle(req, plan, start_proxy)  # may answer from the cache
    up = plan.upstream
    if up is None:
        return _handle_resolved(req, plan, None)
    return _Proxy(req, plan, plan.pp, up, runtime_for(up)).start()


def start_proxy(
    req: Request, plan: Plan, cache: proxy_cache.CacheCtx | None, wait: bool
) -> Awaitable[None] | None:
    """Proxy `req` with a cache context (proxy_cache.py); wait: return an awaitable lasting until the
    request is over even when callbacks drive it."""
    up = plan.upstream
    if up is None:
        return _handle_resolved(req, plan, cache)
    proxy = _Proxy(req, plan, plan.pp, up, runtime_for(up))
    proxy.cache = cache
    pending = proxy.start()
    if pending is None and wait:
        return proxy.until_done()
    return pending


async def _handle_resolved(req: Request, plan: Plan, cache: proxy_cache.CacheCtx | None = None) -> None:
    up, pp = await resolve_upstream(req, plan)
    proxy = _Proxy(req, plan, pp, up, runtime_for(up))
    proxy.cache = cache
    pending = proxy.start()
    if pending is not None:
        await pending
    else:
        await proxy.until_done()


class _Proxy:
    """One proxied request (nginx's ngx_http_upstream_t), driven by its upstream connection's events.

    Per try: `_next_try` picks a peer and a connection (`_connect` when none is pooled), `_send`
    writes the request and makes this object the connection's sink; `upstream_data` parses the head
    (`_on_head`), then streams the body (`_body_data`, `_pump`). Every end goes through one of
    `_fail` (a try failed: maybe the next one), `_truncated` (the body broke after the head went out),
    `_finish_upstream` (answered) and `_done` (this request is over for the proxy)."""

    __slots__ = (
        "req",
        "plan",
        "pp",
        "up",
        "rt",
        "s",
        "loop",
        "timers",
        "proxy_host",
        "attempts",
        "body",
        "streamed",
        "chunked_body",
        "head",
        "target",
        "sel",
        "started",
        "upgrade",
        "replayable",
        "peer",
        "attempt",
        "t0",
        "conn",
        "reused",
        "sent",
        "parser",
        "streaming",
        "phase",
        "connecting",
        "sender",
        "drainer",
        "deadline",
        "armed",
        "finished",
        "waiter",
        "pool_key",
        "tls_ctx",
        "tls_name",
        "cache",
    )

    def __init__(self, req: Request, plan: Plan, pp: ProxyPass, up: Upstream, rt: UpstreamRuntime) -> None:
        self.req = req
        self.plan = plan
        self.pp = pp
        self.up = up
        self.rt = rt
        self.s = plan.settings
        self.loop = loop = req.conn.ctx.loop
        self.timers: Deadlines = deadlines(loop)
        self.proxy_host = plan.proxy_host if pp is plan.pp else pp.proxy_host
        self.attempts = Attempts()
        self.body: bytes | None = None
        self.streamed = False
        self.chunked_body = False
        self.head = b""
        self.target = ""
        self.sel: Selection | None = None
        self.started = time.monotonic()
        self.upgrade = req.upgrade or ph.is_upgrade_request(req.headers)
        self.replayable = True
        # the try in progress
        self.peer: Peer | None = None  # taken from the balancer and not yet given back
        self.attempt: Attempt | None = None
        self.t0 = 0.0
        self.conn: UpstreamConnection | None = None
        self.reused = False
        self.pool_key = ""  # the peer, plus the TLS identity for proxy_pass https://
        self.tls_ctx: UpstreamTlsContext | None = None
        self.tls_name = ""
        self.sent = False
        self.parser: ResponseParser | None = None
        self.streaming = False  # the head went to the client; body bytes follow
        self.phase = ""  # what the upstream connection is doing, in nginx's words ("" = nothing)
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.sender: asyncio.Task[None] | None = None  # the client's body going upstream (streamed)
        self.drainer: asyncio.Task[None] | None = None  # waiting for a slow client
        # deadline bookkeeping (pyginx.upstream.deadlines)
        self.deadline = 0.0
        self.armed = False
        self.finished = False
        self.waiter: asyncio.Future[None] | None = None
        self.cache: proxy_cache.CacheCtx | None = None  # proxy_cache: the request's cache state

    # ------------------------------------------------------------------ preparation

    def start(self) -> Awaitable[None] | None:
        req, s = self.req, self.s
        self._set_proxy_vars()
        if not s.proxy_ignore_client_abort:
            req.on_client_closed = self._client_closed
        if s.proxy_set_body is not None:
            self.body = compile_template(s.proxy_set_body)(req).encode("utf-8", "surrogateescape")
        elif not s.proxy_pass_request_body or not req.has_body:
            self.body = b"" if req.content_length is not None and s.proxy_pass_request_body else None
        elif not s.proxy_request_buffering and (
            req.content_length is not None or s.proxy_http_version == "1.1"
        ):
            # nginx streams only when asked and when the upstream can take it (chunked needs HTTP/1.1)
            self.streamed = True
            self.chunked_body = req.content_length is None
        else:
            return self._read_body_first()
        self._go()
        return None

    async def _read_body_first(self) -> None:
        try:
            self.body = await self.req.read_body()  # HttpError 413/408 reach the core, which answers
        except BaseException:
            self._unhook()
            raise
        self._go()
        await self.until_done()

    async def until_done(self) -> None:
        """For a coroutine that must last as long as the request (the dispatcher's contract)."""
        if not self.finished:
            self.waiter = self.loop.create_future()
            await self.waiter

    def _set_proxy_vars(self) -> None:
        req, pp = self.req, self.pp
        v = req.vars
        v["proxy_host"] = self.proxy_host
        v["proxy_port"] = self.plan.proxy_port if pp is self.plan.pp else ph.proxy_port(pp)
        forwarded = req.headers.get("x-forwarded-for")  # ph.add_x_forwarded_for, without the call
        addr = req.conn.client_addr
        v["proxy_add_x_forwarded_for"] = f"{forwarded}, {addr}" if forwarded else addr

    def _go(self) -> None:
        """Build the request head, set up the balancer's per-request state, and make the first try."""
        try:
            req = self.req
            self._build_head()
            self.replayable = replayable(self.plan.policy, req.method, self.streamed)
            key_of = hash_key(self.up) if self.up.balancer == "hash" else None
            self.sel = self.rt.peers.selection(
                key_of(req) if key_of is not None else "",
                req.conn.client_addr,
                self.s.proxy_next_upstream_tries,
            )
            self._next_try()
        except Exception as exc:
            self._crash(exc)

    def _build_head(self) -> None:
        req, plan, s, pp = self.req, self.plan, self.s, self.pp
        if pp.has_variables and pp.uri is not None:
            self.target = pp.uri  # nginx sends an evaluated URI part as it is
        elif pp.uri is None and not req.internal:
            self.target = req.request_uri  # the usual case of ph.upstream_uri, without the call
        else:
            self.target = ph.upstream_uri(pp, req.location, req.uri, req.args, req.request_uri, req.internal)
        host = plan.host_getter(req) if plan.host_getter is not None else ""
        if not host:
            host = self.proxy_host  # nginx: an empty Host from proxy_set_header means $proxy_host
        client = req.header_list if s.proxy_pass_request_headers else None
        cache = self.cache
        if cache is not None:  # no conditionals or ranges upstream, maybe revalidation; HEAD as GET
            client = cache.upstream_headers(client)
        self.head = plan.head.render(
            req.method if cache is None else cache.method,
            self.target,
            host,
            [get(req) for get in plan.set_getters] if plan.set_getters else (),
            client,
            self._connection_header(),
            req.headers.get("upgrade") if self.upgrade else None,
            # the usual case of _framing, without the call
            ph.NO_BODY
            if not req.has_body and req.content_length is None and s.proxy_set_body is None
            else self._framing(),
        )

    def _connection_header(self) -> str | None:
        if self.upgrade:
            return "upgrade"
        if self.rt.pool is None:
            return "close"
        return "keep-alive" if self.s.proxy_http_version == "1.0" else None

    def _framing(self) -> ph.Framing:
        req, s = self.req, self.s
        if s.proxy_set_body is not None:
            return ph.Framing("length", len(self.body or b""))
        if self.streamed:
            return ph.request_framing(
                has_body=True, content_length=req.content_length, buffered_length=None, streamed=True
            )
        if not req.has_body and req.content_length is None:
            return ph.NO_BODY  # the usual case of request_framing, without the call
        return ph.request_framing(
            has_body=req.has_body and s.proxy_pass_request_body,
            content_length=req.content_length if s.proxy_pass_request_body else None,
            buffered_length=len(self.body) if self.body is not None else None,
            streamed=False,
        )

    # ------------------------------------------------------------------ a try: peer and connection

    def _next_try(self) -> None:
        """Pick the next peer and start a try on it: a pooled connection, else a new one."""
        req = self.req
        sel = self.sel
        assert sel is not None
        peer = sel.get()
        if peer is None:
            req.log_error("error", f"no live upstreams {CONNECTING}")
            a = self.attempts.add(self.up.name)
            a.status = 502
            self._fail_response(502, "error")
            return
        self.peer = peer
        self.attempt = self.attempts.add(peer.name)
        self.t0 = time.monotonic()
        self.sent = False
        req.vars["upstream_log"] = f"{self.pp.scheme}://{peer.name}{self.target}"
        self.pool_key = peer.name if self.pp.scheme != "https" else self._tls_identity(peer.name)
        pool = self.rt.pool
        conn = pool.acquire(self.pool_key, not self.replayable) if pool is not None else None
        if conn is None:
            self._connect()
        elif self.replayable:
            self._send(conn, reused=True)
        else:
            # a request that must not go out twice: let the loop deliver an EOF or a reset that is
            # already on its way before trusting the pooled connection
            self.conn = conn
            self.phase = CONNECTING
            self.loop.call_soon(self._send_if_alive, conn)

    def _tls_identity(self, peer: str) -> str:
        """proxy_pass https://: the client context and name for `peer`; pooled connections are keyed
        by all of it, so a connection is only reused by a location with the same TLS settings."""
        s = self.s
        self.tls_ctx = ctx = TLS_UPSTREAM.context(s, peer)
        if s.proxy_ssl_name == "$proxy_host":
            name = ssl_name(self.proxy_host)
        else:
            name = ssl_name(compile_template(s.proxy_ssl_name)(self.req))
        # Python checks the host name only against the name it sends: with proxy_ssl_verify the
        # name goes out as SNI even when proxy_ssl_server_name is off
        self.tls_name = name if (s.proxy_ssl_server_name or s.proxy_ssl_verify) else ""
        return f"{peer} tls {id(ctx)} {self.tls_name}"

    def _send_if_alive(self, conn: UpstreamConnection) -> None:
        if self.conn is not conn or self.finished:
            return  # the client went away meanwhile
        try:
            if conn.closed or conn.eof:
                conn.abort()
                self.conn = None
                self._connect()
            else:
                self._send(conn, reused=True)
        except Exception as exc:
            self._crash(exc)

    def _connect(self) -> None:
        assert self.peer is not None
        srv = self.peer.server
        self.phase = CONNECTING
        task = asyncio.ensure_future(
            open_connection(
                self.loop,
                self.pool_key,
                srv.address,
                srv.unix,
                0,
                self.plan.read_high_water,
                tls=self.tls_ctx,
                server_hostname=self.tls_name,
            )
        )
        self.connecting = task
        task.add_done_callback(self._connected)
        self._arm(self.s.proxy_connect_timeout)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        if task.cancelled():
            return  # only ever cancelled after being given up (timeout, client gone)
        exc = task.exception()
        if task is not self.connecting:
            if exc is None:
                task.result().abort()  # given up, but it made it anyway: not needed any more
            return
        self.connecting = None
        try:
            if exc is None:
                if self.rt.pool is not None:
                    self.rt.pool.opened += 1
                self._send(task.result(), reused=False)
            elif isinstance(exc, ssl.SSLError):
                self._fail(_Fail("error", handshake_error(exc)))
            elif isinstance(exc, OSError):
                self._fail(_Fail("error", _os_message("connect", exc, CONNECTING)))
            else:
                raise exc
        except Exception as exc:
            self._crash(exc)

    # ------------------------------------------------------------------ a try: request out

    def _send(self, conn: UpstreamConnection, reused: bool) -> None:
        """Write the request on `conn` and listen to it from now on."""
        attempt = self.attempt
        assert attempt is not None
        if attempt.connect_time is None:
            attempt.connect_time = time.monotonic() - self.t0
        self.conn = conn
        self.reused = reused
        self.sent = True
        conn.requests += 1
        method = self.req.method if self.cache is None else self.cache.method
        self.parser = ResponseParser(self.s.proxy_buffer_size, head_request=method == "HEAD")
        conn.sink = self
        self.phase = SENDING
        try:
            if self.body:
                conn.writelines([self.head, self.body])
            else:
                conn.write(self.head)
        except OSError as exc:
            self._fail(_Fail("error", _os_message("writev", exc, SENDING)))
            return
        if self.streamed:
            # the read timeout starts once the body is out; until then the sender's send timeout
            # bounds the wait (_sender_done)
            sender = asyncio.ensure_future(self._send_body(conn))
            self.sender = sender
            sender.add_done_callback(self._sender_done)
            self._disarm()
        elif conn.write_paused:
            self._arm(self.s.proxy_send_timeout)  # until the transport drains: upstream_writable
        else:
            self.phase = READING_HEAD
            self._arm(self.s.proxy_read_timeout)

    async def _send_body(self, conn: UpstreamConnection) -> None:
        """Stream the client's body upstream (proxy_request_buffering off), re-chunked if needed."""
        timeout = self.s.proxy_send_timeout
        chunked = self.chunked_body
        async for chunk in self.req.body_chunks():
            if not chunk:
                continue
            if chunked:
                conn.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
            else:
                conn.write(chunk)
            if conn.write_paused:
                await conn.drain(timeout)
        if chunked:
            conn.write(b"0\r\n\r\n")
        if conn.write_paused:
            await conn.drain(timeout)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        exc = task.exception() if not task.cancelled() else None
        if task is not self.sender or self.streaming or self.finished or task.cancelled():
            return  # the response already decided (see _finish_upstream), or this try is over
        parser = self.parser
        if parser is not None and parser.head is not None:
            return
        try:
            if exc is None:
                self.phase = READING_HEAD
                self._arm(self.s.proxy_read_timeout)
            elif isinstance(exc, HttpError):
                self._client_body_failed(exc)  # 413, 408, 499: the core's answer
            elif isinstance(exc, TimeoutError):
                self._fail(_timed_out(SENDING))
            elif isinstance(exc, OSError):
                self._fail(_Fail("error", _os_message("writev", exc, SENDING)))
            else:
                raise exc
        except Exception as err:
            self._crash(err)

    def upstream_writable(self) -> None:
        """The upstream took the request (its transport drained): now the response is awaited."""
        if self.phase == SENDING and self.sender is None:
            self.phase = READING_HEAD
            self._arm(self.s.proxy_read_timeout)

    # ------------------------------------------------------------------ a try: response in

    def upstream_data(self, data: bytes) -> None:
        try:
            if self.streaming:
                self._body_data(data)
                return
            parser = self.parser
            assert parser is not None
            try:
                pieces = parser.feed(data)
            except UpstreamInvalidHeader as exc:
                self._fail(_Fail("invalid_header", f"{exc.message} {READING_HEAD}"))
                return
            except UpstreamError as exc:
                self._fail(_Fail("error", exc.message))
                return
            if parser.head is not None:
                self._on_head(pieces)
            elif self.armed and self.phase == READING_HEAD:
                self.deadline = time.monotonic() + self.s.proxy_read_timeout  # between two reads
        except Exception as exc:
            self._crash(exc)

    def upstream_eof(self) -> None:
        try:
            if self.streaming:
                self._body_eof()
            else:
                self._fail(_Fail("error", f"upstream prematurely closed connection {READING_HEAD}"))
        except Exception as exc:
            self._crash(exc)

    def upstream_lost(self, exc: Exception | None) -> None:
        try:
            if self.streaming:
                if isinstance(exc, OSError):
                    self._truncated(_os_message("recv", exc, READING_BODY))
                else:
                    self._body_eof()
            elif self.phase == SENDING and self.sender is None:
                broken = exc if isinstance(exc, OSError) else BrokenPipeError(32, "Broken pipe")
                self._fail(_Fail("error", _os_message("writev", broken, SENDING)))
            elif isinstance(exc, OSError):
                self._fail(_Fail("error", _os_message("recv", exc, READING_HEAD)))
            else:
                self._fail(_Fail("error", f"upstream prematurely closed connection {READING_HEAD}"))
        except Exception as err:
            self._crash(err)

    def expired(self) -> None:
        """A deadline passed (pyginx.upstream.deadlines); it is no longer registered."""
        self.armed = False
        try:
            phase = self.phase
            if phase == READING_BODY:
                self._truncated(f"upstream timed out (110: Connection timed out) {READING_BODY}")
            elif phase:
                task, self.connecting = self.connecting, None
                if task is not None:
                    task.cancel()
                self._fail(_timed_out(phase))
        except Exception as exc:
            self._crash(exc)

    def _on_head(self, pieces: list[bytes]) -> None:
        """The response head is parsed: retry, hand over (error_page, X-Accel-Redirect, tunnel), or
        answer the client, whole when the body is already here, else streamed."""
        req, s, parser, attempt = self.req, self.s, self.parser, self.attempt
        assert parser is not None and parser.head is not None and attempt is not None
        head = parser.head
        req.upstream_head = head  # $upstream_http_* read it (pyginx/modules/proxy.py), if anything does
        self._disarm()
        attempt.header_time = time.monotonic() - self.t0
        attempt.status = status = head.status
        if status >= 300 and self._handled_status(status):
            return
        cache = self.cache
        if cache is not None:
            answer = cache.instead_of(status, head)  # a 304 to revalidation, a stale-able status
            if answer is not None:
                self._finish_upstream()
                self._set_vars()
                self._done()
                answer()
                return
        ignored = self.s.proxy_ignore_headers  # nginx's proxy_ignore_headers X-Accel-Redirect ...
        if (
            "x-accel-redirect" in head.names
            and "x-accel-redirect" not in ignored
            and self._accel_redirect(head.get("x-accel-redirect") or "")
        ):
            return
        if "x-accel-limit-rate" in head.names and "x-accel-limit-rate" not in ignored:
            from pyginx.modules.limit_rate import accel_limit_rate

            accel_limit_rate(req, head.get("x-accel-limit-rate") or "")
        if status == 101:
            if not self.upgrade:
                self._drop()
                attempt.status = 502
                self._after_failure(_Fail("invalid_header", f"upstream sent unexpected 101 {READING_HEAD}"))
            else:
                self._start_tunnel()
            return
        if req.client_closed and not s.proxy_ignore_client_abort:
            self._client_gone()
            return
        plan, names = self.plan, head.names
        if plan.redirects and ("location" in names or "refresh" in names):
            headers = ph.filter_response(
                head.headers,
                names,
                plan.drop,
                rules=plan.redirects,
                render=self._render,
                absolute=req.absolute_location,
            )
            encoded = None
        else:
            passed = head.passed  # the same head (pyginx.upstream.response._PLAIN_CACHE), filtered before
            if passed is not None and passed[0] is plan.drop:
                _, headers, encoded = passed
            else:
                headers = ph.filter_response(head.headers, names, plan.drop)
                encoded = encode_lines(headers)
                head.passed = (plan.drop, headers, encoded)
        if head.reason != _TABLE_REASONS.get(status):
            req.status_line = status_line_for(status, head.reason)  # nginx passes the upstream's
        if cache is not None:
            cache.begin_store(status, head)
        if parser.complete and req.method != "HEAD":
            # the whole response is here: one write to the client, the connection back to the pool
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if cache is not None:
                cache.data(body)
            self._finish_upstream()
            self._set_vars()
            self._done()
            req.respond(status, headers, body, False, encoded)  # filter_response dropped any Content-Length
            return
        length = head.content_length if parser.framing in ("length", "none") else None
        if status in (204, 304) or status < 200:
            length = None
        self._set_vars()
        req.start(status, headers, length, encoded)
        for piece in pieces:
            req.write(piece)
            if cache is not None:
                cache.data(piece)
        self.streaming = True
        self.phase = READING_BODY
        self._pump()

    def _handled_status(self, status: int) -> bool:
        """proxy_next_upstream for this status (True: the next try started), or proxy_intercept_errors
        with an error_page for it (True: answered)."""
        req, s, sel, attempt = self.req, self.s, self.sel, self.attempt
        assert sel is not None and attempt is not None
        policy = self.plan.policy
        cond = policy.wants_status(status)
        if cond is not None and may_retry(
            policy,
            cond,
            method=req.method,
            request_sent=True,
            body_streamed=self.streamed,
            tries_left=sel.tries - 1,
            elapsed=time.monotonic() - self.started,
        ):
            self._drop()
            attempt.response_time = time.monotonic() - self.t0
            self._free(PeerState.NEXT if status in (403, 404) else PeerState.FAILED)
            self._next_try()
            return True
        if s.proxy_intercept_errors and any(code == status for code, _, _ in s.error_page):
            self._finish_upstream()
            self._set_vars()
            self._done()
            req.send_error(status)
            return True
        return False

    def _accel_redirect(self, accel: str) -> bool:
        """nginx's X-Accel-Redirect: the upstream names what pyginx should serve instead."""
        req = self.req
        if not accel.startswith(("/", "@")) or "x-accel-redirect" in self.s.proxy_pass_header:
            return False
        self._finish_upstream()
        self._set_vars()
        self._done()
        if accel.startswith("@"):
            req.conn.ctx.dispatch_named(req, accel[1:])
        else:
            path, _, args = accel.partition("?")
            if req.method != "HEAD":
                req.method = "GET"
            req.internal_redirect(path, args)
        return True

    def _render(self, template: str) -> str:
        return compile_template(template)(self.req)

    # ------------------------------------------------------------------ the response body

    def _body_data(self, data: bytes) -> None:
        parser = self.parser
        assert parser is not None
        try:
            pieces = parser.feed(data)
        except UpstreamError:
            self._truncated(f"upstream sent invalid chunked response {READING_BODY}")
            return
        write = self.req.write
        cache = self.cache
        for piece in pieces:
            write(piece)
            if cache is not None:
                cache.data(piece)
        self._pump()

    def _body_eof(self) -> None:
        parser = self.parser
        assert parser is not None
        try:
            parser.feed_eof()
        except UpstreamError:
            self._truncated(f"upstream prematurely closed connection {READING_BODY}")
            return
        self._finish_stream()

    def _pump(self) -> None:
        """After body bytes went to the client: done, broken, wait for the client, or read on."""
        parser, req, conn = self.parser, self.req, self.conn
        assert parser is not None and conn is not None
        if parser.complete:
            self._finish_stream()
        elif parser.error is not None:
            self._truncated(f"upstream sent invalid chunked response {READING_BODY}")
        elif req.conn.write_paused and not (req.client_closed and self._reads_on()):
            # backpressure: no more upstream reading until the client took what it was given
            # (a client gone with proxy_ignore_client_abort on: the rest is read and dropped)
            self._disarm()
            conn.pause_reading()
            drainer = asyncio.ensure_future(req.drain())
            self.drainer = drainer
            drainer.add_done_callback(self._client_drained)
        else:
            self._arm(self.s.proxy_read_timeout)

    def _client_drained(self, task: asyncio.Task[None]) -> None:
        exc = task.exception() if not task.cancelled() else ConnectionResetError()
        if task is not self.drainer or self.finished:
            return
        self.drainer = None
        try:
            conn = self.conn
            assert conn is not None
            if exc is not None and not (self.req.client_closed and self._reads_on()):
                self._client_gone()  # nothing more to send; the upstream connection cannot be reused
                return
            conn.resume_reading()
            self._pump()
        except Exception as err:
            self._crash(err)

    def _finish_stream(self) -> None:
        self._finish_upstream()
        self._set_vars()
        self._done()
        self.req.end()

    # ------------------------------------------------------------------ ends of a try

    def _finish_upstream(self) -> None:
        """The response is read (or no longer wanted): pool or close the connection, free the peer."""
        attempt, parser, conn = self.attempt, self.parser, self.conn
        assert attempt is not None and parser is not None and conn is not None
        attempt.response_time = time.monotonic() - self.t0
        attempt.bytes_received = parser.received
        sender = self.sender
        request_done = conn.write_buffer_size == 0 and (
            sender is None or (sender.done() and not sender.cancelled() and sender.exception() is None)
        )  # a request not wholly sent (nginx's request_body_sent) leaves the connection out of step
        pool = self.rt.pool
        if self.tls_ctx is not None and conn.transport is not None:
            self.tls_ctx.remember(conn.transport.get_extra_info("ssl_object"))  # proxy_ssl_session_reuse
        if pool is not None and parser.complete and parser.keepalive and request_done:
            self._detach()
            pool.release(conn)
        else:
            self._drop()
        self._free(PeerState.OK)

    def _detach(self) -> None:
        """This request stops listening to its connection (which stays open)."""
        conn = self.conn
        if conn is not None:
            conn.sink = None
            self.conn = None
        self._disarm()
        self.phase = ""
        self.streaming = False
        if self.sender is not None:
            if not self.sender.done():
                self.sender.cancel()
            self.sender = None
        if self.drainer is not None:
            if not self.drainer.done():
                self.drainer.cancel()
            self.drainer = None

    def _drop(self) -> None:
        """Close the connection: it cannot carry another request."""
        conn = self.conn
        self._detach()
        if conn is not None:
            conn.close()

    def _abort_conn(self) -> None:
        conn = self.conn
        self._detach()
        task, self.connecting = self.connecting, None
        if task is not None:
            task.cancel()
        if conn is not None:
            conn.abort()

    def _free(self, state: PeerState) -> bool:
        """Give the peer back to the balancer (once per try); True when it is now disabled."""
        peer, sel = self.peer, self.sel
        if peer is None or sel is None:
            return False
        self.peer = None
        return sel.free(peer, state)

    def _fail(self, f: _Fail) -> None:
        """This try failed: retry a stale keep-alive connection, else count it and maybe move on."""
        conn, attempt = self.conn, self.attempt
        assert attempt is not None
        if (
            self.reused
            and conn is not None
            and f.condition == "error"
            and not conn.received_any
            and self.replayable
        ):
            # A reused keep-alive connection the server had already closed is not a try (nginx); it is
            # retried on a fresh connection when sending twice is safe.
            self.req.log_error("info", f"{f.message} (keep-alive connection closed, retrying)")
            self._abort_conn()
            self.reused = False
            self._connect()
            return
        self._abort_conn()
        attempt.status = final_status(f.condition)
        attempt.response_time = time.monotonic() - self.t0
        self._after_failure(f)

    def _after_failure(self, f: _Fail) -> None:
        req, sel = self.req, self.sel
        assert sel is not None
        req.log_error("error", f.message)
        if self._free(PeerState.FAILED):
            req.log_error("warn", f"upstream server temporarily disabled {f.phase}".rstrip())
        if req.client_closed:
            self._set_vars()
            self._done()
            req.abort()
            return
        if may_retry(
            self.plan.policy,
            f.condition,
            method=req.method,
            request_sent=self.sent,
            body_streamed=self.streamed,
            tries_left=sel.tries,
            elapsed=time.monotonic() - self.started,
        ):
            self._next_try()
            return
        self._fail_response(final_status(f.condition), f.condition)

    def _truncated(self, message: str) -> None:
        """The body broke after the head went out: the client must see a truncated response, never a
        complete one."""
        self.req.log_error("error", message)
        self._client_gone()

    def _client_gone(self) -> None:
        """Stop here: close the upstream connection, give the peer back, abort the client's response."""
        attempt, parser = self.attempt, self.parser
        self._drop()
        if attempt is not None:
            attempt.response_time = time.monotonic() - self.t0
            if parser is not None:
                attempt.bytes_received = parser.received
        self._free(PeerState.OK)
        self._set_vars()
        self._done()
        self.req.abort()

    def _client_body_failed(self, exc: HttpError) -> None:
        """Streaming the client's body upstream failed on the client's side (413, 408, 499)."""
        self._abort_conn()
        if self.attempt is not None:
            self.attempt.response_time = time.monotonic() - self.t0
        self._free(PeerState.OK)
        self._set_vars()
        self._done()
        self.req.fail(exc.status, None)

    def _fail_response(self, status: int, condition: str) -> None:
        stale = self.cache.stale_on_failure(condition) if self.cache is not None else None
        self._set_vars()
        self._done()
        if stale is not None:
            stale()  # proxy_cache_use_stale: the expired entry instead of the error
            return
        self.req.send_error(status)

    def _set_vars(self) -> None:
        # $upstream_*, as they stand now: computed only if something reads them (variables._fallback)
        parser = self.parser
        head = parser.head if parser is not None else None
        if head is None:
            self.req.upstream_vars = self.attempts.variables
        else:  # and the response head, for $upstream_http_* (pyginx/modules/proxy.py)
            self.req.upstream_vars = functools.partial(_with_head, self.attempts, head)

    # ------------------------------------------------------------------ the request's end

    def _reads_on(self) -> bool:
        """Whether a response is read to its end when the client has gone: proxy_ignore_client_abort,
        or a response being stored in the cache (nginx keeps reading a cacheable one)."""
        return self.s.proxy_ignore_client_abort or (self.cache is not None and self.cache.storing)

    def _client_closed(self) -> None:
        """The core's hook: the client went away. nginx (without proxy_ignore_client_abort) closes the
        upstream connection at once and logs 499 (the core's status for an unanswered request)."""
        if not self.phase or self.finished:
            return  # no upstream activity: the body reader or the tunnel notices
        if self.cache is not None and self.cache.storing:
            return  # read on into the cache; the client's writes go nowhere
        self.req.log_error(
            "info",
            "epoll_wait() reported that client prematurely closed connection, "
            f"so upstream connection is closed too {self.phase}",
        )
        self._abort_conn()
        self._client_gone()

    def _done(self) -> None:
        """The proxy is finished with the request; called before the call that answers it, since that
        call may start another handler for it (error_page, X-Accel-Redirect)."""
        self.finished = True
        req = self.req
        if self.cache is not None:  # commit a complete cache entry, else drop it; release the lock
            self.cache.close(self.parser is not None and self.parser.complete)
        if req.on_client_closed == self._client_closed:  # _unhook, without the call
            req.on_client_closed = None
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _unhook(self) -> None:
        # bound methods compare equal when they are this object's _client_closed
        if self.req.on_client_closed == self._client_closed:
            self.req.on_client_closed = None

    def _crash(self, exc: Exception) -> None:
        """A bug in this module: contained to this request as the dispatcher contains handler errors
        (500, or a truncated response, and an alert with the traceback)."""
        self._abort_conn()
        self._free(PeerState.OK)
        self._done()
        self.req.fail(500, exc)  # logs the traceback even when the response is over

    # ------------------------------------------------------------------ deadlines

    def _arm(self, timeout: float) -> None:
        if timeout <= 0:
            self._disarm()
            return
        self.deadline = time.monotonic() + timeout
        if not self.armed:
            self.armed = True
            self.timers.add(self)

    def _disarm(self) -> None:
        if self.armed:
            self.armed = False
            self.timers.discard(self)

    # ------------------------------------------------------------------ upgraded connections

    def _start_tunnel(self) -> None:
        conn, parser = self.conn, self.parser
        assert conn is not None and parser is not None and parser.head is not None
        head = switching_head(parser.head, self.plan.hide, self.s)
        self._set_vars()
        # the tunnel reads with conn.read() and watches the client itself: no sink, no client hook
        self._detach()
        self._unhook()
        try:
            tunnel = Tunnel(self.req, conn, head, parser.extra)
        except BaseException:
            conn.abort()  # no longer this request's sink: _crash would not see it
            raise
        task = asyncio.ensure_future(tunnel.run())
        task.add_done_callback(self._tunnel_done)

    def _tunnel_done(self, task: asyncio.Task[None]) -> None:
        req, attempt = self.req, self.attempt
        exc = task.exception() if not task.cancelled() else None
        if attempt is not None:
            attempt.response_time = time.monotonic() - self.t0
        self._free(PeerState.OK)
        self._set_vars()
        self._done()
        req.keep_alive = False
        if exc is not None:
            req.fail(500, exc)
        elif req.client_closed:
            req.abort()
        else:
            req.end()
