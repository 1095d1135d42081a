"""`python -m sast.evaluate` on a trained checkpoint, and its errors."""

from __future__ import annotations

import json

import pytest

from sast.evaluate import main


def test_evaluate_prints_table_and_writes_json(tiny_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for row in ("accuracy", "transfer gap", "INT8 hard accuracy", "SynOps", "ECE"):
        assert row in text
    res = json.loads(out.read_text())
    assert res["data"] == "synth-nmnist" and res["split"] == "test"
    assert 0 <= res["hard_acc"] <= 1 and res["gap"] == pytest.approx(res["smooth_acc"] - res["hard_acc"])
    assert res["synops_hard"] >= 0 and len(res["soft_band_fraction"]) == 1


def test_evaluate_default_json_goes_beside_the_checkpoint(tiny_run, capsys):
    assert main(["--model", str(tiny_run / "best.pt"), "--no-progress"]) == 0
    assert (tiny_run / "evaluation.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope.pt"], "no such checkpoint"),
        (["--model", "{run}/ckpt.pt", "--data", "synth-nmist"], "synth-nmnist"),
        (["--model", "{run}/ckpt.pt", "--split", "validation"], "split"),
        (["--model", "{run}/config.json"], "not a readable checkpoint"),
    ],
)
def test_evaluate_errors(tiny_run, capsys, args, message):
    args = [a.format(run=tiny_run) for a in args]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
