"""`include`: other YAML files spliced into the node tree before the loader walks it.

Two shapes, as /work/shared/CONFIG.md gives them:

* in a mapping (any block: main, `events`, `http`, a server, a location, an upstream, `upstreams`),
  `include: PATH` (or a list of paths) puts the directives of the matched files where the key stands;
  a key set both here and in an included file is a duplicate, reported by the loader with both places;
* as an item of a list (`servers`, `locations`), `- include: PATH` stands for the blocks the files
  hold: a file holds one block (a mapping) or a list of blocks.

Paths are globs; relative ones resolve against the directory of the main configuration file. Matches are
read in sorted order; a glob that matches nothing is fine, a plain path that does not exist is nginx's
`open() "..." failed (2: No such file or directory)`. Every node keeps the file it was read from, so the
loader's errors name the included file and its line. Expansion is done once, on the whole tree, so the
loader never sees an `include` key; the files read are kept for `-T`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager

from pyginx.config.yamlload import YMap, YNode, YScalar, YSeq, load_yaml
from pyginx.errors import ConfigError

INCLUDE = "include"
_GLOB_CHARS = "*?["


def expand(root: YNode | None, main_file: str) -> tuple[YNode | None, list[tuple[str, str]]]:
    """The tree with every include resolved, and (path, text) of each included file in read order."""
    if root is None:
        return None, []
    reader = _Reader(os.path.dirname(main_file), [os.path.realpath(main_file)])
    return reader.node(root), reader.files


class _Reader:
    def __init__(self, base: str, stack: list[str]) -> None:
        self.base = base
        self.stack = stack  # real paths of the files being expanded, outermost first: a cycle check
        self.files: list[tuple[str, str]] = []
        self._seen: set[str] = set()

    def node(self, node: YNode) -> YNode:
        if isinstance(node, YMap):
            return self.mapping(node)
        if isinstance(node, YSeq):
            return self.sequence(node)
        return node

    def mapping(self, node: YMap) -> YMap:
        out = YMap([], node.line, file=node.file)
        for key, value in node.items:
            if key.raw != INCLUDE:
                out.put(key, self.node(value))
                continue
            for path in self._paths(key, value):
                real, tree = self._read(path, key)
                if tree is None:
                    continue
                if not isinstance(tree, YMap):
                    raise ConfigError(
                        f'"{path}" must hold a mapping of directives to be included here',
                        key.file or None,
                        key.line,
                    )
                with self._inside(real):
                    included = self.mapping(tree)
                for k, v in included.items:
                    out.put(k, v)
                if included.duplicate is not None and out.duplicate is None:
                    out.duplicate = included.duplicate
        if node.duplicate is not None:  # a key repeated inside one file: that one is reported
            out.duplicate = node.duplicate
        return out

    def sequence(self, node: YSeq) -> YSeq:
        items: list[YNode] = []
        for item in node.items:
            key_value = _include_item(item)
            if key_value is None:
                items.append(self.node(item))
                continue
            key, value = key_value
            for path in self._paths(key, value):
                real, tree = self._read(path, key)
                if tree is None:
                    continue
                if isinstance(tree, YMap):
                    with self._inside(real):
                        items.append(self.mapping(tree))
                elif isinstance(tree, YSeq):
                    with self._inside(real):
                        items.extend(self.sequence(tree).items)
                else:
                    raise ConfigError(
                        f'"{path}" must hold a block or a list of blocks to be included here',
                        key.file or None,
                        key.line,
                    )
        return YSeq(items, node.line, file=node.file)

    # ---- files

    def _paths(self, key: YScalar, value: YNode) -> list[str]:
        """The files an `include` names, globs expanded and sorted per pattern."""
        patterns: list[YNode] = value.items if isinstance(value, YSeq) else [value]
        out: list[str] = []
        for pattern in patterns:
            if not isinstance(pattern, YScalar) or not isinstance(pattern.value, str) or not pattern.raw:
                raise ConfigError(
                    'invalid number of arguments in "include" directive', key.file or None, pattern.line
                )
            path = os.path.normpath(os.path.join(self.base, pattern.raw))
            if any(c in pattern.raw for c in _GLOB_CHARS):
                out.extend(sorted(glob.glob(path)))
            else:
                out.append(path)
        return out

    @contextmanager
    def _inside(self, real: str) -> Iterator[None]:
        self.stack.append(real)
        try:
            yield
        finally:
            self.stack.pop()

    def _read(self, path: str, key: YScalar) -> tuple[str, YNode | None]:
        """Read one included file (its tree is None when empty); ConfigError naming the include line."""
        real = os.path.realpath(path)
        if real in self.stack:
            raise ConfigError(f'include cycle: "{path}" includes itself', key.file or None, key.line)
        try:
            tree, text = load_yaml(path)
        except ConfigError as exc:
            if exc.file is None:  # open() failed: say which include asked for it, as nginx does
                raise ConfigError(exc.message, key.file or None, key.line) from exc
            raise
        if real not in self._seen:
            self._seen.add(real)
            self.files.append((path, text))
        return real, tree


def _include_item(item: YNode) -> tuple[YScalar, YNode] | None:
    """`- include: PATH` as a list item: a mapping whose only key is include."""
    if isinstance(item, YMap) and len(item.items) == 1 and item.duplicate is None:
        key, value = item.items[0]
        if key.raw == INCLUDE:
            return key, value
    return None
