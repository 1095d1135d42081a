"""`python -m checks.all` on a trained checkpoint: every statement, checks.json, exit codes."""

from __future__ import annotations

import json

from checks.all import main

ALL_IDS = {"A4", "T2", "T3", "T4", "T5", "T6", "T7", "E1", "E2"}


def test_all_checks_on_a_trained_run(tiny_run, capsys):
    code = main(["--model", str(tiny_run / "ckpt.pt"), "--batch", "16", "--no-progress"])
    out = capsys.readouterr().out
    results = json.loads((tiny_run / "checks.json").read_text())
    assert {r["id"] for r in results} == ALL_IDS
    assert code == (1 if any(r["status"] == "violated" for r in results) else 0)
    assert not [r["id"] for r in results if r["status"] == "violated"], "a bound is violated on a tiny run"
    for rid in ALL_IDS:
        assert f"\n{rid:<4} " in "\n" + out
    by_id = {r["id"]: r for r in results}
    assert by_id["T5"]["details"].get("rho") == 0.1  # the run's own rho
    assert by_id["T4"]["bound"] is not None and by_id["T4"]["estimate"] is not None


def test_only_and_skip(tiny_run, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--only", "state_bounds,contraction", "--batch", "8",
                 "--out", str(out), "--no-progress"]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == ["T2", "A4"]
    capsys.readouterr()
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--only", "smoothnes", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'smoothness'" in err[0]


def test_max_memory_refuses_a_probe_that_cannot_fit_before_any_check_runs(tiny_run, tmp_path, capsys):
    from checks import smoothness

    out = tmp_path / "checks.json"
    code = main(["--model", str(tiny_run / "ckpt.pt"), "--batch", "16", "--max-memory", "1K", "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--max-memory 1.0 KB" in err[0] and "--batch" in err[0]
    assert not out.exists()
    # the checks without Hessian products need no such graph; a single curvature check refuses alike
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--batch", "16", "--max-memory", "1K", "--only",
                 "state_bounds", "--out", str(out), "--no-progress"]) == 0
    assert smoothness.main(["--model", str(tiny_run / "ckpt.pt"), "--batch", "16", "--max-memory", "1K",
                            "--no-progress"]) == 2
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--max-memory", "lots", "--no-progress"]) == 2
    assert "--max-memory: expected a size" in capsys.readouterr().err
