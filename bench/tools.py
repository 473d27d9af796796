"""What the bench needs on the machine: nginx and wrk (Debian's packages), taskset, the `bench` extra, fds."""

from __future__ import annotations

import importlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APT_PACKAGES = {"nginx": "nginx", "wrk": "wrk", "taskset": "util-linux"}


def find(program: str) -> str | None:
    # /usr/sbin is not on every user's PATH, and nginx lives there.
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")


def ensure_programs() -> dict[str, str]:
    """The path of nginx, wrk and taskset, installing the missing ones with apt-get."""
    missing = sorted({APT_PACKAGES[p] for p in APT_PACKAGES if find(p) is None})
    if missing:
        apt_install(missing)
    paths = {program: find(program) for program in APT_PACKAGES}
    absent = [program for program, path in paths.items() if path is None]
    if absent:
        raise SystemExit(f"bench: still missing after apt-get: {', '.join(absent)}")
    return {program: str(path) for program, path in paths.items()}


def apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise SystemExit(
            f"bench: {', '.join(packages)} missing; run as root or: apt-get install {' '.join(packages)}"
        )
    print(f"bench: installing {' '.join(packages)} with apt-get", flush=True)
    # RUNLEVEL=1 keeps the package's init script from starting a system nginx on port 80.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env, check=True, timeout=900)


def bench_requirements() -> list[str]:
    """The `bench` extra of pyproject.toml: the one place its dependencies are written."""
    with (REPO / "pyproject.toml").open("rb") as f:
        extras = tomllib.load(f)["project"].get("optional-dependencies", {})
    return list(extras.get("bench", []))


def ensure_module(name: str, present: Callable[[], bool]) -> bool:
    """Whether `present()` holds, after a pip install of the `bench` extra's `name` if it did not."""
    if present():
        return True
    wanted = [r for r in bench_requirements() if re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] == name]
    if not wanted:
        return False
    print(f"bench: installing {' '.join(wanted)} with pip", flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=False, timeout=600)
    importlib.invalidate_caches()
    return done.returncode == 0 and present()


def raise_nofile(needed: int) -> int:
    """Raise our RLIMIT_NOFILE (inherited by wrk and the idle-connection client); the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
    except (OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # not root: as far as we may
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_plan() -> tuple[str | None, str | None]:
    """(server CPUs, client CPUs) for taskset: the server alone on CPU 0, wrk/origin/client on the rest.

    Without pinning the scheduler moves the worker and wrk across both cores and each run measures a
    different mix; pinned, each gets a core of its own. On one CPU there is nothing to split.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(str(c) for c in cpus[1:])
