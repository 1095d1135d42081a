"""The paper's evaluation as one command: a rho sweep with its controls.

    python -m sast.experiments rho-sweep --dataset synth-nmnist --preset quick

For every seed it trains HFSB (the conventional method), SF (rho = 0), SAST at every
rho > 0, and the compute-matched control (SF with twice the epochs: SAST costs two
gradient evaluations a step), each with the live checks monitor; then it evaluates
every final model on: smooth and hard accuracy, the transfer gap, E1 and E2; a suite of
event corruptions at 5 severities in both modes; calibration (ECE, 15 bins, before and
after temperature scaling fitted on the validation split, and reliability bins);
overhead (seconds and gradient evaluations per epoch, relative to SF); and theory
alignment (``checks.all`` on the final checkpoint). It writes results.csv and
results.json (mean and standard deviation over seeds per method and rho), the run
folders, and a comparison report, and prints where the best hard-spike accuracy falls
in rho. An interrupted sweep resumes: finished runs are not redone.

This module is a composition root: it wires ``checks`` and ``reports`` (higher
layers) into training, importing them inside functions only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from sast.runlog import read_jsonl, write_json
from sast.train import TrainConfig, load_data, monitor_callbacks, train

EXPERIMENTS = ("rho-sweep",)
DATASETS = ("synth-nmnist", "synth-gesture", "nmnist", "dvsgesture")


@dataclass(frozen=True)
class Preset:
    """Settings of a sweep; ``train`` overrides TrainConfig defaults."""

    rhos: tuple[float, ...]
    seeds: int
    epochs: int
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    train: dict[str, Any] = field(default_factory=dict)
    monitor: str = "default"
    description: str = ""


PRESETS: dict[str, Preset] = {
    # small and short: the CPU smoke version of the paper's protocol (minutes on 2 cores)
    "quick": Preset(rhos=(0.0, 0.3), seeds=1, epochs=10, description="rhos 0 and 0.3, one seed, 10 epochs"),
    # what a user runs on a GPU: the paper's rho grid, 3 seeds, full training
    "paper": Preset(rhos=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5), seeds=3, epochs=30,
                    description="the paper's rho grid, 3 seeds, 30 epochs"),
}


@dataclass(frozen=True)
class RunSpec:
    method: str  # hfsb | sf | sast | sf-matched
    rho: float
    seed: int

    @property
    def name(self) -> str:
        tag = {"sast": f"sast-rho{self.rho:g}"}.get(self.method, self.method)
        return f"{tag}-s{self.seed}"


def plan_runs(rhos: Sequence[float], seeds: int) -> list[RunSpec]:
    """HFSB, SF, SAST at each rho > 0, and the compute-matched SF, for every seed."""
    runs = []
    for seed in range(seeds):
        runs += [RunSpec("hfsb", 0.0, seed), RunSpec("sf", 0.0, seed)]
        runs += [RunSpec("sast", float(r), seed) for r in rhos if r > 0]
        if any(r > 0 for r in rhos):
            runs.append(RunSpec("sf-matched", 0.0, seed))
    return runs


def train_config(spec: RunSpec, base: dict[str, Any], epochs: int) -> TrainConfig:
    method = "sf" if spec.method == "sf-matched" else spec.method
    e = 2 * epochs if spec.method == "sf-matched" else epochs  # same gradient evaluations as SAST
    return TrainConfig(**{**base, "method": method, "rho": spec.rho, "seed": spec.seed, "epochs": e})


# ----------------------------------------------------------------------------- evaluation


def _accuracy(model, frames, labels, mode, device) -> float:
    from sast.evaluate import predict_logits

    return (predict_logits(model, frames, mode, device=device).argmax(1) == labels).double().mean().item()


def corruption_suite(cfg: TrainConfig, severities: Sequence[int], progress: bool) -> dict[tuple[str, int], torch.Tensor]:
    """Corrupted test frames for every corruption and severity (built once, shared by all models)."""
    from sast.data import event_dataset
    from sast.data.corruptions import CORRUPTIONS, corrupted_frames

    events = event_dataset(cfg.data, "test", cfg.root, limit=cfg.limit, progress=progress)
    return {(name, s): corrupted_frames(cfg.data, "test", cfg.T, name, s, events=events, clip=cfg.clip)
            for name in CORRUPTIONS for s in severities}


def evaluate_run(run_dir: Path, cfg: TrainConfig, suite, device: str, progress: bool) -> dict[str, Any]:
    """Everything the sweep reports about one finished run; also written to evaluation.json."""
    from checks.all import CHECKS, run_all
    from checks._cli import Loaded, probe_from_split, write_results
    from sast import checkpoint
    from sast.calibration import expected_calibration_error, fit_temperature, reliability_bins
    from sast.evaluate import predict_logits
    from sast.transfer import diagnostics

    model, ckpt = checkpoint.load(run_dir / "ckpt.pt")
    model = model.to(device).eval()
    data = load_data(cfg, progress=False)
    res: dict[str, Any] = dict(diagnostics(model, data.test.frames, data.test.labels, device=device))
    for mode in ("smooth", "hard"):
        z_val = predict_logits(model, data.val.frames, mode, device=device)
        z_test = predict_logits(model, data.test.frames, mode, device=device)
        tau = fit_temperature(z_val, data.val.labels)
        res[f"temperature_{mode}"] = tau
        res[f"ece_{mode}_ts"] = expected_calibration_error(z_test / tau, data.test.labels)
        res[f"reliability_{mode}"] = reliability_bins(z_test, data.test.labels)
        res[f"reliability_{mode}_ts"] = reliability_bins(z_test / tau, data.test.labels)
    labels = data.test.labels
    corr: dict[str, dict[str, list[float]]] = {}
    for (name, sev), frames in suite.items():
        for mode in ("smooth", "hard"):
            corr.setdefault(mode, {}).setdefault(name, []).append(_accuracy(model, frames, labels, mode, device))
    res["corruption_acc"] = corr
    for mode in ("smooth", "hard"):
        accs = [a for per in corr.get(mode, {}).values() for a in per]
        res[f"corruption_mean_{mode}"] = sum(accs) / len(accs) if accs else None
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    res["seconds_per_epoch"] = statistics.mean(r["seconds"] for r in evals) if evals else None
    res["grad_evals_per_epoch"] = evals[-1]["grad_evals"] / len(evals) if evals else None
    x, y = probe_from_split(data.test.frames, data.test.labels, 64, 0)
    loaded = Loaded(model, ckpt, (x.to(device), y.to(device)), run_dir, torch.device(device), torch.float32)
    results = run_all(loaded, list(CHECKS), progress=False)
    write_results(run_dir / "checks.json", results)
    res["checks"] = {r.id: r.status for r in results}
    res["violated"] = [r.id for r in results if r.status == "violated"]
    write_json(run_dir / "evaluation.json", res)
    return res


# ----------------------------------------------------------------------------- one seed


def run_seed(out: str, specs: list[RunSpec], base: dict[str, Any], epochs: int, severities: Sequence[int],
             monitor: str, device: str, progress: bool, threads: int | None = None) -> list[dict[str, Any]]:
    """Train (or resume) and evaluate the runs of one seed; returns one row per run."""
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out)
    suite = None
    rows = []
    for spec in specs:
        cfg = train_config(spec, base, epochs)
        run_dir = out_dir / spec.name
        eval_path = run_dir / "evaluation.json"
        finished = eval_path.exists()
        if not finished:
            resume = (run_dir / "ckpt.pt").exists()
            print(f"[{spec.name}] {'resuming' if resume else 'training'} -> {run_dir}", file=sys.stderr)
            train(cfg, run_dir, callbacks=monitor_callbacks(monitor), resume=resume, progress=progress)
            if suite is None:
                suite = corruption_suite(cfg, severities, progress=False)
            res = evaluate_run(run_dir, cfg, suite, device, progress)
        else:
            print(f"[{spec.name}] done before, reusing {eval_path}", file=sys.stderr)
            res = json.loads(eval_path.read_text())
        rows.append({"method": spec.method, "rho": spec.rho, "seed": spec.seed, "run_dir": str(run_dir), **res})
    return rows


# ----------------------------------------------------------------------------- tables

TABLE_FIELDS = ("smooth_acc", "hard_acc", "gap", "agreement", "logit_discrepancy", "int8_hard_acc",
                "synops_smooth", "synops_hard", "corruption_mean_smooth", "corruption_mean_hard",
                "ece_smooth", "ece_smooth_ts", "ece_hard", "ece_hard_ts", "seconds_per_epoch",
                "grad_evals_per_epoch")
METHOD_ORDER = {"hfsb": 0, "sf": 1, "sf-matched": 2, "sast": 3}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (method, rho); overhead relative to SF."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["rho"]), []).append(r)
    table = []
    for (method, rho), rs in sorted(groups.items(), key=lambda kv: (METHOD_ORDER.get(kv[0][0], 9), kv[0][1])):
        row: dict[str, Any] = {"method": method, "rho": rho, "seeds": len(rs)}
        for f in TABLE_FIELDS:
            vals = [r[f] for r in rs if isinstance(r.get(f), (int, float)) and math.isfinite(r[f])]
            row[f"{f}_mean"] = statistics.mean(vals) if vals else None
            row[f"{f}_std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
        row["violated_checks"] = sorted({v for r in rs for v in r.get("violated", [])})
        table.append(row)
    sf = next((r for r in table if r["method"] == "sf"), None)
    for row in table:
        for f in ("seconds_per_epoch", "grad_evals_per_epoch"):
            base = sf and sf.get(f"{f}_mean")
            row[f"{f}_vs_sf"] = row[f"{f}_mean"] / base if base and row.get(f"{f}_mean") is not None else None
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    def pm(row, f, fmt="{:.3f}"):
        m, s = row.get(f"{f}_mean"), row.get(f"{f}_std")
        return "-" if m is None else (fmt.format(m) + (f"±{fmt.format(s)}" if s else ""))

    head = (f"{'method':<11}{'rho':>5}{'smooth':>13}{'hard':>13}{'gap':>13}{'corr. hard':>12}"
            f"{'ECE hard':>10}{'ECE ts':>8}{'int8 hard':>11}{'time/SF':>9}")
    lines = [head, "-" * len(head)]
    for r in table:
        rel = r.get("seconds_per_epoch_vs_sf")
        lines.append(f"{r['method']:<11}{r['rho']:>5g}{pm(r, 'smooth_acc'):>13}{pm(r, 'hard_acc'):>13}"
                     f"{pm(r, 'gap'):>13}{pm(r, 'corruption_mean_hard'):>12}{pm(r, 'ece_hard'):>10}"
                     f"{pm(r, 'ece_hard_ts'):>8}{pm(r, 'int8_hard_acc'):>11}"
                     f"{'-' if rel is None else f'{rel:.2f}x':>9}")
    return "\n".join(lines)


def best_rho_sentence(table: list[dict[str, Any]]) -> str:
    """Where the best mean hard-spike accuracy falls in rho (rho = 0 is SF)."""
    sweep = [r for r in table if r["method"] in ("sf", "sast") and r.get("hard_acc_mean") is not None]
    if not sweep:
        return "no SF/SAST runs to compare"
    best = max(sweep, key=lambda r: r["hard_acc_mean"])
    sf = next((r for r in sweep if r["method"] == "sf"), None)
    text = f"best hard-spike accuracy {best['hard_acc_mean']:.4f} at rho = {best['rho']:g}"
    if sf is not None and best is not sf:
        text += (f" (SF, rho = 0: {sf['hard_acc_mean']:.4f}; gap {sf['gap_mean']:+.4f} -> {best['gap_mean']:+.4f})")
    elif sf is not None:
        text += " (SF itself: no rho > 0 improved hard-spike accuracy)"
    return text


def write_tables(out: Path, rows: list[dict[str, Any]], table: list[dict[str, Any]]) -> None:
    from sast.checkpoint import atomic_write_text

    write_json(out / "results.json", {"rows": rows, "table": table})
    fields = ["method", "rho", "seeds"] + [f"{f}_{s}" for f in TABLE_FIELDS for s in ("mean", "std")] + \
             ["seconds_per_epoch_vs_sf", "grad_evals_per_epoch_vs_sf"]
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in table:
        w.writerow(r)
    atomic_write_text(out / "results.csv", buf.getvalue())


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sast.experiments", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="presets:\n" + "\n".join(f"  {k}: {v.description}" for k, v in PRESETS.items())
                                + "\n\nExit codes: 0 done, 2 bad input, 3 a training run diverged.")
    p.add_argument("experiment", help="rho-sweep")
    p.add_argument("--dataset", default="synth-nmnist", help=", ".join(DATASETS))
    p.add_argument("--preset", default="quick", help=", ".join(PRESETS))
    p.add_argument("--rhos", default=None, help="comma-separated rhos (default: the preset's); 0 is SF")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the preset's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of each run (default: the preset's)")
    p.add_argument("--severities", default=None, help="comma-separated corruption severities (default 1-5)")
    p.add_argument("--monitor", default=None, help="live checks preset: default, full or off")
    p.add_argument("--limit", type=int, default=None, help="use the first N samples of each split (smoke runs)")
    p.add_argument("--layers", default=None, help="architecture (default: the dataset's)")
    p.add_argument("--root", default=None, help="folder of a real data set")
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweep-DATASET-PRESET)")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def _floats(text: str, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 or not math.isfinite(v) for v in vals):
        raise ValueError(f"{flag} takes finite numbers >= 0, got {text!r}")
    return vals


def main(argv: Sequence[str] | None = None) -> int:
    import difflib

    from sast.train import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        for value, known, what in ((args.experiment, EXPERIMENTS, "experiment"), (args.preset, PRESETS, "preset"),
                                   (args.dataset, DATASETS, "dataset")):
            if value not in known:
                close = difflib.get_close_matches(value, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown {what} {value!r}{hint}; known: {', '.join(known)}")
        preset = PRESETS[args.preset]
        rhos = _floats(args.rhos, "--rhos") if args.rhos else list(preset.rhos)
        seeds = args.seeds if args.seeds is not None else preset.seeds
        epochs = args.epochs if args.epochs is not None else preset.epochs
        severities = [int(v) for v in _floats(args.severities, "--severities")] if args.severities \
            else list(preset.severities)
        if seeds < 1 or epochs < 1 or args.jobs < 1:
            raise ValueError("--seeds, --epochs and --jobs must be >= 1")
        if any(s not in (1, 2, 3, 4, 5) for s in severities):
            raise ValueError(f"--severities must lie in 1..5, got {severities}")
        monitor = args.monitor or preset.monitor
        if monitor not in ("default", "full", "off"):
            raise ValueError(f"--monitor must be default, full or off, got {monitor!r}")
        base = TrainConfig.for_data(args.dataset, device=args.device, root=args.root, cache_dir=args.cache_dir,
                                    limit=args.limit, **preset.train).to_dict()
        if args.layers:
            base["layers"] = [s.strip() for s in args.layers.split(",") if s.strip()]
        TrainConfig(**base).validate()
        out = Path(args.out) if args.out else Path("runs") / f"sweep-{args.dataset}-{args.preset}"
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "sweep.json", {"experiment": args.experiment, "preset": args.preset, "rhos": rhos,
                                        "seeds": seeds, "epochs": epochs, "severities": severities,
                                        "monitor": monitor, "base": base, "argv": list(sys.argv)})
        load_data(TrainConfig(**base), progress=not args.no_progress)  # build the frame cache once, up front
        specs = plan_runs(rhos, seeds)
        by_seed = [[s for s in specs if s.seed == seed] for seed in range(seeds)]
        t0 = time.perf_counter()
        progress = not args.no_progress and args.jobs == 1
        if args.jobs == 1:
            rows = [r for group in by_seed for r in run_seed(str(out), group, base, epochs, severities, monitor,
                                                              args.device, progress)]
        else:
            threads = max(1, (os.cpu_count() or 1) // args.jobs)
            import multiprocessing

            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(run_seed, str(out), g, base, epochs, severities, monitor, args.device,
                                       False, threads) for g in by_seed]
                rows = [r for f in futures for r in f.result()]
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = summarise(rows)
    write_tables(out, rows, table)
    report = out / "report.html"
    try:
        from reports.build import main as build_report

        build_report([*(r["run_dir"] for r in rows), "-o", str(report)])
    except Exception as e:  # the sweep's numbers stand without the report; say why it is missing
        print(f"warning: the report could not be written: {e}", file=sys.stderr)
        report = None
    print(f"\n{args.dataset}, preset {args.preset}: {len(rows)} runs, {time.perf_counter() - t0:.0f} s")
    print(format_table(table))
    print(best_rho_sentence(table))
    print(f"results: {out / 'results.csv'}, {out / 'results.json'}" + (f"; report: {report}" if report else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
