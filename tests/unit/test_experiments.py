"""apps.experiments: grid axes and plans, intervals over seeds and paired differences against hand computations."""

from __future__ import annotations

import math

import pytest

from apps.experiments import mean_interval, paired, parse_axes, plan_runs, rank_correlations, summarise, train_config
from apps.experiments.plan import RunSpec, settings_product

T_975_DF2 = 4.302652729749464  # Student's t, 97.5% quantile, 2 degrees of freedom (tables)
T_975_DF4 = 2.7764451051977987


def test_mean_interval_is_the_t_interval():
    s = mean_interval([0.03, 0.01, 0.05])
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert s["mean"] == pytest.approx(0.03) and s["std"] == pytest.approx(0.02)
    assert s["lo"] == pytest.approx(0.03 - half, rel=1e-8) and s["hi"] == pytest.approx(0.03 + half, rel=1e-8)
    one = mean_interval([0.4])
    assert one["mean"] == 0.4 and one["lo"] is None and one["hi"] is None  # no interval from one seed
    assert mean_interval([None, float("nan")])["n"] == 0


def _row(method, rho, seed, hard, smooth=0.9, setting=""):
    return {"method": method, "rho": rho, "seed": seed, "setting": setting, "hard_acc": hard, "smooth_acc": smooth,
            "gap": smooth - hard}


def test_paired_differences_by_hand():
    sf = [0.20, 0.25, 0.19, 0.30, 0.22]
    sast = [0.24, 0.27, 0.20, 0.36, 0.23]
    matched = [0.30, 0.20, 0.25, 0.28, 0.26]
    rows = ([_row("sf", 0.0, s, h) for s, h in enumerate(sf)] + [_row("sast", 0.3, s, h) for s, h in enumerate(sast)]
            + [_row("sf-matched", 0.0, s, h) for s, h in enumerate(matched)])
    out = {(p["control"], p["field"]): p for p in paired(rows)}
    d = [a - b for a, b in zip(sast, sf)]  # 0.04 0.02 0.01 0.06 0.01
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    half = T_975_DF4 * sd / math.sqrt(5)
    p = out[("sf", "hard_acc")]
    assert p["diffs"] == pytest.approx(d) and p["mean"] == pytest.approx(mean)
    assert (p["lo"], p["hi"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert p["verdict"] == "higher"  # every seed improved: the interval excludes 0
    assert out[("sf", "gap")]["mean"] == pytest.approx(-mean)  # same smooth accuracy: the gap shrinks as much
    assert out[("sf-matched", "hard_acc")]["verdict"] == "not resolved"


def test_paired_uses_only_seeds_both_runs_have():
    rows = [_row("sf", 0.0, 0, 0.2), _row("sf", 0.0, 1, 0.3), _row("sast", 0.3, 1, 0.5)]
    p = next(p for p in paired(rows) if p["control"] == "sf" and p["field"] == "hard_acc")
    assert p["seeds"] == [1] and p["diffs"] == pytest.approx([0.2]) and p["verdict"] == "no interval (one seed)"


def test_summarise_groups_by_setting_method_rho():
    rows = [_row("sf", 0.0, s, 0.5 + 0.1 * s, setting="beta=1") for s in range(3)] + \
           [_row("sf", 0.0, s, 0.2, setting="beta=2") for s in range(3)]
    table = summarise(rows)
    assert [(r["setting"], r["method"]) for r in table] == [("beta=1", "sf"), ("beta=2", "sf")]
    assert table[0]["hard_acc_mean"] == pytest.approx(0.6) and table[0]["hard_acc_hi"] > 0.6 > table[0]["hard_acc_lo"]
    assert table[1]["hard_acc_lo"] == table[1]["hard_acc_hi"] == pytest.approx(0.2)  # no spread, a point


def test_rank_correlations_over_smooth_trained_runs():
    rows = [{"method": m, "rho": 0.0, "seed": i, "setting": "", "gap": g, "input_grad_norm_mean": x}
            for i, (m, g, x) in enumerate([("sf", 0.1, 1.0), ("sast", 0.2, 2.0), ("sf-matched", 0.3, 3.0),
                                           ("hfsb", 0.9, 0.0)])]
    c = next(c for c in rank_correlations(rows, xs=("input_grad_norm_mean",)) if c["scope"] == "all")
    assert c["n"] == 3 and c["spearman"] == pytest.approx(1.0)  # HFSB (hard-trained) left out


def test_parse_axes_types_and_errors():
    axes = parse_axes(["beta=0.5,1", "optimizer=sgd,adam", "T=10,20", "layers=dense:8,dense:8+dense:4", "rho=0,0.3"])
    assert axes == {"beta": [0.5, 1.0], "optimizer": ["sgd", "adam"], "T": [10, 20],
                    "layers": [("dense:8",), ("dense:8", "dense:4")], "rho": [0.0, 0.3]}
    for bad, message in [(["bta=1"], "did you mean 'beta'"), (["seed=1,2"], "--seeds"), (["beta"], "NAME=V1"),
                         (["T=1.5"], "not a valid value"), (["rho=-1"], ">= 0"), (["beta=1,1"], "repeated"),
                         (["beta=1", "beta=2"], "twice")]:
        with pytest.raises(ValueError, match=message):
            parse_axes(bad)


def test_plan_runs_every_control_at_every_setting():
    settings = settings_product(parse_axes(["beta=0.5,2", "rho=0,0.1,0.3"]))
    runs = plan_runs([0, 0.1, 0.3], 2, settings)
    assert len(runs) == 2 * 2 * 5
    assert {r.setting_tag for r in runs} == {"beta=0.5", "beta=2"}
    first = [r.path for r in runs[:5]]
    assert first == ["beta=0.5/hfsb-s0", "beta=0.5/sf-s0", "beta=0.5/sast-rho0.1-s0", "beta=0.5/sast-rho0.3-s0",
                     "beta=0.5/sf-matched-s0"]
    assert [r.name for r in plan_runs([0, 0.3], 1)] == ["hfsb-s0", "sf-s0", "sast-rho0.3-s0", "sf-matched-s0"]


def test_train_config_applies_setting_and_matches_compute():
    base = {"data": "synth-nmnist", "limit": 200}
    spec = RunSpec("sf-matched", 0.0, 3, (("beta", 2.0), ("layers", ("dense:8",))))
    assert hash(spec)  # a RunSpec keys the sweep's results
    cfg = train_config(spec, base, epochs=7)
    assert (cfg.method, cfg.epochs, cfg.seed, cfg.beta, cfg.layers) == ("sf", 14, 3, 2.0, ["dense:8"])
    assert train_config(RunSpec("sast", 0.3, 0), base, 7).rho == 0.3
