"""The T4, T5 and T6 command lines on a finished tiny SAST run (trained with the default monitor)."""

from __future__ import annotations

import json

from apps.train import main as train_main
from checks import convergence, sam_error, smoothness
from sast.runlog import read_jsonl


def test_smoothness_needs_only_the_checkpoint(tiny_run, capsys):
    assert smoothness.main(["--model", str(tiny_run / "ckpt.pt")]) == 0
    out = capsys.readouterr().out
    assert "T4" in out and "smoothness" in out and "slack" in out


def test_smoothness_writes_json(tiny_run, tmp_path, capsys):
    path = tmp_path / "t4.json"
    assert smoothness.main(["--model", str(tiny_run / "ckpt.pt"), "--batch", "16", "--tol", "1e-2", "--max-iter", "40",
                            "--no-progress", "--json", str(path)]) == 0
    (res,) = json.loads(path.read_text())
    assert res["id"] == "T4" and res["holds"] is True and res["details"]["n_probe"] == 16
    assert res["details"]["lambda_min"] <= res["details"]["lambda_max"] and res["estimate"] <= res["bound"]


def test_sam_error_takes_the_runs_rho(tiny_run, tmp_path, capsys):
    path = tmp_path / "t5.json"
    assert sam_error.main(["--model", str(tiny_run / "ckpt.pt"), "--batch", "16", "--ascent-steps", "3",
                           "--tol", "1e-2", "--no-progress", "--json", str(path)]) == 0
    (res,) = json.loads(path.read_text())
    assert res["id"] == "T5" and res["details"]["rho"] == 0.1
    assert res["details"]["rho_source"] == "checkpoint train_config.rho" and res["holds"] is True


def test_the_default_monitor_logged_what_T6_needs(tiny_run):
    records = list(read_jsonl(tiny_run / "metrics.jsonl"))
    probes = [r for r in records if r["kind"] == "probe"]
    assert probes and probes[0]["step"] == 0 and probes[0]["batch_size"] == 32
    assert {"loss", "grad_norm_sq", "sigma2", "n_probe"} <= set(probes[0])
    assert [r["preset"] for r in records if r["kind"] == "monitor" and r["event"] == "start"] == ["default"]


def test_convergence_on_the_monitored_run(tiny_run, tmp_path, capsys):
    path = tmp_path / "t6.json"
    assert convergence.main(["--run", str(tiny_run), "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "T6" in out and "running mean" in out
    (res,) = json.loads(path.read_text())
    assert res["id"] == "T6" and res["status"] in ("holds", "assumption fails")
    d = res["details"]
    # the default preset logs T4 (at steps 0 and 8): L and the local curvature come from its records
    assert d["L_source"] == "largest of 2 T4 bound(s) logged along the run"
    assert d["L_local"] > 0 and d["base_optimizer"] == "sgd"
    assert d["steps"][0] == 0 and d["F0"] > 0


def test_convergence_uses_the_T4_results_the_full_monitor_logged(tiny_train_args, tmp_path, capsys):
    run = tmp_path / "full"
    assert train_main([*tiny_train_args, "--method", "sast", "--rho", "0.1", "--epochs", "2", "--monitor", "full",
                       "--run-dir", str(run)]) == 0
    kinds = {r["kind"] for r in read_jsonl(run / "metrics.jsonl")}
    assert "monitor_error" not in kinds
    path = tmp_path / "t6.json"
    assert convergence.main(["--model", str(run / "ckpt.pt"), "--json", str(path)]) == 0
    (res,) = json.loads(path.read_text())
    # full: T4 at steps 0 and 8 of the 10; the probe every 100 steps, so at w_0 only
    assert res["details"]["L_source"].startswith("largest of 2 T4") and res["details"]["steps"] == [0]


def test_convergence_refuses_a_run_without_the_monitor(tiny_train_args, tmp_path, capsys):
    run = tmp_path / "plain"
    assert train_main([*tiny_train_args, "--epochs", "1", "--monitor", "off", "--run-dir", str(run)]) == 0
    assert not [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] in ("probe", "monitor")]
    capsys.readouterr()
    assert convergence.main(["--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--monitor default" in err


def test_unknown_monitor_preset_exits_2(tiny_train_args, tmp_path, capsys):
    code = train_main([*tiny_train_args, "--epochs", "1", "--monitor", "ful", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "did you mean 'full'" in err
