"""Empirical estimators of THEORY.md's constants on a sast model, held against the derived bounds.

    python -m checks.all --model runs/NAME/ckpt.pt      (or python -m checks.NAME for one check)

One module per statement: ``contraction`` (A4), ``state_bounds`` (T2), ``lipschitz``
(T3), ``smoothness`` (T4), ``sam_error`` (T5), ``convergence`` (T6, from a run's monitor
log), ``mechanism`` (T7), ``transfer`` (E1, E2). Each has
``run(model, probe, *, seed, progress, ...) -> CheckResult`` with explicit keyword
options, declares in ``NEEDS`` what it needs beyond the model and the probe (the run's
rho, the run folder), and has ``main(argv)``. T2-T7's records also carry a local bound (the
proof with constants measured at w on the probe: ``checks.local`` measures them,
``checks._budgets`` assembles the bound and its looseness budget; ``--no-local`` skips it).

The public surface:

- :func:`load_checkpoint` -> :class:`Loaded`: a checkpoint's model and a fixed probe set
  of its data; :class:`CheckInputError` for bad input (a ValueError; exit 2 on a
  command line);
- :class:`CheckResult`, :func:`make_result`: the record every check returns;
- :func:`run_all` and :data:`CHECKS` (module name -> statement IDs): every check on a
  loaded checkpoint; :func:`format_results`, their verdict table as text;
- :class:`Monitor`, :class:`Quantity`, :class:`Check` and :data:`PRESETS`: the live monitor
  that ``python -m sast.train --monitor PRESET`` wires into training;
- ``checks.testing``: property-based tests of a bound (hypothesis strategies for tiny SNNs,
  exact float64 references, ``assert_certificate``); it needs the ``test`` extra, so it is
  loaded on first use only and is not in ``__all__`` (``from checks import *`` stays
  free of hypothesis).

Names resolve lazily (PEP 562), so ``python -m checks.all`` does not import
``checks.all`` twice, and ``import checks`` loads no model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckInputError": "checks._common",
    "Loaded": "checks._load",
    "load_checkpoint": "checks._load",
    "CheckResult": "checks._result",
    "make_result": "checks._result",
    "CHECKS": "checks.all",
    "run_all": "checks.all",
    "format_results": "checks._cli",
    "Check": "checks.monitor",
    "Monitor": "checks.monitor",
    "PRESETS": "checks.monitor",
    "Quantity": "checks.monitor",
}
__all__ = sorted(_EXPORTS)
_SUBMODULES = ("testing",)  # checks.testing resolves after a bare `import checks`


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m checks.NAME` does not import that module twice (runpy warns),
    # and `from checks import linalg` still finds the submodule (AttributeError below).
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"checks.{name}")
    raise AttributeError(f"module 'checks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
