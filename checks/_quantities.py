"""What the live monitor computes: quantities, what they share, and the probe statistics of T6.

Part of :mod:`checks.monitor` (which re-exports every name; its docstring describes the records).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from checks._common import declared_needs, traces
from checks._result import CheckResult
from checks._schedules import Schedule

if TYPE_CHECKING:
    from checks.monitor import Monitor
    from sast.model import SNN
    from sast.train import Run
    from theory import ModelConstants

SIGMA_GROUPS = 4  # groups of the probe gradient for sigma^2 (m - 1 = 3 degrees of freedom, ~27% relative spread)


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


