"""Server status: `stub_status` (ngx_http_stub_status_module) and `prometheus_metrics` (an extension).

    stub_status;               (server, location) nginx's text: connections and requests of ALL workers
    prometheus_metrics: on     (server, location) pyginx extension: Prometheus text exposition 0.0.4

Counts live in a shared zone (pyginx/zone SharedCounters: one row per process, lock-free adds, the
page sums every row). Accepts, handled and requests are added as they happen (one 1 us add each);
the rest a worker keeps as plain local integers (connection states, per-request metrics) and
publishes as deltas on its 0.25 s timeout sweep and right before it renders a page. Cumulative
counters survive reloads and worker restarts; gauges (connection states) are read from live
processes only. The zone ("pyginx_status") exists only when some location uses one of the two
directives; per-request metrics (status classes, bytes, durations) are observed only then too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings, ZoneDecl
from pyginx.config.parsers import Fields, arg_flag
from pyginx.config.values import Context, Env, Val
from pyginx.config.yamlload import YScalar
from pyginx.module import Level, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.config.model import Http
    from pyginx.http.request import Request
    from pyginx.http.server import ServerContext
    from pyginx.zone import SharedCounters

ZONE = "pyginx_status"
TAG = "status"
# request and upstream response time buckets, seconds (Prometheus' defaults)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True)
class StatusConf:
    stub_status: bool = False
    prometheus: bool = False


def _p_stub_status(val: Val, env: Env) -> Fields:
    node = val.node
    # `stub_status;` takes no argument; nginx still accepts the old `stub_status on;` (ignored)
    if isinstance(node, YScalar) and node.value not in (None, False, "off"):
        args = val.args()
        if len(args) > 1:
            raise val.nargs()
    elif isinstance(node, YScalar) and node.value in (False, "off"):
        return {"stub_status": False}
    return {"stub_status": True}


def _p_prometheus(val: Val, env: Env) -> Fields:
    return {"prometheus": arg_flag(val, val.one())}


# ---------------------------------------------------------------------------------------------------
# the counters' layout (fixed by the configuration: its servers)

# stub_status cells
ACCEPTS, HANDLED, REQUESTS, ACTIVE, READING, WRITING, WAITING = range(7)
GAUGES = (ACTIVE, READING, WRITING, WAITING)
_FIXED = 7


class Layout:
    """Cell indexes: the 7 stub_status cells, then per server (responses by class, bytes), then the
    two histograms (buckets + count + sum in ms)."""

    def __init__(self, server_names: list[str], peers: list[tuple[str, str]]) -> None:
        self.servers = server_names
        self.peers = peers  # (upstream, peer address)
        i = _FIXED
        self.responses = i  # server s, class c: responses + s * 5 + c
        i += 5 * len(server_names)
        self.bytes = i  # + s
        i += len(server_names)
        self.req_hist = i  # len(BUCKETS)+1 buckets (last = +Inf), then count, then sum (ms)
        i += len(BUCKETS) + 3
        self.up_hist = i
        i += len(BUCKETS) + 3
        self.peer_responses = i  # + p
        i += len(peers)
        self.peer_failures = i  # + p
        i += len(peers)
        self.cache = i  # HIT, MISS, other
        i += 3
        self.size = i


def layout_for(http: Http) -> Layout:
    names = [s.primary_name or "_" for s in http.servers]
    peers = [(up.name, ps.name) for up in http.upstreams.values() for ps in up.servers if not up.implicit]
    return Layout(names, peers)


def _uses(levels: list[HttpSettings]) -> bool:
    for settings in levels:
        conf: StatusConf = settings.conf(MODULE.name)
        if conf.stub_status or conf.prometheus:
            return True
    return False


def zone_decls(http_settings: HttpSettings, levels: list[HttpSettings]) -> list[ZoneDecl]:
    if not _uses(levels):
        return []
    return [ZoneDecl(ZONE, 1 << 20, TAG)]  # fixed size: reused across reloads; 1 MiB fits ~2,000 cells


# ---------------------------------------------------------------------------------------------------
# the per-worker side


def _bucket(seconds: float) -> int:
    for i, b in enumerate(BUCKETS):
        if seconds <= b:
            return i
    return len(BUCKETS)


class Stats:
    """One configuration's counting in one worker: local integers, published as deltas."""

    def __init__(self, ctx: ServerContext, counters: SharedCounters, layout: Layout) -> None:
        self.ctx = ctx
        self.counters = counters
        self.layout = layout
        self.local = [0] * layout.size
        self.published = [0] * layout.size
        self.server_index = {id(s): i for i, s in enumerate(ctx.servers)}
        self.peer_index = {f"{u}\0{p}": i for i, (u, p) in enumerate(layout.peers)}
        self.peer_by_addr = {p: i for i, (_u, p) in enumerate(layout.peers)}

    def observe(self, req: Request) -> None:
        """A finished request (called from the access-log step, only when metrics are configured)."""
        lay = self.layout
        loc = self.local
        s = self.server_index.get(id(req.server), 0)
        status = req.status
        c = min(max(status // 100, 1), 5) - 1
        loc[lay.responses + s * 5 + c] += 1
        loc[lay.bytes + s] += req.bytes_sent
        took = max(0.0, (req.end_time or time.monotonic()) - req.start_time)
        loc[lay.req_hist + _bucket(took)] += 1
        loc[lay.req_hist + len(BUCKETS) + 1] += 1
        loc[lay.req_hist + len(BUCKETS) + 2] += int(took * 1000)
        if req.upstream_vars is not None or "upstream_addr" in req.vars:
            self._upstream(req)

    def _upstream(self, req: Request) -> None:
        lay, loc = self.layout, self.local
        if req.upstream_vars is not None:
            req.vars.update(req.upstream_vars())
            req.upstream_vars = None
        v = req.vars
        addrs = [a.strip() for a in v.get("upstream_addr", "").replace(" : ", ", ").split(",")]
        statuses = [x.strip() for x in v.get("upstream_status", "").replace(" : ", ", ").split(",")]
        for i, addr in enumerate(addrs):
            p = self.peer_by_addr.get(addr)
            if p is None:
                continue
            loc[lay.peer_responses + p] += 1
            st = statuses[i] if i < len(statuses) else ""
            if not st.isdigit() or st in ("502", "504"):
                loc[lay.peer_failures + p] += 1
        times = [x.strip() for x in v.get("upstream_response_time", "").replace(" : ", ", ").split(",")]
        total = 0.0
        seen = False
        for t in times:
            try:
                total += float(t)
                seen = True
            except ValueError:
                continue
        if seen:
            loc[lay.up_hist + _bucket(total)] += 1
            loc[lay.up_hist + len(BUCKETS) + 1] += 1
            loc[lay.up_hist + len(BUCKETS) + 2] += int(total * 1000)
        cache = v.get("upstream_cache_status", "")
        if cache:
            loc[lay.cache + (0 if cache == "HIT" else 1 if cache == "MISS" else 2)] += 1

    def publish(self) -> None:
        """Move what changed since the last publish into this process's row of the zone."""
        from pyginx.http.connection import BUSY, HEAD

        ctx = self.ctx
        loc = self.local
        reading = writing = 0
        for conn in ctx.connections:
            st = conn.state
            if st == HEAD:
                reading += 1
            elif st == BUSY:
                writing += 1
        active = len(ctx.connections)
        loc[ACTIVE], loc[READING], loc[WRITING] = active, reading, writing
        loc[WAITING] = active - reading - writing
        pub = self.published
        add = self.counters.add
        for i, value in enumerate(loc):
            d = value - pub[i]
            if d:
                add(i, d)
                pub[i] = value

    def close(self) -> None:
        """The configuration is retired in this process: its gauges go back to zero."""
        for g in GAUGES:
            self.local[g] = 0
        pub, add = self.published, self.counters.add
        for g in GAUGES:
            if pub[g]:
                add(g, -pub[g])
                pub[g] = 0


def stats_for(ctx: ServerContext) -> Stats | None:
    """The worker's Stats for this configuration, or None when no location shows status."""
    from pyginx import zone

    http = ctx.config.http
    if http is None or not any(z.name == ZONE and z.tag == TAG for z in http.zones):
        return None
    if zone.current().get(ZONE) is None:
        return None
    layout = layout_for(http)
    counters: SharedCounters = zone.current().attach(ZONE, zone.SharedCounters, layout.size, GAUGES)  # type: ignore[assignment]
    return Stats(ctx, counters, layout)


# ---------------------------------------------------------------------------------------------------
# the pages


def _totals(req: Request) -> tuple[Stats, list[int]] | None:
    stats: Stats | None = getattr(req.conn.ctx, "stats", None)
    if stats is None:
        return None
    stats.publish()
    c = stats.counters
    gauges = set(GAUGES)
    return stats, [c.total(i, live_only=i in gauges) for i in range(stats.layout.size)]


def render_stub(t: list[int]) -> str:
    """ngx_http_stub_status_handler's text, byte for byte."""
    return (
        f"Active connections: {t[ACTIVE]} \n"
        "server accepts handled requests\n"
        f" {t[ACCEPTS]} {t[HANDLED]} {t[REQUESTS]} \n"
        f"Reading: {t[READING]} Writing: {t[WRITING]} Waiting: {t[WAITING]} \n"
    )


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(lay: Layout, t: list[int]) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_: str) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    metric("pyginx_connections_accepted_total", "counter", "Accepted client connections.")
    out.append(f"pyginx_connections_accepted_total {t[ACCEPTS]}")
    metric("pyginx_connections_handled_total", "counter", "Handled client connections.")
    out.append(f"pyginx_connections_handled_total {t[HANDLED]}")
    metric("pyginx_http_requests_total", "counter", "Client requests.")
    out.append(f"pyginx_http_requests_total {t[REQUESTS]}")
    metric("pyginx_connections", "gauge", "Client connections by state.")
    for name, i in (("active", ACTIVE), ("reading", READING), ("writing", WRITING), ("waiting", WAITING)):
        out.append(f'pyginx_connections{{state="{name}"}} {t[i]}')
    metric("pyginx_http_responses_total", "counter", "Responses by server and status class.")
    for s, server in enumerate(lay.servers):
        for c, cls in enumerate(CLASSES):
            out.append(
                f'pyginx_http_responses_total{{server="{_esc(server)}",code="{cls}"}} {t[lay.responses + s * 5 + c]}'
            )
    metric("pyginx_http_response_bytes_total", "counter", "Bytes sent to clients by server.")
    for s, server in enumerate(lay.servers):
        out.append(f'pyginx_http_response_bytes_total{{server="{_esc(server)}"}} {t[lay.bytes + s]}')
    for name, base, help_ in (
        ("pyginx_http_request_duration_seconds", lay.req_hist, "Request processing time."),
        ("pyginx_upstream_response_duration_seconds", lay.up_hist, "Upstream response time."),
    ):
        metric(name, "histogram", help_)
        cumulative = 0
        for i, b in enumerate(BUCKETS):
            cumulative += t[base + i]
            out.append(f'{name}_bucket{{le="{b}"}} {cumulative}')
        cumulative += t[base + len(BUCKETS)]
        out.append(f'{name}_bucket{{le="+Inf"}} {cumulative}')
        out.append(f"{name}_sum {t[base + len(BUCKETS) + 2] / 1000:.3f}")
        out.append(f"{name}_count {t[base + len(BUCKETS) + 1]}")
    metric("pyginx_upstream_peer_responses_total", "counter", "Attempts sent to each upstream peer.")
    for p, (up, peer) in enumerate(lay.peers):
        out.append(
            f'pyginx_upstream_peer_responses_total{{upstream="{_esc(up)}",peer="{peer}"}} {t[lay.peer_responses + p]}'
        )
    metric("pyginx_upstream_peer_failures_total", "counter", "Failed attempts (error, timeout, 502, 504).")
    for p, (up, peer) in enumerate(lay.peers):
        out.append(
            f'pyginx_upstream_peer_failures_total{{upstream="{_esc(up)}",peer="{peer}"}} {t[lay.peer_failures + p]}'
        )
    metric(
        "pyginx_cache_requests_total",
        "counter",
        "Proxied requests by cache status (placeholder: no cache yet).",
    )
    for i, name in enumerate(("hit", "miss", "other")):
        out.append(f'pyginx_cache_requests_total{{status="{name}"}} {t[lay.cache + i]}')
    hits, misses = t[lay.cache], t[lay.cache + 1]
    metric("pyginx_cache_hit_ratio", "gauge", "Cache hits over hits and misses (0 without cache traffic).")
    out.append(f"pyginx_cache_hit_ratio {hits / (hits + misses) if hits + misses else 0:.4f}")
    return "\n".join(out) + "\n"


def _page(kind: str) -> PhaseHandler:
    def handler(req: Request) -> Any:
        if req.method not in ("GET", "HEAD"):
            req.send_error(405)
            return None
        got = _totals(req)
        if got is None:
            req.send_error(500)
            return None
        stats, totals = got
        if kind == "stub":
            body, ctype = render_stub(totals), "text/plain"
        else:
            body, ctype = render_prometheus(stats.layout, totals), "text/plain; version=0.0.4; charset=utf-8"
        req.respond(200, [("Content-Type", ctype)], body.encode())
        return None

    return handler


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    conf: StatusConf = settings.conf(MODULE.name)
    if conf.stub_status:
        return [(Phase.CONTENT, _page("stub"))]
    if conf.prometheus:
        return [(Phase.CONTENT, _page("prometheus"))]
    return []


_CONTEXTS: frozenset[Context] = frozenset({"server", "location"})

MODULE = Module(
    name="status",
    conf=StatusConf,
    own=("stub_status", "prometheus"),
    directives=(
        ModuleDirective("stub_status", _CONTEXTS, _p_stub_status),
        ModuleDirective("prometheus_metrics", _CONTEXTS, _p_prometheus),
    ),
    plan=_plan,
)
