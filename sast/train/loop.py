"""The training loop: one run of HFSB, SF or SAST into a run folder, with callbacks and resume.

The run folder holds config.json, metrics.jsonl (one JSON record a line), ckpt.pt
(the latest epoch) and best.pt (the best validation accuracy). Training resumes
from ckpt.pt with ``resume=True`` and then continues exactly as an uninterrupted run:
the log is cut back to the records written before that checkpoint (it stores their
count) and the callbacks get their saved state back, so metrics.jsonl equals the
uninterrupted run's record for record (timings aside). A NaN or infinite loss raises
:class:`TrainingDiverged` (the last good checkpoint is kept).

Extending a run (``resume=True, extend=True``; ``python -m sast.train --resume --epochs N``):
a finished or interrupted run of E epochs is continued to N > E epochs. Nothing in training
depends on the total epoch count (the learning rate is constant, every epoch's shuffle is
drawn from the seeded generators that the checkpoint holds, the monitor's schedules count
steps and finished epochs), so the extended run is the N-epoch run: on the CPU its weights,
optimizer state (any optimizer: its state is checkpointed), generators and counters equal,
bit for bit, those of a run trained for N epochs from the start, SAST included
(tests/e2e/test_train_extend.py); a checkpoint written after the extension counts one more
log record (``log_records``: the extend record), and timings differ. config.json is rewritten
(atomically) with N epochs and its command with ``--epochs N``, everything else kept; the
log is cut back to the checkpoint as on every resume, which drops the records that happen
only at a run's end (the callbacks' ``on_train_end``: the monitor's final T6 and its "end"
record; the per-epoch "eval" records are kept), and gains one record where the run was
extended, ``{"kind": "extend", "step", "epoch", "from_epochs": E, "to_epochs": N}``. So the
extended run's metrics.jsonl is the N-epoch run's plus that record (timings aside). What
differs: best.pt, when its epoch lies in the first E, is the file written then, whose
``train_config`` says E epochs (its weights and state are the N-epoch run's); config.json's
environment is the first launch's. N below the run's epochs is refused (a run is not
shortened), as is any other changed setting (naming them).

A callback stops training by raising :class:`sast.callbacks.StopTraining` from a hook (the
live monitor with ``--on-violation stop``). The loop then writes ckpt.pt with the current
state before it re-raises: after a step, the weights of that step, marked ``stopped`` with
the reason, and with where the epoch stood (``batch_index``: the steps done in it; ``rng``:
the generators' states at the epoch's start, so that its batches can be drawn again), so
``resume=True`` continues from there exactly as the uninterrupted run would. Under torchrun
the other processes are inside the step, so a stop asked for during an epoch takes effect
at its end (after its checkpoint).

One trainer per folder: rank 0 holds ``runfolder.LOCK_FILE`` (:mod:`runfolder.lock`)
from before it touches the folder until training ends; a second trainer stops with a
one-line error naming the holder's pid, and the lock of a killed trainer is released
by the kernel. A folder without ckpt.pt (its run stopped before the first epoch ended)
is started over, with or without ``resume`` (a note says so); ``resume`` on a folder
that holds no run at all is refused. Temporary files of interrupted atomic writes are
removed when a trainer starts.

Data-parallel training (sast.distributed):

    torchrun --nproc_per_node=N -m sast.train --method sast --rho 0.3

The model is wrapped in DistributedDataParallel (gloo on the CPU, nccl on
``cuda:LOCAL_RANK``). ``--batch-size`` stays the global batch b of T6: every process
draws the same global minibatches from the same seeded generators and takes its
equal shard (b must be a multiple of N), and DDP averages the shard gradients, which
is the gradient of the mean loss over the global batch. The SAST perturbation comes
from that all-reduced gradient (``--sam-perturbation global``, the default) or from
each replica's own shard (``local``: m-sharpness with m = b/N, by design another
step); the update gradient at w + eps is all-reduced in both. So a run with
``global`` equals the single-process run up to float rounding (the logged losses
and norms are averaged over the ranks and equal the single-process ones too).
Rank 0 alone evaluates the whole validation and test splits, writes config.json
(which records ``distributed.world_size``), metrics.jsonl and the checkpoints (which
record ``world_size``), and runs the callbacks; the others wait for it at the end
of each epoch. ``--resume`` works under torchrun. The world size is not part of the
settings a resume must match: resuming on another number of processes is allowed
(with a note on stderr) since the run continues equal up to rounding, except with
``--sam-perturbation local``, whose step depends on it (refused, one line).
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from runfolder import (BEST_FILE, CHECKPOINT_FILE, CHECKS_FILE, CONFIG_FILE, EVALUATION_FILE, METRICS_FILE,
                       REPORT_FILE, RUN_FILES, read_json, temp_files)
from runfolder.lock import RunLock
from sast import checkpoint, distributed
from sast.callbacks import Callback, StopTraining
from sast.inference import accuracy_and_loss, predict_logits
from sast.model import SNN
from sast.runlog import MetricsLog, RecordSink, environment, read_jsonl, write_json
from sast.sam import ddp_sam_step, ddp_sgd_step, make_optimizer, sam_step, sgd_step
from sast.train.config import TrainConfig
from sast.train.splits import Data, Split, load_data, model_config


@dataclass
class Run:
    """What callbacks see: the live model and optimizer, the data, the log, the counters."""

    cfg: TrainConfig
    run_dir: Path
    model: SNN
    optimizer: torch.optim.Optimizer
    data: Data
    log: MetricsLog
    step: int = 0
    epoch: int = 0
    grad_evals: int = 0
    postfix: dict[str, str] = field(default_factory=dict)
    """Short entries a callback puts in the progress bar's postfix (the monitor: the bounds' status)."""

    def loss_fn(self, model, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x, mode=self.cfg.train_mode), y)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def evaluate_split(model: SNN, split: Split, device: str | torch.device) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``split`` in smooth and hard mode ({mode}_acc, {mode}_loss)."""
    out: dict[str, float] = {}
    for mode in ("smooth", "hard"):
        acc, loss = accuracy_and_loss(predict_logits(model, split.frames, mode, device=device), split.labels)
        out[f"{mode}_acc"], out[f"{mode}_loss"] = acc, loss
    return out


def _batches(n: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """A shuffled epoch of full minibatches (the last partial batch is dropped: b is fixed in T6)."""
    perm = torch.randperm(n, generator=gen)
    n_batches = n // batch_size
    return perm[: n_batches * batch_size].view(n_batches, batch_size)


TRAINER_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BEST_FILE)
"""The files the trainer writes: no one else writes them while it holds the folder's lock."""
STALE_FILES = (METRICS_FILE, CONFIG_FILE, BEST_FILE, CHECKS_FILE, EVALUATION_FILE, REPORT_FILE)
"""What a run that never wrote ckpt.pt may have left: removed when the folder is started over."""
TEMP_GRACE_S = 3600.0
"""Another command's leftover temporary file (checks.json, evaluation.json, report.html) is removed only when
it is older than this: a younger one may belong to a write in progress (the trainer's own are always removed)."""


def _remove_temp_files(run_dir: Path) -> None:
    """Remove the temporary files of atomic writes that a killed process left (runfolder.temp_files)."""
    now = time.time()
    removed = []
    for tmp in temp_files(run_dir, RUN_FILES):
        ours = any(tmp.name.startswith(f".{name}.") for name in TRAINER_FILES)
        try:
            if ours or now - tmp.stat().st_mtime > TEMP_GRACE_S:
                tmp.unlink()
                removed.append(tmp.name)
        except FileNotFoundError:
            pass
    if removed:
        print(f"note: {run_dir}: removed {len(removed)} temporary file(s) left by an interrupted write "
              f"({', '.join(removed[:3])}{', ...' if len(removed) > 3 else ''})", file=sys.stderr)


def _open_run_dir(run_dir: Path, ckpt_path: Path, resume: bool, held: list[RunLock]) -> bool:
    """Lock ``run_dir`` (appended to ``held``) and decide how to start; returns whether to resume (rank 0's part).

    - another trainer holds the folder: FolderBusy (a ValueError) naming its pid;
    - ckpt.pt exists: ``resume`` continues it; a fresh start is refused (pass --resume
      or choose another folder: nothing is overwritten);
    - no ckpt.pt but files of a run (it stopped before its first epoch ended): started
      over with a note, with or without --resume (there is nothing to continue from);
    - ``--resume`` on a folder with no run at all: refused (a mistyped --run-dir).
    """
    if resume and not run_dir.is_dir():
        raise ValueError(f"--resume: {run_dir} does not exist, so there is no run to continue; check --run-dir, or "
                         "start without --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        _remove_temp_files(run_dir)
        if ckpt_path.exists():
            if not resume:
                raise ValueError(f"{run_dir} already holds a run ({ckpt_path}); pass --resume to continue it or "
                                 "choose another --run-dir")
            held.append(lock)
            return True
        if resume:
            if not any((run_dir / name).exists() for name in STALE_FILES):
                raise ValueError(f"--resume: {ckpt_path} does not exist and {run_dir} holds no run; check --run-dir, "
                                 "or start without --resume")
            print(f"note: --resume: {run_dir} has no {CHECKPOINT_FILE} (its run stopped before the first epoch "
                  "ended), so there is nothing to continue; starting the run over", file=sys.stderr)
    except BaseException:
        lock.release()
        raise
    held.append(lock)
    return False


def _clear_stale_run(run_dir: Path) -> None:
    """Remove what a run that never wrote ckpt.pt left (STALE_FILES), with a note naming them."""
    removed = []
    for name in STALE_FILES:
        path = run_dir / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
    if removed:
        print(f"note: {run_dir} held a run that stopped before its first epoch ended (no {CHECKPOINT_FILE}); "
              f"starting it over (removed {', '.join(removed)})", file=sys.stderr)


def _load_data_once(cfg: TrainConfig, ctx: distributed.Context, progress: bool) -> Data:
    """The data on every rank: rank 0 first (it builds the frame cache once), then the others from the cache."""
    loaded: list[Data] = []
    ctx.on_main(lambda: loaded.append(load_data(cfg, progress)))
    return loaded[0] if loaded else load_data(cfg, progress=False)


RESUME_KEYS = ("train_config", "step", "epoch", "grad_evals", "best", "optimizer", "rng")
"""What ``--resume`` reads from a checkpoint besides the model (written by every epoch's save; a checkpoint
written when a callback stopped training mid-epoch also holds ``batch_index``, ``window`` and ``stopped``)."""


EXTEND_KIND = "extend"
"""The ``kind`` of the metrics.jsonl record that marks where a run was extended to more epochs (in
``runfolder.RECORD_KINDS``)."""


def _check_settings(cfg: TrainConfig, saved: TrainConfig, trained: int, ckpt_path: Path, extend: bool) -> int | None:
    """Refuse a resume whose settings differ from the checkpoint's; returns the run's epochs when ``cfg`` extends it.

    ``extend``: ``cfg.epochs`` may exceed the run's epochs (``--epochs`` was given). Any other
    changed setting is refused naming them, and so is ``cfg.epochs`` below the run's epochs.
    """
    new, old = cfg.to_dict(), saved.to_dict()
    diff = sorted(k for k in new if new[k] != old.get(k))
    extending = extend and "epochs" in diff
    refused = [k for k in diff if not (extending and k == "epochs")]
    if refused:
        hint = ""
        if refused == ["epochs"]:  # --epochs not given: the default differs from the run's
            hint = (f" (the run has {saved.epochs} epochs: pass --epochs {saved.epochs} to continue it, or a larger "
                    "--epochs to extend it)")
        raise ValueError(f"--resume with different settings ({', '.join(refused)}) than {ckpt_path}{hint}")
    if not extending:
        return None
    if cfg.epochs < saved.epochs:
        if trained >= saved.epochs:
            what = f"{ckpt_path} has already trained {trained} epochs"
        else:
            what = f"the run in {ckpt_path} has {saved.epochs} epochs ({trained} trained so far)"
        raise ValueError(f"--resume --epochs {cfg.epochs}: {what}; --epochs can extend a run, not shorten it (pass "
                         f"--epochs {saved.epochs} to continue it as it is, or more to extend it)")
    return saved.epochs


def _read_resume(cfg: TrainConfig, ckpt_path: Path, run_dir: Path, world_size: int,
                 extend: bool = False) -> dict[str, Any]:
    """The checkpoint to resume from, checked against ``cfg``; the log cut back to its step (rank 0's part).

    ``extended_from``: the run's epochs where ``cfg`` extends it to more (``extend``), else None.
    """
    _, ckpt = checkpoint.load(ckpt_path)
    checkpoint.require(ckpt, ckpt_path, RESUME_KEYS, "resume")
    saved = TrainConfig.from_dict(ckpt["train_config"])
    extended_from = _check_settings(cfg, saved, int(ckpt["epoch"]), ckpt_path, extend)
    saved_world = int(ckpt.get("world_size", 1))
    if saved_world != world_size:
        if cfg.method == "sast" and cfg.sam_perturbation == "local":
            raise ValueError(f"--resume with --sam-perturbation local on {world_size} process(es), but {ckpt_path} was "
                             f"trained on {saved_world} (the perturbation batch b/world_size would change); resume "
                             f"with torchrun --nproc_per_node={saved_world}")
        distributed.note(f"note: {ckpt_path} was trained on {saved_world} process(es), resumed on {world_size}: the "
                         "run continues equal to the uninterrupted one up to float rounding, not bit for bit")
    last_eval = None
    if ckpt["epoch"] >= cfg.epochs:  # a finished run: nothing to do but report its last evaluation (log untouched)
        evals = [r for r in read_jsonl(run_dir / METRICS_FILE) if r.get("kind") == "eval"]
        if not evals:
            raise ValueError(f"{ckpt_path} is the end of a finished run, but {run_dir / METRICS_FILE} holds no "
                             "evaluation of it to report; evaluate it with python -m sast.evaluate --model "
                             f"{ckpt_path}")
        last_eval = evals[-1]
    else:
        MetricsLog.truncate_after(run_dir / METRICS_FILE, ckpt["step"], ckpt.get("log_records"))
    return {"ckpt": ckpt, "last_eval": last_eval, "extended_from": extended_from}


def _with_epochs(command: str, epochs: int) -> str:
    """``command`` (a recorded ``python -m sast.train ...`` line) with its ``--epochs`` value set to ``epochs``."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    for i, arg in enumerate(argv):
        if arg == "--epochs" and i + 1 < len(argv):
            argv[i + 1] = str(epochs)
            return shlex.join(argv)
        if arg.startswith("--epochs="):
            argv[i] = f"--epochs={epochs}"
            return shlex.join(argv)
    return command


def _extend_config_file(run_dir: Path, cfg: TrainConfig, fresh: Callable[[], dict[str, Any]]) -> None:
    """config.json with ``cfg.epochs`` epochs (its ``train.epochs`` and its command's ``--epochs``), everything
    else kept; written atomically. A missing or unreadable config.json is written anew (``fresh()``), with a note."""
    path = run_dir / CONFIG_FILE
    try:
        doc = read_json(path)
    except (FileNotFoundError, ValueError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), dict):
        print(f"note: {path} was missing or unreadable; written anew for the extended run", file=sys.stderr)
        write_json(path, fresh())
        return
    doc["train"]["epochs"] = cfg.epochs
    if isinstance(doc.get("command"), str):
        doc["command"] = _with_epochs(doc["command"], cfg.epochs)
    write_json(path, doc)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    progress: bool = True,
    data: Data | None = None,
    extend: bool = False,
    sinks: Sequence[RecordSink] = (),
) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir``; returns the final summary (also the last eval record).

    ``extend`` (with ``resume``): ``cfg.epochs`` may exceed the epochs of the run being
    resumed, which is then extended to ``cfg.epochs`` (module docstring); without it a
    changed ``epochs`` is refused like any other setting.

    ``sinks`` (:class:`sast.runlog.RecordSink`, such as :class:`sast.tensorboard_log.TensorBoardLog`)
    get every record of metrics.jsonl as it is written: opened with the records the log holds
    when training starts (a resumed run's, cut back to its checkpoint), closed when training
    ends however it ends. A finished run that is resumed only reports its last evaluation and
    opens no sink.

    Under torchrun (module docstring) every rank returns the same summary; rank 0 alone
    writes ``run_dir``, runs ``callbacks`` and feeds ``sinks``.
    """
    cfg.validate()
    world_size = distributed.env_world_size()  # checked before joining the group: every rank stops alike
    if cfg.batch_size % world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} (the global batch b) does not split evenly over "
                         f"{world_size} processes; pass a multiple of {world_size}")
    ctx = distributed.init_from_env(cfg.device)
    progress = progress and ctx.is_main
    callbacks = tuple(callbacks) if ctx.is_main else ()
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_FILE
    held: list[RunLock] = []  # rank 0's lock on run_dir, released however training ends
    asked = resume
    resume = ctx.on_main(lambda: _open_run_dir(run_dir, ckpt_path, asked, held))
    try:
        return _train(cfg, ctx, run_dir, callbacks=callbacks, resume=resume, progress=progress, data=data,
                      extend=extend, sinks=sinks)
    finally:
        for lock in held:
            lock.release()


def _train(cfg: TrainConfig, ctx: distributed.Context, run_dir: Path, *, callbacks: Sequence[Callback],
           resume: bool, progress: bool, data: Data | None, extend: bool = False,
           sinks: Sequence[RecordSink] = ()) -> dict[str, Any]:
    """:func:`train` once the folder is rank 0's (locked, and resume decided)."""
    ckpt_path = run_dir / CHECKPOINT_FILE
    device = ctx.device(cfg.device)
    data = data if data is not None else _load_data_once(cfg, ctx, progress)
    torch.manual_seed(cfg.seed)
    model = SNN(model_config(cfg, data)).to(device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    gen_update = torch.Generator().manual_seed(cfg.seed * 2 + 1)
    gen_perturb = torch.Generator().manual_seed(cfg.seed * 2 + 2)
    start_epoch, step, grad_evals, best = 0, 0, 0, -1.0
    skip, window = 0, []  # steps already done in the first epoch (a resumed mid-epoch stop), and their losses
    extended_from: int | None = None  # the run's epochs where this launch extends it to cfg.epochs

    def config_document() -> dict[str, Any]:
        return {"train": cfg.to_dict(), "model": model.config.to_dict(),
                "command": ctx.launcher() + cfg.command(run_dir).removeprefix("python"),
                "environment": environment(), "device": str(device), "distributed": ctx.describe()}

    if resume:
        state = ctx.on_main(lambda: _read_resume(cfg, ckpt_path, run_dir, ctx.world_size, extend))
        ckpt = state["ckpt"]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen_update.set_state(ckpt["rng"]["update"])
        gen_perturb.set_state(ckpt["rng"]["perturb"])
        start_epoch, step, grad_evals, best = ckpt["epoch"], ckpt["step"], ckpt["grad_evals"], ckpt["best"]
        skip, window = int(ckpt.get("batch_index", 0)), [float(v) for v in ckpt.get("window", [])]
        if state["last_eval"] is not None:
            return state["last_eval"]
        extended_from = state["extended_from"]
        if extended_from is not None:
            ctx.on_main(lambda: _extend_config_file(run_dir, cfg, config_document))
            distributed.note(f"note: extending the run in {run_dir} from {extended_from} to {cfg.epochs} epochs "
                             f"(continuing from epoch {start_epoch}, step {step})")
        if ckpt.get("stopped"):
            distributed.note(f"note: resuming {ckpt_path}, written when training stopped at step {ckpt['step']}: "
                             f"{ckpt['stopped'].get('reason', '')}")
        saved_states = ckpt.get("callbacks")
        if isinstance(saved_states, list):  # by position; each callback checks that the state is its own
            for cb, saved in zip(callbacks, saved_states):
                cb.load_state_dict(saved)
    else:
        def start_run_dir() -> None:
            run_dir.mkdir(parents=True, exist_ok=True)
            _clear_stale_run(run_dir)
            write_json(run_dir / CONFIG_FILE, config_document())

        ctx.on_main(start_run_dir)
    replicated = ctx.wrap(model)  # DistributedDataParallel under torchrun; the model itself otherwise
    log = MetricsLog(run_dir / METRICS_FILE, sinks) if ctx.is_main else distributed.NullLog()
    if extended_from is not None:  # after the log was cut back to the checkpoint: where the extension begins
        log.log({"kind": EXTEND_KIND, "step": step, "epoch": start_epoch, "from_epochs": extended_from,
                 "to_epochs": cfg.epochs})
    run = Run(cfg, run_dir, model, optimizer, data, log, step=step, epoch=start_epoch, grad_evals=grad_evals)
    n_batches = len(data.train) // cfg.batch_size
    bar = tqdm(total=cfg.epochs * n_batches, initial=start_epoch * n_batches + skip, disable=not progress,
               desc=f"{cfg.method}{'' if cfg.method != 'sast' else f' rho={cfg.rho:g}'}", unit="step",
               file=sys.stderr, dynamic_ncols=True)
    record: dict[str, Any] = {}

    def state(epoch_done: int, rng: dict[str, torch.Tensor], **extra: Any) -> dict[str, Any]:
        """What a checkpoint holds besides the model (``extra``: a stop's position in the epoch)."""
        return dict(train_config=cfg.to_dict(), optimizer=optimizer.state_dict(), epoch=epoch_done, step=run.step,
                    grad_evals=run.grad_evals, world_size=ctx.world_size, rng=rng, log_records=log.records,
                    callbacks=[cb.state_dict() for cb in callbacks], **extra)

    def stop_here(stop: StopTraining, epoch: int, batch_index: int, rng: dict[str, torch.Tensor]) -> None:
        """A callback stopped training after ``batch_index`` steps of ``epoch``: ckpt.pt of this state (one process)."""
        stopped = {"step": run.step, "epoch": epoch, "reason": str(stop)}
        checkpoint.save(ckpt_path, model, best=best, **state(epoch, rng, batch_index=batch_index,
                                                            window=list(window), stopped=stopped))

    def generators() -> dict[str, torch.Tensor]:
        return {"update": gen_update.get_state(), "perturb": gen_perturb.get_state()}

    try:
        try:
            for cb in callbacks:
                cb.on_train_start(run)
        except StopTraining as stop:  # before any step of this launch: the state it started from
            if not ctx.enabled:
                stop_here(stop, start_epoch, skip, generators())
            raise
        pending: StopTraining | None = None  # under torchrun: a stop asked for during the epoch, taken at its end
        for epoch in range(start_epoch, cfg.epochs):
            run.epoch = epoch
            model.train()
            epoch_rng = generators()  # before this epoch's draws: a mid-epoch checkpoint redraws its batches
            batches = _batches(len(data.train), cfg.batch_size, gen_update)
            if cfg.method == "sast" and cfg.sam_batch == "independent":
                perturb_batches = _batches(len(data.train), cfg.batch_size, gen_perturb)
            else:
                perturb_batches = batches
            t0 = time.perf_counter()
            first, skip = skip, 0
            if first == 0:
                window = []
            for i in range(first, n_batches):
                batch = data.train.batch(ctx.shard(batches[i]), device)  # this rank's part of the global batch
                if cfg.method == "sast":
                    pbatch = (data.train.batch(ctx.shard(perturb_batches[i]), device)
                              if perturb_batches is not batches else batch)
                    if ctx.enabled:
                        stats = ddp_sam_step(replicated, optimizer, run.loss_fn, pbatch, batch, cfg.rho,
                                             perturbation=cfg.sam_perturbation)
                    else:
                        stats = sam_step(model, optimizer, run.loss_fn, pbatch, batch, cfg.rho)
                elif ctx.enabled:
                    stats = ddp_sgd_step(replicated, optimizer, run.loss_fn, batch)
                else:
                    stats = sgd_step(model, optimizer, run.loss_fn, batch)
                # the statistics are averaged over the ranks, so all ranks stop here together
                if not math.isfinite(stats.loss) or (stats.perturbed_loss is not None
                                                     and not math.isfinite(stats.perturbed_loss)):
                    log.log({"kind": "error", "step": run.step, "epoch": epoch, "error": "non-finite loss"})
                    raise TrainingDiverged(
                        f"the loss became {stats.loss} at step {run.step} (epoch {epoch}); the last good checkpoint "
                        f"is {ckpt_path if ckpt_path.exists() else 'absent (no epoch finished)'}; try a smaller --lr"
                    )
                run.step += 1
                run.grad_evals += stats.grad_evals
                window.append(stats.loss)
                if run.step % cfg.log_every == 0:
                    log.log({"kind": "train", "step": run.step, "epoch": epoch, "loss": sum(window) / len(window),
                             "grad_norm": stats.grad_norm, "grad_evals": run.grad_evals,
                             **({"perturbed_loss": stats.perturbed_loss} if stats.perturbed_loss is not None else {})})
                    window = []
                try:
                    for cb in callbacks:
                        cb.on_step_end(run, stats)
                except StopTraining as stop:
                    if ctx.enabled:
                        pending = pending or stop
                    else:
                        stop_here(stop, epoch, i + 1, epoch_rng)
                        raise
                bar.update(1)
                bar.set_postfix(loss=f"{stats.loss:.3f}", **run.postfix, refresh=False)
            seconds = time.perf_counter() - t0

            def end_epoch() -> dict[str, Any]:  # rank 0: evaluation, checkpoints, callbacks
                nonlocal best, pending
                model.eval()
                val = evaluate_split(model, data.val, device)
                test = evaluate_split(model, data.test, device)
                record = {"kind": "eval", "step": run.step, "epoch": epoch + 1, "seconds": seconds,
                          "grad_evals": run.grad_evals,
                          **{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()}}
                record["test_gap"] = record["test_smooth_acc"] - record["test_hard_acc"]
                log.log(record)
                try:
                    for cb in callbacks:  # before the checkpoint, which holds their state and the log's length
                        cb.on_epoch_end(run, record)
                except StopTraining as stop:
                    pending = pending or stop
                bar.set_postfix(smooth=f"{test['smooth_acc']:.3f}", hard=f"{test['hard_acc']:.3f}", **run.postfix,
                                refresh=True)
                stopped = {} if pending is None else {"stopped": {"step": run.step, "epoch": epoch + 1,
                                                                  "reason": str(pending)}}
                saved = state(epoch + 1, generators(), **stopped)
                score = val[f"{cfg.native_mode}_acc"]
                if score > best:
                    best = score
                    checkpoint.save(run_dir / BEST_FILE, model, best=best, **saved)
                checkpoint.save(ckpt_path, model, best=best, **saved)
                if pending is not None:  # after the checkpoint; under torchrun every rank raises it (on_main)
                    raise pending
                return record

            record = ctx.on_main(end_epoch)  # the other ranks wait here, then go on with rank 0's record
        for cb in callbacks:
            cb.on_train_end(run)
    finally:
        bar.close()
        log.close()
    return record
