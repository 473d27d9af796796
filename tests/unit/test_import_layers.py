"""The import graph of pyginx/: no cycles, and the layers the design names.

Only imports that run when a module is imported count (top level, not under `if TYPE_CHECKING:`,
not inside functions): those are the ones that make cycles and drag the runtime into the config.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "pyginx"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module, name: str, is_pkg: bool) -> set[str]:
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                subs = {f"{mod}.{alias.name}" for alias in node.names}
                # `from pkg import submodule` imports the submodule; the package's own __init__ only
                # counts when a name is taken from it
                out.update(subs)
                if not all(sub in _ALL_NAMES for sub in subs):
                    out.add(mod)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []) or []:
                        if isinstance(child, ast.ExceptHandler):
                            visit(child.body)
                        elif isinstance(child, ast.stmt):
                            visit([child])

    visit(tree.body)
    return out


_ALL_NAMES = {_module_name(p) for p in PKG.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    files = {p: _module_name(p) for p in PKG.rglob("*.py")}
    names = set(files.values())
    graph: dict[str, set[str]] = {}
    for path, name in files.items():
        tree = ast.parse(path.read_text())
        found = _top_level_imports(tree, name, path.name == "__init__.py")
        # importing a.b.c runs the __init__ of a.b (and a) first
        for mod in list(found):
            parts = mod.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts)))
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        graph[name] = {m for m in found if m in names and m not in own_packages}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        v = todo.pop()
        for w in graph.get(v, ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_no_import_cycles() -> None:
    assert _cycles(import_graph()) == []


def test_the_graph_sees_imports() -> None:
    """The walker must find real edges, or the tests above would pass on nothing."""
    graph = import_graph()
    assert "pyginx.config.model" in graph["pyginx.config.loader"]
    assert "pyginx.modules" in graph["pyginx.config.merge"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_configuration_and_modules_do_not_import_the_runtime() -> None:
    """config/ and the module declarations load without the event loop, connections or handlers:
    `-t` and the master stay light, and the runtime may import them freely."""
    graph = import_graph()
    runtime = ("pyginx.handlers", "pyginx.upstream", "pyginx.http.connection", "pyginx.http.server",
               "pyginx.http.request", "pyginx.http.phases", "pyginx.process")
    for start in ("pyginx.config.loader", "pyginx.modules"):
        bad = sorted(m for m in _reachable(graph, start) if m.startswith(runtime))
        assert bad == [], f"{start} imports the runtime: {bad}"


def test_the_core_does_not_import_handlers_at_its_top() -> None:
    """http/ reaches content handlers through the module registry's plans, not by import."""
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("pyginx.http."):
            assert not any(d.startswith("pyginx.handlers") for d in deps), (name, deps)


def _every_import(tree: ast.Module) -> set[str]:
    """Absolute imports anywhere in a module, function bodies included."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_requests_know_nothing_of_processes() -> None:
    """The request side (http/, http2/, handlers/, modules/, upstream/, tls/) never imports the
    process model (pyginx/process/), not even lazily: a worker runs it, it does not run the worker."""
    request_side = ("http", "http2", "handlers", "modules", "upstream", "tls")
    checked = 0
    for path in PKG.rglob("*.py"):
        if path.relative_to(PKG).parts[0] not in request_side:
            continue
        checked += 1
        bad = sorted(m for m in _every_import(ast.parse(path.read_text())) if m.startswith("pyginx.process"))
        assert bad == [], f"{_module_name(path)} imports {bad}"
    assert checked > 30
