"""Local bounds (T2-T7 at one w on one probe set) and the looseness budget: measured constants in, bound out.

Every statement of THEORY.md is proved with worst-case constants (kappa_l over T2's
interval, beta/4, ||W^l||, sqrt(n_{l-1}), cross-entropy's sqrt(2) and 1/2, ...). Each
function here evaluates the SAME proof with each constant replaced by the quantity it
bounds, measured at one parameter point w on one probe set (``checks.local`` measures
them). The result is a certificate for that point and data only, not over A3's set:
records say so (:data:`SCOPE`). With every constant at its worst case the functions give
the global bound of ``theory.bounds`` (tested), so substituting one factor at a time
gives a chain of valid bounds from the global one to the local one; :func:`budget`
turns the chain into log10 ratios that sum exactly to log10(global / estimate).

Shapes: a "per-sample" argument is a float or a 1-D array over the probe samples (the
constants of sample i bound the quantities of sample i); statements aggregate as their
estimates do (T3: max over samples, the estimate being the largest per-sample Jacobian
norm; T4: mean over samples, the probe loss being the mean of per-sample losses, so
its Hessian is bounded by the mean of per-sample bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from theory.bounds import kappa_sum

SCOPE = "local: at w on the probe ({n} samples)"
SCOPE_BALL = "local: on the rho-ball around w (rho = {rho:g}) on the probe ({n} samples)"
REMAINING = "remaining proof slack (local bound / estimate)"

SQRT2 = math.sqrt(2.0)
CE_HESSIAN = 0.5  # sup ||diag(p) - p p^T|| (cross-entropy Hessian in z)
CE_GRADIENT = SQRT2  # sup ||p - e_y||
CE_GRADIENT_LIPSCHITZ = 0.5  # ||d(p - e_y)/dz|| = ||diag(p) - p p^T|| <= 1/2
CE_HESSIAN_LIPSCHITZ = 1.5  # ||dH/dz[d]|| <= ||H d||_inf + 2 ||H d|| ||p|| <= (1/2 + 1) ||d||


READOUT = "readout"  # the budget's layer label of the readout's and the loss's constants


@dataclass(frozen=True)
class Step:
    """One substitution of a budget: ``factor`` (what is replaced), its worst-case and measured values, the bound after
    it, and ``layer`` (1..D: the constants of that spiking layer; :data:`READOUT`: the readout's and the loss's; None:
    not split by layer)."""

    factor: str
    worst_case: Any
    measured: Any
    value: float
    layer: int | str | None = None


def _log10(v: float) -> float | None:
    return math.log10(v) if v is not None and math.isfinite(v) and v > 0 else None


def budget(bound: float | None, steps: Sequence[Step], estimate: float | None) -> tuple[list[dict[str, Any]], str | None]:
    """The looseness budget: one entry per substitution, log10(before / after), then the remaining slack.

    The chain is bound -> steps[0].value -> ... -> steps[-1].value (the local bound) ->
    estimate; entry k has ``log10_ratio`` = log10(before) - log10(after), so the entries sum
    to log10(bound / estimate) (telescoping; exact up to float rounding). Returns
    (entries, reason): where a value is not a finite positive number no log ratio exists;
    those entries get ``log10_ratio`` None and the reason says why.
    """
    entries: list[dict[str, Any]] = []
    reason = None
    before = bound
    for s in steps:
        a, b = _log10(before), _log10(s.value)
        entries.append({"factor": s.factor, "worst_case": s.worst_case, "measured": s.measured,
                        "log10_ratio": None if a is None or b is None else a - b, "layer": s.layer})
        before = s.value
    a, b = _log10(before), _log10(estimate)
    entries.append({"factor": REMAINING, "worst_case": before, "measured": estimate,
                    "log10_ratio": None if a is None or b is None else a - b, "layer": None})
    if any(e["log10_ratio"] is None for e in entries):
        reason = "a bound or the estimate is not a finite positive number: no log ratio"
    return entries, reason


def _grouped(entries: Sequence[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    groups: dict[Any, float | None] = {}
    for e in entries:
        k = key(e)
        r = e.get("log10_ratio")
        if k not in groups:
            groups[k] = 0.0
        groups[k] = None if r is None or groups[k] is None else groups[k] + r
    return [{"group": k, "log10_ratio": v} for k, v in groups.items()]


def by_factor(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The budget summed over layers: one ``{group: factor, log10_ratio}`` per factor, in order of first appearance."""
    return _grouped(entries, lambda e: e["factor"])


def by_layer(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The budget summed over factors: one ``{group, log10_ratio}`` per layer (1..D, then "readout"), then the
    remaining proof slack (group :data:`REMAINING`); entries not split by layer are grouped under "all layers"."""
    def key(e: dict[str, Any]) -> Any:
        if e["factor"] == REMAINING:
            return REMAINING
        return "all layers" if e.get("layer") is None else e["layer"]

    order = lambda g: (0, g["group"]) if isinstance(g["group"], int) else (  # noqa: E731
        1 if g["group"] == READOUT else 2 if g["group"] == "all layers" else 3, 0)
    return sorted(_grouped(entries, key), key=order)


def top_factor(entries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The substitution with the largest log10 ratio (the remaining slack included), or None."""
    scored = [e for e in entries if e.get("log10_ratio") is not None]
    return max(scored, key=lambda e: e["log10_ratio"]) if scored else None


# ---------------------------------------------------------------------------
# T2


def state_interval_local(lam: float, theta: float, reset: str, T: int, current_lo: float, current_hi: float,
                         reset_depth: float = 1.0) -> tuple[float, float]:
    """T2 with measured currents: the interval holding u^l_{t,i}, t <= T, given I^l_{t,i} in [current_lo, current_hi].

    The proof of T2: |u_t| <= lam |u_{t-1}| + |I_t| (zero: 1 - s in [0, 1]); subtract adds
    -theta s_{t-1} in [-theta s_max, 0]. With q = sum_{k<T} lam^k:
    zero [min(I_lo, 0) q, max(I_hi, 0) q], subtract [(min(I_lo, 0) - theta s_max) q, max(I_hi, 0) q].
    With I in [-c_l, c_l] and s_max = 1 this is T2's interval I_T. ``reset_depth`` is s_max.
    """
    q = kappa_sum(lam, T)
    hi = max(current_hi, 0.0) * q
    lo = min(current_lo, 0.0) * q
    if reset == "subtract":
        lo -= theta * reset_depth * q
    return lo, hi


# ---------------------------------------------------------------------------
# T3


def input_lipschitz_local(R_o: float, T: int, R: Sequence[float], sig1: Sequence[Any], K: Sequence[Any],
                          S: Sequence[Any] | None = None, N: Any | None = None) -> np.ndarray:
    """T3 per sample: L_in = R_o T^{-1/2} prod_l f_l R_l with f_l = sig1_l K_l (the proof's bound on ||S_l||).

    S_l (optional, per layer, None entries allowed): the norm of layer l's unrolled spike
    recurrence ds^l = S_l (I (x) W^l) ds^{l-1} (block lower-triangular, measured) in place of
    sig1_l K_l. N (optional): the readout composite ||W^o Avg S_D (I (x) W^D)|| in place of
    R_o T^{-1/2} f_D R_D. Global constants (kappa over I_l, sig1 = beta/4, R_l) give T3's L_in.
    """
    D = len(R)
    f = [np.asarray(S[l] if S is not None and S[l] is not None else np.multiply(sig1[l], K[l]), dtype=float)
         for l in range(D)]
    inner = np.ones(())
    for l in range(D - 1):
        inner = inner * f[l] * R[l]
    head = np.asarray(N, dtype=float) if N is not None else R_o / math.sqrt(T) * f[-1] * R[-1]
    return np.asarray(head * inner, dtype=float)


# ---------------------------------------------------------------------------
# T4


@dataclass
class T4Factors:
    """The constants of T4's proof, each a float (worst case) or a per-sample array (measured).

    Per layer l = 1..D (lists of length D):
      K        time sum of the transition blocks (worst case sum_{k<T} kappa_l^k)
      Aterm    sqrt(m_l^2 A_l^2 + P_l) (bound on ||V a_t + bcast(v)||)
      own      bound on the layer's own-parameter term sup_t ||sum_j P_{j->t} (V a_j + v)||; None: K Aterm
      J1, J2   ||W^l a'|| <= J1 ||u'^{l-1}||, ||W^l diag(sig''^{l-1})|| <= J2 (worst case R_l sig1_{l-1},
               R_l sig2_{l-1}); entry 0 unused (the input does not depend on w)
      sig1, sig2, gam: sup sig', sup |sig''|, sup |g''| (worst case beta/4, beta^2/(6 sqrt 3), gam_l)
      m        T4's conv overlap factor (1 for dense)
    Readout: own_o (sqrt(n_D + 1)), J1_o (R_o sig1_D), J2_o (R_o sig2_D).
    Loss: Z1 (override of the Z1 recursion: the measured logit-Jacobian norm), Z2 (override of the Z2
    recursion: a measured bound on sup_V ||z''(V)||), h (cross-entropy Hessian bound 1/2), g (gradient
    bound sqrt 2), GN (override of h Z1^2: the measured Gauss-Newton norm).
    """

    K: list[Any]
    Aterm: list[Any]
    J1: list[Any]
    J2: list[Any]
    sig1: list[Any]
    sig2: list[Any]
    gam: list[Any]
    m: list[float]
    own_o: Any
    J1_o: Any
    J2_o: Any
    own: list[Any] | None = None
    Z1: Any = None
    Z2: Any = None
    h: Any = CE_HESSIAN
    g: Any = CE_GRADIENT
    GN: Any = None


def smoothness_local(f: T4Factors) -> dict[str, Any]:
    """T4's recursion on the given factors; returns per-sample L (array) and its mean, with U1, U2, Z1, Z2.

        U1_l = own_l + K_l J1_l U1_{l-1}                      (own_l = K_l Aterm_l unless given)
        U2_l = K_l (gam_l U1_l^2 + 2 m_l sig1_{l-1} U1_{l-1} + J2_l U1_{l-1}^2 + J1_l U2_{l-1})
        Z1   = own_o + J1_o U1_D,   Z2 = 2 sig1_D U1_D + J2_o U1_D^2 + J1_o U2_D
        L    = h Z1^2 + g Z2   (GN in place of h Z1^2, and Z1, Z2 in place of their recursions, where given)

    With J1_l = R_l sig1_{l-1}, J2_l = R_l sig2_{l-1} (S1 = sig1 U1, S2 = sig2 U1^2 + sig1 U2) this
    is THEORY.md's U1, S1, U2, S2, Z1, Z2 and L = Z1^2/2 + sqrt(2) Z2 term by term.
    """
    D = len(f.K)
    U1_prev, U2_prev, sig1_prev = 0.0, 0.0, 0.0
    U1s, U2s = [], []
    for l in range(D):
        K = np.asarray(f.K[l], dtype=float)
        own = f.own[l] if f.own is not None and f.own[l] is not None else K * np.asarray(f.Aterm[l], dtype=float)
        J1 = f.J1[l] if l > 0 else 0.0
        J2 = f.J2[l] if l > 0 else 0.0
        U1 = own + K * J1 * U1_prev
        U2 = K * (np.asarray(f.gam[l]) * U1 * U1 + 2.0 * f.m[l] * sig1_prev * U1_prev + J2 * U1_prev * U1_prev
                  + J1 * U2_prev)
        U1s.append(U1), U2s.append(U2)
        U1_prev, U2_prev, sig1_prev = U1, U2, np.asarray(f.sig1[l], dtype=float)
    Z1 = f.own_o + f.J1_o * U1_prev if f.Z1 is None else np.asarray(f.Z1, dtype=float)
    Z2 = 2.0 * sig1_prev * U1_prev + f.J2_o * U1_prev * U1_prev + f.J1_o * U2_prev
    if f.Z2 is not None:
        Z2 = np.asarray(f.Z2, dtype=float)
    GN = np.asarray(f.h) * Z1 * Z1 if f.GN is None else np.asarray(f.GN, dtype=float)
    L = np.asarray(GN + np.asarray(f.g) * Z2, dtype=float)
    return {"L": L, "value": float(np.mean(L)), "U1": U1s, "U2": U2s, "Z1": Z1, "Z2": Z2, "GN": GN}


def ce_on_ball(h: Any, g: Any, Z1_ball: Any, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy constants valid on the rho-ball: the logits move by at most rho Z1_ball, so
    ||p - e_y|| <= g + rho Z1_ball / 2 and ||H_CE|| <= h + 1.5 rho Z1_ball, capped at sqrt 2 and 1/2."""
    shift = rho * np.asarray(Z1_ball, dtype=float)
    return (np.minimum(CE_HESSIAN, np.asarray(h) + CE_HESSIAN_LIPSCHITZ * shift),
            np.minimum(CE_GRADIENT, np.asarray(g) + CE_GRADIENT_LIPSCHITZ * shift))


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))
    except (TypeError, ValueError):
        return False


def _pick(value: Any, index: int, D: int) -> Any:
    """A substitution's worst-case or measured value for layer ``index`` (D: the readout), where it is per layer."""
    if isinstance(value, (list, tuple)) and len(value) in (D, D + 1) and index < len(value):
        return value[index]
    return value


def split_by_layer(current: dict[str, Any], fields: dict[str, Any], D: int) -> list[tuple[int | str, dict[str, Any]]]:
    """One substitution's ``fields`` taken one layer at a time: (layer 1..D, the per-layer lists with element l
    replaced), then (:data:`READOUT`, every field that is not per layer). Parts that change nothing are left out."""
    parts: list[tuple[int | str, dict[str, Any]]] = []
    per_layer = {k: v for k, v in fields.items() if isinstance(v, list) and len(v) == D}
    rest = {k: v for k, v in fields.items() if k not in per_layer}
    lists = {k: list(current.get(k) if isinstance(current.get(k), list) else [None] * D) for k in per_layer}
    for l in range(D):
        part = {}
        for k, v in per_layer.items():
            if not _same(lists[k][l], v[l]):
                lists[k][l] = v[l]
                part[k] = list(lists[k])
        if part:
            parts.append((l + 1, part))
    if rest:
        parts.append((READOUT, rest))
    return parts


def chain(base: Any, substitutions: Sequence[tuple[str, dict[str, Any], Any, Any]],
          evaluate=smoothness_local, *, D: int | None = None) -> tuple[list[Step], Any]:
    """Apply ``substitutions`` (factor name, field -> new value, worst-case, measured) cumulatively to ``base``,
    one layer at a time (:func:`split_by_layer`), so that every budget entry belongs to one layer or the readout.

    ``base``: :class:`T4Factors` (passed to ``evaluate``) or a dict of its keyword arguments (whose "value" key, or the max of
    whose array result, is the bound). D: the number of spiking layers (default ``len(base.K)``). Returns the
    budget steps (each with the bound after it and its layer) and the final factors.
    """
    as_dict = isinstance(base, dict)
    current = dict(base) if as_dict else dict(vars(base))
    D = D if D is not None else len(current["K"])

    def value(c: dict[str, Any]) -> float:
        out = evaluate(**c) if as_dict else evaluate(type(base)(**c))
        return float(out["value"]) if isinstance(out, dict) else float(np.max(out))

    steps = []
    for name, fields, worst, measured in substitutions:
        for layer, part in split_by_layer(current, fields, D):
            current = {**current, **part}
            index = D if layer == READOUT else layer - 1
            steps.append(Step(name, _pick(worst, index, D), _pick(measured, index, D), value(current), layer))
    return steps, (current if as_dict else type(base)(**current))


# ---------------------------------------------------------------------------
# T7


def mechanism_local(W1_norm: float, D_norm: float) -> float:
    """T7's middle term ||W^1|| ||D||_F with D = [delta_1 .. delta_T] measured: the conditioning step
    ||D||_F <= ||grad_{W^1} l||_F / s_T(X) replaced by the measured ||D||_F."""
    return float(W1_norm) * float(D_norm)
