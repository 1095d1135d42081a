"""The main job: train SF and SAST (rho = 0.3) on the embedded data and compare hard-spike transfer.

    python -m sast.demo            (what `make demo` runs)

Both runs use the defaults of ``python -m sast.train``, with the live checks monitor;
their run folders go under ``--out``. Then every check of ``checks.all`` runs on each
final checkpoint (checks.json in each run folder), and one theory-alignment report is
written for both runs. A second call reuses finished runs (it resumes them, which for a
finished run only re-reads its log). ``--tensorboard DIR`` mirrors each run's metrics.jsonl into
TensorBoard event files in ``DIR/sf`` and ``DIR/sast-rho0.3`` (:mod:`sast.tensorboard_log`).

A composition root (``apps``): it wires the live monitor, ``checks`` and ``reports`` into
training; ``python -m sast.demo`` is its entry point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from apps.wiring import monitor_callbacks
from runfolder import EXIT_CODES_EPILOG, REPORT_FILE, check_writable, guard
from sast import process
from sast.tensorboard_log import tensorboard_help, tensorboard_sinks
from sast.train import StopTraining, TrainConfig, TrainingDiverged, load_data, train

DEMO_RHO = 0.3


def format_table(rows: list[dict]) -> str:
    """A plain-text table: method, smooth and hard test accuracy, transfer gap, seconds per epoch."""
    head = f"{'method':<14}{'smooth acc':>12}{'hard acc':>10}{'gap':>9}{'s/epoch':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<14}{r['smooth']:>12.4f}{r['hard']:>10.4f}{r['gap']:>+9.4f}{r['sec']:>9.1f}")
    return "\n".join(lines)


@guard
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sast.demo", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    p.add_argument("--out", default="runs/demo", help="folder for the two run folders")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--monitor", default="default", help="live checks preset: default, full or off")
    p.add_argument("--on-violation", default="warn", choices=("warn", "stop"), help="the monitor on a violated bound "
                   "(or an assumption that stops holding): warn, or stop (ckpt.pt of that state, exit 1)")
    p.add_argument("--no-checks", action="store_true", help="skip checks.all and the report")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help=tensorboard_help(f"sf or sast-rho{DEMO_RHO:g}"))
    args = p.parse_args(argv)
    process.prepare()  # freed memory kept in the heap; SAST_MALLOC, SAST_NATIVE checked (sast.process)
    out = Path(args.out)
    base = TrainConfig(epochs=args.epochs, device=args.device, seed=args.seed)
    runs = [("SF", TrainConfig(**{**base.to_dict(), "method": "sf"})),
            (f"SAST rho={DEMO_RHO:g}", TrainConfig(**{**base.to_dict(), "method": "sast", "rho": DEMO_RHO}))]
    names = {label: "sf" if cfg.method == "sf" else f"sast-rho{cfg.rho:g}" for label, cfg in runs}
    rows = []
    try:  # other bad input (settings, an unusable --out, the file system) is the boundary's: one line, exit 2
        base.validate()
        check_writable(out / REPORT_FILE)
        sinks = {label: tensorboard_sinks(args.tensorboard, name) for label, name in names.items()}  # before any work
        data = load_data(base, progress=not args.no_progress)
        for label, cfg in runs:
            run_dir = out / names[label]
            print(f"training {label} -> {run_dir}", file=sys.stderr)
            resume = (run_dir / "ckpt.pt").exists()
            rec = train(cfg, run_dir, callbacks=monitor_callbacks(args.monitor, args.on_violation), resume=resume,
                        progress=not args.no_progress, data=data, sinks=sinks[label])
            rows.append(dict(method=label, smooth=rec["test_smooth_acc"], hard=rec["test_hard_acc"],
                             gap=rec["test_gap"], sec=_seconds_per_epoch(run_dir), run_dir=run_dir))
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except StopTraining as e:  # --on-violation stop: the run folder's ckpt.pt holds the state it stopped at
        print(f"error: training stopped: {e}", file=sys.stderr)
        return e.exit_code
    report = None if args.no_checks else _checks_and_report(rows, out, args)
    print(f"\nsynth-nmnist, {base.epochs} epochs, beta={base.beta:g}, lam={base.lam:g}, T={base.T} "
          f"(test split, {len(data.test)} samples)")
    print(format_table(rows))
    for r in rows:
        print(f"run folder: {r['run_dir']}")
        if r.get("verdicts"):
            print("  checks: " + ", ".join(f"{k} {v}" for k, v in r["verdicts"].items()))
    if report:
        print(f"report: {report}")
    return 0


def _checks_and_report(rows: list[dict], out: Path, args) -> Path | None:
    """Every check on each final checkpoint (checks.json in its run folder), then one report for both runs."""
    import checks
    from reports.build import build_report
    from runfolder import CHECKS_FILE, write_json
    from sast.checkpoint import CheckpointError

    for r in rows:
        print(f"checks on {r['run_dir']}", file=sys.stderr)
        try:
            loaded = checks.load_checkpoint(r["run_dir"] / "ckpt.pt", device=args.device)
            results = checks.run_all(loaded, list(checks.CHECKS), progress=False)
        except (ValueError, OSError, CheckpointError) as e:
            print(f"warning: the checks could not run on {r['run_dir']}: {e}", file=sys.stderr)
            continue
        print(checks.format_results(results))
        write_json(r["run_dir"] / CHECKS_FILE, [c.to_json() for c in results])
        r["verdicts"] = {c.id: c.status for c in results}
    return build_report([r["run_dir"] for r in rows], out / "report.html")


def _seconds_per_epoch(run_dir: Path) -> float:
    from runfolder import read_jsonl

    secs = [r["seconds"] for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    return sum(secs) / len(secs) if secs else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
