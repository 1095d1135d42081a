"""T6 check (checks.convergence) on synthetic run folders with known probe records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checks import convergence

TRAIN = {"method": "sast", "rho": 0.05, "sam_batch": "independent", "optimizer": "sgd", "lr": 0.1, "batch_size": 16}
PROBES = [  # step, F, ||grad F||^2, sigma^2
    (0, 2.30, 0.50, 3.0),
    (10, 1.90, 0.30, 4.0),
    (20, 1.50, 0.20, None),  # a record without a sigma^2 estimate
    (30, 1.20, 0.10, 2.0),
]


def _write_run(path: Path, train: dict, probes=PROBES, t4=((4.0, 1.5), (6.0, 2.5))) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"train": train, "model": {}}))
    lines = [{"kind": "train", "step": 10, "epoch": 0, "loss": 2.0}]
    for s, f, g2, s2 in probes:
        lines.append({"kind": "probe", "step": s, "epoch": 0, "loss": f, "grad_norm_sq": g2, "sigma2": s2,
                      "batch_size": train["batch_size"], "n_probe": 128})
    for i, (L, est) in enumerate(t4):
        lines.append({"kind": "check", "step": 10 * (i + 1), "epoch": i + 1,
                      "result": {"id": "T4", "bound": L, "estimate": est, "assumptions": {"A1": True, "A4": True},
                                 "details": {"lambda_min": -0.1, "lambda_max": est}}})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _rhs(L, K, eta=0.1, rho=0.05, sigma2=4.0, b=16, F0=2.30):
    return 2 * F0 / (eta * K) + L ** 2 * rho ** 2 + L * eta * sigma2 / b


def test_running_mean_and_rhs_equal_hand_computation(tmp_path):
    r = convergence.run_folder(_write_run(tmp_path / "run", TRAIN))
    d = r.details
    assert d["steps"] == [0, 10, 20, 30] and d["K"] == [1, 11, 21, 31]
    assert d["running_mean"] == pytest.approx([0.5, 0.4, 1.0 / 3, 0.275], rel=1e-12)
    assert d["sigma2"] == 4.0 and d["F0"] == 2.30 and d["F0_step"] == 0
    assert d["L"] == 6.0 and d["L_latest"] == 6.0 and d["L_local"] == 2.5  # largest logged T4 bound and |lambda|
    assert d["rhs"] == pytest.approx([_rhs(6.0, K) for K in (1, 11, 21, 31)], rel=1e-12)
    assert d["rhs_local"] == pytest.approx([_rhs(2.5, K) for K in (1, 11, 21, 31)], rel=1e-12)
    ratios = [m / _rhs(6.0, K) for m, K in zip(d["running_mean"], (1, 11, 21, 31))]
    j = max(range(4), key=ratios.__getitem__)
    assert r.estimate == pytest.approx(d["running_mean"][j]) and r.bound == pytest.approx(_rhs(6.0, d["K"][j]))
    assert d["K_worst"] == d["K"][j]
    # eta L = 0.6 <= 1: the premise holds, so does the bound
    assert r.status == "holds" and r.assumptions["eta <= 1/L"] is True and d["applies"] is True
    assert d["probe_noise_floor"] == pytest.approx([3.0 / 128, 4.0 / 128, 4.0 / 128, 2.0 / 128])  # own sigma^2/n
    debiased = [0.5 - 3 / 128, 0.3 - 4 / 128, 0.2 - 4 / 128, 0.1 - 2 / 128]
    assert d["running_mean_debiased"] == pytest.approx([sum(debiased[:i]) / i for i in range(1, 5)], rel=1e-12)
    assert r.to_json()["id"] == "T6"


def test_step_size_above_one_over_L_is_an_assumption_that_fails(tmp_path):
    r = convergence.run_folder(_write_run(tmp_path / "run", {**TRAIN, "lr": 0.5}))
    assert r.assumptions["eta <= 1/L"] is False and r.status == "assumption fails" and r.holds is True
    assert "1/L" in r.details["reason"]


def test_started_later_counts_K_from_the_first_logged_step(tmp_path):
    probes = [(100, 1.0, 0.4, 1.0), (150, 0.9, 0.2, 1.0)]
    r = convergence.run_folder(_write_run(tmp_path / "run", TRAIN, probes=probes))
    assert r.details["K"] == [1, 51] and r.details["F0"] == 1.0 and r.details["F0_step"] == 100


@pytest.mark.parametrize("change, reason", [
    ({"optimizer": "adam"}, "adam"),
    ({"optimizer": "momentum"}, "momentum"),
    ({"method": "hfsb", "rho": 0.0}, "hfsb"),
    ({"sam_batch": "same"}, "independent"),
])
def test_not_applicable_says_why(tmp_path, change, reason):
    r = convergence.run_folder(_write_run(tmp_path / "run", {**TRAIN, **change}))
    assert r.status == "not applicable" and r.holds is None and r.bound is None
    assert reason in r.details["reason"] and r.details["applies"] is False
    assert r.details["running_mean"][-1] == pytest.approx(0.275)  # still shown


def test_violation_is_reported(tmp_path):
    # a gradient far above what T6 allows with a tiny L: the check must say so
    probes = [(0, 0.01, 50.0, 0.0), (10, 0.01, 50.0, 0.0)]
    r = convergence.run_folder(_write_run(tmp_path / "run", TRAIN, probes=probes, t4=((1e-3, 1e-3),)))
    assert r.status == "violated" and r.holds is False


def test_missing_probe_records_exit_2_with_one_line(tmp_path, capsys):
    run = _write_run(tmp_path / "run", TRAIN, probes=[])
    assert convergence.main(["--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "--monitor default" in err
    assert convergence.main(["--run", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_cli_with_model_path_reads_its_parent_folder(tmp_path, capsys):
    run = _write_run(tmp_path / "run", TRAIN)
    out = tmp_path / "t6.json"
    assert convergence.main(["--model", str(run / "ckpt.pt"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "T6" in text and "running mean" in text
    (res,) = json.loads(out.read_text())
    assert res["id"] == "T6" and res["details"]["steps"] == [0, 10, 20, 30]
