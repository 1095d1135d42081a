"""nmnist and dvsgesture: the real recordings, read from files the user already has, in tonic's layout.

``root`` is the folder tonic calls ``save_to``; under it, the layouts that
tonic's ``NMNIST`` and ``DVSGesture`` datasets extract:

- N-MNIST (Orchard et al. 2015): ``root/NMNIST/Train/<digit>/<id>.bin`` and
  ``root/NMNIST/Test/...``, one folder per digit 0-9. A .bin file is a
  sequence of 5-byte events: byte 0 x, byte 1 y, then bit 7 of byte 2 the
  polarity and its other 23 bits (bytes 2-4, big-endian) the timestamp in
  microseconds; events with y == 240 mark a timestamp overflow (tonic's
  ``read_mnist_file``, which reads them, adds 2^13 to all later timestamps).
- DVS Gesture (Amir et al. 2017), tonic's preprocessed version:
  ``root/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy`` and
  ``ibmGestureTest/...``, one float or integer array (N, 4) per recording with
  columns x, y, p, t in milliseconds (tonic multiplies t by 1000), the file
  name being the label 0-10. This is tonic's split: 1077 training and 264
  test recordings (users 1-23 and 24-29; other toolkits, e.g. SpikingJelly,
  cut the original recordings into 1176 and 288).

Files are found here and read with tonic's low-level reader
(``tonic.io.read_mnist_file``) or numpy (.npy); tonic's dataset classes are
never constructed for reading, because they insist on the complete set and
download it otherwise. Any number of files may be present; nothing is
downloaded unless the caller passes ``download=True`` (``fetch``), which
constructs tonic's dataset class (it downloads what its own check finds
missing). tonic is imported only when needed (N-MNIST reading, downloads):
``import sast.data`` works without it.

Recordings are read from disk when indexed (``FileEvents``): the real sets do
not fit in memory as event arrays. Order: N-MNIST round-robin over the digits
(the k-th file of each digit, in name order, then the (k+1)-th), so the first
``limit`` recordings cover every class; DVS Gesture by user, session (folder
name) and label. ``sources`` is the file index for N-MNIST (one recording per
MNIST image) and the user for DVS Gesture (train/validation splits by it keep
a subject on one side); ``passes`` the session of the user (DVS Gesture).

The frame cache key includes ``READER_VERSION`` and ``split_signature``: the
resolved split folder and every file's relative path, size and modification
time, so adding, removing or rewriting a file never serves stale frames.

A recording that cannot be read or holds impossible values (a .npy whose header
claims more data than the file holds, pixels off the sensor, polarities other than
0/1 or -1/1, timestamps negative or beyond :data:`MAX_TIMESTAMP_US`) stops the run
with a one-line ValueError naming the file (exit 2 on the command line); it is never
skipped, since a skipped recording would silently change the split (its labels,
subjects and validation part) that the frame cache and every result stand for. Fix or
remove the file and run again. Every check happens before any arithmetic that could
overflow, and before any large allocation: a .npy header is checked against the
file's size before its data are read.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import overload

import numpy as np

from sast.data.events import EventSet, check_split, make_events

READER_VERSION = 1
"""Bumped whenever reading or ordering changes what a split's recordings are."""

TONIC_INSTALL = "pip install 'sast-toolkit[tonic]'"

NMNIST_NAME = "nmnist"
NMNIST_SENSOR_SIZE = (34, 34, 2)
NMNIST_NUM_CLASSES = 10
NMNIST_EVENT_BYTES = 5
"""One N-MNIST event: 8 bits x, 8 bits y, 1 bit polarity and 23 bits timestamp (tonic.io.read_mnist_file)."""
NMNIST_DURATION_US = 315_000
"""N-MNIST's window: three saccades of 105 ms (the boundaries tonic's ``stabilize`` uses)."""

DVSGESTURE_NAME = "dvsgesture"
DVSGESTURE_SENSOR_SIZE = (128, 128, 2)
DVSGESTURE_NUM_CLASSES = 11
DVSGESTURE_COLUMNS = ("x", "y", "p", "t_ms")
"""Columns of tonic's preprocessed .npy arrays (its DVSGesture.dtype ordering x, y, p, t)."""
US_PER_MS = 1000
MAX_TIMESTAMP_US = 2**40
"""The largest timestamp accepted (about 12.7 days; real recordings last seconds): binning computes
t * T in int64 (sast.data.events.time_bins), which cannot overflow below this for any T under 2**22."""
SIGNATURE_CHARS = 16  # 64 bits of SHA-256, as the cache's own key hash
_USER_FOLDER = re.compile(r"^user(\d+)_(.+)$")
_DIGIT_FOLDER = re.compile(r"^[0-9]$")
_LABEL_FILE = re.compile(r"^(\d+)\.npy$")
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive

_TONIC_NMNIST_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
"""The dtype we ask tonic's reader for (wide integers: we check ranges before narrowing)."""

_NO_ROOT = (
    "dataset {name!r} reads recordings you already have: pass root=<folder> (tonic's save_to, the folder "
    "that holds {top}/), or download=True with a root to fetch them with tonic"
)
_ROOT_NOT_A_FOLDER = "root {root} is not a folder; pass the folder that holds {top}/ (tonic's save_to)"
_MISSING_SPLIT = (
    "{name} {split}: no folder {path}; expected tonic's layout {layout} under root {root}; point root at the "
    "folder that holds {top}/, or pass download=True to fetch it"
)
_EMPTY_SPLIT = (
    "{name} {split}: {path} holds no recordings; expected {layout}; copy the files there or pass download=True"
)
_DOWNLOAD_FAILED = (
    "downloading {name} {split} failed: cannot reach {host} ({err}); run where {host} is reachable, or fetch the "
    "files by hand into {root}/{top}/ (tonic's layout)")
_NO_TONIC = "reading {what} needs tonic, which could not be imported ({err}); install it: " + TONIC_INSTALL


class DownloadFailed(ValueError):
    """tonic could not reach a dataset's download server (a ValueError: CLIs report it in one line, exit 2)."""


class TonicMissing(ImportError, ValueError):
    """tonic is needed and cannot be imported (an ImportError; also a ValueError, so CLIs report it in one line)."""


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _tonic(what: str) -> ModuleType:
    """The tonic package, imported now; a one-line TonicMissing naming the install command if it cannot be."""
    try:
        import tonic
        import tonic.io  # noqa: F401  (the readers)
    except ImportError as err:
        raise TonicMissing(_NO_TONIC.format(what=what, err=_one_line(err))) from err
    return tonic


# --- readers -------------------------------------------------------------------------------------


def read_nmnist_file(path: str | os.PathLike[str]) -> np.ndarray:
    """The events (EVENT_DTYPE) of one N-MNIST .bin file, read by ``tonic.io.read_mnist_file``.

    A one-line ValueError naming the file if its size is not a positive
    multiple of 5 bytes (truncated, or not an N-MNIST file) or a pixel lies
    outside the 34 x 34 sensor.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % NMNIST_EVENT_BYTES:
        raise ValueError(
            f"{path}: {size} bytes is not a positive whole number of {NMNIST_EVENT_BYTES}-byte N-MNIST events "
            "(truncated or not an N-MNIST .bin file); copy or extract it again"
        )
    tonic = _tonic("N-MNIST .bin files")
    raw = tonic.io.read_mnist_file(str(path), dtype=_TONIC_NMNIST_DTYPE)
    w, h, _ = NMNIST_SENSOR_SIZE
    if len(raw) and (raw["x"].max() >= w or raw["y"].max() >= h):
        raise ValueError(
            f"{path}: pixels up to x={raw['x'].max()}, y={raw['y'].max()} lie outside N-MNIST's {w}x{h} sensor; "
            "this is not an N-MNIST .bin file"
        )
    if len(raw) and (raw["t"].min() < 0 or raw["t"].max() > MAX_TIMESTAMP_US):
        raise ValueError(
            f"{path}: timestamps in [{raw['t'].min()}, {raw['t'].max()}] us lie outside [0, {MAX_TIMESTAMP_US}]; "
            "this is not an N-MNIST .bin file"
        )
    return make_events(raw["x"], raw["y"], raw["t"], raw["p"])


def read_dvsgesture_file(path: str | os.PathLike[str]) -> np.ndarray:
    """The events (EVENT_DTYPE, t in microseconds) of one of tonic's preprocessed DVS Gesture .npy files.

    The file holds an array (N >= 1, 4) of x, y, p, t (milliseconds), integer
    or floating; t is converted as tonic does (times 1000), rounded to whole
    microseconds. A one-line ValueError naming the file otherwise.
    """
    path = Path(path)
    expected = "an array (N, 4) of x, y, p, t[ms] (tonic's preprocessed DVS Gesture); extract it again"
    check_npy_size(path, expected)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy file ({_one_line(err)}); expected {expected}") from err
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise ValueError(f"{path} is an .npz archive, not one .npy array; expected {expected}")
    numeric = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    if arr.ndim != 2 or arr.shape[1] != len(DVSGESTURE_COLUMNS) or not numeric:
        raise ValueError(f"{path} holds an array of shape {arr.shape} and dtype {arr.dtype}; expected {expected}")
    if len(arr) == 0:
        raise ValueError(f"{path} holds no events; expected {expected}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path} holds NaN or infinite values; expected {expected}")
    x, y, p, t_ms = arr.T
    w, h, _ = DVSGESTURE_SENSOR_SIZE
    whole = np.all(x == np.round(x)) and np.all(y == np.round(y))
    if not whole or x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h:
        raise ValueError(
            f"{path}: pixels must be whole numbers inside the {w}x{h} sensor, got x in [{x.min()}, {x.max()}], "
            f"y in [{y.min()}, {y.max()}]; expected {expected}"
        )
    if not (np.isin(p, (0, 1)).all() or np.isin(p, (-1, 1)).all()):
        raise ValueError(
            f"{path}: polarities must be 0 or 1 (or -1 and 1), got values in [{p.min()}, {p.max()}]; "
            f"expected {expected}"
        )
    if t_ms.min() < 0:
        raise ValueError(f"{path}: negative timestamps ({t_ms.min()} ms); expected {expected}")
    if t_ms.max() > MAX_TIMESTAMP_US // US_PER_MS:  # checked before scaling: t * 1000 must not overflow int64
        raise ValueError(f"{path}: timestamps up to {t_ms.max():.6g} ms, beyond {MAX_TIMESTAMP_US // US_PER_MS} ms "
                         f"(about 12.7 days); expected {expected}")
    t_us = np.rint(t_ms.astype(np.float64) * US_PER_MS).astype(np.int64)
    return make_events(x.astype(np.int16), y.astype(np.int16), t_us, (p > 0).astype(np.int8))


def check_npy_size(path: Path, expected: str) -> None:
    """Check that a .npy file's header fits its size before any of its data are read (one-line ValueError).

    ``numpy.lib.format`` reads the header (shape, dtype) alone; the data must then take
    exactly ``prod(shape) * itemsize`` bytes after it. So a header that claims a huge
    array (numpy would try to allocate it) or a truncated file is refused by name.
    ``expected`` says what the file should hold. An .npz archive passes (np.load names it).
    """
    fmt = np.lib.format
    try:
        with path.open("rb") as f:
            if f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:
                return
            f.seek(0)
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):  # 3.0 differs only in the header's text encoding (UTF-8)
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
            offset, size = f.tell(), os.fstat(f.fileno()).st_size
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy file ({_one_line(err)}); expected {expected}") from None
    if dtype.hasobject:
        raise ValueError(f"{path} is not a readable .npy file (it holds Python objects, dtype {dtype}, which are "
                         f"never unpickled); expected {expected}")
    claimed = offset + math.prod(shape) * dtype.itemsize
    if claimed != size:
        raise ValueError(f"{path} is not a readable .npy file: its header claims an array of shape {shape} and "
                         f"dtype {dtype} ({claimed} bytes with the header) but the file has {size} bytes "
                         f"(truncated or damaged); expected {expected}")


# --- layouts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingFile:
    """One recording on disk: its path, label, source (see the module docstring) and session."""

    path: Path
    label: int
    source: int
    session: int


@dataclass(frozen=True)
class Layout:
    """Where a real dataset's files are under ``root`` and how to read them."""

    name: str
    top: str  # tonic's folder under save_to: its dataset class name
    split_folders: dict[str, str]
    layout: str  # for errors
    suffix: str  # of a recording file
    tonic_class: str
    read: Callable[[str | os.PathLike[str]], np.ndarray]
    list_files: Callable[[Path], list[RecordingFile]]  # the recordings in a split folder, in order

    def split_dir(self, split: str, root: str | os.PathLike[str] | None) -> Path:
        """``root/top/<split folder>``; one-line ValueErrors if root is missing or not a folder."""
        check_split(split)
        if root is None:
            raise ValueError(_NO_ROOT.format(name=self.name, top=self.top))
        base = Path(root).expanduser()
        if not base.is_dir():
            raise ValueError(_ROOT_NOT_A_FOLDER.format(root=base, top=self.top))
        return base / self.top / self.split_folders[split]


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _nmnist_files(folder: Path) -> list[RecordingFile]:
    labels: list[int] = []
    per_digit: list[list[Path]] = []
    for sub in _subfolders(folder):
        if not _DIGIT_FOLDER.match(sub.name):
            raise ValueError(
                f"unexpected folder {sub}: N-MNIST's {folder.name}/ holds one folder per digit, named 0 to 9; "
                "move it elsewhere"
            )
        labels.append(int(sub.name))
        per_digit.append(sorted(p for p in sub.iterdir() if p.suffix == ".bin" and p.is_file()))
    out: list[RecordingFile] = []
    for k in range(max((len(f) for f in per_digit), default=0)):  # round-robin over the digits
        for label, files in zip(labels, per_digit):
            if k < len(files):
                out.append(RecordingFile(files[k], label, len(out), 0))
    return out


def _dvsgesture_files(folder: Path) -> list[RecordingFile]:
    out: list[RecordingFile] = []
    sessions: dict[int, int] = {}
    for sub in _subfolders(folder):
        m = _USER_FOLDER.match(sub.name)
        if not m:
            raise ValueError(
                f"unexpected folder {sub}: DVS Gesture's {folder.name}/ holds folders named user<NN>_<lighting>; "
                "move it elsewhere"
            )
        user = int(m.group(1))
        session = sessions.setdefault(user, 0)
        sessions[user] += 1
        found = []
        for f in sub.iterdir():
            if f.suffix != ".npy" or not f.is_file():
                continue
            lm = _LABEL_FILE.match(f.name)
            if not lm or int(lm.group(1)) >= DVSGESTURE_NUM_CLASSES:
                raise ValueError(
                    f"unexpected file {f}: DVS Gesture recordings are named <label>.npy with label 0 to "
                    f"{DVSGESTURE_NUM_CLASSES - 1}; rename or move it"
                )
            found.append((int(lm.group(1)), f))
        out.extend(RecordingFile(f, label, user, session) for label, f in sorted(found))
    return out


NMNIST = Layout(
    name=NMNIST_NAME,
    top="NMNIST",
    split_folders={"train": "Train", "test": "Test"},
    layout="NMNIST/{Train,Test}/<digit 0-9>/<id>.bin",
    suffix=".bin",
    tonic_class="NMNIST",
    read=read_nmnist_file,
    list_files=_nmnist_files,
)
DVSGESTURE = Layout(
    name=DVSGESTURE_NAME,
    top="DVSGesture",
    split_folders={"train": "ibmGestureTrain", "test": "ibmGestureTest"},
    layout="DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label 0-10>.npy",
    suffix=".npy",
    tonic_class="DVSGesture",
    read=read_dvsgesture_file,
    list_files=_dvsgesture_files,
)
LAYOUTS = {NMNIST.name: NMNIST, DVSGESTURE.name: DVSGESTURE}


def split_files(layout: Layout, split: str, root: str | os.PathLike[str] | None) -> list[RecordingFile]:
    """The recordings of ``split`` present under ``root``, in the order of the module docstring.

    One-line ValueErrors naming the folder when root or the split folder is
    missing or holds no recordings.
    """
    folder = layout.split_dir(split, root)
    fmt = dict(name=layout.name, split=split, path=folder, layout=layout.layout, root=Path(root), top=layout.top)
    if not folder.is_dir():
        raise ValueError(_MISSING_SPLIT.format(**fmt))
    files = layout.list_files(folder)
    if not files:
        raise ValueError(_EMPTY_SPLIT.format(**fmt))
    return files


def split_signature(layout: Layout, split: str, root: str | os.PathLike[str] | None) -> str:
    """A hash of the split's files (resolved folder; each file's relative path, size, modification time).

    Part of the frame cache key: adding, removing or rewriting a file changes it.
    """
    files = split_files(layout, split, root)
    folder = layout.split_dir(split, root)
    digest = hashlib.sha256(f"{READER_VERSION}\n{folder.resolve()}\n".encode())
    for f in files:
        st = f.path.stat()
        digest.update(f"{f.path.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:SIGNATURE_CHARS]


class FileEvents(Sequence):
    """The event arrays of a list of files, each read (``layout.read``) when indexed; nothing kept in memory."""

    def __init__(self, files: Sequence[RecordingFile], read: Callable[[str | os.PathLike[str]], np.ndarray]) -> None:
        self.files = list(files)
        self.read = read

    def __len__(self) -> int:
        return len(self.files)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self.read(f.path) for f in self.files[i]]
        return self.read(self.files[i].path)


def read_split(
    layout: Layout,
    split: str,
    *,
    seed: int,
    root: str | os.PathLike[str] | None,
    limit: int | None,
    progress: bool,
) -> EventSet:
    """The recordings of ``split`` under ``root`` (the first ``limit``), read lazily; ``seed`` is unused."""
    del seed, progress  # recorded data; nothing is read until a recording is indexed
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (recordings) or None (all), got {limit!r}")
    files = split_files(layout, split, root)
    if limit is not None:
        files = files[: int(limit)]
    return EventSet(
        FileEvents(files, layout.read),  # type: ignore[arg-type]  (a lazy sequence of arrays)
        np.array([f.label for f in files], dtype=np.int64),
        sources=np.array([f.source for f in files], dtype=np.int64),
        passes=np.array([f.session for f in files], dtype=np.int64),
    )


def fetch(layout: Layout, split: str, root: str | os.PathLike[str] | None) -> None:
    """Download ``split`` into ``root`` with tonic's dataset class, unless files of it are already there.

    Called only when the user passes ``download=True``. A split folder that
    holds recordings is read as it is (its layout checked), never downloaded over.
    """
    check_split(split)
    if root is None:
        raise ValueError(_NO_ROOT.format(name=layout.name, top=layout.top))
    folder = Path(root).expanduser() / layout.top / layout.split_folders[split]
    if folder.is_dir() and any(folder.rglob(f"*{layout.suffix}")):
        split_files(layout, split, root)  # a one-line error if the layout is off
        return
    Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    tonic = _tonic(f"downloading {layout.name}")
    cls = getattr(tonic.datasets, layout.tonic_class)
    url = str(getattr(cls, f"{split}_url", ""))
    print(f"sast.data: downloading {layout.name} {split} into {root} with tonic from {url}", file=sys.stderr)
    try:
        cls(save_to=str(Path(root).expanduser()), train=split == "train")
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror) as err:
        host = urllib.parse.urlsplit(url).hostname or url or "its download server"
        raise DownloadFailed(_DOWNLOAD_FAILED.format(
            name=layout.name, split=split, host=host, err=_one_line(getattr(err, "reason", err)), top=layout.top,
            root=root)) from err


__all__ = [
    "DVSGESTURE",
    "DownloadFailed",
    "LAYOUTS",
    "NMNIST",
    "READER_VERSION",
    "FileEvents",
    "Layout",
    "RecordingFile",
    "TonicMissing",
    "fetch",
    "read_dvsgesture_file",
    "read_nmnist_file",
    "read_split",
    "split_files",
    "split_signature",
]
