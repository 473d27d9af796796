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
from typing import Any

from pyginx.config.model import Http, HttpSettings, Location, MainConfig, Server
from pyginx.http.accesslog import AccessLogs
from pyginx.http.connection import HttpConnection
from pyginx.http.phases import PhaseEngine, apply_location
from pyginx.http.request import Request
from pyginx.http.router import ListenKey, LocationTable, ServerTable, build_server_tables
from pyginx.log import error_log

SWEEP_INTERVAL = 0.25  # seconds between timeout sweeps; the granularity of every client timeout


class ServerContext:
    """Everything a connection needs from the configuration, built once per configuration."""

    def __init__(self, config: MainConfig, loop: asyncio.AbstractEventLoop) -> None:
        assert config.http is not None, "a configuration without http serves nothing"
        self.config = config
        self.loop = loop
        http = config.http
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
        self.connections: set[HttpConnection] = set()
        self._conn_counter = 0
        self.accepting_closed = False
        self.graceful_keep_idle = False
        self.close_idle_now = False
        self.max_connections = config.events.worker_connections
        self.idle_waiter: asyncio.Future[None] | None = None
        # stub_status / prometheus_metrics (pyginx/modules/status.py): counts in the shared zone;
        # None (nothing counted) unless some location shows them
        from pyginx.modules.status import stats_for

        self.stats = stats_for(self)

    def next_conn_id(self) -> int:
        if self.stats is not None:
            self.stats.counters.add(0)  # status.ACCEPTS
        self._conn_counter += 1
        return self._conn_counter

    def connection_opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)
        if len(self.connections) > self.max_connections:
            error_log().log("alert", f"{self.max_connections} worker_connections are not enough")
            conn.close(abort=True)
        elif self.stats is not None:
            self.stats.counters.add(1)  # status.HANDLED (ACCEPTS is counted with the id)

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
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
            req.send_error(500)
            return
        apply_location(req, loc)
        self.phases.run_location(req)

    def log_request(self, req: Request) -> None:
        if self.stats is not None:
            self.stats.observe(req)
        if not self.logging:
            return
        if req.status == 494:
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


class HttpServer:
    """The worker's HTTP server (interface used by pyginx.worker and pyginx.single)."""

    def __init__(self, config: MainConfig, sockets: dict[ListenKey, socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.ctx: ServerContext | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._health: Any = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.master_process and self.config.worker_processes > 1:
            # libuv accepts every pending connection in one go; with several workers sharing one
            # listening socket that lets one worker take a burst meant for all. One accept per
            # wake-up spreads them (read by libuv at its first accept, so set before serving).
            os.environ["UV_TCP_SINGLE_ACCEPT"] = "1"
        ctx = self.ctx = ServerContext(self.config, loop)
        for key, sock in self.sockets.items():
            # Each server gets its own descriptor: closing it (graceful shutdown, reload in a single
            # process) must not close the socket the master or a newer server still listens on.
            own = sock.dup()
            own.setblocking(False)

            def factory(k: ListenKey = key) -> HttpConnection:
                return HttpConnection(ctx, k)

            if own.family == socket.AF_UNIX:
                server = await loop.create_unix_server(factory, sock=own, backlog=_backlog(self.config, key))
            else:
                server = await loop.create_server(factory, sock=own, backlog=_backlog(self.config, key))
            self._servers.append(server)
        self._schedule_sweep()
        self._health = _start_health_checks(self.config, loop)
        # Everything allocated so far (configuration, tables, modules) lives as long as the server:
        # move it out of the collector's sight, and collect the young generation less often, since
        # a request's objects are freed by reference counting (they form no cycles).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

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
        if self._health is not None:
            try:
                self._health.stop()
            except Exception:
                pass
            self._health = None
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

    def flush_logs(self) -> None:
        if self.ctx is not None:
            self.ctx.access_logs.flush()

    @property
    def connection_count(self) -> int:
        return len(self.ctx.connections) if self.ctx is not None else 0


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
