"""The training command line: ``python -m sast.train`` (flags, exit codes, the default run folder).

    python -m sast.train --method sast --rho 0.3
    torchrun --nproc_per_node=N -m sast.train --method sast --rho 0.3

A composition root (``apps``): it wires the live checks monitor (:mod:`apps.wiring`) into
training (:mod:`sast.train`); ``python -m sast.train`` is its entry point (``sast/train/__main__.py``).

Exit codes (:mod:`runfolder.exits`): 0 done, 1 the live monitor stopped training on a
violated bound (``--on-violation stop``; ckpt.pt holds the state it stopped at), 2 bad input
or an unusable file (one line naming it), 3 the loss became NaN or infinite (the last good
checkpoint is kept), 70 an internal error (a bug; traceback). ``--resume --epochs N`` extends a run of fewer
epochs to N (:mod:`sast.train.loop`). After ``torchrun`` the monitor flag must be spelled
``--monitor-preset`` (torchrun reads ``--monitor`` as its own ``--monitor-interval``).
``--tensorboard DIR`` mirrors metrics.jsonl into TensorBoard event files in ``DIR/RUN``, RUN
the run folder's name (:mod:`sast.tensorboard_log`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from apps.wiring import monitor_callbacks
from runfolder import CONFIG_FILE, EXIT_CODES_EPILOG, LOCK_FILE, INPUT_ERRORS, check_writable, describe, guard
from sast import distributed, process
from sast.callbacks import StopTraining
from sast.data import DOWNLOAD_HELP, SPLITS as DATA_SPLITS, download
from sast.model import SNNConfig
from sast.tensorboard_log import tensorboard_help, tensorboard_sinks
from sast.train.config import TrainConfig
from sast.train.loop import TrainingDiverged, train

ON_VIOLATION = ("warn", "stop")
# monitor_callbacks is this module's name for the wiring, so that a test can put a callback before the monitor
__all__ = ["ON_VIOLATION", "build_parser", "config_from_args", "default_run_dir", "given", "main", "monitor_callbacks"]


class _Given(argparse.Action):
    """Stores the flag's value and notes that it was given (:func:`given`): a default never extends a run."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def given(args: argparse.Namespace, dest: str) -> bool:
    """Whether the flag of ``dest`` was on the command line (for the flags stored by :class:`_Given`)."""
    return dest in getattr(args, "given", ())


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m sast.train`` (one per :class:`TrainConfig` field, and the run's own)."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m sast.train",
        description="Train one spiking network with HFSB, SF or SAST and write a run folder "
        "(config.json, metrics.jsonl, ckpt.pt, best.pt).",
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", default=d.data, help="dataset name (synth-nmnist, synth-gesture, nmnist, dvsgesture)")
    p.add_argument("--method", default=d.method, help="hfsb | sf | sast")
    p.add_argument("--rho", type=float, default=None, help="SAM radius (sast only; default 0.3 for sast)")
    p.add_argument("--sam-batch", default=d.sam_batch, help="independent: a second minibatch for the perturbation "
                   "(THEORY.md T6); same: the update batch (Foret et al.'s SAM)")
    p.add_argument("--sam-perturbation", default=d.sam_perturbation, help="under torchrun: global (the perturbation "
                   "from the all-reduced gradient of B_k, as one process would take it) or local (each replica "
                   "perturbs by its own shard, m-sharpness with m = b / processes)")
    p.add_argument("--optimizer", default=d.optimizer, help="base step: sgd (T6 applies), momentum, adam")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate eta")
    p.add_argument("--batch-size", type=int, default=None, help=f"minibatch size b (default {d.batch_size}; "
                   "gesture sets 16); under torchrun the global batch, split evenly over the processes")
    p.add_argument("--epochs", type=int, default=d.epochs, action=_Given, help="epochs to train; with --resume, "
                   "more than the run's epochs extends it (see --resume)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation and shuffling "
                   "(CPU runs repeat bit for bit)")
    p.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    p.add_argument("--layers", default=None, help="comma-separated layers, e.g. 'conv:16:3:2,pool:2,dense:128' "
                   "(default: the dataset's architecture)")
    p.add_argument("--T", type=int, default=d.T, help="number of time bins")
    p.add_argument("--lam", type=float, default=d.lam, help="membrane leak lambda in [0, 1)")
    p.add_argument("--theta", type=float, default=d.theta, help="firing threshold")
    p.add_argument("--beta", type=float, default=None, help=f"sigmoid steepness of the smooth spike (default {d.beta:g}; "
                   "gesture sets 2)")
    p.add_argument("--reset", default=d.reset, help="zero | subtract")
    p.add_argument("--init-scale", type=float, default=None, help="scale of the initial weights of the spiking "
                   "layers (default 1; gesture sets 3)")
    p.add_argument("--clip", type=int, default=d.clip, help="events per pixel and bin are clipped at this (X_inf, 1-255)")
    p.add_argument("--root", default=None, help="folder holding a real dataset (nmnist, dvsgesture)")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument("--cache-dir", default=None, help="frame cache folder (default $SAST_CACHE or ~/.cache/sast)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N samples of each split")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/DATA-METHOD[-rhoR]-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its ckpt.pt "
                   "(its log is cut back to that checkpoint), with the same settings as the run (a changed one is "
                   "refused, naming it). To extend a finished (or interrupted) run of E epochs give --resume "
                   "--epochs N with N > E: it trains on to N epochs, config.json then says N, and metrics.jsonl "
                   "gets an 'extend' record where it was extended; the result equals a run of N epochs from the "
                   "start (bit for bit on the CPU). N below E is refused, and only an --epochs given extends a run "
                   f"(its default, {d.epochs}, never does). A folder whose run stopped before its first epoch "
                   "ended has no ckpt.pt: it is started over, with or without --resume (a note says so); --resume "
                   "on a folder that holds no run is refused. One trainer per folder: a second one exits 2 naming "
                   "the first one's pid (lock file " + LOCK_FILE + ")")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--monitor", "--monitor-preset", dest="monitor", default="default", help="live theory checks "
                   "on a fixed probe set, logged to metrics.jsonl (checks.monitor presets): default (A4, T2-T7 held "
                   "against their bounds on staggered schedules, <= 5%% of the demo's time), full (denser schedules, "
                   "larger probes, <= 25%%), off; after torchrun spell it --monitor-preset (torchrun reads --monitor "
                   "as its ambiguous --monitor-interval)")
    p.add_argument("--on-violation", default="warn", choices=ON_VIOLATION, help="what the monitor does when a bound "
                   "is violated or an assumption that held stops holding: warn (one line on stderr and in the "
                   "progress bar, training goes on) or stop (also write ckpt.pt of the current state and exit 1)")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help=tensorboard_help())
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the parsed flags ask for (the dataset's defaults where a flag is unset)."""
    rho = args.rho if args.rho is not None else (0.3 if args.method == "sast" else 0.0)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else []
    return TrainConfig.for_data(
        args.data, method=args.method, rho=rho, sam_batch=args.sam_batch, sam_perturbation=args.sam_perturbation,
        optimizer=args.optimizer,
        lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, device=args.device,
        layers=layers, T=args.T, lam=args.lam, theta=args.theta, beta=args.beta, reset=args.reset,
        init_scale=args.init_scale, clip=args.clip, root=args.root, cache_dir=args.cache_dir, limit=args.limit,
    )


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/DATA-METHOD[-rhoR]-sSEED."""
    rho = f"-rho{cfg.rho:g}" if cfg.method == "sast" else ""
    return Path("runs") / f"{cfg.data}-{cfg.method}{rho}-s{cfg.seed}"


@guard
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process.prepare()  # freed memory kept in the heap; SAST_MALLOC, SAST_NATIVE checked (sast.process)
    main_rank = distributed.env_rank() == 0  # under torchrun all ranks meet the same input errors: one prints
    try:
        cfg = config_from_args(args)
        cfg.validate()
        SNNConfig(input_shape=(1,), layers=["dense:1"], T=cfg.T, lam=cfg.lam, theta=cfg.theta, beta=cfg.beta,
                  reset=cfg.reset)  # neuron constants checked before any data is made
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
        check_writable(run_dir / CONFIG_FILE)  # a file in the way, a read-only parent: said before any data is made
        sinks = tensorboard_sinks(args.tensorboard, Path(os.path.abspath(run_dir)).name)  # checked before any work
        if args.download:
            if distributed.env_world_size() > 1:  # ranks would race to write the same files
                raise ValueError("--download cannot run under torchrun (its ranks would write the same files at "
                                 "once); download first in one process: python -c \"import sast.data as d; "
                                 f"d.download('{cfg.data}', ['train', 'test'], 'ROOT')\"")
            download(cfg.data, DATA_SPLITS, cfg.root)
        summary = train(cfg, run_dir, callbacks=monitor_callbacks(args.monitor, args.on_violation),
                        resume=args.resume, progress=not args.no_progress,
                        extend=given(args, "epochs"), sinks=sinks)  # only an --epochs given extends a run
    except TrainingDiverged as e:
        code, error = 3, str(e)
    except StopTraining as e:  # the monitor stopped training (--on-violation stop): ckpt.pt holds that state
        code, error = e.exit_code, f"training stopped: {e} (checkpoint: {run_dir / 'ckpt.pt'})"
    except INPUT_ERRORS as e:  # bad settings, a bad checkpoint, an unusable file system: one line naming it
        code, error = 2, describe(e)
    else:
        code, error = 0, None
    # every rank gets here at the same point (the stats and errors are shared); a crash elsewhere is torchrun's to stop
    distributed.shutdown(barrier=error is None)
    if not main_rank:
        return code
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return code
    print(f"run folder: {run_dir}")
    print(f"test accuracy  smooth {summary['test_smooth_acc']:.4f}  hard {summary['test_hard_acc']:.4f}  "
          f"gap {summary['test_gap']:+.4f}")
    return 0
