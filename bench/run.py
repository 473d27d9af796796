"""pyginx vs nginx, side by side: `make bench` (or `.venv/bin/python bench/run.py [--quick] [--scenario NAME]`).

Sets up a temporary work directory with the files and equivalent configurations, starts the shared
origin, then runs each scenario against fresh pyginx and nginx servers (see scenarios.py), and writes
bench/results/latest.{md,png,json} for a full run (partial.* for --quick or --scenario runs). Every
process it starts is stopped by pid before it exits, whatever happens.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

import chart
import configs
import machine
import pyspy
import report
import scenarios
import tools
import wrkrun

RESULTS = Path(__file__).resolve().parent / "results"
NOFILE = 65536


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke run (2 x 2 s)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in scenarios.SCENARIOS],
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 10, --quick 2)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 3, --quick 2)")
    parser.add_argument("--idle-connections", type=int, help="for the memory scenario (default 10000)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and wrk to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after each scenario's rounds, profile pyginx's worker with py-spy",
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only redraw the .md and .png of an earlier run's .json"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def params_from(args: argparse.Namespace) -> scenarios.Params:
    base = scenarios.Params()
    if args.quick:
        base = scenarios.Params(rounds=2, duration=2.0, warmup=1.0, idle_connections=2000, quiet_wait=0.0)
    return dataclasses.replace(
        base,
        rounds=args.rounds or base.rounds,
        duration=args.duration or base.duration,
        idle_connections=args.idle_connections or base.idle_connections,
    )


def pinning_text(server_cpus: str | None, client_cpus: str | None) -> str:
    if server_cpus is None:
        return "not pinned to CPUs"
    return (
        f"the server under test pinned to CPU {server_cpus}, wrk, the origin and the idle-connection"
        f" client to CPU {client_cpus} (taskset)"
    )


def prepare(root: Path, args: argparse.Namespace, programs: dict[str, str]) -> scenarios.Bench:
    layout = configs.make_layout(root)
    names = (*scenarios.SERVERS, scenarios.CEILING)
    ports = {name: configs.Ports(configs.free_port(), configs.free_port()) for name in names}
    origin_port = configs.free_port()
    lim = configs.limits()
    for workers in sorted({s.workers for s in scenarios.SCENARIOS}):
        configs.pyginx_config(layout, ports["pyginx"], origin_port, lim, workers)
        configs.nginx_config(layout, ports["nginx"], origin_port, lim, workers)
    configs.origin_config(layout, origin_port, lim)
    server_cpus, client_cpus = (None, None) if args.no_pin else tools.cpu_plan()
    return scenarios.Bench(
        layout,
        ports,
        origin_port,
        programs["nginx"],
        server_cpus,
        client_cpus,
        params_from(args),
        wrkrun.write_script(root),
        RESULTS if args.profile else None,
    )


def run_all(bench: scenarios.Bench, chosen: list[scenarios.Scenario]) -> list[scenarios.Outcome]:
    origin = bench.origin()
    outcomes = []
    try:
        origin.start("/" + configs.SMALL)
        bench.helpers = sorted(origin.known)
        for scenario in chosen:
            print(f"== {scenario.name}: {scenario.title}", flush=True)
            outcomes.append(run_one(bench, scenario))
    finally:
        origin.stop()
    return outcomes


def run_one(bench: scenarios.Bench, scenario: scenarios.Scenario) -> scenarios.Outcome:
    """A scenario whose server fails (crash, timeout, wrong answer) is reported as such; the others
    still run, so that one broken feature does not hide the figures of the rest."""
    try:
        return scenarios.run_scenario(bench, scenario)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench: {scenario.name} failed: {exc}", file=sys.stderr, flush=True)
        return scenarios.Outcome(scenario, problems=[f"the scenario failed: {exc}"])


def write_results(
    outcomes: list[scenarios.Outcome], bench: scenarios.Bench, info: dict[str, str], stem: str, quick: bool
) -> str:
    pinning = pinning_text(bench.server_cpus, bench.client_cpus)
    data = report.as_json(outcomes, info, bench.params, pinning, quick)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    return render(outcomes, info, bench.params, pinning, quick, RESULTS / stem)


def render(
    outcomes: list[scenarios.Outcome],
    info: dict[str, str],
    params: scenarios.Params,
    pinning: str,
    quick: bool,
    stem: Path,
) -> str:
    """STEM.md and STEM.png from the outcomes; the markdown text."""
    text = report.markdown(outcomes, info, params, pinning, quick)
    stem.with_suffix(".md").write_text(text)
    if tools.ensure_module("matplotlib", lambda: importlib.util.find_spec("matplotlib") is not None):
        summaries = [report.summarize(o) for o in outcomes]
        chart.draw(
            summaries, f"pyginx vs nginx, {info['date']} ({info['cpu model']})", stem.with_suffix(".png")
        )
    else:
        print("bench: matplotlib unavailable, no chart written", file=sys.stderr)
    return text


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the finally blocks stop every server we started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def rerender(path: Path) -> int:
    """--render: the report and chart again from a JSON file of an earlier run (no measuring)."""
    outcomes, info, params, pinning, quick = report.from_json(json.loads(path.read_text()))
    print(render(outcomes, info, params, pinning, quick, path.with_suffix("")))
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        return rerender(args.render)
    stop_on_sigterm()
    programs = tools.ensure_programs()
    if args.profile:
        tools.ensure_module("py-spy", lambda: pyspy.find_pyspy() is not None)
    tools.raise_nofile(NOFILE)
    chosen = [s for s in scenarios.SCENARIOS if not args.scenario or s.name in args.scenario]
    full = not args.quick and not args.scenario  # every scenario; the report states rounds and lengths
    root = Path(tempfile.mkdtemp(prefix="pyginx-bench-"))
    RESULTS.mkdir(exist_ok=True)
    try:
        bench = prepare(root, args, programs)
        info = machine.describe(programs)
        print(
            f"bench: work directory {root}; {pinning_text(bench.server_cpus, bench.client_cpus)}", flush=True
        )
        outcomes = run_all(bench, chosen)
        text = write_results(outcomes, bench, info, "latest" if full else "partial", args.quick)
    finally:
        if args.keep:
            print(f"bench: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(text, end="")  # it ends with report.summary_line()
    missed = [o.scenario.name for o in outcomes if not report.summarize(o).met]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
