"""Local bounds and looseness budgets of T2-T7 for the checks: measurements of ``checks.local``, formulas of ``theory.local``.

Each ``tN`` function returns a :class:`Local`: the local bound (None, with the reason in
``details``, where it is not computed), the budget entries (``theory.local.budget``: one
per substituted factor, in the order listed in ``details["order"]``, then the remaining
proof slack; their log10 ratios sum to log10(global bound / estimate)) and details
(``scope`` says what the bound certifies).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from checks._common import numpy_blas_single_threaded
from checks._result import DETERMINISTIC, PROBABILISTIC
from checks.local import (Observation, gram_norms, input_jacobian_grams, loss_constants, measure, observe,
                          one_layer_second_order, readout_composite, readout_constants)
from sast.model import SNN
from theory import ModelConstants, kappa_sum
from theory.bounds import Bound
from theory.local import (SCOPE, SCOPE_BALL, Step, T4Factors, budget, by_factor, by_layer, ce_on_ball, chain,
                          input_lipschitz_local, mechanism_local, smoothness_local, state_interval_local, top_factor)
from theory.scalar import sigmoid_derivative_sup

# T5's rho-ball: the state deviation delta_l = f rho max U1_l is tried for these f (the first self-consistent
# one is kept: rho U1(delta) < delta, by a first-exit argument), then tightened by delta <- rho U1(delta).
DELTA_FACTORS = (1.05, 1.5, 3.0, 10.0)
DELTA_REFINE = 3


@dataclass
class Local:
    """A local bound, its budget entries and details (plain JSON types)."""

    bound: float | None
    looseness: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = DETERMINISTIC
    failure_probability: float | None = None

    def fields(self) -> dict[str, Any]:
        """The keywords of ``make_result``: the bound, its budget, and what kind of certificate it is."""
        return {"local_bound": self.bound, "looseness": self.looseness, "local_kind": self.kind,
                "local_failure_probability": self.failure_probability}


LOCAL_HELP = ("also compute the local bound (a certificate at w on the probe: the same proof with each worst-case "
              "constant measured, T3's exact input-Jacobian norms, T4's randomized certificate) and its looseness "
              "budget (global bound -> local bound -> estimate, one factor and one layer at a time); --no-local skips "
              "it. Cost on a demo checkpoint (dense:256, T = 20, 64 probe samples, 2 cores): T2 and T7 +0.1 s, "
              "T3 +1-3 s (C backward passes), T4 +1-2 s (a forward pass, C backward passes, about 46 Hessian-vector "
              "products of the randomized certificate), T5 +3 s (T4's measurements for a few state radii on the "
              "rho-ball)")


def add_local_flag(p: argparse.ArgumentParser) -> None:
    """The shared ``--local/--no-local`` flag of the check command lines (default on)."""
    p.add_argument("--local", action=argparse.BooleanOptionalAction, default=True, help=LOCAL_HELP)


def not_computed(reason: str) -> Local:
    return Local(None, [], {"reason": reason})


def _mx(values: Any) -> Any:
    """A factor's value for display: a float, or per layer the max over samples (lists)."""
    if isinstance(values, (list, tuple)):
        return [_mx(v) for v in values]
    if values is None:
        return None
    return float(np.max(values))


def finish(global_bound: float, steps: list[Step], estimate: float | None, scope: str, **extra: Any) -> Local:
    entries, why = budget(global_bound, steps, estimate)
    local = float(steps[-1].value) if steps else float(global_bound)
    top = top_factor(entries)
    details = {"scope": scope, "order": [s.factor for s in steps],
               "remaining_slack": local / estimate if estimate else None,
               "top_factor": None if top is None else top["factor"],
               "top_layer": None if top is None else top.get("layer"),
               "by_factor": by_factor(entries), "by_layer": by_layer(entries), **extra}
    if why:
        details["budget_reason"] = why
    return Local(local if math.isfinite(local) else None, entries, details)


# ---------------------------------------------------------------------------
# T2


def _currents(obs: Observation, model: SNN, reset: str) -> list[tuple[float, float]]:
    """Per layer the extreme input currents I_t = u_t - lam u_{t-1} (1 - s_{t-1}) (zero) or u_t - lam u_{t-1} + theta s_{t-1}."""
    out = []
    for l, (u, s) in enumerate(zip(obs.u, obs.s)):
        lam, theta = model.neuron_numpy(l, flat=True)
        lo, hi = float(u[:, 0].min()), float(u[:, 0].max())  # I_0 = u_0 (nothing carried yet)
        if u.shape[1] > 1:  # I_t = u_t - carry_t for t >= 1, in one (T - 1) x n buffer per sample, not six
            carry = lam * u[:, :-1]
            if reset == "zero":
                carry *= 1.0 - s[:, :-1]
            else:
                carry -= theta * s[:, :-1]
            I = np.subtract(u[:, 1:], carry, out=carry)
            lo, hi = min(lo, float(I.min())), max(hi, float(I.max()))
        out.append((lo, hi))
    return out


@numpy_blas_single_threaded
def t2(model: SNN, x: torch.Tensor, c: ModelConstants, key: tuple[str, int, str], bound: float, estimate: float) -> Local:
    """T2 at the worst (mode, layer, side): T2's recursion with the measured input entries, currents and reset depth."""
    mode, l, side = key
    obs = observe(model, x, torch.zeros(len(x), dtype=torch.long), mode=mode, jacobian=False)
    lo_I, hi_I = _currents(obs, model, c.reset)[l]
    s_max = float(obs.s[l].max()) if obs.s[l].size else 0.0
    a_max = float(obs.inputs[l].max()) if obs.inputs[l].size else 0.0
    lam, theta = c.layer_lam(l), c.layer_theta(l)  # per-neuron values: the layer's largest bound every neuron's
    q = kappa_sum(lam, c.T)
    theta_q = theta * q if (c.reset == "subtract" and side == "min") else 0.0
    S_prev = c.X_inf if l == 0 else 1.0
    c1 = c.R_inf[l] * a_max + c.b_inf[l]
    measured_I = max(hi_I, 0.0) if side == "max" else -min(lo_I, 0.0)
    lo, hi = state_interval_local(lam, theta, c.reset, c.T, lo_I, hi_I, s_max)
    steps = [Step("S_{l-1}: input entry bound (X_inf, or 1 for spikes) -> max observed input entry", S_prev, a_max,
                  c1 * q + theta_q, l + 1),
             Step("c_l = ||W^l||_inf S_{l-1} + ||b^l||_inf -> max observed |current| on that side", c1, measured_I,
                  measured_I * q + theta_q, l + 1)]
    if theta_q:
        steps.append(Step("reset depth theta -> theta max s (observed)", theta, theta * s_max, -lo, l + 1))
    local = hi if side == "max" else -lo
    if abs(steps[-1].value - local) > 1e-12 * max(abs(local), 1.0):
        raise ArithmeticError(f"T2 local chain ends at {steps[-1].value}, not at the local bound {local}")
    return finish(bound, steps, estimate, SCOPE.format(n=len(x)) + f", {mode} mode",
                   interval=[lo, hi], currents=[lo_I, hi_I], reset_depth=s_max, input_max=a_max)


# ---------------------------------------------------------------------------
# T3


@numpy_blas_single_threaded
def t3(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], c: ModelConstants, rec: Bound,
       estimate: float, jacobian_max: float, *, grams: list[np.ndarray] | None = None) -> Local:
    """T3 per probe sample (max over samples): the proof's factors replaced one at a time by measured norms.

    ``grams``: ``input_jacobian_grams(model, x, layers=True)`` where the caller has them already.
    """
    if rec.value is None:
        return not_computed(f"T3 has no global bound here ({rec.reason or rec.status})")
    x, y = probe
    m = measure(model, observe(model, x, y, jacobian=False), norms=True)
    L, D, T = m.layers, c.D, c.T
    b1 = sigmoid_derivative_sup(1, c.beta)
    base = {"R_o": c.R_o, "T": T, "R": list(c.R), "sig1": [b1] * D, "K": list(rec.details["K"])}
    K_loc = [np.array([kappa_sum(k, T) for k in lc.kappa]) for lc in L]
    subs: list[tuple[str, dict[str, Any], Any, Any]] = [
        ("kappa_l: sup |g'| over I_l -> max |g'| at the observed states", {"K": K_loc},
         rec.details["kappa"], _mx([lc.kappa for lc in L])),
        ("K_l = sum_k kappa_l^k (Young's inequality in time) -> ||M_l||, the unrolled recurrence's norm",
         {"K": [lc.M_norm for lc in L]}, _mx(K_loc), _mx([lc.M_norm for lc in L])),
        ("beta/4 (sup sig') -> max sig' at the observed states", {"sig1": [lc.sig1 for lc in L]},
         b1, _mx([lc.sig1 for lc in L])),
        ("sig1_l ||M_l|| -> ||diag(sig') M_l||, the spike recurrence's norm", {"S": [lc.S_norm for lc in L]},
         _mx([lc.sig1 * lc.M_norm for lc in L]), _mx([lc.S_norm for lc in L])),
    ]
    N = readout_composite(model, m)
    if N is not None:
        head = c.R_o / math.sqrt(T) * L[-1].S_norm * c.R[-1]
        subs.append(("R_o T^{-1/2} ||S_D|| R_D -> ||[W^o diag(c_j) W^D]_j||, the readout composite", {"N": N},
                     _mx(head), _mx(N)))
    steps, a = chain(base, subs, input_lipschitz_local, D=D)
    proof = input_lipschitz_local(**a)
    # Composition, layer by layer from the top: ||dz/dx|| <= ||dz/ds^l|| prod_{k<=l} ||S_k|| R_k for every l
    # (ds^k = S_k (I (x) W^k) ds^{k-1}, s^0 = x), with ||dz/ds^l|| exact from a C x C Gram per sample. Each
    # step replaces layer l+1's factor ||S_{l+1}|| R_{l+1} composed with the exact downstream norm by the
    # exact norm one layer lower: what composing layer l+1's worst case costs. l = 0 is the exact ||dz/dx||.
    grams = grams if grams is not None else input_jacobian_grams(model, x, layers=True)
    exact = [gram_norms(g) for g in grams]  # [x, s^1, .., s^{D-1}]
    f = [np.asarray(lc.S_norm, dtype=float) * R for lc, R in zip(L, c.R)]
    current = proof
    for l in range(D - 1, -1, -1):
        below = np.prod(f[:l], axis=0) if l else np.ones_like(proof)
        # each is a bound in exact arithmetic, and so is their min (it keeps rounding from raising the chain)
        bound_l = np.minimum(current, exact[l] * below)
        what = "dz/dx" if l == 0 else f"dz/ds^{l}"
        head = ("the readout's factor (with layer D's)" if l == D - 1
                else f"||dz/ds^{l + 1}|| ||S_{l + 1}|| R_{l + 1}")
        steps.append(Step(f"composition through layer {l + 1}: {head} -> exact ||{what}|| (C x C Gram per sample)",
                          _mx(current / below), _mx(exact[l]), float(np.max(bound_l)), l + 1))
        current = bound_l
    per_sample = current
    return finish(rec.value, steps, estimate, SCOPE.format(n=len(x)) + ": ||dz/dx|| at each probe sample",
                   local_estimate=jacobian_max, per_sample=[float(v) for v in per_sample],
                   proof_per_sample=[float(v) for v in proof], certificate=(
                       "exact: ||dz/dx_i|| = sqrt(lambda_max(J_i J_i^T)), J_i J_i^T from C backward passes"),
                   composition_exact=[_mx(e) for e in exact])


# ---------------------------------------------------------------------------
# T4 and T5 (T4 on the rho-ball)


def _global_factors(c: ModelConstants, rec: Bound) -> T4Factors:
    D = c.D
    b1, b2 = sigmoid_derivative_sup(1, c.beta), sigmoid_derivative_sup(2, c.beta)
    A_l = rec.details["A_l"]
    return T4Factors(
        K=list(rec.details["K"]), Aterm=[math.sqrt(m * m * A * A + P) for m, A, P in zip(c.m, A_l, c.P)],
        J1=[0.0] + [c.R[l] * b1 for l in range(1, D)], J2=[0.0] + [c.R[l] * b2 for l in range(1, D)],
        sig1=[b1] * D, sig2=[b2] * D, gam=list(rec.details["gam"]), m=list(c.m),
        own_o=math.sqrt(c.n[-1] + 1), J1_o=c.R_o * b1, J2_o=c.R_o * b2)


def _t4_steps(model: SNN, c: ModelConstants, rec: Bound, obs: Observation, m: Any, *, ball: bool,
              rho: float = 0.0) -> tuple[list[Step], T4Factors]:
    """T4's chain of substitutions (the order of ``details["order"]``); ``ball``: T5's version, valid on the rho-ball."""
    L, D, T = m.layers, c.D, c.T
    base = _global_factors(c, rec)
    ro = readout_constants(model, m)
    lossc = loss_constants(obs)
    K_loc = [np.array([kappa_sum(k, T) for k in lc.kappa]) for lc in L]
    sig1, sig2 = [lc.sig1 for lc in L], [lc.sig2 for lc in L]
    R, R_o = c.R, c.R_o
    J1m = [0.0] + [L[l].J1 if L[l].J1 is not None else R[l] * sig1[l - 1] for l in range(1, D)]
    J2m = [0.0] + [L[l].J2 if L[l].J2 is not None else R[l] * sig2[l - 1] for l in range(1, D)]
    subs: list[tuple[str, dict[str, Any], Any, Any]] = [
        ("kappa_l: sup |g'| over I_l -> max |g'| at the observed states", {"K": K_loc},
         rec.details["kappa"], _mx([lc.kappa for lc in L])),
        ("K_l = sum_k kappa_l^k -> max_t sum_j ||P_{j->t}|| (measured transition blocks)", {"K": [lc.K for lc in L]},
         _mx(K_loc), _mx([lc.K for lc in L])),
        ("beta/4 (sup sig') -> max sig' at the observed states",
         {"sig1": sig1, "J1": [0.0] + [R[l] * sig1[l - 1] for l in range(1, D)], "J1_o": R_o * sig1[-1]},
         base.sig1[0], _mx(sig1)),
        ("beta^2/(6 sqrt 3) (sup |sig''|) -> max |sig''| at the observed states",
         {"sig2": sig2, "J2": [0.0] + [R[l] * sig2[l - 1] for l in range(1, D)], "J2_o": R_o * sig2[-1]},
         base.sig2[0], _mx(sig2)),
        ("gam_l: sup |g''| over I_l -> max |g''| at the observed states", {"gam": [lc.gam for lc in L]},
         base.gam, _mx([lc.gam for lc in L])),
        ("A_l = sqrt(n_{l-1}) (and sqrt(n_D + 1)) -> measured input norms",
         {"Aterm": [np.sqrt(mm * mm * lc.A ** 2 + P) for mm, lc, P in zip(c.m, L, c.P)], "own_o": ro["own_o"]},
         [*rec.details["A_l"], base.own_o], [*_mx([lc.A for lc in L]), _mx(ro["own_o"])]),
        ("||W^l|| sup sig'^{l-1} -> ||W^l diag(sig'^{l-1})|| (dense layers and readout, measured)",
         {"J1": J1m, "J2": J2m, "J1_o": ro["J1_o"], "J2_o": ro["J2_o"]},
         _mx(R_o * sig1[-1]), _mx(ro["J1_o"])),
    ]
    if ball:  # every state-dependent sup is over [u - delta, u + delta] around the observed states
        subs = [(name.replace("at the observed states", "on [u - delta, u + delta] around the observed states"), *rest)
                for name, *rest in subs]
    own = [lc.E for lc in L]
    if any(e is not None for e in own):
        subs.append(("K_l sqrt(A_l^2 + 1) -> own-parameter Jacobian norm max ||sum_j |P_{j->t,i}| (a_j, 1)|| (dense)",
                     {"own": own}, _mx([lc.K * np.sqrt(lc.A ** 2 + 1) for lc in L]), _mx(own)))
    second = one_layer_second_order(model, m)
    if second is not None:
        Z2_chain = smoothness_local(chain(base, subs)[1])["Z2"]
        subs.append(("Z2 = 2 S1 + R_o S2 (each factor at its worst neuron and time) -> per-neuron second-order "
                     "terms (one dense layer)", {"Z2": np.minimum(Z2_chain, second["Z2"])},
                     _mx(Z2_chain), _mx(second["Z2"])))
    steps, cur = chain(base, subs)
    res = smoothness_local(cur)
    Z1 = lossc["Z1"] if not ball else np.minimum(res["Z1"], lossc["Z1"] + rho * res["Z2"])
    h, g = (lossc["h"], lossc["g"]) if not ball else ce_on_ball(lossc["h"], lossc["g"], Z1, rho)
    tail = [("Z1 -> exact logit-Jacobian norm ||dz/dw||" + (" (+ rho Z2 on the ball)" if ball else ""),
             {"Z1": Z1}, _mx(res["Z1"]), _mx(Z1)),
            ("cross-entropy Hessian 1/2 -> ||diag(p) - p p^T|| at the probe's logits"
             + (" (+ 1.5 rho Z1 on the ball)" if ball else ""), {"h": h}, 0.5, _mx(h))]
    if not ball:
        tail.append(("||H_CE|| Z1^2 -> exact Gauss-Newton norm ||J^T H_CE J||", {"GN": lossc["GN"]},
                     _mx(h * Z1 * Z1), _mx(lossc["GN"])))
    tail.append(("cross-entropy gradient sqrt(2) -> ||p - e_y|| at the probe's logits"
                 + (" (+ rho Z1 / 2 on the ball)" if ball else ""), {"g": g}, math.sqrt(2.0), _mx(g)))
    more, cur = chain(cur, tail)
    return steps + more, cur


@numpy_blas_single_threaded
def t4(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], c: ModelConstants, rec: Bound, estimate: float,
       certificate: Any = None) -> Local:
    """T4 on the probe-batch loss at w: the mean over samples of per-sample bounds, factors replaced one at a time.

    ``certificate`` (a ``linalg.RandomizedBound`` of the same probe Hessian, or None): where its value lies
    below the proof's local bound it ends the chain, and the local bound is probabilistic (it fails with
    at most its failure probability over its random start); the step it adds is what composing the
    per-layer worst cases of the proof costs at this depth, over all layers at once.
    """
    if rec.value is None:
        return not_computed(f"T4 has no global bound here ({rec.reason or rec.status})")
    x, y = probe
    obs = observe(model, x, y, jacobian=True)
    m = measure(model, obs, norms=False)
    steps, cur = _t4_steps(model, c, rec, obs, m, ball=False)
    res = smoothness_local(cur)
    proof = steps[-1].value
    kind, p, extra = DETERMINISTIC, None, {}
    if certificate is not None and certificate.value is not None:
        extra = {"deterministic_bound": proof, "probabilistic_bound": certificate.value,
                 "failure_probability": certificate.failure_probability}
        if certificate.value < proof:
            steps.append(Step(f"T4's proof with measured constants (composed over {c.D} layers) -> randomized "
                              f"certificate sqrt(xi_k / (1 - eps)) (Kuczynski-Wozniakowski, k = {certificate.steps} "
                              f"Lanczos steps on H^2, fails with probability <= {certificate.failure_probability:g})",
                              proof, certificate.value, certificate.value))
            kind, p = PROBABILISTIC, certificate.failure_probability
    out = finish(rec.value, steps, estimate, SCOPE.format(n=len(x)),
                 Z1=_mx(res["Z1"]), Z2=_mx(res["Z2"]), GN=_mx(res["GN"]), U1=_mx(res["U1"]), U2=_mx(res["U2"]),
                 seconds=obs.seconds, **extra)
    out.kind, out.failure_probability = kind, p
    return out


def t4_ball(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], c: ModelConstants, c_ball: ModelConstants,
            rec_ball: Bound, rho: float) -> tuple[list[Step], dict[str, Any]] | None:
    """T4's chain on the rho-ball around w (T5): states within delta of those at w, weights within rho.

    delta_l must bound |u^l(w') - u^l(w)| elementwise over the ball. rho times a bound on
    ||du^l/dw|| over the ball is one; delta = f rho U1_l(w) is accepted when rho U1_l(delta) <
    delta_l (a state path leaving the delta-box would first have to reach its edge, where its
    derivative is below delta / rho), else rho U1_l of the global ball bound is used; then
    delta <- min(delta, rho U1(delta)) while it shrinks. Returns None where no bound exists.
    """
    if rec_ball.value is None:
        return None
    x, y = probe
    obs = observe(model, x, y, jacobian=True)
    caps = list(zip(rec_ball.details["kappa"], rec_ball.details["gam"]))

    cache: dict[tuple[tuple[float, ...], bool], tuple[list[Step], T4Factors, Any]] = {}

    def run(delta: list[float], final: bool = False) -> tuple[list[Step], T4Factors, Any]:
        # the search for delta reads U1 alone, which the dense layers' J2 does not enter: measured at the end only
        if (tuple(delta), final) not in cache:
            m = measure(model, obs, delta=delta, rho=rho, norms=False, caps=caps, second_order=final)
            steps, cur = _t4_steps(model, c_ball, rec_ball, obs, m, ball=True, rho=rho)
            cache[(tuple(delta), final)] = (steps, cur, smoothness_local(cur))
        return cache[(tuple(delta), final)]

    def u1_bound(res: Any) -> list[float]:
        return [rho * float(np.max(u)) for u in res["U1"]]

    at_w = u1_bound(run([0.0] * c.D)[2])
    delta, how = None, ""
    for f in DELTA_FACTORS:
        trial = [f * d for d in at_w]
        if all(new < old for new, old in zip(u1_bound(run(trial)[2]), trial)):
            delta, how = trial, f"self-consistent at {f:g} x rho U1(w)"
            break
    if delta is None:
        delta, how = [rho * u for u in rec_ball.details["U1"]], "rho U1 of the global bound on the ball"
    for _ in range(DELTA_REFINE):
        new = [min(a, b) for a, b in zip(delta, u1_bound(run(delta)[2]))]
        if new == delta:
            break
        delta = new
    steps, cur, res = run(delta, final=True)
    return steps, {"delta": delta, "delta_source": how, "Z1": _mx(res["Z1"]), "Z2": _mx(res["Z2"])}


@numpy_blas_single_threaded
def t5(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], c: ModelConstants, c_ball: ModelConstants,
       rec_ball: Bound, rho: float, factor: float, bound: float, estimate: float) -> Local:
    """T5's worst quantity: ``factor`` L (rho^2/2, rho^2 or rho) with T4's chain on the rho-ball."""
    out = t4_ball(model, probe, c, c_ball, rec_ball, rho)
    if out is None:
        return not_computed("T4 on the rho-ball has no bound (overflow or not applicable)")
    steps, extra = out
    scaled = [Step(s.factor, s.worst_case, s.measured, factor * s.value, s.layer) for s in steps]
    loc = finish(bound, scaled, estimate, SCOPE_BALL.format(rho=rho, n=len(probe[0])), **extra)
    loc.details["L_ball_local"] = steps[-1].value
    return loc


# ---------------------------------------------------------------------------
# T7


@numpy_blas_single_threaded
def t7(model: SNN, x: torch.Tensor, y: torch.Tensor, i: int, W1_norm: float, bound: float, estimate: float,
       grad_W1_norm: float, s_T: float) -> Local:
    """T7 at the worst sample i: the conditioning step ||D||_F <= ||grad_{W^1} l||_F / s_T(X) replaced by ||D||_F."""
    w1 = model.layers[model.spiking_specs[0].index].weight
    with torch.enable_grad():
        loss = F.cross_entropy(model(x[i:i + 1].to(w1.dtype), mode="smooth"), y[i:i + 1])
        (G,) = torch.autograd.grad(loss, w1)
    X = x[i].detach().double().flatten(1)  # T x n_0; full row rank where T7's condition holds
    D_norm = float((G.double() @ torch.linalg.pinv(X)).norm())
    local = mechanism_local(W1_norm, D_norm)
    steps = [Step("||grad_{W^1} l||_F / s_T(X) (conditioning) -> ||D||_F measured (D = grad_{W^1} l X^+)",
                  grad_W1_norm / s_T, D_norm, local, 1)]
    return finish(bound, steps, estimate, f"local: at w on probe sample {i}", D_norm=D_norm)
