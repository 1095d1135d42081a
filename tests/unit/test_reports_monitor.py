"""The live monitor in the run report (reports.monitor_views, reports.monitor_figures) on fake run folders."""

from __future__ import annotations

import json

from reports import monitor_figures
from reports.build import load_runs, render_report
from reports.monitor_views import monitor_section
from reports.testing import write_fake_run


def _append(run, *records) -> None:
    with open(run / "metrics.jsonl", "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


START = {"kind": "monitor", "event": "start", "step": 0, "epoch": 0, "preset": "default", "on_violation": "stop",
         "quantities": [], "probe": {"split": "train", "size": 128, "seed": 2024, "indices": []}}
ERROR = {"kind": "monitor_error", "id": "T3", "step": 120, "epoch": 1, "error": "RuntimeError: planted failure",
         "n_probe": 2}
END = {"kind": "monitor", "event": "end", "step": 240, "epoch": 4, "seconds": 1.5, "errors": 1,
       "seconds_by_id": {"A4": 0.5, "T4": 1.0}, "runs_by_id": {"A4": 4, "T4": 4}, "statuses": {}}


def test_status_changes_are_found_where_the_status_differs_from_the_record_before():
    assert monitor_figures.status_changes([0, 1, 4, 16], ["holds", "holds", "violated", "holds"]) == [
        (4, "holds", "violated"), (16, "violated", "holds")]
    assert monitor_figures.status_changes([0], ["holds"]) == []


def test_the_section_shows_every_statement_its_changes_cost_and_errors(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", violated=["T4"])  # A4's assumption fails early, then holds
    _append(run_dir, START, ERROR, END)
    (run,) = load_runs([run_dir])
    assert [r["kind"] for r in run.monitor] == ["monitor", "monitor_error", "monitor"]
    figs, lines, _ = monitor_section(run, "r0")
    assert [title.split()[0] for title, _, _ in figs] == ["A4", "T2", "T4", "T5"]
    text = "\n".join(lines)
    assert "Preset default: a probe of 128 train samples (seed 2024); on a violation: stop." in text
    assert "The monitor took 1.50 s" in text and "A4 0.50 s / 4" in text
    assert "Step 120: A4 went from assumption fails to holds." in text
    assert "Step 240: T4 went from holds to violated." in text  # the planted violation at the last step
    assert "Step 120: T3 failed: RuntimeError: planted failure" in text and "1 monitor error(s)" in text
    _, svg, caption = figs[0]  # A4
    assert "1 status change(s), marked" in caption and "status changes" in svg
    assert "<script" not in svg


def test_the_report_renders_the_monitor_section_and_its_stop(tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    stop = {**END, "event": "stop", "id": "A4", "reason": "step 120: assumption A4 stopped holding (A4: ...)"}
    _append(run_dir, START, ERROR, stop)
    html = render_report(load_runs([run_dir]))
    assert "Training was stopped at step 240 (--on-violation stop): step 120: assumption A4 stopped holding" in html
    assert "T3 failed: RuntimeError: planted failure" in html
    assert "went from assumption fails to holds" in html


def test_a_run_without_the_monitor_says_so(tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    lines = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] not in ("check", "probe")]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run,) = load_runs([run_dir])
    figs, lines, empty = monitor_section(run, "r0")
    assert not figs and not lines and "--monitor default" in empty
