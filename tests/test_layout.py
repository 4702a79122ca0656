"""The package tree: stage packages, imports that run downward (no cycles among sslkit modules)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sslkit"


def module_graph() -> dict[str, set[str]]:
    """sslkit module → the sslkit modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    mods: dict[str, Path] = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                if base in mods:
                    graph[m].add(base)
                graph[m] |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods}
    for m in graph:  # importing a package's own root (e.g. `sslkit.__version__`) is not a cycle
        graph[m] -= {m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_among_sslkit_modules() -> None:
    graph = module_graph()
    assert "sslkit.training.train" in graph and "sslkit.data.store" in graph  # the walk found the tree
    assert cycles(graph) == []


def test_cycle_check_finds_a_cycle() -> None:
    """The checker itself: a constructed two-module cycle is reported."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_stage_packages_say_what_they_take_and_give() -> None:
    stages = sorted(p.parent.name for p in PKG.glob("*/__init__.py"))
    assert stages == ["data", "evaluation", "model", "retrieval", "study", "training"]
    for s in stages:
        doc = ast.get_docstring(ast.parse((PKG / s / "__init__.py").read_text()))
        assert doc and "Takes" in doc and "gives" in doc, s


def test_flat_modules_are_gone() -> None:
    """Only the command line, the public API and what every stage shares stay at the top."""
    top = sorted(p.stem for p in PKG.glob("*.py"))
    assert top == ["__init__", "__main__", "api", "cli", "config", "console", "errors", "plots", "runtime"]


def test_import_sslkit_and_stages_without_torch() -> None:
    code = ("import sys, sslkit, sslkit.data, sslkit.model, sslkit.training, sslkit.retrieval, sslkit.evaluation, "
            "sslkit.study; print('torch' in sys.modules, 'hnswlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False"]


def test_import_sslkit_and_its_api_without_polars() -> None:
    """The package root and the public API's names (before a call) import no torch, hnswlib or polars."""
    code = ("import sys, sslkit, sslkit.api; sslkit.train, sslkit.load_config; "
            "print([m for m in ('torch', 'hnswlib', 'polars') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
