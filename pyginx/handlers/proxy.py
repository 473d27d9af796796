"""The proxy content handler: `proxy_pass` to upstream servers, as nginx's proxy and upstream modules.

One request: evaluate the proxy variables, read the body (proxy_request_buffering on) or prepare to
stream it (off), then try servers chosen by the balancer until one answers or proxy_next_upstream says
stop. Each try: a connection (pooled when safe, else new, within proxy_connect_timeout), the request
(proxy_send_timeout between writes), the response head (proxy_read_timeout between reads, at most
proxy_buffer_size). Then the response streams to the client with backpressure both ways: the proxy
reads from the upstream only when the client has taken what it was given, so a slow client holds at
most a read buffer and the client transport's buffer in memory. A 101 to an Upgrade request becomes a
two-way tunnel.

Decisions are delegated to pure modules (pyginx.upstream.balancer, .attempts, .response and
pyginx.handlers.proxy_headers); this module is the I/O glue and nginx's error-log wording.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings, Location, ProxyPass, Upstream, UpstreamServer
from pyginx.errors import HttpError, UpstreamError, UpstreamInvalidHeader
from pyginx.handlers import proxy_headers as ph
from pyginx.http.variables import Getter, compile_template
from pyginx.upstream.attempts import Attempt, Attempts, NextUpstream, final_status, may_retry, replayable
from pyginx.upstream.balancer import Peer, PeerState, Selection
from pyginx.upstream.pool import UpstreamConnection, open_connection
from pyginx.upstream.response import ResponseParser
from pyginx.upstream.runtime import UpstreamRuntime, runtime_for

if TYPE_CHECKING:
    from pyginx.http.request import Request

# nginx's error-log phrases for what the upstream connection was doing
CONNECTING = "while connecting to upstream"
SENDING = "while sending request to upstream"
READING_HEAD = "while reading response header from upstream"
READING_BODY = "while reading upstream"
TUNNELING = "while proxying upgraded connection"


class _Fail(Exception):
    """One try failed with a proxy_next_upstream condition; `message` is the error-log line."""

    def __init__(self, condition: str, message: str) -> None:
        super().__init__(message)
        self.condition = condition
        self.message = message

    @property
    def phase(self) -> str:
        """The "while ..." part of the message (what the connection was doing)."""
        at = self.message.find(" while ")
        return self.message[at + 1 :] if at >= 0 else ""


def _os_message(call: str, exc: OSError, phase: str) -> str:
    if exc.errno is not None:
        return f"{call}() failed ({exc.errno}: {exc.strerror}) {phase}"
    return f"{call}() failed ({exc}) {phase}"


def _timed_out(phase: str) -> _Fail:
    return _Fail("timeout", f"upstream timed out (110: Connection timed out) {phase}")


# --------------------------------------------------------------------------------------------------------
# per-location plan: everything that does not change from request to request


@dataclass
class _Plan:
    pp: ProxyPass
    settings: HttpSettings
    location: Location | None
    set_headers: ph.SetHeaders
    host_getter: Getter | None
    set_getters: list[tuple[str, Getter]]
    hide: frozenset[str]
    redirects: tuple[ph.RedirectRule, ...]
    policy: NextUpstream
    pp_host: Getter | None  # proxy_pass with variables: its host part (or whole URL) and URI
    pp_uri: Getter | None


_plans: dict[tuple[int, int], tuple[HttpSettings, Location | None, _Plan]] = {}
_hash_keys: dict[int, tuple[Upstream, Getter]] = {}
_dynamic: dict[str, Upstream] = {}  # proxy_pass with variables naming host:port: implicit blocks


def _plan_for(req: Request) -> _Plan:
    settings = req.settings
    location = req.location
    key = (id(settings), id(location))
    hit = _plans.get(key)
    if hit is not None and hit[0] is settings and hit[1] is location:
        return hit[2]
    pp = settings.proxy_pass
    assert pp is not None
    sh = ph.plan_set_headers(settings.proxy_set_header)
    plan = _Plan(
        pp=pp,
        settings=settings,
        location=location,
        set_headers=sh,
        host_getter=compile_template(sh.host.value) if sh.host is not None else None,
        set_getters=[(hv.name, compile_template(hv.value)) for hv in sh.others],
        hide=ph.hidden_headers(settings.proxy_hide_header, settings.proxy_pass_header),
        redirects=ph.redirect_rules(pp, location, settings.proxy_redirect),
        policy=NextUpstream.from_settings(settings),
        pp_host=compile_template(pp.host) if pp.has_variables else None,
        pp_uri=compile_template(pp.uri) if pp.has_variables and pp.uri is not None else None,
    )
    _plans[key] = (settings, location, plan)
    return plan


def _hash_key(up: Upstream) -> Getter | None:
    if up.balancer != "hash" or not up.hash_key:
        return None
    hit = _hash_keys.get(id(up))
    if hit is None or hit[0] is not up:
        hit = (up, compile_template(up.hash_key))
        _hash_keys[id(up)] = hit
    return hit[1]


async def _resolve_upstream(req: Request, plan: _Plan) -> tuple[Upstream, ProxyPass]:
    """The upstream block and effective proxy_pass for this request."""
    pp = plan.pp
    http = req.conn.ctx.config.http
    if not pp.has_variables:
        assert pp.upstream is not None and http is not None
        return http.upstreams[pp.upstream], pp
    # proxy_pass with variables: evaluated per request; an upstream block by name, else host:port
    assert plan.pp_host is not None
    text = plan.pp_host(req)
    uri = plan.pp_uri(req) if plan.pp_uri is not None else None
    if text.startswith("http://"):
        rest = text[7:]
        slash = rest.find("/")
        text, uri = (rest, uri) if slash < 0 else (rest[:slash], rest[slash:])
    if http is not None:
        block = http.upstreams.get(text)
        if block is not None and not block.implicit:
            return block, ProxyPass("http", text, None, uri, upstream=text, has_variables=True)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        host, port_text = text, "80"
    host = host.strip("[]")
    port = int(port_text)
    key = f"{host}:{port}"
    up = _dynamic.get(key)
    if up is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=1)  # SOCK_STREAM
        except OSError as exc:
            req.log_error("error", f"{host} could not be resolved ({exc})")
            raise HttpError(502) from None
        addrs: list[tuple[str, int]] = []
        for info in infos:
            addr = (str(info[4][0]), int(info[4][1]))
            if addr not in addrs:
                addrs.append(addr)
        servers = tuple(UpstreamServer(host=host, port=port, address=a) for a in addrs)
        up = Upstream(name=key, servers=servers, implicit=True)
        if len(_dynamic) > 256:
            _dynamic.clear()  # a small cache, as nginx's resolver cache is bounded too
        _dynamic[key] = up
    return up, ProxyPass("http", host, port, uri, upstream=key, has_variables=True)


# --------------------------------------------------------------------------------------------------------
# the handler


async def handle(req: Request) -> None:
    plan = _plan_for(req)
    up, pp = await _resolve_upstream(req, plan)
    rt = runtime_for(up)
    await _Proxy(req, plan, pp, up, rt).run()


class _Proxy:
    """One proxied request (nginx's ngx_http_upstream_t)."""

    def __init__(self, req: Request, plan: _Plan, pp: ProxyPass, up: Upstream, rt: UpstreamRuntime) -> None:
        self.req = req
        self.plan = plan
        self.pp = pp
        self.up = up
        self.rt = rt
        self.s = plan.settings
        self.attempts = Attempts()
        self.body: bytes | None = None
        self.streamed = False
        self.chunked_body = False
        self.head = b""
        self.target = ""
        self.sel: Selection | None = None
        self.started = time.monotonic()
        self.upgrade = bool(getattr(req, "upgrade", False)) or ph.is_upgrade_request(req.headers)
        self.replayable = True
        self.conn: UpstreamConnection | None = None  # the upstream connection in use, for a client abort
        self.phase = ""  # what the upstream connection is doing, in nginx's words
        self.task: asyncio.Task[object] | None = None

    # ------------------------------------------------------------------ preparation

    def _set_proxy_vars(self) -> None:
        req, pp = self.req, self.pp
        v = req.vars
        v["proxy_host"] = pp.proxy_host
        v["proxy_port"] = ph.proxy_port(pp)
        v["proxy_add_x_forwarded_for"] = ph.add_x_forwarded_for(
            req.headers.get("x-forwarded-for"), req.conn.client_addr
        )

    async def _prepare_body(self) -> None:
        req, s = self.req, self.s
        if s.proxy_set_body is not None:
            self.body = compile_template(s.proxy_set_body)(req).encode("utf-8", "surrogateescape")
            return
        if not s.proxy_pass_request_body or not req.has_body:
            self.body = b"" if req.content_length is not None and s.proxy_pass_request_body else None
            return
        chunked = req.content_length is None
        # nginx streams only when asked and when the upstream can take it (chunked needs HTTP/1.1)
        if not s.proxy_request_buffering and (not chunked or s.proxy_http_version == "1.1"):
            self.streamed = True
            self.chunked_body = chunked
            return
        self.body = await req.read_body()  # HttpError 413/408 reach the core, which answers them

    def _build_head(self) -> None:
        req, plan, s, pp = self.req, self.plan, self.s, self.pp
        self.target = ph.upstream_uri(
            pp,
            req.location,
            uri=req.uri,
            args=req.args,
            request_uri=req.request_uri,
            internal=bool(getattr(req, "internal", False)),
        )
        host = plan.host_getter(req) if plan.host_getter is not None else ""
        if not host:
            host = pp.proxy_host  # nginx: an empty Host from proxy_set_header means $proxy_host
        if pp.has_variables and pp.uri is not None:
            self.target = pp.uri  # nginx sends an evaluated URI part as it is
        set_values = [(name, get(req)) for name, get in plan.set_getters]
        if s.proxy_set_body is not None:
            framing = ph.Framing("length", len(self.body or b""))
        elif self.streamed:
            framing = ph.request_framing(
                has_body=True, content_length=req.content_length, buffered_length=None, streamed=True
            )
        else:
            framing = ph.request_framing(
                has_body=req.has_body and s.proxy_pass_request_body,
                content_length=req.content_length if s.proxy_pass_request_body else None,
                buffered_length=len(self.body) if self.body is not None else None,
                streamed=False,
            )
        if self.upgrade:
            connection: str | None = "upgrade"
            upgrade: str | None = req.headers.get("upgrade")
        else:
            upgrade = None
            if self.rt.pool is None:
                connection = "close"
            else:
                connection = "keep-alive" if s.proxy_http_version == "1.0" else None
        self.head = ph.build_request_head(
            method=req.method,
            target=self.target,
            http_version=s.proxy_http_version,
            host=host,
            set_values=set_values,
            set_names=plan.set_headers.names,
            client_headers=req.header_list if s.proxy_pass_request_headers else None,
            connection=connection,
            upgrade=upgrade,
            framing=framing,
        )

    # ------------------------------------------------------------------ the tries

    async def run(self) -> None:
        req = self.req
        if not self.s.proxy_ignore_client_abort:
            self.task = asyncio.current_task()
            req.on_client_closed = self._client_closed
        try:
            await self._run()
        finally:
            if req.on_client_closed == self._client_closed:
                req.on_client_closed = None

    def _client_closed(self) -> None:
        """The client went away: nginx (without proxy_ignore_client_abort) closes the upstream
        connection at once and logs 499; the task's clean-up frees the peer."""
        if not self.phase or self.task is None:
            return  # no upstream activity: the body reader or the response writer notices
        self.req.log_error(
            "info",
            "epoll_wait() reported that client prematurely closed connection, "
            f"so upstream connection is closed too {self.phase}",
        )
        if self.conn is not None:
            self.conn.abort()
        self.task.cancel()

    async def _run(self) -> None:
        req = self.req
        self._set_proxy_vars()
        await self._prepare_body()
        self._build_head()
        policy = self.plan.policy
        self.replayable = replayable(policy, req.method, self.streamed)
        hash_key = _hash_key(self.up)
        self.sel = self.rt.peers.selection(
            key=hash_key(req) if hash_key is not None else "",
            client_addr=req.conn.client_addr,
            next_tries=self.s.proxy_next_upstream_tries,
        )
        while True:
            peer = self.sel.get()
            if peer is None:
                req.log_error("error", f"no live upstreams {CONNECTING}")
                a = self.attempts.add(self.up.name)
                a.status = 502
                self._fail_response(502)
                return
            if await self._try(peer):
                return

    async def _try(self, peer: Peer) -> bool:
        """One try at `peer`. True when the request is answered (or given up), False to try the next."""
        req = self.req
        sel = self.sel
        assert sel is not None
        attempt = self.attempts.add(peer.name)
        t0 = time.monotonic()
        req.vars["upstream_log"] = f"{self.pp.scheme}://{peer.name}{self.target}"
        conn: UpstreamConnection | None = None
        sent = False
        try:
            self.phase = CONNECTING
            conn, reused = await self._connection(peer)
            self.conn = conn
            attempt.connect_time = time.monotonic() - t0
            while True:
                try:
                    sent = True
                    parser, pieces, sender = await self._exchange(conn)
                    break
                except _Fail as f:
                    # A reused keep-alive connection the server had already closed is not a try
                    # (nginx); it is retried on a fresh connection when sending twice is safe.
                    if reused and f.condition == "error" and not conn.received_any and self.replayable:
                        req.log_error("info", f"{f.message} (keep-alive connection closed, retrying)")
                        conn.abort()
                        conn = None
                        conn = self.conn = await self._connect(peer)
                        reused = False
                        continue
                    raise
        except _Fail as f:
            if conn is not None:
                conn.abort()
            self.conn = None
            self.phase = ""
            attempt.status = final_status(f.condition)
            attempt.response_time = time.monotonic() - t0
            return self._after_failure(peer, f, sent)
        except BaseException:
            # the client's body failed (HttpError), or the task was cancelled: release and re-raise
            if conn is not None:
                conn.abort()
            attempt.response_time = time.monotonic() - t0
            sel.free(peer, PeerState.OK)
            self._set_vars()
            raise
        attempt.header_time = time.monotonic() - t0
        head = parser.head
        assert head is not None
        attempt.status = head.status
        return await self._respond(peer, conn, parser, pieces, sender, attempt, t0)

    def _after_failure(self, peer: Peer, f: _Fail, sent: bool) -> bool:
        req = self.req
        sel = self.sel
        assert sel is not None
        req.log_error("error", f.message)
        if sel.free(peer, PeerState.FAILED):
            req.log_error("warn", f"upstream server temporarily disabled {f.phase}".rstrip())
        if req.client_closed:
            self._set_vars()
            req.abort()
            return True
        if may_retry(
            self.plan.policy,
            f.condition,
            method=req.method,
            request_sent=sent,
            body_streamed=self.streamed,
            tries_left=sel.tries,
            elapsed=time.monotonic() - self.started,
        ):
            return False
        self._fail_response(final_status(f.condition))
        return True

    def _fail_response(self, status: int) -> None:
        self._set_vars()
        self.req.send_error(status)

    def _set_vars(self) -> None:
        self.req.vars.update(self.attempts.variables())

    # ------------------------------------------------------------------ connections

    async def _connection(self, peer: Peer) -> tuple[UpstreamConnection, bool]:
        pool = self.rt.pool
        if pool is not None:
            conn = pool.acquire(peer.name, known_alive_only=not self.replayable)
            if conn is not None:
                if not self.replayable:
                    # let the loop deliver an EOF or reset that is already on its way
                    await asyncio.sleep(0)
                    if conn.closed or conn.eof:
                        conn.abort()
                        return await self._connect(peer), False
                return conn, True
        return await self._connect(peer), False

    async def _connect(self, peer: Peer) -> UpstreamConnection:
        srv = peer.server
        high = (
            max(64 * 1024, self.s.proxy_buffers[0] * self.s.proxy_buffers[1])
            if self.s.proxy_buffering
            else 64 * 1024
        )
        try:
            conn = await open_connection(
                asyncio.get_running_loop(),
                peer.name,
                srv.address,
                srv.unix,
                self.s.proxy_connect_timeout,
                high,
            )
        except TimeoutError:
            raise _timed_out(CONNECTING) from None
        except OSError as exc:
            raise _Fail("error", _os_message("connect", exc, CONNECTING)) from None
        if self.rt.pool is not None:
            self.rt.pool.opened += 1
        return conn

    # ------------------------------------------------------------------ request out, head in

    async def _exchange(
        self, conn: UpstreamConnection
    ) -> tuple[ResponseParser, list[bytes], asyncio.Task[None] | None]:
        """Send the request and read the response head. Returns the parser (head parsed), body bytes
        that came with the head, and the body sender still running (streamed bodies) or None."""
        req = self.req
        s = self.s
        conn.requests += 1
        sender: asyncio.Task[None] | None = None
        self.phase = SENDING
        try:
            if self.body:
                conn.writelines([self.head, self.body])
            else:
                conn.write(self.head)
        except OSError as exc:
            raise _Fail("error", _os_message("writev", exc, SENDING)) from None
        if self.streamed:
            sender = asyncio.ensure_future(self._send_body(conn))
        elif conn.write_paused:
            try:
                await conn.drain(s.proxy_send_timeout)
            except TimeoutError:
                raise _timed_out(SENDING) from None
            except OSError as exc:
                raise _Fail("error", _os_message("writev", exc, SENDING)) from None
        parser = ResponseParser(s.proxy_buffer_size, head_request=req.method == "HEAD")
        self.phase = READING_HEAD
        try:
            pieces = await self._read_head(conn, parser, sender)
        except BaseException:
            if sender is not None and not sender.done():
                sender.cancel()
            raise
        return parser, pieces, sender

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

    async def _read_head(
        self, conn: UpstreamConnection, parser: ResponseParser, sender: asyncio.Task[None] | None
    ) -> list[bytes]:
        timeout = self.s.proxy_read_timeout
        while True:
            try:
                if sender is not None and not sender.done():
                    # the read timeout starts once the request is sent; until then the sender's
                    # send timeout bounds the wait
                    waiter = asyncio.ensure_future(conn.wait_readable())
                    await asyncio.wait({waiter, sender}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiter.done():
                        waiter.cancel()
                    if sender.done() and not conn.buffered and not conn.eof:
                        self._check_sender(sender)
                    data = conn.read_nowait()
                    if data is None:
                        continue
                else:
                    data = await conn.read(timeout)
            except TimeoutError:
                raise _timed_out(READING_HEAD) from None
            except OSError as exc:
                raise _Fail("error", _os_message("recv", exc, READING_HEAD)) from None
            if not data:
                raise _Fail("error", f"upstream prematurely closed connection {READING_HEAD}")
            try:
                pieces = parser.feed(data)
            except UpstreamInvalidHeader as exc:
                raise _Fail("invalid_header", f"{exc.message} {READING_HEAD}") from None
            except UpstreamError as exc:
                raise _Fail("error", f"{exc.message}") from None
            if parser.head is not None:
                return pieces

    def _check_sender(self, sender: asyncio.Task[None]) -> None:
        exc = sender.exception()
        if exc is None:
            return
        if isinstance(exc, HttpError):
            raise exc  # the client's body failed (413, 408, 499): the core answers
        if isinstance(exc, TimeoutError):
            raise _timed_out(SENDING)
        if isinstance(exc, OSError):
            raise _Fail("error", _os_message("writev", exc, SENDING))
        raise exc

    # ------------------------------------------------------------------ the response

    async def _respond(
        self,
        peer: Peer,
        conn: UpstreamConnection,
        parser: ResponseParser,
        pieces: list[bytes],
        sender: asyncio.Task[None] | None,
        attempt: Attempt,
        t0: float,
    ) -> bool:
        req, s, sel = self.req, self.s, self.sel
        assert sel is not None
        head = parser.head
        assert head is not None
        status = head.status
        policy = self.plan.policy
        if status >= 300:
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
                self._drop(conn, sender)
                attempt.response_time = time.monotonic() - t0
                sel.free(peer, PeerState.NEXT if status in (403, 404) else PeerState.FAILED)
                return False
            if s.proxy_intercept_errors and any(code == status for code, _, _ in s.error_page):
                self._finish_upstream(peer, conn, parser, sender, attempt, t0)
                self._set_vars()
                req.send_error(status)
                return True
        accel = head.get("x-accel-redirect")
        if (
            accel is not None
            and accel.startswith(("/", "@"))
            and "x-accel-redirect" not in s.proxy_pass_header
        ):
            # nginx's X-Accel-Redirect: the upstream names what pyginx should serve instead
            self._finish_upstream(peer, conn, parser, sender, attempt, t0)
            self._set_vars()
            if accel.startswith("@"):
                req.conn.ctx.dispatch_named(req, accel[1:])
            else:
                path, _, args = accel.partition("?")
                if req.method != "HEAD":
                    req.method = "GET"
                req.internal_redirect(path, args)
            return True
        if status == 101:
            if not self.upgrade:
                self._drop(conn, sender)
                attempt.status = 502
                return self._after_failure(
                    peer, _Fail("invalid_header", f"upstream sent unexpected 101 {READING_HEAD}"), True
                )
            await self._tunnel(peer, conn, parser, attempt, t0)
            return True
        if req.client_closed and not s.proxy_ignore_client_abort:
            self._drop(conn, sender)
            sel.free(peer, PeerState.OK)
            self._set_vars()
            req.abort()
            return True
        headers = ph.response_headers(
            head.headers,
            hide=self.plan.hide,
            rules=self.plan.redirects,
            render=self._render,
            absolute=req.absolute_location,
        )
        if parser.complete and req.method != "HEAD":
            # the whole response is here: one write to the client, the connection back to the pool
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self._finish_upstream(peer, conn, parser, sender, attempt, t0)
            self._set_vars()
            req.respond(status, headers, body)
            return True
        length = head.content_length if parser.framing in ("length", "none") else None
        if status in (204, 304) or status < 200:
            length = None
        self._set_vars()
        req.start(status, headers, length)
        for piece in pieces:
            req.write(piece)
        await self._stream_body(peer, conn, parser, sender, attempt, t0)
        return True

    def _render(self, template: str) -> str:
        return compile_template(template)(self.req)

    async def _stream_body(
        self,
        peer: Peer,
        conn: UpstreamConnection,
        parser: ResponseParser,
        sender: asyncio.Task[None] | None,
        attempt: Attempt,
        t0: float,
    ) -> None:
        req = self.req
        sel = self.sel
        assert sel is not None
        timeout = self.s.proxy_read_timeout
        error: str | None = None
        self.phase = READING_BODY
        try:
            while not parser.complete:
                if parser.error is not None:
                    error = f"upstream sent invalid chunked response {READING_BODY}"
                    break
                # backpressure: no more upstream reading until the client took what it was given
                # (a client gone with proxy_ignore_client_abort on: the rest is read and dropped)
                if not (req.client_closed and self.s.proxy_ignore_client_abort):
                    await req.drain()
                try:
                    data = await conn.read(timeout)
                except TimeoutError:
                    error = f"upstream timed out (110: Connection timed out) {READING_BODY}"
                    break
                except OSError as exc:
                    error = _os_message("recv", exc, READING_BODY)
                    break
                if not data:
                    try:
                        parser.feed_eof()
                    except UpstreamError:
                        error = f"upstream prematurely closed connection {READING_BODY}"
                    break
                try:
                    pieces = parser.feed(data)
                except UpstreamError:
                    error = f"upstream sent invalid chunked response {READING_BODY}"
                    break
                for piece in pieces:
                    req.write(piece)
        except (ConnectionError, HttpError, asyncio.CancelledError) as exc:
            # the client went away: nothing more to send; the upstream connection cannot be reused
            self._drop(conn, sender)
            attempt.response_time = time.monotonic() - t0
            attempt.bytes_received = parser.received
            sel.free(peer, PeerState.OK)
            self._set_vars()
            req.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if error is not None:
            # headers already went out: the client must see a truncated response, never a complete one
            req.log_error("error", error)
            self._drop(conn, sender)
            attempt.response_time = time.monotonic() - t0
            attempt.bytes_received = parser.received
            sel.free(peer, PeerState.OK)
            self._set_vars()
            req.abort()
            return
        self._finish_upstream(peer, conn, parser, sender, attempt, t0)
        self._set_vars()
        req.end()

    def _finish_upstream(
        self,
        peer: Peer,
        conn: UpstreamConnection,
        parser: ResponseParser,
        sender: asyncio.Task[None] | None,
        attempt: Attempt,
        t0: float,
    ) -> None:
        """The response is read (or no longer wanted): pool or close the connection, free the peer."""
        attempt.response_time = time.monotonic() - t0
        attempt.bytes_received = parser.received
        request_done = sender is None or (
            sender.done() and not sender.cancelled() and sender.exception() is None
        )
        pool = self.rt.pool
        self.phase = ""
        self.conn = None
        if pool is not None and parser.complete and parser.keepalive and request_done:
            pool.release(conn)
        else:
            self._drop(conn, sender)
        assert self.sel is not None
        self.sel.free(peer, PeerState.OK)

    def _drop(self, conn: UpstreamConnection, sender: asyncio.Task[None] | None) -> None:
        self.phase = ""
        self.conn = None
        if sender is not None:
            if not sender.done():
                sender.cancel()
            elif not sender.cancelled():
                sender.exception()  # retrieved: the response already decided what happens
        conn.close()

    # ------------------------------------------------------------------ upgraded connections

    async def _tunnel(
        self, peer: Peer, conn: UpstreamConnection, parser: ResponseParser, attempt: Attempt, t0: float
    ) -> None:
        """A 101 to an Upgrade request: bytes flow both ways until either side closes or nothing
        moves for proxy_read_timeout (nginx's idle limit for upgraded connections)."""
        req = self.req
        sel = self.sel
        assert sel is not None and parser.head is not None
        from pyginx.http.headers import date_line
        from pyginx.http.status import server_header

        headers = ph.response_headers(parser.head.headers, hide=self.plan.hide, upgrade=True)
        lines = "".join(f"{n}: {v}\r\n" for n, v in headers)
        reason = parser.head.reason or "Switching Protocols"
        head = (
            f"HTTP/1.1 101 {reason}\r\n".encode("latin-1", "replace")
            + server_header(self.s.server_tokens)
            + date_line()
            + lines.encode("latin-1", "replace")
            + b"\r\n"
        )
        self._set_vars()
        # the tunnel watches the client itself (tunnel_lost): no client-abort hook while it runs
        self.phase = ""
        req.on_client_closed = None
        transport, leftover = req.take_over()
        req.status = 101
        req.head_sent = True
        client = req.conn
        transport.write(head)
        req.bytes_sent += len(head)
        if parser.extra:
            transport.write(parser.extra)
            req.bytes_sent += len(parser.extra)
        timeout = self.s.proxy_read_timeout
        last = [time.monotonic()]
        done = asyncio.get_running_loop().create_future()
        resume_task: list[asyncio.Task[None] | None] = [None]

        async def resume_client() -> None:
            try:
                await conn.drain(self.s.proxy_send_timeout)
                transport.resume_reading()
            except (OSError, TimeoutError):
                if not done.done():
                    done.set_result(None)
            finally:
                resume_task[0] = None

        def from_client(data: bytes) -> None:
            last[0] = time.monotonic()
            try:
                conn.write(data)
            except OSError:
                if not done.done():
                    done.set_result(None)
                return
            if conn.write_paused and resume_task[0] is None:
                transport.pause_reading()
                resume_task[0] = asyncio.ensure_future(resume_client())

        def client_lost(_exc: Exception | None) -> None:
            if not done.done():
                done.set_result(None)

        client.tunnel = from_client
        client.tunnel_lost = client_lost
        # a client's half-close goes on to the upstream at once (a WebSocket peer may still answer)
        client.tunnel_eof = conn.write_eof
        if leftover:
            from_client(leftover)

        async def from_upstream() -> None:
            while True:
                wait = timeout - (time.monotonic() - last[0])
                try:
                    data = await conn.read(max(wait, 0.001))
                except TimeoutError:
                    if time.monotonic() - last[0] < timeout:
                        continue  # the client side was active meanwhile
                    req.log_error("info", f"upstream timed out (110: Connection timed out) {TUNNELING}")
                    return
                except OSError:
                    return
                if not data:
                    return
                last[0] = time.monotonic()
                transport.write(data)
                req.bytes_sent += len(data)
                req.body_bytes_sent += len(data)
                try:
                    await req.drain()
                except ConnectionError:
                    return

        pump = asyncio.ensure_future(from_upstream())
        try:
            await asyncio.wait({pump, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, resume_task[0]):
                if task is not None and not task.done():
                    task.cancel()
            client.tunnel = None
            client.tunnel_lost = None
            client.tunnel_eof = None
            conn.close()
            attempt.response_time = time.monotonic() - t0
            sel.free(peer, PeerState.OK)
            self._set_vars()
            req.keep_alive = False
            if req.client_closed:
                req.abort()
            else:
                req.end()
