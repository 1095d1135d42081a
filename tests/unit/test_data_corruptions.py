"""Event corruptions: each does what it says, at increasing severity, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from sast.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt, corrupted_frames
from sast.data.events import make_events

SENSOR = (34, 34, 2)
DURATION = 300_000


def _events(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, DURATION, n))
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_is_deterministic_sorted_and_in_bounds(name):
    ev = _events()
    a = corrupt(ev, name, 3, np.random.default_rng(1), SENSOR, DURATION)
    b = corrupt(ev, name, 3, np.random.default_rng(1), SENSOR, DURATION)
    assert np.array_equal(a, b)
    assert np.all(np.diff(a["t"]) >= 0)
    assert a["x"].min() >= 0 and a["x"].max() < 34 and a["y"].min() >= 0 and a["y"].max() < 34
    assert set(np.unique(a["p"])) <= {0, 1}
    assert not np.array_equal(a, ev)  # it changes something
    assert np.array_equal(ev, _events())  # and leaves its input alone


def test_counts_follow_severity():
    ev = _events()
    rng = lambda: np.random.default_rng(2)  # noqa: E731
    noise = [len(corrupt(ev, "background_noise", s, rng(), SENSOR, DURATION)) - len(ev) for s in SEVERITIES]
    assert noise == sorted(noise) and noise[0] > 0
    expected = 2.0 * 34 * 34 * 0.3  # severity 1: 2 Hz per pixel over 0.3 s
    assert abs(noise[0] - expected) < 5 * np.sqrt(expected)
    kept = [len(corrupt(ev, "event_drop", s, rng(), SENSOR, DURATION)) for s in SEVERITIES]
    assert kept == sorted(kept, reverse=True)
    assert abs(kept[0] / len(ev) - 0.9) < 0.03
    flipped = [(corrupt(ev, "polarity_flip", s, rng(), SENSOR, DURATION)["p"] != ev["p"]).mean() for s in SEVERITIES]
    assert abs(flipped[0] - 0.05) < 0.02 and abs(flipped[-1] - 0.5) < 0.05


def test_time_scaling_stretches_and_jitters_keep_counts():
    ev = _events()
    out = corrupt(ev, "time_scaling", 5, np.random.default_rng(0), SENSOR, DURATION)
    assert np.array_equal(out["t"], np.round(ev["t"] * 2.0).astype(out["t"].dtype))
    jit = corrupt(ev, "temporal_jitter", 2, np.random.default_rng(0), SENSOR, DURATION)
    assert len(jit) == len(ev) and np.array_equal(np.sort(jit["x"]), np.sort(ev["x"]))
    hot = corrupt(ev, "hot_pixels", 1, np.random.default_rng(0), SENSOR, DURATION)
    extra = len(hot) - len(ev)
    assert abs(extra - 300) < 5 * np.sqrt(300)  # one pixel at 1 kHz for 0.3 s


def test_errors():
    ev = _events(10)
    with pytest.raises(ValueError, match="did you mean 'event_drop'"):
        corrupt(ev, "event_dorp", 1, np.random.default_rng(0), SENSOR, DURATION)
    with pytest.raises(ValueError, match="severity"):
        corrupt(ev, "event_drop", 6, np.random.default_rng(0), SENSOR, DURATION)


def test_corrupted_frames_of_a_dataset(tmp_path):
    a = corrupted_frames("synth-nmnist", "test", 10, "event_drop", 5, limit=6)
    b = corrupted_frames("synth-nmnist", "test", 10, "event_drop", 5, limit=6)
    assert a.shape == (6, 10, 2, 34, 34) and a.dtype.is_floating_point is False
    assert (a == b).all()
    clean = corrupted_frames("synth-nmnist", "test", 10, "event_drop", 1, limit=6)
    assert a.sum() < clean.sum()  # dropping 80% of events leaves fewer active pixels than 10%
