"""On-disk cache of binned frames, keyed by everything that determines them.

A cache entry is one compressed ``.npz`` file holding ``frames`` (uint8,
(N, T, P, H, W)), ``labels`` and ``sources`` (int64, (N,)) and ``key`` (the
key as canonical JSON). Its file name carries the readable parts of the key
and a hash of all of it, so changing any field (dataset, split, T, clip,
downsample, duration, seed, limit, generator version, binning version, cache
format; for a dataset read from files the generator version carries the reader
version and a signature of the split's files) names another file and never serves stale frames; on loading, the
stored key is compared with the requested one, and the arrays are checked against
it (dtype, shape, value and label ranges, counts: :func:`entry_problem`): an entry
that is unreadable or does not fit is reported in one line and rebuilt, never used
as it is. Files are written to a temporary file in the same folder, flushed to disk,
and renamed over the final name (``os.replace``), so a reader never sees half a file
and concurrent writers of one entry leave one whole file.

The cache folder is, in order: the ``cache_dir`` argument, the environment
variable ``SAST_CACHE``, ``~/.cache/sast``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runfolder import atomic_write_bytes
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
    key: FrameKey,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    frame_shape: tuple[int, int, int, int] | None = None,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Cached (frames uint8 (N, T, P, H, W), labels int64 (N,), sources int64 (N,)), or None if absent.

    An entry is served only if it holds what ``key`` asks for (:func:`entry_problem`):
    its stored key, frames of dtype uint8 and shape (N, *frame_shape) (T = key.T when
    ``frame_shape`` is None) with values in [0, key.clip], N labels in
    [0, num_classes), N sources >= 0, N <= key.limit. Anything else (an unreadable,
    empty or truncated file, a folder in the file's place, contents that do not fit)
    counts as absent: one line on stderr names the file and what is wrong with it, the
    thing in the way is removed, and the caller rebuilds the entry (written atomically
    by :func:`save_frames`). A cache folder that cannot be read at all raises a one-line
    ValueError naming it.
    """
    path = frame_cache_path(key, cache_dir)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        where = path.parent
        while not os.path.exists(where) and where != where.parent:
            where = where.parent
        what = f"a file stands at {where}" if isinstance(err, NotADirectoryError) else f"{err.strerror}: {where}"
        raise ValueError(
            f"the frame cache folder {cache_root(cache_dir)} cannot be used ({what}); pass --cache-dir (or set "
            f"{CACHE_ENV}) to a folder this process can read and write"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        _rebuilding(path, "is not a regular file (a folder or another file type stands in its place)")
        _remove_in_the_way(path)
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key.to_json():
                _rebuilding(path, "holds another key")
                return None
            frames, labels, sources = data["frames"], data["labels"], data["sources"]
    except Exception as err:  # any failure to read it (EOFError, BadZipFile, zlib, pickle refused, ...) means rebuild
        _rebuilding(path, f"is unreadable ({type(err).__name__}: {_one_line(err)})")
        return None
    problem = entry_problem(key, frames, labels, sources, frame_shape=frame_shape, num_classes=num_classes)
    if problem is not None:
        _rebuilding(path, f"does not hold what its key asks for ({problem})")
        return None
    return torch.from_numpy(frames), torch.from_numpy(labels), torch.from_numpy(sources)


def entry_problem(
    key: FrameKey,
    frames: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    *,
    frame_shape: tuple[int, int, int, int] | None = None,
    num_classes: int | None = None,
) -> str | None:
    """What is wrong with a cache entry's arrays for ``key`` (see :func:`load_frames`), or None if nothing."""
    if frames.dtype != np.uint8 or frames.ndim != 5:
        return f"frames of dtype {frames.dtype} and shape {frames.shape}, expected uint8 (N, T, P, H, W)"
    want = tuple(frame_shape) if frame_shape is not None else (key.T,) + frames.shape[2:]
    if frames.shape[1:] != want:
        return f"frames of shape {frames.shape[1:]} per sample, expected {want}"
    n = frames.shape[0]
    for name, arr in (("labels", labels), ("sources", sources)):
        if arr.dtype != np.int64 or arr.shape != (n,):
            return f"{name} of dtype {arr.dtype} and shape {arr.shape} for {n} frames, expected int64 ({n},)"
    if key.limit is not None and n > key.limit:
        return f"{n} samples, more than the key's limit {key.limit}"
    if n == 0:
        return None
    if int(frames.max()) > key.clip:
        return f"frame values up to {int(frames.max())}, above the key's clip {key.clip}"
    if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
        top = "" if num_classes is None else f" to {num_classes - 1}"
        return f"labels in [{labels.min()}, {labels.max()}], expected 0{top}"
    if sources.min() < 0:
        return f"negative sources ({sources.min()})"
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def _rebuilding(path: Path, why: str) -> None:
    print(f"sast.data: cache file {path} {why}; rebuilding it", file=sys.stderr)


def _remove_in_the_way(path: Path) -> None:
    """Remove what stands at a cache file's path (a folder of that name is junk inside the cache)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def save_frames(
    key: FrameKey,
    frames: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write frames (uint8), labels and sources for ``key`` atomically; returns the file's path.

    Whatever stands at the path is replaced (a folder of that name is removed first).
    The file gets the umask's mode (:func:`runfolder.atomic_write_bytes`); an OSError
    names the file.
    """
    if frames.dtype != np.uint8:
        raise ValueError(f"cached frames must be uint8 (clipped counts), got {frames.dtype}")
    path = frame_cache_path(key, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        _remove_in_the_way(path)

    def write(f) -> None:
        np.savez_compressed(
            f,
            frames=frames,
            labels=np.asarray(labels, dtype=np.int64),
            sources=np.asarray(sources, dtype=np.int64),
            key=np.array(key.to_json()),
        )

    atomic_write_bytes(path, write)
    return path
