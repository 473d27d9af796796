"""Running wrk and reading its results.

wrk's own text output rounds latencies to two digits and mixes units, so a Lua `done` hook prints one line
of JSON with the raw microsecond figures instead; the text (with --latency) is kept beside it for a human.
"""

from __future__ import annotations

import json
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARKER = "BENCHJSON "

# wrk calls done() once, after all threads have stopped, with the merged statistics.
DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"mean_us":%.1f,"max_us":%d,"percentiles_us":{%s}}\\n',
    'MARKER', summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency.max, table.concat(p, ",")))
end
""".replace("MARKER", MARKER)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    socket_errors: int  # connect + read + write + timeout, as wrk's "Socket errors" line
    http_errors: int  # wrk counts responses with a status >= 400 ("Non-2xx or 3xx responses")
    mean_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    client_cpu: float  # wrk's CPU time / wall time: near 1.0 per thread means the client was the limit

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.duration_s / 1e6 if self.duration_s else 0.0

    @property
    def bytes_per_request(self) -> float:
        return self.bytes / self.requests if self.requests else 0.0


def write_script(directory: Path) -> Path:
    path = directory / "done.lua"
    path.write_text(DONE_LUA)
    return path


def parse(output: str, client_cpu: float = 0.0) -> WrkResult:
    """The WrkResult of wrk's stdout; ValueError when the JSON line is missing (wrk failed early)."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            return from_json(json.loads(line[len(MARKER) :]), client_cpu)
    raise ValueError("wrk printed no result line:\n" + output[-2000:])


def from_json(data: dict[str, object], client_cpu: float) -> WrkResult:
    pct = data["percentiles_us"]
    assert isinstance(pct, dict)

    def ms(value: object) -> float:
        return float(value) / 1000.0  # type: ignore[arg-type]

    def num(key: str) -> int:
        return int(data[key])  # type: ignore[call-overload]

    return WrkResult(
        requests=num("requests"),
        duration_s=num("duration_us") / 1e6,
        bytes=num("bytes"),
        socket_errors=num("connect") + num("read") + num("write") + num("timeout"),
        http_errors=num("status"),
        mean_ms=ms(data["mean_us"]),
        max_ms=ms(data["max_us"]),
        p50_ms=ms(pct["50"]),
        p90_ms=ms(pct["90"]),
        p99_ms=ms(pct["99"]),
        client_cpu=client_cpu,
    )


@dataclass(frozen=True)
class WrkJob:
    url: str
    connections: int
    duration_s: float
    threads: int = 1
    timeout_s: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (Accept-Encoding for gzip)  # a response slower than this counts as a socket error (timeout)


def command(job: WrkJob, script: Path, cpus: str | None) -> list[str]:
    threads = max(1, min(job.threads, job.connections))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{job.connections}",
        f"-d{job.duration_s:g}s",
        f"--timeout={job.timeout_s:g}s",
        "--latency",
        *(arg for name, value in job.headers for arg in ("-H", f"{name}: {value}")),
        "-s",
        str(script),
        job.url,
    ]
    return (["taskset", "-c", cpus] if cpus else []) + cmd


def run(job: WrkJob, script: Path, cpus: str | None, log: Path | None = None) -> WrkResult:
    """One bounded wrk run; its text output is appended to `log` when given."""
    before = children_cpu_seconds()
    proc = subprocess.run(
        command(job, script, cpus),
        capture_output=True,
        text=True,
        timeout=job.duration_s + 60,  # wrk stops itself; this only guards against a hang
        check=False,
    )
    cpu = (children_cpu_seconds() - before) / job.duration_s
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(proc.args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()}")
    return parse(proc.stdout, cpu)


def children_cpu_seconds() -> float:
    # Only wrk is reaped while it runs (the servers live on), so the delta is wrk's own CPU time.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
