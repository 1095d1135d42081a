"""checks.transfer (E1, E2): two records carrying the numbers of sast.transfer.diagnostics."""

from __future__ import annotations

import json

import pytest
import torch

from checks import transfer
from checks._result import CheckResult
from sast.model import SNN, SNNConfig
from sast.transfer import diagnostics


def tiny(seed: int = 0, batch: int = 12):
    torch.manual_seed(seed)
    model = SNN(SNNConfig(input_shape=(6,), layers=["dense:5", "dense:4"], T=3, beta=4.0, num_classes=3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # states reach past theta, so hard and smooth differ
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randint(0, 3, (batch, 3, 6), generator=g).double()  # binned event counts
    y = torch.randint(0, 3, (batch,), generator=g)
    return model.eval(), x, y


def test_run_returns_E1_and_E2_with_the_numbers_of_diagnostics():
    model, x, y = tiny()
    results = transfer.run(model, (x, y), seed=3)
    assert isinstance(results, list) and [r.id for r in results] == ["E1", "E2"]
    ref = diagnostics(model, x, y)
    e1, e2 = results
    for r in results:
        assert r.status == "not applicable" and r.bound is None and r.estimate is None and r.holds is None
        assert r.seed == 3 and r.dtype == "float64" and r.details["reason"].startswith("empirical")
    for key in ("smooth_acc", "hard_acc", "gap", "agreement", "logit_discrepancy", "soft_band_fraction"):
        assert e1.details[key] == pytest.approx(ref[key], rel=1e-12), key
    for key in ("int8_hard_acc", "synops_smooth", "synops_hard"):
        assert e2.details[key] == pytest.approx(ref[key], rel=1e-12), key
    assert e1.details["gap"] == pytest.approx(e1.details["smooth_acc"] - e1.details["hard_acc"])
    assert e1.details["logit_discrepancy"] > 0 and e2.details["synops_hard"] > 0  # the net is not degenerate


def test_records_survive_json():
    model, x, y = tiny()
    for r in transfer.run(model, (x, y)):
        assert CheckResult.from_json(json.loads(json.dumps(r.to_json()))) == r


def test_cli_missing_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    assert transfer.main(["--model", str(tmp_path / "nope.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
