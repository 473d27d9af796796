"""TLS and HTTP/2 scenarios of issue 13, pyginx beside nginx with the same certificate.

    python bench/tls.py                 # all three scenarios, results in bench/results/tls-<time>.json
    python bench/tls.py --check         # only write both configurations and run `-t` on them

Scenarios (targets from the issue, as ratios pyginx/nginx of the median round):

  tls-keepalive   1 KiB file over keep-alive TLS, wrk on https, 50 connections        >= 0.8x
  tls-handshakes  new TLS connections per second: wrk with `Connection: close`, so     >= 0.8x
                  every request is a full handshake (wrk resumes no session)
  h2-streams      HTTP/2 with h2load, 10 connections x 100 concurrent streams          >= 0.5x

Both servers get one worker, the same certificate (one ECDSA P-256 key made with the openssl CLI for
the run), TLSv1.2 and TLSv1.3, the same ciphers and session settings, and the same files (shared with
bench/run.py's layout). Rounds alternate the servers (A B, B A, ...) after a warm-up, as bench/run.py
does, and the figure that counts is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import configs
import procs
import wrkrun

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class TlsScenario:
    name: str
    title: str
    tool: str  # "wrk", "wrk-close" or "h2load"
    target: float


SCENARIOS = (
    TlsScenario("tls-keepalive", "1 KiB file, keep-alive TLS, 50 conns (wrk)", "wrk", 0.8),
    TlsScenario("tls-handshakes", "new TLS connection per request, 50 conns (wrk)", "wrk-close", 0.8),
    TlsScenario("h2-streams", "HTTP/2, 10 conns x 100 streams (h2load)", "h2load", 0.5),
)


@dataclass(frozen=True)
class TlsPorts:
    plain: int  # readiness checks (plain HTTP)
    tls: int  # HTTP/1.1 over TLS
    h2: int  # HTTP/2 over TLS (ALPN h2)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """One self-signed ECDSA certificate for both servers (the same command the README documents)."""
    cert, key = directory / "bench.crt", directory / "bench.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def pyginx_config(
    layout: configs.Layout, ports: TlsPorts, cert: Path, key: Path, lim: configs.Limits
) -> Path:
    tls = f"""      ssl_certificate: {cert}
      ssl_certificate_key: {key}
      ssl_protocols: TLSv1.2 TLSv1.3
      ssl_session_cache: shared:SSL:10m
      ssl_session_tickets: true
      root: {layout.www}"""
    text = f"""\
# Written by bench/tls.py
worker_processes: 1
pid: logs/pyginx.pid
error_log: logs/error.log warn
worker_rlimit_nofile: {lim.nofile}
events:
  worker_connections: {lim.worker_connections}
http:
  default_type: application/octet-stream
  access_log: "off"
  sendfile: true
  open_file_cache: {configs.OPEN_FILE_CACHE}
  open_file_cache_valid: {configs.OPEN_FILE_CACHE_VALID}
  servers:
    - listen: 127.0.0.1:{ports.plain} backlog={configs.BACKLOG}
      root: {layout.www}
    - listen: 127.0.0.1:{ports.tls} ssl backlog={configs.BACKLOG}
{tls}
    - listen: 127.0.0.1:{ports.h2} ssl backlog={configs.BACKLOG}
      http2: true
      http2_max_concurrent_streams: 128
      keepalive_requests: 1000000  # h2load does not reconnect: no connection may end mid-run
{tls}
"""
    path = layout.pyginx / "conf" / "pyginx.yaml"
    path.write_text(text)
    return path


def nginx_config(layout: configs.Layout, ports: TlsPorts, cert: Path, key: Path, lim: configs.Limits) -> Path:
    prefix = layout.nginx
    tls = f"""        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        root {layout.www};"""
    text = f"""\
# Written by bench/tls.py
{configs.nginx_common(prefix, lim)}
http {{
{configs.temp_paths(prefix)}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    open_file_cache {configs.OPEN_FILE_CACHE};
    open_file_cache_valid {configs.OPEN_FILE_CACHE_VALID};
    server {{
        listen 127.0.0.1:{ports.plain} backlog={configs.BACKLOG};
        root {layout.www};
    }}
    server {{
        listen 127.0.0.1:{ports.tls} ssl backlog={configs.BACKLOG};
{tls}
    }}
    server {{
        listen 127.0.0.1:{ports.h2} ssl http2 backlog={configs.BACKLOG};
        http2_max_concurrent_streams 128;
        keepalive_requests 1000000;  # nginx closes an h2 connection after 1000 requests by default
{tls}
    }}
}}
"""
    path = prefix / "conf" / "nginx.conf"
    path.write_text(text)
    return path


@dataclass
class TlsRun:
    server: str
    scenario: str
    round: int
    rps: float
    errors: int
    cpu_us: float  # worker CPU (utime + stime) per request, µs


def run_wrk(url: str, close: bool, duration: float, log: Path, script: Path) -> tuple[float, int]:
    job = wrkrun.WrkJob(url, 50, duration)
    cmd = wrkrun.command(job, script, None)
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()}")
    result = wrkrun.parse(proc.stdout)
    return result.rps, result.socket_errors + result.http_errors


_H2LOAD_RPS = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_H2LOAD_FAILED = re.compile(
    r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored"
)


def run_h2load(url: str, duration: float, log: Path) -> tuple[float, int]:
    cmd = ["h2load", "-c", "10", "-m", "100", "-D", f"{int(duration)}", "--warm-up-time=1", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    rps = _H2LOAD_RPS.search(proc.stdout)
    failed = _H2LOAD_FAILED.search(proc.stdout)
    if proc.returncode != 0 or rps is None:
        raise RuntimeError(f"h2load exited with {proc.returncode}: {proc.stdout[-500:]}{proc.stderr[-500:]}")
    return float(rps.group(1)), int(failed.group(1)) + int(failed.group(2)) if failed else 0


def measure(
    scenario: TlsScenario, ports: TlsPorts, duration: float, log: Path, script: Path
) -> tuple[float, int]:
    path = "/" + configs.SMALL
    if scenario.tool == "h2load":
        return run_h2load(f"https://127.0.0.1:{ports.h2}{path}", duration, log)
    return run_wrk(
        f"https://127.0.0.1:{ports.tls}{path}", scenario.tool == "wrk-close", duration, log, script
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--only", nargs="*", choices=[s.name for s in SCENARIOS])
    parser.add_argument(
        "--check", action="store_true", help="write and test both configurations, run nothing"
    )
    args = parser.parse_args(argv)
    for tool in ("openssl", "wrk", "h2load"):
        if shutil.which(tool) is None and not (args.check and tool != "openssl"):
            print(f"{tool} is not installed (Debian: wrk, nghttp2-client, openssl)", file=sys.stderr)
            return 2
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    lim = configs.limits()
    with tempfile.TemporaryDirectory(prefix="pyginx-tls-bench-") as tmp:
        root = Path(tmp)
        layout = configs.make_layout(root)  # writes the files too
        cert, key = make_certificate(root)
        ports = {
            name: TlsPorts(configs.free_port(), configs.free_port(), configs.free_port())
            for name in ("pyginx", "nginx")
        }
        pyginx_config(layout, ports["pyginx"], cert, key, lim)
        nginx_config(layout, ports["nginx"], cert, key, lim)
        if args.check:
            ok = (
                subprocess.run(
                    [sys.executable, "-m", "pyginx", "-p", str(layout.pyginx), "-t"], check=False
                ).returncode
                == 0
            )
            conf = layout.nginx / "conf" / "nginx.conf"
            ok &= (
                subprocess.run(
                    [args.nginx, "-p", str(layout.nginx), "-c", str(conf), "-t"], check=False
                ).returncode
                == 0
            )
            return 0 if ok else 1
        script = wrkrun.write_script(root)
        log = root / "tools.log"
        servers = {
            "pyginx": procs.Server(
                "pyginx",
                [sys.executable, "-m", "pyginx", "-p", str(layout.pyginx), "-c", "conf/pyginx.yaml"],
                ports["pyginx"].plain,
                layout.pyginx / "logs",
            ),
            "nginx": procs.Server(
                "nginx",
                [
                    args.nginx,
                    "-p",
                    str(layout.nginx),
                    "-c",
                    str(layout.nginx / "conf" / "nginx.conf"),
                    "-e",
                    str(layout.nginx / "logs" / "error.log"),
                ],
                ports["nginx"].plain,
                layout.nginx / "logs",
            ),
        }
        runs: list[TlsRun] = []
        summary: dict[str, dict[str, float]] = {}
        try:
            for server in servers.values():
                server.start("/" + configs.SMALL)
            for scenario in chosen:
                for name in servers:  # warm-up, unmeasured
                    measure(scenario, ports[name], 2.0, log, script)
                ratios: list[float] = []
                for index in range(args.rounds):
                    order = ("pyginx", "nginx") if index % 2 == 0 else ("nginx", "pyginx")
                    got: dict[str, float] = {}
                    for name in order:
                        cpu_before, wall_before = servers[name].cpu_seconds(), time.monotonic()
                        rps, errors = measure(scenario, ports[name], args.duration, log, script)
                        # the workers' CPU over the tool's whole run (h2load's warm-up second
                        # included), divided by the requests of that run at the measured rate
                        wall = time.monotonic() - wall_before
                        cpu = servers[name].cpu_seconds() - cpu_before
                        cpu_us = cpu * 1e6 / (rps * wall) if rps else float("nan")
                        servers[name].check_alive()
                        runs.append(TlsRun(name, scenario.name, index + 1, rps, errors, cpu_us))
                        got[name] = rps
                        time.sleep(1.0)
                    ratios.append(got["pyginx"] / got["nginx"] if got["nginx"] else float("nan"))
                    print(
                        f"{scenario.name} round {index + 1}: pyginx {got['pyginx']:.0f} nginx {got['nginx']:.0f} req/s"
                    )
                median = statistics.median(ratios)
                summary[scenario.name] = {
                    "ratio": median,
                    "target": scenario.target,
                    "pyginx_rps": statistics.median(
                        r.rps for r in runs if r.server == "pyginx" and r.scenario == scenario.name
                    ),
                    "nginx_rps": statistics.median(
                        r.rps for r in runs if r.server == "nginx" and r.scenario == scenario.name
                    ),
                    "pyginx_cpu_us": statistics.median(
                        r.cpu_us for r in runs if r.server == "pyginx" and r.scenario == scenario.name
                    ),
                    "nginx_cpu_us": statistics.median(
                        r.cpu_us for r in runs if r.server == "nginx" and r.scenario == scenario.name
                    ),
                }
        finally:
            for server in servers.values():
                server.stop()
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"tls-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"summary": summary, "runs": [asdict(r) for r in runs]}, indent=2))
        print(
            "\n| scenario | pyginx req/s | nginx req/s | ratio | CPU µs/request (pyginx / nginx) | target |"
            "\n| --- | --- | --- | --- | --- | --- |"
        )
        for scenario in chosen:
            s = summary[scenario.name]
            verdict = "ok" if s["ratio"] >= scenario.target else "below"
            print(
                f"| {scenario.title} | {s['pyginx_rps']:.0f} | {s['nginx_rps']:.0f} | {s['ratio']:.2f}x "
                f"| {s['pyginx_cpu_us']:.1f} / {s['nginx_cpu_us']:.1f} | >= {scenario.target}x ({verdict}) |"
            )
        print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
