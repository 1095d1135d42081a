"""T4 (smoothness): the extreme Hessian eigenvalues of the probe-batch loss, by Lanczos, against L.

    python -m checks.smoothness --model ckpt.pt [--tol 1e-3] [--max-iter 150]

T4 (A1-A3): F(w) = E l(z(w; x), y) is L-smooth on the parameter set of A3, with

    L = Z1^2/2 + sqrt(2) Z2   (``theory.bounds.smoothness``: U1, S1, U2, S2 layer by layer)

so every Hessian eigenvalue of F, and of any minibatch loss, lies in [-L, L]. The
check forms no Hessian: ``linalg.HessianOperator`` gives exact Hessian-vector products
of the smooth-mode probe-batch loss F_B(w) = mean_i l(z(w; x_i), y_i) over all trainable
parameters, and ``linalg.lanczos_extremes`` finds both ends of its spectrum. The
estimate is max(|lambda_min|, |lambda_max|): Ritz values lie inside the spectrum, so it
is a lower estimate of the spectral radius whether or not Lanczos converged (that is
recorded in ``converged``, never raised). L is held against it with rtol 0.

Where A4 fails, L is T4's finite-T form (it grows with T): the status is then
"assumption fails" if the bound holds, and details say ``finite_T``. Max pooling makes
T4 "not applicable" (no L); the eigenvalues are still measured and reported.

With ``--local`` (the default) the record also holds T4's LOCAL bound at w on the probe
(``local_bound``: the same proof with every worst-case constant replaced by what it bounds,
measured at w: kappa_l, sig', |sig''|, gam_l at the observed states, the transition blocks,
input norms, ||W^l diag(sig')||, the exact logit Jacobian, the cross-entropy constants at the
probe's logits) and its ``looseness`` budget (``checks._budgets.t4``). It costs one forward
pass and C vector-Jacobian products per probe sample, a few percent of the Lanczos run.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence

import torch

from checks import _budgets, linalg
from checks._cli import Loaded, run_cli
from checks._common import CheckInputError, Stopwatch, bound_details, check_probe, describe, merged_assumptions
from checks._result import CheckResult, make_result
from checks.constants import model_constants
from sast.model import SNN
from theory import ModelConstants, bounds

# The theory record's layer-by-layer quantities copied into the details (THEORY.md T4's symbols).
THEORY_KEYS = ("kappa", "gam", "K", "A_l", "U1", "S1", "U2", "S2", "Z1", "Z2")

# T4's randomized local certificate (Kuczynski-Wozniakowski, ``linalg.spectral_radius_certificate``): failure
# probability delta over its random start, and enough Lanczos steps on H^2 for a factor of at most
# CERTIFICATE_FACTOR on its Ritz value (23 steps, 46 products, for 0.23M parameters at delta 1e-3).
DEFAULT_FAILURE_PROBABILITY = 1e-3
CERTIFICATE_FACTOR = 1.05

NEEDS: tuple[str, ...] = ()
"""Nothing beyond the model and the probe (``checks._common.KNOWN_NEEDS``)."""


def local_curvature(
    model: SNN,
    probe: tuple[torch.Tensor, torch.Tensor],
    *,
    tol: float = linalg.DEFAULT_TOL,
    max_iter: int | None = None,
    seed: int = 0,
    hvp_method: linalg.HVPMethod = "auto",
    check_deterministic: bool = True,
    min_iter: int = 1,
) -> tuple[linalg.LanczosResult, linalg.HessianOperator]:
    """lambda_min and lambda_max of the Hessian of the smooth-mode probe-batch loss at the model's w.

    Shared by T4 (the estimate), T5 and T6 (the "local curvature" max(|lambda|) at w, an
    indication of the smoothness near w, not a bound over the ball or the run). ``min_iter``: Lanczos
    runs at least this many steps (T4's randomized certificate reads the same run: 2k - 1 steps).
    """
    x, y = probe
    op = linalg.HessianOperator(model, None, x, y, method=hvp_method, mode="smooth",
                                check_deterministic=check_deterministic, seed=seed)
    res = linalg.lanczos_extremes(op, tol=tol, max_iter=max_iter, seed=seed, min_iter=min_iter)
    return res, op


def run(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0, progress: bool = False,
        tol: float = linalg.DEFAULT_TOL, max_iter: int | None = None, hvp_method: linalg.HVPMethod = "auto",
        check_deterministic: bool = True, constants: ModelConstants | None = None, local: bool = True,
        curvature: tuple[linalg.LanczosResult, linalg.HessianOperator] | None = None,
        failure_probability: float | None = DEFAULT_FAILURE_PROBABILITY,
        certificate_steps: int | None = None) -> CheckResult:
    """T4: max(|lambda_min|, |lambda_max|) of the probe-batch Hessian (Lanczos, exact HVPs) against L.

    ``tol`` and ``max_iter`` (None: linalg's default) govern Lanczos (relative to the
    spectral radius); ``hvp_method`` the HVP method ("auto" times both once);
    ``check_deterministic`` repeats a product to catch a random loss (the live monitor
    turns it off to save the products, on a model it holds in eval mode).
    ``constants`` may pass precomputed ``model_constants(model, x)``. ``local``: also the local
    bound at w on the probe and its looseness budget. ``curvature`` may pass a precomputed
    (Lanczos result, Hessian operator) of this probe at w, as :func:`local_curvature` returns
    them (the live monitor's warm-started run); ``tol`` and ``max_iter`` should say how it ran.
    ``failure_probability`` (None: no randomized certificate) and ``certificate_steps`` (None: enough
    for a factor :data:`CERTIFICATE_FACTOR` over its Ritz value): with ``local``, the randomized
    certificate of the probe Hessian's spectral radius, which becomes the local bound where it is
    below the proof's, with ``local_kind`` "probabilistic". It is read off the estimate's own
    Lanczos run (its random start from ``seed``), which then runs at least 2k - 1 steps for the
    bound of k steps on H^2 (``linalg.certificate_from_lanczos``); with a precomputed
    ``curvature`` (possibly warm-started) it runs on its own, from a start of its own (seed + 1).
    """
    check_probe(model, probe)
    sw = Stopwatch()
    x, _ = probe
    c = constants if constants is not None else model_constants(model, x)
    rec = bounds.smoothness(c)
    certify = local and failure_probability is not None
    k = None
    if certify:
        dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
        k = certificate_steps or linalg.steps_for(dim, failure_probability, 1.0 - CERTIFICATE_FACTOR ** -2)
    # a max_iter given is kept (a run too short for the certificate leaves it to a run of its own, below)
    min_iter = 2 * k - 1 if certify and curvature is None else 1
    if max_iter is None and min_iter > linalg.DEFAULT_LANCZOS_MAX_ITER:
        max_iter = min_iter
    res, op = curvature if curvature is not None else local_curvature(
        model, probe, tol=tol, max_iter=max_iter, seed=seed, hvp_method=hvp_method,
        check_deterministic=check_deterministic, min_iter=min_iter)
    estimate = max(abs(res.lambda_min), abs(res.lambda_max))
    details: dict[str, Any] = {
        "L": rec.value, "lambda_min": res.lambda_min, "lambda_max": res.lambda_max,
        "residual_min": res.residual_min, "residual_max": res.residual_max, "iterations": res.iterations,
        "tol": tol, "max_iter": max_iter if max_iter is not None else min(op.dim, linalg.DEFAULT_LANCZOS_MAX_ITER),
        "hvp_method": op.method, "hvp_calibration": dict(op.calibration), "overhead_products": op.overhead_products,
        "n_params": op.dim, "n_probe": int(len(x)), "mode": "smooth",
        **{k: rec.details.get(k) for k in THEORY_KEYS},
        **bound_details(rec),
    }
    cert = None
    if certify:
        if curvature is None and (res.iterations >= min_iter or res.iterations >= op.dim):
            # the same run: 2k - 1 products on H hold K_k(H^2, b) (all of R^n once it has n steps)
            cert = linalg.certificate_from_lanczos(res, op.dim, failure_probability=failure_probability)
            details["certificate_source"] = "T4's Lanczos run (its random start), no further product"
        else:
            cert = linalg.spectral_radius_certificate(op, steps=k, failure_probability=failure_probability,
                                                      seed=seed + 1)
            details["certificate_source"] = "a run of its own on H^2 (start from seed + 1)"
        details["certificate"] = dataclasses.asdict(cert)
    details["min_iter"] = min_iter
    if curvature is None:  # no more products here: the kept graph would only add to the budget's peak memory
        op.release_graph()
    loc = (_budgets.t4(model, probe, c, rec, estimate, certificate=cert) if local
           else _budgets.not_computed("not requested (local=False)"))
    details["local"] = loc.details
    return make_result("T4", "smoothness", bound=rec.value, estimate=estimate, assumptions=merged_assumptions(rec),
                       converged=res.converged, n_products=res.n_products, seed=seed, seconds=sw.seconds,
                       details=details, **loc.fields(), **describe(model, x))


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tol", type=float, default=linalg.DEFAULT_TOL,
                   help="Lanczos stops when both Ritz residuals are <= tol * the spectral radius")
    p.add_argument("--max-iter", type=int, default=None,
                   help=f"Lanczos steps at most (default min(P, {linalg.DEFAULT_LANCZOS_MAX_ITER}))")
    p.add_argument("--hvp-method", default="auto", choices=linalg.HVP_METHODS,
                   help="Hessian-vector products: auto times both exact methods once and keeps the faster")
    _budgets.add_local_flag(p)
    add_certificate_flags(p)


def add_certificate_flags(p: argparse.ArgumentParser) -> None:
    """T4's randomized certificate flags (shared with checks.all)."""
    p.add_argument("--failure-probability", type=float, default=DEFAULT_FAILURE_PROBABILITY,
                   help="failure probability of T4's randomized local certificate (Kuczynski-Wozniakowski: Lanczos "
                        "on H^2 from a random start; 0 turns it off, leaving the deterministic proof's local bound)")
    p.add_argument("--certificate-steps", type=int, default=None,
                   help=f"Lanczos steps on H^2 of that certificate (2 Hessian products each; default: enough for a "
                        f"factor {CERTIFICATE_FACTOR} over the Ritz value at this many parameters)")


def certificate_options(args: argparse.Namespace) -> dict[str, Any]:
    p = args.failure_probability
    if not (p == 0 or 0 < p < 1):
        raise CheckInputError(f"--failure-probability must be in (0, 1), or 0 for no randomized certificate; got {p}")
    if args.certificate_steps is not None and args.certificate_steps < 1:
        raise CheckInputError(f"--certificate-steps must be >= 1, got {args.certificate_steps}")
    return {"failure_probability": p or None, "certificate_steps": args.certificate_steps}


def _options(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    return {"tol": args.tol, "max_iter": args.max_iter, "hvp_method": args.hvp_method, "local": args.local,
            **certificate_options(args)}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.smoothness", __doc__.splitlines()[0], run, argv, add_flags=_flags,
                   options=_options)


if __name__ == "__main__":
    raise SystemExit(main())
