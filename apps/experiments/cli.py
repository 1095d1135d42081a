"""``python -m sast.experiments``: sweeps of training settings with their controls and intervals.

    python -m sast.experiments grid --dataset nmnist --root DATA --set beta=0.5,1,2 \\
        --set rho=0,0.05,0.1,0.2,0.3,0.5 --seeds 5 --epochs 30 --jobs 2 --out runs/grid
    python -m sast.experiments rho-sweep --dataset synth-nmnist --preset quick
    python -m sast.experiments grid --dataset nmnist --root DATA --set rho=0,0.1,0.3 --seeds 5 \\
        --epochs 30 --device cuda --executor submitit --slurm-partition gpu --slurm-time 04:00:00 \\
        --slurm-gpus-per-task 1 --slurm-mem 16G --out runs/grid

``grid`` trains, at every combination of the ``--set`` axes (any TrainConfig field) and for
every seed, HFSB, SF, the compute-matched SF (twice the epochs) and SAST at every rho > 0
of the ``rho`` axis; evaluates each final model (``apps.experiments.evaluation``); and
reports mean and 95% interval over seeds of every metric, paired differences SAST minus
SF and SAST minus the compute-matched SF on the same seeds, and rank correlations over
runs between the transfer gap and the mechanism's quantities. ``rho-sweep`` is the grid
without other axes, with a preset's rhos, seeds and epochs. Both resume (finished runs
are reused, whichever executor ran them) and train runs in parallel processes with
``--jobs``, or as submitit jobs with ``--executor submitit`` (a SLURM array where SLURM is
installed, local processes otherwise: ``apps.experiments.executors``). ``--tensorboard DIR``
mirrors each run's metrics.jsonl into TensorBoard event files in ``DIR/RUN``, RUN the run's
folder relative to the sweep's (``sf-s0``, ``beta=0.5/sast-rho0.3-s1``; :mod:`sast.tensorboard_log`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import multiprocessing
import os
import signal
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from runfolder import EVALUATION_FILE, EXIT_CODES_EPILOG, guard, write_json
from sast import process
from sast.data import DOWNLOAD_HELP, SPLITS as DATA_SPLITS, download
from sast.tensorboard_log import tensorboard_help, tensorboard_sinks

from apps.experiments import evaluation, executors, stats, tables
from apps.experiments.plan import RunSpec, format_value, parse_axes, plan_runs, settings_product, train_config

EXPERIMENTS = ("rho-sweep", "grid")
DATASETS = ("synth-nmnist", "synth-gesture", "nmnist", "dvsgesture")
MONITORS = ("default", "full", "off")


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
    # the paper's rho grid, 3 seeds, full training
    "paper": Preset(rhos=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5), seeds=3, epochs=30,
                    description="the paper's rho grid, 3 seeds, 30 epochs"),
}
GRID_DEFAULTS = Preset(rhos=(0.0, 0.3), seeds=3, epochs=30)


def run_one(out: str, spec: RunSpec, base: dict[str, Any], epochs: int, severities: Sequence[int], monitor: str,
            device: str, checks: str, progress: bool, threads: int | None = None,
            tensorboard: str | None = None) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; returns its row (the run's evaluation plus its spec).

    ``tensorboard``: the ``--tensorboard`` folder, where the run mirrors its records into ``spec.path``.
    """
    import torch

    from apps.wiring import monitor_callbacks
    from sast.gap import MarginLog
    from sast.train import train

    if threads:
        torch.set_num_threads(threads)
    cfg = train_config(spec, base, epochs)
    run_dir = Path(out) / spec.path
    resume = (run_dir / "ckpt.pt").exists()
    print(f"[{spec.path}] {'resuming' if resume else 'training'} -> {run_dir}", file=sys.stderr)
    train(cfg, run_dir, callbacks=[*monitor_callbacks(monitor), MarginLog()], resume=resume, progress=progress,
          sinks=tensorboard_sinks(tensorboard, spec.path))
    suite = evaluation.corruption_suite(cfg, severities, progress=False) if severities else None
    res = evaluation.evaluate_run(run_dir, cfg, suite=suite, device=device, checks=checks)
    return row_of(spec, run_dir, res)


def row_of(spec: RunSpec, run_dir: Path, res: dict[str, Any]) -> dict[str, Any]:
    return {"method": spec.method, "rho": spec.rho, "seed": spec.seed, "setting": spec.setting_tag,
            "setting_values": {k: format_value(v) for k, v in spec.setting}, "run_dir": str(run_dir), **res}


def _eta(done: float, total: float, elapsed: float) -> str:
    if done <= 0:
        return "estimating"
    left = elapsed * (total - done) / done
    return f"about {_duration(left)} left"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def execute(out: Path, specs: list[RunSpec], base: dict[str, Any], epochs: int, severities: Sequence[int],
            monitor: str, device: str, checks: str, jobs: int, progress: bool,
            submitit_executor: Any = None,
            tensorboard: str | None = None) -> tuple[list[dict[str, Any]], list[executors.Failure]]:
    """Run every spec not finished before, with a progress line after each; the rows of all and the failures.

    A run is finished when its folder holds its evaluation (whichever executor ran it).
    Without ``submitit_executor``: ``--jobs`` local processes, and the first run that fails
    stops the sweep (its exception propagates). With it: one submitit job per run
    (:func:`apps.experiments.executors.run_jobs`); a failed job is reported by name, the
    others go on, and the failures are returned (their rows are missing). ``tensorboard``: the
    ``--tensorboard`` folder, handed to every run (:func:`run_one`).
    """
    rows: dict[RunSpec, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        path = out / spec.path / EVALUATION_FILE
        if path.exists():
            print(f"[{spec.path}] done before, reusing {path}", file=sys.stderr)
            rows[spec] = row_of(spec, out / spec.path, json.loads(path.read_text(encoding="utf-8")))
        else:
            todo.append(spec)
    total = sum(s.cost for s in todo)
    done_cost, t0 = 0.0, time.perf_counter()

    def tick(spec: RunSpec, finished: bool = True) -> None:
        nonlocal done_cost, total
        if finished:
            done_cost += spec.cost
        else:  # a failed run leaves the estimate of the time left
            total -= spec.cost
        n_done = len(specs) - len(todo) + sum(1 for s in todo if s in rows)
        elapsed = time.perf_counter() - t0
        print(f"[sweep] {n_done}/{len(specs)} runs done, {_duration(elapsed)} elapsed, "
              f"{_eta(done_cost, total, elapsed)}", file=sys.stderr, flush=True)

    # a process's share of the CPU cores when several train at once (one process keeps torch's default)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    failures: list[executors.Failure] = []
    if submitit_executor is not None and todo:
        local = getattr(submitit_executor, "cluster", None) != "slurm"
        args = (str(out), base, epochs, severities, monitor, device, checks, False, threads if local else None,
                tensorboard)

        def on_row(spec: RunSpec, row: dict[str, Any]) -> None:
            rows[spec] = row
            tick(spec)

        def on_failure(failure: executors.Failure) -> None:
            print(failure.line(), file=sys.stderr, flush=True)
            tick(failure.spec, finished=False)

        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            # run_one looked up now (not bound at import): the job calls what a pool worker calls
            failures = executors.run_jobs(submitit_executor, todo, run_one, lambda s: (args[0], s, *args[1:]),
                                          on_row, on_failure, window=jobs if local else None)
        finally:
            signal.signal(signal.SIGTERM, previous)
    elif jobs == 1:
        for spec in todo:
            rows[spec] = run_one(str(out), spec, base, epochs, severities, monitor, device, checks, progress,
                                 tensorboard=tensorboard)
            tick(spec)
    elif todo:
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            futures = {pool.submit(run_one, str(out), s, base, epochs, severities, monitor, device, checks, False,
                                   threads, tensorboard): s for s in todo}
            for fut in as_completed(futures):
                spec = futures[fut]
                rows[spec] = fut.result()
                tick(spec)
        except BaseException:
            # stopped (an error, Ctrl-C, SIGTERM): no worker may go on writing a run folder unattended
            _stop_workers(pool)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            pool.shutdown(wait=True, cancel_futures=True)
    return [rows[s] for s in specs if s in rows], failures


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's worker processes now (a run they were training resumes from its checkpoint)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def analyse(rows: list[dict[str, Any]], axes: dict[str, list[Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The sweep's results: the table over seeds, paired comparisons, correlations over runs."""
    slim = [{k: v for k, v in r.items() if k not in ("mechanism", "reliability_smooth", "reliability_hard",
                                                     "reliability_smooth_ts", "reliability_hard_ts")} for r in rows]
    mechanism = [{"run_dir": r["run_dir"], "method": r["method"], "rho": r["rho"], "seed": r["seed"],
                  "setting": r["setting"], **{k: r.get("mechanism", {}).get(k) for k in
                                               ("input_grad_norm", "logit_discrepancy", "spearman")}}
                 for r in rows if r.get("mechanism")]
    return {**meta, "axes": {k: [format_value(v) for v in vs] for k, vs in axes.items()},
            "rows": slim, "table": stats.summarise(rows), "paired": stats.paired(rows),
            "correlations": stats.rank_correlations(rows), "mechanism_samples": mechanism}


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sast.experiments", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="rho-sweep presets:\n" + "\n".join(f"  {k}: {v.description}" for k, v in PRESETS.items())
        + "\n\ngrid: --set NAME=V1,V2 for any TrainConfig field (layers: layers joined by '+', e.g. "
        "--set layers=dense:256,dense:256+dense:128); rho is the SAST axis (0 is SF).\n"
        "\n" + EXIT_CODES_EPILOG)
    p.add_argument("experiment", help=" | ".join(EXPERIMENTS))
    p.add_argument("--dataset", default="synth-nmnist", help=", ".join(DATASETS))
    p.add_argument("--preset", default="quick", help="rho-sweep only: " + ", ".join(PRESETS))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=V1,V2",
                   help="grid axis: any TrainConfig field and its values (repeatable); rho=... the SAST radii")
    p.add_argument("--rhos", default=None, help="comma-separated rhos (same as --set rho=...); 0 is SF")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1; grid default 3)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of each run (grid default 30)")
    p.add_argument("--severities", default=None, help="comma-separated corruption severities (default 1-5)")
    p.add_argument("--no-corruptions", action="store_true", help="skip the event-corruption suite")
    p.add_argument("--checks", default="all", help="theory checks per run: all (checks.all), curvature (T4 only), "
                   "none")
    p.add_argument("--monitor", default=None, help="live checks preset: default, full or off")
    p.add_argument("--limit", type=int, default=None, help="use the first N samples of each split (smoke runs)")
    p.add_argument("--layers", default=None, help="architecture, comma-separated (default: the dataset's)")
    p.add_argument("--root", default=None, help="folder of a real data set (nmnist, dvsgesture)")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweep-DATASET-PRESET or runs/grid-DATASET)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (with --executor "
                   "submitit: local jobs at once; a SLURM array is capped by --slurm-array-parallelism)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help=tensorboard_help(
        "the run's folder in the sweep, e.g. sf-s0 or beta=0.5/sast-rho0.3-s1"))
    ex = p.add_argument_group("executors", textwrap.fill(
        "pool (default): the runs train in --jobs processes of this machine. submitit: each run is a "
        "submitit job (pip install 'sast-toolkit[submitit]'), a SLURM array where SLURM is installed, local "
        "processes otherwise; job files and logs in OUT/submitit. This command waits for the jobs and must stay "
        "running (stopping it cancels them). A failed job is reported by name (run and job id), the others go on, "
        "no tables are written, the exit code is the first failed run's (as with the pool), and the next "
        "invocation retries it; finished runs are reused whichever executor ran them.", 76))
    ex.add_argument("--executor", default="pool", help=" | ".join(executors.EXECUTORS) + " (default pool)")
    ex.add_argument("--slurm-partition", default=None, metavar="NAME", help="SLURM partition (slurm_partition)")
    ex.add_argument("--slurm-time", default=None, metavar="TIME",
                    help="time limit of each job: minutes, HH:MM:SS or D-HH:MM:SS (timeout_min; also the local "
                    f"executor's limit; default {executors.DEFAULT_TIMEOUT_MIN // 60}:00:00)")
    ex.add_argument("--slurm-gpus-per-task", type=int, default=None, metavar="N",
                    help="GPUs of each job (slurm_gpus_per_task; local executor: gpus_per_node); default 1 with "
                    "--device cuda, else none")
    ex.add_argument("--slurm-mem", default=None, metavar="SIZE", help="memory of each job, e.g. 16G (slurm_mem)")
    ex.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="N",
                    help="SLURM array jobs running at once (slurm_array_parallelism; submitit's default 256)")
    ex.add_argument("--executor-options", dest="executor_options", action="append", default=[],
                    metavar="KEY=VALUE", help="any other submitit parameter, repeatable, VALUE read as JSON where it "
                    "parses (slurm_account=proj, slurm_constraint=a100, cpus_per_task=8, "
                    "'slurm_setup=[\"module load cuda\"]'); cluster=local|slurm|debug picks the executor")
    return p


def _floats(text: str, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 or not math.isfinite(v) for v in vals):
        raise ValueError(f"{flag} takes finite numbers >= 0, got {text!r}")
    return vals


def _choose(value: str, known: Sequence[str], what: str) -> str:
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {what} {value!r}{hint}; known: {', '.join(known)}")
    return value


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from sast.train import TrainConfig, TrainingDiverged, load_data

    args = build_parser().parse_args(argv)
    process.prepare()  # freed memory kept in the heap; SAST_MALLOC, SAST_NATIVE checked (sast.process)
    try:  # other bad input (settings, an unusable --out, the file system) is the boundary's: one line, exit 2
        _choose(args.experiment, EXPERIMENTS, "experiment")
        _choose(args.dataset, DATASETS, "dataset")
        _choose(args.checks, evaluation.CHECK_MODES, "--checks mode")
        if args.experiment == "rho-sweep":
            preset = PRESETS[_choose(args.preset, list(PRESETS), "preset")]
        else:
            preset = GRID_DEFAULTS
        axes = parse_axes(args.sets)
        if args.rhos is not None:
            if "rho" in axes:
                raise ValueError("give the rhos once: --rhos or --set rho=...")
            axes["rho"] = _floats(args.rhos, "--rhos")
        rhos = axes.get("rho", list(preset.rhos))
        seeds = args.seeds if args.seeds is not None else preset.seeds
        epochs = args.epochs if args.epochs is not None else preset.epochs
        severities = [] if args.no_corruptions else (
            [int(v) for v in _floats(args.severities, "--severities")] if args.severities else list(preset.severities))
        if seeds < 1 or epochs < 1 or args.jobs < 1:
            raise ValueError("--seeds, --epochs and --jobs must be >= 1")
        _choose(args.executor, executors.EXECUTORS, "--executor")
        slurm_flags = {"--slurm-partition": args.slurm_partition, "--slurm-time": args.slurm_time,
                       "--slurm-gpus-per-task": args.slurm_gpus_per_task, "--slurm-mem": args.slurm_mem,
                       "--slurm-array-parallelism": args.slurm_array_parallelism,
                       "--executor-options": args.executor_options or None}
        given = [flag for flag, value in slurm_flags.items() if value is not None]
        if args.executor == "pool" and given:
            raise ValueError(f"{given[0]} is an option of --executor submitit; add --executor submitit or drop it")
        if args.executor == "submitit":
            cluster, ex_params = executors.submitit_parameters(
                partition=args.slurm_partition, time=args.slurm_time, gpus_per_task=args.slurm_gpus_per_task,
                mem=args.slurm_mem, array_parallelism=args.slurm_array_parallelism, options=args.executor_options,
                device=args.device, name=f"sast-{args.experiment}")
        if any(s not in (1, 2, 3, 4, 5) for s in severities):
            raise ValueError(f"--severities must lie in 1..5, got {severities}")
        monitor = _choose(args.monitor or preset.monitor, MONITORS, "--monitor preset")
        base = TrainConfig.for_data(args.dataset, device=args.device, root=args.root, cache_dir=args.cache_dir,
                                    limit=args.limit, **preset.train).to_dict()
        if args.layers:
            base["layers"] = [s.strip() for s in args.layers.split(",") if s.strip()]
        settings = settings_product(axes)
        specs = plan_runs(rhos, seeds, settings)
        for spec in specs:  # every run's settings (and TensorBoard folder) checked before anything trains
            train_config(spec, base, epochs).validate()
            tensorboard_sinks(args.tensorboard, spec.path)
        default_out = (f"sweep-{args.dataset}-{args.preset}" if args.experiment == "rho-sweep"
                       else f"grid-{args.dataset}")
        out = Path(args.out) if args.out else Path("runs") / default_out
        out.mkdir(parents=True, exist_ok=True)
        submitit_executor = (executors.make_executor(out / executors.SUBMITIT_FOLDER, cluster, ex_params)
                             if args.executor == "submitit" else None)
        meta = {"experiment": args.experiment, "dataset": args.dataset,
                "preset": args.preset if args.experiment == "rho-sweep" else None, "rhos": rhos, "seeds": seeds,
                "epochs": epochs, "severities": severities, "monitor": monitor, "checks": args.checks, "base": base,
                "argv": ["python", "-m", "sast.experiments", *(argv if argv is not None else sys.argv[1:])]}
        write_json(out / "sweep.json", {**meta, "axes": {k: [format_value(v) for v in vs] for k, vs in axes.items()}})
        if args.download:  # once, here, before any run or job reads the files
            download(args.dataset, DATA_SPLITS, args.root)
        for setting in settings:  # build each frame cache once, up front (not in every process)
            cfg = train_config(RunSpec("sf", 0.0, 0, setting), base, epochs)
            load_data(cfg, progress=not args.no_progress)
        t0 = time.perf_counter()
        progress = not args.no_progress and args.jobs == 1
        rows, failures = execute(out, specs, base, epochs, severities, monitor, args.device, args.checks, args.jobs,
                                 progress, submitit_executor, tensorboard=args.tensorboard)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if failures:
        # as the pool: no tables from part of the runs, and the exit code of the first failed run (in plan order)
        first = min(failures, key=lambda f: specs.index(f.spec))
        print(f"[sweep] {len(failures)} of {len(specs)} runs failed (named above); the finished runs are kept: "
              "run the same command again to retry the failed ones", file=sys.stderr)
        return first.exit_code
    results = analyse(rows, axes, {**meta, "seconds": time.perf_counter() - t0})
    tables.write_tables(out, results)
    report = write_report(out, rows)
    print(f"\n{args.dataset}, {args.experiment}: {len(rows)} runs, {time.perf_counter() - t0:.0f} s")
    print(tables.format_table(results["table"]))
    if any(p["n"] for p in results["paired"]):
        print("\npaired differences (same seeds):")
        print(tables.format_paired(results["paired"]))
    print("\nacross runs (SF, compute-matched SF, SAST):")
    print(tables.format_correlations(results["correlations"]))
    print(tables.best_rho_sentence(results["table"]))
    print(f"results: {out / 'results.csv'}, {out / 'paired.csv'}, {out / 'results.json'}"
          + (f"; report: {report}" if report else ""))
    return 0


def write_report(out: Path, rows: list[dict[str, Any]]) -> Path | None:
    """The sweep's report (reports.sweep) and, for up to 30 runs, the per-run report; None if it failed."""
    try:
        from reports.build import build_report
        from reports.sweep import build_sweep_report

        report = build_sweep_report(out, out / "report.html")
        if len(rows) <= 30:
            build_report([r["run_dir"] for r in rows], out / "runs-report.html")
        return report
    except Exception as e:  # the sweep's numbers stand without the report; say why it is missing
        print(f"warning: the report could not be written: {e}", file=sys.stderr)
        return None
