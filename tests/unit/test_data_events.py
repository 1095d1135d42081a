"""Binning events to frames, against a per-event Python loop with exact (Fraction) bin edges."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sast.data.events import DEFAULT_CLIP, EVENT_DTYPE, EventSet, count_dtype, make_events, to_frames

SENSOR = (6, 4, 2)  # W, H, P: small, not square, to catch x/y swaps


def naive_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    T: int,
    clip: int | None,
    downsample: int = 1,
    duration: int | None = None,
    t_start: int = 0,
) -> np.ndarray:
    """The documented semantics, one event at a time, bin edges as exact fractions."""
    w, h, n_pol = sensor_size
    counts = np.zeros((T, n_pol, h // downsample, w // downsample), dtype=np.int64)
    if len(events) == 0:
        return counts if clip is None else np.minimum(counts, clip)
    ts = [int(e["t"]) for e in events]
    if duration is None:
        start, width = min(ts), Fraction(max(max(ts) - min(ts), 1), T)
    else:
        start, width = t_start, Fraction(duration, T)
    for e in events:
        t = int(e["t"])
        if duration is None and max(ts) == min(ts):
            b = 0  # one shared timestamp: the first bin
        elif duration is None and t == max(ts):
            b = T - 1  # the last bin is closed
        else:
            found = [i for i in range(T) if start + i * width <= t < start + (i + 1) * width]
            if not found:
                continue  # outside a fixed window
            b = found[0]
        p = 0 if n_pol == 1 else int(e["p"])
        counts[b, p, int(e["y"]) // downsample, int(e["x"]) // downsample] += 1
    return counts if clip is None else np.minimum(counts, clip)


def random_events(rng: np.random.Generator, n: int, t_max: int = 10_000) -> np.ndarray:
    return make_events(
        rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), np.sort(rng.integers(0, t_max, n)),
        rng.integers(0, 2, n),
    )


@st.composite
def event_arrays(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(0, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    t_max = draw(st.sampled_from([1, 7, 100, 1_000_000]))
    return random_events(np.random.default_rng(seed), n, t_max)


@settings(max_examples=80, deadline=None)
@given(
    events=event_arrays(),
    T=st.integers(1, 9),
    clip=st.sampled_from([None, 1, 2, 3]),
    downsample=st.sampled_from([1, 2]),
    duration=st.sampled_from([None, 1, 50, 999, 10_000]),
)
def test_to_frames_matches_naive_loop(
    events: np.ndarray, T: int, clip: int | None, downsample: int, duration: int | None
) -> None:
    got = to_frames(events, SENSOR, T, clip=clip, downsample=downsample, duration=duration)
    want = naive_frames(events, SENSOR, T, clip, downsample, duration)
    np.testing.assert_array_equal(got, want)  # exact: integer counts
    assert got.shape == (T, SENSOR[2], SENSOR[1] // downsample, SENSOR[0] // downsample)
    assert got.dtype == (count_dtype(len(events)) if clip is None else np.uint8)


@pytest.mark.parametrize("seed", range(5))
def test_unsorted_events_bin_like_sorted(seed: int) -> None:
    ev = random_events(np.random.default_rng(seed), 200)
    shuffled = ev[np.random.default_rng(seed + 100).permutation(len(ev))]
    np.testing.assert_array_equal(to_frames(shuffled, SENSOR, 7, clip=None), to_frames(ev, SENSOR, 7, clip=None))


def tonic_frames(events: np.ndarray, sensor_size: tuple[int, int, int], T: int) -> np.ndarray:
    """tonic 1.x ToFrame(n_time_bins=T): integer width (t_last - t_first) // T, half-open windows."""
    times = events["t"]
    width = (times[-1] - times[0]) // T
    starts = np.arange(T) * width + times[0]
    lo, hi = np.searchsorted(times, starts), np.searchsorted(times, starts + width)
    frames = np.zeros((T, sensor_size[2], sensor_size[1], sensor_size[0]), dtype=np.int64)
    for i in range(T):
        s = events[lo[i] : hi[i]]
        np.add.at(frames, (i, s["p"].astype(int), s["y"], s["x"]), 1)
    return frames


@pytest.mark.parametrize("seed", range(5))
def test_event_range_bins_are_tonics_plus_the_last_timestamp(seed: int) -> None:
    """When the span is a multiple of T, tonic's edges are ours; tonic drops the events at t_last, we keep them."""
    T = 5
    ev = random_events(np.random.default_rng(seed), 300, t_max=1000)  # sorted, t in [0, 1000)
    ev["t"][0], ev["t"][-1] = 0, 1000  # span 1000, a multiple of T
    ours = to_frames(ev, SENSOR, T, clip=None)
    theirs = tonic_frames(ev, SENSOR, T)
    last = ev[ev["t"] == ev["t"].max()]
    extra = np.zeros_like(theirs)
    np.add.at(extra, (T - 1, last["p"].astype(int), last["y"], last["x"]), 1)
    np.testing.assert_array_equal(ours, theirs + extra)
    assert len(last) >= 1 and extra.sum() == len(last)


def test_last_event_lands_in_last_bin() -> None:
    ev = make_events([0, 1, 2], [0, 0, 0], [0, 50, 100], [1, 1, 0])
    f = to_frames(ev, SENSOR, 4, clip=None)
    assert f[0, 1, 0, 0] == 1 and f[2, 1, 0, 1] == 1  # 50 / 100 * 4 = 2
    assert f[3, 0, 0, 2] == 1  # t_last: the closed last bin
    assert f.sum() == 3


def test_single_event_and_shared_timestamp_go_to_the_first_bin() -> None:
    one = make_events([3], [2], [12345], [0])
    f = to_frames(one, SENSOR, 6, clip=None)
    assert f[0, 0, 2, 3] == 1 and f.sum() == 1
    same_t = make_events([0, 1], [0, 0], [7, 7], [0, 1])
    assert to_frames(same_t, SENSOR, 3, clip=None)[0].sum() == 2


def test_empty_events_give_empty_frames() -> None:
    f = to_frames(np.zeros(0, dtype=EVENT_DTYPE), SENSOR, 5)
    assert f.shape == (5, 2, 4, 6) and f.sum() == 0 and f.dtype == np.uint8
    f = to_frames(np.zeros(0, dtype=EVENT_DTYPE), SENSOR, 5, duration=100)
    assert f.sum() == 0


def test_fixed_duration_drops_events_outside_the_window() -> None:
    ev = make_events([0, 0, 0, 0], [0, 0, 0, 0], [-1, 0, 99, 100], [1, 1, 1, 1])
    f = to_frames(ev, SENSOR, 2, clip=None, duration=100)
    assert f[0, 1, 0, 0] == 1 and f[1, 1, 0, 0] == 1 and f.sum() == 2
    g = to_frames(ev, SENSOR, 2, clip=None, duration=100, t_start=-1)
    assert g[0, 1, 0, 0] == 2 and g.sum() == 2  # [-1, 49) holds -1 and 0; [49, 99) nothing


def test_clip_caps_counts_and_default_is_binary() -> None:
    ev = make_events([1] * 5, [1] * 5, [0, 1, 2, 3, 4], [1] * 5)
    assert to_frames(ev, SENSOR, 1, clip=None).max() == 5
    assert to_frames(ev, SENSOR, 1, clip=3).max() == 3
    assert DEFAULT_CLIP == 1 and to_frames(ev, SENSOR, 1).max() == 1


def test_downsample_sums_blocks_then_clips() -> None:
    # One event in each pixel of the 2x2 block at (x, y) in {2, 3} x {0, 1}.
    ev = make_events([2, 3, 2, 3], [0, 0, 1, 1], [0, 1, 2, 3], [0, 0, 0, 0])
    f = to_frames(ev, SENSOR, 1, clip=None, downsample=2)
    assert f.shape == (1, 2, 2, 3) and f[0, 0, 0, 1] == 4 and f.sum() == 4
    assert to_frames(ev, SENSOR, 1, clip=3, downsample=2)[0, 0, 0, 1] == 3
    # Clipping after the sum, not before: each full-resolution pixel has count 1 <= clip.
    assert to_frames(ev, SENSOR, 1, clip=2, downsample=2)[0, 0, 0, 1] == 2


def test_single_polarity_sensor_merges_polarities() -> None:
    ev = make_events([0, 0], [0, 0], [0, 1], [0, 1])
    f = to_frames(ev, (6, 4, 1), 1, clip=None)
    assert f.shape == (1, 1, 4, 6) and f[0, 0, 0, 0] == 2


def test_tonic_style_arrays_are_accepted() -> None:
    """tonic's events_struct: int16 x, y, int64 t, bool p, possibly in another field order."""
    tonic_dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    ev = np.zeros(2, dtype=tonic_dtype)
    ev["x"], ev["y"], ev["t"], ev["p"] = [1, 2], [3, 0], [0, 10], [True, False]
    f = to_frames(ev, SENSOR, 2, clip=None)
    assert f[0, 1, 3, 1] == 1 and f[1, 0, 0, 2] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip": 0.5}, "clip"),
        ({"clip": 0}, "clip"),
        ({"clip": 256}, "clip"),
        ({"downsample": 4}, "divide"),
        ({"downsample": 0}, "downsample"),
        ({"n_time_bins": 0}, "n_time_bins"),
        ({"duration": 0}, "duration"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs: dict, match: str) -> None:
    ev = make_events([0], [0], [0], [0])
    args = {"events": ev, "sensor_size": SENSOR, "n_time_bins": 2, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        to_frames(**args)
    assert "\n" not in str(err.value)


def test_out_of_sensor_events_and_missing_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="sensor"):
        to_frames(make_events([6], [0], [0], [0]), SENSOR, 1)
    with pytest.raises(ValueError, match="polarities"):
        to_frames(make_events([0], [0], [0], [2]), SENSOR, 1)
    with pytest.raises(ValueError, match="fields"):
        to_frames(np.zeros(1, dtype=[("x", int), ("t", int)]), SENSOR, 1)
    # negative values too (the range check views signed integers as unsigned)
    for x, y, p in [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]:
        with pytest.raises(ValueError, match="sensor|polarities"):
            to_frames(make_events([x], [y], [0], [p]), SENSOR, 1)
    tonic_like = np.zeros(1, dtype=[("x", "<f8"), ("y", "<f8"), ("t", "<i8"), ("p", "?")])
    tonic_like["x"] = -1.0
    with pytest.raises(ValueError, match="sensor"):
        to_frames(tonic_like, SENSOR, 1)


def test_event_set_is_a_sequence_of_events_and_labels() -> None:
    evs = [make_events([0], [0], [i], [1]) for i in range(3)]
    s = EventSet(evs, np.array([2, 0, 1]))
    assert len(s) == 3 and s[1][1] == 0 and isinstance(s[1][1], int) and s[2][0] is evs[2]
    assert [lab for _, lab in s] == [2, 0, 1]
    with pytest.raises(ValueError, match="one length"):
        EventSet(evs, np.array([0, 1]))


def test_count_dtype_holds_every_possible_count() -> None:
    assert count_dtype(0) == np.uint16 and count_dtype(65535) == np.uint16
    assert count_dtype(65536) == np.uint32 and count_dtype(2**32) == np.int64
    ev = make_events(np.zeros(70_000, int), np.zeros(70_000, int), np.zeros(70_000, int), np.zeros(70_000, int))
    f = to_frames(ev, SENSOR, 1, clip=None)
    assert f.dtype == np.uint32 and f[0, 0, 0, 0] == 70_000  # all in one pixel: no overflow
