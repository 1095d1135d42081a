"""Small helpers shared by the checks (no CLI, no I/O)."""

from __future__ import annotations

import time
from typing import Any, Mapping

import torch

from sast.model import SNN


def merged_assumptions(*records: Any) -> dict[str, bool]:
    """The assumptions of several theory records, an assumption holding only if it holds in all."""
    out: dict[str, bool] = {}
    for rec in records:
        for k, v in (getattr(rec, "assumptions", None) or {}).items():
            out[k] = out.get(k, True) and bool(v)
    return out


def bound_details(rec: Any) -> dict[str, Any]:
    """What a theory record says, for a CheckResult's details (value, status, finite-T flag, reason)."""
    return {"theory_status": rec.status, "finite_T": rec.finite_T, "reason": rec.reason or None,
            "latex": rec.latex}


@torch.no_grad()
def traces(model: SNN, x: torch.Tensor, mode: str, batch: int = 256):
    """Membrane potentials per spiking layer over the whole probe batch (list of (B, T, ...) tensors)."""
    per_layer: list[list[torch.Tensor]] = []
    for i in range(0, len(x), batch):
        _, trace = model(x[i : i + batch], mode=mode, return_trace=True)
        if not per_layer:
            per_layer = [[] for _ in trace]
        for l, tr in enumerate(trace):
            per_layer[l].append(tr.u)
    return [torch.cat(us) for us in per_layer]


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def describe(model: SNN, x: torch.Tensor) -> dict[str, Any]:
    return {"dtype": str(x.dtype).removeprefix("torch."), "device": str(x.device)}


def worst(ratios: Mapping[Any, float]) -> Any:
    """The key with the largest ratio (the place a bound is closest to failing)."""
    return max(ratios, key=lambda k: ratios[k])
