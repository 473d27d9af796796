"""The YAML shape shared by `map`, `geo` and `split_clients` (CONFIG.md): one mapping whose keys are
nginx's block arguments and whose values are the blocks, one key per block:

    map:
      "$http_upgrade $connection_upgrade": {default: upgrade, "": close}
      "$uri $section": {"~^/u/(?<name>.+)$": /user/$name}

Each block's inner mapping keeps nginx's source values as keys, in file order (regexes and geo's
`delete` depend on it). This module turns the shape into (arguments, entries) with lines, and checks
the names of the variables the blocks define; what the entries mean is each module's business.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyginx.config.units import split_args
from pyginx.config.values import Env, Val
from pyginx.config.yamlload import YMap, YNode, YScalar, YSeq
from pyginx.errors import ConfigError

# core variables a configuration may not define again (nginx: `the duplicate "uri" variable`); the
# few nginx marks changeable ($args, $limit_rate) may be
_CHANGEABLE = frozenset({"args", "limit_rate"})


@dataclass(frozen=True)
class Entry:
    """One line of a block: its key as written and its value(s) as strings (a list value gives
    several, for geo's `proxy: [...]`); `flag` is True for a boolean value (`hostnames: true`)."""

    key: str
    values: tuple[str, ...]
    line: int
    flag: bool | None = None


@dataclass(frozen=True)
class Block:
    args: tuple[str, ...]
    entries: tuple[Entry, ...]
    line: int


def read_blocks(val: Val, env: Env, nargs: tuple[int, ...]) -> list[Block]:
    """The blocks of one `map`/`geo`/`split_clients` directive; `nargs` is how many arguments the
    key may hold (map and split_clients: 2; geo: 1 or 2)."""
    node = val.node
    if not isinstance(node, YMap):
        raise val.error(f'"{val.name}" must hold a mapping of "$source $variable" keys to blocks')
    blocks: list[Block] = []
    for key, body in val.mapping():
        try:
            args = tuple(split_args(key.raw))
        except ValueError as exc:
            raise ConfigError(str(exc), val.file, key.line) from exc
        if len(args) not in nargs:
            raise ConfigError(f'invalid number of arguments in "{val.name}" directive', val.file, key.line)
        if isinstance(body, YScalar) and body.value is None:
            body = YMap([], body.line)
        if not isinstance(body, YMap):
            raise ConfigError(
                f'"{val.name} {key.raw}" must hold a mapping of its entries', val.file, key.line
            )
        sub = Val(val.name, body, key.line, val.file)
        entries = tuple(_entry(val, k, v) for k, v in sub.mapping())
        blocks.append(Block(args, entries, key.line))
    return blocks


def _entry(val: Val, key: YScalar, node: YNode) -> Entry:
    if isinstance(node, YSeq):
        values: list[str] = []
        for item in node.items:
            if not isinstance(item, YScalar) or item.value is None:
                raise ConfigError(f"invalid number of the {val.name} parameters", val.file, item.line)
            values.append(item.raw)
        return Entry(key.raw, tuple(values), key.line)
    if not isinstance(node, YScalar):
        raise ConfigError(f"invalid number of the {val.name} parameters", val.file, key.line)
    if node.value is None:
        return Entry(key.raw, (), key.line)
    flag = node.value if isinstance(node.value, bool) else None
    # values keep the text as written: `default: yes` maps to "yes", not YAML's boolean
    return Entry(key.raw, (node.raw,), key.line, flag)


def variable_name(text: str, val: Val, line: int) -> str:
    """`$name` -> `name` (lowercase, as nginx keys variables), or nginx's error."""
    if not text.startswith("$") or len(text) < 2:
        raise ConfigError(f'invalid variable name "{text}"', val.file, line)
    return text[1:].lower()


def define(name: str, val: Val, env: Env, line: int) -> None:
    """Register `name` as a variable the configuration defines (checked names, nginx's errors)."""
    from pyginx.http.variables import BUILTIN

    if name in BUILTIN and name not in _CHANGEABLE:
        raise ConfigError(f'the duplicate "{name}" variable', val.file, line)
    env.defined_vars.add(name)


def flag_entry(entry: Entry, val: Val) -> bool:
    """A parameter written as a key with a boolean (`hostnames: true`)."""
    if entry.flag is None and entry.values not in (("on",), ("off",)):
        raise ConfigError(
            f'invalid value "{" ".join(entry.values)}" for "{entry.key}" in "{val.name}", it must be true or false',
            val.file,
            entry.line,
        )
    return entry.flag if entry.flag is not None else entry.values == ("on",)
