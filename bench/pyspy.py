"""Where pyginx's worker spends its time under a scenario's load: py-spy, sampled during an extra run.

The profiled run is not one of the measured rounds (sampling costs the worker a little). py-spy writes
collapsed stacks ("frame;frame;frame count" per line), from which the self and inclusive shares of each
function are computed; the file is kept beside the results (speedscope and inferno read it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE = 250  # samples per second: enough for a few seconds' run, light on the worker


@dataclass(frozen=True)
class Hotspot:
    function: str
    self_share: float  # of all samples where the worker was on CPU
    total_share: float  # the function or anything it called


def find_pyspy() -> str | None:
    """py-spy from the venv (the `bench` extra), else from PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, collapsed: Path) -> subprocess.Popen[bytes] | None:
    program = find_pyspy()
    if program is None:
        return None
    argv = [program, "record", "--pid", str(pid), "--duration", f"{max(1, round(seconds))}"]
    # --function: one entry per function (its first line), not one per line being executed.
    argv += [
        "--rate",
        str(RATE),
        "--format",
        "raw",
        "--function",
        "--output",
        str(collapsed),
        "--nonblocking",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Waits for py-spy; its complaint, or "" when it recorded."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
        return "py-spy did not finish"
    return "" if proc.returncode == 0 else err.decode(errors="replace").strip()[-300:]


def hotspots(collapsed: Path, top: int = 15) -> list[Hotspot]:
    """The functions with the most self time, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return []
    return [Hotspot(f, n / total, inclusive[f] / total) for f, n in own.most_common(top)]


def short(frame: str) -> str:
    """`handle (/long/path/pyginx/http/connection.py:120)` -> `handle (pyginx/http/connection.py:120)`."""
    name, _, where = frame.partition(" (")
    for marker in ("/pyginx/", "/site-packages/", "/lib/python3"):
        if marker in where:
            where = where[where.index(marker) + 1 :]
            break
    return f"{name} ({where}" if where else name
