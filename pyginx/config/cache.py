"""Parsers of the proxy cache directives, in nginx's words (ngx_http_file_cache_set_slot and friends)."""

from __future__ import annotations

from pyginx.config.model import CachePath, CacheRef, HttpSettings, Location, Server
from pyginx.config.parsers import Fields, Parser
from pyginx.config.units import parse_number, parse_size, parse_time
from pyginx.config.values import Arg, Env, Val
from pyginx.errors import ConfigError

MIN_ZONE_SIZE = 8 * 4096  # nginx: 8 pages
USE_STALE_FLAGS = (
    "error",
    "timeout",
    "invalid_header",
    "updating",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "off",
)
IGNORE_HEADERS = (
    "x-accel-redirect",
    "x-accel-expires",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
    "expires",
    "cache-control",
    "set-cookie",
    "vary",
)
METHODS = ("GET", "HEAD", "POST")


def _levels(val: Val, arg: Arg, text: str) -> tuple[int, ...]:
    parts = text.split(":")
    if len(parts) > 3 or any(p not in ("1", "2") for p in parts):
        raise val.error(f'invalid "levels" "{arg.text}"', arg.line)
    return tuple(int(p) for p in parts)


def _entry(val: Val, env: Env) -> CachePath:
    args = val.args()
    path = env.path(args[0].text.rstrip("/") or "/")
    fields: Fields = {}
    zone = ""
    zone_size = 0
    for arg in args[1:]:
        name, eq, value = arg.text.partition("=")
        if not eq:
            raise val.invalid_param(arg)
        if name == "levels":
            fields["levels"] = _levels(val, arg, value)
        elif name == "use_temp_path":
            if value not in ("on", "off"):
                raise val.error(
                    f'invalid use_temp_path value "{arg.text}", it must be "on" or "off"', arg.line
                )
            fields["use_temp_path"] = value == "on"
        elif name == "keys_zone":
            zname, colon, zsize = value.partition(":")
            size = parse_size(zsize) if colon else None
            if not zname or size is None or size == 0:
                raise val.error(f'invalid keys zone size "{arg.text}"', arg.line)
            if size < MIN_ZONE_SIZE:
                raise val.error(f'keys zone "{arg.text}" is too small', arg.line)
            zone, zone_size = zname, size
        elif name == "inactive":
            t = parse_time(value, seconds_only=True)
            if t is None:
                raise val.error(f'invalid inactive value "{arg.text}"', arg.line)
            fields["inactive"] = t
        elif name in ("max_size", "min_free"):
            size = parse_size(value)
            if size is None:
                raise val.error(f'invalid {name} value "{arg.text}"', arg.line)
            fields[name] = size
        elif name in ("loader_files", "manager_files"):
            n = parse_number(value)
            if n is None or n <= 0:
                raise val.error(f'invalid {name} value "{arg.text}"', arg.line)
            fields[name] = n
        elif name in ("loader_sleep", "loader_threshold", "manager_sleep", "manager_threshold"):
            t = parse_time(value)
            if t is None:
                raise val.error(f'invalid {name} value "{arg.text}"', arg.line)
            fields[name] = t
        else:
            raise val.invalid_param(arg)
    if not zone:
        raise val.error(f'"{val.name}" must have "keys_zone" parameter')
    return CachePath(path=path, zone=zone, zone_size=zone_size, pos=val.pos, **fields)


def p_proxy_cache_path(val: Val, env: Env) -> Fields:
    paths: list[CachePath] = []
    for entry in val.entries():
        cp = _entry(entry, env)
        for other in paths:
            if other.zone == cp.zone:
                raise entry.error(f'duplicate zone "{cp.zone}"')
            if other.path == cp.path:
                where = f"{other.pos}" if other.pos else "?"
                raise entry.error(f'the same path name "{cp.path}" used in {where} and in {entry.pos}')
        paths.append(cp)
    return {"proxy_cache_paths": tuple(paths)}


def p_proxy_cache(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text == "off":
        return {"proxy_cache": None}
    return {"proxy_cache": CacheRef(arg.text, val.pos)}


def p_proxy_cache_key(val: Val, env: Env) -> Fields:
    return {"proxy_cache_key": val.raw_string().text}


def p_proxy_cache_valid(val: Val, env: Env) -> Fields:
    out: list[tuple[int, float]] = []
    for entry in val.entries():
        args = entry.args()
        t = parse_time(args[-1].text, seconds_only=True)
        if t is None:
            raise entry.error(f'invalid time value "{args[-1].text}"', args[-1].line)
        if len(args) == 1:
            out.extend((code, t) for code in (200, 301, 302))
            continue
        for arg in args[:-1]:
            if arg.text == "any":
                out.append((0, t))
                continue
            code = parse_number(arg.text)
            if code is None or not 100 <= code <= 599:
                raise entry.error(f'invalid status "{arg.text}"', arg.line)
            out.append((code, t))
    return {"proxy_cache_valid": tuple(out)}


def p_proxy_cache_methods(val: Val, env: Env) -> Fields:
    methods = ["GET", "HEAD"]
    for arg in val.args():
        if arg.text not in METHODS:
            raise val.invalid(arg)
        if arg.text not in methods:
            methods.append(arg.text)
    return {"proxy_cache_methods": tuple(methods)}


def _predicates(field: str) -> Parser:
    def parse(val: Val, env: Env) -> Fields:
        return {field: tuple(a.text for e in val.entries() for a in e.args())}

    return parse


p_proxy_cache_bypass = _predicates("proxy_cache_bypass")
p_proxy_no_cache = _predicates("proxy_no_cache")


def p_proxy_cache_use_stale(val: Val, env: Env) -> Fields:
    flags: list[str] = []
    for arg in val.args():
        if arg.text not in USE_STALE_FLAGS:
            raise val.invalid(arg)
        flags.append(arg.text)
    if "off" in flags:
        flags = ["off"]
    return {"proxy_cache_use_stale": tuple(flags)}


def p_proxy_ignore_headers(val: Val, env: Env) -> Fields:
    names: list[str] = []
    for arg in val.args():
        if arg.text.lower() not in IGNORE_HEADERS:
            raise val.invalid(arg)
        names.append(arg.text.lower())
    return {"proxy_ignore_headers": tuple(names)}


# ---------------------------------------------------------------------------------------------------------
# whole-configuration checks (called from config/zones.py, which sees every level)


def check_refs(paths: tuple[CachePath, ...], levels: list[HttpSettings]) -> None:
    """Every `proxy_cache NAME` must name a keys_zone (nginx: `"proxy_cache" zone "x" is unknown`)."""
    zones = {p.zone for p in paths}
    for settings in levels:
        ref = settings.proxy_cache
        if ref is not None and ref.zone not in zones:
            file, line = (ref.pos.file, ref.pos.line) if ref.pos else (None, None)
            raise ConfigError(f'"proxy_cache" zone "{ref.zone}" is unknown', file, line)


def reload_conflict(old: tuple[CachePath, ...], new: tuple[CachePath, ...]) -> str | None:
    """A reload keeping a keys zone (same name and size) must keep its path and levels
    (ngx_http_file_cache_init's errors); None when it does."""
    before = {p.zone: p for p in old}
    for cp in new:
        prev = before.get(cp.zone)
        if prev is None or prev.zone_size != cp.zone_size:
            continue  # a new zone: anything goes
        if prev.path != cp.path:
            return (
                f'cache "{cp.zone}" uses the "{cp.path}" cache path while previously it used the '
                f'"{prev.path}" cache path'
            )
        if prev.levels != cp.levels:
            return f'cache "{cp.zone}" had previously different levels'
    return None


def all_settings(http_settings: HttpSettings, servers: tuple[Server, ...]) -> list[HttpSettings]:
    out = [http_settings]

    def walk(locs: tuple[Location, ...]) -> None:
        for loc in locs:
            out.append(loc.settings)
            walk(loc.locations)

    for server in servers:
        out.append(server.settings)
        walk(server.locations)
    return out
