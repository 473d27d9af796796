"""pyginx.compiled: which listed modules have a build, and which builds are older than their source."""

from __future__ import annotations

import importlib.machinery
import os
from pathlib import Path

from pyginx import compiled

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pyginx"
    (pkg / "http").mkdir(parents=True)
    (pkg / "_compiled_modules.txt").write_text("pyginx.http.connection\npyginx.module\n")
    for rel in ("http/connection.py", "module.py"):
        (pkg / rel).write_text("x = 1\n")
    return pkg


def test_nothing_built_is_pure(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    assert compiled.listed_modules(pkg) == ["pyginx.http.connection", "pyginx.module"]
    assert compiled.compiled_modules(pkg) == [] and compiled.stale_modules(pkg) == []


def test_a_build_older_than_its_source_is_stale(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    ext = pkg / "http" / f"connection{SUFFIX}"
    ext.write_bytes(b"")
    os.utime(pkg / "module.py", (1000, 1000))
    (pkg / f"module{SUFFIX}").write_bytes(b"")
    assert compiled.compiled_modules(pkg) == ["pyginx.http.connection", "pyginx.module"]
    assert compiled.stale_modules(pkg) == []
    # the source edited after the build
    later = ext.stat().st_mtime + 10
    os.utime(pkg / "http" / "connection.py", (later, later))
    assert compiled.stale_modules(pkg) == ["pyginx.http.connection"]


def test_this_checkout_lists_only_existing_sources() -> None:
    root = Path(compiled.__file__).resolve().parent
    for module in compiled.listed_modules():
        assert root.joinpath(*module.split(".")[1:]).with_suffix(".py").exists(), module
