"""Event arrays and their binning into frames of clipped event counts.

Events are numpy structured arrays with the fields of tonic's ``events_struct``
(``tonic.io``): ``x`` and ``y`` the pixel (column, row), ``t`` the timestamp in
microseconds, ``p`` the polarity, 1 for ON (brightening) and 0 for OFF
(darkening). tonic stores ``p`` as ``bool``; we store it as ``int8`` with the
same two values, so arrays convert both ways with ``astype``.

Frames are arrays (T, P, H, W) of event counts, clipped at ``clip``: the
theory's X_inf (THEORY.md, assumption A2: every input entry lies in
[0, X_inf]).

Time binning (``to_frames``), for T = ``n_time_bins``:

- ``duration=None`` (event range, as tonic's ``ToFrame(n_time_bins=T)``): the
  range from the first to the last event is split into T equal bins, starting
  at the first event, half-open ``[start, end)``. Event at time t falls in bin
  ``floor((t - t_first) * T / (t_last - t_first))``. Two deliberate departures
  from tonic 1.x (``slice_by_time_bins``), which uses an integer bin width
  ``(t_last - t_first) // T`` and half-open windows and so always drops the
  last event, and also every event in the remainder
  ``[t_first + T * width, t_last]``: here the bin width is exact (a rational
  number of microseconds) and the last bin is closed, so no event is dropped;
  when ``t_last - t_first`` is a multiple of T the bin edges are exactly
  tonic's. A recording whose events share one timestamp goes entirely into
  the first frame (tonic returns all-empty frames).
- ``duration=D`` (a fixed window, anchored at ``t_start``, default 0, the
  recording onset): bins of width D / T over ``[t_start, t_start + D)``; events
  outside are dropped. Bin edges then do not depend on the data, so frames of
  different recordings (and of different sensors) stay aligned in time (the
  problem raised in tonic issue #264).

Spatial downsampling by an integer factor f sums the counts of each f x f
block (pixel (x, y) goes to (x // f, y // f)) and clips afterwards, i.e. the
same as clipping the sum of the full-resolution counts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

import numpy as np

EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
"""x, y: pixel column and row; t: microseconds; p: 1 ON, 0 OFF (tonic's layout)."""

DEFAULT_CLIP = 1
"""Default X_inf: binary frames (a pixel and polarity either fired in a bin or not).

Binary inputs use the same alphabet as the spikes of every later layer, keep
X_inf = 1 in the theory's bounds (S_0 = X_inf), and make the input norm bound
A of assumption A2 the square root of the number of active entries. Little is
lost at the bin widths used here: on synth-nmnist at T = 20 (15 ms bins),
11.5 % of the nonzero entries count more than one event. Pass a larger clip
to keep counts.
"""

MAX_STORED_CLIP = 255
"""The largest clip that frames stored as uint8 can hold."""

BINNING_VERSION = 1
"""Bumped whenever ``to_frames`` changes what it computes, so caches rebuild."""

_REQUIRED_FIELDS = ("x", "y", "t", "p")
_INT64_MAX = int(np.iinfo(np.int64).max)

SPLITS = ("train", "test")
"""The splits every dataset has."""


def check_split(split: str) -> None:
    """A one-line ValueError, with the closest valid split, unless ``split`` is one of SPLITS."""
    if split not in SPLITS:
        close = difflib.get_close_matches(str(split), SPLITS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}{hint}")


def empty_events() -> np.ndarray:
    """An event array with no events."""
    return np.zeros(0, dtype=EVENT_DTYPE)


def make_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """An EVENT_DTYPE array from four equally long field arrays (copied, not sorted)."""
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise ValueError(
            f"x, y, t, p must have one length; got {len(x)}, {len(y)}, {n}, {len(p)}"
        )
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def check_clip(clip: float | int | None) -> int | None:
    """``clip`` as an int in [1, MAX_STORED_CLIP] (or None); a one-line ValueError otherwise."""
    if clip is None:
        return None
    if isinstance(clip, bool) or not float(clip).is_integer() or not 1 <= clip <= MAX_STORED_CLIP:
        raise ValueError(
            f"clip (X_inf) must be a whole number of events from 1 to {MAX_STORED_CLIP}, got {clip!r}; "
            f"use clip={DEFAULT_CLIP} for binary frames or a larger whole number for counts"
        )
    return int(clip)


def downsampled_size(sensor_size: tuple[int, int, int], downsample: int) -> tuple[int, int, int]:
    """The (W, H, P) of frames binned with spatial factor ``downsample`` (which must divide W and H)."""
    w, h, p = sensor_size
    if isinstance(downsample, bool) or int(downsample) != downsample or downsample < 1:
        raise ValueError(f"downsample must be a whole number >= 1, got {downsample!r}")
    if w % downsample or h % downsample:
        raise ValueError(
            f"downsample={downsample} must divide the sensor width and height {w}x{h}; "
            f"pick a divisor of both (for example 1 or {np.gcd(w, h)})"
        )
    return w // downsample, h // downsample, p


def _in_range(a: np.ndarray, bound: int) -> bool:
    """Whether every entry lies in [0, bound): one pass for integers (viewed as unsigned of the same
    width, a negative value becomes huge), min and max otherwise."""
    if a.size == 0:
        return True
    if a.dtype.kind == "i":
        return int(a.view(np.dtype(f"u{a.dtype.itemsize}")).max()) < bound
    if a.dtype.kind in "ub":
        return int(a.max()) < bound
    return bool(a.min() >= 0) and bool(a.max() < bound)


def time_bins(
    t: np.ndarray,
    n_time_bins: int,
    duration: int | None = None,
    t_start: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The frame index of each timestamp, and a mask of the timestamps kept (None: all of them).

    See the module docstring for the two conventions. Integer arithmetic
    throughout, so bin edges are exact: ``(t - t0) * T // D``.
    """
    t = np.asarray(t, dtype=np.int64)
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64), None
    window = int(t.max()) - int(t.min()) if duration is None else int(duration)  # Python ints: no overflow here
    if window > _INT64_MAX // n_time_bins:
        raise ValueError(f"a time window of {window} us split into {n_time_bins} bins overflows 64-bit integers; "
                         "timestamps must be microseconds of a recording (check the data's time unit)")
    if duration is None:
        t0 = t.min()
        span = max(int(t.max() - t0), 1)  # one shared timestamp: everything in bin 0
        idx = (t - t0) * n_time_bins // span
        # The last bin is closed: t == t_last gives idx == T and belongs to bin T - 1.
        return np.minimum(idx, n_time_bins - 1), None
    rel = t - t_start
    if _in_range(rel, duration):  # the usual case: every event inside the window
        rel *= n_time_bins  # rel is a fresh array: scale it in place
        rel //= duration
        return rel, None
    keep = (rel >= 0) & (rel < duration)
    idx = np.where(keep, rel, 0) * n_time_bins // duration
    return idx, keep


def to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    n_time_bins: int,
    clip: int | None = DEFAULT_CLIP,
    downsample: int = 1,
    duration: int | None = None,
    t_start: int = 0,
) -> np.ndarray:
    """Frames (T, P, H', W') of event counts, clipped at ``clip`` (X_inf).

    ``frames[b, p, y // f, x // f]`` counts the events of polarity p whose time
    falls in bin b (see the module docstring) and whose pixel lies in the
    f x f block, f = ``downsample``; the count is then capped at ``clip``.
    With ``sensor_size[2] == 1`` both polarities go to channel 0 (as tonic).
    Events need not be sorted. Returns uint8 when ``clip`` is set (at most
    MAX_STORED_CLIP), raw counts when ``clip`` is None (in ``count_dtype(len(events))``:
    uint16 below 65536 events, exact since no count exceeds the number of events).
    """
    names = events.dtype.names or ()
    missing = [f for f in _REQUIRED_FIELDS if f not in names]
    if missing:
        raise ValueError(
            f"events must be a structured array with fields x, y, t, p (EVENT_DTYPE); missing {missing}"
        )
    if isinstance(n_time_bins, bool) or int(n_time_bins) != n_time_bins or n_time_bins < 1:
        raise ValueError(f"n_time_bins must be a whole number >= 1, got {n_time_bins!r}")
    if duration is not None and (int(duration) != duration or duration < 1):
        raise ValueError(
            f"duration must be a whole number of microseconds >= 1 or None (event range), got {duration!r}"
        )
    clip = check_clip(clip)
    n_time_bins = int(n_time_bins)
    w, h, n_pol = (int(s) for s in sensor_size)
    wd, hd, _ = downsampled_size((w, h, n_pol), downsample)

    # native dtypes for the checks (int16 passes are cheaper), int64 only for the flat index
    x, y, p = events["x"], events["y"], events["p"]
    if not (_in_range(x, w) and _in_range(y, h)):
        raise ValueError(
            f"event pixels must lie in the sensor {w}x{h}; got x in [{x.min()}, {x.max()}], "
            f"y in [{y.min()}, {y.max()}]; pass the sensor_size the events were recorded with"
        )
    if n_pol == 1:
        p = np.zeros(len(events), dtype=np.int64)
    elif not _in_range(p, n_pol):
        raise ValueError(
            f"polarities must lie in [0, {n_pol - 1}] for a sensor with {n_pol} channels; "
            f"got [{p.min()}, {p.max()}]"
        )

    x, y, p = (a if a.dtype.kind in "iub" else a.astype(np.int64) for a in (x, y, p))  # e.g. float pixels
    b, keep = time_bins(events["t"], n_time_bins, None if duration is None else int(duration), t_start)
    if downsample != 1:
        x, y = x // downsample, y // downsample
    flat = b  # ((b * n_pol + p) * hd + y) * wd + x, in place: b is a fresh array of ours
    flat *= n_pol
    flat += p
    flat *= hd
    flat += y
    flat *= wd
    flat += x
    if keep is not None:
        flat = flat[keep]
    size = n_time_bins * n_pol * hd * wd
    if clip == 1:  # binary frames: mark the pixels, no counting needed
        frames = np.zeros(size, dtype=np.uint8)
        frames[flat] = 1
        return frames.reshape(n_time_bins, n_pol, hd, wd)
    counts = np.bincount(flat, minlength=size).reshape(n_time_bins, n_pol, hd, wd)
    if clip is None:
        # a count never exceeds the number of events: narrow and exact, and the short-lived int64
        # array is recycled by the allocator instead of faulting in fresh pages for every recording
        return counts.astype(count_dtype(len(events)))
    return np.minimum(counts, clip).astype(np.uint8)


def count_dtype(n_events: int) -> np.dtype:
    """The narrowest unsigned integer type that holds any count of ``n_events`` events."""
    for dt in (np.uint16, np.uint32):
        if n_events <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


class EventSet(Sequence):
    """A sequence of ``(events, label)`` recordings, with where each came from.

    ``sources[i]`` is the index of the source item that recording i shows
    (synth-nmnist: the image; nmnist: the file; synth-gesture and dvsgesture:
    the subject) and ``passes[i]`` which sensor pass over it (the repetition or
    session of a subject), so that splits by source (no leak between train and
    validation) are possible. ``events`` may be any sequence of arrays, e.g. one
    that reads each recording from disk when indexed (``sast.data.real``).
    """

    def __init__(
        self,
        events: list[np.ndarray],
        labels: np.ndarray,
        sources: np.ndarray | None = None,
        passes: np.ndarray | None = None,
    ) -> None:
        n = len(events)
        self.events = events
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sources = np.arange(n, dtype=np.int64) if sources is None else np.asarray(sources, dtype=np.int64)
        self.passes = np.zeros(n, dtype=np.int64) if passes is None else np.asarray(passes, dtype=np.int64)
        if not (len(self.labels) == len(self.sources) == len(self.passes) == n):
            raise ValueError(
                f"events, labels, sources and passes must have one length; got {n}, {len(self.labels)}, "
                f"{len(self.sources)}, {len(self.passes)}"
            )

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.events[i], int(self.labels[i])

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        return (self[i] for i in range(len(self)))
