"""``--max-memory``: what the checks may use, how their chunked work is sized by it, and the one refusal.

The checks' per-sample work (the input- and logit-Jacobian Grams of T3, T4 and T5's local bounds)
runs in chunks of probe samples whose memory is a share (:data:`CHUNK_SHARE`) of the budget, so it
does not grow with the probe. What cannot be chunked without changing its cost is the graph that
T4's (and T5's, T6's) Hessian-vector products keep over the whole probe: before those checks run,
:func:`check_fits` estimates it from the model's size and refuses, in one line (exit 2), a probe
whose graph would not fit, instead of letting the process be killed for memory. The estimate is
:data:`HVP_BYTES_PER_STATE` bytes a state (a neuron or input entry at a time step) a sample. On the
3-conv-layer net of the README the two product methods took about 40 (double backward, while its
graph is built; 60 before the smooth LIF's second-order adjoint became one node) and 80 (forward
over reverse) bytes a state over what the loaded model and probe hold; the estimate takes 96, which
leaves room for the rest of the process (model, probe, the Lanczos basis).

The default budget is half the machine's physical memory (:func:`default_max_memory`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from typing import Any

from checks._common import CheckInputError

CHUNK_SHARE = 8
"""The chunked per-sample work of a check uses at most 1/CHUNK_SHARE of the budget at a time."""
HVP_BYTES_PER_STATE = 96
"""Bytes per state and sample of the graph that Hessian-vector products keep (estimate; module docstring)."""
MIN_CHUNK_BYTES = 16 * 2**20
"""The smallest chunk budget: below it the chunks would be single samples anyway."""
CURVATURE_CHECKS = ("smoothness", "sam_error")
"""The check modules that run Hessian-vector products over the whole probe."""

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}
_budget: int | None = None


def default_max_memory() -> int:
    """Half of this machine's physical memory (the checks share it with the rest of the machine)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # no sysconf (not POSIX): a laptop's share
        return 4 * 2**30


def parse_size(text: str) -> int:
    """Bytes from '2G', '512M', '1.5GB', '1073741824'; a one-line CheckInputError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise CheckInputError(f"--max-memory: expected a size such as 2G, 512M or 1.5GB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def chunk_budget(default: int) -> int:
    """Bytes for one chunk of per-sample work: ``default``, or less where the budget's share is smaller.

    A larger budget never makes the chunks larger than ``default``: big chunks gain little time and
    would only raise the peak.
    """
    if _budget is None:
        return default
    return max(MIN_CHUNK_BYTES, min(default, _budget // CHUNK_SHARE))


@contextlib.contextmanager
def memory_budget(max_bytes: int | None) -> Iterator[None]:
    """Within the block, the checks size their chunks by ``max_bytes`` (None: their defaults)."""
    global _budget
    before, _budget = _budget, max_bytes
    try:
        yield
    finally:
        _budget = before


def hvp_graph_bytes(model: Any, samples: int) -> int:
    """The estimated memory of the kept graph of Hessian-vector products over ``samples`` probe samples."""
    cfg = model.config
    states = cfg.T * (sum(spec.width for spec in model.spiking_specs) + math.prod(cfg.input_shape))
    return HVP_BYTES_PER_STATE * states * int(samples)


def check_fits(model: Any, samples: int, max_bytes: int, what: str) -> None:
    """A one-line CheckInputError where the Hessian products' graph over the probe would exceed ``max_bytes``."""
    need = hvp_graph_bytes(model, samples)
    if need > max_bytes:
        fit = max(1, samples * max_bytes // max(need, 1))
        raise CheckInputError(
            f"{what}: the Hessian-vector products' graph over {samples} probe samples needs about "
            f"{format_size(need)} (estimate), over --max-memory {format_size(max_bytes)}; pass --batch {fit} or "
            f"less, or a larger --max-memory")


__all__ = ["CHUNK_SHARE", "CURVATURE_CHECKS", "HVP_BYTES_PER_STATE", "check_fits", "chunk_budget",
           "default_max_memory", "format_size", "hvp_graph_bytes", "memory_budget", "parse_size"]
