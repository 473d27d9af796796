"""The scenarios (issues 6 and 11) and how each is measured.

Load scenarios run wrk against pyginx and nginx in alternating rounds (A B, B A, A B, ...) after a
warm-up, so that a drift of the machine (other work, thermal state) lands on both servers alike; the
figure that counts is the median of the per-round ratios pyginx/nginx. Each scenario starts both
servers afresh, so that no scenario inherits another's heap (it matters most for the memory one).
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import configs
import procs
import pyspy
import wrkrun

SERVERS = ("pyginx", "nginx")
CEILING = "ceiling"  # bench/ceiling.py: uvloop + httptools answering fixed bytes, Python's limit
BUSY = 0.2  # others' CPU (in CPUs) above which a scenario's figures are flagged as disturbed


@dataclass(frozen=True)
class Target:
    # What is compared: "rps", "mbps" and "p99" as ratios pyginx/nginx; "kib_per_conn" (memory per
    # idle connection) and "log_cost" (share of req/s lost to the access log) as pyginx's own figure.
    metric: str
    limit: float
    higher_is_better: bool

    def met(self, value: float) -> bool:
        return value >= self.limit if self.higher_is_better else value <= self.limit

    def describe(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        if self.limit == 0:
            return "reference"
        if self.metric == "kib_per_conn":
            return f"{sign} {self.limit:g} KiB"
        if self.metric == "log_cost":
            return f"{sign} {self.limit:.0%}"
        return f"{sign} {self.limit:g}x"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    kind: str  # "load", "idle" or "accesslog"
    target: Target
    path: str = "/" + configs.SMALL
    connections: int = 50
    servers: tuple[str, ...] = SERVERS
    workers: int = 1  # worker processes of each server
    pinned: bool = True  # False: neither the servers nor wrk are pinned to CPUs (the scaling run)


# The targets of issue 11 (they supersede issue 6's).
SCENARIOS = (
    Scenario("small", "1 KiB file, 50 keep-alive conns", "load", Target("rps", 1.0, True)),
    Scenario(
        "nocache",
        "1 KiB file, open_file_cache off, 50 conns",
        "load",
        Target("rps", 0.7, True),
        f"/{configs.NOCACHE}/{configs.SMALL}",
    ),
    Scenario("mid", "64 KiB file, 50 keep-alive conns", "load", Target("mbps", 0.9, True), "/" + configs.MID),
    Scenario(
        "large", "1 MiB file, 50 keep-alive conns", "load", Target("mbps", 0.9, True), "/" + configs.LARGE
    ),
    # the reference row: what a bare uvloop + httptools responder sending pyginx's very bytes does
    # (ratio ceiling/nginx; the extra figure says how close pyginx gets to it)
    Scenario(
        "ceiling",
        "1 KiB: uvloop + httptools ceiling, 50 conns",
        "load",
        Target("rps", 0.0, True),
        servers=(*SERVERS, CEILING),
    ),
    Scenario(
        "proxy", "proxy to keep-alive origin, 50 conns", "load", Target("rps", 0.8, True), "/proxy/small.bin"
    ),
    Scenario("c1000", "1 KiB file, 1000 conns", "load", Target("p99", 1.5, False), connections=1000),
    Scenario(
        "small_2w",
        "1 KiB file, 2 workers, unpinned, 100 conns",
        "load",
        Target("rps", 1.0, True),
        connections=100,
        workers=2,
        pinned=False,
    ),
    # proxy_cache (issue 14): a warm cache's HIT (the warm-up fetches the entry), and the cost of a MISS
    # (proxy_cache_bypass: every request fetched and stored) to set beside the `proxy` row
    Scenario(
        "cache_hit", "proxy_cache HIT (warm), 50 conns", "load", Target("rps", 0.8, True), "/cached/small.bin"
    ),
    Scenario(
        "cache_miss",
        "proxy_cache MISS (fetch + store), 50 conns",
        "load",
        Target("rps", 0.8, True),
        "/miss/small.bin",
    ),
    Scenario("idle", "idle keep-alive conns (memory)", "idle", Target("kib_per_conn", 2.0, False)),
    Scenario(
        "accesslog", "1 KiB file, access log on, 50 conns", "accesslog", Target("log_cost", 0.10, False)
    ),
)


@dataclass(frozen=True)
class Params:
    # Many short rounds rather than few long ones: each ratio compares runs a few seconds apart, and
    # the median of ten shrugs off the rounds that somebody else's burst of work spoiled (on a shared
    # machine, load comes and goes within seconds).
    rounds: int = 10
    duration: float = 3.0
    warmup: float = 3.0
    idle_connections: int = 10000
    pause: float = 1.0  # between runs: lets the previous run's connections close before the next
    quiet_wait: float = 5.0  # before each round, wait up to this long for other people's load to pass


@dataclass
class Run:
    server: str
    round: int
    variant: str  # "" for plain runs; "log" / "nolog" in the access-log scenario
    wrk: wrkrun.WrkResult
    server_cpu: float  # worker CPU seconds per second of the run (1.0 = one core busy)
    other_cpu: float  # the same for every other process on the machine: others' load skews a run

    @property
    def cpu_us(self) -> float:
        """The workers' CPU time (utime + stime) per request served, in microseconds."""
        rps = self.wrk.rps
        return self.server_cpu / rps * 1e6 if rps else float("nan")


@dataclass
class IdleResult:
    server: str
    requested: int
    held: int
    failed: int
    rss_before_kib: int
    rss_after_kib: int
    fds_added: int

    @property
    def kib_per_conn(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.held if self.held else float("nan")


@dataclass
class Outcome:
    scenario: Scenario
    runs: list[Run] = field(default_factory=list)
    idle: list[IdleResult] = field(default_factory=list)
    log_lines: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    hotspots: list[pyspy.Hotspot] = field(default_factory=list)


@dataclass
class Bench:
    layout: configs.Layout
    ports: dict[str, configs.Ports]  # per server under test: both run side by side
    origin_port: int
    nginx: str
    server_cpus: str | None
    client_cpus: str | None
    params: Params
    script: Path
    profile_dir: Path | None = None  # where py-spy's stacks go, when profiling
    helpers: list[int] = field(default_factory=list)  # pids of the origin: its CPU is part of the run
    servers: list[procs.Server] = field(default_factory=list)  # those running now

    def our_pids(self) -> set[int]:
        """This process (wrk and the client are its children), the servers and the origin."""
        return {os.getpid(), *self.helpers, *(pid for s in self.servers for pid in s.known)}

    @property
    def wrk_log(self) -> Path:
        return self.layout.root / "wrk.log"

    def client_threads(self) -> int:
        return len(self.client_cpus.split(",")) if self.client_cpus else 1

    def prefix(self, name: str) -> Path:
        return self.layout.pyginx if name == "pyginx" else self.layout.nginx

    def make_server(self, name: str, scenario: Scenario | None = None) -> procs.Server:
        workers = scenario.workers if scenario else 1
        cpus = self.server_cpus if scenario is None or scenario.pinned else None
        port = self.ports[name].main
        if name == CEILING:
            argv = [
                sys.executable,
                str(Path(__file__).with_name("ceiling.py")),
                str(port),
                str(self.ceiling_bytes),
            ]
            return procs.Server(name, argv, port, self.layout.root, cpus)
        if name == "pyginx":
            conf = "conf/" + configs.conf_name("pyginx", workers)
            argv = [sys.executable, "-m", "pyginx", "-p", str(self.layout.pyginx), "-c", conf]
            return procs.Server(name, argv, port, self.layout.pyginx / "logs", cpus, workers)
        return self.nginx_server(name, self.layout.nginx, port, cpus, workers)

    @property
    def ceiling_bytes(self) -> Path:
        return self.layout.root / "ceiling-response.bin"

    def nginx_server(
        self, name: str, prefix: Path, port: int, cpus: str | None, workers: int = 1
    ) -> procs.Server:
        conf = prefix / "conf" / configs.conf_name("nginx", workers)
        log = prefix / "logs" / "error.log"
        argv = [self.nginx, "-p", str(prefix), "-c", str(conf), "-e", str(log)]
        return procs.Server(name, argv, port, prefix / "logs", cpus, workers)

    def origin(self) -> procs.Server:
        # The origin shares the client CPUs: the server under test keeps its core to itself.
        return self.nginx_server("origin", self.layout.origin, self.origin_port, self.client_cpus)


@contextmanager
def running(bench: Bench, scenario: Scenario, outcome: Outcome) -> Iterator[dict[str, procs.Server]]:
    """Fresh pyginx and nginx for one scenario, stopped by pid whatever happens; what they logged
    meanwhile that looks like trouble goes into the outcome."""
    sizes = log_sizes(bench)
    busy = others_load(bench)
    if busy > BUSY:
        outcome.problems.append(f"the machine was busy before the scenario: others used {busy:.0%} of a CPU")
    servers = {name: bench.make_server(name, scenario) for name in scenario.servers}
    bench.servers = list(servers.values())
    try:
        for name, server in servers.items():
            if name == CEILING:
                # pyginx's own bytes for the small file, so that both write as much per request
                bench.ceiling_bytes.write_bytes(procs.raw_response(bench.ports["pyginx"].main, scenario.path))
            server.start(scenario.path)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
        outcome.problems += log_problems(bench, sizes)


def others_load(bench: Bench, seconds: float = 1.0) -> float:
    """CPU used by other people's processes over `seconds`, in CPUs (1.0 = one core busy)."""
    snapshot = procs.cpu_snapshot()
    time.sleep(seconds)
    return procs.others_cpu(snapshot, bench.our_pids()) / seconds


def wait_quiet(bench: Bench) -> None:
    """This machine may be shared: give somebody else's burst of work a chance to end first."""
    deadline = time.monotonic() + bench.params.quiet_wait
    while others_load(bench) > BUSY and time.monotonic() < deadline:
        pass


def rounds_order(index: int, servers: tuple[str, ...] = SERVERS) -> tuple[str, ...]:
    return servers if index % 2 == 0 else servers[::-1]


def measure(bench: Bench, server: procs.Server, port: int, scenario: Scenario, duration: float) -> Run:
    """One wrk run against `server` on `port`, with the worker's CPU use over the same time."""
    threads = bench.client_threads() if scenario.pinned else 2
    job = wrkrun.WrkJob(f"http://127.0.0.1:{port}{scenario.path}", scenario.connections, duration, threads)
    assert server.worker is not None
    snapshot, worker = procs.cpu_snapshot(), server.cpu_seconds()
    client_cpus = bench.client_cpus if scenario.pinned else None
    result = wrkrun.run(job, bench.script, client_cpus, bench.wrk_log)
    server_cpu = server.cpu_seconds() - worker
    others = procs.others_cpu(snapshot, bench.our_pids())
    server.check_alive()
    time.sleep(bench.params.pause)
    return Run(server.name, -1, "", result, server_cpu / duration, others / duration)


def warm_up(bench: Bench, servers: dict[str, procs.Server], scenario: Scenario, logged: bool = False) -> None:
    for name in scenario.servers:
        ports = bench.ports[name]
        for port in (ports.logged, ports.main) if logged else (ports.main,):
            measure(bench, servers[name], port, scenario, bench.params.warmup)


def run_load(bench: Bench, scenario: Scenario) -> Outcome:
    outcome = Outcome(scenario)
    with running(bench, scenario, outcome) as servers:
        check_responses(bench, servers, scenario)
        warm_up(bench, servers, scenario)
        for index in range(bench.params.rounds):
            wait_quiet(bench)
            for name in rounds_order(index, scenario.servers):
                run = measure(bench, servers[name], bench.ports[name].main, scenario, bench.params.duration)
                run.round = index + 1
                outcome.runs.append(run)
                progress(scenario, run)
        if bench.profile_dir is not None:
            profile(bench, servers["pyginx"], bench.ports["pyginx"].main, scenario, outcome)
    return outcome


def profile(bench: Bench, server: procs.Server, port: int, scenario: Scenario, outcome: Outcome) -> None:
    """An extra, unmeasured run with py-spy sampling the pyginx worker."""
    assert server.worker is not None and bench.profile_dir is not None
    collapsed = bench.profile_dir / f"profile-{scenario.name}.txt"
    spy = pyspy.start(server.worker, bench.params.duration, collapsed)
    if spy is None:
        outcome.problems.append("py-spy not found: no profile")
        return
    try:
        time.sleep(0.5)  # py-spy attaches first
        measure(bench, server, port, scenario, bench.params.duration)
    finally:
        complaint = pyspy.finish(spy, bench.params.duration + 30)
    if complaint or not collapsed.exists():
        outcome.problems.append(f"py-spy failed: {complaint}")
        return
    outcome.hotspots = pyspy.hotspots(collapsed)


def run_accesslog(bench: Bench, scenario: Scenario) -> Outcome:
    """Each round measures each server with the log on and off back to back: the cost is per server."""
    outcome = Outcome(scenario)
    with running(bench, scenario, outcome) as servers:
        check_responses(bench, servers, scenario)
        warm_up(bench, servers, scenario, logged=True)
        logged_before = {name: count_log_lines(bench, name) for name in SERVERS}
        logged_requests = dict.fromkeys(SERVERS, 0)
        for index in range(bench.params.rounds):
            wait_quiet(bench)
            for name in rounds_order(index):
                ports = bench.ports[name]
                for variant, port in (("log", ports.logged), ("nolog", ports.main)):
                    run = measure(bench, servers[name], port, scenario, bench.params.duration)
                    run.round, run.variant = index + 1, variant
                    outcome.runs.append(run)
                    progress(scenario, run)
                    if variant == "log":
                        logged_requests[name] += run.wrk.requests
        if bench.profile_dir is not None:
            profile(bench, servers["pyginx"], bench.ports["pyginx"].logged, scenario, outcome)
    # After the stop, both servers have flushed their buffers: every request should have a line.
    for name in SERVERS:
        outcome.log_lines[name] = count_log_lines(bench, name) - logged_before[name]
        if outcome.log_lines[name] < logged_requests[name]:
            outcome.problems.append(
                f"{name} logged {outcome.log_lines[name]} lines for {logged_requests[name]} requests"
            )
    return outcome


def count_log_lines(bench: Bench, name: str) -> int:
    path = bench.prefix(name) / "logs" / "access.log"
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def run_idle(bench: Bench, scenario: Scenario) -> Outcome:
    outcome = Outcome(scenario)
    with running(bench, scenario, outcome) as servers:
        check_responses(bench, servers, scenario)
        for name in SERVERS:
            result = hold_idle(bench, servers[name], scenario.path, bench.params.idle_connections)
            outcome.idle.append(result)
            print(
                f"  {scenario.name:9} {name:6}  {result.held} held, {result.kib_per_conn:.2f} KiB/conn",
                flush=True,
            )
            if result.failed:
                outcome.problems.append(
                    f"{name}: {result.failed} of {result.requested} idle connections failed"
                )
    return outcome


def hold_idle(bench: Bench, server: procs.Server, path: str, count: int) -> IdleResult:
    """RSS of the worker before and while `count` idle keep-alive connections are held open."""
    assert server.worker is not None
    for _ in range(20):  # the same requests a connection will make, so caches are filled beforehand
        procs.http_get(server.port, path)
    time.sleep(1.0)
    rss_before, fds_before = procs.rss_kib(server.worker), procs.open_fds(server.worker)
    script = Path(__file__).with_name("idleconns.py")
    argv = [sys.executable, str(script), str(server.port), path, str(count), "120"]
    if bench.client_cpus:
        argv = ["taskset", "-c", bench.client_cpus, *argv]
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        held, failed = read_held(client, timeout=90)
        time.sleep(2.0)  # let the worker finish parking the last connections
        rss_after, fds_after = procs.rss_kib(server.worker), procs.open_fds(server.worker)
        server.check_alive()
    finally:
        stop_client(client)
    return IdleResult(server.name, count, held, failed, rss_before, rss_after, fds_after - fds_before)


def read_held(client: subprocess.Popen[bytes], timeout: float) -> tuple[int, int]:
    assert client.stdout is not None
    ready, _, _ = select.select([client.stdout], [], [], timeout)
    line = client.stdout.readline().decode() if ready else ""
    if not line.startswith("HELD "):
        raise RuntimeError(f"idle-connection client did not report within {timeout:g}s: {line!r}")
    _, held, failed = line.split()
    return int(held), int(failed)


def stop_client(client: subprocess.Popen[bytes]) -> None:
    try:
        if client.stdin is not None:
            client.stdin.write(b"\n")
            client.stdin.close()
        client.wait(30)
    except (OSError, subprocess.TimeoutExpired):
        client.kill()
        client.wait(5)


def check_responses(bench: Bench, servers: dict[str, procs.Server], scenario: Scenario) -> None:
    """Both servers must answer the scenario's URL with 200 and the very same body, or nothing compares."""
    expected = expected_body(bench, scenario.path)
    for name in scenario.servers:
        ports = bench.ports[name]
        for port in (ports.main, ports.logged) if scenario.kind == "accesslog" else (ports.main,):
            status, _, body = procs.http_get(port, scenario.path)
            servers[name].check_alive()
            if status != 200 or body != expected:
                raise RuntimeError(
                    f"{name} answered {scenario.path} on port {port} with {status}, {len(body)} bytes"
                )


def expected_body(bench: Bench, path: str) -> bytes:
    # /proxy/, /cached/ and /miss/ pass to the origin's copy, /nocache/ holds a copy: the same bytes
    name = path.rsplit("/", 1)[-1]
    root = bench.layout.origin_www if path.startswith("/proxy/") else bench.layout.www
    return (root / name).read_bytes()


def server_logs(bench: Bench) -> list[tuple[str, Path]]:
    """The error logs and captured output of both servers (the access logs are not searched)."""
    return [
        (name, log)
        for name in SERVERS
        for log in sorted((bench.prefix(name) / "logs").glob("*.log"))
        if log.name != "access.log"
    ]


def log_sizes(bench: Bench) -> dict[Path, int]:
    return {log: log.stat().st_size for _, log in server_logs(bench)}


def log_problems(bench: Bench, since: dict[Path, int]) -> list[str]:
    """Alerts, crashes and tracebacks logged since `since`: a fast result with errors is no result."""
    problems = []
    for name, log in server_logs(bench):
        with log.open("rb") as f:
            f.seek(since.get(log, 0))
            text = f.read().decode(errors="replace")
        for word in ("[alert]", "[crit]", "[emerg]", "Traceback"):
            if word in text:
                problems.append(f"{name}: {text.count(word)} x {word} in {log.name}")
    return problems


def progress(scenario: Scenario, run: Run) -> None:
    w = run.wrk
    variant = f" {run.variant}" if run.variant else ""
    print(
        f"  {scenario.name:9} {run.server:7}{variant:6} round {run.round}: {w.rps:10,.0f} req/s {w.mb_per_s:8,.1f} MB/s"
        f"  {run.cpu_us:6.1f} cpu-us/req"
        f"  p50 {w.p50_ms:6.2f} p99 {w.p99_ms:7.2f} ms  err {w.http_errors}+{w.socket_errors}"
        f"  cpu srv {run.server_cpu:.0%} wrk {w.client_cpu:.0%} others {run.other_cpu:.0%}",
        flush=True,
    )


RUNNERS: dict[str, Callable[[Bench, Scenario], Outcome]] = {
    "load": run_load,
    "idle": run_idle,
    "accesslog": run_accesslog,
}


def run_scenario(bench: Bench, scenario: Scenario) -> Outcome:
    return RUNNERS[scenario.kind](bench, scenario)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
