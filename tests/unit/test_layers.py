"""The import structure: no cycles among the project's modules, and no import of a higher layer but an entry point's.

Layers, lowest first (DESIGN.md): runfolder <- theory <- sast <- checks <- reports <- apps.
A module may import its own layer and the ones below at load time, and never a higher layer
at load time. A higher layer is not imported lazily either (inside a function), with one
named exception: the entry point of a ``python -m`` command that is a composition root
(``ENTRY_POINTS``: ``python -m sast.train`` runs ``sast/train/__main__.py``, which calls
:mod:`apps.train`). Each such entry point imports its own composition root and nothing else
above its layer, inside its ``main``, and no module imports an entry point, so importing any
other module never loads a higher layer. ``reports`` never imports theory, sast or checks at
all (it reads JSON). Cycles are counted over every import, function-level ones included (a
lazy import still makes two modules depend on each other); imports under ``if TYPE_CHECKING:``
are not imports at run time and are left out. Read with the standard library's ``ast`` from
the source files themselves, so the test cannot go stale.
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

# The entry points of the ``python -m`` commands that are composition roots: each may import its own composition
# root (and nothing else above its layer) inside a function. Why they must exist: ``python -m sast.X`` makes Python
# import the package ``sast`` and run the module ``sast.X`` (or ``sast/X/__main__.py``), so the only code that can
# start the command lives in sast/ and has to name its program in apps/. A console script in pyproject.toml would be
# another command than the one users type, and runpy or importlib with the name as a string would hide the very same
# import from this test. Nothing imports an entry point (test_no_module_imports_an_entry_point), so importing sast,
# or any module of it but these three, never loads apps.
ENTRY_POINTS: dict[str, tuple[str, str]] = {
    "sast.demo": ("apps.demo", "python -m sast.demo (make demo): the demo's entry point"),
    "sast.experiments": ("apps.experiments", "python -m sast.experiments: the sweeps' entry point"),
    "sast.train.__main__": ("apps.train", "python -m sast.train: the training command line's entry point"),
}


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


def upward_imports(table: dict[str, list[tuple[str, int, bool]]],
                   entry_points: dict[str, tuple[str, str]]) -> list[str]:
    """Every import of a higher layer in ``table`` (module -> its imports) that is not an entry point's own.

    An entry point's import of its composition root is allowed inside a function only (the
    module-level rule holds for it too); any other upward import, lazy or not, is reported.
    """
    bad = []
    for module, found in table.items():
        for target, line, top in found:
            if RANK[_layer(target)] <= RANK[_layer(module)]:
                continue
            allowed = entry_points.get(module, (None,))[0]
            if top or target != allowed:
                where = "at module level" if top else "lazily"
                bad.append(f"{module}:{line} imports {target} {where}")
    return bad


def imports_of_entry_points(table: dict[str, list[tuple[str, int, bool]]],
                            entry_points: dict[str, tuple[str, str]]) -> list[str]:
    """Every import of an entry point in ``table``: one would load its composition root with the importer."""
    return [f"{module}:{line} imports the entry point {target}" for module, found in table.items()
            for target, line, _ in found if target in entry_points]


def _table() -> dict[str, list[tuple[str, int, bool]]]:
    return {m: imports(m) for m in MODULES}


def test_no_lazy_import_of_a_higher_layer_but_an_entry_points():
    bad = upward_imports(_table(), ENTRY_POINTS)
    assert not bad, ("imports of a higher layer (a command line that needs one belongs in apps/, with a thin "
                     "entry point named in ENTRY_POINTS):\n" + "\n".join(bad))


def test_no_module_imports_an_entry_point():
    bad = imports_of_entry_points(_table(), ENTRY_POINTS)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_every_entry_point_is_one_and_calls_its_composition_root(entry_point):
    """The allow-list holds no stale name: each module exists, is a layer's, and imports its composition root."""
    target, reason = ENTRY_POINTS[entry_point]
    assert entry_point in MODULES and target in MODULES and reason
    assert _layer(target) == "apps" and _layer(entry_point) != "apps"
    assert (target, False) in {(t, top) for t, _, top in imports(entry_point)}


def test_the_rule_finds_a_planted_lazy_upward_import():
    entry = {"sast.tool": ("apps.tool", "python -m sast.tool")}
    table = {
        "sast.loop": [("sast.model", 3, True), ("runfolder", 4, True)],  # down and sideways: fine
        "sast.tool": [("runfolder", 1, True), ("apps.tool", 9, False)],  # the entry point's own: fine
        "sast.cli": [("apps.wiring", 12, False)],  # a lazy upward import: reported
        "theory.bounds": [("sast.model", 5, False)],  # in any layer below apps
        "sast.other": [("sast.tool", 2, False)],  # importing an entry point
    }
    assert upward_imports(table, entry) == ["sast.cli:12 imports apps.wiring lazily",
                                            "theory.bounds:5 imports sast.model lazily"]
    assert imports_of_entry_points(table, entry) == ["sast.other:2 imports the entry point sast.tool"]
    # an entry point may import its own composition root only, and only inside a function
    assert upward_imports({"sast.tool": [("apps.demo", 9, False)]}, entry) == ["sast.tool:9 imports apps.demo lazily"]
    assert upward_imports({"sast.tool": [("apps.tool", 1, True)]}, entry) == [
        "sast.tool:1 imports apps.tool at module level"]
    assert upward_imports({"sast.tool": [("checks.all", 9, False)]}, entry) == ["sast.tool:9 imports checks.all lazily"]


def test_the_rule_reads_a_planted_lazy_upward_import_from_a_sast_file(tmp_path, monkeypatch):
    """Through the real reader: a function-level ``from apps... import`` in a sast module fails the rule."""
    probe = tmp_path / "probe.py"
    probe.write_text("from sast.callbacks import Callback\n\n\ndef main():\n"
                     "    from apps.wiring import monitor_callbacks\n    return monitor_callbacks('off')\n")
    monkeypatch.setitem(MODULES, "sast._layers_probe", probe)
    bad = upward_imports(_table(), ENTRY_POINTS)
    assert bad == ["sast._layers_probe:5 imports apps.wiring lazily"]
    # named as an entry point of apps.wiring it would pass: the exception is the allow-list, nothing else
    assert upward_imports(_table(), {**ENTRY_POINTS, "sast._layers_probe": ("apps.wiring", "a probe")}) == []


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
