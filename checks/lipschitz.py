"""T3 (input Lipschitz): the largest input-Jacobian norm ||dz/dx|| and an adversarial ratio, against L_in.

    python -m checks.lipschitz --model ckpt.pt [--mode smooth|hard] [--adversarial N]

T3 (A1-A3, smooth mode): ||z(x) - z(x')|| <= L_in ||x - x'||_{2,2} with

    L_in = R_o T^{-1/2} prod_{l=1..D} (beta/4) R_l K_l,   K_l = sum_{k<T} kappa_l^k

(``theory.bounds.input_lipschitz`` on ``checks.constants.model_constants``). Two lower
estimates of the model's Lipschitz constant on the input set [0, X_inf]^{T x n_0} of
A2 are held against it; the estimate is the larger:

- for every probe sample, ||dz/dx||_2 = sqrt(lambda_max(J J^T)) from the C x C Gram of the
  C Jacobian rows, which C backward passes of the whole probe give (exact up to rounding,
  ``checks.local.input_jacobian_grams``, in chunks of samples under a memory budget); or,
  with ``jacobian="lanczos"``, by a Krylov iteration on J^T J with Jacobian-vector
  products (``checks.linalg.input_jacobian_norms``; ``tol`` and ``max_iter`` govern it);
- for the ``adversarial`` samples of largest Jacobian norm, normalised gradient ascent
  on the secant ratio ||z(x) - z(x')|| / ||x - x'||_{2,2} over x', from a random start
  near x, each iterate projected onto [0, X_inf]^n (X_inf the probe's largest entry),
  so that x' stays inside A2's input set and the bound applies to it.

Corollary of T3, reported in details: ||grad_x l||_{2,2} <= sqrt(2) L_in for
cross-entropy (the largest per-sample input-gradient norm over the probe set).

Where A4 fails, the theory record is T3's finite-T form (it grows with T): the status
is then "assumption fails" if the bound holds, and details say ``finite_T``. Hard mode
(``--mode hard``) has no Lipschitz constant (z is discontinuous in x): the result is
"not applicable" with that reason, and no number.

With ``--local`` (the default) the record also holds T3's LOCAL bound on ||dz/dx|| at each
probe sample (``local_bound``, the max over samples; ``checks._budgets.t3``): kappa_l and
beta/4 at the observed states, Young's time sum K_l replaced by the exact norm of the unrolled
recurrence (per neuron a T x T triangular matrix), and for a dense last layer the readout
composite ||[W^o diag(c_j) W^D]_j|| (for one spiking layer, the exact Jacobian norm), with the
``looseness`` budget. It bounds the Jacobian at the probe points, not the adversarial secants.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from checks import _budgets, linalg
from checks._cli import Loaded, run_cli
from checks._common import CheckInputError, Stopwatch, bound_details, check_probe, describe, merged_assumptions
from checks._result import CheckResult, make_result
from checks.constants import model_constants
from checks.local import gram_norms, input_jacobian_grams
from sast.model import SNN
from theory import ModelConstants, bounds

MODES = ("smooth", "hard")
JACOBIAN_METHODS = ("gram", "lanczos")
NEEDS: tuple[str, ...] = ()
"""Nothing beyond the model and the probe (``checks._common.KNOWN_NEEDS``)."""

# Adversarial ascent (a lower estimate, so these trade cost against tightness only):
DEFAULT_ADVERSARIAL = 4  # samples attacked: the ones with the largest Jacobian norms, where the ratio peaks
ADVERSARIAL_STEPS = 30  # "a few dozen" normalised ascent steps; the best ratio seen is kept
# Start radius, as a fraction of the box diagonal X_inf sqrt(T n_0): small enough that the
# secant starts near the local Jacobian norm, large enough that z(x) - z(x') sits far
# above float32 rounding (relative 1e-7) of the logits.
ADVERSARIAL_START = 1e-2
# Step length as a fraction of the current distance ||x' - x|| (the ratio is scale
# invariant near x, so the step scales with it); the start radius is the floor, so a
# step never vanishes when x' is pushed back onto x by the projection.
ADVERSARIAL_STEP = 0.25
# Relative accuracy of the estimate (make_result's rtol; it never loosens the bound). The
# Ritz value and the secant ratio are lower estimates in exact arithmetic, off by rounding
# only: ~1e-15 relative in float64; in float32 the secant's logit difference carries
# ~1e-7 |z| / (L_emp r0), up to ~1e-5. Where the bound is attained (a test builds such a
# net) rounding alone would otherwise read as a violation.
NUMERIC_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
NUMERIC_RTOL_DEFAULT = 1e-2  # half precision


def adversarial_ratios(model: SNN, x: torch.Tensor, x_inf: float, *, steps: int = ADVERSARIAL_STEPS,
                       start: float = ADVERSARIAL_START, step: float = ADVERSARIAL_STEP,
                       seed: int = 0) -> list[float]:
    """T3's secant ratio max over the iterates of ||z(x_i) - z(x'_i)|| / ||x_i - x'_i||_{2,2}, per sample i.

    Projected normalised gradient ascent on x' (all samples at once; the model couples
    no samples, so the gradient of the summed ratios is each sample's own gradient):
    x'_0 = P(x + r0 u), x'_{k+1} = P(x'_k + a_k g_k / ||g_k||), with u a random unit
    direction (from ``seed``), r0 = ``start`` X_inf sqrt(T n_0), a_k = ``step``
    max(||x'_k - x||, r0), and P the projection onto the box [0, x_inf]^{T x n_0} of A2.
    Every ratio is a lower estimate of the Lipschitz constant of z on the box (smooth
    mode). A sample whose iterate coincides with x contributes ratio 0 there.

    Binned event frames are sparse: most entries are 0, on a face of the box, and x'
    cannot go below them, so the ascent explores a cone of directions and its ratio can
    stay below the local Jacobian norm (which sees every direction). On a 2-epoch
    synth-nmnist run (dense:16, T = 8) it reached ~0.7x the largest Jacobian norm.
    """
    model_dtype = next(model.parameters()).dtype
    x = x.detach().to(model_dtype)
    B = x.shape[0]
    shape = (B,) + (1,) * (x.dim() - 1)
    r0 = start * x_inf * math.sqrt(x[0].numel())
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x)
    u = u / u.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny).reshape(shape)
    with torch.no_grad():
        z = model(x, mode="smooth")
    xp = (x + r0 * u).clamp(0.0, x_inf)
    best = torch.zeros(B, dtype=x.dtype, device=x.device)
    for k in range(steps + 1):
        xp = xp.detach().requires_grad_(True)
        with torch.enable_grad():
            dist = (xp - x).flatten(1).norm(dim=1)
            num = (model(xp, mode="smooth") - z).norm(dim=1)
            ratio = torch.where(dist > 0, num / dist.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(num))
            best = torch.maximum(best, ratio.detach())
            if k == steps:
                break
            (g,) = torch.autograd.grad(ratio.sum(), xp)
        with torch.no_grad():
            g_norm = g.flatten(1).norm(dim=1)
            direction = torch.where(g_norm.reshape(shape) > 0, g / g_norm.clamp_min(torch.finfo(x.dtype).tiny).reshape(shape),
                                    torch.zeros_like(g))
            a = step * torch.clamp(dist.detach(), min=r0)
            xp = (xp + a.reshape(shape) * direction).clamp(0.0, x_inf)
    return [float(r) for r in best]


def input_gradient_norms(model: SNN, x: torch.Tensor, y: torch.Tensor, *, mode: str = "smooth") -> list[float]:
    """||grad_x l(z(x_i), y_i)||_{2,2} per sample (cross-entropy), for T3's corollary <= sqrt(2) L_in.

    One backward pass of the summed per-sample losses: samples do not interact in the
    model, so the gradient with respect to x_i is sample i's own.
    """
    xg = x.detach().to(next(model.parameters()).dtype).requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg, mode=mode), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
    return [float(v) for v in g.flatten(1).norm(dim=1)]


def run(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0, progress: bool = False,
        mode: str = "smooth", adversarial: int = DEFAULT_ADVERSARIAL, steps: int = ADVERSARIAL_STEPS,
        tol: float = linalg.DEFAULT_TOL, max_iter: int | None = None, local: bool = True,
        constants: ModelConstants | None = None, jacobian: str = "gram") -> CheckResult:
    """T3: max over the probe of ||dz/dx|| and of the adversarial secant ratio, against L_in.

    ``adversarial`` samples (0: none) get ``steps`` ascent steps. ``jacobian``: "gram" (exact
    per-sample norms from C backward passes; the local bound's per-layer Grams come from the same
    passes) or "lanczos" (``linalg.input_jacobian_norms``, a per-sample Krylov iteration that
    ``tol`` and ``max_iter``, None: linalg's default, govern). ``converged`` is True when every
    sample met ``tol`` (always, for the exact Gram); ``n_products`` counts the Jacobian products
    (J^T J products for Lanczos, backward passes for the Gram; the adversarial gradients are
    counted apart in details). ``mode='hard'``: "not applicable" (no Lipschitz
    constant), no number. ``local``: also T3's local bound and its looseness budget.
    ``constants`` may pass precomputed ``model_constants(model, x, mode=mode)``.
    """
    check_probe(model, probe)
    if mode not in MODES:
        raise CheckInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if adversarial < 0 or steps < 0:
        raise CheckInputError(f"adversarial and steps must be >= 0, got {adversarial} and {steps}")
    sw = Stopwatch()
    x, y = probe
    c = constants if constants is not None else model_constants(model, x, mode=mode)
    rec = bounds.input_lipschitz(c)
    details: dict[str, Any] = {"mode": mode, **bound_details(rec)}
    if mode == "hard":
        return make_result("T3", "input Lipschitz", bound=None, estimate=None, assumptions=rec.assumptions,
                           seed=seed, seconds=sw.seconds, details=details, **describe(model, x))
    if jacobian not in JACOBIAN_METHODS:
        raise CheckInputError(f"jacobian must be one of {', '.join(JACOBIAN_METHODS)}, got {jacobian!r}")
    grams = None
    if jacobian == "gram":
        found = input_jacobian_grams(model, x, layers=local)
        grams = found if local else [found]
        jac = linalg.InputJacobianNorms(values=tuple(float(v) for v in gram_norms(grams[0])),
                                        converged=(True,) * len(x), iterations=0,
                                        n_products=int(grams[0].shape[1]))
    else:
        iteration = {"tol": tol} if max_iter is None else {"tol": tol, "max_iter": max_iter}
        jac = linalg.input_jacobian_norms(model, x, seed=seed, progress=progress, **iteration)
    jac_max = jac.max
    n_adv = min(adversarial, len(x))
    order = sorted(range(len(x)), key=lambda i: -jac.values[i])[:n_adv]
    adv = adversarial_ratios(model, x[order], c.X_inf, steps=steps, seed=seed) if n_adv and c.X_inf > 0 else []
    adv_max = max(adv, default=0.0)
    estimate = max(jac_max, adv_max)
    grads = input_gradient_norms(model, x, y)
    grad_bound = rec.details.get("grad_x_bound")
    details.update({
        "L_in": rec.value, "L_in_T_uniform": rec.details.get("L_in_T_uniform"),
        "kappa": rec.details.get("kappa"), "K": rec.details.get("K"),
        "estimate_source": "adversarial" if adv_max > jac_max else "jacobian",
        "jacobian_norm": list(jac.values), "jacobian_max": jac_max,
        "jacobian_argmax": max(range(len(x)), key=lambda i: jac.values[i]),
        "jacobian_converged": list(jac.converged), "jacobian_iterations": jac.iterations,
        "adversarial_samples": order, "adversarial_ratio": adv, "adversarial_max": adv_max if adv else None,
        "adversarial_steps": steps, "adversarial_gradients": (steps * len(adv)),
        "X_inf": c.X_inf,
        "grad_x_norm_max": max(grads), "grad_x_bound": grad_bound,
        "grad_x_holds": None if grad_bound is None else max(grads) <= grad_bound,
    })
    details["jacobian_method"] = jacobian
    loc = (_budgets.t3(model, probe, c, rec, estimate, jac_max, grams=grams) if local
           else _budgets.not_computed("not requested (local=False)"))
    details["local"] = loc.details
    # the local bound certifies ||dz/dx|| at the probe points, not the adversarial secants: held against jac_max
    return make_result("T3", "input Lipschitz", bound=rec.value, estimate=estimate, **loc.fields(), local_estimate=jac_max,
                       assumptions=merged_assumptions(rec), converged=all(jac.converged),
                       rtol=NUMERIC_RTOL.get(next(model.parameters()).dtype, NUMERIC_RTOL_DEFAULT),
                       n_products=jac.n_products, seed=seed, seconds=sw.seconds, details=details,
                       **describe(model, x))


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="smooth", choices=MODES,
                   help="forward mode (hard: no Lipschitz constant, reported as not applicable)")
    p.add_argument("--adversarial", type=int, default=DEFAULT_ADVERSARIAL,
                   help="probe samples (largest Jacobian norms first) given the adversarial ascent; 0: none")
    p.add_argument("--steps", type=int, default=ADVERSARIAL_STEPS, help="adversarial ascent steps per sample")
    _budgets.add_local_flag(p)


def _options(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    return {"mode": args.mode, "adversarial": args.adversarial, "steps": args.steps, "local": args.local}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.lipschitz", __doc__.splitlines()[0], run, argv, add_flags=_flags,
                   options=_options)


if __name__ == "__main__":
    raise SystemExit(main())
