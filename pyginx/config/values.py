"""One directive occurrence as the parsers see it, and the load-wide state they may consult.

`Val` turns a YAML value into nginx arguments and builds error messages in nginx's words, always with
FILE:LINE (the value's own line when it has one, else the directive's). `Env` carries what a parser
needs beyond its value: the prefix for relative paths, the enclosing location, the log formats and the
upstream registry that `proxy_pass` resolves against.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pyginx.config.model import LocationModifier, SourcePos, Upstream
from pyginx.config.units import split_args
from pyginx.config.yamlload import YMap, YNode, YScalar, YSeq
from pyginx.errors import ConfigError

# "if": inside a location's `if` block; "sif": inside a server's `if` block
_VAR_USE = re.compile(r"\$(?:\{(\w+)\}|([1-9]|\w+))")  # `$10` is capture 1 then "0", as in nginx
_NAMED_GROUP = re.compile(r"\(\?P?<(\w+)>")

Context = Literal["main", "events", "http", "server", "location", "upstream", "if", "sif"]


@dataclass(frozen=True)
class Arg:
    """One argument and the line it was written on."""

    text: str
    line: int


@dataclass
class Val:
    name: str  # the directive name, for messages
    node: YNode
    line: int  # the line of the directive's key
    file: str
    key: str = ""  # the key as written, when it carries more than the name (`if ($x)`)

    # ---- errors, in nginx's wording

    def error(self, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(message, self.file, line if line is not None else self.line)

    def invalid(self, arg: Arg | str, extra: str = "") -> ConfigError:
        text, line = (arg.text, arg.line) if isinstance(arg, Arg) else (arg, None)
        return self.error(f'invalid value "{text}" in "{self.name}" directive{extra}', line)

    def invalid_param(self, arg: Arg) -> ConfigError:
        return self.error(f'invalid parameter "{arg.text}"', arg.line)

    def nargs(self) -> ConfigError:
        return self.error(f'invalid number of arguments in "{self.name}" directive')

    @property
    def pos(self) -> SourcePos:
        return SourcePos(self.file, self.line)

    # ---- shapes

    def args(self) -> list[Arg]:
        """The arguments: a string split as nginx splits a line, or a list's elements (one each)."""
        node = self.node
        if isinstance(node, YScalar):
            if node.value is None:
                raise self.nargs()
            if isinstance(node.value, str):
                try:
                    parts = split_args(node.text)
                except ValueError as exc:
                    raise self.error(str(exc), node.line) from exc
                if not parts:
                    raise self.nargs()
                return [Arg(p, node.line) for p in parts]
            return [Arg(node.text, node.line)]
        if isinstance(node, YSeq):
            out: list[Arg] = []
            for item in node.items:
                if not isinstance(item, YScalar) or item.value is None:
                    raise self.error(
                        f'invalid value in "{self.name}" directive: expected a plain value', item.line
                    )
                out.append(Arg(item.text, item.line))
            if not out:
                raise self.nargs()
            return out
        raise self.error(
            f'invalid value in "{self.name}" directive: expected a value, not a mapping', node.line
        )

    def one(self) -> Arg:
        args = self.args()
        if len(args) != 1:
            raise self.nargs()
        return args[0]

    def joined(self) -> Arg:
        """All arguments as one, space-separated: a time may be written `1h 30m` without quotes."""
        args = self.args()
        return Arg(" ".join(a.text for a in args), args[0].line)

    def raw_string(self) -> Arg:
        """The value as one unsplit string (for `return` text, log formats and such)."""
        node = self.node
        if not isinstance(node, YScalar) or node.value is None:
            raise self.nargs()
        return Arg(node.text, node.line)

    def entries(self) -> list[Val]:
        """For repeatable directives: each list element as its own occurrence (a scalar = one)."""
        node = self.node
        if isinstance(node, YSeq):
            if not node.items:
                raise self.nargs()
            return [Val(self.name, item, item.line, self.file) for item in node.items]
        return [self]

    def mapping(self) -> list[tuple[YScalar, YNode]]:
        node = self.node
        if not isinstance(node, YMap):
            raise self.error(f'invalid value in "{self.name}" directive: expected a mapping', node.line)
        check_duplicates(node, self.file, lambda k: f'duplicate key "{k}" in "{self.name}" directive')
        return node.items


def check_duplicates(node: YMap, file: str, message: Callable[[str], str]) -> None:
    """Raise for a key repeated in one mapping; `message(key)` words it for what the mapping holds.

    When `include` brought the two from different files, the message names the first place too."""
    dup = node.duplicate
    if dup is not None:
        text = message(dup.raw)
        first = node.first_key(dup.raw)
        if first is not None and first.file and dup.file and first.file != dup.file:
            text += f" (first set in {first.file}:{first.line})"
        raise ConfigError(text, dup.file or file, dup.line)


@dataclass(frozen=True)
class LocationHead:
    """What a location's directives may need to know of it (proxy_pass checks its kind)."""

    modifier: LocationModifier
    match: str


@dataclass
class Env:
    file: str
    prefix: str
    location: LocationHead | None = None
    log_formats: dict[str, str] = field(default_factory=dict)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    # variables: each use (name, file, line), checked against the registry once everything is read;
    # the names the configuration itself defines (set, map, named regex captures)
    used_vars: list[tuple[str, str, int]] = field(default_factory=list)
    defined_vars: set[str] = field(default_factory=set)

    def use_vars(self, text: str, line: int, file: str | None = None) -> None:
        """Record the $variables of a template written at FILE:`line` (checked at the end of loading;
        FILE defaults to the main file: parsers pass their Val's, which names an included file)."""
        if "$" not in text:
            return
        for m in _VAR_USE.finditer(text):
            self.used_vars.append((m.group(1) or m.group(2), file or self.file, line))

    def define_regex_captures(self, pattern: str) -> None:
        """Named captures of a regex become variables, as in nginx (ngx_regex_compile)."""
        for m in _NAMED_GROUP.finditer(pattern):
            self.defined_vars.add(m.group(1).lower())

    def path(self, path: str) -> str:
        """Relative paths resolve against the prefix, as nginx's ngx_conf_full_name does.

        Paths starting with a variable are left alone: they are only known per request.
        """
        if path.startswith("$") or os.path.isabs(path):
            return path
        return os.path.join(self.prefix, path)
