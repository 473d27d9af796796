"""The HTTP server inside one worker: listening sockets -> connections, the per-configuration context
(server and location tables, access logs, dispatch), the timeout sweep, and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyginx import modules
from pyginx.config.model import Http, HttpSettings, Location, MainConfig, Server
from pyginx.http import drain
from pyginx.http.accesslog import AccessLogs
from pyginx.http.connection import IDLE, HttpConnection
from pyginx.http.phases import PhaseEngine, apply_location
from pyginx.http.request import Request
from pyginx.http.router import ListenKey, LocationTable, ServerTable, build_server_tables
from pyginx.http.status import INTERNAL_400
from pyginx.http.variables import Getter
from pyginx.log import error_log

# What a worker counts as one of its connections: an HttpConnection, an HTTP/2 connection or a TLS
# handshake in progress (pyginx.tls.acceptor.Pending). Any, not a union: the classes live in layers
# this module does not import, and the compiled build checks a declared class at every call.
Tracked = Any

if TYPE_CHECKING:
    from pyginx.tls.contexts import TlsContexts

SWEEP_INTERVAL = 0.25  # seconds between timeout sweeps; the granularity of every client timeout
_HOLD_CONNECTIONS = 64  # connections whose small answers wait together for the end of a loop turn


class ServerContext:
    """Everything a connection needs from the configuration, built once per configuration."""

    def __init__(self, config: MainConfig, loop: asyncio.AbstractEventLoop) -> None:
        assert config.http is not None, "a configuration without http serves nothing"
        self.config = config
        self.loop = loop
        http = config.http
        # variables the configuration defines (map, geo, split_clients), filled by the modules'
        # worker-start hooks, which get this context (and through it the configuration)
        self.variables: dict[str, Getter] = {}
        for module in modules.ALL:
            if module.init_worker is not None:
                module.init_worker(self)
        self.servers = http.servers
        self.server_tables: dict[ListenKey, ServerTable] = build_server_tables(http.servers)
        self.location_tables: dict[int, LocationTable] = {
            id(s): LocationTable.build(s.locations) for s in http.servers
        }
        self.phases = PhaseEngine(self.location_tables)
        self.default_server: Server = http.servers[0]
        self.proxy_protocol_listens = frozenset(
            la.key for s in http.servers for la in s.listen if la.proxy_protocol
        )
        self.access_logs = AccessLogs(http.log_formats)
        self.logging = _any_access_log(http)  # False: request_done skips the access-log step
        self.connections: set[Tracked] = set()
        self._conn_counter = 0
        self._modules_stopped = False
        self.accepting_closed = False
        self.graceful_keep_idle = False
        self.close_idle_now = False
        self.max_connections = config.events.worker_connections
        self.drain_at = drain.drain_threshold(self.max_connections)
        self._reuse_warned = 0
        # set by HttpServer: stop / start accepting while the table is full (pyginx.http.drain)
        self.accept_paused = False
        self.pause_accepting: Callable[[], None] | None = None
        self.resume_accepting: Callable[[], None] | None = None
        self.idle_waiter: asyncio.Future[None] | None = None
        # stub_status / prometheus_metrics (pyginx/modules/status.py): counts in the shared zone;
        # None (nothing counted) unless some location shows them
        from pyginx.modules.status import stats_for

        self.stats = stats_for(self)
        # connections whose small writes wait for the end of this loop turn (HttpConnection.write)
        self._held: list[HttpConnection] = []
        self._flush_scheduled = False

    def hold_writes(self, conn: HttpConnection) -> None:
        """`conn` holds output: send it once the callbacks of this loop turn have run.

        At most _HOLD_CONNECTIONS answers wait: under a thousand busy connections one epoll batch
        is a thousand requests, and holding every answer until the last is served would add the
        whole batch's time to the first one's latency (the p99 at 1,000 connections)."""
        held = self._held
        held.append(conn)
        if len(held) >= _HOLD_CONNECTIONS:
            self._send_held()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush_writes)

    def flush_writes(self) -> None:
        self._flush_scheduled = False
        self._send_held()

    def _send_held(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            try:
                conn.flush_out()
            except Exception as exc:  # a transport that went away under us: that connection only
                error_log().log("info", f"write to client failed: {exc!r}", conn.conn_id)
                conn.close(abort=True)

    def stop_modules(self) -> None:
        """The modules' exit_worker hooks, once, when this configuration stops serving here."""
        if self._modules_stopped:
            return
        self._modules_stopped = True
        for m in modules.ALL:
            if m.exit_worker is not None:
                try:
                    m.exit_worker(self)
                except Exception as exc:  # one module's cleanup must not stop the others'
                    error_log().log("alert", f"exit_worker of module {m.name} failed: {exc!r}")

    def next_conn_id(self) -> int:
        if self.stats is not None:
            self.stats.counters.add(0)  # status.ACCEPTS
        self._conn_counter += 1
        return self._conn_counter

    def connection_opened(self, conn: Tracked) -> None:
        connections = self.connections
        connections.add(conn)
        if len(connections) > self.drain_at:
            self._drain(conn)  # nginx's ngx_drain_connections (pyginx.http.drain)
            if len(connections) > self.max_connections:
                error_log().log("alert", f"{self.max_connections} worker_connections are not enough")
                connections.discard(conn)
                conn.close(abort=True)
            if len(connections) >= self.max_connections and self.pause_accepting is not None:
                self.accept_paused = True
                self.pause_accepting()  # full: let a sibling worker take the next clients
        if self.stats is not None and conn in connections:
            self.stats.counters.add(1)  # status.HANDLED (ACCEPTS is counted with the id)

    def _drain(self, new: Tracked) -> None:
        victims = drain.to_reuse(self.connections, exclude=new)
        if not victims:
            return
        now = int(time.time())
        if now != self._reuse_warned:
            self._reuse_warned = now
            error_log().log(
                "warn", f"{self.max_connections} worker_connections are not enough, reusing connections"
            )
        for victim in victims:
            assert isinstance(victim, HttpConnection)
            self.connections.discard(victim)  # its slot is free now; connection_lost comes later
            victim.close()

    def connection_closed(self, conn: Tracked) -> None:
        self.connections.discard(conn)
        if self.accept_paused and len(self.connections) < self.max_connections and self.resume_accepting:
            self.accept_paused = False
            self.resume_accepting()
        if not self.connections and self.idle_waiter is not None and not self.idle_waiter.done():
            self.idle_waiter.set_result(None)

    # -------------------------------------------------------------- request processing

    def process(self, req: Request) -> None:
        """A request whose head is complete, in its turn on the connection."""
        if self.stats is not None:
            self.stats.counters.add(2)  # status.REQUESTS, counted at once (stub_status is exact)
        if req.error_status:
            status = req.error_status
            req.error_status = 0
            reason = req.vars.get("parse_error", "")
            if reason:
                req.log_error("info", f"client sent invalid request: {reason}")
            req.send_error(status)
            return
        self.dispatch(req, first=True)

    def dispatch(self, req: Request, first: bool = False) -> None:
        """A new request or an internal redirect (see pyginx/http/phases.py)."""
        self.phases.start(req, first)

    def search_again(self, req: Request) -> None:
        """The URI changed in the rewrite phase: search the location again."""
        self.phases.search_again(req)

    def dispatch_named(self, req: Request, name: str) -> None:
        table = self.location_tables.get(id(req.server))
        loc = table.named.get(name) if table is not None else None
        if loc is None:
            req.log_error("error", f'could not find named location "@{name}"')
            req.error_status = 0
            req.in_error_page = True
            req.send_error(500)
            return
        req.redirects += 1
        if req.redirects > 10:
            req.log_error(
                "error", f'rewrite or internal redirection cycle while redirect to named location "@{name}"'
            )
            req.send_error(500)
            return
        apply_location(req, loc)
        self.phases.run_location(req)

    def log_request(self, req: Request) -> None:
        if self.stats is not None:
            self.stats.observe(req)
        if not self.logging:
            return
        logs = req.settings.access_log
        if len(logs) == 1 and logs[0].path is None:
            return  # `access_log off` here (another server logs): no call into the log writers
        if req.status in INTERNAL_400:
            req.status = 400
        try:
            self.access_logs.log(req)
        except Exception as exc:  # a broken log format must not break serving
            error_log().log("alert", f"access log write failed: {exc!r}")

    # -------------------------------------------------------------- timeouts

    def sweep(self) -> None:
        if self.stats is not None:
            self.stats.publish()
        now = time.monotonic()
        for conn in list(self.connections):
            d = conn.deadline
            if d and d <= now:
                conn.check_deadline(now)
            elif isinstance(conn, HttpConnection) and conn.state == IDLE:
                conn.park_idle()  # idle keep-alive connections hold as little memory as they can


class HttpServer:
    """The worker's HTTP server (interface used by pyginx.process.worker and pyginx.process.single)."""

    def __init__(
        self, config: MainConfig, sockets: dict[ListenKey, socket.socket], tls: TlsContexts | None = None
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.tls = tls  # built by the master before the fork (shared ticket keys); else built here
        self.ctx: ServerContext | None = None
        self._servers: list[asyncio.Server] = []
        self._acceptors: list[Any] = []  # TLS listening sockets (pyginx.tls.acceptor.TlsAcceptor)
        self._sweeper: asyncio.TimerHandle | None = None
        self._health: Any = None
        self._resuming: asyncio.Task[None] | None = None
        self._keys: list[ListenKey] = []  # the listen key of each of _servers
        self._spares: dict[ListenKey, socket.socket] = {}  # while accepting is paused

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.master_process and self.config.worker_processes > 1:
            # libuv accepts every pending connection in one go; with several workers sharing one
            # listening socket that lets one worker take a burst meant for all. One accept per
            # wake-up spreads them (read by libuv at its first accept, so set before serving).
            os.environ["UV_TCP_SINGLE_ACCEPT"] = "1"
        if self.config.http is None or not self.config.http.servers:
            # nginx without an http block, or with one holding no server, runs and listens nowhere:
            # the worker idles (signals, reload) with nothing to serve.
            return
        ctx = self.ctx = ServerContext(self.config, loop)
        if self.tls is None and any(la.ssl for s in ctx.servers for la in s.listen):
            from pyginx.tls.contexts import build_tls

            self.tls = build_tls(self.config)
        await self._listen(self.sockets)
        ctx.pause_accepting = self._pause_accepting
        ctx.resume_accepting = self._resume_accepting
        self._schedule_sweep()
        self._health = _start_health_checks(self.config, loop)
        _start_resolving(self.config, loop)  # upstream servers with `resolve` (issue 16)
        # Everything allocated so far (configuration, tables, modules) lives as long as the server:
        # move it out of the collector's sight, and collect the young generation less often, since
        # a request's objects are freed by reference counting (they form no cycles).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

    async def _listen(self, sockets: dict[ListenKey, socket.socket]) -> None:
        ctx = self.ctx
        assert ctx is not None
        loop = ctx.loop
        for key, sock in sockets.items():
            # Each server gets its own descriptor: closing it (graceful shutdown, reload in a single
            # process, a full connection table) must not close the socket the master, a sibling or a
            # newer server still listens on.
            own = sock.dup()
            own.setblocking(False)
            tls_context = self.tls.for_listener(key) if self.tls is not None else None
            if tls_context is not None and self.tls is not None:
                from pyginx.http.tls_listen import start_tls_listener

                self._acceptors.append(start_tls_listener(ctx, key, own, tls_context, self.tls))
                continue

            def factory(k: ListenKey = key) -> HttpConnection:
                return HttpConnection(ctx, k)

            if own.family == socket.AF_UNIX:
                server = await loop.create_unix_server(factory, sock=own, backlog=_backlog(self.config, key))
            else:
                server = await loop.create_server(factory, sock=own, backlog=_backlog(self.config, key))
            if ctx.accepting_closed:  # shut down while accepting was being resumed
                server.close()
                continue
            self._servers.append(server)
            self._keys.append(key)

    def _pause_accepting(self) -> None:
        """The connection table is full: stop accepting (the queue stays for the siblings). A
        spare descriptor of each listening socket is kept to listen again (only while paused: it
        would keep a socket the master closed alive)."""
        spares: dict[ListenKey, socket.socket] = {}
        for key, server in zip(self._keys, self._servers, strict=True):
            listening: Any = server  # uvloop's Server.sockets is a list, typeshed says tuple: the
            for s in listening.sockets:  # compiled build would refuse the list
                spares[key] = socket.socket(fileno=os.dup(s.fileno()))
                break
            server.close()
        self._servers = []
        self._keys = []
        self._spares = spares

    def _resume_accepting(self) -> None:
        ctx = self.ctx
        spares, self._spares = self._spares, {}
        if ctx is None or ctx.accepting_closed or self._servers:
            _close_all(spares)
            return

        async def listen_again() -> None:
            try:
                await self._listen(spares)
            finally:
                _close_all(spares)

        task = ctx.loop.create_task(listen_again())
        self._resuming = task  # referenced until done
        task.add_done_callback(_resumed)

    def _schedule_sweep(self) -> None:
        ctx = self.ctx
        if ctx is None:
            return

        def tick() -> None:
            ctx.sweep()
            self._sweeper = ctx.loop.call_later(SWEEP_INTERVAL, tick)

        self._sweeper = ctx.loop.call_later(SWEEP_INTERVAL, tick)

    def reopen_logs(self) -> None:
        if self.ctx is not None:
            self.ctx.access_logs.reopen()

    def begin_graceful_shutdown(self, close_idle: bool) -> None:
        ctx = self.ctx
        for server in self._servers:
            server.close()
        self._servers = []
        self._keys = []
        _close_all(self._spares)
        self._spares = {}
        for acceptor in self._acceptors:
            acceptor.close()
        self._acceptors = []
        if self._health is not None:
            try:
                self._health.stop()
            except Exception:
                pass
            self._health = None
        _close_idle_upstreams(self.config)
        if ctx is None:
            return
        ctx.accepting_closed = True
        ctx.graceful_keep_idle = not close_idle
        ctx.close_idle_now = close_idle
        for conn in list(ctx.connections):
            conn.graceful(close_idle)

    async def wait_closed(self) -> None:
        ctx = self.ctx
        if ctx is None or not ctx.connections:
            self._finish()
            return
        ctx.idle_waiter = ctx.loop.create_future()
        await ctx.idle_waiter
        self._finish()

    def close_all(self) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        for conn in list(ctx.connections):
            conn.close(abort=True)
        self._finish()

    def _finish(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.ctx is not None:
            self.ctx.access_logs.flush()
            self.ctx.stop_modules()
        _forget_upstreams(self.config)

    def flush_logs(self) -> None:
        if self.ctx is not None:
            self.ctx.access_logs.flush()

    @property
    def connection_count(self) -> int:
        return len(self.ctx.connections) if self.ctx is not None else 0


def _close_all(sockets: dict[ListenKey, socket.socket]) -> None:
    for sock in sockets.values():
        sock.close()


def _resumed(task: asyncio.Task[None]) -> None:
    exc = task.exception() if not task.cancelled() else None
    if exc is not None:
        error_log().log("alert", f"could not resume accepting connections: {exc!r}")


def _any_access_log(http: Http) -> bool:
    """Whether any level of the configuration writes an access log."""

    def in_locations(locations: tuple[Location, ...]) -> bool:
        return any(_logs(loc.settings) or in_locations(loc.locations) for loc in locations)

    return _logs(http.settings) or any(_logs(s.settings) or in_locations(s.locations) for s in http.servers)


def _logs(settings: HttpSettings) -> bool:
    return any(entry.path is not None for entry in settings.access_log)


def _backlog(config: MainConfig, key: ListenKey) -> int:
    if config.http is None:
        return 511
    for server in config.http.servers:
        for addr in server.listen:
            if addr.key == key:
                return addr.backlog
    return 511


def _close_idle_upstreams(config: MainConfig) -> None:
    """Idle upstream keep-alive connections are closed at once when the worker stops accepting."""
    if config.http is None or not config.http.upstreams:
        return
    try:
        runtime = importlib.import_module("pyginx.upstream.runtime")
    except ImportError:
        return
    runtime.close_idle(config.http.upstreams.values())


def _forget_upstreams(config: MainConfig) -> None:
    """This server is done: the per-worker state of its upstream blocks (pools, peers, resolvers) is
    dropped, so a single-process reload does not keep the old configuration's pools alive."""
    if config.http is None or not config.http.upstreams:
        return
    from pyginx.upstream import runtime

    runtime.forget(list(config.http.upstreams.values()))


def _start_health_checks(config: MainConfig, loop: asyncio.AbstractEventLoop) -> Any:
    """Active health checks (pyginx extension), when the upstream package provides them."""
    if config.http is None or not any(u.health_check for u in config.http.upstreams.values()):
        return None
    try:
        health = importlib.import_module("pyginx.upstream.health")
    except ImportError:
        return None
    starter = getattr(health, "start_health_checks", None)
    return starter(config.http, loop) if starter is not None else None


def _start_resolving(config: MainConfig, loop: asyncio.AbstractEventLoop) -> None:
    """Upstream servers with `resolve`: the worker re-resolves them while it runs (issue 16)."""
    if config.http is None or not any(u.resolvable for u in config.http.upstreams.values()):
        return
    from pyginx.upstream import runtime

    runtime.start_resolving(list(config.http.upstreams.values()), loop)


def _stop_resolving(config: MainConfig) -> None:
    if config.http is None or not any(u.resolvable for u in config.http.upstreams.values()):
        return
    from pyginx.upstream import runtime

    runtime.stop_resolving(list(config.http.upstreams.values()))
