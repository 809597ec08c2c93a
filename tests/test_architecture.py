"""The architecture holds: data flows feature_store → models → training → app, the command line
sits on top of both, and no module imports itself back through others.

Every import statement counts — at module level, inside functions (lazy imports) and under
``if TYPE_CHECKING`` — read with :mod:`ast` from the source, without importing anything.
"""

from __future__ import annotations

import ast
import functools
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The layers, lowest first: a module may import its own layer and the ones below.
LAYERS = ("feature_store", "models", "training", "app")
#: The command line: on top of the trainer and the service, imported by nothing.
CLI = "training.cli"


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.source_path}:{self.line})"

    @property
    def source_path(self) -> str:
        return _modules()[self.source].relative_to(REPO).as_posix()


@functools.cache
def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the four packages (a package is its
    ``__init__``)."""
    found: dict[str, Path] = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str) -> str | None:
    """The module of the four packages that importing ``name`` runs last (``a.b.c`` → the
    deepest of ``a.b.c``, ``a.b``, ``a`` that is one of them), or None when outside them."""
    modules = _modules()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@functools.cache
def _imports() -> tuple[Import, ...]:
    modules = _modules()
    found: set[Import] = set()
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)])
                    origin = f"{base}.{node.module}" if node.module else base
                else:
                    origin = node.module or ""
                # ``from package import module`` imports that module
                names = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                    for alias in node.names
                ]
            for name in names:
                target = _resolve(name)
                if target is not None and target != module:
                    found.add(Import(module, target, node.lineno))
    return tuple(sorted(found, key=lambda i: (i.source, i.target, i.line)))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in _modules()}
    for imp in _imports():
        graph[imp.source].add(imp.target)
    return graph


def _layer(module: str) -> int:
    if module == CLI:
        return len(LAYERS)
    return LAYERS.index(module.split(".")[0])


def _breaks_the_layers(imp: Import) -> bool:
    if imp.target == CLI:
        return True
    source, target = imp.source.split(".")[0], imp.target.split(".")[0]
    if imp.source != CLI and source == "app" and target == "training":
        return True
    return _layer(imp.target) > _layer(imp.source)


def _groups(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The groups of two or more modules that import each other (strongly connected, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(frozenset(group))
    return groups


def _cycle_in(graph: dict[str, set[str]], group: frozenset[str]) -> list[str]:
    """A shortest cycle (``[a, b, ..., a]``) through the group's first module, inside the group."""
    start = min(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & group):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle found in {sorted(group)}")


def test_the_checker_reads_every_kind_of_import() -> None:
    pairs = {(i.source, i.target) for i in _imports()}
    assert ("app.pipeline", "models.bundle") in pairs  # module level
    assert ("training.cli", "training.train") in pairs  # inside a function
    assert ("models.bundle", "models.bundle.fusion") in pairs  # relative
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}}
    assert _groups(graph) == [frozenset("abc")]
    assert _cycle_in(graph, frozenset("abc")) == ["a", "b", "a"]
    assert _groups({"a": {"b"}, "b": set()}) == []


def test_imports_follow_the_layers() -> None:
    """feature_store < models < training < app: nothing imports a layer above its own."""
    wrong = [str(i) for i in _imports() if _breaks_the_layers(i)]
    assert not wrong, "imports against the flow feature_store → models → training → app:\n" + (
        "\n".join(wrong)
    )


def test_the_service_never_imports_the_trainer() -> None:
    wrong = [str(i) for i in _imports() if i.source.startswith("app") and _layer(i.target) == 2]
    assert not wrong, "app/ imports training/:\n" + "\n".join(wrong)


def test_nothing_imports_the_command_line() -> None:
    wrong = [str(i) for i in _imports() if i.target == CLI]
    assert not wrong, f"{CLI} is the top: nothing below it imports it:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = [" -> ".join(_cycle_in(graph, group)) for group in _groups(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
