"""theory.local: the budget telescopes, and with worst-case constants every local formula is the global bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import ModelConstants, input_lipschitz, kappa_sum, smoothness, state_interval
from theory.local import (REMAINING, Step, T4Factors, budget, input_lipschitz_local, smoothness_local,
                          state_interval_local, top_factor)
from theory.scalar import sigmoid_derivative_sup

POSITIVE = st.floats(1e-6, 1e6)


@given(bound=POSITIVE, values=st.lists(POSITIVE, min_size=0, max_size=12), estimate=POSITIVE)
def test_budget_log_ratios_sum_to_the_global_slack(bound: float, values: list[float], estimate: float) -> None:
    steps = [Step(f"f{i}", None, None, v) for i, v in enumerate(values)]
    entries, why = budget(bound, steps, estimate)
    assert why is None and len(entries) == len(values) + 1 and entries[-1]["factor"] == REMAINING
    # telescoping: sum of log10(before/after) = log10(bound/estimate), exact up to rounding of O(10) logs
    assert abs(sum(e["log10_ratio"] for e in entries) - math.log10(bound / estimate)) <= 1e-9


def test_budget_without_a_positive_estimate_says_why() -> None:
    entries, why = budget(10.0, [Step("a", 1, 1, 5.0)], 0.0)
    assert entries[0]["log10_ratio"] == pytest.approx(math.log10(2.0))
    assert entries[1]["log10_ratio"] is None and "finite positive" in why
    assert top_factor(entries)["factor"] == "a"


def _constants(reset: str, kinds: tuple[str, ...]) -> ModelConstants:
    D = len(kinds)
    conv = [k == "conv" for k in kinds]
    return ModelConstants(lam=0.9, theta=1.0, beta=2.0, reset=reset, T=7, n=(5, 4, 3)[:D], n_0=6,
                          R=(1.3, 0.7, 2.1)[:D], R_inf=(2.0, 1.5, 3.0)[:D], b_inf=(0.1, 0.2, 0.05)[:D],
                          b_norm=(0.2, 0.3, 0.1)[:D], R_o=1.7, A=2.5, X_inf=1.0, kinds=kinds,
                          m=tuple(2.0 if c else 1.0 for c in conv), P=tuple(9 if c else 1 for c in conv))


CASES = [("zero", ("dense",)), ("subtract", ("dense", "dense", "dense")), ("zero", ("conv", "dense")),
         ("subtract", ("conv",))]


@pytest.mark.parametrize("reset, kinds", CASES)
def test_worst_case_factors_give_theorys_T4(reset: str, kinds: tuple[str, ...]) -> None:
    c = _constants(reset, kinds)
    rec = smoothness(c, h=1e-3)
    b1, b2 = sigmoid_derivative_sup(1, c.beta), sigmoid_derivative_sup(2, c.beta)
    f = T4Factors(K=rec.details["K"], Aterm=[math.sqrt(m * m * A * A + P) for m, A, P in zip(c.m, rec.details["A_l"], c.P)],
                  J1=[0.0] + [r * b1 for r in c.R[1:]], J2=[0.0] + [r * b2 for r in c.R[1:]], sig1=[b1] * c.D,
                  sig2=[b2] * c.D, gam=rec.details["gam"], m=list(c.m), own_o=math.sqrt(c.n[-1] + 1),
                  J1_o=c.R_o * b1, J2_o=c.R_o * b2)
    out = smoothness_local(f)
    assert out["value"] == pytest.approx(rec.value, rel=1e-12)
    assert float(out["Z1"]) == pytest.approx(rec.details["Z1"], rel=1e-12)
    # per-sample arrays: a sample whose factors are smaller gets a smaller bound, the mean lies between
    f.K = [np.array([k, 0.5 * k]) for k in rec.details["K"]]
    L = smoothness_local(f)["L"]
    assert L[0] == pytest.approx(rec.value, rel=1e-12) and L[1] < L[0]


@pytest.mark.parametrize("reset, kinds", CASES)
def test_worst_case_factors_give_theorys_T3(reset: str, kinds: tuple[str, ...]) -> None:
    c = _constants(reset, kinds)
    rec = input_lipschitz(c, h=1e-3)
    b1 = sigmoid_derivative_sup(1, c.beta)
    value = input_lipschitz_local(c.R_o, c.T, list(c.R), [b1] * c.D, rec.details["K"])
    assert float(value) == pytest.approx(rec.value, rel=1e-12)
    S = [b1 * k for k in rec.details["K"]]  # the spike-recurrence norm at its worst case
    assert float(input_lipschitz_local(c.R_o, c.T, list(c.R), [0.0] * c.D, [0.0] * c.D, S=S)) == pytest.approx(rec.value)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_worst_case_currents_give_theorys_T2(reset: str) -> None:
    c = _constants(reset, ("dense", "dense"))
    I_T = state_interval(c).details["I_T"]
    offsets = [c.R_inf[0] * c.X_inf + c.b_inf[0], c.R_inf[1] + c.b_inf[1]]
    for (lo, hi), c_l in zip(I_T, offsets):
        assert state_interval_local(c.lam, c.theta, reset, c.T, -c_l, c_l) == pytest.approx((lo, hi), rel=1e-12)
    # measured currents inside [-c, c] and a shallower reset give a sub-interval
    lo, hi = state_interval_local(c.lam, c.theta, reset, c.T, -0.5, 0.2, reset_depth=0.3)
    assert hi == pytest.approx(0.2 * kappa_sum(c.lam, c.T))
    assert lo == pytest.approx((-0.5 - (0.3 * c.theta if reset == "subtract" else 0.0)) * kappa_sum(c.lam, c.T))


def test_chain_substitutes_one_layer_at_a_time_and_the_layers_sum_to_the_slack() -> None:
    """Per-layer budget: each substitution splits into one step per layer (and the readout's), the steps telescope,
    and by_layer / by_factor regroup the same log ratios (their sums equal the total)."""
    from theory.local import READOUT, by_factor, by_layer, chain

    D = 3
    base = {"R_o": 2.0, "T": 4, "R": [3.0, 2.0, 5.0], "sig1": [0.5] * D, "K": [4.0] * D}
    subs = [("K", {"K": [2.0, 4.0, 1.0]}, [4.0] * D, [2.0, 4.0, 1.0]),  # layer 2 unchanged: no step
            ("sig1", {"sig1": [0.25, 0.1, 0.5]}, 0.5, [0.25, 0.1, 0.5]),
            ("head", {"N": 1.0}, None, 1.0)]
    steps, final = chain(base, subs, input_lipschitz_local, D=D)
    assert [(s.factor, s.layer) for s in steps] == [("K", 1), ("K", 3), ("sig1", 1), ("sig1", 2), ("head", READOUT)]
    assert [s.measured for s in steps[:2]] == [2.0, 1.0]
    assert final["K"] == [2.0, 4.0, 1.0] and final["sig1"] == [0.25, 0.1, 0.5]
    # each step is the bound after it: the same as evaluating the cumulative factors directly
    assert steps[1].value == pytest.approx(float(input_lipschitz_local(2.0, 4, [3.0, 2.0, 5.0], [0.5] * 3,
                                                                       [2.0, 4.0, 1.0])))
    glob = float(input_lipschitz_local(**base))
    entries, why = budget(glob, steps, 0.01)
    assert why is None
    total = math.log10(glob / 0.01)
    layers = by_layer(entries)
    assert [g["group"] for g in layers] == [1, 2, 3, READOUT, REMAINING]
    assert sum(g["log10_ratio"] for g in layers) == pytest.approx(total, abs=1e-12)
    assert [g["group"] for g in by_factor(entries)] == ["K", "sig1", "head", REMAINING]
    assert sum(g["log10_ratio"] for g in by_factor(entries)) == pytest.approx(total, abs=1e-12)
    assert layers[0]["log10_ratio"] == pytest.approx(math.log10(2.0) + math.log10(2.0), abs=1e-12)
