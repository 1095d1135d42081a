"""T1: the sympy derivations of theory.scalar against THEORY.md's stated constants and dense grids."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from theory import scalar
from theory.scalar import BETA, LAM, THETA, B, U

V = sp.Symbol("v", real=True)
SIG = 1 / (1 + sp.exp(-BETA * V))

# T1 as THEORY.md states it (typed here on purpose: the module derives them).
STATED_SIGMOID_SUP = {1: BETA / 4, 2: BETA**2 / (6 * sp.sqrt(3)), 3: BETA**3 / 8}
STATED_G_BOUND = {
    ("zero", 1): LAM * (1 + B * BETA / 4),
    ("zero", 2): LAM * (BETA / 2 + B * BETA**2 / (6 * sp.sqrt(3))),
    ("zero", 3): LAM * (3 * BETA**2 / (6 * sp.sqrt(3)) + B * BETA**3 / 8),
    ("subtract", 2): THETA * BETA**2 / (6 * sp.sqrt(3)),
}

BETAS = [0.25, 1.0, 5.0, 40.0]


def _dense_grid_around(centres: list[float], half_width: float, spacing: float) -> np.ndarray:
    """A grid of the given spacing around each centre (both signs), merged with a coarse grid."""
    coarse = np.linspace(-half_width, half_width, 200_001)
    fine = [c + np.arange(-2000, 2001) * spacing for c in centres for c in (c, -c)]
    return np.concatenate([coarse, *fine])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_sigmoid_sup_derived_equals_stated(order: int) -> None:
    assert sp.simplify(scalar.sigmoid_derivative_sup_expr(order) - STATED_SIGMOID_SUP[order]) == 0


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_sigmoid_polynomial_is_the_derivative(order: int) -> None:
    p = scalar.sigmoid_derivative_poly(order).as_expr()
    assert sp.simplify(sp.diff(SIG, V, order) - BETA**order * p.subs(scalar.S, SIG)) == 0


def test_sigmoid_sup_attained_at_the_stated_points() -> None:
    # sig' and sig''' peak at v = 0; |sig''| at v = ln(2 + sqrt 3)/beta.
    assert scalar.sigmoid_derivative_argmax(1) == [0]
    assert scalar.sigmoid_derivative_argmax(3) == [0]
    assert sp.simplify(scalar.sigmoid_derivative_argmax(2)[0] - sp.log(2 + sp.sqrt(3)) / BETA) == 0
    v2 = scalar.sigmoid_derivative_argmax(2)[0]
    value = sp.diff(SIG, V, 2).subs(V, v2)
    assert sp.simplify(sp.Abs(value) - STATED_SIGMOID_SUP[2]) == 0


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_sigmoid_sup_equals_dense_grid_max(order: int, beta: float) -> None:
    centres = [float(x.subs(BETA, beta)) for x in scalar.sigmoid_derivative_argmax(order)]
    grid = _dense_grid_around(centres, 40.0 / beta, 1e-5 / beta)
    grid_max = float(np.max(np.abs(scalar.sigmoid_derivative(grid, order, beta))))
    closed = scalar.sigmoid_derivative_sup(order, beta)
    assert grid_max <= closed * (1 + 1e-12)  # the closed form is a supremum
    assert grid_max >= closed * (1 - 1e-6)  # and it is attained (1e-6 relative, per the brief)


def test_sigmoid_values_and_range() -> None:
    v = np.linspace(-800, 800, 10_001)
    s = scalar.sigmoid(v, 3.0)
    assert np.all((s >= 0) & (s <= 1)) and np.all(np.isfinite(s))
    assert np.all(scalar.sigmoid_derivative(v, 1, 3.0) >= 0)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_sigmoid_derivative_numeric_matches_sympy(order: int) -> None:
    beta = 2.7
    f = sp.lambdify(V, sp.diff(SIG, V, order).subs(BETA, beta), "numpy")
    v = np.linspace(-6, 6, 1001)
    np.testing.assert_allclose(scalar.sigmoid_derivative(v, order, beta), f(v), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_g_derivative_numeric_matches_sympy(reset: str, order: int) -> None:
    rng = np.random.default_rng(order)
    for _ in range(3):
        lam, theta, beta = rng.uniform(0, 1), rng.uniform(0.1, 3), rng.uniform(0.2, 8)
        expr = scalar.g_derivative_expr(order, reset).subs({LAM: lam, THETA: theta, BETA: beta})
        f = sp.lambdify(U, expr, "numpy")
        u = np.linspace(theta - 8 / beta, theta + 8 / beta, 501)
        np.testing.assert_allclose(scalar.g_derivative(u, order, lam, theta, beta, reset), f(u) * np.ones_like(u), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_zero_reset_leibniz_form(order: int) -> None:
    # g^(n) = lam [u (1 - sig)^(n) + n (1 - sig)^(n-1)], the form the bounds are read from.
    one_minus = 1 - SIG.subs(V, U - THETA)
    leibniz = LAM * (U * sp.diff(one_minus, U, order) + order * sp.diff(one_minus, U, order - 1))
    assert sp.simplify(scalar.g_derivative_expr(order, "zero") - leibniz) == 0


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_zero_reset_g_derivative_is_the_leibniz_sum_of_sigmoid_derivatives(order: int) -> None:
    """g_derivative shares sig and 1 - sig between its two terms: the same numbers, bit for bit, as the sum
    built from sigmoid and sigmoid_derivative, per neuron values included."""
    u = np.linspace(-40.0, 40.0, 100_001)[:, None]
    lam, theta, beta = np.array([0.3, 0.9]), np.array([0.5, 2.0]), 3.0
    v = u - theta

    def one_minus(k: int) -> np.ndarray:
        return scalar.sigmoid(-v, beta) if k == 0 else -scalar.sigmoid_derivative(v, k, beta)

    want = u * one_minus(order) + (order * one_minus(order - 1) if order else 0.0)
    assert np.array_equal(scalar.g_derivative(u, order, lam, theta, beta, "zero"), lam * want)


@pytest.mark.parametrize("key", sorted(STATED_G_BOUND))
def test_g_bound_derived_equals_stated(key: tuple[str, int]) -> None:
    reset, order = key
    assert sp.simplify(scalar.g_derivative_bound_expr(order, reset) - STATED_G_BOUND[key]) == 0


def test_subtract_g_prime_range_derived_equals_stated() -> None:
    lo, hi = scalar.subtract_g_prime_range_expr()
    assert sp.simplify(lo - (LAM - THETA * BETA / 4)) == 0 and hi == LAM


def test_subtract_g_prime_range_on_grid() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        lam, theta, beta = rng.uniform(0, 1), rng.uniform(0.1, 3), rng.uniform(0.2, 8)
        u = np.concatenate([np.linspace(-50, 50, 200_001), theta + np.linspace(-1e-3, 1e-3, 2001)])
        d1 = scalar.g_derivative(u, 1, lam, theta, beta, "subtract")
        lo, hi = scalar.subtract_g_prime_range(lam, theta, beta)
        assert np.all(d1 >= lo - 1e-12) and np.all(d1 <= hi + 1e-12)
        assert d1.min() == pytest.approx(lo, rel=1e-9, abs=1e-12)  # attained at u = theta
        d2 = np.abs(scalar.g_derivative(u, 2, lam, theta, beta, "subtract"))
        closed = scalar.g_derivative_sup_bound(2, lam, theta, beta, "subtract")
        assert closed * (1 - 1e-3) <= d2.max() <= closed * (1 + 1e-12)  # sup attained; grid step 5e-4


@pytest.mark.parametrize("order", [1, 2, 3])
def test_zero_reset_bounds_hold_on_dense_grid(order: int) -> None:
    rng = np.random.default_rng(10 + order)
    for _ in range(20):
        lam, theta, beta, Bv = rng.uniform(0, 1), rng.uniform(0.05, 4), rng.uniform(0.1, 10), rng.uniform(0, 30)
        u = np.concatenate([np.linspace(-Bv, Bv, 100_001), np.clip(theta + np.linspace(-5, 5, 20_001) / beta, -Bv, Bv)])
        grid_max = np.max(np.abs(scalar.g_derivative(u, order, lam, theta, beta, "zero")))
        assert grid_max <= scalar.g_derivative_sup_bound(order, lam, theta, beta, "zero", Bv) * (1 + 1e-12)


def test_latex_strings_come_from_the_derivation() -> None:
    assert scalar.sigmoid_derivative_sup_latex(1) == r"\frac{\beta}{4}"
    assert r"\sqrt{3}" in scalar.g_derivative_bound_latex(2, "subtract")
    assert set(scalar.T1_LATEX) >= {"sigmoid'", "sigmoid''", "sigmoid'''", "zero g'", "subtract g'"}


@pytest.mark.parametrize(
    "call",
    [
        lambda: scalar.sigmoid_derivative_sup(-1, 1.0),
        lambda: scalar.sigmoid_derivative_sup(1.5, 1.0),
        lambda: scalar.g_derivative(0.0, 4, 0.5, 1.0, 1.0, "zero"),
        lambda: scalar.g_derivative(0.0, 1, 0.5, 1.0, 1.0, "soft"),
        lambda: scalar.g_derivative_sup_bound(1, 0.5, 1.0, 1.0, "zero"),
        lambda: scalar.g_derivative_sup_bound(1, 0.5, 1.0, 1.0, "zero", float("inf")),
        lambda: scalar.g_derivative_sup_bound(0, 0.5, 1.0, 1.0, "subtract"),
    ],
)
def test_bad_arguments_raise_one_line_value_error(call) -> None:
    with pytest.raises(ValueError) as err:
        call()
    assert "\n" not in str(err.value)
