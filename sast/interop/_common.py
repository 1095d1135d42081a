"""What the NIR importer and exporter share: the error class, the optional import of ``nir``, tolerances."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

NIR_MISSING = ("NIR support needs the 'nir' package (HDF5 through h5py): pip install 'sast-toolkit[nir]' "
               "(or pip install nir)")

FLOAT32_TOL = 4 * float(np.finfo(np.float32).eps)
"""Relative tolerance for 'equal up to float32 rounding' (about 4.8e-7).

NIR files hold float32 arrays as a rule (snnTorch writes tau = dt/(1 - beta) and r = tau/dt in float32), so two
values that agree to a few float32 ulps are the same value: lambda and theta may differ across neurons by that
much and still count as one, and an input gain r dt/tau within it of 1 is read as exactly 1 (so the weights of an
snnTorch file load bit for bit). Anything further apart is a real difference and is refused or folded exactly."""


METADATA_KEY = "sast"
"""The key of this toolkit's entry in a NIR graph's ``metadata`` (written by ``to_nir``, read by ``from_nir``)."""


class NIRImportError(ValueError):
    """A NIR graph this toolkit's SNN cannot represent exactly, or a file that is not one.

    The message is one line: the file (when the source was a path), the node, and the reason.
    """


def require_nir() -> ModuleType:
    """The ``nir`` module, or ImportError saying how to install it (it is an optional dependency)."""
    try:
        import nir
    except ImportError as e:
        raise ImportError(NIR_MISSING) from e
    return nir


def check_dt(dt: Any) -> float:
    """dt as a float; ValueError unless it is finite and > 0 (seconds per step, as the NIR libraries use)."""
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise NIRImportError(f"dt must be a number of seconds per step, got {dt!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise NIRImportError(f"dt must be a finite number > 0 (seconds per step), got {dt!r}")
    return value


def one_line(text: str, limit: int = 160) -> str:
    """The first line of ``text``, cut to ``limit`` characters (third-party messages can span many lines)."""
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
