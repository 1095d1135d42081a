"""runfolder: the status rule, plain JSON, atomic writing, lenient JSON-lines reading, and a stdlib-only import."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runfolder
from runfolder import ASSUMPTION_FAILS, HOLDS, NOT_APPLICABLE, VIOLATED, Verdict, derive_status

REPO_ROOT = Path(runfolder.__file__).resolve().parents[1]


# --- derive_status ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bound, estimate", [(None, 1.0), (1.0, None), (None, None)])
def test_no_bound_or_no_estimate_is_not_applicable(bound, estimate) -> None:
    assert derive_status(bound, estimate, {"A1": False}) == Verdict(None, None, NOT_APPLICABLE)


def test_holds() -> None:
    assert derive_status(2.0, 1.0, {"A1": True, "A4": True}) == Verdict(0.5, True, HOLDS)
    assert derive_status(2.0, 2.0) == Verdict(1.0, True, HOLDS)  # equality holds; no assumptions is all holding


def test_violated_whatever_the_assumptions() -> None:
    assert derive_status(1.0, 2.0, {"A1": True}) == Verdict(2.0, False, VIOLATED)
    assert derive_status(1.0, 2.0, {"A4": False}) == Verdict(2.0, False, VIOLATED)


def test_assumption_fails_when_the_bound_holds_without_it() -> None:
    assert derive_status(2.0, 1.0, {"A1": True, "A4": False}) == Verdict(0.5, True, ASSUMPTION_FAILS)


def test_rtol_is_the_estimators_accuracy() -> None:
    # 1.05 > 1.0: violated exactly, within a 10% stated accuracy it holds; just beyond it, violated again.
    assert derive_status(1.0, 1.05).status == VIOLATED
    assert derive_status(1.0, 1.05, rtol=0.1) == Verdict(1.05, True, HOLDS)
    assert derive_status(1.0, 1.11, rtol=0.1).status == VIOLATED


def test_zero_bound_has_no_ratio() -> None:
    assert derive_status(0.0, 0.0) == Verdict(None, True, HOLDS)
    assert derive_status(0.0, 1e-12) == Verdict(None, False, VIOLATED)


def test_negative_rtol_is_refused() -> None:
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        derive_status(1.0, 0.5, rtol=-0.01)


def test_holds_is_a_python_bool_for_scalars_with_their_own_comparison() -> None:
    class Scalar(float):  # stands in for a numpy scalar, whose comparison returns numpy.bool_
        def __le__(self, other):
            return _Truthy(float(self) <= other)

    class _Truthy:
        def __init__(self, value: bool) -> None:
            self.value = value

        def __bool__(self) -> bool:
            return self.value

    verdict = derive_status(1.0, Scalar(0.5))
    assert verdict.holds is True and verdict.status == HOLDS


@pytest.mark.parametrize("holds, assumptions, status", [
    (True, {}, HOLDS), (True, {"A4": False}, ASSUMPTION_FAILS), (False, {"A4": False}, VIOLATED),
    (False, None, VIOLATED),
])
def test_status_from_holds(holds, assumptions, status) -> None:
    assert runfolder.status_from_holds(holds, assumptions) == status


# --- plain and dumps --------------------------------------------------------------------------------

def test_plain_non_finite_floats_become_none() -> None:
    assert runfolder.plain([math.nan, math.inf, -math.inf, 1.5]) == [None, None, None, 1.5]
    assert runfolder.dumps({"x": math.nan}) == '{"x": null}'


def test_plain_tuples_and_nested_mappings() -> None:
    assert runfolder.plain((1, (2, 3))) == [1, [2, 3]]
    assert runfolder.plain({1: {"a": (True, None, "s")}, "b": []}) == {"1": {"a": [True, None, "s"]}, "b": []}


def test_plain_uses_tolist() -> None:
    class Array:
        def tolist(self):
            return [[1.0, float("nan")], [2, 3]]

    assert runfolder.plain({"a": Array()}) == {"a": [[1.0, None], [2, 3]]}


def test_plain_refuses_an_arbitrary_object() -> None:
    with pytest.raises(TypeError, match="cannot write object"):
        runfolder.plain({"x": object()})


# --- atomic writing ---------------------------------------------------------------------------------

def test_atomic_write_text_leaves_the_old_file_and_no_temporary_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checks.json"
    path.write_text("old", encoding="utf-8")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        runfolder.atomic_write_text(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["checks.json"]


def test_atomic_write_text_writes_with_the_umask_mode(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        runfolder.write_json(tmp_path / "c.json", {"a": (1, 2)})
    finally:
        os.umask(previous)
    assert (tmp_path / "c.json").read_text(encoding="utf-8") == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
    assert (tmp_path / "c.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


# --- reading JSON lines -----------------------------------------------------------------------------

def test_read_jsonl_lines_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"kind": "train", "step": 1}\n\n{"kind": "eval", "step": 2}\n{"kind": "tr')
    lines = runfolder.read_jsonl_lines(path)
    assert [r["step"] for r in lines.records] == [1, 2]
    assert lines.bad_lines == [4] and lines.truncated_last


def test_read_jsonl_lines_bad_lines_in_the_middle(tmp_path: Path) -> None:
    """A non-object line and a line of invalid UTF-8 are bad lines, but not a truncation."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n[1, 2]\n\xff\xfe\n"text"\n{"step": 5}\n')
    lines = runfolder.read_jsonl_lines(path)
    assert lines.records == [{"step": 1}, {"step": 5}]
    assert lines.bad_lines == [2, 3, 4] and not lines.truncated_last
    assert list(runfolder.read_jsonl(path)) == lines.records


def test_read_jsonl_lines_invalid_utf8_last_is_truncation(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n\xff\xfe')
    lines = runfolder.read_jsonl_lines(path)
    assert lines.records == [{"step": 1}] and lines.bad_lines == [2] and lines.truncated_last


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert runfolder.read_jsonl_lines(tmp_path / "none.jsonl") == runfolder.JsonLines([], [], False)
    assert list(runfolder.read_jsonl(tmp_path / "none.jsonl")) == []


def test_read_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        runfolder.read_json(path)


# --- imports ----------------------------------------------------------------------------------------

def test_import_loads_neither_torch_nor_numpy() -> None:
    code = ("import sys, runfolder; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')); "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
