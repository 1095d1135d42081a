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

from typing import Sequence

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
    kappa_emp = [float(abs(g_derivative(u.double().cpu().numpy(), 1, *model.neuron_numpy(l), cfg.beta,
                                        cfg.reset)).max()) for l, u in enumerate(us)]
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


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.contraction", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
