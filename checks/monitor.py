"""The live monitor: every constant of THEORY.md held against its bound while a model trains.

    python -m sast.train --monitor default      (also: full, off; --on-violation warn|stop)

The monitor is a ``sast.train.Callback``; the training command line (the composition
root) wires it in, so ``sast`` never imports ``checks``. Following cockpit's model, a
:class:`Quantity` says

- *when* it runs: a schedule, a plain function from an int to bool, read as a step
  count (``on="step"``: checked at the start of training, step 0 = w_0, and after every
  step k, the parameters then being w_k) or as a count of finished epochs
  (``on="epoch"``: checked at the end of each epoch, 1, 2, ...), or ``on="end"``: once,
  when training ends (the schedule is then not consulted); helpers :class:`every`,
  :class:`log_spaced`, :class:`at`, :class:`log_then_every`, :class:`staggered`,
  :data:`at_epoch_end`, :data:`at_train_end`;
- *what it needs*: the first ``probe_size`` samples of the probe set (all if None), and
  what the quantities due at the same step share (:class:`Shared`: the model constants
  and theory records at w, one forward trace of the probe per mode, the quantity's own
  memory, the records logged so far);
- *what it reports*: a probe record or a check result, which the monitor writes to the
  run's ``metrics.jsonl`` keyed by the quantity's stable ``id`` (a statement ID, never a
  class name). Every record carries the step, the estimate, the bound, the status, the
  probe size and the seconds it cost:

      {"kind": "probe", "id": "probe", "step", "epoch", "loss", "grad_norm_sq", "sigma2", "batch_size",
       "n_probe", "loss_se", "grad_norm_sq_bias", "estimate", "bound": null, "status": "not applicable", "seconds"}
      {"kind": "check", "id", "step", "epoch", "estimate", "bound", "status", "n_probe", "seconds",
       "result": CheckResult.to_json()}

  plus one ``{"kind": "monitor", "event": "start", "preset", "quantities", "probe"}``
  record when training starts and ``{"kind": "monitor", "event": "end" | "stop", "seconds", ...}``
  when it ends. On resume the monitor takes its counters, memories and history from the
  checkpoint (:meth:`Monitor.load_state_dict`) and logs no second start, so the log of a
  resumed run equals the uninterrupted run's, record for record (timings aside). Step
  records carry the epoch in progress (as ``train`` records do), epoch-end records the
  number of finished epochs (as ``eval`` records do). A quantity that raises is recorded
  as ``{"kind": "monitor_error", "id", "step", "error"}`` and training goes on
  (``strict=True`` re-raises, for tests).

Live feedback. After every check result the monitor compares its status with the
statement's previous one and every assumption with its last value (A4's kappa_l < 1, from
A4's own records where A4 is monitored, else from T3-T5's; T6's eta <= 1/L; T7's
conditioning). A bound that becomes violated, an
assumption that stops holding (it held in an earlier record), or one that fails from its
first record, prints ONE line on stderr naming the statement, the bound, the estimate and
the step, and shows in the progress bar (``Run.postfix["theory"]``); so does a return to
"holds". With ``on_violation="stop"`` a violated bound or an assumption that stops holding
raises :class:`sast.callbacks.StopTraining` once every quantity due at that step has logged
its record (so a resumed run logs the same step as an uninterrupted one): the loop writes
ckpt.pt of that state and ``python -m sast.train`` exits 1. An assumption that never held
(T6's eta <= 1/L with T4's global L on the demo, by five orders of magnitude) is reported
once and does not stop training.

Presets are named lists of quantities (:data:`PRESETS`): ``off``, ``default``, ``full``.

The probe set is drawn once, when training starts, from the run's training split
(T6's F is the objective the minibatches estimate without bias, the training loss; a
validation probe would measure the population loss, which T6 does not bound) with a
fixed seed (:data:`PROBE_SEED`, :data:`PROBE_SIZE` samples, a random order, so
the first n samples are a uniform subset): it is the same whatever the preset, and the
same on resume. The monitor does not change training: it never touches the global RNG
(random starts come from seeded generators), never writes ``.grad`` or the parameters
(gradients by ``torch.autograd.grad``, perturbations by ``functional_call``), and puts
the model back in train or eval mode, module by module, after each quantity; on a GPU,
``on_step_end`` reads no device value unless a quantity is due (schedules are plain
integer functions), so a step without checks never waits for the device (a ``cuda``-marked
test holds it to that under CUDA's sync debug mode; bench/gpu.sh runs it and the overhead
bench on a GPU: the code is device-agnostic, but no GPU figure has been measured yet).

Probe record (T6's inputs): F(w_k) and ||grad F(w_k)||^2 of the smooth-mode mean
cross-entropy on the probe set, and sigma^2, the per-sample gradient variance
E||g_i - grad F||^2 of A5 (a minibatch of size b has variance sigma^2/b). sigma^2 comes
from the same computation, without per-sample gradients: the probe's gradient is taken
over m groups (:data:`SIGMA_GROUPS`) of sizes s_j, and

    sigma^2_hat = sum_j s_j ||g_j - g||^2 / (m - 1),   g = sum_j s_j g_j / n

is unbiased for i.i.d. samples (E||g_j - g||^2 = sigma^2 (1/s_j - 1/n)); averaged over
random partitions of the probe it equals the per-sample sample variance
(1/(n - 1)) sum_i ||g_i - g||^2 exactly. One group per sample is the per-sample formula.
The subsampling error is in the record: ``grad_norm_sq_bias`` = sigma^2/n (the probe's
||grad F_probe||^2 exceeds ||grad F||^2 by this in expectation) and ``loss_se``, the
standard error of F from the groups' losses.

The schedules live in :mod:`checks._schedules` and the quantities in :mod:`checks._quantities`;
this module holds the presets and the callback, and re-exports every name of both.
"""

from __future__ import annotations

import difflib
import sys
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from threadpoolctl import threadpool_limits

from checks._result import CheckResult
from runfolder import ASSUMPTION_FAILS, HOLDS, VIOLATED
from sast.callbacks import Callback, StopTraining

if TYPE_CHECKING:
    from sast.sam import StepStats
    from sast.train import Run

PROBE_SIZE = 128  # samples of the training split drawn as the probe set (full preset: all of them)
PROBE_SEED = 2024  # fixed: every run (and every preset) of one data set shares one probe set
ON_VIOLATION = ("warn", "stop")



from checks._quantities import (LANCZOS_DTYPE, SIGMA_GROUPS, WARM_START_DTYPE, Check, LiveT6,  # noqa: E402,F401
                                ProbeStats, Quantity, Shared, WarmT4, from_run, probe_statistics)
from checks._schedules import (Schedule, at, at_epoch_end, at_train_end, every, log_spaced,  # noqa: E402,F401
                               log_then_every, staggered)

# --------------------------------------------------------------------------- presets

# Cheap settings for curvature while training: a loose Lanczos tolerance (the extreme Ritz
# values settle within a few percent in ~5-15 products), double-backward products (the
# faster on CPU; "auto" would time both at every call), no determinism repeat (the
# monitor holds the deterministic model in eval mode on a fixed probe).
LIVE_LANCZOS = (("tol", 5e-2), ("max_iter", 30), ("hvp_method", "double-backward"), ("check_deterministic", False))
STATE_PROBE = 32  # probe samples for the state checks A4, T2 (one forward pass per mode)
CURVATURE_PROBE = 16  # probe samples for T4's Hessian products (any minibatch's Hessian obeys T4's L)
SAM_PROBE = 16  # probe samples for T5 (F and its gradient at a few points of the rho-ball)
JACOBIAN_PROBE = 2  # probe samples for T3's input-Jacobian norms (classes + 2 products each)
MECHANISM_PROBE = 8  # probe samples for T7's per-sample gradients
T6_PROBE = 64  # probe samples for the default preset's probe records (sigma^2/n in each record)
# Costs on the demo (2312-256-10, T = 20; one CPU thread, in training steps of batch 64): A4 and
# T2 together ~1.2 (the constants' float64 Gram matrix and one trace per mode), a probe record
# of 64 samples ~1.2, T7 ~1, T5 ~2.5, T3 ~3.5, T4 ~5 (a Lanczos step on 16 samples, product and
# reorthogonalisation, ~0.4 step; 8-15 steps). 5% of the demo's 1800 steps is 90 steps; default
# spends ~60 (measured: 2.4 s of monitor against 64 s of training, one thread, a loaded machine).
DEFAULT_POINTS = log_then_every(512, early=128)  # 0, 1, 2, 4, ..., 64, 512, 1024, 1536: 11 points on the demo
DEFAULT_PROBE_EVERY = 200  # 10 probe records on the demo (0, 200, ..., 1800)
FULL_POINTS = log_then_every(128)  # 0, 1, 2, 4, ..., 64, 128, 256, ...: 22 points on the demo
FULL_PROBE_EVERY = 100  # 19 probe records of all 128 samples on the demo


def _live(points: log_then_every, probe_every: int, *, state_probe: int, curvature_probe: int, sam_probe: int,
          jacobian_probe: int, mechanism_probe: int, t6_probe: int | None, t4: WarmT4, t3: tuple[tuple[str, Any], ...],
          t5: tuple[tuple[str, Any], ...]) -> tuple[Quantity, ...]:
    """A preset: A4, T2 at every point; T4, T3, T5, T7 in rotation over the points (one per point, T4 first, at
    step 0); the probe and T6 every ``probe_every`` steps, T6 also at the end."""
    slot = {sid: staggered(points, i, 4) for i, sid in enumerate(("T4", "T3", "T5", "T7"))}
    return (
        Quantity("A4", points, Check("contraction", shares=("constants", "smooth_states")), probe_size=state_probe),
        Quantity("T2", points, Check("state_bounds", (("local", False),), shares=("constants", "states_by_mode")),
                 probe_size=state_probe),
        Quantity("T4", slot["T4"], t4, probe_size=curvature_probe),
        Quantity("T3", slot["T3"], Check("lipschitz", (*t3, ("local", False)), shares=("constants",)),
                 probe_size=jacobian_probe),
        Quantity("T5", slot["T5"], Check("sam_error", (*t5, ("local", False)), shares=("constants",)),
                 probe_size=sam_probe),
        Quantity("T7", slot["T7"], Check("mechanism", (("local", False),)), probe_size=mechanism_probe),
        Quantity("probe", every(probe_every), ProbeStats(), probe_size=t6_probe),
        Quantity("T6", every(probe_every), LiveT6(), probe_size=t6_probe, at_end=True),  # the probe records' size
    )


_DEFAULT = _live(DEFAULT_POINTS, DEFAULT_PROBE_EVERY, state_probe=STATE_PROBE, curvature_probe=CURVATURE_PROBE,
                 sam_probe=SAM_PROBE, jacobian_probe=JACOBIAN_PROBE, mechanism_probe=MECHANISM_PROBE,
                 t6_probe=T6_PROBE, t4=WarmT4(tol=1e-2, max_iter=15), t3=(("adversarial", 0),),
                 t5=(("ascent_starts", 0), ("ascent_steps", 1), ("taylor_samples", 2)))
_FULL = _live(FULL_POINTS, FULL_PROBE_EVERY, state_probe=2 * STATE_PROBE, curvature_probe=2 * CURVATURE_PROBE,
              sam_probe=2 * SAM_PROBE, jacobian_probe=4 * JACOBIAN_PROBE, mechanism_probe=2 * MECHANISM_PROBE,
              t6_probe=None, t4=WarmT4(tol=1e-2, max_iter=40), t3=(("adversarial", 1), ("steps", 10)),
              t5=(("ascent_starts", 1), ("ascent_steps", 4), ("taylor_samples", 4)))

PRESETS: Mapping[str, tuple[Quantity, ...]] = MappingProxyType({"off": (), "default": _DEFAULT, "full": _FULL})
"""Named lists of quantities.

``default`` holds A4, T2, T3, T4 (both Hessian extremes), T5, T6 and T7 against their
bounds during training at <= 5% of the demo's wall-clock time (``python -m sast.train``
with its defaults: 1800 steps; bench/monitor_overhead.py measures it). Points 0, 1, 2, 4,
..., 64, then every 512 steps (:data:`DEFAULT_POINTS`, 11 on the demo): A4 and T2 at each
(one shared forward trace of 32 probe samples; the constants and the theory grid computed
once); T4 (Lanczos warm-started from the previous T4's Ritz vectors, tol 1e-2, at most 15
products, 16 samples), T3 (input Jacobians of 2 samples, no adversarial ascent), T5 (16
samples, one ascent step, two Taylor directions) and T7 (8 samples) in rotation, one per
point (T4 at 0, 8 and 512, T3 at 1, 16 and 1024, T5 at 2, 32 and 1536, T7 at 4 and 64: each
twice within the first 65 steps). The probe (T6's inputs, 64 samples, uniformly spaced so
that T6's running mean is an unbiased subsample) and T6 itself every 200 steps, and T6
once more at the end. Local bounds (``checks.local``) are off.

``full`` stays within 25%: points 0, 1, 2, ..., 64, then every 128 steps (22 on the
demo); A4 and T2 on 64 samples at each; in rotation T4 (32 samples, up to 40 products),
T3 (8 samples, one adversarial ascent of 10 steps), T5 (32 samples, one random start, four
ascent steps, four Taylor directions), T7 (16 samples); the probe (all 128 samples) and T6
every 100 steps.
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
_HISTORY_KEYS = ("kind", "id", "step", "bound", "estimate", "status", "local_bound", "assumptions")
"""What the history keeps of a check record (a probe record is kept whole: T6 reads it)."""


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


class Monitor(Callback):
    """Runs the quantities of a preset (or a given list) on their schedules, logging to the run's metrics.jsonl.

    ``quantities``: a preset name (:data:`PRESETS`) or a sequence of :class:`Quantity`.
    ``probe_size`` and ``probe_seed`` fix the probe set; ``seed`` is passed to the checks
    (their random starts). ``strict=True`` re-raises a quantity's exception instead of
    recording it. ``on_violation``: "warn" (a line on stderr and in the progress bar) or
    "stop" (also :class:`StopTraining`; module docstring). ``seconds`` is the time spent in
    the monitor, ``seconds_by_id`` per quantity; ``statuses`` the latest status per statement.
    """

    def __init__(self, quantities: str | Sequence[Quantity] = "default", *, probe_size: int = PROBE_SIZE,
                 probe_seed: int = PROBE_SEED, seed: int = 0, strict: bool = False,
                 on_violation: str = "warn") -> None:
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
        if on_violation not in ON_VIOLATION:
            raise ValueError(f"on_violation must be one of {', '.join(ON_VIOLATION)}, got {on_violation!r}")
        self.probe_size, self.probe_seed, self.seed, self.strict = probe_size, probe_seed, seed, strict
        self.on_violation = on_violation
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.probe_indices: list[int] = []
        self.input_bounds: tuple[float, float] = (0.0, 0.0)  # A and X_inf of the probe set (A2)
        self.seconds = 0.0
        self.seconds_by_id: dict[str, float] = {}
        self.runs_by_id: dict[str, int] = {}
        self.errors = 0
        self.memory: dict[str, dict[str, Any]] = {}  # per quantity id, kept across steps (Shared.memory)
        self.history: list[dict[str, Any]] = []  # compact copies of the logged records (Shared.history)
        self.statuses: dict[str, str] = {}  # the latest status per statement
        self.assumptions: dict[str, bool] = {}  # the latest value of every assumption seen, by name
        self.continued = False  # resumed from a checkpoint that saved this monitor's state

    # -- resume (sast.callbacks.Callback.state_dict): a resumed run logs what the uninterrupted one would

    def _signature(self) -> dict[str, Any]:
        """What must not change across a resume for the counters to go on (quantities without their code's repr)."""
        return {"preset": self.preset, "probe_size": self.probe_size, "probe_seed": self.probe_seed,
                "quantities": [{k: v for k, v in q.describe().items() if k != "compute"} for q in self.quantities]}

    def state_dict(self) -> dict[str, Any]:
        memory = {qid: {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in mem.items()}
                  for qid, mem in self.memory.items()}
        return {"callback": STATE_TAG, "signature": self._signature(), "seconds": self.seconds,
                "seconds_by_id": dict(self.seconds_by_id), "runs_by_id": dict(self.runs_by_id), "errors": self.errors,
                "memory": memory, "history": [dict(r) for r in self.history], "statuses": dict(self.statuses),
                "assumptions": dict(self.assumptions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the counters, memories and history of the run being resumed, and log no second "start" record.

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
        self.memory = {str(k): dict(v) for k, v in state.get("memory", {}).items()}
        self.history = [dict(r) for r in state.get("history", [])]
        self.statuses = {str(k): str(v) for k, v in state.get("statuses", {}).items()}
        self.assumptions = {str(k): bool(v) for k, v in state.get("assumptions", {}).items()}
        self.continued = True

    # -- hooks

    def on_train_start(self, run: "Run") -> None:
        if not self.quantities:
            return
        t0 = time.perf_counter()
        dtype = next(run.model.parameters()).dtype
        device = next(run.model.parameters()).device
        x, y, idx = draw_probe(run.data.train, self.probe_size, self.probe_seed)
        xd = x.double()
        self.input_bounds = (float(xd.flatten(2).norm(dim=2).max()), float(xd.max()))
        self.probe, self.probe_indices = (x.to(device, dtype), y.to(device)), idx
        if not self.continued:  # a resumed run's start record is the one the log already holds
            run.log.log({"kind": "monitor", "event": "start", "step": run.step, "epoch": run.epoch,
                         "preset": self.preset, "on_violation": self.on_violation,
                         "quantities": [q.describe() for q in self.quantities],
                         "probe": {"split": "train", "size": len(idx), "seed": self.probe_seed, "indices": idx}})
        self.seconds += time.perf_counter() - t0
        self._show(run)
        if run.step == 0:  # on resume, the records of the checkpoint's step are already in the log
            self._due(run, "step", 0)

    def on_step_end(self, run: "Run", stats: "StepStats") -> None:
        self._due(run, "step", run.step)  # plain integer schedules: no device value is read unless a check is due

    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None:
        self._due(run, "epoch", run.epoch + 1)

    def on_train_end(self, run: "Run") -> None:
        if not self.quantities:
            return
        try:
            self._due(run, "end", 0)
        finally:
            run.log.log({"kind": "monitor", "event": "end", "step": run.step, "epoch": run.epoch + 1,
                         **self._summary()})

    def _summary(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "seconds_by_id": dict(self.seconds_by_id), "runs_by_id": dict(self.runs_by_id),
                "errors": self.errors, "statuses": dict(self.statuses)}

    # -- running quantities

    def _due(self, run: "Run", on: str, count: int) -> None:
        due = [q for q in self.quantities
               if (q.on == on and (on == "end" or q.schedule(count))) or (on == "end" and q.at_end)]
        if not due:
            return
        shared = Shared(self, run)  # one w: the due quantities share its constants and traces
        # numpy's BLAS on one thread: right after training steps torch's OpenMP threads still spin, and
        # OpenBLAS's own would fight them for the cores (checks._common.numpy_blas_single_threaded)
        with threadpool_limits(limits=1, user_api="blas"):
            alarms = [a for a in (self._run_one(run, q, shared, on) for q in due) if a is not None]
        if alarms and self.on_violation == "stop":  # after every quantity due here: the log holds the whole step
            sid, reason = alarms[0]
            run.log.log({"kind": "monitor", "event": "stop", "step": run.step, "epoch": run.epoch, "id": sid,
                         "reason": reason, **self._summary()})
            raise StopTraining(reason)

    def _run_one(self, run: "Run", q: Quantity, shared: Shared, on: str) -> tuple[str, str] | None:
        """Run ``q``, log its record; returns (statement, reason) where its result raised an alarm."""
        assert self.probe is not None, "on_train_start draws the probe set"
        t0 = time.perf_counter()
        model = run.model
        modes = [(m, m.training) for m in model.modules()]
        x, y = self.probe
        n = len(y) if q.probe_size is None else min(q.probe_size, len(y))
        epoch = run.epoch if on == "step" else run.epoch + 1
        shared.memory = self.memory.setdefault(q.id, {})
        model.eval()
        try:
            out = q.compute(model, (x[:n], y[:n]), run, self.seed, shared=shared)
        except Exception as e:  # an instrument must not stop training: record the failure, go on
            if self.strict:
                raise
            self.errors += 1
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            run.log.log({"kind": "monitor_error", "id": q.id, "step": run.step, "epoch": epoch, "error": msg,
                         "n_probe": n})
            self._line(f"monitor: {q.id} failed at step {run.step}: {msg}")
            return None
        finally:
            for m, training in modes:
                m.training = training
            dt = time.perf_counter() - t0
            self.seconds += dt
            self.seconds_by_id[q.id] = self.seconds_by_id.get(q.id, 0.0) + dt
            self.runs_by_id[q.id] = self.runs_by_id.get(q.id, 0) + 1
        if isinstance(out, CheckResult):
            result = out.to_json()
            record = {"kind": "check", "id": out.id, "step": run.step, "epoch": epoch, "estimate": out.estimate,
                      "bound": out.bound, "status": out.status, "n_probe": n, "seconds": dt, "result": result}
            run.log.log(record)
            self.history.append({k: record[k] if k in record else result.get(k) for k in _HISTORY_KEYS})
            return self._react(run, out)
        else:
            record = {"kind": "probe", "id": q.id, "step": run.step, "epoch": epoch, **out,
                      "estimate": out.get("grad_norm_sq"), "bound": None, "status": "not applicable",
                      "n_probe": out.get("n_probe", n), "seconds": dt}
            run.log.log(record)
            self.history.append({k: v for k, v in record.items() if k != "seconds"})
            return None

    # -- live feedback

    def _react(self, run: "Run", r: CheckResult) -> tuple[str, str] | None:
        """Lines on stderr and the progress bar for status changes; (statement, reason) of an alarm, else None."""
        step, what = run.step, f"estimate {_num(r.estimate)}, bound {_num(r.bound)}"
        reason = r.details.get("reason") if isinstance(r.details, dict) else None
        alarms: list[str] = []
        previous = self.statuses.get(r.id)
        self.statuses[r.id] = r.status
        if r.status == VIOLATED and previous != VIOLATED:
            ratio = f" (ratio {r.ratio:.4g})" if r.ratio is not None else ""
            alarms.append(f"monitor: step {step}: {r.id} ({r.name}) VIOLATED: {what}{ratio}")
        elif previous == VIOLATED and r.status != VIOLATED:
            self._line(f"monitor: step {step}: {r.id} ({r.name}) {r.status} again: {what}")
        ids = {q.id for q in self.quantities}
        for name, holds in r.assumptions.items():
            if name in ids and name != r.id:  # A4 is A4's to say: T3-T6 carry it from records of other steps
                continue
            before = self.assumptions.get(name)
            self.assumptions[name] = holds
            why = f"; {reason}" if reason and not holds else ""
            if not holds and before is True:
                alarms.append(f"monitor: step {step}: assumption {name} stopped holding ({r.id}: {what}{why})")
            elif not holds and before is None:  # failing from its first record: said once, not an alarm
                self._line(f"monitor: step {step}: assumption {name} fails ({r.id}: {what}{why})")
            elif holds and before is False:
                self._line(f"monitor: step {step}: assumption {name} holds again ({r.id}: {what})")
        for line in alarms:
            self._line(line)
        self._show(run)
        return (r.id, alarms[0].removeprefix("monitor: ")) if alarms else None

    def _show(self, run: "Run") -> None:
        """The progress bar's "theory" entry: violated statements, failing assumptions, or how many hold."""
        bad = [sid for sid, s in self.statuses.items() if s == VIOLATED]
        failing = [a for a, v in self.assumptions.items() if not v]
        if bad:
            text = "VIOLATED " + ",".join(bad)
        elif failing:
            text = "fails: " + ",".join(failing)
        else:
            held = sum(1 for s in self.statuses.values() if s in (HOLDS, ASSUMPTION_FAILS))
            text = f"{held} hold" if self.statuses else "-"
        postfix = getattr(run, "postfix", None)
        if isinstance(postfix, dict):
            postfix["theory"] = text

    @staticmethod
    def _line(text: str) -> None:
        """One line on stderr, above the progress bar."""
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
