"""reports.sweep: the sweep report from a results.json, its findings, figures, escaping and command line.

Sweeps are fake (reports.testing.write_fake_sweep writes the schema of
apps.experiments.cli.analyse without training) and built so the answers are known:
SF's transfer gap sits in ``gap_layer``; SAST at rho = 0.1 does not differ from SF
in hard accuracy (not resolved), at rho = 0.3 it is higher (resolved, three seeds).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reports import build, sweep
from reports import sweep_figures as sf
from reports import sweep_views as sv
from reports.testing import HOSTILE_SETTING, SWEEP_EDGES, write_fake_run, write_fake_sweep

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
FIGURE_IDS = ("fig-map", "fig-attribution", "fig-margins", "fig-soft-band", "fig-mechanism", "fig-correlates")
PER_SETTING = ("fig-attribution", "fig-margins", "fig-soft-band", "fig-mechanism")
SHARED_CSS = "--ink: #1d1f23"
"""A line of the shared stylesheet (templates/_style.css.j2)."""
_XMLNS = re.compile(r'xmlns(:\w+)?="[^"]*"')


def _figures(html: str, figure_id: str) -> list[str]:
    """The <figure> elements of one figure kind, in page order."""
    return re.findall(rf'<figure data-figure="{figure_id}">(.*?)</figure>', html, re.DOTALL)


def _section(html: str, section_id: str) -> str:
    return re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.DOTALL).group(1)


def _finding(lines: list[str], start: str) -> str:
    """The one finding that starts with ``start``."""
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def _render(folder: Path, **options) -> tuple[dict, str]:
    results = sweep.load_sweep(write_fake_sweep(folder, **options))
    return results, sweep.render_sweep(results)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[dict, str]:
    """Two settings (beta), three seeds, three layers, rhos 0, 0.1, 0.3."""
    return _render(tmp_path_factory.mktemp("sweep"))


# --- the full report ------------------------------------------------------------------------------

def test_one_svg_per_figure_and_setting(full):
    results, html = full
    settings = len(results["axes"]["beta"])
    expected = {"fig-map": 1, "fig-correlates": 1, **{k: settings for k in PER_SETTING}}
    for figure_id in FIGURE_IDS:
        figures = _figures(html, figure_id)
        assert len(figures) == expected[figure_id], figure_id
        assert all(f.count("<svg ") == 1 for f in figures), figure_id
    assert html.count("<svg ") == sum(expected.values())
    assert "not measured" not in _section(html, "figures")  # the fake measures everything


def test_tables_hold_every_group_and_paired_record(full):
    results, html = full
    paired = re.search(r'<table class="paired">(.*?)</table>', html, re.DOTALL).group(1)
    assert paired.count("<tr class=") == len(results["paired"]) == 2 * 2 * 2 * 3  # settings, rhos, controls, fields
    assert 'class="v-better"' in paired and "not resolved" in paired
    table = re.search(r'<table class="results">(.*?)</table>', html, re.DOTALL).group(1)
    assert table.count("<tr") == 1 + len(results["table"])


def test_page_loads_nothing_and_shares_the_stylesheet(full, tmp_path):
    _, html = full
    assert "<script" not in html
    assert re.findall(r".{0,30}https?:.{0,30}", _XMLNS.sub("", html)) == []
    run_report = build.render_report(build.load_runs([write_fake_run(tmp_path / "run")]))
    assert html.count(SHARED_CSS) == run_report.count(SHARED_CSS) == 1
    assert "<style>\n:root {" in run_report  # the include keeps report.html's bytes


def test_no_banner_without_a_violated_check(full):
    _, html = full
    assert 'id="violations"' not in html
    assert "No theory check reported a violated bound." in html


# --- findings: known by construction ----------------------------------------------------------------

@pytest.mark.parametrize("gap_layer", [1, 3])
def test_findings_name_the_layer_with_the_largest_drop(tmp_path, gap_layer):
    results = sweep.load_sweep(write_fake_sweep(tmp_path, gap_layer=gap_layer, settings={}))
    (_, lines), = sv.findings(sv.Sweep(results)).per_setting
    layer = _finding(lines, "The gap sits mostly in")
    assert layer.startswith(f"The gap sits mostly in layer {gap_layer}:")
    # SF's weight is 3 of 3 + 1 + 1: the share of the gap is 60%
    assert "60% of SF's full transfer gap" in layer


def test_findings_resolve_only_what_the_interval_resolves(full):
    results, html = full
    findings = sv.findings(sv.Sweep(results))
    assert [s for s, _ in findings.per_setting] == ["beta=0.5", "beta=2"]
    for _, lines in findings.per_setting:
        small = _finding(lines, "SAST ρ=0.1 against SF:")
        assert "not resolved" in small and "contains 0" in small
        large = _finding(lines, "SAST ρ=0.3 against SF:")
        assert "higher by 6.1 pp" in large and "not resolved" not in large
    mechanism = findings.mechanism
    assert "holds" in _finding(mechanism, "all runs: gap against the mean input-gradient norm")
    assert "does not hold" in _finding(mechanism, "all runs: gap against the first-order sharpness")
    assert "higher by 6.1 pp" in _section(html, "findings")


def test_one_seed_gives_no_interval(tmp_path):
    """As /tmp/g1 but with one seed: means only, 'no interval' instead of a verdict."""
    results, html = _render(tmp_path, seeds=1, layers=2, rhos=(0.0, 0.3))
    sw = sv.Sweep(results)
    assert all("[" not in cell for row in sv.result_rows(sw) for cell in row.cells)
    assert {row.verdict for row in sv.paired_rows(sw)} == {"no interval"}
    for _, lines in sv.findings(sw).per_setting:
        assert "no interval" in _finding(lines, "SAST ρ=0.3 against SF:")
    assert len(_figures(html, "fig-map")) == 1


def test_without_axes(tmp_path):
    results, html = _render(tmp_path, settings={}, seeds=2, layers=2)
    assert results["axes"] == {} and {r["setting"] for r in results["rows"]} == {""}
    for figure_id in FIGURE_IDS:
        assert len(_figures(html, figure_id)) == 1, figure_id
    assert "Setting:" not in _section(html, "findings")
    assert "all runs (no axes)" in html


# --- hostile, partial and broken input -------------------------------------------------------------

def test_hostile_setting_is_escaped(tmp_path):
    results, html = _render(tmp_path, hostile=True, seeds=2, layers=2)
    assert results["rows"][0]["setting_values"]["beta"] == HOSTILE_SETTING
    assert HOSTILE_SETTING not in html and "<script" not in html
    assert ESCAPED in _section(html, "results")
    assert "&lt;script&gt;" in "".join(_figures(html, "fig-map"))  # the map's (shortened) row label


def test_partial_results_say_not_measured(tmp_path):
    results, html = _render(tmp_path, partial=True, seeds=2, layers=2)
    assert not {"table", "paired", "correlations", "mechanism_samples"} & set(results)
    assert "Paired differences: not measured" in html
    assert "Paired differences of SAST against its controls: not measured." in html
    assert "Mechanism correlations across runs: not measured." in html
    for what in ("Per-layer attribution", "Margin histograms", "Soft-band fraction over epochs",
                 "Per-sample mechanism", "Mechanism across runs"):
        assert f"{what}: not measured" in html, what
    assert len(_figures(html, "fig-map")) == 1  # means from the runs themselves
    assert "[" not in _section(html, "results").split("<tbody>")[1].split("</tbody>")[0]


@pytest.mark.parametrize("results", [{}, [], {"rows": None, "table": "x", "paired": 3, "axes": []},
                                     {"rows": [{"method": "sf", "rho": "a", "seed": None, "attribution": 1,
                                                "margins": {"smooth": {"edges": [0], "counts": "x"}}}]}])
def test_malformed_parts_render(results):
    html = sweep.render_sweep(results)
    assert "<h1>SAST sweep report</h1>" in html and "not measured" in html


def test_violated_checks_are_listed(tmp_path):
    _, html = _render(tmp_path, violated=["T4"], seeds=1, layers=1, settings={})
    banner = re.search(r'<section class="banner violated".*?</section>', html, re.DOTALL).group(0)
    assert "SAST ρ=0.1, seed 0: T4 violated" in banner


# --- loading and the command line ------------------------------------------------------------------

def test_load_sweep_accepts_the_folder_or_the_file(tmp_path):
    path = write_fake_sweep(tmp_path, partial=True, seeds=1)
    assert sweep.load_sweep(tmp_path) == sweep.load_sweep(path)


@pytest.mark.parametrize("content, message", [(None, "is not a sweep"), ("{", "is not valid JSON"),
                                              ("[1]", "holds a JSON list")])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, content, message):
    folder = tmp_path / "sweep"
    if content is not None:
        folder.mkdir()
        (folder / "results.json").write_text(content)
    assert sweep.main([str(folder), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder) in err and message in err
    assert not (tmp_path / "r.html").exists()


def test_cli_unfinished_sweep_says_so(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    assert sweep.main([str(tmp_path)]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_cli_writes_the_report_beside_results(tmp_path, capsys):
    write_fake_sweep(tmp_path, partial=True, seeds=1, layers=1)
    assert sweep.main([str(tmp_path)]) == 0
    out = tmp_path / "report.html"
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sweep.build_sweep_report(tmp_path, tmp_path / "again.html").read_text() == out.read_text()


def test_importing_reports_sweep_imports_no_torch():
    code = ("import sys, reports, reports.sweep; reports.build_sweep_report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sast', 'checks', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"


# --- figures --------------------------------------------------------------------------------------

def test_figures_are_deterministic_and_say_when_empty():
    cols = [sf.Series("sf", 0.0), sf.Series("sast", 0.3)]
    cells = [[sf.Cell(0.8, 0.7, 0.9), sf.Cell(None)]]
    one = sf.transfer_gap_map_svg(["0.5"], cols, cells, cells, row_axis="beta", key="m")
    assert one == sf.transfer_gap_map_svg(["0.5"], cols, cells, cells, row_axis="beta", key="m")
    assert "80.0" in one and "[70.0, 90.0]" in one and "not" in one  # the missing cell says not measured
    empty = sf.correlates_svg([sf.Correlate("x", [], None, None, 0)])
    assert "not measured" in empty


def test_soft_band_and_edges_match_sast_gap():
    gap = pytest.importorskip("sast.gap")
    assert sf.SOFT_BAND == gap.SOFT_BAND
    assert SWEEP_EDGES == tuple(gap.MARGIN_EDGES)


def test_results_json_of_the_fake_is_plain_json(tmp_path):
    path = write_fake_sweep(tmp_path, seeds=2, layers=1)
    json.loads(path.read_text(encoding="utf-8"), parse_constant=pytest.fail)  # no NaN or infinities
