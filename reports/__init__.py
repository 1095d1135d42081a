"""Theory-alignment reports: run folders (JSON) in, one self-contained HTML file out.

    python -m reports.build RUN_DIR [RUN_DIR ...] -o report.html
    python -m reports.sweep SWEEP_DIR -o report.html   # a sweep's results.json

The public API: :func:`build_report` (read, render, write atomically),
:func:`render_report` (runs to an HTML string), :func:`load_run` /
:func:`load_runs` (a run folder to a :class:`Run`, recording what is missing),
and :class:`NotARunFolder`; :func:`build_sweep_report` renders a sweep
(:mod:`reports.sweep`). The view models are in :mod:`reports.views`, each
run's command and configuration in :mod:`reports.provenance`, figures in
:mod:`reports.figures`; fake run folders for tests in :mod:`reports.testing`.
The run folder's contract is :mod:`runfolder`'s. This package reads JSON only:
it imports neither torch nor the ``sast`` and ``checks`` packages.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_report": "reports.build",
    "build_sweep_report": "reports.sweep",
    "load_runs": "reports.build",
    "render_report": "reports.build",
    "NotARunFolder": "reports.runs",
    "Run": "reports.runs",
    "load_run": "reports.runs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m reports.build` does not import reports.build twice (runpy warns),
    # and reading a run folder does not import matplotlib.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
