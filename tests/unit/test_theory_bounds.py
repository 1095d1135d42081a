"""A1, A4, T2-T7: theory.bounds on tiny hand-worked examples, dense grids, simulations, and bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import minimize_scalar
from scipy.special import expit

from theory import (
    ModelConstants,
    assumption_A1,
    contraction,
    convergence_rhs,
    input_lipschitz,
    kappa_sum,
    local_mechanism,
    sam_first_order,
    smoothness,
    state_interval,
    state_interval_at,
)
from theory.scalar import g_derivative, g_derivative_sup_bound


def one_neuron(**over) -> ModelConstants:
    """One dense spiking layer with one neuron and one input (the hand-worked examples)."""
    base = dict(lam=0.5, theta=1.0, beta=2.0, reset="subtract", T=2, n=(1,), n_0=1, R=(2.0,), R_inf=(2.0,), b_inf=(0.5,),
                b_norm=(0.5,), R_o=3.0, A=1.0, X_inf=1.0)
    return ModelConstants(**{**base, **over})


# ---------------------------------------------------------------------------
# ModelConstants


def test_constants_normalise_lists_and_defaults() -> None:
    c = one_neuron(n=[1], R=[2], kinds=None)
    assert c.n == (1,) and c.R == (2.0,) and c.kinds == ("dense",) and c.m == (1.0,) and c.P == (1,) and c.D == 1
    hash(c)  # frozen and hashable


@pytest.mark.parametrize(
    "over",
    [
        dict(reset="soft"), dict(mode="medium"), dict(T=0), dict(T=2.5), dict(n=()), dict(n=(0,)), dict(n_0=-1),
        dict(R=(1.0, 2.0)), dict(R=(-1.0,)), dict(R_inf=(float("nan"),)), dict(b_inf="1"), dict(R_o=float("inf")),
        dict(A=-1.0), dict(lam=float("nan")), dict(theta="1"), dict(kinds=("pool",)), dict(m=(2.0,)),
        dict(kinds=("conv",), m=(0.5,), P=(4,)), dict(kinds=("conv",), m=(2.0,), P=(0,)), dict(max_pool=1),
    ],
)
def test_constants_reject_bad_input_in_one_line(over: dict) -> None:
    with pytest.raises(ValueError) as err:
        one_neuron(**over)
    assert "\n" not in str(err.value) and "ModelConstants." in str(err.value)


def test_bad_statement_arguments_raise_one_line_value_error() -> None:
    calls = [
        lambda: state_interval({"lam": 0.5}), lambda: contraction(one_neuron(), h=0.0), lambda: kappa_sum(-0.1, 3),
        lambda: kappa_sum(0.5, 2.5), lambda: sam_first_order(1.0, -0.1), lambda: sam_first_order(float("nan"), 0.1),
        lambda: convergence_rhs(1.0, 0.1, 0.0, 1.0, 8, 10, 1.0), lambda: convergence_rhs(1.0, 0.1, 0.1, 1.0, 0, 10, 1.0),
        lambda: convergence_rhs(1.0, 0.1, 0.1, 1.0, 8, 10, 1.0, F_inf=2.0), lambda: convergence_rhs(1.0, 0.1, 0.1, 1.0, 8, 10, 1.0, base=""),
        lambda: local_mechanism(1.0, -1.0, 1.0), lambda: state_interval_at(one_neuron(lam=1.0), math.inf),
    ]
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------
# A1, kappa_sum


@pytest.mark.parametrize("over, holds", [({}, True), (dict(lam=0.0), True), (dict(lam=1.0), False), (dict(lam=-0.1), False),
                                         (dict(theta=0.0), False), (dict(beta=-1.0), False)])
def test_assumption_A1(over: dict, holds: bool) -> None:
    b = assumption_A1(one_neuron(**over))
    assert b.assumptions == {"A1": holds} and b.status == ("ok" if holds else "assumption fails") and bool(b.reason) != holds


@pytest.mark.parametrize("kappa", [0.0, 0.3, 0.9, 1 - 1e-9, 1.0, 1 + 1e-9, 1.7])
@pytest.mark.parametrize("T", [0, 1, 2, 7, 50])
def test_kappa_sum_equals_the_plain_sum(kappa: float, T: int) -> None:
    exact = sum(sp.Rational(kappa) ** k for k in range(T))  # exact rational arithmetic
    assert kappa_sum(kappa, T) == pytest.approx(float(exact), rel=1e-13, abs=0)


def test_kappa_sum_limits() -> None:
    assert kappa_sum(0.75, math.inf) == 4.0 and kappa_sum(1.0, math.inf) == math.inf and kappa_sum(3.0, 10**6) == math.inf
    assert kappa_sum(np.float64(0.5), np.int64(3)) == 1.75


# ---------------------------------------------------------------------------
# T2


def test_state_interval_one_neuron_by_hand() -> None:
    # c = ||W||_inf X_inf + ||b||_inf = 2 * 1 + 0.5 = 2.5; at t = inf: 2.5 / (1 - 0.5) = 5.
    zero = state_interval(one_neuron(reset="zero"))
    assert zero.details["c"] == [2.5] and zero.details["I"] == [[-5.0, 5.0]] and zero.value == 5.0
    sub = state_interval(one_neuron(reset="subtract"))  # lower end -(c + theta)/(1 - lam) = -7
    assert sub.details["I"] == [[-7.0, 5.0]] and sub.value == 7.0
    # finite t by iterating the worst-case recurrence hi_t = lam hi_{t-1} + c (an independent path)
    hi = lo = 0.0
    for t in range(1, 6):
        hi, lo = 0.5 * hi + 2.5, 0.5 * lo - 3.5
        assert state_interval_at(one_neuron(reset="subtract"), t) == [pytest.approx((lo, hi), rel=1e-15)]
    assert sub.details["I_T"] == [pytest.approx([-3.5 * 1.5, 2.5 * 1.5])]  # T = 2


def test_state_interval_second_layer_uses_spike_bound_one() -> None:
    c = one_neuron(reset="zero", n=(1, 1), R=(2.0, 3.0), R_inf=(2.0, 3.0), b_inf=(0.5, 0.25), b_norm=(0.5, 0.25), X_inf=4.0)
    assert state_interval(c).details["c"] == [2.0 * 4.0 + 0.5, 3.0 * 1.0 + 0.25]


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_state_interval_is_attained_by_a_silent_neuron(reset: str) -> None:
    # theta huge, hard mode: the neuron never fires, u_t = lam u_{t-1} + W x + b with x = X_inf,
    # W = R_inf, b = b_inf reaches the upper end exactly (a bound that is too small fails here).
    lam, W, b, X, T = 0.7, 1.5, 0.2, 2.0, 6
    c = one_neuron(reset=reset, lam=lam, theta=1e6, R_inf=(W,), b_inf=(b,), X_inf=X, T=T, mode="hard")
    u = 0.0
    for t in range(1, T + 1):
        u = lam * u + W * X + b
        assert u == pytest.approx(state_interval_at(c, t)[0][1], rel=1e-14)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("mode", ["smooth", "hard"])
def test_simulated_states_stay_in_the_interval(reset: str, mode: str) -> None:
    rng = np.random.default_rng(0)
    n0, n1, T, lam, theta, beta = 4, 3, 12, 0.8, 0.7, 3.0
    W, b = rng.normal(0, 1.5, (n1, n0)), rng.normal(0, 0.5, n1)
    x = rng.uniform(0, 1.0, (T, n0))
    c = one_neuron(reset=reset, mode=mode, lam=lam, theta=theta, beta=beta, T=T, n=(n1,), n_0=n0,
                   R_inf=(np.abs(W).sum(1).max(),), b_inf=(np.abs(b).max(),), X_inf=1.0)
    u, s = np.zeros(n1), np.zeros(n1)
    for t in range(1, T + 1):
        u = lam * u * (1 - s) + W @ x[t - 1] + b if reset == "zero" else lam * u - theta * s + W @ x[t - 1] + b
        s = expit(beta * (u - theta)) if mode == "smooth" else (u > theta).astype(float)
        (lo, hi), = state_interval_at(c, t)
        assert np.all(u >= lo) and np.all(u <= hi)


def test_state_interval_when_A1_fails() -> None:
    b = state_interval(one_neuron(lam=1.0, T=3))
    assert b.status == "assumption fails" and b.value is None and b.details["I_T"] == [[-3.5 * 3, 2.5 * 3]]


# ---------------------------------------------------------------------------
# A4


def test_contraction_subtract_closed_form_and_threshold() -> None:
    lam, theta = 0.5, 1.0
    # A4 <=> theta beta < 4 (1 + lam) = 6
    for beta, kappa in [(2.0, 0.5), (5.0, 0.75), (6.0 - 1e-9, 1.0 - 0.25e-9), (6.0, 1.0), (8.0, 1.5)]:
        b = contraction(one_neuron(lam=lam, theta=theta, beta=beta))
        assert b.value == pytest.approx(kappa, rel=1e-12)
        assert b.assumptions["A4"] == (theta * beta < 4 * (1 + lam)) and b.finite_T == (not b.assumptions["A4"])
        assert b.details["gam"] == [pytest.approx(theta * beta**2 / (6 * math.sqrt(3)))]


def _dense_sup(f, lo: float, hi: float) -> float:
    """sup |f| on [lo, hi] by a 2e6-point grid refined with a bounded scalar optimiser (independent of the module)."""
    x = np.linspace(lo, hi, 2_000_001)
    y = np.abs(f(x))
    i = int(np.argmax(y))
    a, b = x[max(i - 1, 0)], x[min(i + 1, len(x) - 1)]
    if b <= a:
        return float(y[i])
    res = minimize_scalar(lambda t: -abs(float(f(np.array([t]))[0])), bounds=(a, b), method="bounded", options={"xatol": 1e-13})
    return max(float(y[i]), -float(res.fun))


def test_contraction_zero_is_rigorous_and_close_to_the_true_sup() -> None:
    rng = np.random.default_rng(3)
    for _ in range(6):
        lam, theta, beta = rng.uniform(0.3, 0.95), rng.uniform(0.3, 2.0), rng.uniform(0.5, 6.0)
        c = one_neuron(reset="zero", lam=lam, theta=theta, beta=beta, R_inf=(rng.uniform(0.1, 1.0),), b_inf=(rng.uniform(0, 0.5),))
        (lo, hi), = state_interval_at(c, math.inf)
        true_kappa = _dense_sup(lambda u: g_derivative(u, 1, lam, theta, beta, "zero"), lo, hi)
        true_gam = _dense_sup(lambda u: g_derivative(u, 2, lam, theta, beta, "zero"), lo, hi)
        for h in (None, 1e-3):
            b = contraction(c, h=h)
            kappa, gam, h_used = b.value, b.details["gam"][0], b.details["h"][0]
            B = max(-lo, hi)
            assert h_used <= (h or math.inf)
            slack1 = h_used * g_derivative_sup_bound(2, lam, theta, beta, "zero", B) / 2
            slack2 = h_used * g_derivative_sup_bound(3, lam, theta, beta, "zero", B) / 2
            assert true_kappa <= kappa <= true_kappa + slack1 + 1e-12
            assert true_gam <= gam <= true_gam + slack2 + 1e-12
            assert kappa <= b.details["kappa_crude"][0]
            if h is None:  # the default spacing is close: correction <= 1e-6, or 2^20 points (here <= 1e-3)
                assert kappa - true_kappa <= 1e-3


def test_contraction_zero_a4_can_fail() -> None:
    b = contraction(one_neuron(reset="zero", lam=0.9, theta=2.0, beta=6.0, R_inf=(3.0,)), h=1e-3)
    assert b.status == "assumption fails" and b.assumptions == {"A1": True, "A4": False} and "layer(s) 1" in b.reason


def test_contraction_degenerate_interval() -> None:
    b = contraction(one_neuron(reset="zero", R_inf=(0.0,), b_inf=(0.0,)))  # I = [0, 0]: kappa = |g'(0)|
    assert b.details["I"] == [[0.0, 0.0]] and b.value == pytest.approx(0.5 * expit(2.0 * 1.0), rel=1e-12)


# ---------------------------------------------------------------------------
# T3, T4: hand-worked one-neuron examples in exact arithmetic (sympy), then numeric derivatives


def _exact_subtract_example():
    """lam = 1/2, theta = 1, beta = 2, T = 2, R = 2, R_o = 3, A = 1: kappa = max(1/2, |1/2 - 1/2|) = 1/2."""
    lam, theta, beta, T, R, R_o, A = sp.Rational(1, 2), 1, 2, 2, 2, 3, 1
    kappa = sp.Max(lam, abs(lam - sp.Rational(theta * beta, 4)))
    K = sum(kappa**k for k in range(T))  # 3/2
    gam = theta * beta**2 / (6 * sp.sqrt(3))
    L_in = R_o / sp.sqrt(T) * sp.Rational(beta, 4) * R * K
    U1 = K * sp.sqrt(A**2 + 1)
    S1 = sp.Rational(beta, 4) * U1
    U2 = K * gam * U1**2
    S2 = beta**2 / (6 * sp.sqrt(3)) * U1**2 + sp.Rational(beta, 4) * U2
    Z1 = sp.sqrt(1 + 1) + R_o * S1
    Z2 = 2 * S1 + R_o * S2
    return {"K": K, "L_in": L_in, "U1": U1, "S1": S1, "U2": U2, "S2": S2, "Z1": Z1, "Z2": Z2, "L": Z1**2 / 2 + sp.sqrt(2) * Z2}


def test_input_lipschitz_one_neuron_by_hand() -> None:
    ex = _exact_subtract_example()
    b = input_lipschitz(one_neuron())
    assert b.status == "ok" and not b.finite_T
    assert b.details["K"] == [pytest.approx(float(ex["K"]), rel=1e-15)]
    assert b.value == pytest.approx(float(ex["L_in"]), rel=1e-14)  # 3/sqrt(2) * 1/2 * 2 * 3/2 = 4.5/sqrt(2)
    assert b.details["grad_x_bound"] == pytest.approx(math.sqrt(2) * float(ex["L_in"]), rel=1e-14)
    assert b.details["L_in_T_uniform"] == pytest.approx(3 / math.sqrt(2) * 0.5 * 2 * 2, rel=1e-14)  # K = 1/(1 - 1/2)


def test_smoothness_one_neuron_by_hand() -> None:
    ex = _exact_subtract_example()
    b = smoothness(one_neuron())
    for key in ("U1", "S1", "U2", "S2"):
        assert b.details[key] == [pytest.approx(float(ex[key]), rel=1e-14)], key
    for key in ("Z1", "Z2"):
        assert b.details[key] == pytest.approx(float(ex[key]), rel=1e-14), key
    assert b.value == pytest.approx(float(ex["L"]), rel=1e-14)


def test_smoothness_two_layers_and_conv_replacements_by_hand() -> None:
    # Two one-channel layers; layer 2 sees A_2 = sqrt(n_1). Written out in exact arithmetic.
    lam, theta, beta, T = sp.Rational(1, 2), 1, 2, 2
    kappa = sp.Rational(1, 2)
    K = 1 + kappa
    gam = theta * beta**2 / (6 * sp.sqrt(3))
    d1, d2 = sp.Rational(beta, 4), beta**2 / (6 * sp.sqrt(3))
    n1, R1, R2, R_o, A, m2, P2 = 3, 2, sp.Rational(3, 2), 3, 1, 2, 5

    def exact(m: int, P: int) -> sp.Expr:
        U1 = [K * sp.sqrt(A**2 + 1)]
        S1 = [d1 * U1[0]]
        U2 = [K * gam * U1[0] ** 2]
        S2 = [d2 * U1[0] ** 2 + d1 * U2[0]]
        U1.append(K * (sp.sqrt(m**2 * n1 + P) + R2 * S1[0]))
        S1.append(d1 * U1[1])
        U2.append(K * (gam * U1[1] ** 2 + 2 * m * S1[0] + R2 * S2[0]))
        S2.append(d2 * U1[1] ** 2 + d1 * U2[1])
        Z1, Z2 = sp.sqrt(4 + 1) + R_o * S1[1], 2 * S1[1] + R_o * S2[1]
        return Z1**2 / 2 + sp.sqrt(2) * Z2

    common = dict(lam=float(lam), theta=theta, beta=beta, T=T, n=(n1, 4), R=(R1, float(R2)), R_inf=(1.0, 1.0), b_inf=(0.0, 0.0),
                  b_norm=(0.0, 0.0), R_o=R_o, A=A)
    dense = smoothness(one_neuron(**common))
    conv = smoothness(one_neuron(**common, kinds=("dense", "conv"), m=(1, m2), P=(1, P2)))
    assert dense.details["A_l"] == [1.0, pytest.approx(math.sqrt(n1))]
    assert dense.value == pytest.approx(float(exact(1, 1)), rel=1e-13)
    assert conv.value == pytest.approx(float(exact(m2, P2)), rel=1e-13)
    assert conv.value > dense.value


def _tiny_net(rng, reset: str):
    """One neuron, one input, two classes: a numpy forward pass and its constants."""
    lam, theta, beta, T = rng.uniform(0.2, 0.9), rng.uniform(0.3, 1.5), rng.uniform(1.0, 5.0), int(rng.integers(1, 5))
    p = rng.normal(0, 1.0, 6)  # W, b, Wo (2), bo (2)
    x = rng.uniform(0, 1.0, T)

    def logits(p: np.ndarray, x: np.ndarray) -> np.ndarray:
        u = s = 0.0
        z = np.zeros(2)
        for t in range(T):
            u = lam * u * (1 - s) + p[0] * x[t] + p[1] if reset == "zero" else lam * u - theta * s + p[0] * x[t] + p[1]
            s = expit(beta * (u - theta))
            z += (p[2:4] * s + p[4:6]) / T
        return z

    c = one_neuron(reset=reset, lam=lam, theta=theta, beta=beta, T=T, R=(abs(p[0]),), R_inf=(abs(p[0]),), b_inf=(abs(p[1]),),
                   b_norm=(abs(p[1]),), R_o=float(np.linalg.norm(p[2:4])), A=float(np.max(x)), X_inf=float(np.max(x)))
    return logits, p, x, c


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_tiny_net_derivatives_stay_within_T3_and_T4(reset: str) -> None:
    # Central differences (h = 1e-4: error ~1e-8, far below the slack) on the 6-parameter net.
    rng = np.random.default_rng({"zero": 5, "subtract": 6}[reset])
    step = 1e-4
    for _ in range(4):
        logits, p, x, c = _tiny_net(rng, reset)
        y = 0

        def loss(q: np.ndarray) -> float:
            z = logits(q, x)
            return float(np.logaddexp.reduce(z) - z[y])

        E = np.eye(6) * step
        H = np.array([[(loss(p + E[i] + E[j]) - loss(p + E[i] - E[j]) - loss(p - E[i] + E[j]) + loss(p - E[i] - E[j])) / (4 * step**2)
                       for j in range(6)] for i in range(6)])
        assert np.max(np.abs(np.linalg.eigvalsh((H + H.T) / 2))) <= smoothness(c, h=1e-3).value
        J = np.stack([(logits(p, x + s * step) - logits(p, x - s * step)) / (2 * step) for s in np.eye(len(x))], axis=1)
        assert np.linalg.norm(J, 2) <= input_lipschitz(c, h=1e-3).value


def test_T3_T4_finite_T_form_when_A4_fails() -> None:
    c = one_neuron(lam=0.5, theta=1.0, beta=8.0, T=3)  # subtract, kappa = |0.5 - 2| = 1.5
    b3, b4 = input_lipschitz(c), smoothness(c)
    for b in (b3, b4):
        assert b.status == "ok" and b.finite_T and b.assumptions == {"A1": True, "A4": False} and "A4 fails" in b.reason
    assert b3.details["K"] == [1 + 1.5 + 2.25] and b3.details["L_in_T_uniform"] is None
    assert input_lipschitz(dataclasses.replace(c, T=6)).value > b3.value  # grows with T
    huge = smoothness(dataclasses.replace(c, T=2000))  # 1.5^2000 overflows: no infinity in the record
    assert huge.value is None and "inf" in huge.reason and json.dumps(dataclasses.asdict(huge), allow_nan=False)


@pytest.mark.parametrize("fn", [input_lipschitz, smoothness])
def test_T3_T4_not_applicable_or_failing(fn) -> None:
    assert fn(one_neuron(mode="hard")).status == "not applicable"
    assert "max pooling" in fn(one_neuron(max_pool=True)).reason
    b = fn(one_neuron(lam=1.2))
    assert b.status == "assumption fails" and b.value is None and b.assumptions == {"A1": False}


# ---------------------------------------------------------------------------
# T5, T6, T7


def test_sam_first_order_values() -> None:
    b = sam_first_order(4.0, 0.5)
    assert b.value == 0.5 and b.details["inner_max_gap"] == 1.0 and b.details["grad_shift"] == 2.0 and b.details["ascent_step"] == 0.5
    assert sam_first_order(None, 0.5).status == "not applicable"


def test_sam_first_order_on_a_quadratic() -> None:
    # F = 0.5 w^T H w is L-smooth with L = max|eig H|; the T5 quantities are then exact.
    rng = np.random.default_rng(7)
    Q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    H = Q @ np.diag([3.0, -2.0, 1.0, 0.5, -0.1]) @ Q.T
    L, rho = 3.0, 0.4
    F = lambda w: 0.5 * w @ H @ w  # noqa: E731
    b = sam_first_order(L, rho)
    for _ in range(20):
        w = rng.normal(size=5)
        grad = H @ w
        eps = rng.normal(size=5)
        eps *= rho * rng.uniform() / np.linalg.norm(eps)
        assert abs(F(w + eps) - F(w) - grad @ eps) <= b.details["taylor"] + 1e-12
        eps_hat = rho * grad / np.linalg.norm(grad)
        assert abs(F(w + eps_hat) - F(w) - rho * np.linalg.norm(grad)) <= b.details["ascent_step"] + 1e-12
        assert np.linalg.norm(H @ (w + eps_hat) - grad) <= b.details["grad_shift"] + 1e-12


def _sast_on_quadratic(H: np.ndarray, w0: np.ndarray, eta: float, rho: float, sigma2: float, b: int, K: int, reps: int, seed: int):
    """T6's iteration with Gaussian gradient noise of total variance sigma2/b; returns E||grad F(w_k)||^2 for k < K."""
    rng = np.random.default_rng(seed)
    d = len(w0)
    sd = math.sqrt(sigma2 / b / d)
    w = np.tile(w0, (reps, 1))
    out = np.empty(K)
    for k in range(K):
        grad = w @ H
        out[k] = np.mean(np.sum(grad**2, axis=1))
        g1 = grad + sd * rng.normal(size=w.shape)  # minibatch B_k
        eps = rho * g1 / np.maximum(np.linalg.norm(g1, axis=1, keepdims=True), 1e-300)
        g2 = (w + eps) @ H + sd * rng.normal(size=w.shape)  # independent minibatch B'_k
        w = w - eta * g2
    return out


def test_convergence_rhs_on_a_noisy_quadratic() -> None:
    H = np.diag([2.0, 1.2, 0.6, 0.2])
    L, eta, rho, sigma2, b = 2.0, 0.25, 0.3, 1.0, 4
    w0 = np.ones(4)
    F0 = 0.5 * w0 @ H @ w0
    mean_sq = _sast_on_quadratic(H, w0, eta, rho, sigma2, b, K=120, reps=4000, seed=0)
    running = np.cumsum(mean_sq) / np.arange(1, 121)
    rhs = np.array([convergence_rhs(L, rho, eta, sigma2, b, K, F0).value for K in range(1, 121)])
    assert np.all(running <= rhs)
    assert convergence_rhs(L, rho, eta, sigma2, b, 120, F0).status == "ok"


def test_convergence_rhs_catches_a_missing_sam_term() -> None:
    # 1-D, w0 = 0: only noise and the SAM perturbation drive ||grad F||^2. The full RHS holds;
    # the SGD bound (rho = 0, i.e. without L^2 rho^2) is exceeded: the simulation can tell.
    H, L, eta, rho, sigma2, b, K = np.array([[1.0]]), 1.0, 0.5, 1.0, 1.0, 4, 200
    running = np.mean(_sast_on_quadratic(H, np.zeros(1), eta, rho, sigma2, b, K, reps=4000, seed=1))
    assert running <= convergence_rhs(L, rho, eta, sigma2, b, K, 0.0).value
    assert running > 1.5 * convergence_rhs(L, 0.0, eta, sigma2, b, K, 0.0).value


def test_convergence_rhs_terms_and_flags() -> None:
    b = convergence_rhs(2.0, 0.1, 0.25, 3.0, 6, 10, 1.5, F_inf=0.5)
    assert b.details["initial"] == pytest.approx(2 * 1.0 / (0.25 * 10)) and b.details["sam"] == pytest.approx(0.04)
    assert b.details["noise"] == pytest.approx(2.0 * 0.25 * 3.0 / 6) and b.value == pytest.approx(0.8 + 0.04 + 0.25)
    fast = convergence_rhs(2.0, 0.1, 0.6, 3.0, 6, 10, 1.5)
    assert fast.status == "assumption fails" and fast.assumptions == {"eta <= 1/L": False} and fast.value is not None
    adam = convergence_rhs(2.0, 0.1, 0.25, 3.0, 6, 10, 1.5, base="adam")
    assert adam.status == "not applicable" and adam.value is None and "adam" in adam.reason
    assert convergence_rhs(None, 0.1, 0.25, 3.0, 6, 10, 1.5).status == "not applicable"


def test_local_mechanism_inequality_on_random_samples() -> None:
    # grad_W1 = D X and grad_x = W1^T D (THEORY.md T7), checked for random D, X, W1 with T <= n_0.
    rng = np.random.default_rng(11)
    for _ in range(20):
        n1, n0, T = 4, 6, 3
        W1, D, X = rng.normal(size=(n1, n0)), rng.normal(size=(n1, T)), rng.uniform(0, 1, size=(T, n0))
        sv = np.linalg.svd(X, compute_uv=False)
        b = local_mechanism(np.linalg.norm(W1, 2), sv[-1], np.linalg.norm(D @ X), s_1=sv[0])
        assert b.status == "ok" and np.linalg.norm(W1.T @ D) <= b.value * (1 + 1e-12)


def test_local_mechanism_condition_fails() -> None:
    for s_T, s_1 in [(0.0, None), (0.0, 1.0), (1e-7, 1.0)]:
        b = local_mechanism(2.0, s_T, 1.0, s_1=s_1)
        assert b.status == "not applicable" and b.reason == "condition fails" and b.value is None
    assert local_mechanism(2.0, 0.5, 3.0).value == 12.0


# ---------------------------------------------------------------------------
# records


def test_records_are_plain_json() -> None:
    c = one_neuron(reset="zero", R=(np.float64(2.0),), n=(np.int64(1),))
    records = [assumption_A1(c), state_interval(c), contraction(c, h=1e-2), input_lipschitz(c, h=1e-2), smoothness(c, h=1e-2),
               sam_first_order(np.float32(2.0), 0.1), convergence_rhs(2.0, 0.1, 0.25, 1.0, 8, 10, 1.0),
               local_mechanism(1.0, 0.0, 1.0), input_lipschitz(one_neuron(mode="hard"))]
    for r in records:
        d = dataclasses.asdict(r)
        assert json.loads(json.dumps(d, allow_nan=False)) == d
        assert r.latex and r.id and r.name and r.status in ("ok", "assumption fails", "not applicable")
        assert type(r.value) in (float, type(None))


def test_theory_does_not_import_torch() -> None:
    code = "import theory, theory.scalar, theory.bounds, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_first_docstring_lines_name_a_statement() -> None:
    import inspect
    import re

    import theory
    import theory.bounds
    import theory.scalar

    for mod in (theory, theory.bounds, theory.scalar):
        for name, obj in vars(mod).items():
            if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__.startswith("theory"):
                assert re.match(r"(A\d|T\d)", obj.__doc__.strip().splitlines()[0]), name


def test_bound_fields_become_plain_json_types():
    from theory.bounds import Bound

    b = Bound(id="T4", name="smoothness", value=np.float64(2.5), status="ok",
              assumptions={"A1": np.bool_(True), "A4": np.bool_(False)}, finite_T=np.bool_(False), latex="L",
              details={"n": np.int64(3), "kappa": np.array([0.5, np.inf]), "per": (np.float32(0.25), np.nan),
                       1: [np.int32(7)]})
    assert type(b.value) is float and b.value == 2.5
    assert b.assumptions == {"A1": True, "A4": False} and all(type(v) is bool for v in b.assumptions.values())
    assert b.finite_T is False
    assert b.details == {"n": 3, "kappa": [0.5, None], "per": [0.25, None], "1": [7]}
    assert type(b.details["n"]) is int and type(b.details["1"][0]) is int and type(b.details["per"][0]) is float
    assert json.loads(json.dumps(dataclasses.asdict(b), allow_nan=False)) == dataclasses.asdict(b)


# ---------------------------------------------------------------------------
# lam_l, theta_l per layer, and per neuron


def two_layers(**over) -> ModelConstants:
    base = dict(lam=(0.5, 0.9), theta=(1.0, 0.3), beta=2.0, reset="subtract", T=4, n=(2, 3), n_0=2, R=(1.5, 2.0),
                R_inf=(2.0, 2.5), b_inf=(0.5, 0.2), b_norm=(0.6, 0.3), R_o=3.0, A=1.0, X_inf=1.0)
    return ModelConstants(**{**base, **over})


def _layer(c: ModelConstants, l: int) -> ModelConstants:
    """Layer l of c alone as a one-layer model with its (lam_l, theta_l) and the same offset c_l."""
    X_inf = c.X_inf if l == 0 else 1.0
    return dataclasses.replace(c, lam=c.layer_lam(l), theta=c.layer_theta(l), n=(c.n[l],), R=(c.R[l],), R_inf=(c.R_inf[l],),
                               b_inf=(c.b_inf[l],), b_norm=(c.b_norm[l],), X_inf=X_inf, neurons=None,
                               kinds=(c.kinds[l],), m=(c.m[l],), P=(c.P[l],))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_per_layer_values_give_each_layer_its_own_interval_and_kappa(reset: str) -> None:
    c = two_layers(reset=reset)
    t2, a4 = state_interval(c).details, contraction(c).details
    for l in range(2):
        alone = _layer(c, l)
        assert t2["I"][l] == pytest.approx(state_interval(alone).details["I"][0], rel=1e-15)
        assert a4["kappa"][l] == pytest.approx(contraction(alone).details["kappa"][0], rel=1e-15)
        assert a4["gam"][l] == pytest.approx(contraction(alone).details["gam"][0], rel=1e-15)
    # one number for both layers is the same as that number given per layer
    shared = two_layers(reset=reset, lam=0.7, theta=0.8)
    spread = two_layers(reset=reset, lam=(0.7, 0.7), theta=(0.8, 0.8))
    for f in (state_interval, contraction, input_lipschitz, smoothness):
        assert f(shared).value == f(spread).value


def test_A1_names_the_layer_whose_values_fail() -> None:
    b = assumption_A1(two_layers(lam=(0.5, 1.0)))
    assert b.status != "ok" and b.reason == "lam = 1 not in [0, 1) in layer 2"
    assert assumption_A1(two_layers(theta=(1.0, 0.0))).reason == "theta = 0 <= 0 in layer 2"


def test_per_neuron_pairs_take_the_max_over_pairs_not_over_lam_and_theta_apart() -> None:
    """Subtract, beta 4: kappa = max(lam, |lam - theta|). Pairs (0.9, 0.1) and (0.1, 3.0) give 0.9 and 2.9;
    the per-coordinate maxima (0.9, 3.0) would give 2.1, below the second neuron's |g'|."""
    pairs = ((0.1, 3.0), (0.9, 0.1))
    c = two_layers(beta=4.0, lam=(0.9, 0.9), theta=(3.0, 0.3), neurons=(pairs, ((0.9, 0.3),)))
    assert contraction(c).details["kappa"][0] == pytest.approx(2.9, rel=1e-15)
    maxima = two_layers(beta=4.0, lam=(0.9, 0.9), theta=(3.0, 0.3))
    assert contraction(maxima).details["kappa"][0] == pytest.approx(2.1, rel=1e-15)
    # T2 (subtract): the lower end is the least over the pairs of -(c_l + theta) q(lam)
    c_1 = c.R_inf[0] * c.X_inf + c.b_inf[0]
    lo, hi = state_interval_at(c, c.T)[0]
    assert lo == pytest.approx(min(-(c_1 + th) * kappa_sum(la, c.T) for la, th in pairs), rel=1e-15)
    assert hi == pytest.approx(c_1 * kappa_sum(0.9, c.T), rel=1e-15)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_per_neuron_kappa_bounds_every_neuron_on_the_layer_interval(reset: str) -> None:
    pairs = ((0.3, 1.5), (0.6, 0.4), (0.85, 0.9))
    c = two_layers(reset=reset, lam=(0.85, 0.9), theta=(1.5, 0.3), neurons=(pairs, ((0.9, 0.3),)))
    a4 = contraction(c).details
    lo, hi = a4["I"][0]
    for lam, theta in pairs:
        true = _dense_sup(lambda u: g_derivative(u, 1, lam, theta, c.beta, reset), lo, hi)
        assert true <= a4["kappa"][0] * (1 + 1e-12)
    best = max(_dense_sup(lambda u: g_derivative(u, 1, la, th, c.beta, reset), lo, hi) for la, th in pairs)
    assert a4["kappa"][0] <= best * (1 + 1e-3)  # rigorous, and close: the grid correction is small


def test_neurons_must_agree_with_the_per_layer_maxima() -> None:
    with pytest.raises(ValueError, match="largest lam and theta"):
        two_layers(lam=(0.8, 0.9), theta=(3.0, 0.3), neurons=(((0.1, 3.0), (0.9, 0.1)), ((0.9, 0.3),)))
    with pytest.raises(ValueError, match=r"neurons\[0\]"):
        two_layers(neurons=((), ((0.9, 0.3),)))


def test_screening_many_pairs_gives_the_sup_of_computing_every_pair() -> None:
    """A layer with hundreds of (lam, theta) pairs is screened on a coarse grid first; kappa_l and gam_l
    must still bound every pair's own rigorous sup, and equal the largest of them up to the fine grid."""
    rng = np.random.default_rng(0)
    pairs = tuple((float(a), float(b)) for a, b in zip(rng.uniform(0.5, 0.95, 300), rng.uniform(0.5, 2.0, 300)))
    lam, theta = max(p[0] for p in pairs), max(p[1] for p in pairs)
    c = two_layers(reset="zero", lam=(lam, 0.9), theta=(theta, 0.3), neurons=(pairs, ((0.9, 0.3),)))
    a4 = contraction(c).details
    lo, hi = a4["I"][0]
    own = [bounds_zero_sups(lo, hi, a, b, c.beta) for a, b in pairs]
    assert a4["kappa"][0] == pytest.approx(max(k for k, _ in own), rel=1e-12)
    assert a4["gam"][0] == pytest.approx(max(g for _, g in own), rel=1e-12)
    assert a4["kappa_crude"][0] == pytest.approx(lam * (1 + max(abs(lo), hi) * c.beta / 4), rel=1e-12)


def bounds_zero_sups(lo: float, hi: float, lam: float, theta: float, beta: float) -> tuple[float, float]:
    from theory.bounds import _zero_reset_sups

    kappa, _, _, gam, _ = _zero_reset_sups(lo, hi, lam, theta, beta, None)
    return kappa, gam
