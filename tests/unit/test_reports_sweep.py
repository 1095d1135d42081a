"""reports.sweep: the sweep report from a results.json, its findings, figures, escaping and command line.

Sweeps are fake (reports.testing.write_fake_sweep writes the schema of
apps.experiments.cli.analyse without training) and built so the answers are known:
SF's transfer gap sits in ``gap_layer``; SAST at rho = 0.1 does not differ from SF
in hard accuracy (not resolved), at rho = 0.3 it is higher (resolved, three seeds).

The report leads with the transfer-gap map and the summary table (setting x rho, SAST minus
SF and minus SF-matched); the prose findings follow.
"""

from __future__ import annotations

import html as htmllib
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


_SUMMARY_ROW = re.compile(r'<tr data-setting="([^"]*)"><th scope="row">(.*?)</th>(.*?)</tr>', re.DOTALL)
_SUMMARY_CELL = re.compile(r'<td class="diffs" data-rho="([^"]*)">(.*?)</td>', re.DOTALL)
_SUMMARY_DIFF = re.compile(r'<div class="diff ([\w-]+)" data-control="([^"]*)" data-verdict="([^"]*)" '
                           r'title="([^"]*)">\s*<span class="ctl">([^<]*)</span><span class="num">([^<]*)</span>'
                           r'<span class="sym" aria-hidden="true">([^<]*)</span><span class="vh">([^<]*)</span>')
SYMBOLS = {"higher": "▲", "lower": "▼", "not resolved": "●", "no interval": "○", "not measured": "–"}


def _summary_table(html: str) -> str:
    return re.search(r'<table class="summary">(.*?)</table>', html, re.DOTALL).group(1)


def _summary(html: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """The summary table's entries by (row label, rho, control), its text unescaped."""
    out = {}
    for _, label, cells in _SUMMARY_ROW.findall(_summary_table(html)):
        for rho, diffs in _SUMMARY_CELL.findall(cells):
            for css, control, verdict, title, name, text, symbol, word in _SUMMARY_DIFF.findall(diffs):
                out[(htmllib.unescape(label), rho, control)] = {
                    "css": css, "verdict": verdict, "title": htmllib.unescape(title), "text": text,
                    "symbol": symbol, "word": word, "name": htmllib.unescape(name)}
    return out


def _expected(record: dict) -> tuple[str, str]:
    """The text and symbol a paired record's hard-accuracy difference should show, from the record alone."""
    mean, lo, hi = (record[k] * 100 if record[k] is not None else None for k in ("mean", "lo", "hi"))
    if lo is None:
        return f"{mean:+.1f}", "○"
    return f"{mean:+.1f} [{lo:.1f}, {hi:.1f}]", "▲" if lo > 0 else "▼" if hi < 0 else "●"


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


# --- the lead: the transfer-gap map and the summary table ------------------------------------------

def test_gap_map_and_summary_table_come_before_the_findings(full):
    results, html = full
    glance = _section(html, "glance")
    first_finding = html.index('<ul class="findings"><li>')
    assert html.index("</header>") < html.index('<section id="glance">') < html.index('<section id="findings">')
    assert html.index('<figure data-figure="fig-map">') < html.index('<table class="summary">') < first_finding
    # the map is moved up, not drawn twice: its one figure is in the lead, none among the other figures
    assert len(_figures(html, "fig-map")) == 1 and len(_figures(glance, "fig-map")) == 1
    assert 'data-figure="fig-map"' not in _section(html, "figures")
    # nothing between the title line and the lead but the contents line
    head = html[html.index("</header>"):html.index('<section id="glance">')]
    assert "<table" not in head and "<figure" not in head and "<pre" not in head
    # the prose findings follow, unchanged: every finding is in the findings section, in order
    findings = sv.findings(sv.Sweep(results))
    lines = [line for _, ls in findings.per_setting for line in ls] + findings.mechanism + findings.checks
    text = htmllib.unescape(_section(html, "findings"))
    at = 0
    for line in lines:
        at = text.index(line, at) + len(line)
    # the facts and the command moved below, where nothing is lost
    assert "wall time" in _section(html, "sweep") and "python -m sast.experiments grid" in _section(html, "sweep")


def test_summary_cells_equal_the_paired_data(full):
    results, html = full
    cells = _summary(html)
    hard = [p for p in results["paired"] if p["field"] == "hard_acc"]
    assert len(cells) == len(hard) == 2 * 2 * 2  # settings, rhos, controls
    labels = {"beta=0.5": "0.5", "beta=2": "2"}
    for record in hard:
        cell = cells[(labels[record["setting"]], f"{record['rho']:g}", record["control"])]
        text, symbol = _expected(record)
        assert (cell["text"], cell["symbol"]) == (text, symbol), record
        assert cell["word"] == cell["verdict"] == {v: k for k, v in SYMBOLS.items()}[symbol]
        assert cell["title"].startswith(f"SAST ρ={record['rho']:g} against ")  # the finding's sentence
        assert cell["title"] in htmllib.unescape(_section(html, "findings"))
    # known by construction: rho = 0.3 beats SF (resolved), rho = 0.1 does not differ
    assert cells[("0.5", "0.3", "sf")]["text"] == "+6.1 [2.6, 9.6]" and cells[("0.5", "0.3", "sf")]["symbol"] == "▲"
    assert cells[("2", "0.3", "sf")]["css"] == "v-better"
    assert cells[("0.5", "0.1", "sf")]["symbol"] == "●" and cells[("0.5", "0.1", "sf")]["css"] == "v-none"
    table = _summary_table(html)
    assert '<th scope="col">beta</th>' in table
    assert re.findall(r'<th scope="col">SAST &rho; = ([^<]*)</th>', table) == ["0.1", "0.3"]
    legend = re.search(r'<ul class="verdict-legend.*?</ul>', html, re.DOTALL).group(0)
    assert all(symbol in legend for symbol in SYMBOLS.values())


def test_summary_one_seed_says_no_interval(tmp_path):
    _, html = _render(tmp_path, seeds=1, layers=2, rhos=(0.0, 0.3))
    assert {(c["symbol"], c["word"]) for c in _summary(html).values()} == {("○", "no interval")}


def test_summary_without_other_axis_has_one_row_all(tmp_path):
    results, html = _render(tmp_path, settings={}, seeds=2, layers=2)
    cells = _summary(html)
    assert {label for label, _, _ in cells} == {"all"}
    assert sorted(cells) == [("all", rho, c) for rho in ("0.1", "0.3") for c in ("sf", "sf-matched")]
    for record in (p for p in results["paired"] if p["field"] == "hard_acc"):
        assert (cells[("all", f"{record['rho']:g}", record["control"])]["text"],
                cells[("all", f"{record['rho']:g}", record["control"])]["symbol"]) == _expected(record)
    assert "&gt;all&lt;" not in html and "all runs (no" not in "".join(_figures(html, "fig-map"))


def test_summary_without_the_matched_sf_says_so(tmp_path):
    path = write_fake_sweep(tmp_path, seeds=2, layers=2)
    results = json.loads(path.read_text(encoding="utf-8"))
    for part in ("rows", "table", "paired"):
        results[part] = [r for r in results[part] if "sf-matched" not in (r["method"] if part != "paired"
                                                                           else r["control"])]
    html = sweep.render_sweep(results)
    cells = _summary(html)
    assert len(cells) == 2 * 2 * 2
    for (label, rho, control), cell in cells.items():
        if control == "sf-matched":
            assert cell["text"] == "no SF-matched run in this sweep" and cell["symbol"] == "–"
            assert cell["word"] == "not measured"
        else:
            record, = [p for p in results["paired"] if p["field"] == "hard_acc" and p["control"] == "sf"
                       and p["setting"] == f"beta={label}" and f"{p['rho']:g}" == rho]
            assert (cell["text"], cell["symbol"]) == _expected(record)


def test_summary_without_paired_data_says_so_in_a_cell(tmp_path):
    _, html = _render(tmp_path, partial=True, seeds=2, layers=2)
    table = _summary_table(html)
    assert _summary(html) == {}
    assert re.search(r'<td class="empty" colspan="3">SAST against its controls: not measured \(results.json '
                     r'has no paired comparisons\)\.</td>', table)
    assert 'class="verdict-legend' not in html


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
    assert ESCAPED in _summary_table(html)  # the summary table's row label and data-setting


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
