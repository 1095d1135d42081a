"""Dataset names, what each one is, and the two ways to load one: as events or as frames.

``DATASETS`` maps a name to a ``DatasetSpec``: plain, immutable facts (sensor
size, classes, default T, how to produce its events) and no live objects;
loading builds a fresh ``EventSet`` or ``FrameDataset`` on every call, with
frames served from the on-disk cache (``sast.data.cache``) when present.

Synthetic sets (synth-nmnist, synth-gesture) are generated; real ones (nmnist,
dvsgesture, ``sast.data.real``) are read from files under ``root`` and are
downloaded only when the caller passes ``download=True``.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from sast.data import real, synth_gesture, synth_nmnist
from sast.data.cache import FrameKey, frame_cache_path, load_frames, save_frames
from sast.data.events import DEFAULT_CLIP, EventSet, check_clip, check_split, downsampled_size, to_frames

DATASET_DURATION = "dataset"
"""``frame_dataset(duration=DATASET_DURATION)``: bin over the dataset's nominal recording window."""


class EventsFn(Protocol):
    """Produces the event recordings of one split of a dataset."""

    def __call__(
        self, split: str, *, seed: int, root: str | os.PathLike[str] | None, limit: int | None, progress: bool
    ) -> EventSet: ...


class SignatureFn(Protocol):
    """A signature of the files a split is read from (part of the frame cache key)."""

    def __call__(self, split: str, root: str | os.PathLike[str] | None) -> str: ...


class FetchFn(Protocol):
    """Downloads a split's files into ``root`` unless they are there (called only with download=True)."""

    def __call__(self, split: str, root: str | os.PathLike[str] | None) -> None: ...


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset name stands for.

    ``duration_us`` is the nominal recording window [0, duration_us) that
    frames are binned over by default (None: bin each recording's own event
    range, as tonic); ``version`` names the generator or reader, and is part
    of the frame cache key. Datasets read from files also have ``signature``
    (its value joins ``version`` in the cache key, so new or changed files
    never serve stale frames) and ``fetch`` (what ``download=True`` runs).
    """

    name: str
    description: str
    sensor_size: tuple[int, int, int]  # (W, H, P), as tonic
    num_classes: int
    default_T: int
    default_downsample: int
    duration_us: int | None
    version: str
    events: EventsFn
    signature: SignatureFn | None = None
    fetch: FetchFn | None = None


def _synth_nmnist_events(
    split: str, *, seed: int, root: str | os.PathLike[str] | None, limit: int | None, progress: bool
) -> EventSet:
    del root  # synthetic: nothing to read
    return synth_nmnist.generate(split, seed, limit=limit, progress=progress)


def _synth_gesture_events(
    split: str, *, seed: int, root: str | os.PathLike[str] | None, limit: int | None, progress: bool
) -> EventSet:
    del root  # synthetic: nothing to read
    return synth_gesture.generate(split, seed, limit=limit, progress=progress)


DATASETS: dict[str, DatasetSpec] = {
    synth_nmnist.NAME: DatasetSpec(
        name=synth_nmnist.NAME,
        description="scikit-learn digits seen by a simulated DVS during three saccades (embedded, no download)",
        sensor_size=synth_nmnist.SENSOR_SIZE,
        num_classes=synth_nmnist.NUM_CLASSES,
        default_T=20,  # 15 ms bins over the 300 ms recording
        default_downsample=1,
        duration_us=synth_nmnist.RECORDING_DURATION_US,
        version=f"synth-nmnist-{synth_nmnist.GENERATOR_VERSION}",
        events=_synth_nmnist_events,
    ),
    synth_gesture.NAME: DatasetSpec(
        name=synth_gesture.NAME,
        description="11 parametric arm and hand motions by 29 simulated subjects seen by a simulated DVS "
        "(embedded, no download; split by subject)",
        sensor_size=synth_gesture.SENSOR_SIZE,
        num_classes=synth_gesture.NUM_CLASSES,
        default_T=20,  # 50 ms bins over the 1 s recording
        default_downsample=4,  # 128x128 -> 32x32, as DVS Gesture is usually binned
        duration_us=synth_gesture.RECORDING_DURATION_US,
        version=f"synth-gesture-{synth_gesture.GENERATOR_VERSION}",
        events=_synth_gesture_events,
    ),
    real.NMNIST_NAME: DatasetSpec(
        name=real.NMNIST_NAME,
        description="N-MNIST recordings read with tonic from root/NMNIST/{Train,Test}/<digit>/*.bin "
        "(downloaded only with download=True)",
        sensor_size=real.NMNIST_SENSOR_SIZE,
        num_classes=real.NMNIST_NUM_CLASSES,
        default_T=20,  # 15.75 ms bins over the three saccades
        default_downsample=1,
        duration_us=real.NMNIST_DURATION_US,
        version=f"nmnist-reader-{real.READER_VERSION}",
        events=functools.partial(real.read_split, real.NMNIST),
        signature=functools.partial(real.split_signature, real.NMNIST),
        fetch=functools.partial(real.fetch, real.NMNIST),
    ),
    real.DVSGESTURE_NAME: DatasetSpec(
        name=real.DVSGESTURE_NAME,
        description="DVS Gesture, tonic's preprocessed split (1077 train / 264 test), read from "
        "root/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label>.npy "
        "(downloaded only with download=True)",
        sensor_size=real.DVSGESTURE_SENSOR_SIZE,
        num_classes=real.DVSGESTURE_NUM_CLASSES,
        default_T=20,
        default_downsample=4,  # 128x128 -> 32x32
        duration_us=None,  # recordings last ~6 s but vary: bin each one's event range, as tonic
        version=f"dvsgesture-reader-{real.READER_VERSION}",
        events=functools.partial(real.read_split, real.DVSGESTURE),
        signature=functools.partial(real.split_signature, real.DVSGESTURE),
        fetch=functools.partial(real.fetch, real.DVSGESTURE),
    ),
}

PLANNED: tuple[str, ...] = ()
"""Names reserved for datasets not implemented yet (named in errors, not loadable); none at present."""


def dataset_names() -> list[str]:
    """The names ``event_dataset`` and ``frame_dataset`` accept."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a one-line ValueError naming the known ones and the closest match."""
    if name in DATASETS:
        return DATASETS[name]
    known = ", ".join(dataset_names())
    if name in PLANNED:
        raise ValueError(f"dataset {name!r} is planned but not implemented yet; available: {known}")
    close = difflib.get_close_matches(str(name), list(DATASETS) + list(PLANNED), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}; known: {known}{hint}")


DOWNLOAD_HELP = ("fetch the real data set (nmnist, dvsgesture) into --root with tonic first, unless its files are "
                 "there already (needs tonic: pip install 'sast-toolkit[tonic]'); without this flag nothing is ever "
                 "downloaded")
"""The ``--download`` flag's help, the same on every command that has it."""


def download(name: str, splits: Sequence[str], root: str | os.PathLike[str] | None) -> None:
    """Fetch the ``splits`` of real dataset ``name`` into ``root`` with tonic, unless they are there.

    What a command line's ``--download`` runs before it reads anything. One-line ValueErrors: a
    synthetic dataset (generated, nothing to download), no ``root``, tonic missing
    (``real.TonicMissing``), or a download server out of reach (``real.DownloadFailed``, naming its
    host).
    """
    spec = get_spec(name)
    if spec.fetch is None:
        real_ones = ", ".join(n for n in dataset_names() if DATASETS[n].fetch is not None)
        raise ValueError(f"--download: dataset {name!r} is generated, not downloaded; it applies to {real_ones}")
    for split in splits:
        check_split(split)
        spec.fetch(split, root)


def event_dataset(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    download: bool = False,
) -> EventSet:
    """The recordings of ``split`` of dataset ``name``: a sequence of ``(events, label)``.

    ``root`` is the folder of a real dataset (tonic's ``save_to``; ignored by
    synthetic ones), whose recordings are read from disk when indexed;
    ``seed`` the generation seed of a synthetic one; ``limit`` keeps the first
    ``limit`` recordings (samples; quick runs, tests), and a synthetic set
    generates only those. ``download=True`` lets a real dataset whose split
    is missing under ``root`` be downloaded (with tonic); nothing is ever
    downloaded otherwise.
    """
    spec = get_spec(name)
    check_split(split)
    if download and spec.fetch is not None:
        spec.fetch(split, root)
    return spec.events(split, seed=seed, root=root, limit=limit, progress=progress)


class FrameDataset(Sequence):
    """Binned frames of one split: a sequence of ``(frames float32 (T, P, H, W), label int)``.

    For batches, index the tensors directly: ``frames`` (uint8, (N, T, P, H, W),
    clipped counts in [0, clip]) and ``labels`` (int64, (N,)), e.g.
    ``ds.frames[idx].float()``. ``sources[i]`` is the source item of sample i
    (the image for synth-nmnist, the file for nmnist, the subject for the
    gesture sets): recordings of one source share it, so split
    train/validation by it.
    """

    def __init__(
        self,
        frames: torch.Tensor,
        labels: torch.Tensor,
        sources: torch.Tensor,
        *,
        spec: DatasetSpec,
        split: str,
        clip: int,
        cache_path: Path | None = None,
    ) -> None:
        self.frames = frames
        self.labels = labels
        self.sources = sources
        self.name = spec.name
        self.split = split
        self.num_classes = spec.num_classes
        self.clip = clip
        self.T = int(frames.shape[1])
        self.input_shape: tuple[int, int, int] = tuple(int(s) for s in frames.shape[2:])  # (P, H, W)
        self.cache_path = cache_path

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.frames[i].to(torch.float32), int(self.labels[i])

    def __repr__(self) -> str:
        return (
            f"FrameDataset({self.name!r}, split={self.split!r}, n={len(self)}, T={self.T}, "
            f"input_shape={self.input_shape}, clip={self.clip})"
        )


def frame_dataset(
    name: str,
    split: str,
    T: int | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    clip: float | int = DEFAULT_CLIP,
    downsample: int | None = None,
    duration: int | str | None = DATASET_DURATION,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    download: bool = False,
) -> FrameDataset:
    """Frames of ``split`` of dataset ``name``, binned by ``sast.data.events.to_frames``, cached on disk.

    ``T`` defaults to the dataset's ``default_T``, ``downsample`` to its
    ``default_downsample``. ``duration``: ``"dataset"`` bins over the
    dataset's nominal window [0, duration_us) (its event range when it has
    none), None over each recording's event range (tonic's convention), a
    whole number of microseconds over [0, duration). ``clip`` is X_inf, a
    whole number from 1 to 255. ``seed`` and ``limit`` (the first ``limit``
    samples), ``root`` and ``download`` as in ``event_dataset``. See
    ``sast.data.cache`` for the cache folder and key; for a real dataset the
    key includes a signature of the split's files (``DatasetSpec.signature``).
    """
    spec = get_spec(name)
    check_split(split)
    T = spec.default_T if T is None else T
    if isinstance(T, bool) or int(T) != T or T < 1:
        raise ValueError(f"T (number of time bins) must be a whole number >= 1, got {T!r}")
    clip_int = check_clip(clip)
    if clip_int is None:
        raise ValueError("frame_dataset needs a clip (X_inf) from 1 to 255 (frames are stored as uint8); got None")
    ds = spec.default_downsample if downsample is None else downsample
    w, h, p = downsampled_size(spec.sensor_size, ds)
    if duration == DATASET_DURATION:
        duration = spec.duration_us
    elif isinstance(duration, str) or (duration is not None and (int(duration) != duration or duration < 1)):
        raise ValueError(
            f"duration must be {DATASET_DURATION!r}, None (event range) or a whole number of microseconds >= 1; "
            f"got {duration!r}"
        )
    if download and spec.fetch is not None:
        spec.fetch(split, root)
    version = spec.version if spec.signature is None else f"{spec.version}+files-{spec.signature(split, root)}"
    key = FrameKey(
        dataset=spec.name,
        split=split,
        T=int(T),
        clip=clip_int,
        downsample=int(ds),
        duration=None if duration is None else int(duration),
        seed=int(seed),
        limit=None if limit is None else int(limit),
        generator_version=version,
    )
    path = frame_cache_path(key, cache_dir)
    cached = load_frames(key, cache_dir, frame_shape=(key.T, p, h, w), num_classes=spec.num_classes)
    if cached is not None:
        return FrameDataset(*cached, spec=spec, split=split, clip=clip_int, cache_path=path)

    events = event_dataset(name, split, root, seed=seed, limit=limit, progress=progress)
    frames = np.empty((len(events), key.T, p, h, w), dtype=np.uint8)
    for i in tqdm(range(len(events)), desc=f"{name} {split}: binning T={key.T}", unit="rec",
                  file=sys.stderr, disable=not progress):
        frames[i] = to_frames(events.events[i], spec.sensor_size, key.T, clip_int, key.downsample, key.duration)
    path = save_frames(key, frames, events.labels, events.sources, cache_dir)
    return FrameDataset(
        torch.from_numpy(frames), torch.from_numpy(events.labels), torch.from_numpy(events.sources),
        spec=spec, split=split, clip=clip_int, cache_path=path,
    )
