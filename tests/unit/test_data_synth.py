"""synth-nmnist, the frame cache and the dataset registry (small subsets: each test runs in ~1 s)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import sast.data.registry as registry
from sast.data import (
    CACHE_ENV,
    DATASETS,
    EventSet,
    FrameDataset,
    cache_root,
    dataset_names,
    event_dataset,
    frame_dataset,
    get_spec,
    to_frames,
)
from sast.data import synth_nmnist as sn
from sast.data.cache import FrameKey, frame_cache_path, load_frames, save_frames

NAME = "synth-nmnist"


@pytest.fixture(scope="module")
def test_subset() -> EventSet:
    return sn.generate("test", seed=0, limit=24, progress=False)


@pytest.fixture
def generations(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Counts the event generations that frame_dataset triggers (a cache miss generates)."""
    calls: list[tuple] = []
    original = registry.event_dataset

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "event_dataset", counting)
    return calls


# --- the split -------------------------------------------------------------------------------


def test_split_is_fixed_stratified_and_disjoint() -> None:
    train, test = sn.split_indices("train"), sn.split_indices("test")
    labels = load_digits().target
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    per_class = np.bincount(labels, minlength=10)
    # Stratified: each class gets its share of the test split, up to rounding (one image).
    assert np.all(np.abs(np.bincount(labels[test], minlength=10) - sn.TEST_FRACTION * per_class) <= 1)
    assert np.array_equal(test, sn.split_indices("test"))


def test_train_and_test_recordings_share_no_source_image() -> None:
    tr = sn.generate("train", limit=5, progress=False)
    te = sn.generate("test", limit=5, progress=False)
    assert len(np.intersect1d(tr.sources, te.sources)) == 0
    assert set(tr.sources) <= set(sn.split_indices("train")) and set(te.sources) <= set(sn.split_indices("test"))


# --- generation --------------------------------------------------------------------------------


def test_deterministic_for_a_seed(test_subset: EventSet) -> None:
    again = sn.generate("test", seed=0, limit=24, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(test_subset.events, again.events))
    assert np.array_equal(test_subset.labels, again.labels)
    other = sn.generate("test", seed=1, limit=3, progress=False)
    assert not any(np.array_equal(a, b) for a, b in zip(test_subset.events[:3], other.events))


def test_a_recording_does_not_depend_on_the_subset(test_subset: EventSet) -> None:
    small = sn.generate("test", seed=0, limit=3, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(small.events, test_subset.events[:3]))
    # limit counts recordings: 4 training recordings are the 3 passes of one image and the first of the next.
    four = sn.generate("train", limit=4, progress=False)
    six = sn.generate("train", limit=6, progress=False)
    assert len(four) == 4 and four.passes.tolist() == [0, 1, 2, 0]
    assert all(np.array_equal(a, b) for a, b in zip(four.events, six.events[:4]))


def test_labels_are_the_source_digits(test_subset: EventSet) -> None:
    assert np.array_equal(test_subset.labels, load_digits().target[test_subset.sources])
    assert test_subset.labels.dtype == np.int64


def test_training_images_get_several_independent_passes() -> None:
    tr = sn.generate("train", limit=2 * sn.TRAIN_PASSES, progress=False)
    assert len(tr) == 2 * sn.TRAIN_PASSES
    assert tr.sources.tolist() == np.repeat(sn.split_indices("train")[:2], sn.TRAIN_PASSES).tolist()
    assert tr.passes.tolist() == [0, 1, 2, 0, 1, 2]
    first = tr.events[: sn.TRAIN_PASSES]
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    # Same digit, same motion: the passes differ by noise only, so their counts are close.
    counts = [len(e) for e in first]
    assert max(counts) < 1.2 * min(counts)


def test_event_counts_and_layout_are_realistic(test_subset: EventSet) -> None:
    """N-MNIST: ~4000 events per 300 ms sample; a few percent of frame entries nonzero at T=20."""
    counts = np.array([len(e) for e in test_subset.events])
    assert 2000 < counts.mean() < 6000, counts.mean()
    for ev in test_subset.events:
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() >= 0 and ev["t"].max() < sn.RECORDING_DURATION_US
        assert ev["x"].max() < 34 and ev["y"].max() < 34 and ev["x"].min() >= 0 and ev["y"].min() >= 0
        assert 0.3 < (ev["p"] == 1).mean() < 0.7  # ON and OFF: edges move both ways
        # Three saccades: each third of the recording has events.
        thirds = np.bincount(ev["t"] // sn.SACCADE_DURATION_US, minlength=3)
        assert np.all(thirds > 0.1 * len(ev))
    frames = np.stack([to_frames(e, sn.SENSOR_SIZE, 20, duration=sn.RECORDING_DURATION_US) for e in test_subset.events])
    assert 0.01 < (frames > 0).mean() < 0.15


def test_saccade_path_is_a_closed_triangle() -> None:
    corners = np.arange(4) * sn.SACCADE_DURATION_US
    dx, dy = sn.saccade_path(corners)
    expected = np.array(sn.SACCADE_VERTICES_PX + sn.SACCADE_VERTICES_PX[:1])
    np.testing.assert_allclose(np.stack([dx, dy], 1), expected, atol=1e-12)


def test_render_moves_the_image_right_for_positive_dx() -> None:
    canvas = np.zeros((1, 8, 8), dtype=np.float32)
    canvas[0, 4, 3] = 1.0
    video = sn.render_video(canvas, np.array([0.0, 1.0, 0.5]), np.array([0.0, 0.0, 0.0]))
    assert video[0, 1, 4, 4] == 1.0 and video[0, 0, 4, 3] == 1.0
    np.testing.assert_allclose(video[0, 2, 4, 3:5], [0.5, 0.5])


@pytest.mark.slow
def test_full_set_generates_in_time() -> None:
    start = time.perf_counter()
    tr = sn.generate("train", progress=False)
    te = sn.generate("test", progress=False)
    elapsed = time.perf_counter() - start
    assert len(tr) == len(sn.split_indices("train")) * sn.TRAIN_PASSES and len(te) == len(sn.split_indices("test"))
    assert elapsed < 60, elapsed  # the budget on 2 shared cores
    assert 3000 < np.mean([len(e) for e in te.events]) < 5000


# --- frame_dataset and the cache ----------------------------------------------------------------


def test_frame_dataset_interface(tmp_path) -> None:
    ds = frame_dataset(NAME, "test", 10, cache_dir=tmp_path, limit=4, progress=False)
    assert isinstance(ds, FrameDataset) and len(ds) == 4
    assert ds.frames.dtype == torch.uint8 and ds.frames.shape == (4, 10, 2, 34, 34)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (4,)
    assert ds.input_shape == (2, 34, 34) and ds.num_classes == 10 and ds.clip == 1 and ds.T == 10
    x, y = ds[2]
    assert x.dtype == torch.float32 and x.shape == (10, 2, 34, 34) and isinstance(y, int)
    assert torch.equal(x, ds.frames[2].float()) and y == int(ds.labels[2])
    assert ds.frames.max() <= ds.clip
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    xb, yb = next(iter(loader))
    assert xb.shape == (2, 10, 2, 34, 34) and yb.dtype == torch.int64


def test_frames_are_the_binned_events(tmp_path) -> None:
    ds = frame_dataset(NAME, "test", 7, cache_dir=tmp_path, limit=3, clip=2, progress=False)
    ev = event_dataset(NAME, "test", limit=3, progress=False)
    for i in range(3):
        want = to_frames(ev[i][0], sn.SENSOR_SIZE, 7, clip=2, duration=sn.RECORDING_DURATION_US)
        assert np.array_equal(ds.frames[i].numpy(), want)
    assert ds.labels.tolist() == ev.labels.tolist()


def test_cache_serves_identical_frames_without_regenerating(tmp_path, generations) -> None:
    first = frame_dataset(NAME, "test", 8, cache_dir=tmp_path, limit=4, progress=False)
    assert len(generations) == 1 and first.cache_path.is_file()
    second = frame_dataset(NAME, "test", 8, cache_dir=tmp_path, limit=4, progress=False)
    assert len(generations) == 1  # served from disk
    assert torch.equal(first.frames, second.frames) and torch.equal(first.labels, second.labels)
    assert torch.equal(first.sources, second.sources)
    assert second.frames.dtype == torch.uint8 and second.labels.dtype == torch.int64
    assert not list(tmp_path.rglob("*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize(
    "change",
    [
        {"T": 9},
        {"clip": 2},
        {"downsample": 2},
        {"duration": None},
        {"duration": 150_000},
        {"seed": 1},
        {"limit": 3},
    ],
)
def test_cache_rebuilds_when_a_key_parameter_changes(tmp_path, generations, change: dict) -> None:
    base = {"T": 8, "clip": 1, "downsample": 1, "duration": "dataset", "seed": 0, "limit": 4}
    a = frame_dataset(NAME, "test", cache_dir=tmp_path, progress=False, **base)
    b = frame_dataset(NAME, "test", cache_dir=tmp_path, progress=False, **{**base, **change})
    assert len(generations) == 2 and a.cache_path != b.cache_path
    assert len(list(tmp_path.rglob("*.npz"))) == 2


def test_cache_rebuilds_when_the_generator_version_changes(tmp_path, generations, monkeypatch) -> None:
    a = frame_dataset(NAME, "test", 8, cache_dir=tmp_path, limit=3, progress=False)
    bumped = dataclasses.replace(DATASETS[NAME], version=DATASETS[NAME].version + "-next")
    monkeypatch.setitem(DATASETS, NAME, bumped)
    b = frame_dataset(NAME, "test", 8, cache_dir=tmp_path, limit=3, progress=False)
    assert len(generations) == 2 and a.cache_path != b.cache_path


def test_a_file_holding_another_key_is_not_served(tmp_path, capsys) -> None:
    key = FrameKey(NAME, "test", 4, 1, 1, None, 0, 2, "v")
    other = dataclasses.replace(key, T=5)
    path = save_frames(other, np.zeros((2, 5, 2, 34, 34), np.uint8), np.zeros(2), np.zeros(2), tmp_path)
    path.rename(frame_cache_path(key, tmp_path))  # a stale file under the right name
    assert load_frames(key, tmp_path) is None
    assert "another key" in capsys.readouterr().err
    frame_cache_path(key, tmp_path).write_bytes(b"not a zip file")
    assert load_frames(key, tmp_path) is None


def test_cache_folder_from_argument_environment_or_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == cache_root("~/.cache/sast")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    ds = frame_dataset(NAME, "test", 4, limit=2, progress=False)
    assert ds.cache_path.is_relative_to(tmp_path / "env")


def test_downsample_changes_the_input_shape(tmp_path) -> None:
    ds = frame_dataset(NAME, "test", 4, cache_dir=tmp_path, limit=2, downsample=2, clip=4, progress=False)
    assert ds.input_shape == (2, 17, 17) and ds.frames.max() <= 4


def test_defaults_come_from_the_spec(tmp_path) -> None:
    ds = frame_dataset(NAME, "test", cache_dir=tmp_path, limit=2, clip=1.0, progress=False)  # a whole float is fine
    assert ds.T == get_spec(NAME).default_T and ds.clip == 1 and isinstance(ds.clip, int)


# --- names and errors ----------------------------------------------------------------------------


def test_unknown_dataset_names_the_known_ones_and_the_closest() -> None:
    with pytest.raises(ValueError) as err:
        frame_dataset("synth-mnist", "train", 10)
    msg = str(err.value)
    assert "\n" not in msg and "synth-mnist" in msg and "did you mean 'synth-nmnist'" in msg
    assert all(name in msg for name in dataset_names())
    with pytest.raises(ValueError, match="known: dvsgesture, nmnist, synth-gesture, synth-nmnist$"):
        event_dataset("zzzz", "train")


def test_real_datasets_need_a_root() -> None:
    with pytest.raises(ValueError, match="pass root="):
        event_dataset("dvsgesture", "train")


def test_bad_split_and_parameters_raise_one_line(tmp_path) -> None:
    with pytest.raises(ValueError, match="did you mean 'test'") as err:
        event_dataset(NAME, "tset")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="clip"):
        frame_dataset(NAME, "test", 4, cache_dir=tmp_path, clip=0.5)
    with pytest.raises(ValueError, match="T"):
        frame_dataset(NAME, "test", 0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="duration"):
        frame_dataset(NAME, "test", 4, cache_dir=tmp_path, duration="recording")
    with pytest.raises(ValueError, match="divide"):
        frame_dataset(NAME, "test", 4, cache_dir=tmp_path, downsample=3)


def test_registry_holds_plain_specs() -> None:
    spec = get_spec(NAME)
    assert spec.sensor_size == (34, 34, 2) and spec.num_classes == 10
    assert str(sn.GENERATOR_VERSION) in spec.version
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_classes = 3  # type: ignore[misc]
