"""Small helpers shared by the checks (no CLI, no I/O): input validation, what a check needs, traces."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Mapping, TypeVar

import torch
from threadpoolctl import threadpool_limits

from sast.model import SNN


class CheckInputError(ValueError):
    """Bad input to a check (wrong probe shape, unsupported architecture, bad split, ...): exit 2."""


KNOWN_NEEDS: Mapping[str, str] = {
    "rho": "the run's SAM radius, as the keywords rho (None when the run has none) and rho_source "
           "(where rho came from, or why there is none)",
    "run_dir": "the run folder (its config.json and metrics.jsonl), as the keyword run_dir",
}
"""What a check may need beyond the model and the probe, and how a runner passes it.

Every check module declares ``NEEDS: tuple[str, ...]``, a subset of these keys; a runner
(``checks.all.run_all``, the monitor's :class:`checks.monitor.Check`) passes exactly what
is declared, from what it knows of the run (a checkpoint, or the live training run)."""

_NO_NEEDS = ("check module {name} declares no NEEDS; add NEEDS: tuple[str, ...] = () "
             "(or the names it needs among {known})")
_UNKNOWN_NEED = "check module {name} needs {need!r}, which no runner provides; known needs: {known}"


def declared_needs(module: ModuleType) -> tuple[str, ...]:
    """A check module's ``NEEDS``, each one of :data:`KNOWN_NEEDS` (TypeError otherwise: a broken check module)."""
    known = ", ".join(KNOWN_NEEDS)
    try:
        needs = tuple(module.NEEDS)
    except AttributeError:
        raise TypeError(_NO_NEEDS.format(name=module.__name__, known=known)) from None
    for need in needs:
        if need not in KNOWN_NEEDS:
            raise TypeError(_UNKNOWN_NEED.format(name=module.__name__, need=need, known=known))
    return needs


def check_probe(model: SNN, probe: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Raise CheckInputError unless ``probe`` is (x, y) with x (B, T, *input_shape) and y (B,)."""
    if not (isinstance(probe, (tuple, list)) and len(probe) == 2):
        raise CheckInputError("probe must be a tuple (x, y) of tensors")
    x, y = probe
    cfg = model.config
    want = (cfg.T, *cfg.input_shape)
    if x.dim() != 2 + len(cfg.input_shape) or tuple(x.shape[1:]) != want:
        raise CheckInputError(f"probe x must have shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")
    if y.dim() != 1 or len(y) != len(x):
        raise CheckInputError(f"probe y must have shape ({len(x)},), got {tuple(y.shape)}")


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


_F = TypeVar("_F", bound=Callable[..., Any])


def numpy_blas_single_threaded(fn: _F) -> _F:
    """Run ``fn`` with numpy's and scipy's BLAS (OpenBLAS) on one thread (threadpoolctl), torch's threads untouched.

    The local bounds do their linear algebra in numpy (float64 Grams, eigvalsh on stacks of small
    matrices) between torch passes. torch's OpenMP threads keep spinning for a while after each
    parallel region, and OpenBLAS's own threads then compete with them for the same cores: on
    2 CPU cores one ||W diag(d)|| stack of T4's budget (64 Grams of 256 x 256) took 35 s so, and
    0.5 s with OpenBLAS on one thread (batched small products gain nothing from its threads).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
