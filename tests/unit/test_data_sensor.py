"""The DVS model: its physics on simple scenes, and a per-pixel Python loop as reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sast.data.sensor import SensorParams, refractory_filter, simulate_batch, simulate_events

QUIET = dict(threshold_sigma=0.0, noise_rate_hz=0.0, refractory_us=0)


def ramp_video(start: float, stop: float, n_steps: int = 11, shape: tuple[int, int] = (3, 4)) -> np.ndarray:
    levels = np.linspace(start, stop, n_steps)
    return np.broadcast_to(levels[:, None, None], (n_steps, *shape)).copy()


def times(n_steps: int, step_us: int = 1000) -> np.ndarray:
    return np.arange(n_steps, dtype=np.int64) * step_us


def naive_simulation(video: np.ndarray, t_us: np.ndarray, c_on: np.ndarray, c_off: np.ndarray,
                     eps: float, refractory_us: int) -> set[tuple[int, int, int, int]]:
    """One pixel, one step, one crossing at a time; the refractory period applied in time order."""
    n_steps, h, w = video.shape
    out = set()
    for y in range(h):
        for x in range(w):
            i = y * w + x
            logs = [math.log(float(v) + eps) for v in video[:, y, x]]
            ref = logs[0]
            candidates = []
            for k in range(1, n_steps):
                if not (logs[k] >= ref + c_on[i] or logs[k] <= ref - c_off[i]):
                    continue
                delta = logs[k] - ref
                sign, c = (1.0, c_on[i]) if delta > 0 else (-1.0, c_off[i])
                n = max(int(np.floor(abs(delta) / c)), 1)
                for j in range(1, n + 1):
                    level = ref + sign * j * c
                    frac = min(max((level - logs[k - 1]) / (logs[k] - logs[k - 1]), 0.0), 1.0)
                    t = min(int(t_us[k - 1]) + int(np.floor(frac * (t_us[k] - t_us[k - 1]))), int(t_us[k]) - 1)
                    candidates.append((t, int(sign > 0)))
                ref += sign * n * c
            last = None
            for t, p in sorted(candidates, key=lambda e: e[0]):
                if last is None or t - last >= refractory_us:
                    out.add((x, y, t, p))
                    last = t
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("refractory_us", [0, 700])
def test_matches_naive_per_pixel_loop(seed: int, refractory_us: int) -> None:
    rng = np.random.default_rng(seed)
    video = np.clip(np.cumsum(rng.normal(0, 0.15, size=(15, 3, 4)), axis=0) + 0.5, 0, 1)
    t_us = np.cumsum(rng.integers(200, 3000, size=15)).astype(np.int64)
    params = SensorParams(threshold=0.2, threshold_sigma=0.04, noise_rate_hz=0.0, refractory_us=refractory_us)
    events = simulate_events(video, t_us, np.random.default_rng(seed), params)
    # The same per-pixel thresholds: the first draw of the recording's generator.
    th = np.maximum(0.2 + 0.04 * np.random.default_rng(seed).standard_normal((2, 12)), params.threshold_min)
    want = naive_simulation(video, t_us, th[0], th[1], params.log_eps, refractory_us)
    got = {(int(e["x"]), int(e["y"]), int(e["t"]), int(e["p"])) for e in events}
    assert len(events) == len(got) == len(want) > 0
    assert got == want
    assert np.all(np.diff(events["t"]) >= 0)


def test_static_scene_without_noise_is_silent() -> None:
    video = np.random.default_rng(0).random((1, 8, 8)).repeat(20, axis=0)
    ev = simulate_events(video, times(20), np.random.default_rng(1), SensorParams(noise_rate_hz=0.0))
    assert len(ev) == 0


def test_brightening_gives_only_on_events_and_the_expected_count() -> None:
    params = SensorParams(threshold=0.2, **QUIET)
    ev = simulate_events(ramp_video(0.1, 0.9), times(11), np.random.default_rng(0), params)
    per_pixel = math.floor((math.log(0.9 + params.log_eps) - math.log(0.1 + params.log_eps)) / 0.2)
    assert set(ev["p"].tolist()) == {1}
    assert len(ev) == 12 * per_pixel  # exact: no noise, no mismatch, no refractory loss


def test_darkening_gives_only_off_events() -> None:
    ev = simulate_events(ramp_video(0.9, 0.05), times(11), np.random.default_rng(0), SensorParams(**QUIET))
    assert len(ev) > 0 and set(ev["p"].tolist()) == {0}


def test_events_lie_within_their_step_and_the_sensor() -> None:
    ev = simulate_events(ramp_video(0.0, 1.0, shape=(5, 7)), times(11, 500), np.random.default_rng(0),
                         SensorParams(noise_rate_hz=50.0))
    assert ev["x"].min() >= 0 and ev["x"].max() < 7 and ev["y"].min() >= 0 and ev["y"].max() < 5
    assert ev["t"].min() >= 0 and ev["t"].max() < 5000


def flicker(n_steps: int = 200, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    return np.tile(np.array([0.05, 0.95])[:, None, None], (n_steps // 2, *shape))


def min_gap_per_pixel(ev: np.ndarray) -> int:
    pix = ev["y"].astype(np.int64) * 1000 + ev["x"]
    order = np.lexsort((ev["t"], pix))
    same = pix[order][1:] == pix[order][:-1]
    return int(np.diff(ev["t"][order])[same].min())


def test_refractory_period_is_respected() -> None:
    video, t_us = flicker(), times(200, 100)  # a full swing every 100 us
    free = simulate_events(video, t_us, np.random.default_rng(0), SensorParams(**QUIET))
    assert min_gap_per_pixel(free) < 1000  # without a dead time the pixel fires much faster
    params = SensorParams(threshold_sigma=0.0, noise_rate_hz=5000.0, refractory_us=1000)
    ev = simulate_events(video, t_us, np.random.default_rng(0), params)
    assert min_gap_per_pixel(ev) >= 1000
    # Non-paralysable: a pixel driven all the time fires once per dead time, not less.
    assert len(ev) >= 16 * (20_000 // 1000 - 1)


def test_refractory_filter_is_greedy_on_the_last_kept_event() -> None:
    # Gaps 600, 600, 600 with tau 1000: keep 0, drop 600, keep 1200, drop 1800.
    kept = refractory_filter(np.zeros(4, dtype=np.int64), np.array([0, 600, 1200, 1800]), 1000)
    assert kept.tolist() == [0, 2]


@pytest.mark.parametrize("refractory_us", [0, 5000])
def test_noise_rate_is_as_set(refractory_us: int) -> None:
    """Counts of a static scene against Poisson statistics (5 sigma; the refractory
    correction r / (1 + r tau) of a non-paralysable dead time)."""
    rate, shape, duration_us = 20.0, (32, 32), 2_000_000
    params = SensorParams(noise_rate_hz=rate, refractory_us=refractory_us)
    video = np.full((2, *shape), 0.5)
    ev = simulate_events(video, np.array([0, duration_us]), np.random.default_rng(0), params)
    tau = refractory_us / 1e6
    expected = rate / (1 + rate * tau) * shape[0] * shape[1] * duration_us / 1e6
    assert abs(len(ev) - expected) < 5 * math.sqrt(expected), (len(ev), expected)
    assert abs((ev["p"] == 1).sum() - len(ev) / 2) < 5 * math.sqrt(len(ev) / 4)  # ON and OFF alike
    assert ev["t"].min() >= 0 and ev["t"].max() < duration_us


def test_threshold_mismatch_is_fixed_per_pixel_and_spreads_counts() -> None:
    video = ramp_video(0.0, 1.0, n_steps=40, shape=(10, 10))
    exact = simulate_events(video, times(40), np.random.default_rng(0), SensorParams(**QUIET))
    counts = np.bincount(exact["y"] * 10 + exact["x"], minlength=100)
    assert counts.std() == 0
    mismatched = SensorParams(**{**QUIET, "threshold_sigma": 0.05})
    noisy = simulate_events(video, times(40), np.random.default_rng(0), mismatched)
    counts = np.bincount(noisy["y"] * 10 + noisy["x"], minlength=100)
    assert counts.std() > 0


def test_deterministic_for_a_generator_seed_and_independent_of_the_batch() -> None:
    rng = np.random.default_rng(3)
    videos = rng.random((3, 12, 5, 6))
    t_us = times(12)
    params = SensorParams(noise_rate_hz=30.0)
    batch = simulate_batch(videos, t_us, [np.random.default_rng(s) for s in (10, 11, 12)], params)
    for video, seed, ev in zip(videos, (10, 11, 12), batch):
        alone = simulate_events(video, t_us, np.random.default_rng(seed), params)
        np.testing.assert_array_equal(alone, ev)
    again = simulate_events(videos[0], t_us, np.random.default_rng(10), params)
    np.testing.assert_array_equal(again, batch[0])
    other = simulate_events(videos[0], t_us, np.random.default_rng(99), params)
    assert not np.array_equal(other, batch[0])


@pytest.mark.parametrize(
    ("video", "t_us", "match"),
    [
        (np.full((3, 2, 2), 1.5), times(3), r"\[0, 1\]"),
        (np.full((3, 2, 2), 0.5), np.array([0, 5, 5]), "increasing"),
        (np.full((3, 2, 2), 0.5), times(4), "one timestamp"),
        (np.full((2, 2), 0.5), times(2), "shape"),
    ],
)
def test_bad_input_raises_one_line(video: np.ndarray, t_us: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        simulate_events(video, t_us, np.random.default_rng(0))
    assert "\n" not in str(err.value)


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError, match="threshold"):
        SensorParams(threshold=0.0)
    with pytest.raises(ValueError, match="noise_rate_hz"):
        SensorParams(noise_rate_hz=-1.0)
