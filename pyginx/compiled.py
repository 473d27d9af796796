"""Which modules of this installation run compiled (the optional mypyc build, setup.py) and which
compiled modules are stale: built from an older source than the .py beside them.

Python imports an extension module in preference to the source of the same name, so a stale build
would silently run old code; `pyginx -V` and the server's start report it, and the test suite refuses
to run over it. Looked up without importing anything: this is safe to call before the fork.
"""

from __future__ import annotations

import importlib.machinery
import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_LIST = _PACKAGE / "_compiled_modules.txt"


def listed_modules(package: Path = _PACKAGE) -> list[str]:
    """The modules the compiled build compiles (dotted names)."""
    return (package / _LIST.name).read_text().split()


def _extension_of(module: str, package: Path = _PACKAGE) -> Path | None:
    base = package.joinpath(*module.split(".")[1:])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            return candidate
    return None


def compiled_modules(package: Path = _PACKAGE) -> list[str]:
    """The listed modules that have a built extension module beside their source."""
    return [m for m in listed_modules(package) if _extension_of(m, package) is not None]


def stale_modules(package: Path = _PACKAGE) -> list[str]:
    """Compiled modules whose source changed after they were built."""
    stale = []
    for module in listed_modules(package):
        ext = _extension_of(module, package)
        if ext is None:
            continue
        source = package.joinpath(*module.split(".")[1:]).with_suffix(".py")
        if source.exists() and os.stat(source).st_mtime > os.stat(ext).st_mtime:
            stale.append(module)
    return stale


def describe() -> str:
    """One line for `pyginx -V` and the start-up log."""
    built = compiled_modules()
    if not built:
        return "pure Python (no compiled modules: `make compiled` builds them)"
    text = f"compiled with mypyc: {len(built)} of {len(listed_modules())} hot-path modules"
    stale = stale_modules()
    if stale:
        text += f"; STALE (source newer than the build, rebuild with `make compiled`): {', '.join(stale)}"
    return text
