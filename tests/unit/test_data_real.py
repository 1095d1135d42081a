"""nmnist and dvsgesture read from tiny folders written here in each dataset's on-disk format; never the network."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import sast.data.registry as registry
from sast.data import DATASETS, EVENT_DTYPE, event_dataset, frame_dataset, get_spec, to_frames
from sast.data import real


def _tonic_importable() -> bool:
    try:
        importlib.import_module("tonic.io")
    except ImportError:
        return False
    return True


HAVE_TONIC = _tonic_importable()
needs_tonic = pytest.mark.skipif(
    not HAVE_TONIC, reason="tonic is not installed (pip install 'sast-toolkit[tonic]'): N-MNIST is read with tonic.io"
)


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here fails if anything tries to reach the network."""

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Counts the times frame_dataset has to read the recordings (a cache miss)."""
    calls: list[tuple] = []
    original = registry.event_dataset

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "event_dataset", counting)
    return calls


# --- writers of the on-disk formats -------------------------------------------------------------


def random_events(rng: np.random.Generator, n: int, size: int, t_max_us: int) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, size, n), rng.integers(0, size, n)
    ev["t"] = np.sort(rng.integers(0, t_max_us, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def nmnist_bytes(ev: np.ndarray) -> bytes:
    """N-MNIST's 40-bit events: x (8 bits), y (8 bits), polarity (1 bit) and timestamp (23 bits), big-endian."""
    t = ev["t"].astype(np.int64)
    assert t.max(initial=0) < 2**23  # no overflow events needed below 8.4 s
    raw = np.zeros((len(ev), 5), dtype=np.uint8)
    raw[:, 0] = ev["x"]
    raw[:, 1] = ev["y"]
    raw[:, 2] = (ev["p"].astype(np.int64) << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist(root: Path, split: str, digit: int, name: str, ev: np.ndarray) -> Path:
    folder = root / "NMNIST" / {"train": "Train", "test": "Test"}[split] / str(digit)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.bin"
    path.write_bytes(nmnist_bytes(ev))
    return path


def write_gesture(root: Path, split: str, session: str, label: int, ev: np.ndarray, dtype=np.float64) -> Path:
    """Like tonic's preprocessed files: an array (N, 4) of x, y, p, t in milliseconds."""
    folder = root / "DVSGesture" / {"train": "ibmGestureTrain", "test": "ibmGestureTest"}[split] / session
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.npy"
    np.save(path, np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1).astype(dtype))
    return path


@pytest.fixture
def nmnist_root(tmp_path: Path) -> tuple[Path, dict[Path, np.ndarray]]:
    """Train: digit 0 two files, digit 3 one, digit 7 three; test: digit 5 one file."""
    rng = np.random.default_rng(0)
    written = {}
    for split, digit, name in [("train", 0, "00002"), ("train", 0, "00010"), ("train", 3, "00004"),
                               ("train", 7, "00001"), ("train", 7, "00005"), ("train", 7, "00009"),
                               ("test", 5, "00003")]:
        ev = random_events(rng, int(rng.integers(50, 300)), 34, 310_000)
        written[write_nmnist(tmp_path, split, digit, name, ev)] = ev
    return tmp_path, written


@pytest.fixture
def gesture_root(tmp_path: Path) -> tuple[Path, dict[Path, np.ndarray]]:
    rng = np.random.default_rng(1)
    written = {}
    for split, session, label in [("train", "user01_fluorescent", 0), ("train", "user01_fluorescent", 10),
                                  ("train", "user01_led", 3), ("train", "user02_natural", 7),
                                  ("test", "user24_lab", 5)]:
        ev = random_events(rng, int(rng.integers(100, 500)), 128, 6_000_000)
        ev["t"] -= ev["t"] % 1000  # tonic's files hold whole milliseconds
        written[write_gesture(tmp_path, split, session, label, ev)] = ev
    return tmp_path, written


def one_line_error(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(ValueError, match=match) as err:
        fn(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# --- N-MNIST ------------------------------------------------------------------------------------------


@needs_tonic
def test_nmnist_reads_whatever_files_are_there(nmnist_root) -> None:
    root, written = nmnist_root
    ev = event_dataset("nmnist", "train", root)
    assert len(ev) == 6
    # Round-robin over the digits, files in name order within one.
    assert ev.labels.tolist() == [0, 3, 7, 0, 7, 7]
    files = [f.path.name for f in real.split_files(real.NMNIST, "train", root)]
    assert files == ["00002.bin", "00004.bin", "00001.bin", "00010.bin", "00005.bin", "00009.bin"]
    for i, f in enumerate(real.split_files(real.NMNIST, "train", root)):
        events, label = ev[i]
        assert events.dtype == EVENT_DTYPE and label == int(f.path.parent.name)
        want = written[f.path]
        for field in ("x", "y", "t", "p"):
            assert np.array_equal(events[field], want[field]), field
    assert len(event_dataset("nmnist", "test", root)) == 1
    assert event_dataset("nmnist", "train", root, limit=2).labels.tolist() == [0, 3]


@needs_tonic
def test_nmnist_overflow_marker_is_dropped_and_shifts_later_times(tmp_path) -> None:
    ev = np.zeros(3, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = [1, 0, 2], [2, 240, 3], [10, 0, 20], [1, 0, 0]  # the middle one: overflow
    path = write_nmnist(tmp_path, "train", 1, "x", ev)
    got = real.read_nmnist_file(path)
    assert got["x"].tolist() == [1, 2] and got["t"].tolist() == [10, 20 + 2**13]  # tonic's overflow handling


@needs_tonic
def test_nmnist_frames_are_the_binned_files(nmnist_root, tmp_path) -> None:
    root, written = nmnist_root
    ds = frame_dataset("nmnist", "train", 6, root, cache_dir=tmp_path / "cache", clip=3, progress=False)
    spec = get_spec("nmnist")
    assert ds.input_shape == (2, 34, 34) and len(ds) == 6 and ds.num_classes == 10
    for i, f in enumerate(real.split_files(real.NMNIST, "train", root)):
        want = to_frames(written[f.path], spec.sensor_size, 6, clip=3, duration=spec.duration_us)
        assert np.array_equal(ds.frames[i].numpy(), want)


@needs_tonic
def test_truncated_bin_names_the_file_when_read(nmnist_root) -> None:
    root, _ = nmnist_root
    bad = root / "NMNIST" / "Train" / "3" / "00004.bin"
    bad.write_bytes(bad.read_bytes()[:-2])  # half an event
    ev = event_dataset("nmnist", "train", root)  # listing reads nothing: the rest stays usable
    ev[0]
    msg = one_line_error(ev.__getitem__, 1, match="not a positive whole number of 5-byte")
    assert str(bad) in msg
    empty = root / "NMNIST" / "Train" / "0" / "00002.bin"
    empty.write_bytes(b"")
    assert str(empty) in one_line_error(real.read_nmnist_file, empty, match="0 bytes")


@needs_tonic
def test_bin_with_pixels_off_the_sensor_is_refused(tmp_path) -> None:
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = 200, 3
    path = write_nmnist(tmp_path, "train", 1, "big", ev)
    assert str(path) in one_line_error(real.read_nmnist_file, path, match="outside N-MNIST's 34x34")


# --- DVS Gesture ---------------------------------------------------------------------------------


def test_dvsgesture_reads_whatever_files_are_there(gesture_root) -> None:
    root, written = gesture_root
    ev = event_dataset("dvsgesture", "train", root)
    files = real.split_files(real.DVSGESTURE, "train", root)
    assert [f"{f.path.parent.name}/{f.path.name}" for f in files] == [
        "user01_fluorescent/0.npy", "user01_fluorescent/10.npy", "user01_led/3.npy", "user02_natural/7.npy"]
    assert ev.labels.tolist() == [0, 10, 3, 7]
    assert ev.sources.tolist() == [1, 1, 1, 2]  # the user
    assert ev.passes.tolist() == [0, 0, 1, 0]  # the user's session
    for i, f in enumerate(files):
        events, _ = ev[i]
        want = written[f.path]
        assert events.dtype == EVENT_DTYPE
        for field in ("x", "y", "t", "p"):  # t back in microseconds, as tonic
            assert np.array_equal(events[field], want[field]), field
    test = event_dataset("dvsgesture", "test", root)
    assert len(test) == 1 and test.labels.tolist() == [5] and test.sources.tolist() == [24]


def test_dvsgesture_integer_files_and_frames(gesture_root, tmp_path) -> None:
    root, written = gesture_root
    path = next(p for p in written if p.parent.name == "user02_natural")
    write_gesture(root, "train", "user02_natural", 7, written[path], dtype=np.int64)
    ds = frame_dataset("dvsgesture", "train", root=root, cache_dir=tmp_path / "cache", progress=False)
    spec = get_spec("dvsgesture")
    assert ds.T == 20 and ds.input_shape == (2, 32, 32) and ds.num_classes == 11
    want = to_frames(written[path], spec.sensor_size, 20, clip=1, downsample=4, duration=None)
    assert np.array_equal(ds.frames[3].numpy(), want)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is not an npy file", "not a readable .npy"),
        ("truncated", "not a readable .npy"),
        (np.zeros((5, 3)), r"shape \(5, 3\)"),
        (np.zeros((0, 4)), "no events"),
        (np.array([[0, 0, 2, 5]]), "polarities"),
        (np.array([[0, 130, 1, 5]]), "inside the 128x128"),
        (np.array([[0.5, 1, 1, 5]]), "whole numbers"),
        (np.array([[0, 1, 1, np.nan]]), "NaN"),
        (np.array([[0, 1, 1, -3]]), "negative"),
        (np.array(["a", "b"], dtype=object), "not a readable .npy"),
    ],
)
def test_malformed_npy_names_the_file(tmp_path, content, match: str) -> None:
    path = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user03_led" / "4.npy"
    path.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):  # "truncated"
        np.save(path, np.zeros((100, 4)))
        path.write_bytes(path.read_bytes()[:300])
    else:
        np.save(path, content, allow_pickle=True)
    ev = event_dataset("dvsgesture", "train", tmp_path)
    assert str(path) in one_line_error(ev.__getitem__, 0, match=match)


# --- layouts and errors --------------------------------------------------------------------------


@pytest.mark.parametrize("name, top", [("nmnist", "NMNIST"), ("dvsgesture", "DVSGesture")])
def test_missing_root_folder_or_split_names_it(tmp_path, name: str, top: str) -> None:
    one_line_error(event_dataset, name, "train", None, match=r"pass root=<folder>")
    missing = tmp_path / "nowhere"
    assert str(missing) in one_line_error(event_dataset, name, "train", missing, match="not a folder")
    msg = one_line_error(event_dataset, name, "train", tmp_path, match="no folder")
    assert str(tmp_path / top) in msg and "download=True" in msg
    one_line_error(frame_dataset, name, "test", 4, tmp_path, cache_dir=tmp_path / "c", match="no folder")


def test_empty_split_names_the_folder(tmp_path, nmnist_root) -> None:
    (tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led").mkdir(parents=True)
    (tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led" / "notes.txt").write_text("no recordings")
    msg = one_line_error(event_dataset, "dvsgesture", "test", tmp_path, match="holds no recordings")
    assert str(tmp_path / "DVSGesture" / "ibmGestureTest") in msg
    root, _ = nmnist_root
    for f in (root / "NMNIST" / "Test").rglob("*.bin"):
        f.unlink()
    assert str(root / "NMNIST" / "Test") in one_line_error(
        frame_dataset, "nmnist", "test", 4, root, cache_dir=tmp_path / "c", match="holds no recordings")


def test_unexpected_folders_and_names_are_refused(tmp_path, gesture_root) -> None:
    root, _ = gesture_root
    stray = root / "DVSGesture" / "ibmGestureTrain" / "backup"
    stray.mkdir()
    assert str(stray) in one_line_error(event_dataset, "dvsgesture", "train", root, match="user<NN>_<lighting>")
    stray.rmdir()
    bad = root / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "11.npy"
    np.save(bad, np.zeros((1, 4)))
    assert str(bad) in one_line_error(event_dataset, "dvsgesture", "train", root, match="label 0 to 10")
    (tmp_path / "n" / "NMNIST" / "Train" / "ten").mkdir(parents=True)
    one_line_error(event_dataset, "nmnist", "train", tmp_path / "n", match="one folder per digit")


# --- the cache key -------------------------------------------------------------------------------


@needs_tonic
def test_cache_key_changes_when_files_are_added_or_rewritten(nmnist_root, tmp_path, reads) -> None:
    root, _ = nmnist_root
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    a = frame_dataset("nmnist", "train", 4, root, **kw)
    again = frame_dataset("nmnist", "train", 4, root, **kw)
    assert len(reads) == 1 and again.cache_path == a.cache_path  # nothing changed: served from the cache
    ev = random_events(np.random.default_rng(5), 40, 34, 300_000)
    write_nmnist(root, "train", 9, "00007", ev)
    b = frame_dataset("nmnist", "train", 4, root, **kw)
    assert len(reads) == 2 and b.cache_path != a.cache_path and len(b) == 7
    # The same file list with one file rewritten to another size: another key again.
    write_nmnist(root, "train", 9, "00007", ev[:30])
    c = frame_dataset("nmnist", "train", 4, root, **kw)
    assert len(reads) == 3 and c.cache_path not in (a.cache_path, b.cache_path)


def test_cache_key_changes_when_a_gesture_file_is_added(gesture_root, tmp_path, reads) -> None:
    root, written = gesture_root
    kw = dict(cache_dir=tmp_path / "cache", progress=False, limit=2)
    a = frame_dataset("dvsgesture", "train", 4, root, **kw)
    sig = real.split_signature(real.DVSGESTURE, "train", root)
    write_gesture(root, "train", "user05_led", 1, next(iter(written.values())))
    assert real.split_signature(real.DVSGESTURE, "train", root) != sig
    b = frame_dataset("dvsgesture", "train", 4, root, **kw)  # the first 2 recordings are unchanged, but not the set
    assert len(reads) == 2 and b.cache_path != a.cache_path
    assert DATASETS["dvsgesture"].version.endswith(str(real.READER_VERSION))


# --- tonic optional, downloads only on request ----------------------------------------------------


def test_import_and_dvsgesture_work_without_tonic(gesture_root, monkeypatch) -> None:
    root, _ = gesture_root
    code = ("import sys; sys.modules['tonic'] = None; import sast.data as d; "
            "assert 'tonic' not in [m for m in sys.modules if sys.modules[m] is not None]; print(d.dataset_names())")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "dvsgesture" in out.stdout
    monkeypatch.setitem(sys.modules, "tonic", None)  # `import tonic` now raises ImportError
    monkeypatch.setitem(sys.modules, "tonic.io", None)
    assert len(event_dataset("dvsgesture", "train", root)[0][0]) > 0  # numpy alone reads .npy


def test_missing_tonic_is_one_line_naming_the_extra(nmnist_root, monkeypatch) -> None:
    root, _ = nmnist_root
    monkeypatch.setitem(sys.modules, "tonic", None)
    monkeypatch.setitem(sys.modules, "tonic.io", None)
    ev = event_dataset("nmnist", "train", root)  # listing needs no tonic
    with pytest.raises(real.TonicMissing) as err:
        ev[0]
    msg = str(err.value)
    assert "\n" not in msg and "pip install 'sast-toolkit[tonic]'" in msg
    assert isinstance(err.value, ImportError) and isinstance(err.value, ValueError)  # CLIs exit 2 with the line


@pytest.mark.parametrize("name", ["nmnist", "dvsgesture"])
def test_nothing_is_downloaded_without_asking(tmp_path, monkeypatch, name: str) -> None:
    constructed = []
    if HAVE_TONIC:
        import tonic

        for cls in ("NMNIST", "DVSGesture"):
            monkeypatch.setattr(tonic.datasets, cls, lambda *a, **k: constructed.append((a, k)))
    with pytest.raises(ValueError, match="no folder"):
        frame_dataset(name, "train", 4, tmp_path, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="no folder"):
        event_dataset(name, "test", tmp_path)
    assert constructed == []  # and the no_network fixture saw no connection


@needs_tonic
@pytest.mark.parametrize("name, cls, split_dir", [("nmnist", "NMNIST", "NMNIST/Test"),
                                                  ("dvsgesture", "DVSGesture", "DVSGesture/ibmGestureTest")])
def test_download_true_asks_tonic_only_for_missing_splits(tmp_path, monkeypatch, name, cls, split_dir) -> None:
    import tonic

    constructed = []

    def fake_dataset(save_to: str, train: bool) -> None:  # stands in for tonic's download and extraction
        constructed.append((save_to, train))
        folder = Path(save_to) / split_dir / ("5" if name == "nmnist" else "user24_led")
        folder.mkdir(parents=True)
        ev = random_events(np.random.default_rng(0), 20, 34, 100_000)
        if name == "nmnist":
            (folder / "00001.bin").write_bytes(nmnist_bytes(ev))
        else:
            np.save(folder / "5.npy", np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1))

    monkeypatch.setattr(tonic.datasets, cls, fake_dataset)
    root = tmp_path / "data"
    ds = frame_dataset(name, "test", 4, root, cache_dir=tmp_path / "c", progress=False, download=True)
    assert constructed == [(str(root), False)] and len(ds) == 1
    frame_dataset(name, "test", 4, root, cache_dir=tmp_path / "c", progress=False, download=True)
    event_dataset(name, "test", root, download=True)
    assert len(constructed) == 1  # present now: never asked again


def test_registry_entries() -> None:
    nm, dg = get_spec("nmnist"), get_spec("dvsgesture")
    assert nm.sensor_size == (34, 34, 2) and nm.num_classes == 10 and nm.default_downsample == 1
    assert dg.sensor_size == (128, 128, 2) and dg.num_classes == 11 and dg.default_downsample == 4
    assert dg.duration_us is None and nm.duration_us == real.NMNIST_DURATION_US
    assert nm.signature is not None and nm.fetch is not None and get_spec("synth-nmnist").signature is None
    assert "1077" in dg.description and "264" in dg.description
