"""On-disk cache of binned frames, keyed by everything that determines them.

A cache entry is one compressed ``.npz`` file holding ``frames`` (uint8,
(N, T, P, H, W)), ``labels`` and ``sources`` (int64, (N,)) and ``key`` (the
key as canonical JSON). Its file name carries the readable parts of the key
and a hash of all of it, so changing any field (dataset, split, T, clip,
downsample, duration, seed, limit, generator version, binning version, cache
format; for a dataset read from files the generator version carries the reader
version and a signature of the split's files) names another file and never serves stale frames; on loading, the
stored key is compared with the requested one as well. Files are written to a
temporary file in the same folder, flushed to disk, and renamed over the final
name (``os.replace``), so a reader never sees half a file and concurrent
writers of one entry leave one whole file.

The cache folder is, in order: the ``cache_dir`` argument, the environment
variable ``SAST_CACHE``, ``~/.cache/sast``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sast.data.events import BINNING_VERSION

CACHE_ENV = "SAST_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/sast"
CACHE_FORMAT_VERSION = 1
"""Bumped whenever the layout of a cache file changes."""
_HASH_CHARS = 16  # 64 bits of SHA-256: collisions among a user's few hundred entries are not a concern


@dataclass(frozen=True)
class FrameKey:
    """Everything that determines a set of cached frames."""

    dataset: str
    split: str
    T: int
    clip: int
    downsample: int
    duration: int | None
    seed: int
    limit: int | None
    generator_version: str
    binning_version: int = BINNING_VERSION
    format_version: int = CACHE_FORMAT_VERSION

    def to_json(self) -> str:
        """The key as canonical JSON (sorted keys, no spaces)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    def filename(self) -> str:
        """``DATASET-SPLIT-T..-clip..-ds..-HASH.npz``: readable, and unique to the whole key."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:_HASH_CHARS]
        return f"{self.dataset}-{self.split}-T{self.T}-clip{self.clip}-ds{self.downsample}-{digest}.npz"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$SAST_CACHE`` if set, else ``~/.cache/sast``."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def frame_cache_path(key: FrameKey, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the frames of ``key`` are (or would be) cached."""
    return cache_root(cache_dir) / "frames" / key.dataset / key.filename()


def load_frames(
    key: FrameKey, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Cached (frames uint8 (N, T, P, H, W), labels int64 (N,), sources int64 (N,)), or None if absent.

    An unreadable file, or one whose stored key differs from ``key``, counts
    as absent (a note goes to stderr) and is overwritten by the next save.
    """
    path = frame_cache_path(key, cache_dir)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key.to_json():
                print(f"sast.data: cache file {path} holds another key; rebuilding it", file=sys.stderr)
                return None
            frames, labels, sources = data["frames"], data["labels"], data["sources"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        print(f"sast.data: cache file {path} is unreadable ({err}); rebuilding it", file=sys.stderr)
        return None
    return torch.from_numpy(frames), torch.from_numpy(labels), torch.from_numpy(sources)


def save_frames(
    key: FrameKey,
    frames: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write frames (uint8), labels and sources for ``key`` atomically; returns the file's path."""
    if frames.dtype != np.uint8:
        raise ValueError(f"cached frames must be uint8 (clipped counts), got {frames.dtype}")
    path = frame_cache_path(key, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(
                f,
                frames=frames,
                labels=np.asarray(labels, dtype=np.int64),
                sources=np.asarray(sources, dtype=np.int64),
                key=np.array(key.to_json()),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
