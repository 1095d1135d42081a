"""Closed-form bounds of the SAST theory (THEORY.md): constants in, records out. numpy/sympy/scipy only, no torch.

Statement IDs: A1, A4 (assumptions checked on constants), T1 (``theory.scalar``),
T2-T7 (``theory.bounds``, re-exported here). ``theory.local``: the same proofs with measured
constants (local bounds at one w on one probe) and the looseness budget that telescopes from
the global bound to the estimate.
"""

from theory._constants import ModelConstants
from theory.bounds import (
    Bound,
    assumption_A1,
    contraction,
    convergence_rhs,
    input_lipschitz,
    kappa_sum,
    local_mechanism,
    sam_first_order,
    smoothness,
    state_interval,
    state_interval_at,
)

__all__ = [
    "Bound",
    "ModelConstants",
    "assumption_A1",
    "contraction",
    "convergence_rhs",
    "input_lipschitz",
    "kappa_sum",
    "local_mechanism",
    "sam_first_order",
    "smoothness",
    "state_interval",
    "state_interval_at",
]
