"""The split_clients module (ngx_http_split_clients_module): A/B buckets by a hash of a string.

    split_clients:
      "${remote_addr}AAA $variant": {"0.5%": .one, "2.0%": .two, "*": ""}

The source is hashed with MurmurHash2 exactly as nginx's ngx_murmur_hash2 does, and the percentages
(two decimals at most, in the order written; `*` takes what is left) cut the 32-bit hash space as
nginx cuts it, so a given key lands in the same bucket as with nginx. Values are plain strings (as in
nginx); a hash past the last bucket gives "".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config import varblocks
from pyginx.config.parsers import Fields
from pyginx.config.values import Env, Val
from pyginx.errors import ConfigError
from pyginx.module import Getter, Module, ModuleDirective

if TYPE_CHECKING:
    from pyginx.http.request import Request

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur_hash2(data: bytes) -> int:
    """ngx_murmur_hash2 (MurmurHash2, seed 0, little-endian words), a 32-bit unsigned result."""
    length = len(data)
    h = length & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length - end
    if rest:
        if rest == 3:
            h ^= data[end + 2] << 16
        if rest >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@dataclass(frozen=True)
class SplitDef:
    source: str  # a template
    name: str
    parts: tuple[tuple[int, str], ...]  # (upper bound of the hash, exclusive; 0 = the rest, value)
    line: int

    def pick(self, key: bytes) -> str:
        """ngx_http_split_clients_variable: the first part whose bound exceeds the hash."""
        h = murmur_hash2(key)
        for bound, value in self.parts:
            if h < bound or bound == 0:
                return value
        return ""


@dataclass(frozen=True)
class SplitConf:
    splits: tuple[SplitDef, ...] = ()


def parse_percent(text: str) -> int | None:
    """ngx_atofp(text, 2) of "12.34%": hundredths of a percent; None when nginx refuses it."""
    if not text.endswith("%"):
        return None
    digits = text[:-1]
    if not digits:
        return None
    value = 0
    point = 2
    dot = False
    for ch in digits:
        if point == 0:
            return None
        if ch == ".":
            if dot:
                return None
            dot = True
            continue
        if not "0" <= ch <= "9":
            return None
        value = value * 10 + ord(ch) - 48
        if dot:
            point -= 1
    value *= 10**point
    return value or None


def _p_split_clients(val: Val, env: Env) -> Fields:
    splits: list[SplitDef] = []
    for block in varblocks.read_blocks(val, env, (2,)):
        source, target = block.args
        name = varblocks.variable_name(target, val, block.line)
        env.use_vars(source, block.line)
        raw: list[tuple[int, str, int, str]] = []
        for entry in block.entries:
            if len(entry.values) != 1:
                raise ConfigError(
                    f'invalid number of arguments in "{val.name}" directive', val.file, entry.line
                )
            if entry.key == "*":
                percent = 0
            else:
                got = parse_percent(entry.key)
                if got is None:
                    raise ConfigError(f'invalid percent value "{entry.key}"', val.file, entry.line)
                percent = got
            raw.append((percent, entry.values[0], entry.line, entry.key))
        splits.append(SplitDef(source, name, _cut(raw, val, block.line), block.line))
        varblocks.define(name, val, env, block.line)
    return {"splits": tuple(splits)}


def _cut(raw: list[tuple[int, str, int, str]], val: Val, line: int) -> tuple[tuple[int, str], ...]:
    """The end of ngx_conf_split_clients_block: cumulative bounds in the 32-bit hash space."""
    total = 0
    last = 0
    parts: list[tuple[int, str]] = []
    for percent, value, _entry_line, _key in raw:
        total = total + percent if percent else 10000
        if total == 10000:
            percent = 0
        if total > 10000:
            raise ConfigError("percent total is greater than 100%", val.file, line)
        if percent:
            last += percent * 0xFFFFFFFF // 10000
            parts.append((last & _MASK, value))
        else:
            parts.append((0, value))
    return tuple(parts)


def compile_split(s: SplitDef) -> Getter:
    from pyginx.http.variables import cached, compile_template

    source = compile_template(s.source)
    pick = s.pick

    def compute(req: Request) -> str:
        return pick(source(req).encode("utf-8", "surrogateescape"))

    return cached(s.name, compute)


def _init_worker(ctx: Any) -> None:
    conf: SplitConf = ctx.config.http.settings.conf(MODULE.name)
    for s in conf.splits:
        ctx.variables[s.name] = compile_split(s)


MODULE = Module(
    name="split_clients",
    conf=SplitConf,
    directives=(ModuleDirective("split_clients", frozenset({"http"}), _p_split_clients),),
    init_worker=_init_worker,
)
