"""E1 (hard-spike transfer) and E2 (deployment): empirical diagnostics on the probe set, no bound.

    python -m checks.transfer --model ckpt.pt [--batch 256]

A wrapper of ``sast.transfer.diagnostics`` (one smooth, one hard and one INT8 hard pass
over the probe set) that returns two CheckResults, so ``run`` returns a
``list[CheckResult]`` (E1 first, then E2), unlike the single-statement checks:

- E1: smooth_acc and hard_acc, the transfer gap (smooth - hard), hard/smooth
  prediction agreement, the logit discrepancy mean ||z_hard - z_smooth|| (and its max),
  per layer the fraction of membrane values in the soft band |u - theta| < 4/beta
  (smooth mode; hard mode apart), and, computed in the same passes, the expected
  calibration error of both modes;
- E2: hard-spike accuracy after per-tensor symmetric INT8 weight quantisation, and
  SynOps per sample (each spike times its fan-out, over layers and time) in smooth
  (expected count) and hard mode.

THEORY.md states no bound for E1 and E2, so both results are "not applicable" with
bound, estimate and ratio None and every number in ``details``; the status line's
``reason`` summarises them. Both records carry the time of the shared passes.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from checks._cli import run_cli
from checks._common import Stopwatch, check_probe, describe
from checks._result import CheckResult, make_result
from sast.model import SNN
from sast.transfer import diagnostics

NEEDS: tuple[str, ...] = ()
"""Nothing beyond the model and the probe (``checks._common.KNOWN_NEEDS``)."""
DEFAULT_BATCH = 256  # three forward passes per sample, no derivatives: a larger probe is cheap

E1_KEYS = ("n", "smooth_acc", "hard_acc", "gap", "agreement", "logit_discrepancy", "logit_discrepancy_max",
           "soft_band_fraction", "soft_band_fraction_hard", "ece_smooth", "ece_hard")
E2_KEYS = ("n", "int8_hard_acc", "hard_acc", "synops_smooth", "synops_hard")


def run(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0,
        progress: bool = False) -> list[CheckResult]:
    """E1 and E2 of ``model`` on ``probe``: ``[E1 result, E2 result]``, both "not applicable" (no bound).

    details of E1: smooth_acc, hard_acc, gap = smooth_acc - hard_acc, agreement,
    logit_discrepancy (mean over samples of ||z_hard - z_smooth||), logit_discrepancy_max,
    soft_band_fraction (per layer, smooth), soft_band_fraction_hard, ece_smooth, ece_hard, n.
    details of E2: int8_hard_acc, hard_acc (unquantised, for comparison), synops_smooth,
    synops_hard (per sample), n. ``seed`` is recorded only.
    """
    check_probe(model, probe)
    sw = Stopwatch()
    x, y = probe
    d = diagnostics(model, x, y.cpu(), device=x.device)
    seconds = sw.seconds
    e1: dict[str, Any] = {k: d[k] for k in E1_KEYS}
    e1["reason"] = (f"empirical, no bound: accuracy smooth {d['smooth_acc']:.4f}, hard {d['hard_acc']:.4f}, "
                    f"gap {d['gap']:+.4f}, agreement {d['agreement']:.4f}, "
                    f"logit discrepancy {d['logit_discrepancy']:.4g}")
    e2: dict[str, Any] = {k: d[k] for k in E2_KEYS}
    e2["reason"] = (f"empirical, no bound: INT8 hard accuracy {d['int8_hard_acc']:.4f}, "
                    f"SynOps/sample smooth {d['synops_smooth']:.4g}, hard {d['synops_hard']:.4g}")
    common = dict(bound=None, estimate=None, seed=seed, seconds=seconds, **describe(model, x))
    return [make_result("E1", "hard-spike transfer", details=e1, **common),
            make_result("E2", "deployment", details=e2, **common)]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.transfer", __doc__.splitlines()[0], run, argv, batch=DEFAULT_BATCH)


if __name__ == "__main__":
    raise SystemExit(main())
