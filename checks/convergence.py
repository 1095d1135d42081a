"""T6 (convergence of stochastic SAST): the running mean of ||grad F(w_k)||^2 from a run's monitor log, against the RHS.

    python -m checks.convergence --run RUN_DIR        (or --model RUN_DIR/ckpt.pt)

T6 (A3, A5, L-smooth along the run, plain SGD base step, an independent second
minibatch, eta <= 1/L): after K steps

    (1/K) sum_{k<K} E||grad F(w_k)||^2 <= RHS(K) = 2 (F(w_0) - F_inf)/(eta K) + L^2 rho^2 + L eta sigma^2 / b

with F_inf = 0 for cross-entropy (``theory.bounds.convergence_rhs``). The check reads
the run folder that ``python -m sast.train --monitor default`` wrote:

- ``metrics.jsonl``: the monitor's probe records ``{"kind": "probe", "step", "loss",
  "grad_norm_sq", "sigma2", ...}``, F(w_k) and ||grad F(w_k)||^2 on a fixed probe set
  (a finite-sample stand-in for the expectation F), and sigma^2 estimates; and its T4
  check records, whose bound is L and whose estimate is the local curvature
  max(|lambda|) of the probe Hessian;
- ``config.json``: ``train``'s lr (eta), rho, optimizer (the base step) and batch_size (b).

For each logged step s the running mean over the logged steps k <= s (a subsample of
the k < K average, K = s - s_0 + 1, s_0 the first logged step, F(w_0) its loss) is held
against RHS(K), with sigma^2 the largest logged estimate; the result is the K of
largest ratio (``K_worst``), every K in details. L is the largest T4 bound logged
along the run (the constant must hold along it; ``L_latest`` is the last one); without
any logged T4 result, T4 is computed at the checkpoint. The same comparison with the
local curvature in place of L (``rhs_local``) is an indication, not a guarantee. The
premise eta <= 1/L is an assumption ("eta <= 1/L") that may fail; the result then says
"assumption fails" (the inequality is still compared).

Local: where the logged T4 results carry a local bound (T4's proof with the constants
measured at the logged w_k on the monitor's probe, ``checks._budgets.t4``), the details
record per logged T4 step whether eta <= 1/L_local (``premise_local``), and per step the
right-hand side with L_local(K) = the largest local bound logged up to that step
(``rhs_local_bound``); the result's ``local_bound`` is that right-hand side at K_worst, with
a budget (L -> L_local, then the remaining slack). A certificate at the logged points only.

"not applicable" (with the reason) for a base step other than plain SGD (momentum,
Adam), for HFSB (a biased surrogate gradient: A5 fails), and for same-batch SAM with
rho > 0 (T6 needs an independent perturbation minibatch). Exit 2 with one line when
the run folder has no probe records (the exit codes are :mod:`runfolder.exits`'); :func:`run` (what ``python -m checks.all`` calls)
records that as "not applicable" with the reason instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from checks._budgets import Local, finish, not_computed
from checks._cli import DTYPES, format_results, write_results
from checks._common import CheckInputError
from checks._load import DEFAULT_PROBE, load_checkpoint, resolve_device
from checks._result import CONDITIONAL, CheckResult, make_result
from runfolder import EXIT_CODES_EPILOG, check_writable, guard
from sast.runlog import read_jsonl
from theory import bounds
from theory.local import Step

NEEDS: tuple[str, ...] = ("run_dir",)
"""The run folder whose monitor log T6 reads (``checks._common.KNOWN_NEEDS``); the model and probe are not used."""

NO_PROBES = ("{path} has no probe records (kind 'probe'); T6 needs the live monitor's log: "
             "train with --monitor default (python -m sast.train --monitor default ...)")
SUBSAMPLE_NOTE = ("running mean over the logged steps k <= s: a subsample of the k < K average (K = s - s_0 + 1), "
                  "||grad F||^2 and F on the monitor's fixed probe set")
NOISE_NOTE = ("E||grad F_probe||^2 = ||grad F||^2 + sigma^2/n_probe: each logged value is biased up by about "
              "its probe_noise_floor (conservative for LHS <= RHS); running_mean_debiased subtracts it")
LOCAL_NOTE = ("rhs_local uses the largest logged local curvature max|lambda| in place of L: "
              "an indication, not a guarantee")


def probe_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The probe records in step order, one per step (a later record for the same step wins)."""
    by_step: dict[int, dict[str, Any]] = {}
    for r in records:
        if r.get("kind") == "probe" and r.get("grad_norm_sq") is not None and r.get("loss") is not None:
            by_step[int(r["step"])] = dict(r)
    return [by_step[s] for s in sorted(by_step)]


def t4_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The logged T4 check results (the ``result`` dicts), in log order."""
    return [dict(r["result"]) for r in records
            if r.get("kind") == "check" and isinstance(r.get("result"), Mapping) and r["result"].get("id") == "T4"]


def t4_local_series(records: Iterable[Mapping[str, Any]]) -> list[tuple[int, float]]:
    """(step, local bound) of every logged T4 result that has one, in step order."""
    out = []
    for r in records:
        res = r.get("result") if r.get("kind") == "check" else None
        if isinstance(res, Mapping) and res.get("id") == "T4" and res.get("local_bound") is not None:
            out.append((int(r.get("step") or 0), float(res["local_bound"])))
    return sorted(out)


def running_means(values: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values, 1):
        total += v
        out.append(total / i)
    return out


def _not_applicable_reason(train: Mapping[str, Any]) -> str | None:
    base = train.get("optimizer", "sgd")
    if base != "sgd":
        return f"base step {base!r}: T6 covers the plain SGD base step only (momentum and Adam are not analysed)"
    if train.get("method") == "hfsb":
        return "method 'hfsb': a biased surrogate gradient (A5 fails); T6 covers SF and SAST"
    if train.get("method") == "sast" and train.get("sam_batch", "independent") == "same" and train.get("rho", 0) > 0:
        return "same-batch SAM: T6 needs an independent perturbation minibatch (--sam-batch independent)"
    return None


def assess(probes: Sequence[Mapping[str, Any]], train: Mapping[str, Any], *, L: float | None, L_source: str,
           L_local: float | None = None, L_latest: float | None = None,
           t4_assumptions: Mapping[str, bool] | None = None, seed: int | None = None,
           dtype: str = "float32", device: str = "cpu",
           L_local_bounds: Sequence[tuple[int, float]] = ()) -> CheckResult:
    """T6 from probe records and the run's training settings (pure: no files, no model).

    ``probes``: records with step, loss, grad_norm_sq and sigma2 (None allowed), in any
    order; ``train``: config.json's ``train`` dict (lr, rho, optimizer, batch_size,
    method, sam_batch); ``L``: T4's bound (None: not applicable); ``L_local``: the local
    curvature for ``rhs_local``; ``t4_assumptions``: those of the T4 result L came from;
    ``L_local_bounds``: (step, T4 local bound) pairs logged along the run.
    """
    t0 = time.perf_counter()
    probes = probe_records(probes)
    if not probes:
        raise CheckInputError(NO_PROBES.format(path="the log"))
    eta, b = float(train["lr"]), int(train["batch_size"])
    rho = float(train.get("rho") or 0.0)
    base = str(train.get("optimizer", "sgd"))
    steps = [int(p["step"]) for p in probes]
    gsq = [float(p["grad_norm_sq"]) for p in probes]
    sigmas = [float(p["sigma2"]) for p in probes if p.get("sigma2") is not None]
    sigma2 = max(sigmas) if sigmas else 0.0
    F0, s0 = float(probes[0]["loss"]), steps[0]
    means = running_means(gsq)
    # E||grad F_probe||^2 = ||grad F||^2 + sigma^2/n for n probe samples: the probe overestimates the LHS
    # by each record's sigma^2/n (the largest sigma^2 where a record has none)
    floors = [None if not p.get("n_probe") else
              (sigma2 if p.get("sigma2") is None else float(p["sigma2"])) / int(p["n_probe"]) for p in probes]
    debiased = None if None in floors else running_means([v - f for v, f in zip(gsq, floors)])
    Ks = [s - s0 + 1 for s in steps]
    why_not = _not_applicable_reason(train)

    def rhs(L_: float | None) -> list[Any]:
        return [bounds.convergence_rhs(L_, rho, eta, sigma2, b, K, F0, base=base) for K in Ks]

    recs, recs_local = rhs(L), rhs(L_local)
    rhs_values = [r.value for r in recs]
    rhs_local = [r.value for r in recs_local]
    details: dict[str, Any] = {
        "steps": steps, "K": Ks, "grad_norm_sq": gsq, "running_mean": means, "rhs": rhs_values, "rhs_local": rhs_local,
        "holds_local": [m <= r for m, r in zip(means, rhs_local)] if all(r is not None for r in rhs_local) else None,
        "L": L, "L_source": L_source, "L_latest": L_latest, "L_local": L_local,
        "eta": eta, "rho": rho, "b": b, "sigma2": sigma2, "sigma2_estimates": len(sigmas),
        "F0": F0, "F0_step": s0, "F_inf": 0.0, "probe_noise_floor": floors, "running_mean_debiased": debiased,
        "eta_L": None if L is None else eta * L, "eta_L_local": None if L_local is None else eta * L_local,
        "eta_le_1_over_L_local": None if L_local is None else eta * L_local <= 1.0,
        "base_optimizer": base, "method": train.get("method"), "sam_batch": train.get("sam_batch"),
        "applies": why_not is None and L is not None, "subsample_note": SUBSAMPLE_NOTE, "noise_note": NOISE_NOTE,
        "local_note": LOCAL_NOTE,
        "latex": bounds.LATEX["T6"],
    }
    describe = {"seed": seed, "dtype": dtype, "device": device}
    if why_not is not None or L is None:
        details["reason"] = why_not or recs[0].reason or "no smoothness constant L (T4 not applicable)"
        details["applies"] = False
        return make_result("T6", "convergence", bound=None, estimate=means[-1], assumptions={},
                           seconds=time.perf_counter() - t0, details=details, **describe)
    ratios = [m / r if r > 0 else math.inf for m, r in zip(means, rhs_values)]
    j = max(range(len(ratios)), key=ratios.__getitem__)
    details.update({"K_worst": Ks[j], "step_worst": steps[j],
                    "terms": {k: recs[j].details[k] for k in ("initial", "sam", "noise")},
                    "reason": recs[j].reason or None})
    assumptions = {**{k: bool(v) for k, v in (t4_assumptions or {}).items()}, **recs[j].assumptions}
    local = _local(L_local_bounds, steps, j, L, rhs_values[j], means[j], Ks, eta,
                   lambda L_, K: bounds.convergence_rhs(L_, rho, eta, sigma2, b, K, F0, base=base).value)
    details["local"] = local.details
    details.update(local.details.pop("per_step", {}))
    return make_result("T6", "convergence", bound=rhs_values[j], estimate=means[j], assumptions=assumptions,
                       seconds=time.perf_counter() - t0, details=details, **local.fields(), **describe)


def _local(series: Sequence[tuple[int, float]], steps: list[int], j: int, L: float, bound: float, estimate: float,
           Ks: list[int], eta: float, rhs: Any) -> Local:
    """T6 with T4's local bounds logged along the run: per-step premises and RHS, the budget at K_worst."""
    if not series:
        return not_computed("no logged T4 result has a local bound (train with a monitor that logs T4 with local "
                            "bounds, or run python -m checks.smoothness --local at checkpoints)")
    premise = [{"step": s, "L_local": v, "eta_L_local": eta * v, "holds": eta * v <= 1.0} for s, v in series]
    L_at = []
    for s in steps:  # the largest local bound logged up to step s (the first one before any is logged)
        seen = [v for t, v in series if t <= s]
        L_at.append(max(seen) if seen else series[0][1])
    per_step = {"L_local_bound": L_at, "rhs_local_bound": [rhs(L_, K) for L_, K in zip(L_at, Ks)],
                "premise_local": premise}
    steps_ = [Step("L: T4's global bound (largest along the run) -> T4's local bound (largest logged up to K)",
                   L, L_at[j], rhs(L_at[j], Ks[j]))]
    out = finish(bound, steps_, estimate, f"local: at the {len(series)} logged w_k on the monitor's probe "
                         "(T4 local bounds), not between them", premise_holds_everywhere=all(p["holds"] for p in premise))
    out.details["per_step"] = per_step
    out.kind = CONDITIONAL  # T6 with the local L needs F to be L_local-smooth between the logged points: unverified
    return out


def read_run(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """metrics.jsonl's records and config.json of a run folder (CheckInputError if either is missing)."""
    run_dir = Path(run_dir)
    metrics, config = run_dir / "metrics.jsonl", run_dir / "config.json"
    if not run_dir.is_dir():
        raise CheckInputError(f"{run_dir} is not a run folder (no such directory); pass the folder sast.train wrote")
    if not config.exists():
        raise CheckInputError(f"{config} does not exist; pass a run folder written by python -m sast.train")
    try:
        cfg = json.loads(config.read_text())
        train = cfg["train"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckInputError(f"{config} is not a sast.train config (no 'train' entry); pass a run folder") from None
    return list(read_jsonl(metrics)), dict(train)


def run_folder(run_dir: str | Path, *, seed: int = 0, progress: bool = False, device: str = "cpu",
               dtype: str = "float32", batch: int = DEFAULT_PROBE, split: str = "test",
               tol: float | None = None, max_iter: int | None = None, cache_dir: str | None = None,
               t4_result: CheckResult | None = None) -> CheckResult:
    """T6 on a run folder; L from its logged T4 results, else T4 computed at its ckpt.pt (probe of ``batch``).

    The local L (T6's premise eta <= 1/L_local and its right-hand side, a conditional value) comes from the
    T4 local bounds logged along the run; where the log has none, from ``t4_result``'s local bound (T4 at the
    checkpoint, as ``checks.all`` computes it just before), placed at the last logged step.
    """
    run_dir = Path(run_dir)
    records, train = read_run(run_dir)
    probes = probe_records(records)
    if not probes:
        raise CheckInputError(NO_PROBES.format(path=run_dir / "metrics.jsonl"))
    t4s = [r for r in t4_records(records) if r.get("bound") is not None]
    local = [r["estimate"] for r in t4_records(records) if r.get("estimate") is not None]
    if t4s:
        L = max(float(r["bound"]) for r in t4s)
        source = f"largest of {len(t4s)} T4 bound(s) logged along the run"
        L_latest = float(t4s[-1]["bound"])
        merged: dict[str, bool] = {}
        for r in t4s:
            for k, v in (r.get("assumptions") or {}).items():
                merged[k] = merged.get(k, True) and bool(v)
        L_local = max(local) if local else None
        local_bounds = t4_local_series(records)
        if not local_bounds and t4_result is not None and t4_result.local_bound is not None:
            local_bounds = [(int(probes[-1]["step"]), float(t4_result.local_bound))]
    else:
        result = _t4_at_checkpoint(run_dir, seed=seed, progress=progress, device=device, dtype=dtype, batch=batch,
                                   split=split, tol=tol, max_iter=max_iter, cache_dir=cache_dir)
        L, L_latest, merged = result.bound, result.bound, dict(result.assumptions)
        source = f"T4 computed at {run_dir / 'ckpt.pt'} (no T4 result in the log)"
        L_local = max([*local, result.estimate]) if result.estimate is not None else (max(local) if local else None)
        local_bounds = [(int(probes[-1]["step"]), result.local_bound)] if result.local_bound is not None else []
    dt = str(probes[-1].get("dtype", "float32"))
    return assess(probes, train, L=L, L_source=source, L_local=L_local, L_latest=L_latest, t4_assumptions=merged,
                  seed=seed, dtype=dt, device=str(probes[-1].get("device", "cpu")), L_local_bounds=local_bounds)


def _t4_at_checkpoint(run_dir: Path, *, seed: int, progress: bool, device: str, dtype: str, batch: int, split: str,
                      tol: float | None, max_iter: int | None, cache_dir: str | None) -> CheckResult:
    from checks import linalg, smoothness

    ckpt = run_dir / "ckpt.pt"
    if not ckpt.exists():
        raise CheckInputError(f"{run_dir} has no T4 result in its log and no ckpt.pt to compute one at")
    loaded = load_checkpoint(ckpt, split=split, batch=batch, seed=seed, device=device, dtype=dtype,
                             cache_dir=cache_dir, progress=progress)
    return smoothness.run(loaded.model, loaded.probe, seed=seed, tol=linalg.DEFAULT_TOL if tol is None else tol,
                          max_iter=max_iter)


def run(model: Any, probe: Any, *, seed: int = 0, progress: bool = False, run_dir: str | Path | None = None,
        device: str = "cpu", dtype: str = "float32", batch: int = DEFAULT_PROBE, split: str = "test",
        tol: float | None = None, max_iter: int | None = None, cache_dir: str | None = None,
        t4_result: CheckResult | None = None) -> CheckResult:
    """The uniform check signature: T6 from ``run_dir``'s monitor log (the model and probe are not used).

    The other options are :func:`run_folder`'s. Where the folder cannot give T6 (no
    monitor log, no config.json, no T4 and no checkpoint), the result says so: "not
    applicable" with the reason, no number (``python -m checks.convergence`` exits 2).
    """
    if run_dir is None:
        raise CheckInputError("T6 reads a run folder's monitor log: pass run_dir "
                              "(python -m checks.convergence --run RUN_DIR)")
    try:
        return run_folder(run_dir, seed=seed, progress=progress, device=device, dtype=dtype, batch=batch,
                          split=split, tol=tol, max_iter=max_iter, cache_dir=cache_dir, t4_result=t4_result)
    except CheckInputError as e:  # T6 cannot be assessed from this folder: record why
        return make_result("T6", "convergence", bound=None, estimate=None, seed=seed, details={"reason": str(e)})


def _summary(r: CheckResult) -> str:
    d = r.details
    lines = [f"T6 over {len(d['steps'])} logged steps (s_0 = {d['F0_step']}, last {d['steps'][-1]}): "
             f"F(w_0) = {d['F0']:.4g}, eta = {d['eta']:g}, rho = {d['rho']:g}, b = {d['b']}, "
             f"sigma^2 = {d['sigma2']:.4g}, base step {d['base_optimizer']}"]
    lines.append(f"L = {d['L'] if d['L'] is None else format(d['L'], '.4g')} ({d['L_source']}); local curvature "
                 f"{'-' if d['L_local'] is None else format(d['L_local'], '.4g')}")
    if d["rhs_local"] and d["rhs_local"][-1] is not None:
        lines.append(f"at K = {d['K'][-1]}: running mean {d['running_mean'][-1]:.4g}, RHS {d['rhs'][-1]:.4g}, "
                     f"RHS with the local curvature {d['rhs_local'][-1]:.4g} "
                     f"({'holds' if d['running_mean'][-1] <= d['rhs_local'][-1] else 'exceeded'}; an indication)")
    return "\n".join(lines)


@guard
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m checks.convergence", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", default=None, help="run folder (config.json, metrics.jsonl)")
    where.add_argument("--model", default=None, help="checkpoint in a run folder (the folder is its parent)")
    p.add_argument("--batch", type=int, default=DEFAULT_PROBE,
                   help="probe size, if T4 must be computed at the checkpoint")
    p.add_argument("--split", default="test", help="split of that probe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (if T4 must be computed)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--tol", type=float, default=None, help="Lanczos tolerance, if T4 must be computed")
    p.add_argument("--max-iter", type=int, default=None, help="Lanczos steps at most, if T4 must be computed")
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--json", default=None, help="also write the result as JSON to this file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run_dir = Path(args.run) if args.run else Path(args.model).parent
    # bad input (device, output path, run folder) is the boundary's (runfolder.guard): one line, exit 2
    resolve_device(args.device)
    if args.json:
        check_writable(args.json)
    result = run_folder(run_dir, seed=args.seed, progress=not args.no_progress, device=args.device,
                        dtype=args.dtype, batch=args.batch, split=args.split, tol=args.tol,
                        max_iter=args.max_iter, cache_dir=args.cache_dir)
    print(format_results([result]))
    print(_summary(result))
    if args.json:
        write_results(args.json, [result])
    return 1 if result.status == "violated" else 0


if __name__ == "__main__":
    raise SystemExit(main())
