"""The map module (ngx_http_map_module): `map` defines variables whose value depends on another.

    map:
      "$http_upgrade $connection_upgrade": {default: upgrade, "": close}
      "$uri $user": {"~^/u/(?<name>[^/]+)": "$name", "~*^/ADMIN": root, hostnames: false}

A block's keys are nginx's source values: exact strings (compared without case, as nginx's hash
does), `~regex` / `~*regex` (tried in the order written, after the exact match; their captures,
numbered and named, may be used in the value), `\\` to escape a key that would read as a parameter,
with `hostnames: true` the wildcards `.example.com`, `*.example.com` and `www.example.*` (the most
specific wins; a trailing dot of the source is ignored), `default` (else ""), and `volatile: true`
(evaluated at every use instead of once per request). Values may hold variables.

The configuration keeps plain data (MapDef); each worker compiles it into getters at start
(init_worker), served through the variable registry (pyginx/http/variables.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config import varblocks
from pyginx.config.parsers import Fields
from pyginx.config.values import Env, Val
from pyginx.errors import ConfigError
from pyginx.module import Getter, Module, ModuleDirective
from pyginx.modules.rewrite import pcre_to_python

if TYPE_CHECKING:
    from pyginx.http.request import Request


@dataclass(frozen=True)
class Hostnames:
    """The wildcard keys of a `hostnames` map: suffix -> (value index, also the bare name)."""

    head: dict[str, tuple[int, bool]]  # "example.com" <- ".example.com" (True) / "*.example.com"
    tail: dict[str, int]  # "www.example" <- "www.example.*"


@dataclass(frozen=True)
class MapDef:
    source: str  # a template
    name: str  # the variable defined, without "$"
    values: tuple[str, ...]  # value templates; the entries below index into this
    exact: dict[str, int]  # lowercased key -> value index
    regexes: tuple[tuple[re.Pattern[str], int], ...]  # in the order written
    default: int | None
    hostnames: Hostnames | None
    volatile: bool
    line: int

    def find(self, text: str) -> tuple[int | None, re.Match[str] | None]:
        """The value index for a source value (and the regex match that chose it), as
        ngx_http_map_find: exact, then wildcards, then the regexes in order; None: the default."""
        if self.hostnames is not None and text.endswith("."):
            text = text[:-1]
        low = text.lower()
        found = self.exact.get(low)
        if found is not None:
            return found, None
        if self.hostnames is not None and low:
            found = _wildcard(self.hostnames, low)
            if found is not None:
                return found, None
        if text:
            for regex, index in self.regexes:
                m = regex.search(text)
                if m is not None:
                    return index, m
        return self.default, None


def _wildcard(wc: Hostnames, host: str) -> int | None:
    """nginx's ngx_hash_find_wc_head then _tail: the longest matching suffix, then prefix."""
    if wc.head:
        hit = wc.head.get(host)
        if hit is not None and hit[1]:  # ".example.com" also matches "example.com"
            return hit[0]
        dot = host.find(".")
        while dot >= 0:
            hit = wc.head.get(host[dot + 1 :])
            if hit is not None:
                return hit[0]
            dot = host.find(".", dot + 1)
    if wc.tail:
        dot = host.rfind(".")
        while dot > 0:
            found = wc.tail.get(host[:dot])
            if found is not None:
                return found
            dot = host.rfind(".", 0, dot)
    return None


@dataclass(frozen=True)
class MapConf:
    maps: tuple[MapDef, ...] = ()


# ---------------------------------------------------------------------------------------------------
# parsing


def _p_map(val: Val, env: Env) -> Fields:
    maps = [_read_map(block, val, env) for block in varblocks.read_blocks(val, env, (2,))]
    return {"maps": tuple(maps)}


def _read_map(block: varblocks.Block, val: Val, env: Env) -> MapDef:
    source, target = block.args
    name = varblocks.variable_name(target, val, block.line)
    env.use_vars(source, block.line)
    values: list[str] = []
    exact: dict[str, int] = {}
    head: dict[str, tuple[int, bool]] = {}
    tail: dict[str, int] = {}
    regexes: list[tuple[re.Pattern[str], int]] = []
    default: int | None = None
    hostnames = volatile = False
    seen: dict[str, int] = {}
    for entry in block.entries:
        key = entry.key
        if key in ("hostnames", "volatile") and entry.flag is not None:
            if key == "hostnames":
                hostnames = varblocks.flag_entry(entry, val)
            else:
                volatile = varblocks.flag_entry(entry, val)
            continue
        if len(entry.values) != 1:
            raise ConfigError("invalid number of the map parameters", val.file, entry.line)
        text = entry.values[0]
        env.use_vars(text, entry.line)
        index = seen.get(text)
        if index is None:
            index = seen[text] = len(values)
            values.append(text)
        if key == "default":
            if default is not None:
                raise ConfigError("duplicate default map parameter", val.file, entry.line)
            default = index
            continue
        if key.startswith("~"):
            pattern, flags = (key[2:], re.IGNORECASE) if key.startswith("~*") else (key[1:], 0)
            try:
                regex = re.compile(pcre_to_python(pattern), flags)
            except re.error as exc:
                raise ConfigError(
                    f'pcre2_compile() failed: {exc} in "{pattern}"', val.file, entry.line
                ) from exc
            env.define_regex_captures(pattern)
            regexes.append((regex, index))
            continue
        if key.startswith("\\"):
            key = key[1:]
        _add_key(key, index, hostnames, exact, head, tail, val, entry.line)
    varblocks.define(name, val, env, block.line)
    wildcards = Hostnames(head, tail) if hostnames else None
    return MapDef(
        source, name, tuple(values), exact, tuple(regexes), default, wildcards, volatile, block.line
    )


def _add_key(
    key: str,
    index: int,
    hostnames: bool,
    exact: dict[str, int],
    head: dict[str, tuple[int, bool]],
    tail: dict[str, int],
    val: Val,
    line: int,
) -> None:
    """ngx_hash_add_key: exact keys (lowercased) and, in a `hostnames` map, the three wildcards."""
    low = key.lower()

    def conflict() -> ConfigError:
        return ConfigError(f'conflicting parameter "{key}"', val.file, line)

    if hostnames:
        if low.count("*") > 1 or ".." in low or "\0" in low:
            raise ConfigError(f'invalid hostname or wildcard "{key}"', val.file, line)
        if len(low) > 1 and low.startswith("."):
            suffix = low[1:]
            if suffix in exact or suffix in head:
                raise conflict()
            head[suffix] = (index, True)
            return
        if len(low) > 2 and low.startswith("*."):
            suffix = low[2:]
            if suffix in head:
                raise conflict()
            head[suffix] = (index, False)
            return
        if len(low) > 2 and low.endswith(".*"):
            prefix = low[:-2]
            if prefix in tail:
                raise conflict()
            tail[prefix] = index
            return
        if "*" in low:
            raise ConfigError(f'invalid hostname or wildcard "{key}"', val.file, line)
    if low in exact or (hostnames and head.get(low, (0, False))[1]):
        raise conflict()
    exact[low] = index


# ---------------------------------------------------------------------------------------------------
# serving


def compile_map(m: MapDef) -> Getter:
    """The variable's getter for one worker: the source rendered, the value chosen, then rendered
    (a regex's captures are the request's captures while it renders, as in nginx)."""
    from pyginx.http.variables import cached, compile_template

    source = compile_template(m.source)
    values = [compile_template(v) for v in m.values]
    find = m.find

    def compute(req: Request) -> str:
        index, match = find(source(req))
        if index is None:
            return ""
        if match is not None:
            req.captures = (match.group(0), *match.groups())
            if match.re.groupindex:
                for group, got in match.groupdict().items():
                    req.vars[group.lower()] = got or ""
        return values[index](req)

    return cached(m.name, compute, m.volatile)


def _init_worker(ctx: Any) -> None:
    conf: MapConf = ctx.config.http.settings.conf(MODULE.name)
    for m in conf.maps:
        ctx.variables[m.name] = compile_map(m)


MODULE = Module(
    name="map",
    conf=MapConf,
    directives=(ModuleDirective("map", frozenset({"http"}), _p_map),),
    init_worker=_init_worker,
)
