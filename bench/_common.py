"""Shared pieces of the benchmarks: round-robin timing with paired ratios, the demo network, frames.

Timing rules (the machine is shared, so absolute times drift): every contender runs once per
round, in one process, in a rotated order; each is reported as the median of its times and, for
ratios, as the median over rounds of (time / the baseline's time in the same round), so slow
periods of the machine fall on both sides of a ratio. Warm-up rounds are discarded.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sast import heap, native
from sast.model import SNN, SNNConfig

# The demo network of the issue and of `make demo`: synth-nmnist frames (2 x 34 x 34), T = 20,
# one hidden LIF layer of 256, zero reset; a training batch of 128 and ~2% nonzero inputs.
DEMO_INPUT = (2, 34, 34)
DEMO_LAYERS = ["dense:256"]
DEMO_T = 20
DEMO_BATCH = 128
DEMO_DENSITY = 0.02
DEMO_BETA = 0.5  # sast.train's default
# A conv network in the spirit of the gesture default (conv, conv, pool, dense) on a 32 x 32 sensor.
CONV_INPUT = (2, 32, 32)
CONV_LAYERS = ["conv:16:3:2", "conv:32:3:2", "pool:2", "dense:128"]
CONV_BATCH = 32


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Round-robin times (seconds) of named contenders; ratios are paired by round."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, name: str, baseline: str) -> float:
        """median over rounds of t_name / t_baseline (same round)."""
        return statistics.median(a / b for a, b in zip(self.times[name], self.times[baseline]))

    def ratio_spread(self, name: str, baseline: str) -> tuple[float, float]:
        """The 25th and 75th percentiles of the paired ratios (how much the machine moved them)."""
        r = sorted(a / b for a, b in zip(self.times[name], self.times[baseline]))
        if len(r) < 4:
            return r[0], r[-1]
        q = statistics.quantiles(r, n=4)
        return q[0], q[2]

    def summary(self, baseline: str | None = None) -> dict[str, dict[str, float]]:
        out = {}
        for name in self.times:
            row = {"median_ms": 1e3 * self.median(name), "rounds": len(self.times[name])}
            if baseline is not None:
                lo, hi = self.ratio_spread(name, baseline)
                row.update(ratio=self.ratio(name, baseline), ratio_q25=lo, ratio_q75=hi)
            out[name] = row
        return out


def round_robin(fns: Mapping[str, Callable[[], Any]], *, rounds: int, warmup: int = 1,
                device: torch.device | str = "cpu", budget_s: float | None = None) -> Timing:
    """Time each function once per round, rotating the order; ``budget_s`` stops early (>= 3 rounds)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    timing = Timing({n: [] for n in names})
    start = time.perf_counter()
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            synchronize(device)
            t0 = time.perf_counter()
            fns[name]()
            synchronize(device)
            timing.times[name].append(time.perf_counter() - t0)
        if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
            break
    return timing


def print_table(title: str, summary: Mapping[str, Mapping[str, float]], baseline: str | None = None,
                file=sys.stdout) -> None:
    """A plain table: name, median time, and the paired ratio to ``baseline`` with its quartiles."""
    print(f"\n{title}", file=file)
    head = f"  {'contender':<34}{'median ms':>11}"
    if baseline:
        head += f"{'ratio':>10}{'(q25-q75)':>16}   ratio = time / {baseline}, paired by round"
    print(head, file=file)
    for name, row in summary.items():
        line = f"  {name:<34}{row['median_ms']:>11.2f}"
        if baseline and "ratio" in row:
            spread = f"({row['ratio_q25']:.2f}-{row['ratio_q75']:.2f})"
            line += f"{row['ratio']:>10.3f}{spread:>16}"
        print(line, file=file)


def demo_model(*, layers: list[str] | None = None, input_shape: tuple[int, ...] = DEMO_INPUT, T: int = DEMO_T,
               reset: str = "zero", beta: float = DEMO_BETA, seed: int = 0,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SNN:
    torch.manual_seed(seed)
    cfg = SNNConfig(input_shape=input_shape, layers=list(layers or DEMO_LAYERS), T=T, beta=beta, reset=reset)
    return SNN(cfg).to(device=device, dtype=dtype)


def event_frames(batch: int, T: int, input_shape: tuple[int, ...], density: float, *, seed: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Binary frames (batch, T, *input_shape) with each entry 1 with probability ``density``."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand((batch, T, *input_shape), generator=gen) < density).to(dtype)
    return x.to(device)


def labels(batch: int, classes: int = 10, *, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed)).to(device)


def environment() -> dict[str, Any]:
    """What the timings ran on (recorded beside them: they mean little without it)."""
    env: dict[str, Any] = {
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "native": native.status(),  # the fast path's compiled loops (sast.native): built, off or unavailable
        "freed_memory_kept": heap.retained(),  # sast.heap's policy in effect
    }
    try:
        env["load_average"] = os.getloadavg()
    except OSError:
        pass
    return env


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, (torch.dtype, torch.device, Path)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (0 when both are zero)."""
    a, b = a.detach().double().reshape(-1), b.detach().double().reshape(-1)
    scale = float(b.norm())
    diff = float((a - b).norm())
    return 0.0 if diff == 0 else (diff / scale if scale > 0 else math.inf)
