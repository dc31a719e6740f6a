"""The code's one direction of dependency, read from the source as a maintainer would.

Every import counts, at the top of a module or inside a function: a lazy import is still
an arrow. `reproduce` is a library that never imports `ledger`; inside `ledger` the
layers go cli -> orchestration (`ledger.runs`, `ledger.commands`, `ledger.queue`) and analysis -> store -> core, and no
module reaches up. No two modules depend on each other, however long the loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("ledger", "reproduce")
# Layer of each part, lowest first; a module may import its own layer or lower ones.
LAYERS = {
    "reproduce": 0,
    "ledger": 1,  # the package itself holds only the version
    "ledger.core": 1,
    "ledger.store": 2,
    "ledger.analysis": 3,
    "ledger.runs": 3,
    "ledger.commands": 3,  # orchestration too: the command recipe beside the built-in one
    "ledger.queue": 3,  # and the queue, which runs both
    "ledger.cli": 4,
    "ledger.__main__": 5,
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts and "versions" in path.parts:
                continue  # Alembic scripts: loaded by Alembic; data migrations may use ledger.core parsers
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (`ledger.store.db.open_ledger` -> `ledger.store.db`)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from ledger.cli import read` imports the module ledger.cli.read.
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                owner = _owner(target, known)
                if owner is not None and owner != name:
                    graph[name].add(owner)
    # `from ledger.cli import read` names both ledger.cli and ledger.cli.read; an __init__
    # a module belongs to is not a dependency of it.
    for name, targets in graph.items():
        targets.difference_update([t for t in targets if name.startswith(t + ".")])
    return graph


def layer(name: str) -> int:
    best = max((prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")), key=len,
               default=None)
    if best is None:
        raise AssertionError(f"{name} belongs to no layer: add its package to LAYERS in this test")
    return LAYERS[best]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_graph_sees_the_imports_it_must():
    # The checks below mean something only if imports, lazy ones included, are found.
    graph = import_graph()
    assert "ledger.store.db" in graph["ledger.runs"]
    assert "ledger.store.readers" in graph["ledger.cli.fast"]  # imported inside its functions
    assert "ledger.cli.read" in graph["ledger.cli"]  # `from ledger.cli import read`
    assert "reproduce.job" in graph["reproduce.resolve"]
    assert len(graph) > 40


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycles_are_found_however_long():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_reproduce_never_imports_ledger():
    graph = import_graph()
    up = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("reproduce")
                for t in targets if t.startswith("ledger"))
    assert up == []


def test_no_module_imports_a_layer_above_its_own():
    graph = import_graph()
    against = sorted(f"{m} (layer {layer(m)}) -> {t} (layer {layer(t)})" for m, targets in graph.items()
                     for t in targets if layer(t) > layer(m))
    assert against == []


def test_the_cli_holds_no_training_orchestration():
    # What runs a job (the trainer, the data checks, the row's status) is reached through
    # ledger.runs, never imported by a command module itself.
    graph = import_graph()
    reached = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("ledger.cli")
                     for t in targets if t in {"reproduce.train", "reproduce.data", "reproduce.models",
                                               "reproduce.tracking", "reproduce.environment", "reproduce.runfiles",
                                               "reproduce.demo"})
    assert reached == []
