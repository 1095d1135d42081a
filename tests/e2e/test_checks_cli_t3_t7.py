"""`python -m checks.lipschitz / mechanism / transfer` on a tiny trained run, and their errors."""

from __future__ import annotations

import json

import pytest

from checks import lipschitz, mechanism, transfer

PROBE = ["--batch", "8", "--no-progress"]  # a small probe keeps each command to about a second


def _args(tiny_run, *extra):
    return ["--model", str(tiny_run / "ckpt.pt"), *PROBE, *extra]


def test_lipschitz_cli_holds_and_writes_json(tiny_run, tmp_path, capsys):
    out = tmp_path / "t3.json"
    assert lipschitz.main(_args(tiny_run, "--adversarial", "2", "--steps", "5", "--json", str(out))) == 0
    assert "T3" in capsys.readouterr().out
    (res,) = json.loads(out.read_text())
    assert res["id"] == "T3" and res["holds"] is True and res["status"] in ("holds", "assumption fails")
    assert 0 < res["estimate"] <= res["bound"] and res["dtype"] == "float32"
    assert len(res["details"]["jacobian_norm"]) == 8 and len(res["details"]["adversarial_ratio"]) == 2


def test_lipschitz_cli_hard_mode_is_not_applicable(tiny_run, tmp_path, capsys):
    out = tmp_path / "t3h.json"
    assert lipschitz.main(_args(tiny_run, "--mode", "hard", "--json", str(out))) == 0
    (res,) = json.loads(out.read_text())
    assert res["status"] == "not applicable" and res["bound"] is None and res["estimate"] is None
    assert "discontinuous" in capsys.readouterr().out


def test_mechanism_cli(tiny_run, tmp_path, capsys):
    out = tmp_path / "t7.json"
    assert mechanism.main(_args(tiny_run, "--json", str(out))) == 0
    (res,) = json.loads(out.read_text())
    assert res["id"] == "T7" and len(res["details"]["input_grad_norm"]) == 8
    if res["status"] == "not applicable":  # every probe sample rank deficient: reported, never a number
        assert res["details"]["reason"].startswith("condition fails") and res["bound"] is None
    else:
        assert res["holds"] is True and res["estimate"] <= res["bound"] * (1 + 1e-4)


def test_transfer_cli_prints_and_writes_both_results(tiny_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert transfer.main(_args(tiny_run, "--json", str(out))) == 0
    text = capsys.readouterr().out
    assert "E1" in text and "E2" in text and "empirical" in text
    e1, e2 = json.loads(out.read_text())
    assert (e1["id"], e2["id"]) == ("E1", "E2") and e1["details"]["n"] == 8
    assert 0 <= e2["details"]["int8_hard_acc"] <= 1


@pytest.mark.parametrize("main", [lipschitz.main, mechanism.main, transfer.main])
def test_bad_input_exits_2_with_one_line(main, tiny_run, capsys):
    assert main(_args(tiny_run, "--batch", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch" in err, err


def test_lipschitz_negative_adversarial_exits_2(tiny_run, capsys):
    assert lipschitz.main(_args(tiny_run, "--adversarial", "-1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "adversarial" in err, err


@pytest.mark.parametrize("flags, word", [(["--split", "validation"], "split"), (["--device", "gpu"], "device"),
                                         (["--data", "no-such-data"], "no-such-data")])
def test_bad_split_device_or_data_exits_2_with_one_line(tiny_run, capsys, flags, word):
    assert transfer.main(_args(tiny_run, *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err


def test_the_probe_may_come_from_the_validation_part(tiny_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert transfer.main(_args(tiny_run, "--split", "val", "--batch", "500", "--json", str(out))) == 0
    e1, _ = json.loads(out.read_text())
    assert 0 < e1["details"]["n"] < 200  # the validation part of the 200 training samples (--limit 200)
