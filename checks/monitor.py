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
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import sys
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from checks._common import declared_needs, traces
from checks._result import CheckResult
from runfolder import ASSUMPTION_FAILS, HOLDS, VIOLATED
from sast.callbacks import Callback, StopTraining

if TYPE_CHECKING:
    from sast.model import SNN
    from sast.sam import StepStats
    from sast.train import Run
    from theory import ModelConstants

PROBE_SIZE = 128  # samples of the training split drawn as the probe set (full preset: all of them)
PROBE_SEED = 2024  # fixed: every run (and every preset) of one data set shares one probe set
SIGMA_GROUPS = 4  # groups of the probe gradient for sigma^2 (m - 1 = 3 degrees of freedom, ~27% relative spread)
ON_VIOLATION = ("warn", "stop")

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
class log_then_every:
    """Log-spaced early, sparse later: 0, then 1, base, base^2, ... below ``early`` (default n), then n, 2n, ...

    Curvature and state ranges move fastest in the first steps; later a fixed spacing keeps
    the cost a fixed fraction of training. :meth:`index` numbers the points (0, 1, 2, ...),
    which :class:`staggered` uses to spread quantities over them.
    """

    n: int
    base: int = 2
    early: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1 or self.base < 2:
            raise ValueError(f"log_then_every: need n >= 1 and base >= 2, got n={self.n}, base={self.base}")
        if self.early is not None and not 1 <= self.early <= self.n:
            raise ValueError(f"log_then_every: need 1 <= early <= n, got early={self.early}, n={self.n}")

    @property
    def _limit(self) -> int:
        return self.n if self.early is None else self.early

    @property
    def _early(self) -> int:
        """How many powers base^j (j >= 0) lie below the early limit."""
        count, p = 0, 1
        while p < self._limit:
            count, p = count + 1, p * self.base
        return count

    def index(self, k: int) -> int | None:
        """The position of k among the points (0 for k = 0), or None where k is not a point."""
        if k == 0:
            return 0
        if 0 < k < self._limit:
            j, q = 0, k
            while q % self.base == 0:
                q, j = q // self.base, j + 1
            return 1 + j if q == 1 else None
        if k >= self.n and k % self.n == 0:
            return self._early + k // self.n
        return None

    def __call__(self, k: int) -> bool:
        return self.index(k) is not None


@dataclass(frozen=True)
class staggered:
    """Every ``of``-th point of ``points`` (a schedule with ``index``), starting at its ``slot``-th.

    ``of`` quantities given slots 0 .. of-1 of one point set never run at the same step:
    at most one expensive check per point, in rotation.
    """

    points: log_then_every
    slot: int
    of: int

    def __post_init__(self) -> None:
        if not 0 <= self.slot < self.of:
            raise ValueError(f"staggered: need 0 <= slot < of, got slot={self.slot}, of={self.of}")

    def __call__(self, k: int) -> bool:
        i = self.points.index(k)
        return i is not None and i % self.of == self.slot


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


# --------------------------------------------------------------------------- what quantities share


class Shared:
    """What the quantities due at one step (one w) share, each computed on first use.

    - :meth:`constants`: ``checks.constants.model_constants`` at w, with A and X_inf of the
      whole probe set (weight-independent, computed once per run: every sample a check sees
      is in the probe set, so they bound its inputs);
    - :meth:`states`: the membrane potentials of the first n probe samples per spike mode
      (one forward trace serves A4 and T2);
    - ``memory``: the running quantity's own state, kept across steps and saved with the
      checkpoint (T4's Lanczos warm start);
    - ``history``: compact copies of the records this monitor logged in this run, resumed
      runs included (T6 reads its probe records and T4 results from it).

    Theory records at w are shared too, but inside ``theory.bounds``: its kappa_l and gam_l
    grid is memoised per interval, so A4, T3, T4 and T5 at one w evaluate it once.
    """

    def __init__(self, monitor: "Monitor", run: "Run") -> None:
        self._monitor, self.run = monitor, run
        self._constants: "ModelConstants | None" = None
        self._states: dict[tuple[int, str], list[torch.Tensor]] = {}
        self.memory: dict[str, Any] = {}

    @property
    def history(self) -> Sequence[dict[str, Any]]:
        return self._monitor.history

    def constants(self) -> "ModelConstants":
        if self._constants is None:
            from checks.constants import model_constants

            x = self._monitor.probe[0]
            c = model_constants(self.run.model, x[:1])
            A, X_inf = self._monitor.input_bounds
            self._constants = dataclasses.replace(c, A=A, X_inf=X_inf)
        return self._constants

    def states(self, n: int, mode: str) -> list[torch.Tensor]:
        if (n, mode) not in self._states:
            self._states[(n, mode)] = traces(self.run.model, self._monitor.probe[0][:n], mode)
        return self._states[(n, mode)]


# --------------------------------------------------------------------------- quantities


@dataclass(frozen=True)
class Quantity:
    """One monitored quantity: its stable ``id``, when it runs, what it needs, what it computes.

    ``compute(model, probe, run, seed, shared=...)`` returns a dict (a probe record's fields,
    logged with ``kind`` "probe") or a :class:`CheckResult` (logged as kind "check"). The
    model is in eval mode while it runs, ``probe`` is the first ``probe_size`` samples, and
    ``shared`` is the step's :class:`Shared`. ``at_end``: also once when training ends
    (for ``on="step"`` or ``"epoch"`` quantities).
    """

    id: str
    schedule: Schedule
    compute: Callable[..., "dict[str, Any] | CheckResult"]
    on: str = "step"
    probe_size: int | None = None
    at_end: bool = False

    def __post_init__(self) -> None:
        if self.on not in ("step", "epoch", "end"):
            raise ValueError(f"Quantity {self.id!r}: on must be 'step', 'epoch' or 'end', got {self.on!r}")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "on": self.on, "schedule": repr(self.schedule), "probe_size": self.probe_size,
                "at_end": self.at_end, "compute": repr(self.compute)}


def probe_statistics(model: "SNN", x: torch.Tensor, y: torch.Tensor, *, groups: int = SIGMA_GROUPS) -> dict[str, Any]:
    """F, ||grad F||^2 and the grouped sigma^2 estimate (module docstring) of the smooth-mode probe loss.

    Gradients by ``torch.autograd.grad`` (``.grad`` is not touched). The spread
    sum_j s_j ||g_j - g||^2 is formed from the differences themselves, so it suffers no
    cancellation, in the model's dtype; the per-parameter sums add up in Python floats.
    Also the subsampling error: ``grad_norm_sq_bias`` = sigma^2/n and ``loss_se``, the
    standard error of F, sqrt(sum_j s_j (F_j - F)^2 / ((m - 1) n)) from the groups' losses F_j.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    n = len(y)
    chunks = torch.arange(n).tensor_split(max(1, min(groups, n)))
    m = len(chunks)
    sizes, per_group, losses = [], [], []
    for idx in chunks:
        loss = F.cross_entropy(model(x[idx], mode="smooth"), y[idx])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        per_group.append([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
        sizes.append(len(idx))
        losses.append(loss.detach())
    w = torch.tensor(sizes, dtype=per_group[0][0].dtype, device=per_group[0][0].device)
    loss_j = torch.stack(losses).to(w.dtype)
    F_value = float((w * loss_j).sum()) / n
    grad_norm_sq, spread = 0.0, 0.0
    for k in range(len(params)):
        G = torch.stack([gr[k] for gr in per_group]).flatten(1)  # (m, numel): the groups' gradients
        g = (w[:, None] * G).sum(0) / n  # the probe gradient (the groups' weighted mean)
        grad_norm_sq += float(g.square().sum())  # torch's pairwise sums: float32 suffices here
        spread += float((w * (G - g).square().sum(1)).sum())
    sigma2 = spread / (m - 1) if m > 1 else None
    loss_var = float((w * (loss_j - F_value).square()).sum()) / (m - 1) if m > 1 else None
    return {"loss": F_value, "grad_norm_sq": grad_norm_sq, "sigma2": sigma2, "sigma2_groups": m, "n_probe": n,
            "grad_norm_sq_bias": None if sigma2 is None else sigma2 / n,
            "loss_se": None if loss_var is None else math.sqrt(max(loss_var, 0.0) / n), "mode": "smooth"}


@dataclass(frozen=True)
class ProbeStats:
    """Quantity function: F(w_k), ||grad F(w_k)||^2, sigma^2 on the probe (T6's inputs)."""

    groups: int = SIGMA_GROUPS

    def __call__(self, model: "SNN", probe: tuple[torch.Tensor, torch.Tensor], run: "Run", seed: int,
                 shared: Shared | None = None) -> dict[str, Any]:
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


_MODES = ("smooth", "hard")
SHARES: Mapping[str, Callable[[Shared, int], dict[str, Any]]] = MappingProxyType({
    "constants": lambda s, n: {"constants": s.constants()},
    "smooth_states": lambda s, n: {"states": s.states(n, "smooth")},
    "states_by_mode": lambda s, n: {"states": {mode: s.states(n, mode) for mode in _MODES}},
})
"""What a :class:`Check` may take from the step's :class:`Shared`, as the keywords its ``run`` accepts."""


@dataclass(frozen=True)
class Check:
    """Quantity function: ``checks.<module>.run(model, probe, seed=..., progress=False, **options)``.

    The module's declared ``NEEDS`` are passed from the run (:func:`from_run`): T5 gets
    the run's rho. ``options`` are the check's own keyword options; a misspelled one
    raises TypeError. ``shares`` names what the check takes from the step's
    :class:`Shared` (keys of :data:`SHARES`: precomputed constants, states), when it runs
    in the monitor.
    """

    module: str
    options: tuple[tuple[str, Any], ...] = ()
    shares: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [s for s in self.shares if s not in SHARES]
        if unknown:
            raise ValueError(f"Check({self.module!r}): unknown shares {unknown}; known: {', '.join(SHARES)}")

    def __call__(self, model: "SNN", probe: tuple[torch.Tensor, torch.Tensor], run: "Run", seed: int,
                 shared: Shared | None = None) -> CheckResult:
        mod = importlib.import_module(f"checks.{self.module}")
        needs = from_run(declared_needs(mod), run)
        given: dict[str, Any] = {}
        if shared is not None:
            for name in self.shares:
                given.update(SHARES[name](shared, len(probe[1])))
        return mod.run(model, probe, seed=seed, progress=False, **dict(self.options), **needs, **given)


# Warm start: the start vector kept between T4 refreshes, rounded to bfloat16 (1.2 MB for the
# demo's 594698 parameters in every checkpoint) so that a resumed run starts from the very
# vector the uninterrupted run does; a start needs no precision.
WARM_START_DTYPE = torch.bfloat16
LANCZOS_DTYPE = torch.float32  # the live T4's Krylov basis (linalg's default is float64)


@dataclass(frozen=True)
class WarmT4:
    """Quantity function: T4 (``checks.smoothness``) with Lanczos started from the previous refresh's Ritz vectors.

    The first refresh starts at random (from ``seed``); every later one from the sum of the
    previous refresh's two Ritz vectors (``linalg.lanczos_extremes(start=...)``), kept in
    the quantity's memory (what ``smoothness.local_curvature`` does, plus the warm start and a
    float32 basis). Between refreshes a few hundred SGD steps move the Hessian's
    extreme eigenvectors little, so both ends meet ``tol`` in a few products (the stopping
    rule is unchanged, so the estimate is as good). ``details["warm_start"]`` says which.
    """

    tol: float = 1e-2
    max_iter: int = 40
    hvp_method: str = "double-backward"
    local: bool = False

    def __call__(self, model: "SNN", probe: tuple[torch.Tensor, torch.Tensor], run: "Run", seed: int,
                 shared: Shared | None = None) -> CheckResult:
        from checks import linalg, smoothness

        t0 = time.perf_counter()
        memory = shared.memory if shared is not None else {}
        start = memory.get("start")
        options = dict(tol=self.tol, max_iter=self.max_iter, seed=seed, hvp_method=self.hvp_method,
                       check_deterministic=False)
        x, y = probe
        op = linalg.HessianOperator(model, None, x, y, method=self.hvp_method, mode="smooth",
                                    check_deterministic=False, seed=seed)
        # a float32 basis: the reorthogonalisation reads it twice per product, half the memory traffic of
        # float64, and its rounding (~1e-7) is far below the tolerance
        res = linalg.lanczos_extremes(op, tol=self.tol, max_iter=self.max_iter, seed=seed, dtype=LANCZOS_DTYPE,
                                      start=start, return_vectors=True)
        if res.vectors is not None:
            v = res.vectors.sum(dim=0)
            memory["start"] = (v / v.norm().clamp_min(torch.finfo(v.dtype).tiny)).to(WARM_START_DTYPE)
        result = smoothness.run(model, probe, local=self.local, curvature=(res, op),
                                constants=shared.constants() if shared is not None else None, **options)
        return dataclasses.replace(result, details={**result.details, "warm_start": start is not None},
                                   seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class LiveT6:
    """Quantity function: T6 from the probe records and T4 results logged so far (``checks.convergence.assess``).

    L is the largest T4 bound logged so far (T4 runs at step 0 in the presets), the local
    curvature the largest T4 estimate; before any T4 result, "not applicable". Pure
    arithmetic on the monitor's history: it costs no model evaluation.
    """

    def __call__(self, model: "SNN", probe: tuple[torch.Tensor, torch.Tensor], run: "Run", seed: int,
                 shared: Shared | None = None) -> CheckResult:
        from checks import convergence
        from checks._result import make_result

        history = shared.history if shared is not None else ()
        probes = [r for r in history if r.get("kind") == "probe"]
        if not probes:
            return make_result("T6", "convergence", bound=None, estimate=None, seed=seed,
                               details={"reason": "no probe record yet (the probe quantity runs before T6)"})
        t4 = [r for r in history if r.get("kind") == "check" and r.get("id") == "T4"]
        with_bound = [r for r in t4 if r.get("bound") is not None]
        merged: dict[str, bool] = {}
        for r in with_bound:
            for k, v in (r.get("assumptions") or {}).items():
                merged[k] = merged.get(k, True) and bool(v)
        estimates = [float(r["estimate"]) for r in t4 if r.get("estimate") is not None]
        L = max((float(r["bound"]) for r in with_bound), default=None)
        return convergence.assess(
            probes, run.cfg.to_dict(), L=L, L_source=f"largest of {len(with_bound)} T4 bound(s) logged so far",
            L_local=max(estimates) if estimates else None,
            L_latest=float(with_bound[-1]["bound"]) if with_bound else None, t4_assumptions=merged, seed=seed,
            dtype=str(probes[-1].get("dtype", "float32")), device=str(probes[-1].get("device", "cpu")),
            L_local_bounds=[(int(r["step"]), float(r["local_bound"])) for r in t4 if r.get("local_bound") is not None])


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
                 t6_probe=T6_PROBE, t4=WarmT4(tol=1e-2, max_iter=15), t3=(("adversarial", 0), ("tol", 1e-2)),
                 t5=(("ascent_starts", 0), ("ascent_steps", 1), ("taylor_samples", 2)))
_FULL = _live(FULL_POINTS, FULL_PROBE_EVERY, state_probe=2 * STATE_PROBE, curvature_probe=2 * CURVATURE_PROBE,
              sam_probe=2 * SAM_PROBE, jacobian_probe=4 * JACOBIAN_PROBE, mechanism_probe=2 * MECHANISM_PROBE,
              t6_probe=None, t4=WarmT4(tol=1e-2, max_iter=40), t3=(("adversarial", 1), ("steps", 10), ("tol", 1e-2)),
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
