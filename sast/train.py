"""Train one SNN with HFSB, SF or SAST and write a run folder (DESIGN.md).

    python -m sast.train --method sast --rho 0.3

Methods (THEORY.md "The model"):
  hfsb  hard forward, surrogate backward (the conventional, biased gradient)
  sf    smooth forward: the exact gradient of the smooth (sigmoid-spike) model
  sast  SF trained with SAM (T6); the perturbation uses an independent minibatch

The run folder holds config.json, metrics.jsonl (one JSON record a line), ckpt.pt
(the latest epoch) and best.pt (the best validation accuracy). Training resumes
from ckpt.pt with --resume and then continues exactly as an uninterrupted run.
Exit codes: 0 done, 2 bad input, 3 the loss became NaN or infinite (the last good
checkpoint is kept).

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
``--sam-perturbation local``, whose step depends on it (refused, one line). After
``torchrun`` the monitor flag must be spelled ``--monitor-preset``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sast import checkpoint, distributed
from sast.callbacks import Callback
from sast.evaluate import accuracy_and_loss, predict_logits
from sast.model import SNN, SNNConfig
from sast.runlog import MetricsLog, environment, read_jsonl, write_json
from sast.sam import (OPTIMIZERS, SAM_PERTURBATIONS, StepStats, ddp_sam_step, ddp_sgd_step, make_optimizer,
                      sam_step, sgd_step)

METHODS = ("hfsb", "sf", "sast")
SAM_BATCHES = ("independent", "same")

# Settings in which a data set trains unless the user sets them: the architecture, and for
# the gesture sets (a few percent of inputs active, ~900 training recordings) a steeper
# sigmoid, smaller batches and a larger initial weight scale, without which the conv stack
# starts silent and stays at chance for several epochs (measured on synth-gesture).
_GESTURE = {"layers": ["conv:16:3:2", "conv:32:3:2", "pool:2", "dense:128"], "beta": 2.0, "batch_size": 16,
            "init_scale": 3.0}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "synth-nmnist": {"layers": ["dense:256"]},
    "nmnist": {"layers": ["dense:256"]},
    "synth-gesture": _GESTURE,
    "dvsgesture": _GESTURE,
}
VALIDATION_FRACTION = 0.1  # of the training split, held out for best.pt and calibration
VALIDATION_SEED = 12345  # fixed, so every method and seed shares one validation set


@dataclass
class TrainConfig:
    """Every setting of a training run (written to config.json and the checkpoint)."""

    data: str = "synth-nmnist"
    method: str = "sf"
    rho: float = 0.0
    sam_batch: str = "independent"
    sam_perturbation: str = "global"  # under torchrun: "local" perturbs each replica by its own shard (m-sharpness)
    optimizer: str = "sgd"
    lr: float = 0.5
    batch_size: int = 64
    epochs: int = 30
    seed: int = 0
    device: str = "cpu"
    layers: list[str] = field(default_factory=list)  # empty: the dataset's default
    T: int = 20
    lam: float = 0.9
    theta: float = 1.0
    beta: float = 0.5
    reset: str = "zero"
    init_scale: float = 1.0
    clip: int = 1
    root: str | None = None
    cache_dir: str | None = None
    limit: int | None = None  # use only the first N samples of each split (quick runs, tests)
    log_every: int = 10

    def validate(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(msg)

        if self.method not in METHODS:
            raise bad(f"unknown method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.sam_batch not in SAM_BATCHES:
            raise bad(f"unknown --sam-batch {self.sam_batch!r}: expected one of {', '.join(SAM_BATCHES)}")
        if self.sam_perturbation not in SAM_PERTURBATIONS:
            raise bad(f"unknown --sam-perturbation {self.sam_perturbation!r}: expected one of "
                      f"{', '.join(SAM_PERTURBATIONS)}")
        if self.method != "sast" and self.sam_perturbation != "global":
            raise bad(f"--sam-perturbation {self.sam_perturbation} needs --method sast "
                      f"(method {self.method!r} does no perturbation)")
        if self.optimizer not in OPTIMIZERS:
            raise bad(f"unknown optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if not (self.rho >= 0 and math.isfinite(self.rho)):
            raise bad(f"rho must be a finite number >= 0, got {self.rho}")
        if self.method != "sast" and self.rho != 0:
            raise bad(f"--rho {self.rho} needs --method sast (method {self.method!r} does no perturbation)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("batch_size", "epochs", "T", "log_every"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.clip) != self.clip or not 1 <= self.clip <= 255:
            raise bad(f"clip (X_inf) must be a whole number from 1 to 255 (frames are uint8), got {self.clip}")
        if self.limit is not None and self.limit * (1 - VALIDATION_FRACTION) < self.batch_size:
            raise bad(f"--limit {self.limit} leaves less than one training batch ({self.batch_size})")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise bad(f"--device {self.device}: CUDA is not available on this machine; use --device cpu")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise bad(f"unknown device {self.device!r}: expected cpu, cuda or cuda:N")

    @property
    def train_mode(self) -> str:
        """The spike mode of the training forward pass."""
        return "hfsb" if self.method == "hfsb" else "smooth"

    @property
    def native_mode(self) -> str:
        """The mode the method is meant to be evaluated in (for best.pt)."""
        return "hard" if self.method == "hfsb" else "smooth"

    def resolved_layers(self) -> list[str]:
        if self.layers:
            return list(self.layers)
        layers = DATASET_DEFAULTS.get(self.data, {}).get("layers")
        if not layers:
            raise ValueError(f"no default architecture for dataset {self.data!r}; pass --layers")
        return list(layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def for_data(cls, data: str, **settings: Any) -> "TrainConfig":
        """A configuration for ``data``: its DATASET_DEFAULTS, then ``settings`` (None means default)."""
        given = {k: v for k, v in settings.items() if v is not None}
        defaults = {k: v for k, v in DATASET_DEFAULTS.get(data, {}).items() if k != "layers"}
        return cls(data=data, **{**defaults, **given})

    def command(self, run_dir: str | Path | None = None) -> str:
        """The ``python -m sast.train`` command line that trains exactly this configuration."""
        import shlex

        flags: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in ("log_every",):
                continue
            if f.name == "layers":
                value = ",".join(self.resolved_layers())
            flags += [f"--{f.name.replace('_', '-')}", str(value)]
        if run_dir is not None:
            flags += ["--run-dir", str(run_dir)]
        return "python -m sast.train " + shlex.join(flags)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Split:
    """Frames (N, T, ...) as compact integers and labels (N,), kept on the CPU."""

    frames: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames[idx].to(device, torch.float32), self.labels[idx].to(device)


@dataclass
class Data:
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int


SPLITS = ("train", "val", "test")


def _validation_mask(sources: torch.Tensor) -> torch.Tensor:
    """Which samples of the training split are validation: a fixed fraction of its source recordings
    (all sensor passes of one source image go to the same side, so validation never sees a training image)."""
    unique = torch.unique(sources)
    perm = unique[torch.randperm(len(unique), generator=torch.Generator().manual_seed(VALIDATION_SEED))]
    n_val = max(1, int(round(VALIDATION_FRACTION * len(unique))))
    return torch.isin(sources, perm[:n_val])


def load_split(cfg: TrainConfig, split: str, progress: bool = True) -> Split:
    """The frames and labels of one split of ``cfg.data`` as the run sees it, binned as ``cfg`` says.

    ``split``: "train" (the training split less the validation part), "val" (that part)
    or "test". The same partition as :func:`load_data`.
    """
    from sast.data import frame_dataset

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    kw = dict(root=cfg.root, clip=cfg.clip, cache_dir=cfg.cache_dir, limit=cfg.limit, progress=progress)
    ds = frame_dataset(cfg.data, "test" if split == "test" else "train", cfg.T, **kw)
    if split == "test":
        return Split(ds.frames, ds.labels)
    is_val = _validation_mask(ds.sources)
    idx = torch.nonzero(is_val if split == "val" else ~is_val).flatten()
    return Split(ds.frames[idx], ds.labels[idx])


def load_data(cfg: TrainConfig, progress: bool = True) -> Data:
    """The training split (less a fixed validation part) and the test split of ``cfg.data``."""
    from sast.data import frame_dataset

    kw = dict(root=cfg.root, clip=cfg.clip, cache_dir=cfg.cache_dir, limit=cfg.limit, progress=progress)
    train = frame_dataset(cfg.data, "train", cfg.T, **kw)
    test = frame_dataset(cfg.data, "test", cfg.T, **kw)
    is_val = _validation_mask(train.sources)
    val_idx, train_idx = torch.nonzero(is_val).flatten(), torch.nonzero(~is_val).flatten()
    return Data(
        train=Split(train.frames[train_idx], train.labels[train_idx]),
        val=Split(train.frames[val_idx], train.labels[val_idx]),
        test=Split(test.frames, test.labels),
        input_shape=tuple(train.input_shape),
        num_classes=int(train.num_classes),
    )


def model_config(cfg: TrainConfig, data: Data) -> SNNConfig:
    return SNNConfig(
        input_shape=data.input_shape, layers=cfg.resolved_layers(), T=cfg.T, lam=cfg.lam, theta=cfg.theta,
        beta=cfg.beta, reset=cfg.reset, num_classes=data.num_classes, init_scale=cfg.init_scale,
    )


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

    def loss_fn(self, model, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x, mode=self.cfg.train_mode), y)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def evaluate_split(model: SNN, split: Split, device) -> dict[str, float]:
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


def _check_run_dir(run_dir: Path, ckpt_path: Path, resume: bool) -> None:
    if resume and not ckpt_path.exists():
        raise ValueError(f"--resume: {ckpt_path} does not exist; start without --resume")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")


def _load_data_once(cfg: TrainConfig, ctx: distributed.Context, progress: bool) -> Data:
    """The data on every rank: rank 0 first (it builds the frame cache once), then the others from the cache."""
    loaded: list[Data] = []
    ctx.on_main(lambda: loaded.append(load_data(cfg, progress)))
    return loaded[0] if loaded else load_data(cfg, progress=False)


def _read_resume(cfg: TrainConfig, ckpt_path: Path, run_dir: Path, world_size: int) -> dict[str, Any]:
    """The checkpoint to resume from, checked against ``cfg``; the log cut back to its step (rank 0's part)."""
    _, ckpt = checkpoint.load(ckpt_path)
    saved = TrainConfig.from_dict(ckpt["train_config"])
    if saved.to_dict() != cfg.to_dict():
        diff = sorted(k for k in cfg.to_dict() if cfg.to_dict()[k] != saved.to_dict().get(k))
        raise ValueError(f"--resume with different settings ({', '.join(diff)}) than {ckpt_path}")
    saved_world = int(ckpt.get("world_size", 1))
    if saved_world != world_size:
        if cfg.method == "sast" and cfg.sam_perturbation == "local":
            raise ValueError(f"--resume with --sam-perturbation local on {world_size} process(es), but {ckpt_path} was "
                             f"trained on {saved_world} (the perturbation batch b/world_size would change); resume "
                             f"with torchrun --nproc_per_node={saved_world}")
        distributed.note(f"note: {ckpt_path} was trained on {saved_world} process(es), resumed on {world_size}: the "
                         "run continues equal to the uninterrupted one up to float rounding, not bit for bit")
    MetricsLog.truncate_after(run_dir / "metrics.jsonl", ckpt["step"])
    last_eval = None
    if ckpt["epoch"] >= cfg.epochs:  # a finished run: nothing to do but report its last evaluation
        evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
        last_eval = evals[-1] if evals else None
    return {"ckpt": ckpt, "last_eval": last_eval}


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    progress: bool = True,
    data: Data | None = None,
) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir``; returns the final summary (also the last eval record).

    Under torchrun (module docstring) every rank returns the same summary; rank 0 alone
    writes ``run_dir`` and runs ``callbacks``.
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
    ckpt_path = run_dir / "ckpt.pt"
    ctx.on_main(lambda: _check_run_dir(run_dir, ckpt_path, resume))
    device = ctx.device(cfg.device)
    data = data if data is not None else _load_data_once(cfg, ctx, progress)
    torch.manual_seed(cfg.seed)
    model = SNN(model_config(cfg, data)).to(device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    gen_update = torch.Generator().manual_seed(cfg.seed * 2 + 1)
    gen_perturb = torch.Generator().manual_seed(cfg.seed * 2 + 2)
    start_epoch, step, grad_evals, best = 0, 0, 0, -1.0
    if resume:
        state = ctx.on_main(lambda: _read_resume(cfg, ckpt_path, run_dir, ctx.world_size))
        ckpt = state["ckpt"]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen_update.set_state(ckpt["rng"]["update"])
        gen_perturb.set_state(ckpt["rng"]["perturb"])
        start_epoch, step, grad_evals, best = ckpt["epoch"], ckpt["step"], ckpt["grad_evals"], ckpt["best"]
        if state["last_eval"] is not None:
            return state["last_eval"]
    else:
        def start_run_dir() -> None:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", {"train": cfg.to_dict(), "model": model.config.to_dict(),
                                                "command": ctx.launcher() + cfg.command(run_dir).removeprefix("python"),
                                                "environment": environment(), "device": str(device),
                                                "distributed": ctx.describe()})

        ctx.on_main(start_run_dir)
    replicated = ctx.wrap(model)  # DistributedDataParallel under torchrun; the model itself otherwise
    log = MetricsLog(run_dir / "metrics.jsonl") if ctx.is_main else distributed.NullLog()
    run = Run(cfg, run_dir, model, optimizer, data, log, step=step, epoch=start_epoch, grad_evals=grad_evals)
    n_batches = len(data.train) // cfg.batch_size
    bar = tqdm(total=cfg.epochs * n_batches, initial=start_epoch * n_batches, disable=not progress,
               desc=f"{cfg.method}{'' if cfg.method != 'sast' else f' rho={cfg.rho:g}'}", unit="step",
               file=sys.stderr, dynamic_ncols=True)
    record: dict[str, Any] = {}
    try:
        for cb in callbacks:
            cb.on_train_start(run)
        for epoch in range(start_epoch, cfg.epochs):
            run.epoch = epoch
            model.train()
            batches = _batches(len(data.train), cfg.batch_size, gen_update)
            if cfg.method == "sast" and cfg.sam_batch == "independent":
                perturb_batches = _batches(len(data.train), cfg.batch_size, gen_perturb)
            else:
                perturb_batches = batches
            t0 = time.perf_counter()
            window: list[float] = []
            for i in range(n_batches):
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
                for cb in callbacks:
                    cb.on_step_end(run, stats)
                bar.update(1)
                bar.set_postfix(loss=f"{stats.loss:.3f}", refresh=False)
            seconds = time.perf_counter() - t0

            def end_epoch() -> dict[str, Any]:  # rank 0: evaluation, checkpoints, callbacks
                nonlocal best
                model.eval()
                val = evaluate_split(model, data.val, device)
                test = evaluate_split(model, data.test, device)
                record = {"kind": "eval", "step": run.step, "epoch": epoch + 1, "seconds": seconds,
                          "grad_evals": run.grad_evals,
                          **{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()}}
                record["test_gap"] = record["test_smooth_acc"] - record["test_hard_acc"]
                log.log(record)
                bar.set_postfix(smooth=f"{test['smooth_acc']:.3f}", hard=f"{test['hard_acc']:.3f}", refresh=True)
                state = dict(train_config=cfg.to_dict(), optimizer=optimizer.state_dict(), epoch=epoch + 1,
                             step=run.step, grad_evals=run.grad_evals, world_size=ctx.world_size,
                             rng={"update": gen_update.get_state(), "perturb": gen_perturb.get_state()})
                score = val[f"{cfg.native_mode}_acc"]
                if score > best:
                    best = score
                    checkpoint.save(run_dir / "best.pt", model, best=best, **state)
                checkpoint.save(ckpt_path, model, best=best, **state)
                for cb in callbacks:
                    cb.on_epoch_end(run, record)
                return record

            record = ctx.on_main(end_epoch)  # the other ranks wait here, then go on with rank 0's record
        for cb in callbacks:
            cb.on_train_end(run)
    finally:
        bar.close()
        log.close()
    return record


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m sast.train",
        description="Train one spiking network with HFSB, SF or SAST and write a run folder "
        "(config.json, metrics.jsonl, ckpt.pt, best.pt).",
        epilog="Exit codes: 0 done, 2 bad input, 3 training diverged (NaN/inf loss; last good checkpoint kept).",
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
    p.add_argument("--epochs", type=int, default=d.epochs)
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
    p.add_argument("--cache-dir", default=None, help="frame cache folder (default $SAST_CACHE or ~/.cache/sast)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N samples of each split")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/DATA-METHOD[-rhoR]-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its ckpt.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--monitor", "--monitor-preset", dest="monitor", default="default", help="live theory checks "
                   "on a fixed probe set, logged to metrics.jsonl (checks.monitor presets): default (T6's probe every "
                   "50 steps, <= 5%% of the demo's time), full (all checks on schedules, ~2x the time), off; after "
                   "torchrun spell it --monitor-preset (torchrun reads --monitor as its ambiguous --monitor-interval)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    rho = args.rho if args.rho is not None else (0.3 if args.method == "sast" else 0.0)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else []
    return TrainConfig.for_data(
        args.data, method=args.method, rho=rho, sam_batch=args.sam_batch, sam_perturbation=args.sam_perturbation,
        optimizer=args.optimizer,
        lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, device=args.device,
        layers=layers, T=args.T, lam=args.lam, theta=args.theta, beta=args.beta, reset=args.reset,
        init_scale=args.init_scale, clip=args.clip, root=args.root, cache_dir=args.cache_dir, limit=args.limit,
    )


def monitor_callbacks(preset: str) -> list[Callback]:
    """The live checks monitor for ``preset`` ("off": none): :func:`apps.wiring.monitor_callbacks`.

    Kept here for the command lines that import it; the wiring itself is a composition
    root and lives in ``apps`` (imported lazily: sast never imports a higher layer at load).
    """
    from apps.wiring import monitor_callbacks as wire

    return wire(preset)


def default_run_dir(cfg: TrainConfig) -> Path:
    rho = f"-rho{cfg.rho:g}" if cfg.method == "sast" else ""
    return Path("runs") / f"{cfg.data}-{cfg.method}{rho}-s{cfg.seed}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_rank = distributed.env_rank() == 0  # under torchrun all ranks meet the same input errors: one prints
    try:
        cfg = config_from_args(args)
        cfg.validate()
        SNNConfig(input_shape=(1,), layers=["dense:1"], T=cfg.T, lam=cfg.lam, theta=cfg.theta, beta=cfg.beta,
                  reset=cfg.reset)  # neuron constants checked before any data is made
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
        summary = train(cfg, run_dir, callbacks=monitor_callbacks(args.monitor), resume=args.resume,
                        progress=not args.no_progress)
    except TrainingDiverged as e:
        code, error = 3, str(e)
    except (ValueError, checkpoint.CheckpointError, FileNotFoundError) as e:
        code, error = 2, str(e)
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


if __name__ == "__main__":
    raise SystemExit(main())
