"""The shared-memory zones a configuration declares, checked as nginx's ngx_shared_memory_add checks them.

Each feature with a zone contributes its declarations in `declared()` (proxy_cache_path's keys_zone
today; limit_req_zone, limit_conn_zone, upstream `zone` add theirs here). Within one configuration a
name may be declared twice only for the same use and the same size (nginx's two errors otherwise).
"""

from __future__ import annotations

from pyginx.config import cache
from pyginx.config.model import Http, ZoneDecl
from pyginx.errors import ConfigError


def declared(http: Http) -> list[ZoneDecl]:
    from pyginx.modules import limit_conn, limit_req, status  # the modules' declarations

    levels = cache.all_settings(http.settings, http.servers)[1:]  # every server and location
    out: list[ZoneDecl] = []
    # proxy cache: keys_zone=NAME:SIZE of each proxy_cache_path
    out.extend(ZoneDecl(p.zone, p.zone_size, "proxy_cache", p.pos) for p in http.proxy_cache_paths)
    out += limit_req.zone_decls(http.settings, levels)
    out += limit_conn.zone_decls(http.settings, levels)
    out += status.zone_decls(http.settings, levels)
    return out


def check(decls: list[ZoneDecl]) -> tuple[ZoneDecl, ...]:
    """One entry per zone name, or nginx's emerg for a conflicting declaration."""
    seen: dict[str, ZoneDecl] = {}
    for decl in decls:
        prev = seen.get(decl.name)
        if prev is None:
            seen[decl.name] = decl
            continue
        file, line = (decl.pos.file, decl.pos.line) if decl.pos else (None, None)
        if prev.tag != decl.tag:
            raise ConfigError(
                f'the shared memory zone "{decl.name}" is already declared for a different use', file, line
            )
        if decl.size and prev.size and decl.size != prev.size:
            raise ConfigError(
                f'the size {decl.size} of shared memory zone "{decl.name}" conflicts with already '
                f"declared size {prev.size}",
                file,
                line,
            )
        if not prev.size:
            seen[decl.name] = decl
    return tuple(seen.values())


def collect(http: Http) -> tuple[ZoneDecl, ...]:
    levels = cache.all_settings(http.settings, http.servers)
    if http.proxy_cache_paths or any(s.proxy_cache for s in levels):
        cache.check_refs(http.proxy_cache_paths, levels)
    return check(declared(http))
