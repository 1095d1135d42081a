"""The report's local-bound columns and looseness budgets (reports.views.budget_section, reports.budget_figures)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from reports import build
from reports.budget_figures import looseness_svg
from reports.runs import load_run, parse_check, parse_looseness
from reports.testing import check_result, fake_looseness, write_fake_run


def test_fake_budget_sums_to_the_global_slack() -> None:
    entries = fake_looseness(182.0, [("a", 1.0), ("b", 2.0)], 40.0, 9.4)
    assert math.isclose(sum(e["log10_ratio"] for e in entries), math.log10(182.0 / 9.4), rel_tol=0, abs_tol=1e-12)


def test_report_renders_the_budget_and_local_columns(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "r")
    html = build.render_report(build.load_runs([run]))
    assert "Where the slack comes from" in html and "T4: smoothness: looseness budget" in html
    assert "looseness budget, 4 entries" in html  # the SVG's label: three substitutions and the remaining slack
    assert "Local bound" in html and "Local slack" in html
    t4 = load_run(run).final_checks()["T4"]
    row = re.search(r'<tr data-statement="T4".*?</tr>', html, re.S).group(0)
    assert "37.6" in row and "4×" in row  # local bound 4 x 9.4 and its slack
    assert t4.local_slack == 4.0


def test_a_broken_certificate_reads_violated_in_the_verdict_table_and_the_banner(tmp_path: Path) -> None:
    """A local bound below its estimate (the global bound far above) is a violation, shown as one."""
    run = write_fake_run(tmp_path / "r")
    checks = json.loads((run / "checks.json").read_text())
    i = next(k for k, c in enumerate(checks) if c["id"] == "T4")
    est = checks[i]["estimate"]
    checks[i] = check_result("T4", checks[i]["bound"], est, assumptions=checks[i]["assumptions"],
                             local_bound=0.5 * est, details=checks[i]["details"])
    assert checks[i]["status"] == "violated" and checks[i]["local_holds"] is False
    (run / "checks.json").write_text(json.dumps(checks))
    html = build.render_report(build.load_runs([run]))
    banner = html[html.index('id="violations"'):]
    assert "T4 (smoothness): broken certificate: the local bound 4.7 lies below the estimate 9.4" in banner
    row = re.search(r'<tr data-statement="T4" class="row-violated">.*?</tr>', html, re.S).group(0)
    assert "broken certificate" in row


def test_a_budget_split_by_layer_gets_a_chart_by_layer(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "r")
    checks = json.loads((run / "checks.json").read_text())
    t3 = next(c for c in checks if c["id"] == "T3")
    entries = fake_looseness(t3["bound"], [("K_l -> ||M_l||", 0.2), ("K_l -> ||M_l||", 0.5), ("Z1 -> exact", 0.3)],
                             2 * t3["estimate"], t3["estimate"])
    for e, layer in zip(entries, [2, 1, "readout", None]):
        e["layer"] = layer
    t3.update(local_bound=2 * t3["estimate"], looseness=entries)
    (run / "checks.json").write_text(json.dumps(checks))
    html = build.render_report(build.load_runs([run]))
    assert "T3: input Lipschitz, by layer: looseness budget, 4 entries" in html  # layer 1, layer 2, readout, remaining
    assert "T3: input Lipschitz: looseness budget, 3 entries" in html  # the two K_l entries summed into one bar
    assert "(2 spiking layers;" in html and "constants apart): layer 1 holds the most" in html


def test_old_records_without_local_fields_render(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "r")
    checks = json.loads((run / "checks.json").read_text())
    for c in checks:
        c.pop("local_bound", None), c.pop("looseness", None)
    (run / "checks.json").write_text(json.dumps(checks))
    html = build.render_report(build.load_runs([run]))
    assert "No looseness budget recorded" in html


def test_budget_parsing_is_lenient() -> None:
    rec = check_result("T3", 10.0, 1.0, local_bound=2.0,
                       looseness=[{"factor": "k", "log10_ratio": "x"}, {"no": 1}, 5,
                                  {"factor": "remaining proof slack", "log10_ratio": 0.3}])
    c = parse_check(rec, "checks.json")
    assert c.local_bound == 2.0
    assert [e["factor"] for e in c.looseness] == ["k", "remaining proof slack"]
    assert c.looseness[0]["log10_ratio"] is None
    assert parse_looseness("junk") == [] and parse_check({"id": "T3"}, "x").looseness == []


def test_budget_figure_handles_missing_and_empty() -> None:
    svg = looseness_svg(["a <b>", "remaining proof slack"], [None, 1.5], title="T4: $x$", key="k")
    assert svg.startswith("<svg") and "not measured" in svg and "&lt;b&gt;" in svg
    assert "no data" in looseness_svg([], [], title="T4", key="k2")
