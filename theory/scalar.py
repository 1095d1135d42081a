"""T1: scalar lemmas on the sigmoid surrogate and the reset map g, derived with sympy.

Every constant here comes from a symbolic derivation, not from a typed number:

* sig_beta(v) = 1 / (1 + exp(-beta v)) has n-th derivative beta^n P_n(s) with
  s = sig_beta(v) and P_n a polynomial (P_0 = s, P_{n+1} = P_n'(s) s (1 - s)).
  sup |sig_beta^(n)| = beta^n max_{s in [0, 1]} |P_n(s)|, and that maximum is
  taken at a real root of P_n' or at s in {0, 1}: sympy finds the roots in
  closed form (``real_roots``), which gives beta/4, beta^2/(6 sqrt 3), beta^3/8.
* g (one step of the smooth-mode membrane recurrence, THEORY.md "The model"):
  zero reset g(u) = lam u (1 - sig_beta(u - theta)), subtract reset
  g(u) = lam u - theta sig_beta(u - theta). Its derivatives follow from Leibniz'
  rule in terms of sig_beta^(k); the T1 bounds follow by the triangle
  inequality with the sigmoid suprema above.

Numeric functions are vectorised over numpy arrays and evaluate the sigmoid
through ``scipy.special.expit`` (no overflow for large |v|).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike
from scipy.special import expit

RESETS = ("zero", "subtract")

# Symbols of THEORY.md (positive where A1 makes them so, to help simplification).
LAM, THETA, BETA, B = sp.symbols("lambda theta beta B", positive=True)
U, S = sp.symbols("u s", real=True)

_ORDER_ERROR = "order must be an integer >= 0 (sigmoid) or in 0..3 (g), got {order!r}; pass e.g. order=1"
_RESET_ERROR = "reset must be 'zero' or 'subtract', got {reset!r}; pass reset='zero' (the default of THEORY.md) or 'subtract'"


def _check_order(order: int, top: int | None = None) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0 or (top is not None and order > top):
        raise ValueError(_ORDER_ERROR.format(order=order))
    return int(order)


def _check_reset(reset: str) -> str:
    if reset not in RESETS:
        raise ValueError(_RESET_ERROR.format(reset=reset))
    return reset


# ---------------------------------------------------------------------------
# sigmoid: symbolic part


@cache
def sigmoid_derivative_poly(order: int) -> sp.Poly:
    """T1: the polynomial P_n(s) with sig_beta^(n)(v) = beta^n P_n(sig_beta(v)).

    From sig' = beta s (1 - s): d/dv P(s) = P'(s) beta s (1 - s), so
    P_0 = s and P_{n+1} = P_n'(s) s (1 - s).
    """
    order = _check_order(order)
    p = sp.Poly(S, S)
    for _ in range(order):
        p = sp.Poly(sp.expand(p.diff(S).as_expr() * S * (1 - S)), S)
    return p


@cache
def sigmoid_derivative_extremum(order: int) -> tuple[sp.Expr, sp.Expr]:
    """T1: (c_n, s*) with sup_v |sig_beta^(n)(v)| = c_n beta^n, attained at sig_beta(v) = s*.

    The maximum of |P_n| on [0, 1] is taken at an endpoint or at a real root of
    P_n' in [0, 1]; sympy's ``real_roots`` gives those roots exactly. For
    n = 0 the supremum 1 is approached as v -> +infinity (s* = 1), not attained.
    """
    order = _check_order(order)
    p = sigmoid_derivative_poly(order)
    candidates = [sp.Integer(0), sp.Integer(1)]
    dp = p.diff(S)
    if not dp.is_zero:
        candidates += [r for r in sp.real_roots(dp) if 0 <= r <= 1]
    values = [(sp.simplify(sp.Abs(sp.expand(p.as_expr().subs(S, r)))), r) for r in candidates]
    # Exact comparison of algebraic numbers (sympy decides the ordering of radicals).
    best_value, best_s = values[0]
    for value, root in values[1:]:
        if sp.simplify(value - best_value) > 0:
            best_value, best_s = value, root
    return sp.radsimp(best_value), best_s


def sigmoid_derivative_sup_expr(order: int) -> sp.Expr:
    """T1: sup_v |sig_beta^(n)(v)| as a sympy expression in beta (beta/4, sqrt(3) beta^2/18, beta^3/8 for n = 1, 2, 3)."""
    return sigmoid_derivative_extremum(order)[0] * BETA**order


def sigmoid_derivative_argmax(order: int) -> list[sp.Expr]:
    """T1: the points v >= 0 where |sig_beta^(n)| attains its supremum (the function is even/odd, so -v too), in closed form.

    v = logit(s*) / beta; empty for n = 0 (the supremum 1 is not attained).
    """
    _, s_star = sigmoid_derivative_extremum(order)
    if order == 0:
        return []
    odds = sp.expand(sp.radsimp(s_star / (1 - s_star)))
    return [sp.log(odds if odds >= 1 else sp.expand(sp.radsimp(1 / odds))) / BETA]


@cache
def _sup_coefficient(order: int) -> float:
    return float(sigmoid_derivative_extremum(order)[0])


def sigmoid_derivative_sup(order: int, beta: float) -> float:
    """T1: sup_v |sig_beta^(n)(v)| = c_n beta^n, with c_n from the symbolic derivation (n = 1: beta/4)."""
    return _sup_coefficient(_check_order(order)) * float(beta) ** order


# ---------------------------------------------------------------------------
# sigmoid: numeric part


@cache
def _poly_cofactor_coeffs(order: int) -> np.ndarray:
    """Coefficients (highest first) of Q_n with P_n(s) = s (1 - s) Q_n(s), n >= 1."""
    q, r = sp.div(sigmoid_derivative_poly(order).as_expr(), S * (1 - S), S)
    if r != 0:  # every P_n, n >= 1, carries the factor sig'(v) = s (1 - s)
        raise ArithmeticError(f"P_{order} is not divisible by s(1-s)")
    return np.array([float(c) for c in sp.Poly(q, S).all_coeffs()], dtype=float)


def sigmoid(v: ArrayLike, beta: float) -> np.ndarray:
    """T1: sig_beta(v) = 1 / (1 + exp(-beta v)), overflow-free."""
    return expit(float(beta) * np.asarray(v, dtype=float))


def sigmoid_derivative(v: ArrayLike, order: int, beta: float) -> np.ndarray:
    """T1: sig_beta^(n)(v) = beta^n s (1 - s) Q_n(s), s = sig_beta(v); 1 - s is computed as sig_beta(-v) for accuracy."""
    order = _check_order(order)
    x = float(beta) * np.asarray(v, dtype=float)
    if order == 0:
        return expit(x)
    sg, sc = expit(x), expit(-x)
    return float(beta) ** order * sg * sc * np.polyval(_poly_cofactor_coeffs(order), sg)


# ---------------------------------------------------------------------------
# the reset map g


def g_expr(reset: str) -> sp.Expr:
    """T1: g(u) of THEORY.md as a sympy expression in u, lam, theta, beta."""
    sig = 1 / (1 + sp.exp(-BETA * (U - THETA)))
    if _check_reset(reset) == "zero":
        return LAM * U * (1 - sig)
    return LAM * U - THETA * sig


@cache
def g_derivative_expr(order: int, reset: str) -> sp.Expr:
    """T1: g^(n)(u) as a sympy expression (plain differentiation of ``g_expr``)."""
    return sp.diff(g_expr(reset), U, _check_order(order, 3))


def g(u: ArrayLike, lam: float, theta: float, beta: float, reset: str) -> np.ndarray:
    """T1: the smooth-mode state map g(u) (zero: lam u (1 - sig(u - theta)); subtract: lam u - theta sig(u - theta))."""
    return g_derivative(u, 0, lam, theta, beta, reset)


def _coefficient(x: float | ArrayLike) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else np.asarray(x, dtype=float)


def g_derivative(u: ArrayLike, order: int, lam: float | ArrayLike, theta: float | ArrayLike, beta: float,
                 reset: str) -> np.ndarray:
    """T1: g^(n)(u), n = 0..3, vectorised; exact by Leibniz' rule in terms of sig_beta^(k)(u - theta).

    zero:     g^(n) = lam [u (1 - sig)^(n) + n (1 - sig)^(n-1)],  (1 - sig)^(k) = -sig^(k) for k >= 1
    subtract: g = lam u - theta sig, g' = lam - theta sig', g^(n) = -theta sig^(n) for n >= 2

    lam and theta may be arrays that broadcast against u (per-neuron values).
    """
    order = _check_order(order, 3)
    _check_reset(reset)
    x = np.asarray(u, dtype=float)
    lam, theta = _coefficient(lam), _coefficient(theta)
    v = x - theta

    def one_minus_sig(k: int) -> np.ndarray:
        return sigmoid(-v, beta) if k == 0 else -sigmoid_derivative(v, k, beta)

    if reset == "zero":
        # sig and 1 - sig once for both terms: the values sigmoid_derivative computes, bit for bit
        bv = float(beta) * np.asarray(v, dtype=float)
        sg, sc = expit(bv), expit(-bv)

        def one_minus_sig_from(k: int) -> np.ndarray:
            if k == 0:
                return sc
            return -(float(beta) ** k * sg * sc * np.polyval(_poly_cofactor_coeffs(k), sg))

        out = x * one_minus_sig_from(order)
        if order >= 1:
            out = out + order * one_minus_sig_from(order - 1)
        return lam * out
    if order == 0:
        return lam * x - theta * sigmoid(v, beta)
    out = -theta * sigmoid_derivative(v, order, beta)
    return out + lam if order == 1 else out


# ---------------------------------------------------------------------------
# T1 bounds on g


@cache
def g_derivative_bound_expr(order: int, reset: str) -> sp.Expr:
    """T1: the closed-form bound on sup |g^(n)| (n = 1..3) as a sympy expression in lam, theta, beta (and B for zero).

    zero, on |u| <= B (Leibniz + triangle inequality, |1 - sig| <= 1):
        lam (B sup|sig^(n)| + n sup|sig^(n-1)|)  with sup|sig^(0)| replaced by sup|1 - sig| = 1
        -> lam (1 + B beta/4), lam (beta/2 + B beta^2/(6 sqrt 3)), lam (3 beta^2/(6 sqrt 3) + B beta^3/8)
    subtract (all u): n = 1: max(lam, theta beta/4 - lam) since g' in [lam - theta beta/4, lam];
        n >= 2: theta sup|sig^(n)|.
    """
    order = _check_order(order, 3)
    if order == 0:
        raise ValueError("g_derivative_bound_expr bounds derivatives: order must be 1, 2 or 3, got 0")
    if _check_reset(reset) == "zero":
        lower = sp.Integer(1) if order == 1 else sigmoid_derivative_sup_expr(order - 1)
        return sp.expand(LAM * (B * sigmoid_derivative_sup_expr(order) + order * lower))
    if order == 1:
        lo_hi = subtract_g_prime_range_expr()
        return sp.Max(sp.Abs(lo_hi[0]), sp.Abs(lo_hi[1]))
    return THETA * sigmoid_derivative_sup_expr(order)


def subtract_g_prime_range_expr() -> tuple[sp.Expr, sp.Expr]:
    """T1 (subtract): g'(u) = lam - theta sig'(u - theta) lies in [lam - theta sup sig', lam] (sig' > 0)."""
    return LAM - THETA * sigmoid_derivative_sup_expr(1), LAM


def subtract_g_prime_range(lam: float, theta: float, beta: float) -> tuple[float, float]:
    """T1 (subtract): the interval [lam - theta beta/4, lam] that holds g'(u) for every u."""
    return float(lam) - float(theta) * sigmoid_derivative_sup(1, beta), float(lam)


def g_derivative_sup_bound(order: int, lam: float, theta: float, beta: float, reset: str, B: float | None = None) -> float:
    """T1: numeric value of the closed-form bound on |g^(n)| (n = 1..3); ``B`` (bound on |u|) is required for zero reset."""
    order = _check_order(order, 3)
    if order == 0:
        raise ValueError("g_derivative_sup_bound bounds derivatives: order must be 1, 2 or 3, got 0")
    lam, theta, beta = float(lam), float(theta), float(beta)
    if _check_reset(reset) == "zero":
        if B is None or not np.isfinite(B) or B < 0:
            raise ValueError(f"zero reset needs B >= 0 (a finite bound on |u|), got {B!r}; pass B=max|I_l|")
        lower = 1.0 if order == 1 else sigmoid_derivative_sup(order - 1, beta)
        return lam * (float(B) * sigmoid_derivative_sup(order, beta) + order * lower)
    if order == 1:
        lo, hi = subtract_g_prime_range(lam, theta, beta)
        return max(abs(lo), abs(hi))
    return theta * sigmoid_derivative_sup(order, beta)


# LaTeX of the T1 statements, for reports.
T1_LATEX: dict[str, str] = {
    "sigmoid": r"\sigma_\beta(v) = \frac{1}{1 + e^{-\beta v}} \in (0, 1)",
    "sigmoid'": r"0 < \sigma_\beta' \le \frac{\beta}{4}",
    "sigmoid''": r"|\sigma_\beta''| \le \frac{\beta^2}{6\sqrt{3}}",
    "sigmoid'''": r"|\sigma_\beta'''| \le \frac{\beta^3}{8}",
    "subtract g'": r"g' \in \left[\lambda - \frac{\theta\beta}{4},\ \lambda\right]",
    "subtract g''": r"|g''| \le \frac{\theta\beta^2}{6\sqrt{3}}",
    "zero g'": r"|g'| \le \lambda\left(1 + \frac{B\beta}{4}\right) \quad (|u| \le B)",
    "zero g''": r"|g''| \le \lambda\left(\frac{\beta}{2} + \frac{B\beta^2}{6\sqrt{3}}\right) \quad (|u| \le B)",
    "zero g'''": r"|g'''| \le \lambda\left(\frac{3\beta^2}{6\sqrt{3}} + \frac{B\beta^3}{8}\right) \quad (|u| \le B)",
}


def sigmoid_derivative_sup_latex(order: int) -> str:
    """T1: LaTeX of sup |sig_beta^(n)| = c_n beta^n, printed from the derived sympy expression."""
    return sp.latex(sigmoid_derivative_sup_expr(order))


def g_derivative_bound_latex(order: int, reset: str) -> str:
    """T1: LaTeX of the derived bound on |g^(n)| (zero reset: on |u| <= B)."""
    return sp.latex(g_derivative_bound_expr(order, reset))
