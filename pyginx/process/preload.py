"""Load all of pyginx before workers drop their privileges.

Much of pyginx is imported where it is first used (a handler when a location first runs it, a module's
runtime when its directive is present), which keeps `-t` and the master light. A worker that runs as
`user` (nobody, say) may not be able to read the installation, though (a checkout in a private home,
root's temporary directory): its first lazy import would fail mid-request. nginx has all of its code in
memory before it forks; here the master imports every module of the package once, before it forks, when
the workers will run as another user. Modules needing an optional library that is not installed are
skipped: a configuration that needs them was refused at load.
"""

from __future__ import annotations

import importlib
import pkgutil

import pyginx

_SKIPPED = frozenset({"pyginx.__main__"})  # running it would start the command line


def preload_package() -> int:
    """Import every module of pyginx; returns how many were loaded."""
    loaded = 0
    for info in pkgutil.walk_packages(pyginx.__path__, "pyginx."):
        if info.name in _SKIPPED:
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue  # an optional dependency (brotli, zstandard, bcrypt, h2, ...) is absent
        loaded += 1
    return loaded
