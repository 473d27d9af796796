"""The per-worker run-time state of each upstream block: balancer peers and keep-alive pool.

State lives in this process only (each worker balances and pools on its own, as nginx without a
shared zone). It is keyed by the configuration's `Upstream` object, so a reload (new objects) starts
from fresh state, as nginx's does; the object is kept referenced so its id cannot be reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pyginx.config.model import Upstream
from pyginx.upstream.balancer import Peers
from pyginx.upstream.pool import Pool


class UpstreamRuntime:
    __slots__ = ("upstream", "peers", "pool", "keepalive", "reresolver")

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop) -> None:
        self.upstream = upstream
        self.peers = Peers(upstream)
        # nginx keeps connections alive by default only for upstream blocks written in the
        # configuration; `proxy_pass http://host:port` (an implicit block) closes after each request.
        self.keepalive = 0 if upstream.implicit else upstream.keepalive
        self.pool: Pool | None = None
        self.reresolver: Any = None  # pyginx.upstream.dynamic.Reresolver, for `resolve` servers
        if self.keepalive > 0:
            self.pool = Pool(
                loop,
                self.keepalive,
                upstream.keepalive_timeout,
                upstream.keepalive_requests,
                upstream.keepalive_time,
            )


_runtimes: dict[int, UpstreamRuntime] = {}


def runtime_for(upstream: Upstream, loop: asyncio.AbstractEventLoop | None = None) -> UpstreamRuntime:
    rt = _runtimes.get(id(upstream))
    if rt is None or rt.upstream is not upstream:
        rt = UpstreamRuntime(upstream, loop or asyncio.get_running_loop())
        _runtimes[id(upstream)] = rt
    return rt


def start_resolving(upstreams: list[Upstream], loop: asyncio.AbstractEventLoop) -> list[UpstreamRuntime]:
    """Start re-resolving the `resolve` servers of these blocks (at worker start: the first answer
    should not wait for the first request). Returns the runtimes that resolve."""
    started = []
    for up in upstreams:
        if not up.resolvable or up.resolver is None:
            continue
        from pyginx.upstream.dynamic import Reresolver  # only configurations with `resolve` load it

        rt = runtime_for(up, loop)
        if rt.reresolver is None:
            rt.reresolver = Reresolver(up, rt.peers, loop)
            rt.reresolver.start()
        started.append(rt)
    return started


def stop_resolving(upstreams: list[Upstream]) -> None:
    for up in upstreams:
        rt = _runtimes.get(id(up))
        if rt is not None and rt.reresolver is not None:
            rt.reresolver.stop()
            rt.reresolver = None


def forget(upstreams: list[Upstream]) -> None:
    """Drop the state of a replaced configuration (single-process reload), closing idle connections."""
    stop_resolving(upstreams)
    for up in upstreams:
        rt = _runtimes.pop(id(up), None)
        if rt is not None and rt.pool is not None:
            rt.pool.close_all()


def close_idle(upstreams: Iterable[Upstream]) -> None:
    """This worker is retiring or shutting down: close every idle keep-alive connection now and pool
    no more (nginx's keepalive module closes cached connections once ngx_exiting is set). An idle
    connection held open would keep the server at its other end waiting, and that may be this very
    worker (a server proxying to itself), which would then linger until worker_shutdown_timeout."""
    for up in upstreams:
        rt = _runtimes.get(id(up))
        if rt is not None and rt.upstream is up and rt.pool is not None:
            rt.pool.close_all()
            rt.pool.max_idle = 0  # release() closes from now on
