"""Active health checks (pyginx extension; nginx Plus has `health_check`).

Each worker checks every server of each upstream block that has `health_check`, on its own (the
balancer state it updates is the worker's own): every `interval`, `GET uri` on a new connection, the
head read within `timeout`. A server failing `fails` checks in a row is marked down in the balancer
(skipped before any client request fails on it); `passes` good checks in a row bring it back. A good
check is a 2xx or 3xx answer, or one of `status` when that is given. Servers start healthy.

The verdict logic (`CheckState`) is pure; the I/O is `probe()`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pyginx.config.model import HealthCheck, Http, Upstream
from pyginx.errors import UpstreamError
from pyginx.log import error_log
from pyginx.upstream.balancer import Peer
from pyginx.upstream.pool import open_connection
from pyginx.upstream.response import ResponseParser
from pyginx.upstream.runtime import runtime_for

HEAD_LIMIT = 16 * 1024


@dataclass
class CheckState:
    """Consecutive results of one server; `record` says when its health changes."""

    healthy: bool = True
    fails: int = 0
    passes: int = 0

    def record(self, ok: bool, conf: HealthCheck) -> bool | None:
        """Count one check; returns the new health when it changes, else None."""
        if ok:
            self.passes += 1
            self.fails = 0
            if not self.healthy and self.passes >= conf.passes:
                self.healthy = True
                return True
        else:
            self.fails += 1
            self.passes = 0
            if self.healthy and self.fails >= conf.fails:
                self.healthy = False
                return False
        return None


def status_ok(status: int, conf: HealthCheck) -> bool:
    if conf.status:
        return status in conf.status
    return 200 <= status < 400


async def probe(peer: Peer, conf: HealthCheck, host: str) -> str | None:
    """One check of `peer`: None when healthy, else why not (for the log)."""
    loop = asyncio.get_running_loop()
    srv = peer.server
    deadline = time.monotonic() + conf.timeout
    try:
        conn = await open_connection(loop, peer.name, srv.address, srv.unix, conf.timeout)
    except TimeoutError:
        return "connect() timed out"
    except OSError as exc:
        return f"connect() failed ({exc.errno}: {exc.strerror})"
    try:
        conn.write(
            f"GET {conf.uri} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            "User-Agent: pyginx-health-check\r\n\r\n".encode("latin-1", "replace")
        )
        parser = ResponseParser(HEAD_LIMIT)
        while parser.head is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timed out reading the response"
            data = await conn.read(left)
            if not data:
                parser.feed_eof()
            parser.feed(data)
        status = parser.head.status
        if not status_ok(status, conf):
            return f"status {status}"
        return None
    except TimeoutError:
        return "timed out reading the response"
    except UpstreamError as exc:
        return exc.message
    except OSError as exc:
        return f"recv() failed ({exc.errno}: {exc.strerror})"
    finally:
        conn.abort()


class HealthChecks:
    """The running checks of one worker; `stop()` ends them."""

    def __init__(self, http: Http, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tasks: list[asyncio.Task[None]] = []
        for up in http.upstreams.values():
            if up.health_check is not None:
                self.tasks.append(loop.create_task(self._run(up, up.health_check)))

    async def _run(self, up: Upstream, conf: HealthCheck) -> None:
        rt = runtime_for(up, self.loop)
        peers = rt.peers
        states: dict[int, CheckState] = {}
        host = up.name
        while True:
            # a snapshot: with `resolve` servers the peer set may change while the probes run
            live = [p for p in peers.all if not p.down]
            results = await asyncio.gather(*(probe(p, conf, host) for p in live))
            for peer, why in zip(live, results, strict=True):
                change = states.setdefault(id(peer), CheckState()).record(why is None, conf)
                if change is False:
                    peers.set_health(peer, up=False)
                    error_log().log(
                        "warn",
                        f'upstream server {peer.name} of upstream "{up.name}" failed the health check '
                        f"({why}), marked down",
                    )
                elif change is True:
                    peers.set_health(peer, up=True)
                    error_log().log(
                        "notice",
                        f'upstream server {peer.name} of upstream "{up.name}" passed the health check, marked up',
                    )
            await asyncio.sleep(conf.interval)

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []


def start_health_checks(http: Http, loop: asyncio.AbstractEventLoop) -> HealthChecks:
    """Start this worker's checks (called by the HTTP server at start); `.stop()` at shutdown."""
    return HealthChecks(http, loop)
