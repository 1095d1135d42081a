"""Fake run folders that follow the run-folder contract, for tests and for trying the report.

:func:`write_fake_run` writes ``config.json``, ``metrics.jsonl``, ``checks.json``
and ``evaluation.json`` as ``python -m sast.train``, the live checks monitor and
``python -m sast.evaluate`` write them (DESIGN.md, "The run folder"), with
plausible, deterministic numbers and no training. Options make it partial
(no checks.json, a truncated last line), violated, or carry hostile strings.
Check records, statuses and file writing follow :mod:`runfolder`, the contract
the trainer and the checks share; this module imports neither torch nor sast.

    python -m reports.testing runs/fake   # then: python -m reports.build runs/fake
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
) -> dict[str, Any]:
    """A CheckResult dict with ratio, holds and status derived by :func:`runfolder.derive_status`."""
    assumptions = dict(assumptions or {})
    verdict = runfolder.derive_status(bound, estimate, assumptions)
    return {"id": id, "name": runfolder.STATEMENT_NAMES.get(id, id.lower()), "bound": bound, "estimate": estimate,
            "ratio": verdict.ratio, "holds": verdict.holds, "status": verdict.status, "assumptions": assumptions,
            "converged": True, "n_products": 40, "seed": seed, "dtype": "float32", "device": "cpu", "seconds": 1.2,
            "schema_version": runfolder.SCHEMA_VERSION, "details": dict(details or {})}


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
        check_result("T4", t4_bound, t4_est, assumptions=asm),
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


def main(argv: list[str] | None = None) -> int:
    """Write a fake run folder: ``python -m reports.testing PATH``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reports.testing PATH  (writes a fake run folder at PATH)", file=sys.stderr)
        return 2
    print(write_fake_run(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
