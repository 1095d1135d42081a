"""Hostile data: damaged frame-cache entries are rebuilt, bad recordings are refused in one line naming them.

Cache entries: each damage is tested on ``frame_dataset`` itself (one line on stderr
naming the file, the entry rebuilt, the frames those of a clean build), and the real
command line is run once over two damaged entries. Real recordings: the command line
on a DVS Gesture folder whose .npy header claims 119 GiB, or whose timestamps reach
1e18 ms, exits 2 with one line naming the file: no MemoryError, no overflow warning,
no frames made of garbage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sast.data import frame_dataset
from sast.data.real import MAX_TIMESTAMP_US, read_dvsgesture_file

TINY = ["--limit", "64", "--layers", "dense:16", "--T", "8", "--batch-size", "32", "--no-progress",
        "--monitor", "off", "--epochs", "1"]
NAME, T, LIMIT = "synth-nmnist", 4, 12  # a cache entry of 12 samples: built in a fraction of a second


def one_line_error(res) -> str:
    """The stderr of a command that exited 2: one line, ``error: ...``, no traceback."""
    err = res.stderr.strip()
    assert res.code == 2, (res.code, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


# --- the frame cache ----------------------------------------------------------------------------------------


def _rewrite(path: Path, **arrays) -> None:
    """The entry at ``path`` with some arrays replaced (the stored key kept: it still claims to fit)."""
    with np.load(path, allow_pickle=False) as data:
        content = {k: data[k] for k in data.files}
    content.update(arrays)
    with path.open("wb") as f:
        np.savez_compressed(f, **content)


def _frames(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return data["frames"]


def _labels(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return data["labels"]


DAMAGES = {
    "zero-bytes": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "a-folder-in-its-place": lambda p: (p.unlink(), p.mkdir(), (p / "x").write_text("junk")),
    "labels-shifted-by-50": lambda p: _rewrite(p, labels=_labels(p) + 50),
    "fewer-frames-than-labels": lambda p: _rewrite(p, frames=_frames(p)[:-1]),
    "float-frames-scaled-by-1e6": lambda p: _rewrite(p, frames=_frames(p).astype(np.float64) * 1e6),
    "counts-above-the-clip": lambda p: _rewrite(p, frames=_frames(p) * 7),
    "a-pickle-instead": lambda p: p.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_cache_entry_is_reported_and_rebuilt(tmp_path, capsys, damage):
    clean = frame_dataset(NAME, "test", T, cache_dir=tmp_path, limit=LIMIT, progress=False)
    want_frames, want_labels, path = clean.frames.clone(), clean.labels.clone(), clean.cache_path
    DAMAGES[damage](path)
    capsys.readouterr()
    again = frame_dataset(NAME, "test", T, cache_dir=tmp_path, limit=LIMIT, progress=False)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and err.endswith("rebuilding it"), err
    assert again.frames.equal(want_frames) and again.labels.equal(want_labels)
    assert path.is_file()  # rebuilt: the next load serves it without a word
    third = frame_dataset(NAME, "test", T, cache_dir=tmp_path, limit=LIMIT, progress=False)
    assert capsys.readouterr().err == "" and third.frames.equal(want_frames)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_a_file_in_place_of_the_cache_folder_is_one_line_naming_it(tmp_path, cli, blocker):
    err = one_line_error(cli("sast.train", *TINY, "--cache-dir", blocker, "--run-dir", tmp_path / "run"))
    assert f"frame cache folder {blocker}" in err and "--cache-dir" in err, err
    assert blocker.read_text() == "a plain text file\n"


def test_the_command_line_rebuilds_damaged_entries_and_trains(tmp_path, cli):
    cache = tmp_path / "cache"
    entries = {split: frame_dataset(NAME, split, 8, cache_dir=cache, limit=64, progress=False).cache_path
               for split in ("train", "test")}  # exactly the entries the command line below reads
    entries["train"].write_bytes(b"")
    entries["test"].unlink()
    entries["test"].mkdir()
    res = cli("sast.train", *TINY, "--cache-dir", cache, "--run-dir", tmp_path / "run")
    assert res.code == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    for split, path in entries.items():
        assert f"cache file {path}" in res.stderr and path.is_file(), (split, res.stderr)
    assert (tmp_path / "run" / "ckpt.pt").is_file()


# --- real recordings ----------------------------------------------------------------------------------------


def _gesture_root(root: Path) -> Path:
    """A DVS Gesture folder in tonic's layout: two good training recordings and one test recording."""
    rng = np.random.default_rng(0)
    for split, user, label in [("ibmGestureTrain", "user01_led", 0), ("ibmGestureTrain", "user02_led", 1),
                               ("ibmGestureTest", "user24_led", 2)]:
        folder = root / "DVSGesture" / split / user
        folder.mkdir(parents=True)
        n = 200
        events = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                           np.sort(rng.integers(0, 6000, n))], axis=1).astype(np.float64)
        np.save(folder / f"{label}.npy", events)
    return root / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "0.npy"


def _huge_header(path: Path) -> None:
    """A .npy whose header claims (4e9, 4) float64 (119 GiB) while the file holds a few bytes of data."""
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (4_000_000_000, 4)})
        f.write(np.zeros(8, np.float64).tobytes())


def _far_timestamp(path: Path) -> None:
    events = np.load(path)
    events[-1, 3] = 1e18  # milliseconds: 1e21 us overflows int64
    np.save(path, events)


@pytest.mark.parametrize("damage, match", [(_huge_header, "header claims an array of shape (4000000000, 4)"),
                                           (_far_timestamp, "timestamps up to 1e+18 ms")],
                         ids=["header-claims-119-GiB", "timestamp-1e18"])
def test_a_bad_gesture_recording_stops_the_run_in_one_line_naming_it(tmp_path, cli, damage, match):
    bad = _gesture_root(tmp_path / "data")
    damage(bad)
    res = cli("sast.train", "--data", "dvsgesture", "--root", tmp_path / "data", "--layers", "dense:16", "--T", "8",
              "--batch-size", "2", "--epochs", "1", "--no-progress", "--monitor", "off", "--run-dir", tmp_path / "run",
              "--cache-dir", tmp_path / "cache")
    err = one_line_error(res)
    assert str(bad) in err and match in err, err
    assert "MemoryError" not in err and "overflow" not in err.lower(), err
    assert not list((tmp_path / "cache").rglob("*.npz"))  # no frames were made of it


def test_npy_header_and_value_checks_come_before_reading(tmp_path):
    path = tmp_path / "3.npy"
    np.save(path, np.array([[1, 2, 1, 5], [3, 4, -1, 7]], dtype=np.int64))  # polarities -1 and 1: accepted
    assert read_dvsgesture_file(path)["p"].tolist() == [1, 0]
    np.save(path, np.array([[1, 2, 1, 5]], dtype=np.int64))
    path.write_bytes(path.read_bytes() + b"\0" * 8)  # more bytes than the header claims
    with pytest.raises(ValueError, match="header claims") as err:
        read_dvsgesture_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    edge = MAX_TIMESTAMP_US // 1000
    np.save(path, np.array([[1, 2, 1, edge]], dtype=np.int64))  # the largest timestamp accepted
    assert read_dvsgesture_file(path)["t"].tolist() == [edge * 1000]
    np.save(path, np.array([[1, 2, 1, edge + 1]], dtype=np.int64))
    with pytest.raises(ValueError, match="timestamps up to"):
        read_dvsgesture_file(path)
