"""Event corruptions for robustness evaluation, each at severities 1..5.

Every corruption is a pure function ``f(events, severity, rng, sensor_size, duration_us)``
of a structured event array (x, y, t in microseconds, p; see ``sast.data.events``)
returning a new array sorted by time; randomness comes only from the numpy Generator
``rng``. The suite follows the usual sensor failure modes of event cameras:

- ``background_noise``: extra uniformly random events (leak/shot noise), rate per pixel;
- ``event_drop``: each event dropped independently (bandwidth limits);
- ``temporal_jitter``: Gaussian timestamp noise (timestamping latency);
- ``spatial_jitter``: Gaussian pixel-position noise, rounded, events leaving the sensor dropped;
- ``polarity_flip``: each polarity flipped independently;
- ``hot_pixels``: a few random pixels firing at a high rate throughout;
- ``time_scaling``: the recording played slower (timestamps stretched), so a fixed
  binning window sees only the start of the motion.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sast.data.events import EVENT_DTYPE, make_events

SEVERITIES = (1, 2, 3, 4, 5)

# Severity tables (index = severity - 1). Chosen so that severity 1 is mild and 5 is harsh
# for a ~4000-event, 300 ms, 34x34 recording.
NOISE_RATE_HZ = (2.0, 5.0, 10.0, 20.0, 40.0)  # background events per pixel and second
DROP_FRACTION = (0.1, 0.2, 0.4, 0.6, 0.8)
TIME_JITTER_US = (1_000.0, 3_000.0, 10_000.0, 30_000.0, 60_000.0)  # standard deviation
SPACE_JITTER_PX = (0.5, 1.0, 1.5, 2.0, 3.0)  # standard deviation
FLIP_FRACTION = (0.05, 0.1, 0.2, 0.3, 0.5)
HOT_PIXELS = (1, 3, 6, 10, 20)  # number of hot pixels
HOT_PIXEL_RATE_HZ = 1_000.0  # events per second of one hot pixel
TIME_STRETCH = (1.1, 1.25, 1.5, 1.75, 2.0)

Corruption = Callable[[np.ndarray, int, np.random.Generator, tuple[int, int, int], int], np.ndarray]


def _level(table: tuple, severity: int):
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return table[severity - 1]


def _sorted(ev: np.ndarray) -> np.ndarray:
    return ev[np.argsort(ev["t"], kind="stable")]


def _random_events(n: int, rng: np.random.Generator, sensor_size, t_lo: int, t_hi: int) -> np.ndarray:
    w, h, p = sensor_size
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(t_lo, max(t_hi, t_lo + 1), n),
                       rng.integers(0, p, n))


def background_noise(events, severity, rng, sensor_size, duration_us):
    """Add Poisson(rate * W * H * duration) uniformly random events."""
    w, h, _ = sensor_size
    n = rng.poisson(_level(NOISE_RATE_HZ, severity) * w * h * duration_us * 1e-6)
    return _sorted(np.concatenate([events, _random_events(n, rng, sensor_size, 0, duration_us)]))


def event_drop(events, severity, rng, sensor_size, duration_us):
    """Drop each event independently with the severity's probability."""
    return events[rng.random(len(events)) >= _level(DROP_FRACTION, severity)].copy()


def temporal_jitter(events, severity, rng, sensor_size, duration_us):
    """Add Gaussian noise to timestamps (clipped at 0), then re-sort."""
    out = events.copy()
    noise = rng.normal(0.0, _level(TIME_JITTER_US, severity), len(events))
    out["t"] = np.maximum(0, np.round(events["t"] + noise)).astype(out["t"].dtype)
    return _sorted(out)


def spatial_jitter(events, severity, rng, sensor_size, duration_us):
    """Move each event by rounded Gaussian pixel offsets; events leaving the sensor are dropped."""
    w, h, _ = sensor_size
    sigma = _level(SPACE_JITTER_PX, severity)
    x = events["x"] + np.round(rng.normal(0.0, sigma, len(events))).astype(np.int64)
    y = events["y"] + np.round(rng.normal(0.0, sigma, len(events))).astype(np.int64)
    keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return make_events(x[keep], y[keep], events["t"][keep], events["p"][keep])


def polarity_flip(events, severity, rng, sensor_size, duration_us):
    """Flip each event's polarity independently with the severity's probability."""
    out = events.copy()
    flip = rng.random(len(events)) < _level(FLIP_FRACTION, severity)
    out["p"][flip] = 1 - out["p"][flip]
    return out


def hot_pixels(events, severity, rng, sensor_size, duration_us):
    """Add a few pixels that fire at HOT_PIXEL_RATE_HZ (random polarity) over the whole window."""
    w, h, p = sensor_size
    k = _level(HOT_PIXELS, severity)
    xs, ys = rng.integers(0, w, k), rng.integers(0, h, k)
    n_each = rng.poisson(HOT_PIXEL_RATE_HZ * duration_us * 1e-6, k)
    x = np.repeat(xs, n_each)
    y = np.repeat(ys, n_each)
    t = rng.integers(0, max(duration_us, 1), x.size)
    hot = make_events(x, y, t, rng.integers(0, p, x.size))
    return _sorted(np.concatenate([events, hot]))


def time_scaling(events, severity, rng, sensor_size, duration_us):
    """Stretch timestamps by the severity's factor (slower motion); deterministic."""
    out = events.copy()
    out["t"] = np.round(events["t"] * _level(TIME_STRETCH, severity)).astype(out["t"].dtype)
    return out


CORRUPTIONS: dict[str, Corruption] = {
    "background_noise": background_noise,
    "event_drop": event_drop,
    "temporal_jitter": temporal_jitter,
    "spatial_jitter": spatial_jitter,
    "polarity_flip": polarity_flip,
    "hot_pixels": hot_pixels,
    "time_scaling": time_scaling,
}


def corrupt(events: np.ndarray, name: str, severity: int, rng: np.random.Generator,
            sensor_size: tuple[int, int, int], duration_us: int) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1..5); a one-line error for unknown names."""
    if name not in CORRUPTIONS:
        import difflib

        close = difflib.get_close_matches(name, CORRUPTIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown corruption {name!r}{hint}; known: {', '.join(CORRUPTIONS)}")
    if events.dtype.names is None or not set(EVENT_DTYPE.names) <= set(events.dtype.names):
        raise ValueError(f"events must be a structured array with fields {EVENT_DTYPE.names}")
    return CORRUPTIONS[name](events, severity, rng, sensor_size, duration_us)


def corrupted_frames(
    name: str,
    split: str,
    T: int,
    corruption: str,
    severity: int,
    *,
    events=None,
    seed: int = 0,
    root=None,
    clip: int = 1,
    limit: int | None = None,
    progress: bool = False,
):
    """Frames (N, T, P, H, W) uint8 of ``split`` of data set ``name`` after ``corruption`` at ``severity``.

    The binning is the data set's default (its window and downsampling), as in
    ``frame_dataset``. Each recording gets its own generator seeded by (seed, corruption,
    severity, index), so the result does not depend on evaluation order. ``events`` may
    pass an already loaded ``event_dataset`` to avoid regenerating it.
    """
    import torch
    from tqdm.auto import tqdm

    from sast.data.events import to_frames
    from sast.data.registry import event_dataset, get_spec

    spec = get_spec(name)
    ev = events if events is not None else event_dataset(name, split, root, seed=seed, limit=limit, progress=progress)
    names = list(CORRUPTIONS)
    if corruption not in CORRUPTIONS:
        corrupt(ev[0][0] if len(ev) else np.zeros(0, EVENT_DTYPE), corruption, severity, np.random.default_rng(0),
                spec.sensor_size, 1)  # raises the one-line error
    duration = spec.duration_us or 0
    frames = []
    for i in tqdm(range(len(ev)), desc=f"{corruption} s{severity}", disable=not progress, unit="rec"):
        recording, _ = ev[i]
        rng = np.random.default_rng([seed, names.index(corruption), severity, i])
        span = duration or int(recording["t"].max(initial=0)) + 1
        bad = corrupt(recording, corruption, severity, rng, spec.sensor_size, span)
        frames.append(to_frames(bad, spec.sensor_size, T, clip=clip, downsample=spec.default_downsample,
                                duration=spec.duration_us))
    return torch.from_numpy(np.stack(frames)) if frames else torch.empty(0, dtype=torch.uint8)
