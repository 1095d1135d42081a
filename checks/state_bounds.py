"""T2 (compact state stability): observed membrane ranges per layer, smooth and hard, inside I_l.

    python -m checks.state_bounds --model ckpt.pt

T2 bounds every membrane value u^l_{t,i}, t <= T, by an interval that needs no
contraction and holds in hard mode too; the check compares the observed minimum and
maximum per layer and mode with the interval at t = T (the tightest that covers every
observed step). Any violation is a bug, in the model or in the bound.

With ``--local`` (the default) the record also holds T2's LOCAL bound on the worst side: T2's
recursion with the measured input entries, input currents I_t = W a_t + b and reset depth
(``checks._budgets.t2``), and its ``looseness`` budget.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

import torch

from checks import _budgets
from checks._cli import Loaded, run_cli
from checks._common import Stopwatch, bound_details, check_probe, merged_assumptions, traces, worst
from checks._result import CheckResult, make_result
from checks.constants import model_constants
from sast.model import SNN
from theory import ModelConstants, bounds

MODES = ("smooth", "hard")
NEEDS: tuple[str, ...] = ()
"""Nothing beyond the model and the probe (``checks._common.KNOWN_NEEDS``)."""


def run(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0, progress: bool = False,
        local: bool = True, constants: ModelConstants | None = None,
        states: Mapping[str, Sequence[torch.Tensor]] | None = None) -> CheckResult:
    """T2: per layer and mode, the observed u range against the interval at t = T (``local``: and T2's local bound).

    ``constants`` may pass precomputed ``model_constants(model, x)`` and ``states`` the membrane
    potentials ``{mode: traces(model, x, mode)}`` of both modes (shared with A4 by the live monitor).
    """
    check_probe(model, probe)
    sw = Stopwatch()
    x, _ = probe
    c = constants if constants is not None else model_constants(model, x)
    rec = bounds.state_interval(c)
    interval = rec.details.get("I_T") or rec.details.get("I")
    us = {mode: states[mode] if states is not None else traces(model, x, mode) for mode in MODES}
    observed = {mode: [(float(u.min()), float(u.max())) for u in us[mode]] for mode in MODES}
    del us  # not held under the local bound's own (float64) observation
    details = {"interval": interval, "observed": observed, **bound_details(rec)}
    if not interval:
        return make_result("T2", "state bounds", bound=None, estimate=None, assumptions=rec.assumptions,
                           seed=seed, dtype=x.dtype, device=x.device, seconds=sw.seconds, details=details)
    # each side of each interval is one comparison: |observed end| against |interval end| on that side
    sides = {}
    for mode in MODES:
        for l, ((u_lo, u_hi), (lo, hi)) in enumerate(zip(observed[mode], interval)):
            sides[(mode, l, "max")] = (max(u_hi, 0.0), hi)
            sides[(mode, l, "min")] = (max(-u_lo, 0.0), -lo)
    ratios = {k: (e / b if b > 0 else (0.0 if e == 0 else float("inf"))) for k, (e, b) in sides.items()}
    key = worst(ratios)
    details["worst"] = {"mode": key[0], "layer": key[1] + 1, "side": key[2]}
    estimate, bound = sides[key]
    loc = (_budgets.t2(model, x, c, key, bound, estimate) if local
           else _budgets.not_computed("not requested (local=False)"))
    details["local"] = loc.details
    return make_result("T2", "state bounds", bound=bound, estimate=estimate, assumptions=merged_assumptions(rec),
                       seed=seed, dtype=x.dtype, device=x.device, seconds=sw.seconds, details=details,
                       **loc.fields())


def _options(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    return {"local": args.local}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.state_bounds", __doc__.splitlines()[0], run, argv,
                   add_flags=_budgets.add_local_flag, options=_options)


if __name__ == "__main__":
    raise SystemExit(main())
