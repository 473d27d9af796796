"""The modules: one file each, declaring directives, variables and phase handlers (pyginx/module.py).

`ALL` is the registry, in the order the modules' handlers run within a phase and their filters wrap
the response (as nginx's ngx_modules[] order decides). Module files import only configuration code
and pyginx.module at their top; runtime code (handlers/, upstream/) is imported where it runs.
"""

from __future__ import annotations

from pyginx.module import Module
from pyginx.modules import (
    access,
    auth_basic,
    auth_request,
    empty_gif,
    geo,
    gzip,
    map,
    proxy,
    readiness,
    rewrite,
    split_clients,
    static,
    try_files,
)

ALL: tuple[Module, ...] = (
    rewrite.MODULE,
    access.MODULE,  # the access phase: allow/deny, satisfy; runs the two below
    auth_basic.MODULE,
    auth_request.MODULE,
    try_files.MODULE,
    empty_gif.MODULE,
    readiness.MODULE,
    proxy.MODULE,
    static.MODULE,
    gzip.MODULE,  # output filter: compression (gzip, brotli, zstd)
    # configuration-defined variables (no phase handlers)
    map.MODULE,
    geo.MODULE,
    split_clients.MODULE,
)


def by_name(name: str) -> Module:
    for m in ALL:
        if m.name == name:
            return m
    raise KeyError(name)
