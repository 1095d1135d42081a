"""A4 (contraction): kappa_emp = max over observed states of |g'(u)| against kappa_l.

    python -m checks.contraction --model ckpt.pt

kappa_l = sup_{u in I_l} |g'(u)| is computed by ``theory.bounds.contraction`` on the
state interval I_l of T2 (rigorous: grid maximum plus a Lipschitz correction for the
zero reset, closed form for subtract). The empirical kappa_emp_l is the largest
|g'(u)| over the membrane values u that the probe set produces in smooth mode (the
recurrence g belongs to the smooth model). kappa_emp <= kappa always holds, since the
observed states lie in I_l (T2); A4 itself is kappa_l < 1, and where it fails the
result says "assumption fails" and the finite-T forms of T3 and T4 apply.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from checks._cli import run_cli
from checks._common import Stopwatch, bound_details, check_probe, merged_assumptions, traces, worst
from checks._result import CheckResult, make_result
from checks.constants import model_constants
from sast.model import SNN
from theory import ModelConstants, bounds
from theory.scalar import g_derivative

NEEDS: tuple[str, ...] = ()
"""Nothing beyond the model and the probe (``checks._common.KNOWN_NEEDS``)."""


def run(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0, progress: bool = False,
        constants: ModelConstants | None = None, states: Sequence[torch.Tensor] | None = None) -> CheckResult:
    """A4: per layer, max |g'(u)| over observed smooth-mode states, against kappa_l.

    ``constants`` may pass precomputed ``model_constants(model, x)`` and ``states`` the
    smooth-mode membrane potentials ``traces(model, x, "smooth")`` (the live monitor shares
    one forward trace of its probe between A4 and T2).
    """
    check_probe(model, probe)
    sw = Stopwatch()
    x, _ = probe
    cfg = model.config
    rec = bounds.contraction(constants if constants is not None else model_constants(model, x))
    us = states if states is not None else traces(model, x, "smooth")
    kappa_emp = [max_abs_g_prime(u, *model.neuron_numpy(l), cfg.beta, cfg.reset) for l, u in enumerate(us)]
    kappa = rec.details.get("kappa") or []
    details = {"kappa": kappa, "kappa_emp": kappa_emp, "kappa_crude": rec.details.get("kappa_crude"),
               "I": rec.details.get("I"), "mode": "smooth", **bound_details(rec)}
    if not kappa:  # A1 fails: no kappa
        return make_result("A4", "contraction", bound=None, estimate=None, assumptions=rec.assumptions,
                           seed=seed, dtype=x.dtype, device=x.device, seconds=sw.seconds, details=details)
    layer = worst({l: (e / k if k > 0 else float("inf")) for l, (e, k) in enumerate(zip(kappa_emp, kappa))})
    details["layer"] = layer + 1
    return make_result("A4", "contraction", bound=kappa[layer], estimate=kappa_emp[layer],
                       assumptions=merged_assumptions(rec), seed=seed, dtype=x.dtype, device=x.device,
                       seconds=sw.seconds, details=details)


SCREEN_EPS = 1000
"""The screening margin of :func:`max_abs_g_prime`, in units of the states' dtype's machine epsilon times a bound
on the size of g''s terms: far above the rounding of a few elementwise ops, so no maximiser is dropped."""


def max_abs_g_prime(u: torch.Tensor, lam: Any, theta: Any, beta: float, reset: str) -> float:
    """max |g'(u)| over the states ``u`` (B, T, *neuron shape), as ``theory.scalar.g_derivative`` computes it in float64.

    lam, theta: numbers, or arrays of the neuron shape (``SNN.neuron_numpy``). A screening pass evaluates |g'|
    with torch in the states' own dtype (a few whole-tensor ops); only the states within a margin of its maximum
    (:data:`SCREEN_EPS` epsilons of that dtype times a bound on the terms of g') go through the float64 formula,
    so the result is that of the float64 formula on every state, bit for bit (tested), at a fraction of its cost.
    """
    lam_t = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
    theta_t = torch.as_tensor(theta, dtype=u.dtype, device=u.device)
    sig = torch.sigmoid(beta * (u - theta_t))
    dsig = beta * sig * (1 - sig)
    lam_max, theta_max = float(np.max(lam)), float(np.max(theta))
    if reset == "zero":  # g' = lam ((1 - sig) - u sig')
        screen = (lam_t * ((1 - sig) - u * dsig)).abs()
        scale = lam_max * (1.0 + float(u.abs().max()) * beta / 4.0)
    else:  # g' = lam - theta sig'
        screen = (lam_t - theta_t * dsig).abs()
        scale = lam_max + theta_max * beta / 4.0
    keep = screen >= screen.max() - SCREEN_EPS * torch.finfo(u.dtype).eps * scale
    mask = keep.cpu().numpy()
    pick = lambda a: a if np.ndim(a) == 0 else np.broadcast_to(a, mask.shape)[mask]  # noqa: E731
    states = u[keep].double().cpu().numpy()
    return float(np.abs(g_derivative(states, 1, pick(lam), pick(theta), beta, reset)).max())


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.contraction", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
