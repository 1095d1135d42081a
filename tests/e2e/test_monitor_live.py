"""The live monitor through ``python -m sast.train``: every statement logged, a planted A4 breach, --on-violation.

The planted breach: a tiny network that starts with small weights (``--init-scale 0.01``,
``--lam 0.5``, ``--beta 20``: every state interval I_l lies far below theta, so kappa_l ~ lam
and A4 holds) gets its first layer's weights and bias multiplied by 50 after step 2. The
states then reach theta, where |g'| = lam |(1 - sig) - beta u sig (1 - sig)| is about 2.3:
A4's kappa_l >= 1 (and the observed kappa_emp too), so A4 stops holding at step 2.
"""

from __future__ import annotations

import json

import pytest
import torch

import apps.train as train_cli
from apps.train import main
from runfolder import EXIT_VIOLATED, STATUSES
from sast import checkpoint
from sast.runlog import read_jsonl
from sast.train import Callback

PLANT_STEP = 2
SMALL_START = ["--init-scale", "0.01", "--lam", "0.5", "--beta", "20"]  # A4 holds at the start (kappa ~ 0.5)


class PushOutOfA4(Callback):
    """After step ``k``: W^1 and b^1 times 50, so the states reach theta, where |g'| > 1 (A4 fails)."""

    def __init__(self, k: int = PLANT_STEP, factor: float = 50.0) -> None:
        self.k, self.factor = k, factor

    def on_step_end(self, run, stats) -> None:
        if run.step == self.k:
            with torch.no_grad():
                layer = run.model.layers[run.model.spiking_specs[0].index]
                layer.weight.mul_(self.factor)
                layer.bias.mul_(self.factor)


@pytest.fixture
def planted(monkeypatch):
    """The command line's monitor with the planted breach before it (it acts first at step k)."""
    wire = train_cli.monitor_callbacks
    monkeypatch.setattr(train_cli, "monitor_callbacks",
                        lambda preset, on_violation="warn": [PushOutOfA4(), *wire(preset, on_violation)])


def _records(run, kind=None):
    return [r for r in read_jsonl(run / "metrics.jsonl") if kind is None or r["kind"] == kind]


def test_the_default_preset_logs_every_statement_at_several_steps(tiny_train_args, tmp_path, capsys):
    run = tmp_path / "run"
    # batch 4: 44 steps an epoch, 440 steps; T3, T4, T5, T7 run twice within 65 steps, the probe every 200
    assert main([*tiny_train_args, "--batch-size", "4", "--epochs", "10", "--run-dir", str(run)]) == 0
    checks = _records(run, "check")
    steps = {sid: sorted({r["step"] for r in checks if r["id"] == sid}) for sid in ("A4", "T2", "T3", "T4", "T5",
                                                                                        "T6", "T7")}
    assert steps["A4"] == steps["T2"] == [0, 1, 2, 4, 8, 16, 32, 64]
    assert (steps["T4"], steps["T3"], steps["T5"], steps["T7"]) == ([0, 8], [1, 16], [2, 32], [4, 64])
    assert steps["T6"] == [0, 200, 400, 440]  # with each probe, and once more at the end
    probes = _records(run, "probe")
    assert [r["step"] for r in probes] == [0, 200, 400]
    for r in checks + probes:  # what every monitor record carries
        assert {"step", "estimate", "bound", "status", "n_probe", "seconds"} <= set(r), r["kind"]
        assert r["status"] in STATUSES and r["n_probe"] >= 1 and r["seconds"] >= 0
    for r in checks:
        assert r["bound"] is not None and r["estimate"] is not None, r["id"]  # every statement applies here
        assert (r["estimate"], r["bound"], r["status"]) == (r["result"]["estimate"], r["result"]["bound"],
                                                            r["result"]["status"])
        assert r["status"] != "violated", r["id"]
    for r in probes:  # the subsampling error is stated
        assert r["n_probe"] == 64 and r["grad_norm_sq_bias"] == pytest.approx(r["sigma2"] / 64)
        assert r["loss_se"] > 0
    t4 = [r["result"] for r in checks if r["id"] == "T4"]
    assert [d["details"]["warm_start"] for d in t4] == [False, True]  # the second refresh starts from the first
    assert all(d["details"]["lambda_min"] < 0 < d["details"]["lambda_max"] for d in t4)  # both extremes
    end = [r for r in _records(run, "monitor") if r["event"] == "end"]
    assert len(end) == 1 and end[0]["errors"] == 0 and set(end[0]["statuses"]) == set(steps)
    err = capsys.readouterr().err
    # T6's premise eta <= 1/L fails with T4's global L from the first record on: said once, not repeated
    assert err.count("assumption eta <= 1/L fails") == 1 and "VIOLATED" not in err


def test_a_planted_a4_breach_stops_the_run_with_one_line_and_a_checkpoint(tiny_train_args, tmp_path, capsys,
                                                                          planted):
    run = tmp_path / "run"
    code = main([*tiny_train_args, *SMALL_START, "--epochs", "2", "--run-dir", str(run), "--on-violation", "stop"])
    assert code == EXIT_VIOLATED == 1
    err = capsys.readouterr().err
    alarm = [line for line in err.splitlines() if line.startswith("monitor:") and "stopped holding" in line]
    assert len(alarm) == 1  # ONE line: statement, estimate, bound, step (then the command's own exit line)
    assert alarm[0].startswith(f"monitor: step {PLANT_STEP}: assumption A4 stopped holding (A4: estimate ")
    assert "bound" in alarm[0] and "kappa_l >= 1" in alarm[0]
    assert "error: training stopped:" in err and "ckpt.pt" in err
    a4 = [r for r in _records(run, "check") if r["id"] == "A4"]
    assert [(r["step"], r["status"]) for r in a4] == [(0, "holds"), (1, "holds"), (PLANT_STEP, "assumption fails")]
    assert a4[-1]["bound"] >= 1 and a4[-1]["estimate"] >= 1  # kappa_l and the observed kappa_emp both >= 1
    stop = [r for r in _records(run, "monitor") if r["event"] == "stop"]
    assert len(stop) == 1 and stop[0]["step"] == PLANT_STEP and stop[0]["id"] == "A4"
    # the checkpoint of the state it stopped at: the planted weights, mid-epoch
    ckpt = checkpoint.read(run / "ckpt.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_index"]) == (PLANT_STEP, 0, PLANT_STEP)
    assert ckpt["stopped"]["step"] == PLANT_STEP and "A4 stopped holding" in ckpt["stopped"]["reason"]
    model, _ = checkpoint.load(run / "ckpt.pt")
    init_bound = 0.01 / 2312 ** 0.5  # nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) times --init-scale
    assert float(model.layers[0].weight.detach().abs().max()) > 20 * init_bound  # the planted weights (x 50)
    assert not _records(run, "eval")  # no epoch finished


def test_with_warn_the_planted_breach_is_reported_and_training_goes_on(tiny_train_args, tmp_path, capsys, planted):
    run = tmp_path / "run"
    assert main([*tiny_train_args, *SMALL_START, "--epochs", "2", "--run-dir", str(run)]) == 0  # warn: the default
    err = capsys.readouterr().err
    assert err.count("assumption A4 stopped holding") == 1  # T3, T4, T5 report A4 too: one line for all
    assert len(_records(run, "eval")) == 2 and not [r for r in _records(run, "monitor") if r["event"] == "stop"]
    assert "stopped" not in checkpoint.read(run / "ckpt.pt")


def test_unknown_on_violation_is_refused(tiny_train_args, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*tiny_train_args, "--run-dir", str(tmp_path / "r"), "--on-violation", "halt"])
    assert e.value.code == 2 and "invalid choice: 'halt'" in capsys.readouterr().err


def test_the_log_records_are_plain_json(tiny_run):
    for line in (tiny_run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # NaN or infinity would not parse as strict JSON values here
