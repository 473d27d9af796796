"""From measured outcomes to figures: the summary per scenario, the markdown report and its JSON twin."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyspy
import wrkrun
from scenarios import BUSY, CEILING, SCENARIOS, SERVERS, IdleResult, Outcome, Params, Run, median


@dataclass(frozen=True)
class Summary:
    name: str
    title: str
    measure: str  # what the pyginx / nginx columns hold
    unit: str
    pyginx: float
    nginx: float
    ratio: float  # median of per-round ratios pyginx/nginx
    rounds: list[float]  # the per-round ratios
    disturbed: list[bool]  # per round: others' load above BUSY during one of its runs
    target: str
    limit: float  # the target's number: a ratio, KiB, or a fraction for the log's cost
    higher_is_better: bool
    met: bool
    extra: str = ""  # a second figure worth a glance (req/s at 1,000 connections, log cost of nginx)
    per_cpu: str = ""  # the same comparison per second of the worker's CPU (see efficiency())
    cpu_us: dict[str, float] = dataclasses.field(default_factory=dict)  # server -> CPU µs per request


METRICS: dict[str, tuple[str, str, Key]] = {  # metric -> (measure shown, unit, how to read it from a run)
    "rps": ("req/s", "req/s", lambda r: r.wrk.rps),
    "mbps": ("throughput", "MB/s", lambda r: r.wrk.mb_per_s),
    "p99": ("p99 latency", "ms", lambda r: r.wrk.p99_ms),
}


Key = Callable[[Run], float]
CLIENT_BOUND = 0.9  # wrk's CPU share above which a run measured the client more than the server


def cpu_per_request(run: Run) -> float:
    """The worker's CPU time per request in µs (server_cpu is CPU seconds per second of the run)."""
    w = run.wrk
    return run.server_cpu * w.duration_s / w.requests * 1e6 if w.requests else math.nan


def per_server(runs: list[Run], server: str, key: Key, variant: str = "") -> list[float]:
    return [key(r) for r in runs if r.server == server and r.variant == variant]


def disturbed_rounds(runs: list[Run]) -> list[bool]:
    """Per round, whether other people's processes took a noticeable share of the machine meanwhile."""
    rounds = sorted({r.round for r in runs})
    return [any(r.other_cpu > BUSY for r in runs if r.round == n) for n in rounds]


def efficiency(key: Key) -> Key:
    """The figure per second of worker CPU. Somebody else's load takes CPU from the server and lowers
    its req/s, but hardly what each CPU-second buys; and when wrk, not the server, is the limit (it
    has one core), this still compares the servers' cost per request."""
    return lambda r: key(r) / r.server_cpu if r.server_cpu > 0 else math.nan


def round_ratios(
    runs: list[Run], key: Key, variant: str = "", subject: str = "pyginx", base: str = "nginx"
) -> list[float]:
    mine = per_server(runs, subject, key, variant)
    theirs = per_server(runs, base, key, variant)
    return [a / b if b else math.nan for a, b in zip(mine, theirs, strict=True)]


def cpu_us(runs: list[Run], variant: str = "") -> dict[str, float]:
    """Per server, the median over its runs of the workers' CPU microseconds per request."""
    servers = sorted({r.server for r in runs}, key=lambda s: (s != "pyginx", s != "nginx", s))
    return {s: median(per_server(runs, s, lambda r: r.cpu_us, variant)) for s in servers}


def summarize(outcome: Outcome) -> Summary:
    kind = outcome.scenario.kind
    if kind == "idle":
        return summarize_idle(outcome)
    if kind == "accesslog":
        return summarize_accesslog(outcome)
    return summarize_load(outcome)


def summarize_load(outcome: Outcome) -> Summary:
    scenario = outcome.scenario
    measure, unit, key = METRICS[scenario.target.metric]
    subject = CEILING if CEILING in scenario.servers else "pyginx"
    ratios = round_ratios(outcome.runs, key, subject=subject)
    ratio = median(ratios)
    extra, per_cpu = "", times(median(round_ratios(outcome.runs, efficiency(key), subject=subject)))
    if subject == CEILING:
        extra = f"pyginx/ceiling {times(median(round_ratios(outcome.runs, key, base=CEILING)))}"
    elif scenario.name == "gzip":
        cpu = [median(per_server(outcome.runs, s, cpu_per_request)) for s in SERVERS]
        extra = f"CPU/request {cpu[0]:,.0f} µs vs {cpu[1]:,.0f} µs"
    if scenario.target.metric == "p99":
        rps = [median(per_server(outcome.runs, s, METRICS["rps"][2])) for s in SERVERS]
        extra = f"req/s {rps[0]:,.0f} vs {rps[1]:,.0f}"
        per_cpu = times(median(round_ratios(outcome.runs, efficiency(METRICS["rps"][2])))) + " (req/s)"
    return Summary(
        scenario.name,
        scenario.title,
        measure,
        unit,
        median(per_server(outcome.runs, subject, key)),
        median(per_server(outcome.runs, "nginx", key)),
        ratio,
        ratios,
        disturbed_rounds(outcome.runs),
        scenario.target.describe(),
        scenario.target.limit,
        scenario.target.higher_is_better,
        scenario.target.met(ratio),
        extra,
        per_cpu,
        cpu_us(outcome.runs),
    )


def summarize_idle(outcome: Outcome) -> Summary:
    scenario = outcome.scenario
    figures = {r.server: r.kib_per_conn for r in outcome.idle}
    mine, theirs = figures.get("pyginx", math.nan), figures.get("nginx", math.nan)
    ratio = mine / theirs if theirs else math.nan
    held = "/".join(f"{r.held:,}" for r in outcome.idle)
    return Summary(
        scenario.name,
        scenario.title,
        "memory per idle conn",
        "KiB",
        mine,
        theirs,
        ratio,
        [ratio],
        [False],
        scenario.target.describe(),
        scenario.target.limit,
        scenario.target.higher_is_better,
        scenario.target.met(mine),
        f"held {held}",
    )


def log_costs(outcome: Outcome, server: str, key: Key = METRICS["rps"][2]) -> list[float]:
    """Per round, the share of throughput the access log takes: 1 - rps(log on) / rps(log off)."""
    on = per_server(outcome.runs, server, key, "log")
    off = per_server(outcome.runs, server, key, "nolog")
    return [1 - a / b if b else math.nan for a, b in zip(on, off, strict=True)]


def summarize_accesslog(outcome: Outcome) -> Summary:
    scenario = outcome.scenario
    mine, theirs = median(log_costs(outcome, "pyginx")), median(log_costs(outcome, "nginx"))
    ratios = round_ratios(outcome.runs, METRICS["rps"][2], "log")
    rps = [median(per_server(outcome.runs, s, METRICS["rps"][2], "log")) for s in SERVERS]
    per_cpu = [median(log_costs(outcome, s, efficiency(METRICS["rps"][2]))) for s in SERVERS]
    return Summary(
        scenario.name,
        scenario.title,
        "cost of the log",
        "%",
        mine * 100,
        theirs * 100,
        median(ratios),  # req/s with the log on, pyginx/nginx
        ratios,
        disturbed_rounds(outcome.runs),
        scenario.target.describe(),
        scenario.target.limit,
        scenario.target.higher_is_better,
        scenario.target.met(mine),
        f"req/s {rps[0]:,.0f} vs {rps[1]:,.0f}",
        f"cost {fmt(per_cpu[0] * 100, '%')} vs {fmt(per_cpu[1] * 100, '%')}",
        cpu_us(outcome.runs, "log"),
    )


def client_bound(outcome: Outcome) -> list[str]:
    """wrk has one core: when it is nearly all used, the client and not the server set the pace."""
    bound = [r for r in outcome.runs if r.wrk.client_cpu >= CLIENT_BOUND]
    if not bound:
        return []
    servers = ", ".join(sorted({r.server for r in bound}))
    return [
        f"wrk used {CLIENT_BOUND:.0%} or more of its core in {len(bound)} of {len(outcome.runs)} runs ({servers}):"
        " the client was (nearly) the limit, which flatters the slower server; see the per-CPU-second column"
    ]


def times(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("req/s", "MB/s"):
        return f"{value:,.0f} {unit}"
    if unit == "%":
        return f"{value:.1f} %"
    return f"{value:,.2f} {unit}"


def summary_table(summaries: list[Summary]) -> list[str]:
    lines = [
        "| scenario | measure | pyginx | nginx | pyginx/nginx (median of rounds) | per-round ratios | target"
        " | met | per worker CPU-second | worker CPU µs/request |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        rounds = ", ".join(
            f"{r:.2f}" + ("*" if d else "") for r, d in zip(s.rounds, s.disturbed, strict=True)
        )
        target = s.target + (" (pyginx's cost)" if s.unit == "%" else " (pyginx)" if s.unit == "KiB" else "")
        ratio_note = " (req/s, log on)" if s.unit == "%" else ""
        extra = f"<br>{s.extra}" if s.extra else ""
        lines.append(
            f"| {s.title} | {s.measure}{extra} | {fmt(s.pyginx, s.unit)} | {fmt(s.nginx, s.unit)} "
            f"| **{times(s.ratio)}**{ratio_note} | {rounds} | {target} | {'yes' if s.met else '**no**'} "
            f"| {s.per_cpu or 'n/a'} | {cpu_text(s.cpu_us)} |"
        )
    return lines


def cpu_text(figures: dict[str, float]) -> str:
    return (
        ", ".join(f"{name} {value:.1f}" for name, value in figures.items() if not math.isnan(value)) or "n/a"
    )


SUMMARY_NAMES = (  # name in the summary line -> scenario
    ("small", "small"),
    ("nocache", "nocache"),
    ("mid", "mid"),
    ("big", "large"),
    ("proxy", "proxy"),
    ("c1000_p99", "c1000"),
)


def summary_line(outcomes: list[Outcome]) -> str:
    """One line for scripts: `pyginx/nginx small=0.65x ... logged_vs_unlogged=0.77x idle_bytes_per_conn=2655`
    (n/a for a scenario not run)."""
    by_name = {o.scenario.name: summarize(o) for o in outcomes}
    parts = []
    for label, name in SUMMARY_NAMES:
        found = by_name.get(name)
        parts.append(f"{label}={times(found.ratio) if found else 'n/a'}")
    log = by_name.get("accesslog")
    parts.append(f"logged_vs_unlogged={times(1 - log.pyginx / 100) if log else 'n/a'}")
    idle = by_name.get("idle")
    idle_bytes = "n/a" if idle is None or math.isnan(idle.pyginx) else f"{idle.pyginx * 1024:.0f}"
    parts.append(f"idle_bytes_per_conn={idle_bytes}")
    return "pyginx/nginx " + " ".join(parts)


def runs_table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| scenario | server | round | req/s | MB/s | p50 ms | p90 ms | p99 ms | max ms | errors (HTTP/socket)"
        " | worker CPU | CPU µs/req | wrk CPU | others' CPU | bytes/resp |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for outcome in outcomes:
        for r in outcome.runs:
            w = r.wrk
            server = (
                f"{r.server} ({'log on' if r.variant == 'log' else 'log off'})" if r.variant else r.server
            )
            lines.append(
                f"| {outcome.scenario.name} | {server} | {r.round} | {w.rps:,.0f} | {w.mb_per_s:,.1f} "
                f"| {w.p50_ms:.2f} | {w.p90_ms:.2f} | {w.p99_ms:.2f} | {w.max_ms:.1f} "
                f"| {w.http_errors}/{w.socket_errors} | {r.server_cpu:.0%} | {r.cpu_us:.1f} | {w.client_cpu:.0%} | {r.other_cpu:.0%} "
                f"| {w.bytes_per_request:,.0f} |"
            )
    return lines


def idle_table(outcomes: list[Outcome]) -> list[str]:
    results = [r for o in outcomes for r in o.idle]
    if not results:
        return []
    lines = [
        "| server | connections held | failed | worker fds added | RSS before (KiB) | RSS while held (KiB)"
        " | KiB per connection |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.server} | {r.held:,} | {r.failed:,} | {r.fds_added:,} | {r.rss_before_kib:,} "
            f"| {r.rss_after_kib:,} | {r.kib_per_conn:.2f} |"
        )
    return lines


def hotspots_section(outcomes: list[Outcome]) -> list[str]:
    profiled = [o for o in outcomes if o.hotspots]
    if not profiled:
        return []
    lines = [
        "## Where pyginx's worker spends its time (py-spy, an extra unmeasured run)",
        "",
        "Share of the samples taken while the worker was running Python: *self* in the function itself,"
        " *total* in it and what it called. Native code (uvloop, httptools, syscalls) counts as self"
        " time of the Python function that called it.",
        "",
    ]
    for o in profiled:
        lines += [
            f"**{o.scenario.name}** ({o.scenario.title})",
            "",
            "| function | self | total |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| `{h.function}` | {h.self_share:.1%} | {h.total_share:.1%} |" for h in o.hotspots]
        lines.append("")
    return lines


def header(machine: dict[str, str], params: Params, pinning: str, quick: bool) -> list[str]:
    kind = "quick smoke run (not comparable)" if quick else "full run"
    lines = [
        "# pyginx vs nginx",
        "",
        f"{machine['date']}, {kind}: {params.rounds} round{'s' if params.rounds != 1 else ''} of {params.duration:g} s"
        " per server and scenario,"
        f" alternating the order each round, after {params.warmup:g} s of warm-up; {pinning}.",
        "",
        "| machine | |",
        "| --- | --- |",
    ]
    lines += [f"| {key} | {value} |" for key, value in machine.items() if key != "date"]
    return lines


def markdown(
    outcomes: list[Outcome], machine: dict[str, str], params: Params, pinning: str, quick: bool
) -> str:
    summaries = [summarize(o) for o in outcomes]
    problems = [f"- {o.scenario.name}: {p}" for o in outcomes for p in [*o.problems, *client_bound(o)]]
    parts = header(machine, params, pinning, quick)
    parts += ["", "## Against the targets of issue 11", "", *summary_table(summaries), ""]
    parts += [
        "Ratios are pyginx/nginx: above 1 pyginx is faster for req/s and MB/s, and worse for latency and"
        " memory. Each ratio is the median of the ratios of the rounds (pyginx and nginx measured back to"
        " back); the pyginx and nginx columns are medians of their rounds. A round marked * was"
        f" disturbed: other people's processes used more than {BUSY:.0%} of a CPU during one of its runs."
        " The last column divides each run's figure by the worker's CPU time (median of the per-round"
        " ratios): it shifts less when other people's load takes CPU from the server, or when wrk (one"
        " core) rather than the server is the limit; it is a diagnosis, the targets use the column before.",
        "",
    ]
    parts += ["## Problems seen", "", *(problems or ["- none: no errors logged, every body checked"]), ""]
    if any(o.idle for o in outcomes):
        parts += ["## Idle keep-alive connections", "", *idle_table(outcomes), ""]
    if any(o.runs for o in outcomes):
        parts += ["## Every run", "", *runs_table(outcomes), ""]
        parts += [
            "Worker CPU is the server worker's CPU time over the run's wall time (100 % = its core is"
            " saturated); wrk CPU likewise for the client; others' CPU is what every other process on the"
            " machine used meanwhile (not the origin, nor kernel threads, which carry the loopback traffic):"
            " well above 0 %, somebody else's load disturbed the run. HTTP errors are wrk's count of responses with"
            " status >= 400; socket errors add up connect, read, write errors and timeouts.",
            "",
        ]
    parts += hotspots_section(outcomes)
    parts += ["## For scripts", "", summary_line(outcomes)]  # the last line, whatever ran
    return "\n".join(parts) + "\n"


def as_json(
    outcomes: list[Outcome], machine: dict[str, str], params: Params, pinning: str, quick: bool
) -> dict[str, object]:
    return {
        "quick": quick,
        "machine": machine,
        "params": dataclasses.asdict(params),
        "pinning": pinning,
        "summaries": [dataclasses.asdict(summarize(o)) for o in outcomes],
        "runs": [
            {
                "scenario": o.scenario.name,
                **dataclasses.asdict(r),
                "rps": r.wrk.rps,
                "mb_per_s": r.wrk.mb_per_s,
                "cpu_us": r.cpu_us,
            }
            for o in outcomes
            for r in o.runs
        ],
        "idle": [dataclasses.asdict(r) | {"kib_per_conn": r.kib_per_conn} for o in outcomes for r in o.idle],
        "problems": {o.scenario.name: o.problems for o in outcomes},
        "hotspots": {
            o.scenario.name: [dataclasses.asdict(h) for h in o.hotspots] for o in outcomes if o.hotspots
        },
    }


def from_json(data: dict[str, Any]) -> tuple[list[Outcome], dict[str, str], Params, str, bool]:
    """The inverse of as_json, for `run.py --render`: a report redrawn without measuring again."""
    by_name = {s.name: s for s in SCENARIOS}
    outcomes = {name: Outcome(by_name[name], problems=list(p)) for name, p in data["problems"].items()}
    for r in data["runs"]:
        wrk = wrkrun.WrkResult(**r["wrk"])
        run = Run(r["server"], r["round"], r["variant"], wrk, r["server_cpu"], r["other_cpu"])
        outcomes[r["scenario"]].runs.append(run)
    for r in data["idle"]:
        outcomes["idle"].idle.append(IdleResult(**{k: v for k, v in r.items() if k != "kib_per_conn"}))
    for name, spots in data.get("hotspots", {}).items():
        outcomes[name].hotspots = [pyspy.Hotspot(**h) for h in spots]
    params = Params(**data["params"])
    return list(outcomes.values()), data["machine"], params, data["pinning"], bool(data.get("quick"))
