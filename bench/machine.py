"""The machine and the versions a result was measured with, for the report's header."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tools import REPO


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def first_line(argv: list[str]) -> str:
    """A program's version line; nginx and wrk print it on stderr, and wrk exits 1 doing so."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def compiled_build() -> str:
    """Pure Python or the compiled hot path (pyginx/compiled.py): the figures differ by 2-3x."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from pyginx.compiled import describe as build

    return build()


def describe(programs: dict[str, str]) -> dict[str, str]:
    nginx = first_line([programs["nginx"], "-v"])
    wrk = first_line([programs["wrk"], "-v"])
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": str(os.cpu_count()),
        "cpu model": cpu_model(),
        "memory": memory(),
        "kernel": platform.release(),
        "pyginx": f"{dist_version('pyginx')} (git {git_revision()})",
        "pyginx build": compiled_build(),
        "nginx": nginx.split("/", 1)[-1] if "/" in nginx else nginx,
        "python": sys.version.split()[0],
        "uvloop": dist_version("uvloop"),
        "httptools": dist_version("httptools"),
        "wrk": re.sub(r"\s*\[.*$", "", wrk.removeprefix("wrk ")).split(" Copyright")[0],
    }
