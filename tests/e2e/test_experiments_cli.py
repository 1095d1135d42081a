"""`python -m sast.experiments rho-sweep`: a tiny quick-preset sweep, its tables, report and resume."""

from __future__ import annotations

import csv
import json

import pytest

from apps.experiments import main, plan_runs, summarise

TINY = ["--limit", "200", "--layers", "dense:16", "--epochs", "1", "--severities", "1", "--no-progress"]


def test_plan_has_the_controls():
    names = [s.name for s in plan_runs([0, 0.1, 0.3], 2)]
    assert names[:5] == ["hfsb-s0", "sf-s0", "sast-rho0.1-s0", "sast-rho0.3-s0", "sf-matched-s0"]
    assert len(names) == 10


def test_summarise_mean_and_std():
    rows = [{"method": "sf", "rho": 0.0, "seed": s, "hard_acc": a, "seconds_per_epoch": 1.0} for s, a in
            enumerate([0.5, 0.7])]
    (row,) = summarise(rows)
    assert row["hard_acc_mean"] == pytest.approx(0.6) and row["hard_acc_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert row["seconds_per_epoch_vs_sf"] == pytest.approx(1.0)


def test_quick_sweep_writes_tables_report_and_resumes(tmp_path, cache_dir, capsys):
    out = tmp_path / "sweep"
    args = ["rho-sweep", "--dataset", "synth-nmnist", "--preset", "quick", "--out", str(out),
            "--cache-dir", cache_dir, *TINY]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "best hard-spike accuracy" in text
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [(r["method"], float(r["rho"])) for r in table] == [("hfsb", 0.0), ("sf", 0.0), ("sf-matched", 0.0),
                                                              ("sast", 0.3)]
    res = json.loads((out / "results.json").read_text())
    row = res["rows"][0]
    for key in ("smooth_acc", "hard_acc", "gap", "int8_hard_acc", "synops_hard", "corruption_mean_hard",
                "ece_hard", "ece_hard_ts", "temperature_hard", "seconds_per_epoch", "checks"):
        assert key in row, key
    assert set(row["corruption_acc"]["hard"]) == {"background_noise", "event_drop", "temporal_jitter",
                                                  "spatial_jitter", "polarity_flip", "hot_pixels", "time_scaling"}
    matched = next(r for r in res["rows"] if r["method"] == "sf-matched")
    sast = next(r for r in res["rows"] if r["method"] == "sast")
    # compute-matched: twice the epochs at half the gradient evaluations per epoch, the same in total
    assert 2 * matched["grad_evals_per_epoch"] == pytest.approx(sast["grad_evals_per_epoch"])
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "sast-rho0.3-s0" / "checks.json").exists()
    # a second call reuses every finished run
    before = (out / "sf-s0" / "evaluation.json").stat().st_mtime_ns
    assert main(args) == 0
    assert "done before" in capsys.readouterr().err
    assert (out / "sf-s0" / "evaluation.json").stat().st_mtime_ns == before


@pytest.mark.parametrize("extra, message", [
    (["--preset", "quik"], "did you mean 'quick'"),
    (["--dataset", "synth-gestur"], "did you mean 'synth-gesture'"),
    (["--rhos", "0,x"], "--rhos"),
    (["--severities", "7"], "severities"),
])
def test_bad_input(tmp_path, capsys, extra, message):
    assert main(["rho-sweep", "--out", str(tmp_path / "s"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["synth-nmnist", "synth-gesture"])
def test_quick_preset_in_full(tmp_path, dataset, capsys):
    """The quick preset as a user runs it (minutes on 2 cores; `make test-slow`)."""
    out = tmp_path / dataset
    assert main(["rho-sweep", "--dataset", dataset, "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in res["table"]} == {"hfsb", "sf", "sf-matched", "sast"}
    assert all(not r["violated_checks"] for r in res["table"]), res["table"]


def test_grid_two_settings_two_seeds_in_parallel(tmp_path, cache_dir, capsys):
    out = tmp_path / "grid"
    args = ["grid", "--dataset", "synth-nmnist", "--set", "beta=0.5,2", "--set", "layers=dense:16+dense:8",
            "--set", "rho=0,0.3", "--seeds", "2",
            "--checks", "none", "--no-corruptions", "--jobs", "2", "--out", str(out), "--cache-dir", cache_dir,
            "--limit", "200", "--layers", "dense:16", "--epochs", "1", "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "16/16 runs done" in captured.err and "left" in captured.err
    assert "paired differences" in captured.out
    res = json.loads((out / "results.json").read_text())
    settings = ("beta=0.5,layers=dense:16+dense:8", "beta=2,layers=dense:16+dense:8")
    assert [(r["setting"], r["method"]) for r in res["table"]] == [
        (s, m) for s in settings for m in ("hfsb", "sf", "sf-matched", "sast")]
    assert all(r["seeds"] == 2 for r in res["table"])
    pairs = [p for p in res["paired"] if p["field"] == "hard_acc"]
    assert {(p["setting"], p["control"]) for p in pairs} == {(s, c) for s in settings for c in ("sf", "sf-matched")}
    assert all(p["seeds"] == [0, 1] and p["n"] == 2 for p in pairs)
    row = res["rows"][0]
    assert {"attribution", "margins", "input_grad_norm_mean", "margins_over_epochs"} <= set(row)
    assert (out / settings[1] / "sast-rho0.3-s1" / "evaluation.json").exists()
    assert len(row["attribution"]["layers"]) == 2
    assert (out / "paired.csv").read_text().startswith("setting,rho,control,field")
    with (out / "results.csv").open() as f:
        assert [r["beta"] for r in csv.DictReader(f)][:1] == ["0.5"]


@pytest.mark.parametrize("extra, message", [
    (["--set", "bta=1"], "did you mean 'beta'"),
    (["--set", "epochs=3"], "--epochs"),
    (["--checks", "al"], "did you mean 'all'"),
    (["--set", "rho=0.3", "--rhos", "0.1"], "once"),
])
def test_grid_bad_input(tmp_path, capsys, extra, message):
    assert main(["grid", "--out", str(tmp_path / "g"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_stopped_grid_leaves_no_worker_writing(tmp_path, cache_dir):
    """SIGTERM to a parallel grid stops its worker processes too: no run folder changes afterwards."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "grid"
    cmd = [sys.executable, "-m", "sast.experiments", "grid", "--set", "rho=0,0.3", "--seeds", "2", "--checks", "none",
           "--no-corruptions", "--jobs", "2", "--out", str(out), "--cache-dir", cache_dir, "--limit", "200",
           "--layers", "dense:16", "--epochs", "40", "--no-progress"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    started = 0
    for line in proc.stderr:  # wait until both workers are training
        started += "training ->" in line
        if started == 2:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode not in (0, 1)

    def snapshot():
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    before = snapshot()
    time.sleep(3.0)
    assert snapshot() == before, "a worker went on writing after the grid was stopped"
