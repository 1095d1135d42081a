"""The live monitor: theory quantities measured on a fixed probe set while a model trains.

    python -m sast.train --monitor default      (also: full, off)

The monitor is a ``sast.train.Callback``; the training command line (the composition
root) wires it in, so ``sast`` never imports ``checks``. Following cockpit's model, a
:class:`Quantity` says

- *when* it runs: a schedule, a plain function from an int to bool, read as a step
  count (``on="step"``: checked at the start of training, step 0 = w_0, and after every
  step k, the parameters then being w_k) or as a count of finished epochs
  (``on="epoch"``: checked at the end of each epoch, 1, 2, ...), or ``on="end"``: once,
  when training ends (the schedule is then not consulted); helpers :class:`every`,
  :class:`log_spaced`, :class:`at`, :data:`at_epoch_end`, :data:`at_train_end`;
- *what it needs*: the first ``probe_size`` samples of the probe set (all if None);
- *what it reports*: a probe record or a check result, which the monitor writes to the
  run's ``metrics.jsonl`` keyed by the quantity's stable ``id`` (a statement ID, never a
  class name):

      {"kind": "probe", "step", "epoch", "loss", "grad_norm_sq", "sigma2", "batch_size", ...}
      {"kind": "check", "step", "epoch", "result": CheckResult.to_json()}

  plus one ``{"kind": "monitor", "event": "start", "preset", "quantities", "probe"}``
  record when training starts and ``{"kind": "monitor", "event": "end", "seconds", ...}``
  when it ends. On resume the monitor takes its counters from the checkpoint
  (:meth:`Monitor.load_state_dict`) and logs no second start, so the log of a resumed run
  equals the uninterrupted run's, record for record (timings aside). Step records carry
  the epoch in progress (as ``train`` records do), epoch-end records the number of
  finished epochs (as ``eval`` records do). A quantity that raises is recorded as
  ``{"kind": "monitor_error", "id", "error"}`` and training goes on (``strict=True``
  re-raises, for tests).

Presets are named lists of quantities (:data:`PRESETS`): ``off``, ``default``, ``full``.

The probe set is drawn once, when training starts, from the run's training split
(T6's F is the objective the minibatches estimate without bias, the training loss; a
validation probe would measure the population loss, which T6 does not bound) with a
fixed seed (:data:`PROBE_SEED`, :data:`PROBE_SIZE` samples, a random order, so
the first n samples are a uniform subset): it is the same whatever the preset, and the
same on resume. The monitor does not change training: it never touches the global RNG
(random starts come from seeded generators), never writes ``.grad`` or the parameters
(gradients by ``torch.autograd.grad``, perturbations by ``functional_call``), and puts
the model back in train or eval mode, module by module, after each quantity.

Probe record (T6's inputs): F(w_k) and ||grad F(w_k)||^2 of the smooth-mode mean
cross-entropy on the probe set, and sigma^2, the per-sample gradient variance
E||g_i - grad F||^2 of A5 (a minibatch of size b has variance sigma^2/b). sigma^2 comes
from the same computation, without per-sample gradients: the probe's gradient is taken
over m groups (:data:`SIGMA_GROUPS`) of sizes s_j (m smaller passes instead of one, ~+40%
on the demo's probe), and

    sigma^2_hat = sum_j s_j ||g_j - g||^2 / (m - 1),   g = sum_j s_j g_j / n

is unbiased for i.i.d. samples (E||g_j - g||^2 = sigma^2 (1/s_j - 1/n)); averaged over
random partitions of the probe it equals the per-sample sample variance
(1/(n - 1)) sum_i ||g_i - g||^2 exactly. One group per sample is the per-sample formula.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from checks._common import declared_needs
from checks._result import CheckResult
from sast.callbacks import Callback

if TYPE_CHECKING:
    from sast.model import SNN
    from sast.sam import StepStats
    from sast.train import Run

PROBE_SIZE = 128  # samples of the training split: F and ||grad F||^2 to a few percent, ~2 minibatch gradients
PROBE_SEED = 2024  # fixed: every run (and every preset) of one data set shares one probe set
SIGMA_GROUPS = 4  # groups of the probe gradient for sigma^2 (m - 1 = 3 degrees of freedom, ~27% relative spread)

Schedule = Callable[[int], bool]


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class every:
    """True at n, 2n, 3n, ... (and at ``start``; with on="step", at step 0 = w_0)."""

    n: int
    start: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"every(n): n must be >= 1, got {self.n}")

    def __call__(self, k: int) -> bool:
        return k >= self.start and (k - self.start) % self.n == 0


@dataclass(frozen=True)
class log_spaced:
    """True at start, start*base, start*base^2, ... (1, 2, 4, 8, ... by default)."""

    base: int = 2
    start: int = 1

    def __post_init__(self) -> None:
        if self.base < 2 or self.start < 1:
            raise ValueError(f"log_spaced: need base >= 2 and start >= 1, got base={self.base}, start={self.start}")

    def __call__(self, k: int) -> bool:
        if k < self.start or k % self.start:
            return False
        q = k // self.start
        while q % self.base == 0:
            q //= self.base
        return q == 1


@dataclass(frozen=True)
class at:
    """True exactly at the given counts."""

    points: tuple[int, ...]

    def __init__(self, *points: int) -> None:
        object.__setattr__(self, "points", tuple(sorted(int(p) for p in points)))

    def __call__(self, k: int) -> bool:
        return k in self.points


@dataclass(frozen=True)
class _Always:
    name: str

    def __call__(self, k: int) -> bool:
        return True

    def __repr__(self) -> str:
        return self.name


at_epoch_end: Schedule = _Always("at_epoch_end")
"""With ``on="epoch"``: the end of every epoch."""
at_train_end: Schedule = _Always("at_train_end")
"""With ``on="end"`` (which consults no schedule): once, when training ends."""


# --------------------------------------------------------------------------- quantities


@dataclass(frozen=True)
class Quantity:
    """One monitored quantity: its stable ``id``, when it runs, what it needs, what it computes.

    ``compute(model, probe, run, seed)`` returns a dict (a probe record's fields, logged
    with ``kind`` "probe") or a :class:`CheckResult` (logged as kind "check"). The model
    is in eval mode while it runs, and the probe is the first ``probe_size`` samples.
    """

    id: str
    schedule: Schedule
    compute: Callable[..., "dict[str, Any] | CheckResult"]
    on: str = "step"
    probe_size: int | None = None

    def __post_init__(self) -> None:
        if self.on not in ("step", "epoch", "end"):
            raise ValueError(f"Quantity {self.id!r}: on must be 'step', 'epoch' or 'end', got {self.on!r}")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "on": self.on, "schedule": repr(self.schedule), "probe_size": self.probe_size,
                "compute": repr(self.compute)}


def probe_statistics(model: "SNN", x: torch.Tensor, y: torch.Tensor, *, groups: int = SIGMA_GROUPS) -> dict[str, Any]:
    """F, ||grad F||^2 and the grouped sigma^2 estimate (module docstring) of the smooth-mode probe loss.

    Gradients by ``torch.autograd.grad`` (``.grad`` is not touched). The spread
    sum_j s_j ||g_j - g||^2 is formed from the differences themselves, so it suffers no
    cancellation, in the model's dtype; the per-parameter sums add up in Python floats.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    n = len(y)
    chunks = torch.arange(n).tensor_split(max(1, min(groups, n)))
    m = len(chunks)
    sizes, per_group, loss_sum = [], [], 0.0
    for idx in chunks:
        loss = F.cross_entropy(model(x[idx], mode="smooth"), y[idx])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        per_group.append([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
        sizes.append(len(idx))
        loss_sum += len(idx) * float(loss.detach())
    grad_norm_sq, spread = 0.0, 0.0
    for k in range(len(params)):
        G = torch.stack([gr[k] for gr in per_group]).flatten(1)  # (m, numel): the groups' gradients
        w = torch.tensor(sizes, dtype=G.dtype, device=G.device)
        g = (w[:, None] * G).sum(0) / n  # the probe gradient (the groups' weighted mean)
        grad_norm_sq += float(g.square().sum())  # torch's pairwise sums: float32 suffices here
        spread += float((w * (G - g).square().sum(1)).sum())
    sigma2 = spread / (m - 1) if m > 1 else None
    return {"loss": loss_sum / n, "grad_norm_sq": grad_norm_sq, "sigma2": sigma2, "sigma2_groups": m, "n_probe": n,
            "mode": "smooth"}


@dataclass(frozen=True)
class ProbeStats:
    """Quantity function: F(w_k), ||grad F(w_k)||^2, sigma^2 on the probe (T6's inputs)."""

    groups: int = SIGMA_GROUPS

    def __call__(self, model: "SNN", probe: tuple[torch.Tensor, torch.Tensor], run: "Run", seed: int) -> dict[str, Any]:
        x, y = probe
        out = probe_statistics(model, x, y, groups=self.groups)
        out["batch_size"] = run.cfg.batch_size
        out["dtype"] = str(x.dtype).removeprefix("torch.")
        out["device"] = str(x.device)
        return out


def from_run(needs: Sequence[str], run: "Run") -> dict[str, Any]:
    """The keywords that pass a check's declared ``needs`` (``checks._common.KNOWN_NEEDS``) from the live run.

    "rho": the run's rho (None, and why, when it is 0: the check then uses its
    default); "run_dir": the run folder being written.
    """
    out: dict[str, Any] = {}
    for need in needs:
        if need == "rho":
            rho = run.cfg.rho
            out["rho"], out["rho_source"] = (rho, "the run's rho") if rho > 0 else (None, f"the run's rho is {rho:g}")
        elif need == "run_dir":
            out["run_dir"] = run.run_dir
        else:
            raise TypeError(f"the monitor cannot provide {need!r} from a training run")
    return out


@dataclass(frozen=True)
class Check:
    """Quantity function: ``checks.<module>.run(model, probe, seed=..., progress=False, **options)``.

    The module's declared ``NEEDS`` are passed from the run (:func:`from_run`): T5 gets
    the run's rho. ``options`` are the check's own keyword options; a misspelled one
    raises TypeError.
    """

    module: str
    options: tuple[tuple[str, Any], ...] = ()

    def __call__(self, model: "SNN", probe: tuple[torch.Tensor, torch.Tensor], run: "Run", seed: int) -> CheckResult:
        mod = importlib.import_module(f"checks.{self.module}")
        needs = from_run(declared_needs(mod), run)
        return mod.run(model, probe, seed=seed, progress=False, **dict(self.options), **needs)


# Cheap settings for curvature while training: a loose Lanczos tolerance (the extreme Ritz
# values settle within a few percent in ~5-15 products), double-backward products (the
# faster on CPU; "auto" would time both at every call), no determinism repeat (the
# monitor holds the deterministic model in eval mode on a fixed probe).
LIVE_LANCZOS = (("tol", 5e-2), ("max_iter", 30), ("hvp_method", "double-backward"), ("check_deterministic", False))
CURVATURE_PROBE = 32  # probe samples for Hessian products (any minibatch's Hessian obeys T4's L)
CHEAP_PROBE = 32  # probe samples for the state checks A4, T2 (forward passes only)

_DEFAULT = (Quantity("probe", every(50), ProbeStats()),)
_FULL = (
    Quantity("probe", every(10), ProbeStats()),
    Quantity("A4", every(50), Check("contraction"), probe_size=CHEAP_PROBE),
    Quantity("T2", every(50), Check("state_bounds"), probe_size=CHEAP_PROBE),
    Quantity("T3", every(200), Check("lipschitz", (("adversarial", 1), ("steps", 10), ("tol", 1e-2),
                                                   ("max_iter", 50))), probe_size=16),
    Quantity("T4", at_epoch_end, Check("smoothness", (("tol", 1e-2), ("max_iter", 60),
                                                      ("hvp_method", "double-backward"),
                                                      ("check_deterministic", False))),
             on="epoch", probe_size=CURVATURE_PROBE),
    Quantity("T5", every(100), Check("sam_error", (("tol", 5e-2), ("max_iter", 30), ("hvp_method", "double-backward"),
                                                   ("check_deterministic", False), ("ascent_steps", 5),
                                                   ("ascent_starts", 1), ("taylor_samples", 4))),
             probe_size=CURVATURE_PROBE),
)

PRESETS: Mapping[str, tuple[Quantity, ...]] = MappingProxyType({"off": (), "default": _DEFAULT, "full": _FULL})
"""Named lists of quantities.

``default`` is sized to cost at most 5% of the demo's training time (``python -m sast.train``
with its defaults, ~10 s on 2 cores), as measured by bench/monitor_overhead.py. There one
probe costs ~2 training steps; a T4 check ~8 (model_constants' float64 SVD ~0.05 s,
theory.bounds ~0.04 s, Lanczos ~0.06 s), and the first use of ``theory`` in a process
~0.26 s more (its sympy derivations), so even one T4 would take the demo past 5%. So
``default`` logs only the probe (T6's inputs, which only the live run can give) every 50
steps: 10 probes on the demo, ~3.5%. ``checks.convergence`` computes T4 at the
checkpoint when the log has none; ``python -m checks.all`` runs the rest there.

``full`` about doubles the demo's time: the probe every 10 steps, A4 and T2 every 50 steps,
T4 after every epoch (tol 1e-2), T5 every 100 steps and T3 every 200.
"""


def preset(name: str) -> tuple[Quantity, ...]:
    """The quantities of a named preset; a mistyped name gets the closest match suggested."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown monitor preset {name!r}{hint}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


# --------------------------------------------------------------------------- the callback


def draw_probe(split: Any, size: int = PROBE_SIZE,
               seed: int = PROBE_SEED) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``size`` samples of a Split (frames, labels) in a random order fixed by ``seed`` (own generator)."""
    n = len(split.labels)
    if n == 0:
        raise ValueError("the monitor's probe split (training) is empty")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(size, n)]
    return split.frames[idx].float(), split.labels[idx].clone(), idx.tolist()


STATE_TAG = "checks.monitor"
"""Marks a monitor's state in a checkpoint's list of callback states (a stable name, not a class name)."""


class Monitor(Callback):
    """Runs the quantities of a preset (or a given list) on their schedules, logging to the run's metrics.jsonl.

    ``quantities``: a preset name (:data:`PRESETS`) or a sequence of :class:`Quantity`.
    ``probe_size`` and ``probe_seed`` fix the probe set; ``seed`` is passed to the checks
    (their random starts). ``strict=True`` re-raises a quantity's exception instead of
    recording it. ``seconds`` is the time spent in the monitor, ``seconds_by_id`` per quantity.
    """

    def __init__(self, quantities: str | Sequence[Quantity] = "default", *, probe_size: int = PROBE_SIZE,
                 probe_seed: int = PROBE_SEED, seed: int = 0, strict: bool = False) -> None:
        if isinstance(quantities, str):
            self.preset: str | None = quantities
            self.quantities = preset(quantities)
        else:
            self.preset, self.quantities = None, tuple(quantities)
        ids = [q.id for q in self.quantities]
        if len(set(ids)) != len(ids):
            raise ValueError(f"monitor quantities need distinct ids, got {ids}")
        if probe_size < 1:
            raise ValueError(f"probe_size must be >= 1, got {probe_size}")
        self.probe_size, self.probe_seed, self.seed, self.strict = probe_size, probe_seed, seed, strict
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.probe_indices: list[int] = []
        self.seconds = 0.0
        self.seconds_by_id: dict[str, float] = {}
        self.runs_by_id: dict[str, int] = {}
        self.errors = 0
        self.continued = False  # resumed from a checkpoint that saved this monitor's state

    # -- resume (sast.callbacks.Callback.state_dict): a resumed run logs what the uninterrupted one would

    def _signature(self) -> dict[str, Any]:
        """What must not change across a resume for the counters to go on (quantities without their code's repr)."""
        return {"preset": self.preset, "probe_size": self.probe_size, "probe_seed": self.probe_seed,
                "quantities": [{k: v for k, v in q.describe().items() if k != "compute"} for q in self.quantities]}

    def state_dict(self) -> dict[str, Any]:
        return {"callback": STATE_TAG, "signature": self._signature(), "seconds": self.seconds,
                "seconds_by_id": dict(self.seconds_by_id), "runs_by_id": dict(self.runs_by_id), "errors": self.errors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the counters of the run being resumed, and log no second "start" record.

        A state of another callback, or of a monitor with other quantities, is ignored:
        this monitor then starts afresh and logs its start (the change is on record).
        """
        if not isinstance(state, dict) or state.get("callback") != STATE_TAG:
            return
        if state.get("signature") != self._signature():
            return
        self.seconds = float(state.get("seconds", 0.0))
        self.seconds_by_id = {str(k): float(v) for k, v in state.get("seconds_by_id", {}).items()}
        self.runs_by_id = {str(k): int(v) for k, v in state.get("runs_by_id", {}).items()}
        self.errors = int(state.get("errors", 0))
        self.continued = True

    # -- hooks

    def on_train_start(self, run: "Run") -> None:
        if not self.quantities:
            return
        t0 = time.perf_counter()
        dtype = next(run.model.parameters()).dtype
        device = next(run.model.parameters()).device
        x, y, idx = draw_probe(run.data.train, self.probe_size, self.probe_seed)
        self.probe, self.probe_indices = (x.to(device, dtype), y.to(device)), idx
        if not self.continued:  # a resumed run's start record is the one the log already holds
            run.log.log({"kind": "monitor", "event": "start", "step": run.step, "epoch": run.epoch,
                         "preset": self.preset, "quantities": [q.describe() for q in self.quantities],
                         "probe": {"split": "train", "size": len(idx), "seed": self.probe_seed, "indices": idx}})
        self.seconds += time.perf_counter() - t0
        if run.step == 0:  # on resume, the records of the checkpoint's step are already in the log
            self._due(run, "step", 0)

    def on_step_end(self, run: "Run", stats: "StepStats") -> None:
        self._due(run, "step", run.step)

    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None:
        self._due(run, "epoch", run.epoch + 1)

    def on_train_end(self, run: "Run") -> None:
        if not self.quantities:
            return
        self._due(run, "end", 0)
        run.log.log({"kind": "monitor", "event": "end", "step": run.step, "epoch": run.epoch + 1,
                     "seconds": self.seconds, "seconds_by_id": dict(self.seconds_by_id),
                     "runs_by_id": dict(self.runs_by_id), "errors": self.errors})

    # -- running quantities

    def _due(self, run: "Run", on: str, count: int) -> None:
        for q in self.quantities:
            if q.on == on and (on == "end" or q.schedule(count)):
                self._run_one(run, q)

    def _run_one(self, run: "Run", q: Quantity) -> None:
        assert self.probe is not None, "on_train_start draws the probe set"
        t0 = time.perf_counter()
        model = run.model
        modes = [(m, m.training) for m in model.modules()]
        x, y = self.probe
        n = len(y) if q.probe_size is None else min(q.probe_size, len(y))
        epoch = run.epoch if q.on == "step" else run.epoch + 1
        model.eval()
        try:
            out = q.compute(model, (x[:n], y[:n]), run, self.seed)
        except Exception as e:  # an instrument must not stop training: record the failure, go on
            if self.strict:
                raise
            self.errors += 1
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            run.log.log({"kind": "monitor_error", "id": q.id, "step": run.step, "epoch": epoch, "error": msg})
            print(f"monitor: {q.id} failed at step {run.step}: {msg}", file=sys.stderr)
            return
        finally:
            for m, training in modes:
                m.training = training
            dt = time.perf_counter() - t0
            self.seconds += dt
            self.seconds_by_id[q.id] = self.seconds_by_id.get(q.id, 0.0) + dt
            self.runs_by_id[q.id] = self.runs_by_id.get(q.id, 0) + 1
        if isinstance(out, CheckResult):
            run.log.log({"kind": "check", "step": run.step, "epoch": epoch, "result": out.to_json()})
        else:
            run.log.log({"kind": "probe", "step": run.step, "epoch": epoch, **out, "seconds": dt})
