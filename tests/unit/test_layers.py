"""The import structure: no cycles among the project's modules, and no module-level import of a higher layer.

Layers, lowest first (DESIGN.md): runfolder <- theory <- sast <- checks <- reports <- apps.
A module may import its own layer and the ones below at load time. A higher layer may
be imported inside a function only where a command line needs it (a composition root's
entry point); ``reports`` never imports theory, sast or checks at all (it reads JSON).
Cycles are counted over every import, function-level ones included (a lazy import still
makes two modules depend on each other); imports under ``if TYPE_CHECKING:`` are not
imports at run time and are left out. Read with the standard library's ``ast`` from the
source files themselves, so the test cannot go stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("runfolder", "theory", "sast", "checks", "reports", "apps")
RANK = {name: i for i, name in enumerate(LAYERS)}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name refers to (the longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for every run-time import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    visit_stmt(sub, top)
                continue
            visit_stmt(child, top)

    def visit_stmt(child: ast.AST, top: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                target = _resolve(alias.name)
                if target:
                    found.append((target, child.lineno, top))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (child.level - 1)]
                prefix = ".".join(base + ([child.module] if child.module else []))
            else:
                prefix = child.module or ""
            for alias in child.names:
                target = _resolve(f"{prefix}.{alias.name}") or _resolve(prefix)
                if target:
                    found.append((target, child.lineno, top))
        nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        visit(child, top and not nested)

    visit(tree, True)
    return [(t, line, top) for t, line, top in found if t != module]


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_every_layer_has_modules():
    for layer in LAYERS:
        assert any(_layer(m) == layer for m in MODULES), layer


def test_no_module_level_import_of_a_higher_layer():
    bad = []
    for module in MODULES:
        for target, line, top in imports(module):
            if top and RANK[_layer(target)] > RANK[_layer(module)]:
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "module-level imports of a higher layer:\n" + "\n".join(bad)


def test_reports_read_json_only():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}" for m in MODULES if _layer(m) == "reports"
           for t, line, _ in imports(m) if _layer(t) not in ("runfolder", "reports")]
    assert not bad, "\n".join(bad)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in imports(m)} for m in MODULES}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("source, expected", [
    ("import sast.train\n", [("sast.train", 1, True)]),
    ("def f():\n    from checks import all\n", [("checks.all", 2, False)]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from checks.all import x\n", []),
])
def test_imports_are_read_as_written(tmp_path, monkeypatch, source, expected):
    fake = ROOT / "sast" / "_layers_probe.py"
    monkeypatch.setitem(MODULES, "sast._layers_probe", tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text(source)
    assert fake.name  # the fake module is never written into the tree
    assert imports("sast._layers_probe") == expected
