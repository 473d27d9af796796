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
    limit_conn,
    limit_rate,
    limit_req,
    map,
    proxy,
    readiness,
    realip,
    rewrite,
    split_clients,
    static,
    status,
    try_files,
)

ALL: tuple[Module, ...] = (
    # limits branch: limit_rate has no phase handler, only a header filter; it comes before rewrite
    # so that its resolve step marks a level before the rewrite module copies it into `if` blocks
    limit_rate.MODULE,
    rewrite.MODULE,
    # traffic control and visibility (limits branch); limit_req's preaccess handler runs before
    # limit_conn's, as in nginx (a request refused by limit_req takes no connection slot)
    realip.MODULE,
    limit_req.MODULE,
    limit_conn.MODULE,
    status.MODULE,
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
