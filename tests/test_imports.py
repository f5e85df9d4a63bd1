"""No import cycles: between modules, and between the installed subpackages (distill, benchmarks, cli).

Every import counts, the ones inside functions too: a lazy import hides a cycle from Python, not from the
next engineer who has to move a function. Read from the source with ``ast``, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: installed package -> its folder in the repository (setup.cfg's package_dir)
PACKAGES = {"imis_lite": "imis_lite", "imis_lite.cli": "cli", "imis_lite.distill": "distill",
            "imis_lite.benchmarks": "benchmarks", "imis_lite.weights": "weights"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [part for part in path.relative_to(ROOT / folder).with_suffix("").parts if part != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    targets: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return {target for target in targets if target in known and target != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def test_the_cycle_finder_finds_a_constructed_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_imports_it_must(graph):
    assert "imis_lite.predictor" in graph["imis_lite.volume"]  # relative import inside the runtime
    assert "imis_lite.metrics" in graph["imis_lite.benchmarks.accuracy"]  # absolute import across packages


def test_no_module_imports_itself_back(graph):
    assert cycles(graph) == []


def test_no_two_subpackages_import_each_other(graph):
    def package(name: str) -> str:
        return next(p for p in sorted(PACKAGES, key=len, reverse=True) if name == p or name.startswith(p + "."))

    between = {name: {package(t) for t in targets} - {package(name)} for name, targets in graph.items()}
    edges: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for name, targets in between.items():
        if package(name) != "imis_lite":  # the runtime package itself is what the others build on
            edges[package(name)] |= targets - {"imis_lite"}
    assert cycles(edges) == []
