"""Fake run folders that follow the run-folder contract, for tests and for trying the report.

:func:`write_fake_run` writes ``config.json``, ``metrics.jsonl``, ``checks.json``
and ``evaluation.json`` as ``python -m sast.train``, the live checks monitor and
``python -m sast.evaluate`` write them (DESIGN.md, "The run folder"), with
plausible, deterministic numbers and no training. Options make it partial
(no checks.json, a truncated last line), violated, or carry hostile strings.
Check records, statuses and file writing follow :mod:`runfolder`, the contract
the trainer and the checks share; this module imports neither torch nor sast.

    python -m reports.testing runs/fake   # then: python -m reports.build runs/fake

:func:`write_fake_sweep` writes a sweep's ``results.json`` (``python -m sast.experiments``) whose
answers are known by construction, for :mod:`reports.sweep`.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import runfolder

STEPS_PER_EPOCH = 60
LOG_EVERY = 10
"""A train record every LOG_EVERY steps, as the trainer's default."""
MONITOR_EVERY = 60
"""The live monitor's schedule in the fake run: every MONITOR_EVERY steps."""
T7_SAMPLES = 48
TRUNCATED_LINE = '{"kind": "train", "step": 99999, "epo'
"""What a run killed mid-write leaves as its last line."""

TRAIN_CONFIG: dict[str, Any] = {
    "data": "synth-nmnist", "method": "sf", "rho": 0.0, "sam_batch": "independent", "sam_perturbation": "global",
    "optimizer": "sgd", "lr": 0.5, "batch_size": 64, "epochs": 30, "seed": 0, "device": "cpu", "layers": [],
    "T": 20, "lam": 0.9, "theta": 1.0, "beta": 0.5, "reset": "zero", "init_scale": 1.0, "clip": 1, "root": None,
    "cache_dir": None, "limit": None, "log_every": LOG_EVERY,
}
"""Every field of the trainer's ``sast.train.TrainConfig`` with its default, as config.json's "train"
section holds them (listed here because reports never imports sast; a unit test keeps the keys equal)."""


def check_result(
    id: str,
    bound: float | None,
    estimate: float | None,
    *,
    assumptions: Mapping[str, bool] | None = None,
    details: Mapping[str, Any] | None = None,
    seed: int = 0,
    local_bound: float | None = None,
    looseness: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A CheckResult dict with ratio, holds and status derived by :func:`runfolder.derive_status`.

    ``local_bound`` and ``looseness`` (optional fields) are written only when given, as an old record lacks them;
    a local bound is a deterministic certificate, held against the estimate by the same rule.
    """
    assumptions = dict(assumptions or {})
    verdict = runfolder.derive_status(bound, estimate, assumptions, local_bound=local_bound)
    extra = {} if local_bound is None and looseness is None else {"local_bound": local_bound,
                                                                  "looseness": list(looseness or [])}
    if local_bound is not None:
        extra.update(local_holds=verdict.local_holds, local_kind="deterministic")
    return {**extra, "id": id, "name": runfolder.STATEMENT_NAMES.get(id, id.lower()), "bound": bound, "estimate": estimate,
            "ratio": verdict.ratio, "holds": verdict.holds, "status": verdict.status, "assumptions": assumptions,
            "converged": True, "n_products": 40, "seed": seed, "dtype": "float32", "device": "cpu", "seconds": 1.2,
            "schema_version": runfolder.SCHEMA_VERSION, "details": dict(details or {})}


def fake_looseness(bound: float, steps: list[tuple[str, float]], local: float, estimate: float) -> list[dict[str, Any]]:
    """A budget whose substitutions have the given shares of log10(bound / local) and end at ``local``, then the
    remaining slack log10(local / estimate) (so the entries sum to log10(bound / estimate), as a real one's do)."""
    total = math.log10(bound / local)
    weight = sum(w for _, w in steps)
    out = [{"factor": f, "worst_case": None, "measured": None, "log10_ratio": total * w / weight} for f, w in steps]
    out.append({"factor": "remaining proof slack (local bound / estimate)", "worst_case": local, "measured": estimate,
                "log10_ratio": math.log10(local / estimate)})
    return out


def write_fake_run(
    path: str | Path,
    *,
    method: str = "sast",
    rho: float = 0.3,
    optimizer: str = "sgd",
    seed: int = 0,
    epochs: int = 4,
    violated: Iterable[str] = (),
    with_checks: bool = True,
    with_evaluation: bool = True,
    truncate_last_line: bool = False,
    train_overrides: Mapping[str, Any] | None = None,
    environment_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete, deterministic fake run folder at ``path``; return the path.

    ``violated`` names statements whose final (and last live) estimate exceeds the
    bound; ``with_checks=False`` leaves out checks.json; ``truncate_last_line``
    appends a half-written line to metrics.jsonl; the overrides are merged into
    config.json's "train" and "environment" sections (for hostile strings).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 1000 + round(rho * 100))
    violated = set(violated)
    # Accuracy rises with epochs; SAST with a moderate rho transfers to hard spikes best.
    rho_gain = 0.06 * math.exp(-((rho - 0.3) / 0.25) ** 2) if method == "sast" else 0.0
    train = {**TRAIN_CONFIG, "method": method, "rho": rho, "optimizer": optimizer, "epochs": epochs, "seed": seed,
             **dict(train_overrides or {})}
    environment = {"python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6", "platform": "Linux-6.1-x86_64",
                   "torch_threads": 2, "cuda": None, "git_commit": "0123456789abcdef0123456789abcdef01234567",
                   "argv": ["-m", "sast.train", "--method", method, "--rho", str(rho), "--seed", str(seed)],
                   **dict(environment_overrides or {})}
    config = {"train": train,
              "model": {"input_shape": [2, 34, 34], "layers": ["dense:256"], "T": 20, "lam": 0.9, "theta": 1.0,
                        "beta": 0.5, "reset": "zero", "num_classes": 10},
              "environment": environment, "device": "cpu"}
    runfolder.write_json(path / runfolder.CONFIG_FILE, config)

    lines: list[dict[str, Any]] = []
    total = epochs * STEPS_PER_EPOCH
    grad_evals_per_step = 2 if method == "sast" else 1
    for step in range(LOG_EVERY, total + 1, LOG_EVERY):
        epoch = (step - 1) // STEPS_PER_EPOCH
        loss = 2.3 * math.exp(-step / (0.6 * total)) + 0.15 + 0.03 * rng.random()
        rec = {"kind": "train", "step": step, "epoch": epoch, "loss": loss, "grad_norm": 0.9 * loss,
               "grad_evals": step * grad_evals_per_step}
        if method == "sast":
            rec["perturbed_loss"] = loss + 0.4 * rho * loss
        lines.append(rec)
        if step % MONITOR_EVERY == 0:
            lines.extend(_live_checks(step, epoch, rng, violated, last=step == total))
            lines.append({"kind": "probe", "step": step, "epoch": epoch, "loss": loss,
                          "grad_norm_sq": 0.8 * loss ** 2, "sigma2": 2.5, "batch_size": 64})
        if step % STEPS_PER_EPOCH == 0:
            e = step // STEPS_PER_EPOCH
            smooth = min(0.97, 0.55 + 0.1 * e + rho_gain)
            hard = smooth - (0.12 - 1.5 * rho_gain) / math.sqrt(e)
            lines.append({"kind": "eval", "step": step, "epoch": e, "seconds": 9.1 * e, "grad_evals": step * 2,
                          "val_smooth_acc": smooth, "val_smooth_loss": 0.4, "val_hard_acc": hard,
                          "val_hard_loss": 0.6, "test_smooth_acc": smooth, "test_smooth_loss": 0.4,
                          "test_hard_acc": hard, "test_hard_loss": 0.6, "test_gap": smooth - hard})
    text = "".join(runfolder.dumps(r) + "\n" for r in lines)
    if truncate_last_line:
        text += TRUNCATED_LINE
    runfolder.atomic_write_text(path / runfolder.METRICS_FILE, text)

    final_smooth, final_hard = lines[-1]["test_smooth_acc"], lines[-1]["test_hard_acc"]
    if with_checks:
        checks = _final_checks(rng, violated, optimizer, total, rho, final_smooth, final_hard)
        runfolder.write_json(path / runfolder.CHECKS_FILE, checks)
    if with_evaluation:
        evaluation = {"smooth_acc": final_smooth, "hard_acc": final_hard, "gap": final_smooth - final_hard,
                      "agreement": 0.93, "logit_discrepancy": 1.7, "soft_band_fraction": [0.21, 0.08],
                      "int8_hard_acc": final_hard - 0.01, "synops_smooth": 8.6e7, "synops_hard": 4.3e6,
                      "ece_smooth": 0.031, "ece_hard": 0.054}
        runfolder.write_json(path / runfolder.EVALUATION_FILE, evaluation)
    return path


def _live_checks(step: int, epoch: int, rng: random.Random, violated: set[str], last: bool) -> list[dict]:
    """The live monitor's records at one step: A4, T2, T4, T5 (A4's assumption fails early on)."""
    early = step <= MONITOR_EVERY
    kappa = 1.02 if early else 0.93
    t4_bound = 180.0 + 5 * rng.random()
    t4_est = t4_bound * 1.3 if ("T4" in violated and last) else 2.0 + step / 40 + rng.random()
    records = [
        check_result("A4", 0.97 + 0.01 * rng.random(), min(kappa - 0.1, 0.95),
                     assumptions={"A1": True, "A4": kappa < 1}),
        check_result("T2", 9.0, 3.0 + rng.random(), assumptions={"A1": True, "A2": True}),
        check_result("T4", t4_bound, t4_est, assumptions={"A1": True, "A2": True, "A3": True, "A4": not early}),
        check_result("T5", 0.5 * t4_bound * 0.09, 0.02 + 0.01 * rng.random(),
                     assumptions={"A1": True, "A3": True}),
    ]
    return [{"kind": "check", "step": step, "epoch": epoch, "result": r} for r in records]


def _final_checks(rng: random.Random, violated: set[str], optimizer: str, total: int, rho: float,
                  smooth: float, hard: float) -> list[dict[str, Any]]:
    """checks.json: every statement the verdict table shows, T6 and T7 with their details."""
    asm = {"A1": True, "A2": True, "A3": True, "A4": True}
    t4_bound = 182.0
    t4_est = t4_bound * 1.3 if "T4" in violated else 9.4
    steps = list(range(MONITOR_EVERY, total + 1, MONITOR_EVERY))
    gsq = [0.8 * (2.3 * math.exp(-s / (0.6 * total)) + 0.15) ** 2 for s in steps]
    running = [sum(gsq[: i + 1]) / (i + 1) for i in range(len(gsq))]
    rhs = [2 * 2.3 / (0.5 * s) + (t4_bound * rho) ** 2 + t4_bound * 0.5 * 2.5 / 64 for s in steps]
    rhs_local = [2 * 2.3 / (0.5 * s) + (t4_est * rho) ** 2 + t4_est * 0.5 * 2.5 / 64 for s in steps]
    applies = optimizer == "sgd"
    samples = [(0.05 + rng.random(), 0.3 + 0.5 * rng.random()) for _ in range(T7_SAMPLES)]
    w1_norm = 3.1
    condition = [i % 8 != 0 for i in range(T7_SAMPLES)]
    input_grad = [g * w1_norm / s * (0.2 + 0.5 * rng.random()) for g, s in samples]
    t7_est = max(y / (w1_norm / s * g) for (g, s), y, c in zip(samples, input_grad, condition) if c)
    checks = [
        check_result("A4", 0.97, 0.88, assumptions={"A1": True, "A4": True}),
        check_result("T2", 9.0, 3.7, assumptions={"A1": True, "A2": True}),
        check_result("T3", 41.0, 0.9, assumptions=asm),
        check_result("T4", t4_bound, t4_est, assumptions=asm, local_bound=4.0 * t4_est,
                     looseness=fake_looseness(t4_bound, [("kappa_l -> measured", 0.3), ("A_l -> measured", 0.5),
                                                         ("Z1 -> exact logit Jacobian", 0.37)], 4.0 * t4_est, t4_est),
                     details={"local": {"scope": "local: at w on the probe (64 samples)", "order": [
                         "kappa_l -> measured", "A_l -> measured", "Z1 -> exact logit Jacobian"]}}),
        check_result("T5", 0.5 * t4_bound * 0.09, 0.025, assumptions={"A1": True, "A3": True}),
        check_result("T6", rhs[-1] if applies else None, running[-1] if applies else None,
                     assumptions={"A3": True, "A5": True},
                     details={"steps": steps, "grad_norm_sq": gsq, "running_mean": running, "rhs": rhs,
                              "rhs_local": rhs_local, "base_optimizer": optimizer, "applies": applies}),
        check_result("T7", 1.0, t7_est, assumptions={"A1": True},
                     details={"input_grad_norm": input_grad, "w1_grad_norm": [g for g, _ in samples],
                              "w1_norm": w1_norm, "s_T": [s for _, s in samples], "condition_holds": condition,
                              "fraction_condition": sum(condition) / len(condition)}),
        check_result("E1", None, smooth - hard,
                     details={"smooth_acc": smooth, "hard_acc": hard, "gap": smooth - hard, "agreement": 0.93,
                              "logit_discrepancy": 1.7, "soft_band_fraction": [0.21, 0.08]}),
        check_result("E2", None, hard - 0.01,
                     details={"int8_hard_acc": hard - 0.01, "synops_smooth": 8.6e7, "synops_hard": 4.3e6}),
    ]
    return checks


# --- fake sweeps (python -m sast.experiments grid|rho-sweep) -------------------------------------------

SWEEP_RHOS = (0.0, 0.1, 0.3)
SWEEP_SEED_NOISE = (0.012, -0.015, 0.006, -0.009, 0.011, -0.004)
"""Per-seed offsets of SAST's hard accuracy from SF's: over three seeds they average 0.001, so a rho with no
gain gives a paired difference whose interval contains 0 (not resolved)."""
SWEEP_SAST_GAIN_FROM = 0.2
"""SAST gains 0.2 rho in hard accuracy from this rho on (resolved with three seeds), nothing below it."""
SWEEP_GAP_WEIGHT = 3.0
"""The fake SF's transfer gap sits in one layer: its drop weighs this much against 1 for every other layer."""
SWEEP_SAMPLES = 64
SWEEP_EDGES = tuple(float(e) for e in range(-16, 17))
"""Margin histogram edges as ``sast.gap.MARGIN_EDGES``: counts have one bin more on each side."""
HOSTILE_SETTING = "<script>alert(1)</script>"
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Student's t quantile t_{0.975, df} (scipy.stats.t.ppf), so that fake intervals match the real ones;
beyond df 9 the fake uses 2.2 (reports never import scipy)."""
_SWEEP_FIELDS = ("smooth_acc", "hard_acc", "gap", "corruption_mean_hard", "ece_hard", "input_grad_norm_mean",
                 "lambda_max", "sharpness", "grad_norm", "soft_band_mean")


def _interval(values: list[float]) -> tuple[float | None, float | None, float | None, float | None]:
    """Mean, standard deviation and 95% t interval of ``values`` as apps.experiments.stats gives them."""
    n = len(values)
    if n == 0:
        return None, None, None, None
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0, None, None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _T975.get(n - 1, 2.2) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def _spearman(xs: list[float], ys: list[float]) -> tuple[float | None, float | None]:
    """Spearman's rank correlation (no ties) and a normal-approximation p-value (fake data only)."""
    n = len(xs)
    if n < 3:
        return None, None
    def rank(vs: list[float]) -> dict[int, int]:
        return {i: r for r, i in enumerate(sorted(range(n), key=lambda i: vs[i]))}

    rx, ry = rank(xs), rank(ys)
    rho = 1 - 6 * sum((rx[i] - ry[i]) ** 2 for i in range(n)) / (n * (n * n - 1))
    t = abs(rho) * math.sqrt((n - 2) / max(1e-12, 1 - rho * rho))
    return rho, math.erfc(t / math.sqrt(2))


def _margin_counts(centre: float, width: float, total: int) -> list[int]:
    """A normal histogram over :data:`SWEEP_EDGES` with the two open-ended bins."""
    cdf = [0.0] + [0.5 * (1 + math.erf((e - centre) / (width * math.sqrt(2)))) for e in SWEEP_EDGES] + [1.0]
    return [round(total * (b - a)) for a, b in zip(cdf[:-1], cdf[1:])]


def _fake_sweep_row(setting: dict[str, str], s_index: int, method: str, rho: float, seed: int, layers: int,
                    gap_layer: int, epochs: int, partial: bool, violated: list[str]) -> dict[str, Any]:
    noise = SWEEP_SEED_NOISE[seed % len(SWEEP_SEED_NOISE)]
    smooth = 0.90 + 0.01 * s_index + 0.002 * ((seed * 7) % 3)
    hard = smooth - 0.12 + 0.5 * noise  # SF
    if method == "hfsb":
        smooth, hard = smooth - 0.05, smooth - 0.06
    elif method == "sf-matched":
        smooth, hard = smooth + 0.005, hard + 0.02 - 0.5 * noise
    elif method == "sast":
        smooth, hard = smooth + 0.002, hard + (0.2 * rho if rho >= SWEEP_SAST_GAIN_FROM else 0.0) + noise
    gap = smooth - hard
    tag = ",".join(f"{k}={v}" for k, v in setting.items())
    name = (f"sast-rho{rho:g}" if method == "sast" else method) + f"-s{seed}"
    row: dict[str, Any] = {
        "method": method, "rho": rho, "seed": seed, "setting": tag, "setting_values": dict(setting),
        "run_dir": f"runs/grid/{tag + '/' if tag else ''}{name}", "n": 1000, "smooth_acc": smooth,
        "hard_acc": hard, "gap": gap, "agreement": 1 - gap, "logit_discrepancy": 0.5 + 5 * gap,
        "corruption_mean_smooth": smooth - 0.1, "corruption_mean_hard": hard - 0.12, "ece_smooth": 0.03,
        "ece_hard": 0.02 + 0.3 * gap, "int8_hard_acc": hard - 0.005, "seconds_per_epoch": 2.0 if method in (
            "sast", "sf-matched") else 1.0, "grad_evals_per_epoch": 120.0 if method == "sast" else 60.0,
        "checks": {"T4": "holds", "T7": "holds"}, "violated": list(violated)}
    if partial:
        return row
    weights = [SWEEP_GAP_WEIGHT if layer == gap_layer else 1.0 for layer in range(1, layers + 1)]
    row["attribution"] = {"smooth_acc": smooth, "hard_acc": hard, "gap": gap, "layers": [
        {"layer": layer, "hard_only_acc": smooth - gap * w / sum(weights), "hard_only_discrepancy": 2 * gap * w,
         "drop": gap * w / sum(weights), "smooth_only_acc": hard + 0.8 * gap * w / sum(weights),
         "smooth_only_discrepancy": 2 * gap * w, "recovered": 0.8 * gap * w / sum(weights)}
        for layer, w in zip(range(1, layers + 1), weights)]}
    width = {"hfsb": 6.0, "sast": 3.0 + 4 * rho}.get(method, 2.5)
    band = [0.6 - 0.05 * layer - 0.5 * rho for layer in range(layers)]
    row["margins"] = {mode: {"mode": mode, "edges": list(SWEEP_EDGES),
                             "counts": [_margin_counts(-2.0 - layer, width, 20000) for layer in range(layers)],
                             "soft_band_fraction": band, "mean_abs_margin": [width] * layers,
                             "n_values": [20000] * layers} for mode in ("smooth", "hard")}
    row["soft_band_fraction"] = band
    row["soft_band_mean"] = sum(band) / layers
    row["margins_over_epochs"] = [{"epoch": e, "soft_band_fraction": [b + 0.3 / e for b in band]}
                                  for e in range(1, epochs + 1)]
    # the gap rises with the input-gradient norm, loosely with lambda_max, and falls with sharpness
    row.update({"input_grad_norm_mean": 0.01 + 0.1 * gap, "lambda_max": 5 + 50 * gap + 2.0 * ((seed + s_index) % 3),
                "lambda_min": -0.5, "grad_norm": 0.2 + gap, "sharpness": 0.05 - 0.2 * gap})
    rng = random.Random(seed * 1000 + s_index * 100 + round(rho * 10) + len(method))
    xs = [row["input_grad_norm_mean"] * math.exp(rng.gauss(0, 0.5)) for _ in range(SWEEP_SAMPLES)]
    ys = [0.3 + 20 * x + 0.05 * rng.random() for x in xs]
    row["mechanism"] = {"input_grad_norm": xs, "logit_discrepancy": ys, "spearman": _spearman(xs, ys)[0]}
    row["mechanism_spearman"] = row["mechanism"]["spearman"]
    return row


def write_fake_sweep(
    folder: str | Path,
    *,
    settings: Mapping[str, Iterable[str]] | None = None,
    seeds: int = 3,
    layers: int = 3,
    rhos: Iterable[float] = SWEEP_RHOS,
    gap_layer: int = 2,
    epochs: int = 4,
    violated: Iterable[str] = (),
    hostile: bool = False,
    partial: bool = False,
) -> Path:
    """Write a deterministic fake sweep's results.json into ``folder`` (no training); return the file.

    The schema is ``apps.experiments.cli.analyse``'s. ``settings`` maps each non-rho axis to its values
    (default beta = 0.5, 2; ``{}``: no axes, a rho-sweep). By construction the answers are known: SF's
    transfer gap sits in ``gap_layer``; SAST's hard-accuracy difference from SF is not resolved below
    rho = :data:`SWEEP_SAST_GAIN_FROM` and higher from there on (with three seeds; one seed gives no
    interval). ``violated`` names checks the first SAST run violates; ``hostile`` puts markup in a setting
    value and the command; ``partial`` leaves out the table, the paired differences, the correlations,
    the mechanism samples and every run's attribution, margins and mechanism numbers.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    axes = {k: list(v) for k, v in ({"beta": ["0.5", "2"]} if settings is None else settings).items()}
    if hostile and axes:
        first = next(iter(axes))
        axes[first][0] = HOSTILE_SETTING
    rhos = sorted({0.0, *map(float, rhos)})
    combos: list[dict[str, str]] = [{}]
    for key, values in axes.items():
        combos = [{**c, key: v} for c in combos for v in values]
    methods = [("hfsb", 0.0), ("sf", 0.0)] + [("sast", r) for r in rhos if r > 0] + [("sf-matched", 0.0)]
    rows: list[dict[str, Any]] = []
    for s_index, setting in enumerate(combos):
        for seed in range(seeds):
            for method, rho in methods:
                bad = list(violated) if method == "sast" and not any(r["violated"] for r in rows) else []
                rows.append(_fake_sweep_row(setting, s_index, method, rho, seed, layers, gap_layer, epochs,
                                            partial, bad))
    argv = ["python", "-m", "sast.experiments", "grid" if axes else "rho-sweep", "--dataset", "synth-nmnist",
            *[f"--set={k}={','.join(v)}" for k, v in axes.items()], "--rhos", ",".join(f"{r:g}" for r in rhos),
            "--seeds", str(seeds)]
    results: dict[str, Any] = {
        "experiment": "grid" if axes else "rho-sweep", "dataset": "synth-nmnist", "preset": None if axes else
        "quick", "rhos": rhos, "seeds": seeds, "epochs": epochs, "severities": [1, 3], "monitor": "default",
        "checks": "all", "base": dict(TRAIN_CONFIG), "argv": argv, "seconds": 754.2,
        "axes": {**axes, "rho": [f"{r:g}" for r in rhos]} if axes else {},
        "rows": [{k: v for k, v in r.items() if k != "mechanism"} for r in rows]}
    if not partial:
        results["table"] = _fake_table(rows)
        results["paired"] = _fake_paired(rows)
        results["correlations"] = _fake_correlations(rows)
        results["mechanism_samples"] = [
            {"run_dir": r["run_dir"], "method": r["method"], "rho": r["rho"], "seed": r["seed"],
             "setting": r["setting"], **r["mechanism"]} for r in rows]
    path = folder / "results.json"
    runfolder.write_json(path, results)
    return path


def _fake_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["method"], r["rho"]), []).append(r)
    table = []
    for (setting, method, rho), rs in groups.items():
        row: dict[str, Any] = {"setting": setting, "method": method, "rho": rho, "seeds": len(rs),
                               **rs[0]["setting_values"],
                               "violated_checks": sorted({v for r in rs for v in r["violated"]})}
        for f in _SWEEP_FIELDS:
            for part, value in zip(("mean", "std", "lo", "hi"), _interval([r[f] for r in rs if f in r])):
                row[f"{f}_{part}"] = value
        table.append(row)
    return table


def _fake_paired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["setting"], r["method"], r["rho"], r["seed"]): r for r in rows}
    out = []
    for setting, rho in dict.fromkeys((k[0], k[2]) for k in by if k[1] == "sast"):
        for control in ("sf", "sf-matched"):
            for f in ("hard_acc", "gap", "smooth_acc"):
                seeds = sorted(k[3] for k in by if k[:3] == (setting, "sast", rho))
                diffs = [by[(setting, "sast", rho, s)][f] - by[(setting, control, 0.0, s)][f] for s in seeds]
                mean, _, lo, hi = _interval(diffs)
                verdict = ("no interval (one seed)" if lo is None else "higher" if lo > 0 else "lower" if hi < 0
                           else "not resolved")
                out.append({"setting": setting, "rho": rho, "control": control, "field": f, "seeds": seeds,
                            "diffs": diffs, "mean": mean, "lo": lo, "hi": hi, "n": len(diffs), "verdict": verdict})
    return out


def _fake_correlations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    smooth = [r for r in rows if r["method"] != "hfsb"]
    scopes = {"all": smooth, **{s: [r for r in smooth if r["setting"] == s] for s in
                                dict.fromkeys(r["setting"] for r in smooth if r["setting"])}}
    out = []
    for scope, rs in scopes.items():
        for x in ("input_grad_norm_mean", "lambda_max", "sharpness", "grad_norm", "soft_band_mean"):
            rho, p = _spearman([r[x] for r in rs], [r["gap"] for r in rs])
            out.append({"scope": scope, "x": x, "y": "gap", "n": len(rs), "spearman": rho, "p": p})
    return out


def main(argv: list[str] | None = None) -> int:
    """Write a fake run folder: ``python -m reports.testing PATH``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m reports.testing PATH  (writes a fake run folder at PATH)", file=sys.stderr)
        return 2
    print(write_fake_run(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
