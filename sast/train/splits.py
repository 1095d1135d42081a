"""The data a run sees: the training split less a fixed validation part, the validation part, the test split.

The validation part is a fixed fraction (:data:`~sast.train.config.VALIDATION_FRACTION`)
of the training split's source recordings, drawn with a fixed seed, so every method and
seed shares one validation set and validation never sees a training image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sast.model import SNNConfig
from sast.train.config import VALIDATION_FRACTION, VALIDATION_SEED, TrainConfig

if TYPE_CHECKING:
    from sast.data.registry import FrameDataset


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
    """The three splits of a run and what the model needs to know of them."""

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


def _frames(cfg: TrainConfig, split: str, progress: bool) -> "FrameDataset":
    """The "train" or "test" split of ``cfg.data`` as frames, binned as ``cfg`` says."""
    from sast.data import frame_dataset

    return frame_dataset(cfg.data, split, cfg.T, root=cfg.root, clip=cfg.clip, cache_dir=cfg.cache_dir,
                         limit=cfg.limit, progress=progress)


def _subset(ds: "FrameDataset", mask: torch.Tensor) -> Split:
    idx = torch.nonzero(mask).flatten()
    return Split(ds.frames[idx], ds.labels[idx])


def load_split(cfg: TrainConfig, split: str, progress: bool = True) -> Split:
    """The frames and labels of one split of ``cfg.data`` as the run sees it, binned as ``cfg`` says.

    ``split``: "train" (the training split less the validation part), "val" (that part)
    or "test". The same partition as :func:`load_data`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if split == "test":
        ds = _frames(cfg, "test", progress)
        return Split(ds.frames, ds.labels)
    ds = _frames(cfg, "train", progress)
    is_val = _validation_mask(ds.sources)
    return _subset(ds, is_val if split == "val" else ~is_val)


def load_data(cfg: TrainConfig, progress: bool = True) -> Data:
    """The training split (less a fixed validation part) and the test split of ``cfg.data``."""
    train = _frames(cfg, "train", progress)
    test = _frames(cfg, "test", progress)
    is_val = _validation_mask(train.sources)
    return Data(
        train=_subset(train, ~is_val),
        val=_subset(train, is_val),
        test=Split(test.frames, test.labels),
        input_shape=tuple(train.input_shape),
        num_classes=int(train.num_classes),
    )


def model_config(cfg: TrainConfig, data: Data) -> SNNConfig:
    """The model that ``cfg`` trains on ``data``."""
    return SNNConfig(
        input_shape=data.input_shape, layers=cfg.resolved_layers(), T=cfg.T, lam=cfg.lam, theta=cfg.theta,
        beta=cfg.beta, reset=cfg.reset, num_classes=data.num_classes, init_scale=cfg.init_scale,
    )
