"""YAML -> a small node tree that remembers the line of every key and value.

PyYAML's `compose` keeps marks on its nodes; plain `safe_load` throws them away. Every configuration
error must name FILE:LINE, so the loader walks these nodes instead of plain dicts. Scalars keep both
their YAML-resolved value (to tell a boolean `on`/`true` from a string) and the raw text as written
(so `1.10` or `0755` reach a directive parser exactly as the user typed them).

Duplicate keys are recorded, not rejected here: whether a duplicate is `"root" directive is duplicate`
or `duplicate upstream "app"` depends on what the mapping holds, which only the loader knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from pyginx.config import yamlerrors
from pyginx.errors import ConfigError


@dataclass
class YScalar:
    value: object  # str, int, float, bool or None as YAML resolved it
    raw: str  # the text as written (for quoted strings: the string itself)
    line: int
    quoted: bool = False
    file: str = ""  # the file it was read from (an included file's nodes name their own)

    @property
    def text(self) -> str:
        """The scalar as a directive argument: booleans become nginx's on/off, the rest as written."""
        if isinstance(self.value, bool):
            return "on" if self.value else "off"
        if self.value is None:
            return ""
        return self.raw


@dataclass
class YSeq:
    items: list[YNode]
    line: int
    file: str = ""


@dataclass
class YMap:
    items: list[tuple[YScalar, YNode]]
    line: int
    duplicate: YScalar | None = None  # the second occurrence of the first repeated key
    file: str = ""
    _index: dict[str, YNode] = field(default_factory=dict, repr=False)

    def get(self, key: str) -> YNode | None:
        return self._index.get(key)

    def first_key(self, name: str) -> YScalar | None:
        """The key `name` as first written (to name the earlier place of a duplicate)."""
        return next((k for k, _ in self.items if k.raw == name), None)

    def put(self, key: YScalar, value: YNode) -> None:
        """Append a pair; a key already present is recorded as the duplicate (the first one wins)."""
        if key.raw in self._index:
            if self.duplicate is None:
                self.duplicate = key
            return
        self._index[key.raw] = value
        self.items.append((key, value))


YNode = YScalar | YSeq | YMap


def load_yaml(path: str) -> tuple[YNode | None, str]:
    """Read and compose `path`; returns (root node or None for an empty file, source text)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})') from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f'"{path}" is not valid UTF-8 ({exc.reason})') from exc
    return parse_yaml(text, path), text


def parse_yaml(text: str, path: str) -> YNode | None:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        return _convert(loader, root, path)
    except yaml.MarkedYAMLError as exc:
        message, line = yamlerrors.describe(exc, text)
        raise ConfigError(message, path, line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", path) from exc
    finally:
        loader.dispose()


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: str) -> YNode:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            # e.g. an impossible timestamp: keep the text, the directive parser will judge it
            value = node.value
        if not isinstance(value, str | int | float | bool) and value is not None:
            value = node.value  # dates and other YAML types: only their text matters here
        return YScalar(
            value=value, raw=str(node.value), line=line, quoted=node.style in ("'", '"'), file=path
        )
    if isinstance(node, yaml.SequenceNode):
        return YSeq([_convert(loader, item, path) for item in node.value], line, file=path)
    if isinstance(node, yaml.MappingNode):
        own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # honour `<<: *anchor` merge keys: merged pairs come first
        merged = len(node.value) - own
        ymap = YMap([], line, file=path)
        from_merge: set[str] = set()
        for n, (knode, vnode) in enumerate(node.value):
            key = _convert(loader, knode, path)
            if not isinstance(key, YScalar):
                raise ConfigError("a mapping key must be a plain name", path, key.line)
            value = _convert(loader, vnode, path)
            if key.raw in ymap._index:
                if key.raw in from_merge:
                    # a key written in the mapping (or a later anchor) overrides a merged-in one
                    ymap.items = [(k, v) for k, v in ymap.items if k.raw != key.raw]
                    from_merge.discard(key.raw)
                elif ymap.duplicate is None:
                    ymap.duplicate = key
                    continue
                else:
                    continue
            ymap._index[key.raw] = value
            ymap.items.append((key, value))
            if n < merged:
                from_merge.add(key.raw)
        return ymap
    raise ConfigError("unsupported YAML node", path, line)  # pragma: no cover - compose makes only 3 kinds
