"""A1-A4, T2-T7: the closed-form bounds of THEORY.md, one function per statement.

Each function takes plain numbers or a ``ModelConstants`` and returns a
``Bound`` record. Records hold plain JSON types only (``dataclasses.asdict``
gives floats, ints, bools, strings, lists, dicts and None); a non-finite
number is stored as None, since JSON has no infinity.

Statuses: 'ok' (the statement's premises hold and ``value`` is the bound),
'assumption fails' (a premise fails: ``assumptions`` says which; ``value`` is
None unless the formula is still meaningful, see each function), 'not
applicable' (the statement does not speak about this case: ``reason`` says why;
``value`` is None).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np

from runfolder import plain
from theory._constants import ModelConstants
from theory.scalar import g_derivative, g_derivative_sup_bound, sigmoid_derivative_sup

OK, FAILS, NA = "ok", "assumption fails", "not applicable"

# Grid of the rigorous zero-reset kappa_l / gam_l (A4): with no spacing given, the
# spacing is chosen so that the grid correction h sup|f'|/2 is at most _GRID_TOL,
# within [_GRID_MIN_POINTS, _GRID_MAX_POINTS] points (the minimum resolves the
# critical points of g' even when the correction is already small; the maximum
# bounds the cost, and the correction actually used is reported in the details).
_GRID_TOL = 1e-6
_GRID_MIN_POINTS = 2**12 + 1
_GRID_MAX_POINTS = 2**20 + 1
_GRID_HARD_MAX_POINTS = 2**26 + 1  # an explicit h finer than this is refused
_GRID_CHUNK = 2**14  # grid points evaluated at once (a multiple of _GRID_STRIDE)
_GRID_STRIDE = 16  # every 16th grid point is evaluated first; it bounds each chunk's values (see _grid_sup)

# T7: s_T(X) below _T7_RTOL * s_1(X) counts as rank deficient. An SVD in float32 is
# accurate to about 1e-7 s_1 absolutely, so s_T above 1e-5 s_1 is known to ~1%.
_T7_RTOL = 1e-5

LATEX = {
    "A1": r"0 \le \lambda < 1,\ \theta > 0,\ \beta > 0",
    "T2": (
        r"c_l = \|W^l\|_\infty S_{l-1} + \|b^l\|_\infty,\ "
        r"\text{zero: } |u^l_{t,i}| \le c_l \frac{1-\lambda^t}{1-\lambda},\ "
        r"\text{subtract: } -(c_l+\theta)\frac{1-\lambda^t}{1-\lambda} \le u^l_{t,i} \le c_l \frac{1-\lambda^t}{1-\lambda}"
    ),
    "A4": r"\kappa_l = \sup_{u \in I_l} |g'(u)| < 1",
    "T3": r"L_{\mathrm{in}} = R_o T^{-1/2} \prod_{l=1}^{D} \frac{\beta}{4} R_l K_l,\quad K_l = \sum_{k<T} \kappa_l^k",
    "T4": (
        r"L = \tfrac12 Z_1^2 + \sqrt2 Z_2,\ Z_1 = \sqrt{n_D+1} + R_o S^1_D,\ Z_2 = 2 S^1_D + R_o S^2_D,\ "
        r"U^1_l = K_l(\sqrt{m_l^2 A_l^2 + P_l} + R_l S^1_{l-1}),\ S^1_l = \tfrac{\beta}{4} U^1_l,\ "
        r"U^2_l = K_l(\gamma_l (U^1_l)^2 + 2 m_l S^1_{l-1} + R_l S^2_{l-1}),\ "
        r"S^2_l = \frac{\beta^2}{6\sqrt3} (U^1_l)^2 + \tfrac{\beta}{4} U^2_l"
    ),
    "T5": (
        r"|F(w+\epsilon) - F(w) - \langle\nabla F, \epsilon\rangle| \le \tfrac{L\rho^2}{2},\ "
        r"0 \le \max_{\|\epsilon\|\le\rho} F(w+\epsilon) - F(w+\hat\epsilon) \le L\rho^2,\ "
        r"\|\nabla F(w+\hat\epsilon) - \nabla F(w)\| \le L\rho"
    ),
    "T6": (
        r"\frac1K \sum_{k<K} \mathbb{E}\|\nabla F(w_k)\|^2 \le "
        r"\frac{2(F(w_0) - F_{\inf})}{\eta K} + L^2\rho^2 + \frac{L\eta\sigma^2}{b}"
    ),
    "T7": r"\|\nabla_x \ell\|_F \le \|W^1\| \|D\|_F \le \frac{\|W^1\|}{s_T(X)} \|\nabla_{W^1} \ell\|_F",
}


@dataclass(frozen=True)
class Bound:
    """One statement of THEORY.md evaluated on given constants.

    id: statement ID ("T4"); name; value: the bound (None where not computed);
    status: 'ok' | 'assumption fails' | 'not applicable'; assumptions: the
    checkable premises and whether they hold ({"A1": True, "A4": False});
    finite_T: True when a premise that makes the bound uniform in T fails (A4),
    so the value holds only in its finite-T form with sum_{k<T} kappa^k and grows
    with T; latex: the formula; reason: why a premise fails or the statement does
    not apply; details: intermediate values (per-layer lists, in layer order).
    """

    id: str
    name: str
    value: float | None
    status: str
    assumptions: dict[str, bool]
    finite_T: bool
    latex: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in (OK, FAILS, NA):
            raise ValueError(f"Bound.status: expected 'ok', 'assumption fails' or 'not applicable', got {self.status!r}")
        if self.value is not None and not math.isfinite(self.value):
            note = f"the bound is {self.value} in float64 (stored as None)"
            object.__setattr__(self, "reason", f"{self.reason}; {note}" if self.reason else note)
        object.__setattr__(self, "value", plain(self.value))
        object.__setattr__(self, "assumptions", plain(self.assumptions))
        object.__setattr__(self, "details", plain(self.details))
        object.__setattr__(self, "finite_T", bool(self.finite_T))


def _number(name: str, x: object, *, lower: float = 0.0, strict: bool = False) -> float:
    ok = not isinstance(x, bool) and isinstance(x, (Real, np.floating)) and math.isfinite(float(x))
    if not ok or float(x) < lower or (strict and float(x) == lower):
        rel = ">" if strict else ">="
        raise ValueError(f"{name}: expected a finite number {rel} {lower:g}, got {x!r}")
    return float(x)


def _integer(name: str, x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, (Integral, np.integer)) or int(x) < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {x!r}")
    return int(x)


def _constants(c: object) -> ModelConstants:
    if not isinstance(c, ModelConstants):
        raise ValueError(f"expected a theory.ModelConstants, got {type(c).__name__}; build one with ModelConstants(lam=..., ...)")
    return c


# ---------------------------------------------------------------------------
# helpers


def kappa_sum(kappa: float, T: float) -> float:
    """T3/T4: K = sum_{k<T} kappa^k = (1 - kappa^T)/(1 - kappa) (= T at kappa = 1), for kappa >= 0.

    Computed as expm1(T log kappa) / (kappa - 1), accurate near kappa = 1 where
    the plain quotient cancels. T may be math.inf: 1/(1 - kappa) for kappa < 1,
    inf otherwise. Overflow gives inf.
    """
    kappa = _number("kappa_sum: kappa", kappa)
    if isinstance(T, bool) or not isinstance(T, (Integral, np.integer, Real)) or not (T == math.inf or float(T).is_integer()) or T < 0:
        raise ValueError(f"kappa_sum: T must be an integer >= 0 or math.inf, got {T!r}")
    if T == math.inf:
        return 1.0 / (1.0 - kappa) if kappa < 1.0 else math.inf
    T = int(T)
    if T == 0:
        return 0.0
    if kappa == 0.0:
        return 1.0
    if kappa == 1.0:
        return float(T)
    try:
        return math.expm1(T * math.log(kappa)) / (kappa - 1.0)
    except OverflowError:
        return math.inf


def _a1_failures(c: ModelConstants) -> list[str]:
    fails = []
    name_layer = c.D > 1 and not (isinstance(c.lam, float) and isinstance(c.theta, float))
    for l, layer in enumerate(c.neurons):
        where = f" in layer {l + 1}" if name_layer else ""
        lams, thetas = [a for a, _ in layer], [b for _, b in layer]
        if not (0.0 <= min(lams) and max(lams) < 1.0):
            bad = max(lams) if max(lams) >= 1.0 else min(lams)
            fails.append(f"lam = {bad:g} not in [0, 1){where}")
        if not min(thetas) > 0.0:
            fails.append(f"theta = {min(thetas):g} <= 0{where}")
    fails = list(dict.fromkeys(fails))  # one number for all layers: one line, not D
    if not c.beta > 0.0:
        fails.append(f"beta = {c.beta:g} <= 0")
    return fails


def _not_computed(id_: str, name: str, status: str, reason: str, assumptions: dict[str, bool], details: dict | None = None) -> Bound:
    return Bound(id_, name, None, status, assumptions, False, LATEX[id_], reason, details or {})


# ---------------------------------------------------------------------------
# A1


def assumption_A1(c: ModelConstants) -> Bound:
    """A1: 0 <= lam < 1, theta > 0, beta > 0 (checked on the constants; value is None)."""
    c = _constants(c)
    fails = _a1_failures(c)
    return Bound(
        "A1", "neuron", None, FAILS if fails else OK, {"A1": not fails}, False, LATEX["A1"], "; ".join(fails),
        {"lam": c.lam, "theta": c.theta, "beta": c.beta, **({} if all(len(p) == 1 for p in c.neurons) else
                                                            {"neuron_pairs": [len(p) for p in c.neurons]})},
    )


# ---------------------------------------------------------------------------
# T2


def state_interval_at(c: ModelConstants, t: float) -> list[tuple[float, float]]:
    """T2: per layer the interval [lo_l, hi_l] holding every u^l_{t,i} after t steps (t may be math.inf).

    c_l = ||W^l||_inf S_{l-1} + ||b^l||_inf, S_0 = X_inf, S_l = 1; with
    q = sum_{k<t} lam^k = (1 - lam^t)/(1 - lam): zero [-c_l q, c_l q],
    subtract [-(c_l + theta) q, c_l q]. With per-layer or per-neuron values each neuron's
    interval holds its own (lam, theta): the layer's is their union (q grows with lam), so
    hi = c_l q(lam_l) and lo the least of -(c_l + theta) q(lam) over the layer's pairs.
    Needs lam >= 0 (and theta >= 0 for subtract); at t = inf it needs lam < 1. Raises
    ValueError otherwise.
    """
    c = _constants(c)
    out = []
    for l, c_l in enumerate(_t2_offsets(c)):
        for lam, theta in c.neurons[l]:
            if lam < 0.0 or (c.reset == "subtract" and theta < 0.0) or (t == math.inf and lam >= 1.0):
                raise ValueError(f"T2 needs 0 <= lam (< 1 for t = inf) and theta >= 0, got lam = {lam:g}, theta = {theta:g}, t = {t}")
        hi = c_l * kappa_sum(c.layer_lam(l), t)
        if c.reset == "subtract":
            lo = min(-(c_l + theta) * kappa_sum(lam, t) for lam, theta in c.neurons[l])
        else:
            lo = -hi
        out.append((lo, hi))
    return out


def _t2_offsets(c: ModelConstants) -> list[float]:
    S = [c.X_inf] + [1.0] * (c.D - 1)
    return [R_inf * S_prev + b_inf for R_inf, S_prev, b_inf in zip(c.R_inf, S, c.b_inf)]


def state_interval(c: ModelConstants) -> Bound:
    """T2 (A1, A2; both modes, any beta): the state intervals I_l at t = infinity; value = max_l max|I_l|.

    details: c (c_l), I (I_l as [lo, hi]), B (max|I_l|), I_T (the tighter interval
    after the T steps a model runs, which holds even where A1 fails, for lam >= 0).
    """
    c = _constants(c)
    fails = _a1_failures(c)
    details: dict[str, Any] = {"c": _t2_offsets(c)}
    try:  # the finite-T interval needs only lam >= 0 (theta >= 0 for subtract), not all of A1
        details["I_T"] = state_interval_at(c, c.T)
    except ValueError:
        pass
    if fails:
        return _not_computed("T2", "state interval", FAILS, "; ".join(fails), {"A1": False}, details)
    I = state_interval_at(c, math.inf)
    B = [max(abs(lo), abs(hi)) for lo, hi in I]
    details.update(I=I, B=B)
    return Bound("T2", "state interval", max(B), OK, {"A1": True}, False, LATEX["T2"], "", details)


# ---------------------------------------------------------------------------
# A4


def _grid_sup(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, slope: float, h: float | None) -> tuple[float, float, float]:
    """Rigorous sup_{[lo, hi]} |f| <= max_grid |f| + h_eff slope / 2, where slope >= sup |f'|.

    Every point lies within h_eff/2 of a grid point (endpoints included), and
    |f| changes by at most slope * distance. Returns (bound, grid max, h_eff).

    The grid maximum is exact (the same number as evaluating every grid point) but most of
    the grid is never evaluated: every :data:`_GRID_STRIDE`-th point is evaluated first, and
    a chunk of the grid whose coarse values plus stride h_eff slope / 2 (the same Lipschitz
    argument on the coarse spacing) cannot exceed the best value found is skipped, since no
    grid point in it can. On the demo's intervals (2^20 points, one narrow peak of |g'|)
    this evaluates ~8% of the points; the live monitor refreshes A4 at every check.
    """
    width = hi - lo
    if width <= 0.0:
        m = float(np.max(np.abs(f(np.array([lo])))))
        return m, m, 0.0
    if h is None:
        target = 2.0 * _GRID_TOL / slope if slope > 0.0 else width
        points = min(max(math.ceil(width / target) + 1, _GRID_MIN_POINTS), _GRID_MAX_POINTS)
    else:
        points = math.ceil(width / h) + 1
        if points > _GRID_HARD_MAX_POINTS:
            raise ValueError(f"contraction: h = {h:g} needs {points} grid points on a width-{width:g} interval (max {_GRID_HARD_MAX_POINTS}); pass a larger h or h=None")
        points = max(points, 2)
    h_eff = width / (points - 1)

    def values(idx: np.ndarray) -> np.ndarray:  # |f| at grid points lo + idx h_eff (idx as floats: bit-identical values)
        return np.abs(f(lo + idx * h_eff))

    if points <= _GRID_CHUNK:
        m = float(np.max(values(np.arange(points, dtype=float))))
        return m + h_eff * slope / 2.0, m, h_eff
    coarse_idx = np.append(np.arange(0, points, _GRID_STRIDE, dtype=float), float(points - 1))
    coarse = values(coarse_idx)
    m = float(np.max(coarse))  # coarse points are grid points
    margin = _GRID_STRIDE * h_eff * slope / 2.0  # a grid point is within stride h_eff / 2 of a coarse point
    per_chunk = _GRID_CHUNK // _GRID_STRIDE
    chunks = []
    for start in range(0, points, _GRID_CHUNK):
        first = start // _GRID_STRIDE
        # the chunk's points lie between coarse points first .. first + per_chunk (the next chunk's first, or the end)
        chunks.append((float(np.max(coarse[first : first + per_chunk + 1])) + margin, start))
    for bound, start in sorted(chunks, reverse=True):
        if bound <= m:
            break  # this chunk and every later one (smaller bounds) holds no grid value above m
        m = max(m, float(np.max(values(np.arange(start, min(start + _GRID_CHUNK, points), dtype=float)))))
    return m + h_eff * slope / 2.0, m, h_eff


@functools.lru_cache(maxsize=64)
def _zero_reset_sups(lo: float, hi: float, lam: float, theta: float, beta: float,
                     h: float | None) -> tuple[float, float, float, float, float]:
    """Zero reset on [lo, hi]: (kappa, its grid max, h used, gam, its grid max) by :func:`_grid_sup`.

    A pure function of its arguments, memoised: A4, T3, T4 and T5 evaluated at one w (the
    live monitor's checks at one step, ``checks.all`` on one checkpoint) share one grid.
    """
    B = max(abs(lo), abs(hi))
    kappa, kappa_grid, h_used = _grid_sup(lambda x: g_derivative(x, 1, lam, theta, beta, "zero"), lo, hi,
                                          g_derivative_sup_bound(2, lam, theta, beta, "zero", B), h)
    gam, gam_grid, _ = _grid_sup(lambda x: g_derivative(x, 2, lam, theta, beta, "zero"), lo, hi,
                                 g_derivative_sup_bound(3, lam, theta, beta, "zero", B), h)
    return kappa, kappa_grid, h_used, gam, gam_grid


_SCREEN_MIN_PAIRS = 8  # a layer with more distinct thetas than this is screened first
_SCREEN_LEVELS = (2**10 + 1, 2**13 + 1, 2**16 + 1)  # the screening grids, coarse to fine
_SCREEN_ELEMENTS = 2**21  # grid values per array at once (16 MB of float64)


@functools.lru_cache(maxsize=16)  # A4, T3, T4 and T5 at one w ask for the same layer's pairs
def _zero_reset_candidates(lo: float, hi: float, pairs: tuple[tuple[float, float], ...],
                           beta: float) -> tuple[tuple[float, float], ...]:
    """The pairs whose fine sups give a layer's kappa_l and gam_l on [lo, hi] (zero reset), exactly.

    A layer with per-neuron values may have thousands of distinct pairs, and each pair's rigorous
    sup takes a fine grid. Two reductions lose nothing:

    1. g' and g'' of the zero reset are lam times a function of (u, theta): of the pairs that share
       a theta, the one with the largest lam has the largest sup, and its rigorous bound bounds the
       others' sups too. One pair per distinct theta.
    2. Where many thetas remain, a coarse grid for all of them bounds each pair's sup from above
       (grid max + h slope/2) and from below (the grid max: values of the function). A pair whose
       upper bound is below another's lower bound cannot hold the layer's max, so the max of the
       kept pairs' fine sups still bounds every pair's true sup (tests/unit/test_theory_bounds.py).
       Finer grids then screen the pairs that are left.
    """
    top: dict[float, float] = {}
    for lam, theta in pairs:
        top[theta] = max(lam, top.get(theta, lam))
    pairs = tuple((lam, theta) for theta, lam in sorted(top.items()))
    if hi <= lo:
        return pairs
    B = max(abs(lo), abs(hi))
    for points in _SCREEN_LEVELS:  # finer grids for fewer pairs, until few are left
        if len(pairs) <= _SCREEN_MIN_PAIRS:
            break
        u = np.linspace(lo, hi, points)[None, :]
        h_eff = (hi - lo) / (points - 1)
        step = max(1, _SCREEN_ELEMENTS // points)
        upper, lower = np.empty((2, len(pairs))), np.empty((2, len(pairs)))
        for i in range(0, len(pairs), step):
            chunk = pairs[i : i + step]
            lam = np.array([p[0] for p in chunk])[:, None]
            theta = np.array([p[1] for p in chunk])[:, None]
            for order in (1, 2):
                grid = np.abs(g_derivative(u, order, lam, theta, beta, "zero")).max(axis=1)
                slope = np.array([g_derivative_sup_bound(order + 1, a, b, beta, "zero", B) for a, b in chunk])
                lower[order - 1, i : i + len(chunk)] = grid
                upper[order - 1, i : i + len(chunk)] = grid + h_eff * slope / 2.0
        keep = (upper >= lower.max(axis=1, keepdims=True)).any(axis=0)
        pairs = tuple(p for p, k in zip(pairs, keep) if k)
    return pairs


def contraction(c: ModelConstants, h: float | None = None) -> Bound:
    """A4: kappa_l = sup_{u in I_l} |g'(u)| (rigorous upper bound) per layer, I_l from T2; value = max_l kappa_l.

    subtract: kappa = max(lam, |lam - theta beta/4|) (T1; A4 <=> theta beta < 4(1 + lam)),
    gam = theta beta^2/(6 sqrt 3). zero: kappa_l = max over a grid of spacing <= h on I_l
    of |g'| + h sup|g''|/2, gam_l = max of |g''| + h sup|g'''|/2, with sup|g''|, sup|g'''|
    from T1's closed forms at B = max|I_l|; kappa_crude = lam (1 + B beta/4) is T1's
    cruder bound. h=None picks the spacing (correction <= 1e-6 where 2^20 points allow).
    A4 holds iff every kappa_l < 1. details: kappa, gam, kappa_crude, I, h, and for zero
    the grid maxima kappa_grid, gam_grid. Per-layer (lam_l, theta_l) enter as they are; a
    layer with per-neuron values gets the max of each quantity over its (lam, theta) pairs.
    """
    c = _constants(c)
    if h is not None:
        h = _number("contraction: h", h, strict=True)
    fails = _a1_failures(c)
    if fails:
        return _not_computed("A4", "contraction", FAILS, "A1 fails: " + "; ".join(fails), {"A1": False, "A4": False})
    I = state_interval_at(c, math.inf)
    beta, reset = c.beta, c.reset
    details: dict[str, Any] = {"I": I, "kappa": [], "gam": [], "kappa_crude": [], "h": []}
    worst: list[tuple[float, float]] = []  # per layer the (lam, theta) pair that gives kappa_l
    for l, (lo, hi) in enumerate(I):
        B = max(abs(lo), abs(hi))
        per_pair = []  # a layer with per-neuron values: kappa_l, gam_l are the max over its pairs
        pairs = c.neurons[l] if reset == "subtract" else _zero_reset_candidates(lo, hi, c.neurons[l], beta)
        for lam, theta in pairs:
            crude = g_derivative_sup_bound(1, lam, theta, beta, reset, B)
            if reset == "subtract":
                per_pair.append((crude, g_derivative_sup_bound(2, lam, theta, beta, reset), 0.0, crude, 0.0, 0.0,
                                 (lam, theta)))
            else:
                kappa, kappa_grid, h_used, gam, gam_grid = _zero_reset_sups(lo, hi, lam, theta, beta, h)
                per_pair.append((kappa, gam, h_used, crude, kappa_grid, gam_grid, (lam, theta)))
        top = max(per_pair, key=lambda p: p[0])
        details["kappa"].append(top[0])
        details["gam"].append(max(p[1] for p in per_pair))
        details["kappa_crude"].append(max(g_derivative_sup_bound(1, lam, theta, beta, reset, B) for lam, theta in c.neurons[l]))
        details["h"].append(max(p[2] for p in per_pair))
        if reset == "zero":
            details.setdefault("kappa_grid", []).append(max(p[4] for p in per_pair))
            details.setdefault("gam_grid", []).append(max(p[5] for p in per_pair))
        worst.append(top[6])
    kappas = details["kappa"]
    a4 = all(k < 1.0 for k in kappas)
    reason = "" if a4 else "kappa_l >= 1 in layer(s) " + ", ".join(str(i + 1) for i, k in enumerate(kappas) if k >= 1.0)
    if not a4 and reset == "subtract":
        lam, theta = worst[next(i for i, k in enumerate(kappas) if k >= 1.0)]
        reason += f" (subtract: A4 <=> theta beta < 4 (1 + lam), here {theta * beta:g} >= {4 * (1 + lam):g})"
    return Bound("A4", "contraction", max(kappas), OK if a4 else FAILS, {"A1": True, "A4": a4}, not a4, LATEX["A4"], reason, details)


# ---------------------------------------------------------------------------
# T3, T4


def _smooth_only(c: ModelConstants, id_: str, name: str) -> Bound | None:
    """The 'not applicable' / 'assumption fails' record shared by T3 and T4, or None when they apply."""
    if c.mode == "hard":
        why = "hard mode: z(x) is discontinuous, no Lipschitz constant" if id_ == "T3" else "hard mode: T4 bounds the smooth (surrogate) objective"
        return _not_computed(id_, name, NA, why, {})
    if c.max_pool:
        return _not_computed(id_, name, NA, "max pooling is not smooth", {})
    fails = _a1_failures(c)
    if fails:
        return _not_computed(id_, name, FAILS, "A1 fails: " + "; ".join(fails), {"A1": False})
    return None


def input_lipschitz(c: ModelConstants, h: float | None = None) -> Bound:
    """T3 (A1-A3, smooth mode): L_in = R_o T^{-1/2} prod_l (beta/4) R_l K_l, K_l = sum_{k<T} kappa_l^k.

    kappa_l from ``contraction(c, h)`` (A4). Where A4 fails the finite-T form still
    holds (finite_T = True: it grows with T). details: kappa, K, grad_x_bound =
    sqrt(2) L_in (bound on ||grad_x l||_{2,2} for cross-entropy), and L_in_T_uniform
    (with K_l = 1/(1 - kappa_l), None where A4 fails). Hard mode or max pooling:
    'not applicable'.
    """
    c = _constants(c)
    skip = _smooth_only(c, "T3", "input Lipschitz")
    if skip is not None:
        return skip
    a4 = contraction(c, h)
    kappas = a4.details["kappa"]
    K = [kappa_sum(k, c.T) for k in kappas]
    slope = sigmoid_derivative_sup(1, c.beta)

    def chain(Ks: list[float]) -> float:
        return c.R_o / math.sqrt(c.T) * math.prod(slope * R * K_l for R, K_l in zip(c.R, Ks))

    L_in = chain(K)
    ok4 = a4.assumptions["A4"]
    details = {
        "kappa": kappas, "K": K, "grad_x_bound": math.sqrt(2.0) * L_in,
        "L_in_T_uniform": chain([kappa_sum(k, math.inf) for k in kappas]) if ok4 else None,
    }
    reason = "" if ok4 else "A4 fails: finite-T form, grows with T (" + a4.reason + ")"
    return Bound("T3", "input Lipschitz", L_in, OK, {"A1": True, "A4": ok4}, not ok4, LATEX["T3"], reason, details)


def smoothness(c: ModelConstants, h: float | None = None) -> Bound:
    """T4 (A1-A3): L = Z1^2/2 + sqrt(2) Z2, every Hessian eigenvalue of F (and of any minibatch loss) in [-L, L].

    Layer by layer (S1_0 = S2_0 = 0, A_1 = A, A_l = sqrt(n_{l-1}), K_l, kappa_l, gam_l from A4):
        U1_l = K_l (sqrt(m_l^2 A_l^2 + P_l) + R_l S1_{l-1}),   S1_l = (beta/4) U1_l
        U2_l = K_l (gam_l U1_l^2 + 2 m_l S1_{l-1} + R_l S2_{l-1}),
        S2_l = beta^2/(6 sqrt 3) U1_l^2 + (beta/4) U2_l
        Z1 = sqrt(n_D + 1) + R_o S1_D,   Z2 = 2 S1_D + R_o S2_D
    (dense layers have m_l = P_l = 1, the dense form of THEORY.md). Where A4 fails the
    finite-T form still holds (finite_T = True). Hard mode or max pooling: 'not applicable'.
    details: kappa, gam, K, A_l, U1, S1, U2, S2, Z1, Z2.
    """
    c = _constants(c)
    skip = _smooth_only(c, "T4", "smoothness")
    if skip is not None:
        return skip
    a4 = contraction(c, h)
    kappas, gams = a4.details["kappa"], a4.details["gam"]
    K = [kappa_sum(k, c.T) for k in kappas]
    d1, d2 = sigmoid_derivative_sup(1, c.beta), sigmoid_derivative_sup(2, c.beta)
    A_l = [c.A] + [math.sqrt(n) for n in c.n[:-1]]
    U1, S1, U2, S2 = [], [], [], []
    S1_prev = S2_prev = 0.0
    for K_l, gam, A, R, m, P in zip(K, gams, A_l, c.R, c.m, c.P):
        u1 = K_l * (math.sqrt(m * m * A * A + P) + R * S1_prev)
        s1 = d1 * u1
        u2 = K_l * (gam * u1 * u1 + 2.0 * m * S1_prev + R * S2_prev)
        s2 = d2 * u1 * u1 + d1 * u2
        U1.append(u1), S1.append(s1), U2.append(u2), S2.append(s2)
        S1_prev, S2_prev = s1, s2
    Z1 = math.sqrt(c.n[-1] + 1) + c.R_o * S1_prev
    Z2 = 2.0 * S1_prev + c.R_o * S2_prev
    L = 0.5 * Z1 * Z1 + math.sqrt(2.0) * Z2
    ok4 = a4.assumptions["A4"]
    details = {"kappa": kappas, "gam": gams, "K": K, "A_l": A_l, "U1": U1, "S1": S1, "U2": U2, "S2": S2, "Z1": Z1, "Z2": Z2}
    reason = "" if ok4 else "A4 fails: finite-T form, grows with T (" + a4.reason + ")"
    return Bound("T4", "smoothness", L, OK, {"A1": True, "A4": ok4}, not ok4, LATEX["T4"], reason, details)


# ---------------------------------------------------------------------------
# T5, T6, T7


def sam_first_order(L: float | None, rho: float) -> Bound:
    """T5 (L-smooth F): the SAM first-order bounds for ||eps|| <= rho; value = L rho^2/2.

    details: taylor = L rho^2/2 (|F(w+eps) - F(w) - <grad F, eps>|), ascent_step =
    L rho^2/2 (|F(w+eps_hat) - F(w) - rho ||grad F|||), inner_max_gap = L rho^2
    (max_{||eps||<=rho} F(w+eps) - F(w+eps_hat), which is also >= 0), grad_shift =
    L rho (||grad F(w+eps_hat) - grad F(w)||). L=None (no T4 bound): 'not applicable'.
    """
    rho = _number("sam_first_order: rho", rho)
    if L is None:
        return _not_computed("T5", "SAM first order", NA, "no smoothness constant L (T4 not applicable)", {}, {"rho": rho})
    L = _number("sam_first_order: L", L)
    details = {"L": L, "rho": rho, "taylor": L * rho**2 / 2, "ascent_step": L * rho**2 / 2, "inner_max_gap": L * rho**2, "grad_shift": L * rho}
    return Bound("T5", "SAM first order", L * rho**2 / 2, OK, {}, False, LATEX["T5"], "", details)


def convergence_rhs(
    L: float | None, rho: float, eta: float, sigma2: float, b: int, K: int, F0: float, F_inf: float = 0.0, base: str = "sgd"
) -> Bound:
    """T6 (A3, A5, L-smooth, plain SGD base step): 2(F0 - F_inf)/(eta K) + L^2 rho^2 + L eta sigma2 / b.

    Bounds (1/K) sum_{k<K} E||grad F(w_k)||^2 for SAST with an independent second
    minibatch of size b. The premise eta <= 1/L is checked: where it fails the
    status is 'assumption fails' but the value is still returned (for display).
    base != 'sgd' (momentum, Adam): 'not applicable'. L=None: 'not applicable'.
    details: the three terms (initial, sam, noise) and the inputs.
    """
    rho = _number("convergence_rhs: rho", rho)
    eta = _number("convergence_rhs: eta", eta, strict=True)
    sigma2 = _number("convergence_rhs: sigma2", sigma2)
    b, K = _integer("convergence_rhs: b", b), _integer("convergence_rhs: K", K)
    F0 = _number("convergence_rhs: F0", F0, lower=-math.inf)
    F_inf = _number("convergence_rhs: F_inf", F_inf, lower=-math.inf)
    if F0 < F_inf:
        raise ValueError(f"convergence_rhs: F0 = {F0:g} < F_inf = {F_inf:g}, but F_inf must lower-bound F; pass F_inf <= F0 (0 for cross-entropy)")
    if not isinstance(base, str) or not base:
        raise ValueError(f"convergence_rhs: base must be a name such as 'sgd', 'momentum' or 'adam', got {base!r}")
    inputs = {"rho": rho, "eta": eta, "sigma2": sigma2, "b": b, "K": K, "F0": F0, "F_inf": F_inf, "base": base}
    if base != "sgd":
        return _not_computed("T6", "convergence", NA, f"base step {base!r}: T6 covers the plain SGD base step only", {}, inputs)
    if L is None:
        return _not_computed("T6", "convergence", NA, "no smoothness constant L (T4 not applicable)", {}, inputs)
    L = _number("convergence_rhs: L", L)
    terms = {"initial": 2.0 * (F0 - F_inf) / (eta * K), "sam": L**2 * rho**2, "noise": L * eta * sigma2 / b}
    step_ok = eta * L <= 1.0
    reason = "" if step_ok else f"eta = {eta:g} > 1/L = {1.0 / L:g}"
    return Bound(
        "T6", "convergence", sum(terms.values()), OK if step_ok else FAILS, {"eta <= 1/L": step_ok}, False, LATEX["T6"], reason,
        {"L": L, **inputs, **terms},
    )


def local_mechanism(W1_norm: float, s_T: float, grad_W1_norm: float, *, s_1: float | None = None, rtol: float = _T7_RTOL) -> Bound:
    """T7 (dense first layer): ||grad_x l||_F <= (||W^1|| / s_T(X)) ||grad_{W^1} l||_F for one sample.

    s_T(X): the smallest singular value of X = [x_1 .. x_T]^T (T x n_0, needs
    T <= n_0). The condition (full row rank) fails when s_T <= 0, or, with the
    largest singular value s_1 given, when s_T <= rtol * s_1 (numerically rank
    deficient: rtol = 1e-5 keeps s_T accurate to about 1% in float32); then the
    status is 'not applicable' with reason 'condition fails' and no value.
    """
    W1_norm = _number("local_mechanism: W1_norm", W1_norm)
    s_T = _number("local_mechanism: s_T", s_T)
    grad_W1_norm = _number("local_mechanism: grad_W1_norm", grad_W1_norm)
    rtol = _number("local_mechanism: rtol", rtol)
    details: dict[str, Any] = {"W1_norm": W1_norm, "s_T": s_T, "grad_W1_norm": grad_W1_norm, "rtol": rtol}
    if s_1 is not None:
        details["s_1"] = _number("local_mechanism: s_1", s_1)
    condition = s_T > 0.0 and (s_1 is None or s_T > rtol * s_1)
    details["condition"] = condition
    if not condition:
        return _not_computed("T7", "local mechanism", NA, "condition fails", {"T7 condition": False}, details)
    return Bound("T7", "local mechanism", W1_norm / s_T * grad_W1_norm, OK, {"T7 condition": True}, False, LATEX["T7"], "", details)
