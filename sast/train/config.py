"""The settings of a training run: :class:`TrainConfig`, the methods and the per-dataset defaults.

Methods (THEORY.md "The model"):
  hfsb  hard forward, surrogate backward (the conventional, biased gradient)
  sf    smooth forward: the exact gradient of the smooth (sigmoid-spike) model
  sast  SF trained with SAM (T6); the perturbation uses an independent minibatch
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sast.inference import resolve_device
from sast.sam import OPTIMIZERS, SAM_PERTURBATIONS

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
FLOAT32_SETTINGS = ("lr", "rho", "beta", "theta", "lam", "init_scale")
"""Float settings that reach float32 tensors: each must be finite there, not only in Python's float64."""
FLOAT32_MAX = torch.finfo(torch.float32).max
ADAM_BETA1 = 0.9  # torch.optim.Adam's default, which sast.sam.make_optimizer keeps: Adam's first step is lr/(1-beta1)


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
        for name in FLOAT32_SETTINGS:  # the model and the optimizer compute in float32
            value = getattr(self, name)
            if isinstance(value, (int, float)) and math.isfinite(value) and abs(value) > FLOAT32_MAX:
                raise bad(f"{name} = {value:g} overflows float32, in which training computes (largest "
                          f"{FLOAT32_MAX:.4g}); give a smaller {name}")
        if self.optimizer == "adam" and self.lr / (1 - ADAM_BETA1) > FLOAT32_MAX:
            raise bad(f"lr = {self.lr:g} with adam: its first step lr / (1 - beta1) = {self.lr / (1 - ADAM_BETA1):.4g} "
                      f"overflows float32 (largest {FLOAT32_MAX:.4g}); give a smaller lr")
        for name in ("batch_size", "epochs", "T", "log_every"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.clip) != self.clip or not 1 <= self.clip <= 255:
            raise bad(f"clip (X_inf) must be a whole number from 1 to 255 (frames are uint8), got {self.clip}")
        if self.limit is not None and self.limit * (1 - VALIDATION_FRACTION) < self.batch_size:
            raise bad(f"--limit {self.limit} leaves less than one training batch ({self.batch_size})")
        resolve_device(self.device)  # the one check of --device (ValueError, one line)

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
