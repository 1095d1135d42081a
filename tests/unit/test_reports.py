"""reports: run-folder parsing, escaping, figures, the verdict table, and the command line.

Run folders are fake (reports.testing writes the contract of DESIGN.md without
training); the reports that several tests read are built once per module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reports import _format as fmt
from reports import build, figures
from reports.runs import NOT_MEASURED, VERDICT_IDS, NotARunFolder, load_run, parse_check, read_jsonl
from reports.testing import TRUNCATED_LINE, write_fake_run

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
HOSTILE_FOLDER = "<b onmouseover=alert(2)>run"
"""A folder name with markup (no '/', so it is a legal file name)."""
_XMLNS = re.compile(r'xmlns(:\w+)?="[^"]*"')


def _statements(html: str) -> list[str]:
    """The statement IDs of the verdict-table rows, in page order."""
    return re.findall(r'<tr data-statement="([^"]+)"', html)


def _external_references(text: str) -> list[str]:
    """Every 'http' in ``text`` apart from XML namespace declarations (which fetch nothing)."""
    return re.findall(r".{0,30}https?:.{0,30}", _XMLNS.sub("", text))


# --- shared reports ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def complete_run(tmp_path_factory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("runs") / "complete")


@pytest.fixture(scope="module")
def minimal_run(tmp_path_factory) -> Path:
    """A run folder with a config and two eval lines: cheap to render, for the command-line tests."""
    path = tmp_path_factory.mktemp("runs") / "minimal"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"train": {"method": "sf", "rho": 0.0}}))
    (path / "metrics.jsonl").write_text('{"kind": "eval", "epoch": 1, "test_smooth_acc": 0.5}\n'
                                        '{"kind": "eval", "epoch": 2, "test_smooth_acc": 0.6}\n')
    return path


@pytest.fixture(scope="module")
def single_html(complete_run: Path) -> str:
    return build.render_report(build.load_runs([complete_run]))


@pytest.fixture(scope="module")
def sweep_html(tmp_path_factory) -> str:
    """Two runs that differ in rho, one with T4 violated."""
    root = tmp_path_factory.mktemp("sweep")
    runs = [write_fake_run(root / "rho0.1", rho=0.1),
            write_fake_run(root / "rho0.5", rho=0.5, violated={"T4"})]
    return build.render_report(build.load_runs(runs))


@pytest.fixture(scope="module")
def hostile_html(tmp_path_factory) -> str:
    """Two runs (so the comparison and the rho-sweep legend carry the strings) full of markup."""
    root = tmp_path_factory.mktemp("hostile")
    overrides = {"data": HOSTILE, "method": HOSTILE, "note": HOSTILE, "layers": [HOSTILE]}
    env = {"argv": ["-m", "sast.train", "--data", HOSTILE], "platform": HOSTILE}
    a = write_fake_run(root / HOSTILE_FOLDER, rho=0.1, train_overrides=overrides, environment_overrides=env)
    b = write_fake_run(root / "math $\\frac$ run", rho=0.4,
                       train_overrides={"method": "$\\frac{$"}, environment_overrides=env)
    checks = json.loads((a / "checks.json").read_text())
    checks[0]["name"] = HOSTILE
    checks[0]["assumptions"][HOSTILE] = False
    (a / "checks.json").write_text(json.dumps(checks))
    with (a / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"kind": "error", "step": 5, "error": HOSTILE}) + "\n")
    return build.render_report(build.load_runs([a, b]))


# --- parsing ----------------------------------------------------------------------------------------

def test_complete_run_parses_without_problems(complete_run: Path) -> None:
    run = load_run(complete_run)
    assert run.problems == []
    assert run.name == "complete"
    assert {c.id for c in run.checks} == set(VERDICT_IDS)
    assert run.train and run.evals and run.probes and run.live_checks
    assert run.rho == 0.3 and run.method == "sast" and run.base_optimizer == "sgd"
    assert run.final_accuracy()[3].startswith("metrics.jsonl")


def test_truncated_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    whole = load_run(write_fake_run(tmp_path / "whole"))
    cut = load_run(write_fake_run(tmp_path / "cut", truncate_last_line=True))
    assert len(cut.train) == len(whole.train) and len(cut.live_checks) == len(whole.live_checks)
    assert whole.problems == []
    assert any("truncated" in p and "metrics.jsonl" in p for p in cut.problems)


def test_malformed_middle_line_is_not_called_truncation(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1}\n{oops\n[1, 2]\n{"kind": "eval", "step": 2}\n')
    lines = read_jsonl(path)
    assert [r["step"] for r in lines.records] == [1, 2]
    assert lines.bad_lines == [2, 3] and not lines.truncated_last
    path.write_text('{"kind": "train", "step": 1}\n' + TRUNCATED_LINE)
    assert read_jsonl(path).truncated_last


def test_partial_run_gives_a_report_that_says_what_is_missing(tmp_path: Path) -> None:
    """A killed run: no checks.json, a truncated last line; the verdicts fall back to the live monitor."""
    run = load_run(write_fake_run(tmp_path / "r", with_checks=False, truncate_last_line=True))
    assert run.checks is None
    assert any("checks.json is missing" in p for p in run.problems)
    assert run.final_checks()["T4"].source == "live monitor"
    html = build.render_report([run])
    assert "checks.json is missing" in html and "truncated" in html
    assert "Incomplete run folder" in html
    assert _statements(html) == list(VERDICT_IDS)
    assert "live monitor, step" in html


def test_fields_absent_read_as_not_measured(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"kind": "eval", "epoch": 1}\n{"kind": "train"}\n')
    (run_dir / "checks.json").write_text(json.dumps([{"id": "T4"}, {"id": "T7", "details": {}},
                                                     {"id": "T6", "details": {"steps": "x"}}, {"no": "id"}]))
    run = load_run(run_dir)
    assert any("config.json is missing" in p for p in run.problems)
    assert any("without a statement ID" in p for p in run.problems)
    assert run.final_checks()["T4"].status == "not measured"
    html = build.render_report([run])
    assert _statements(html) == list(VERDICT_IDS)
    assert "not measured" in html
    assert "T7 per-sample norms not measured" in html
    assert "the command was not recorded" in html


def test_status_is_derived_when_absent(tmp_path: Path) -> None:
    run_dir = write_fake_run(tmp_path / "r")
    checks = json.loads((run_dir / "checks.json").read_text())
    for c in checks:
        del c["status"]
    checks[3]["holds"] = False  # T4
    (run_dir / "checks.json").write_text(json.dumps(checks))
    final = load_run(run_dir).final_checks()
    assert final["T4"].status == "violated" and final["T4"].status_derived
    assert final["T3"].status == "holds"
    assert final["E1"].status == "not applicable"


@pytest.mark.parametrize("record, status", [
    ({"bound": 1.0, "estimate": 2.0}, "violated"),
    ({"bound": 1.0, "estimate": 0.5, "assumptions": {"A4": False}}, "assumption fails"),
    ({"bound": 1.0, "estimate": 0.5, "assumptions": {"A4": True}}, "holds"),
    # A recorded holds wins: the check judged it with its estimator's rtol, which the record does not carry.
    ({"bound": 1.0, "estimate": 1.01, "holds": True}, "holds"),
    ({"holds": False}, "violated"),
    ({"estimate": 0.1}, "not applicable"),
    ({"bound": 1.0}, NOT_MEASURED),
    ({}, NOT_MEASURED),
])
def test_status_derived_from_an_old_record(record: dict, status: str) -> None:
    check = parse_check({"id": "T4", **record}, source="checks.json")
    assert check is not None and check.status_derived
    assert check.status == status


def test_fake_train_config_has_every_trainconfig_field(tmp_path: Path) -> None:
    """The fake config.json's "train" section is the trainer's: every TrainConfig field, nothing missing."""
    from sast.train import TrainConfig  # the test may import sast; reports itself never does

    config = json.loads((write_fake_run(tmp_path / "r") / "config.json").read_text())
    assert set(config["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "no-such-folder", lambda p: p / "file.txt"])
def test_not_a_run_folder_is_one_line_and_exit_2(tmp_path: Path, capsys, make) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "ckpt.pt").write_bytes(b"")
    out = tmp_path / "out.html"
    assert build.main([str(make(tmp_path)), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "run folder" in err
    assert not out.exists()
    with pytest.raises(NotARunFolder):
        load_run(tmp_path)


# --- the command line -------------------------------------------------------------------------------

def test_main_writes_atomically_and_prints_the_path(minimal_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub" / "r.html"
    assert build.main([str(minimal_run), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]  # no temporary file left


def test_report_mode_under_the_usual_umask(minimal_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    previous = os.umask(0o022)
    try:
        assert build.main([str(minimal_run), "-o", str(out)]) == 0
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == build.REPORT_MODE


def test_build_reexports_its_public_names() -> None:
    """The split into views and provenance keeps every name importers found in reports.build."""
    missing = [name for name in build.__all__ if not hasattr(build, name)]
    assert missing == []
    assert {"verdict_rows", "t6_section", "comparison", "command_line", "write_atomic", "run_view"} <= set(build.__all__)


def test_main_default_output_is_report_html_here(minimal_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert build.main([str(minimal_run)]) == 0
    assert (tmp_path / "report.html").is_file()


def test_help_exits_0(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build.main(["--help"])
    assert exc.value.code == 0
    assert "RUN_DIR" in capsys.readouterr().out


def test_reports_imports_no_torch_sast_or_checks() -> None:
    code = ("import sys, runfolder, reports, reports.build, reports.runs, reports.views, reports.provenance, "
            "reports.figures, reports.testing; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sast', 'checks')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    root = Path(build.__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# --- the page ---------------------------------------------------------------------------------------

def test_hostile_strings_render_as_text(hostile_html: str) -> None:
    assert "<script" not in hostile_html
    assert "<script>alert(1)" not in hostile_html
    assert ESCAPED in hostile_html
    assert "<b onmouseover" not in hostile_html and "&lt;b onmouseover=alert(2)&gt;run" in hostile_html
    # The hostile method is a legend label of the rho-sweep figure: escaped inside the SVG too.
    sweep_svg = re.search(r'<svg[^>]*aria-label="Rho sweep.*?</svg>', hostile_html, re.S).group(0)
    assert ESCAPED.replace("&lt;/script&gt;", "") in sweep_svg
    assert "$\\frac" in hostile_html  # drawn literally, not parsed as mathtext


def test_report_is_self_contained(single_html: str, sweep_html: str) -> None:
    for html in (single_html, sweep_html):
        assert "<script" not in html and "<link" not in html and "@import" not in html
        assert "<iframe" not in html and "<img" not in html
        assert _external_references(html) == []


def test_verdict_table_has_a_row_per_statement(single_html: str, sweep_html: str) -> None:
    assert _statements(single_html) == list(VERDICT_IDS)
    assert _statements(sweep_html) == list(VERDICT_IDS) * 2
    for word in ("holds", "not applicable"):
        assert f"{word}</span>" in single_html
    assert "✓" in single_html  # the status also reads without colour


def test_violated_bound_puts_the_banner_first(single_html: str, sweep_html: str) -> None:
    assert 'id="violations"' not in single_html
    banner = sweep_html.index('id="violations"')
    assert banner < sweep_html.index("<nav") < sweep_html.index('class="verdict"')
    assert "T4 (smoothness)" in sweep_html[banner:sweep_html.index("</section>", banner)]
    assert re.search(r'<tr data-statement="T4" class="row-violated">', sweep_html)


def test_comparison_only_with_several_runs(single_html: str, sweep_html: str) -> None:
    assert 'id="comparison"' not in single_html
    assert 'id="comparison"' in sweep_html
    assert sweep_html.index('id="comparison"') < sweep_html.index('id="reproduce"')


def test_rho_sweep_figure_only_when_rho_differs(tmp_path: Path, sweep_html: str) -> None:
    assert 'aria-label="Rho sweep' in sweep_html
    same = build.load_runs([write_fake_run(tmp_path / "a", seed=0), write_fake_run(tmp_path / "b", seed=1)])
    view = build.comparison(same)
    assert view is not None and view.sweep is None
    assert [name for _, name in view.headers] == ["a", "b"]
    assert build.comparison(same[:1]) is None


def test_t6_does_not_apply_without_plain_sgd(tmp_path: Path) -> None:
    for optimizer in ("adam", "momentum"):
        run = load_run(write_fake_run(tmp_path / optimizer, optimizer=optimizer))
        section = build.t6_section(run, "k")
        assert section.empty.startswith(f"T6 does not apply (base step: {optimizer})") and not section.figures
        t6_row = next(r for r in build.verdict_rows(run) if r.id == "T6")
        assert f"T6 does not apply (base step: {optimizer})" in t6_row.notes
    sgd = build.t6_section(load_run(write_fake_run(tmp_path / "sgd")), "k")
    assert len(sgd.figures) == 1 and not sgd.empty


def test_sections_in_order(single_html: str) -> None:
    markers = ['class="verdict"', 'id="run0-timelines"', 'aria-label="T6', 'aria-label="T7',
               'aria-label="Training loss', 'id="reproduce"']
    positions = [single_html.index(m) for m in markers]
    assert positions == sorted(positions)
    assert "python -m sast.train --method sast --rho 0.3 --seed 0" in single_html


def test_figure_ids_are_unique_on_the_page(sweep_html: str) -> None:
    ids = re.findall(r'\bid="([^"]+)"', sweep_html)
    assert len(ids) == len(set(ids))


# --- figures ----------------------------------------------------------------------------------------

_FIGURE_CALLS = {
    "timeline": (figures.check_timeline_svg,
                 ([10, 20, 30], [1.0, 0.0, 3.0], [5.0, 5.0, 2.0], [False, True, False], [False, False, True]),
                 ([], [], [], [], []), {"title": "T4: smoothness"}),
    "t6": (figures.convergence_t6_svg, ([1, 2, 3], [3.0, 2.0, 1.0], [9.0, 8.0, 7.0], [4.0, None, 3.0]),
           ([], [], [], []), {}),
    "t7": (figures.mechanism_t7_svg, ([0.1, 0.2, 0.3], [0.5, 0.9, 5.0], [True, False, True], 3.0, [0.2, 0.0, 0.1]),
           ([], [], [], None, []), {}),
    "training": (figures.training_curves_svg, ([10, 20], [2.0, 1.0], [2.1, None], [1, 2], [0.5, 0.8], [0.4, None]),
                 ([], [], [], [], [], []), {}),
    "sweep": (figures.rho_sweep_svg, ([figures.SweepPoint("sast", 0.1, 0.9, 0.8, 0.1),
                                       figures.SweepPoint("sast", 0.3, 0.92, 0.9, 0.02),
                                       figures.SweepPoint("hfsb", 0.0, 0.85, 0.8, 0.05)],),
              ([],), {}),
}


@pytest.mark.parametrize("name", sorted(_FIGURE_CALLS))
@pytest.mark.parametrize("empty", [False, True], ids=["data", "empty"])
def test_figure_is_inline_svg_without_external_references(name: str, empty: bool) -> None:
    fn, data, no_data, kwargs = _FIGURE_CALLS[name]
    svg = fn(*(no_data if empty else data), key=f"k-{name}", **kwargs)
    assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "DOCTYPE" not in svg and "<metadata" not in svg
    assert "<style" not in svg  # an inline SVG style sheet would style the whole page
    assert 'href="http' not in svg and _external_references(svg) == []
    assert all(i.startswith(f"k-{name}-") for i in re.findall(r'\bid="([^"]+)"', svg))
    if empty:
        assert figures.NO_DATA in svg
    assert svg == fn(*(no_data if empty else data), key=f"k-{name}", **kwargs)  # deterministic


@pytest.mark.parametrize("argv, command", [
    (["-m", "sast.train", "--rho", "0.3"], "python -m sast.train --rho 0.3"),
    (["/home/u/sast/sast/train.py", "--data", "a b"], "python -m sast.train --data 'a b'"),
    (["/repo/sast/__main__.py"], "python -m sast"),
    (["/tmp/script.py", "-x"], "python /tmp/script.py -x"),
    (["/usr/bin/sast-train", "--seed", "1"], "/usr/bin/sast-train --seed 1"),
])
def test_command_line_from_recorded_argv(argv: list[str], command: str) -> None:
    assert build.command_line(argv) == command


# --- formatting -------------------------------------------------------------------------------------

def test_slack_text_is_honest() -> None:
    assert fmt.slack_text(10.0, 1.0) == "10×"
    assert fmt.slack_text(1.0, 0.0) == "undefined (estimate is 0)"
    assert fmt.slack_text(None, 1.0).startswith("—")
    assert fmt.slack_text(1.0, None).startswith("—")
    assert all("inf" not in fmt.slack_text(b, e) and "∞" not in fmt.slack_text(b, e)
               for b, e in ((1.0, 0.0), (1e300, 1e-300), (0.0, 1.0)))
    assert fmt.num(123456.0) == "1.23e5" and fmt.num(0.000123) == "0.000123" and fmt.num(None) == "not measured"


def test_per_neuron_values_are_shown_as_count_and_range() -> None:
    lam = [[0.7 + 0.001 * i for i in range(200)], 0.8]
    assert fmt.plain(lam) == '["200 values in [0.7, 0.899]", 0.8]'
    assert fmt.plain([0.9, 0.8]) == "[0.9, 0.8]"  # short lists as they are
    assert fmt.plain(["conv:8:3:2"] * 20) == json.dumps(["conv:8:3:2"] * 20)  # only numbers are summarised
