"""T5 (SAM first order): the three SAM approximation errors at the checkpoint, against L rho^2/2, L rho^2, L rho.

    python -m checks.sam_error --model ckpt.pt [--rho R]

F is the smooth-mode probe-batch loss, g = grad F(w), eps_hat = rho g / ||g||. T5 (for
an L-smooth F and ||eps|| <= rho) bounds, with L from T4's closed form:

    ascent_step    q1 = |F(w + eps_hat) - F(w) - rho ||g|||                    <= L rho^2 / 2
    inner_max_gap  q2 = max_{||eps||<=rho} F(w + eps) - F(w + eps_hat)        <= L rho^2   (and >= 0)
    grad_shift     q3 = ||grad F(w + eps_hat) - g||                            <= L rho
    taylor         max over random eps on the sphere ||eps|| = rho of
                   |F(w + eps) - F(w) - <g, eps>|                              <= L rho^2 / 2

q2's inner maximum is found by projected normalised gradient ascent on the ball, from
eps_hat and from a few random points on the sphere; the best value seen is kept, so q2
is a lower estimate of the true gap (the bound can only be tested from below). q2 < 0
would contradict T5's lower side; since eps_hat is itself a feasible start, it can only
come from a nondeterministic loss, and it is reported (``q2_negative``).

Each quantity is also shown against the same bound with the LOCAL curvature
L_local = max(|lambda_min|, |lambda_max|) of the probe-batch Hessian at w (Lanczos, as
in T4): an indication of how tight the bounds could be near w, not a guarantee (T5
needs smoothness over the whole ball). The result's estimate and bound are those of
the quantity with the largest ratio to its T4 bound (``worst`` in details).

rho: ``--rho``, else the run's rho from the checkpoint (``train_config.rho``), else
0.05 when that is 0 or absent; details say which (``rho_source``). The module declares
``NEEDS = ("rho",)``, so ``python -m checks.all`` and the live monitor pass ``run`` the
run's rho. The model is never modified: every F(w + eps) goes through
``torch.func.functional_call`` with a perturbed copy of the parameters.

With ``--local`` (the default) the record also holds T5's LOCAL bound (``local_bound``, for
the worst quantity; per quantity in the table as ``local_bound``): T5 with L from T4's proof
on the rho-ball around w with measured constants, each a sup over the ball on this probe:
every state within delta_l of its value at w (delta_l self-consistent: rho times the bound on
||du^l/dw|| over the delta-box stays below delta_l), every weight within rho
(``checks._budgets.t5``). Unlike L_local above it is a certificate, for this w, rho and probe.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from checks import _budgets, linalg
from checks._cli import Loaded, run_cli
from checks._common import CheckInputError, Stopwatch, bound_details, check_probe, describe, merged_assumptions, worst
from checks._load import checkpoint_rho
from checks._result import CheckResult, make_result
from checks.constants import ball_constants, model_constants
from checks.smoothness import local_curvature
from sast.model import SNN
from sast.sam import GRAD_NORM_FLOOR
from theory import ModelConstants, bounds

NEEDS: tuple[str, ...] = ("rho",)
"""The run's rho and where it came from (``checks._common.KNOWN_NEEDS``): T5 is checked at the
radius the run trained with."""

DEFAULT_RHO = 0.05  # when neither --rho nor the run gives one (an SF or HFSB run has rho = 0)
# Inner maximisation of q2: random sphere starts besides eps_hat, and ascent steps per start.
# More only tighten the lower estimate; a few dozen gradients cost about as much as Lanczos.
ASCENT_STARTS = 2
ASCENT_STEPS = 10
# First step of the normalised ascent, a fraction of rho; halved after every step that does
# not raise F, so the iterates settle on the best point instead of jumping around it.
ASCENT_STEP = 0.5
TAYLOR_SAMPLES = 8  # random directions for the Taylor remainder (each one forward pass)
# q2 below -NEGATIVE_TOL * F(w) is reported: in exact arithmetic q2 >= 0 (eps_hat is a start).
NEGATIVE_TOL = 1e-6
QUANTITIES = ("ascent_step", "inner_max_gap", "grad_shift", "taylor")


class _Objective:
    """F(w) = mean cross-entropy of the smooth model on the probe, as a function of a flat parameter vector."""

    def __init__(self, model: SNN, x: Tensor, y: Tensor) -> None:
        self.model, self.x, self.y = model, x, y
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.const = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.const.update({n: b.detach() for n, b in model.named_buffers()})
        self.w = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.n_grads = 0  # gradient evaluations (the cost of this check, besides Lanczos)
        self.n_losses = 0

    def _params(self, w: Tensor) -> dict[str, Tensor]:
        return {n: c.view(s) for n, c, s in zip(self.names, w.split(self.numels), self.shapes)}

    def _loss(self, w: Tensor) -> Tensor:
        logits = functional_call(self.model, (self._params(w), self.const), (self.x,), {"mode": "smooth"})
        return F.cross_entropy(logits, self.y)

    @torch.no_grad()
    def loss(self, eps: Tensor | None = None) -> float:
        self.n_losses += 1
        return float(self._loss(self.w if eps is None else self.w + eps))

    def loss_and_grad(self, eps: Tensor | None = None) -> tuple[float, Tensor]:
        self.n_grads += 1
        with torch.enable_grad():
            w = (self.w if eps is None else self.w + eps).detach().requires_grad_(True)
            loss = self._loss(w)
            (g,) = torch.autograd.grad(loss, w)
        return float(loss.detach()), g.detach()


def _random_sphere(n: int, dim: int, rho: float, gen: torch.Generator, like: Tensor) -> list[Tensor]:
    out = []
    for _ in range(n):
        v = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
        out.append(rho * v / v.norm())
    return out


def _project(eps: Tensor, rho: float) -> Tensor:
    norm = float(eps.norm())
    return eps if norm <= rho else eps * (rho / norm)


def inner_max(obj: Any, starts: Sequence[Tensor], rho: float, steps: int,
              step: float = ASCENT_STEP) -> tuple[float, int, list[float]]:
    """max F(w + eps) over ||eps|| <= rho by projected normalised gradient ascent from each start.

    From each start: a step of length alpha along grad F / ||grad F||, projected onto the
    ball, is kept if it raises F, else alpha is halved (alpha starts at ``step`` * rho);
    each try is one gradient. ``obj`` has ``loss_and_grad(eps) -> (F(w + eps), grad)``.
    Returns (the best value seen, the start it came from, the best value per start). Every
    iterate is feasible, so the best value is a lower estimate of the true maximum.
    """
    best_per_start = []
    for eps in starts:
        eps = _project(eps, rho)
        value, g = obj.loss_and_grad(eps)
        alpha = step * rho
        for _ in range(steps):
            gn = float(g.norm())
            if gn <= GRAD_NORM_FLOOR:  # a stationary point of F inside the ball
                break
            cand = _project(eps + (alpha / gn) * g, rho)
            v, gc = obj.loss_and_grad(cand)
            if v > value:
                eps, value, g = cand, v, gc
            else:
                alpha /= 2
        best_per_start.append(value)
    k = max(range(len(best_per_start)), key=best_per_start.__getitem__)
    return best_per_start[k], k, best_per_start


def sam_quantities(model: SNN, probe: tuple[Tensor, Tensor], rho: float, *, seed: int = 0,
                   ascent_starts: int = ASCENT_STARTS, ascent_steps: int = ASCENT_STEPS,
                   taylor_samples: int = TAYLOR_SAMPLES) -> dict[str, Any]:
    """The T5 quantities at w (no bounds): F, ||g||, q1 (ascent_step), q2 (inner_max_gap), q3 (grad_shift), taylor.

    Random points on the sphere come from a generator seeded by ``seed`` (the global torch
    RNG is not touched). Returns plain numbers, and the gradient and loss counts.
    """
    x, y = probe
    obj = _Objective(model, x, y)
    f0, g = obj.loss_and_grad()
    gn = float(g.norm())
    eps_hat = g * (rho / max(gn, GRAD_NORM_FLOOR))  # eps_hat = 0 when g = 0 (as sast.sam does)
    f_hat, g_hat = obj.loss_and_grad(eps_hat)
    q1 = abs(f_hat - f0 - rho * gn)
    q3 = float((g_hat - g).norm())
    gen = torch.Generator().manual_seed(seed)
    remainders = []
    for eps in _random_sphere(taylor_samples, g.numel(), rho, gen, g):
        remainders.append(abs(obj.loss(eps) - f0 - float(torch.dot(g, eps))))
    starts = [eps_hat] + _random_sphere(ascent_starts, g.numel(), rho, gen, g)
    best, k, per_start = inner_max(obj, starts, rho, ascent_steps)
    q2 = best - f_hat
    return {
        "F": f0, "grad_norm": gn, "F_eps_hat": f_hat, "ascent_step": q1, "inner_max_gap": q2, "grad_shift": q3,
        "taylor": max(remainders) if remainders else 0.0, "taylor_all": remainders,
        "q2_negative": q2 < -NEGATIVE_TOL * max(abs(f0), 1.0),
        "ascent": {"starts": len(starts), "steps": ascent_steps, "best_start": "eps_hat" if k == 0 else f"random {k}",
                   "best_per_start": per_start, "max_value": best},
        "n_grads": obj.n_grads, "n_losses": obj.n_losses,
    }


@dataclass(frozen=True)
class SharedCurvature:
    """The Lanczos extremes of a T4 record (what T5 reads of a :class:`linalg.LanczosResult`)."""

    lambda_min: float
    lambda_max: float
    converged: bool


def curvature_of(t4_result: CheckResult | None, *, seed: int, tol: float, max_iter: int | None,
                 n_probe: int) -> SharedCurvature | None:
    """T4's Lanczos extremes where its record ran with these settings (or more steps) on a probe of this size.

    The caller vouches for the same model and probe (checks.all passes T4's record of the same
    loaded checkpoint); the settings are checked here, so a record from another run of Lanczos is
    never taken for this one.
    """
    if t4_result is None or t4_result.id != "T4":
        return None
    d = t4_result.details
    if d.get("lambda_min") is None or d.get("lambda_max") is None:
        return None
    steps = max_iter if max_iter is not None else min(int(d.get("n_params") or 0), linalg.DEFAULT_LANCZOS_MAX_ITER)
    # as accurate at least: the same start and stopping rule, and no fewer steps allowed (a longer run's Ritz
    # values only move outward, toward the extremes)
    same = (t4_result.seed == seed and d.get("tol") == tol and d.get("n_probe") == n_probe
            and (d.get("max_iter") or 0) >= steps)
    if not same:
        return None
    return SharedCurvature(float(d["lambda_min"]), float(d["lambda_max"]), bool(t4_result.converged))


def _bounds_for(L: float | None, rho: float) -> dict[str, float] | None:
    if L is None:
        return None
    rec = bounds.sam_first_order(L, rho)
    return {k: rec.details[k] for k in QUANTITIES}


def _ratio(e: float, b: float | None) -> float | None:
    if b is None:
        return None
    return e / b if b > 0 else (0.0 if e == 0 else math.inf)


def run(model: SNN, probe: tuple[Tensor, Tensor], *, seed: int = 0, progress: bool = False,
        rho: float | None = None, rho_source: str | None = None, ascent_starts: int = ASCENT_STARTS,
        ascent_steps: int = ASCENT_STEPS, taylor_samples: int = TAYLOR_SAMPLES,
        tol: float = linalg.DEFAULT_TOL, max_iter: int | None = None, hvp_method: linalg.HVPMethod = "auto",
        check_deterministic: bool = True, local: bool = True,
        constants: ModelConstants | None = None, t4_result: CheckResult | None = None) -> CheckResult:
    """T5: the SAM first-order errors q1, q2, q3 and the Taylor remainder at w, against T4's L on the rho-ball.

    ``rho`` None means :data:`DEFAULT_RHO`; ``rho_source`` says where a given rho came
    from, or, with ``rho`` None, why there is none ("the run's rho is 0"). ``tol``,
    ``max_iter``, ``hvp_method`` and ``check_deterministic`` govern the Lanczos run for
    the local curvature (``local=False`` skips it, and the local bound). ``constants`` may pass
    precomputed ``model_constants(model, x)``. ``t4_result``: T4's record on the same probe at the
    same w (``checks.all`` runs T4 first); where it ran Lanczos with this seed, ``tol`` and
    ``max_iter``, its extremes are the local curvature (details say ``curvature_source``) and no
    Lanczos runs here.
    """
    check_probe(model, probe)
    if rho is None:
        rho, rho_source = _default_rho(rho_source or "no rho given")
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise CheckInputError(f"rho must be a finite number > 0, got {rho!r}; pass --rho, e.g. --rho {DEFAULT_RHO}")
    counts = {"ascent_starts": ascent_starts, "ascent_steps": ascent_steps, "taylor_samples": taylor_samples}
    for name, v in counts.items():
        if v < 0:
            raise CheckInputError(f"{name} must be >= 0, got {v}")
    sw = Stopwatch()
    x, _ = probe
    at_w = constants if constants is not None else model_constants(model, x)
    # T5's Taylor arguments need L along every segment w -> w + eps: T4 on the rho-ball (A3 plus rho)
    c_ball = ball_constants(model, at_w, float(rho))
    t4 = bounds.smoothness(c_ball)
    L = t4.value
    L_at_w = bounds.smoothness(at_w).value
    q = sam_quantities(model, probe, float(rho), seed=seed, ascent_starts=ascent_starts, ascent_steps=ascent_steps,
                       taylor_samples=taylor_samples)
    lanczos, L_local, n_hvp, source = None, None, 0, None
    if local:
        lanczos = curvature_of(t4_result, seed=seed, tol=tol, max_iter=max_iter, n_probe=len(x))
        source = "T4's record" if lanczos is not None else "own Lanczos run"
        if lanczos is None:
            lanczos, op = local_curvature(model, probe, tol=tol, max_iter=max_iter, seed=seed,
                                          hvp_method=hvp_method, check_deterministic=check_deterministic)
            op.release_graph()  # no more products: the budget below should not carry its memory
            n_hvp = lanczos.n_products
        L_local = max(abs(lanczos.lambda_min), abs(lanczos.lambda_max))
    b, b_local = _bounds_for(L, rho), _bounds_for(L_local, rho)
    table = {}
    for k in QUANTITIES:
        table[k] = {"value": q[k],
                    "bound": None if b is None else b[k], "ratio": _ratio(q[k], None if b is None else b[k]),
                    "bound_local": None if b_local is None else b_local[k],
                    "ratio_local": _ratio(q[k], None if b_local is None else b_local[k]),
                    "holds_local": None if b_local is None else q[k] <= b_local[k]}
    t5 = bounds.sam_first_order(L, rho)
    details: dict[str, Any] = {
        "rho": rho, "rho_source": rho_source or "given", "L": L, "L_local": L_local, "L_at_w": L_at_w,
        "L_note": "L is T4 on the rho-ball around w (every norm of A3 plus what a perturbation of size rho adds)",
        "local_note": "local curvature max|lambda| of the probe Hessian at w: an indication, not a guarantee",
        "lambda_min": None if lanczos is None else lanczos.lambda_min,
        "lambda_max": None if lanczos is None else lanczos.lambda_max,
        "lanczos_converged": None if lanczos is None else lanczos.converged, "curvature_source": source,
        "quantities": table, "F": q["F"], "grad_norm": q["grad_norm"], "F_eps_hat": q["F_eps_hat"],
        "taylor_all": q["taylor_all"], "q2_negative": q["q2_negative"], "ascent": q["ascent"],
        "q2_note": "q2 is a lower estimate of the inner maximum (projected gradient ascent)",
        "n_grads": q["n_grads"], "n_losses": q["n_losses"], "n_probe": int(len(x)), "mode": "smooth",
        "t4_theory_status": t4.status, **bound_details(t5),
        "finite_T": t4.finite_T, "reason": t5.reason or t4.reason or None,
    }
    if L is None:
        return make_result("T5", "SAM first order", bound=None, estimate=None, assumptions=t4.assumptions,
                           converged=None if lanczos is None else lanczos.converged, n_products=n_hvp, seed=seed,
                           seconds=sw.seconds, details=details, **describe(model, x))
    key = worst({k: table[k]["ratio"] for k in QUANTITIES})
    details["worst"] = key
    if local:
        factor = table[key]["bound"] / L
        loc = _budgets.t5(model, probe, at_w, c_ball, t4, float(rho), factor, table[key]["bound"], table[key]["value"])
        L_cert = loc.details.get("L_ball_local")
        for k in QUANTITIES:
            table[k]["local_bound"] = None if L_cert is None else table[k]["bound"] / L * L_cert
        if L_cert is not None and L_local and table[key]["value"] > 0:
            # information, not a bound: the remaining slack = (L on the ball / curvature at w) x (T5 at the curvature / q)
            loc.details["remaining_split"] = {"ball_over_curvature_at_w": L_cert / L_local,
                                              "curvature_bound_over_estimate": factor * L_local / table[key]["value"]}
    else:
        loc = _budgets.not_computed("not requested (local=False)")
    details["local"] = loc.details
    return make_result("T5", "SAM first order", bound=table[key]["bound"], estimate=table[key]["value"],
                       assumptions=merged_assumptions(t4, t5), converged=None if lanczos is None else lanczos.converged,
                       n_products=n_hvp, seed=seed, seconds=sw.seconds, details=details, **loc.fields(),
                       **describe(model, x))


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rho", type=float, default=None,
                   help=f"SAM radius (default: the run's rho, or {DEFAULT_RHO} if that is 0 or absent)")
    p.add_argument("--ascent-starts", type=int, default=ASCENT_STARTS,
                   help="random sphere starts of the inner maximisation, besides eps_hat")
    p.add_argument("--ascent-steps", type=int, default=ASCENT_STEPS, help="projected gradient ascent steps per start")
    p.add_argument("--taylor-samples", type=int, default=TAYLOR_SAMPLES,
                   help="random directions of the Taylor remainder")
    p.add_argument("--tol", type=float, default=linalg.DEFAULT_TOL, help="Lanczos tolerance of the local curvature")
    p.add_argument("--max-iter", type=int, default=None, help="Lanczos steps at most for the local curvature")
    _budgets.add_local_flag(p)


def _default_rho(why: str) -> tuple[float, str]:
    return DEFAULT_RHO, f"default {DEFAULT_RHO:g} ({why})"


def rho_from_checkpoint(ckpt: dict[str, Any]) -> tuple[float, str]:
    """The run's rho from ``train_config.rho``, or DEFAULT_RHO (and why) when it is 0 or absent."""
    rho, source = checkpoint_rho(ckpt)
    return (rho, source) if rho is not None else _default_rho(source)


def _options(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    rho, source = (args.rho, "--rho") if args.rho is not None else checkpoint_rho(loaded.ckpt)
    return {"rho": rho, "rho_source": source, "ascent_starts": args.ascent_starts, "ascent_steps": args.ascent_steps,
            "taylor_samples": args.taylor_samples, "tol": args.tol, "max_iter": args.max_iter, "local": args.local}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.sam_error", __doc__.splitlines()[0], run, argv, add_flags=_flags,
                   options=_options)


if __name__ == "__main__":
    raise SystemExit(main())
