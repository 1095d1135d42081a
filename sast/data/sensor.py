"""A simulated event sensor (DVS pixel model) that turns intensity videos into events.

Each pixel holds a reference log intensity ``ref`` (initially the log
intensity of the first video frame). With L = log(I + eps), a pixel emits an
ON event (p = 1) each time L rises one contrast threshold C_on above ``ref``
and an OFF event (p = 0) each time it falls C_off below, moving ``ref`` by one
threshold per event (as the DVS of Lichtsteiner et al. 2008, and the
simulators ESIM and v2e):

    n = floor((L_k - ref) / C_on)  ON events  if L_k > ref,
    n = floor((ref - L_k) / C_off) OFF events if L_k < ref,   ref += +-n C.

A change that crosses several thresholds within one video step therefore
gives several events; each is stamped at the time its threshold level is
crossed, with L interpolated linearly between the two frames of the step
(stamped with the microsecond tick it falls in, so every event of step k lies
in [t_{k-1}, t_k)).

Non-idealities, all drawn from an explicit ``numpy.random.Generator``:

- threshold mismatch: C_on and C_off of each pixel are drawn once per
  recording from N(C, sigma^2), floored at ``threshold_min``;
- background activity: a Poisson process of ``noise_rate_hz`` events per
  second per pixel (polarity ON or OFF with probability 1/2, uniform times over
  the recording) that does not move ``ref``;
- refractory period: after any event (signal or noise) a pixel is blind for
  ``refractory_us``; an event within that time of the pixel's last *emitted*
  event is dropped (a non-paralysable dead time, so a Poisson input of rate r
  comes out at rate r / (1 + r tau)). The reference keeps tracking L, so a
  change during the blind time is lost, not delayed, as in a real pixel.

Everything is vectorised over pixels (and over a batch of recordings); the
Python loops run over video steps and over the rounds of the refractory
filter (as many as the longest run of too-close events in one pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sast.data.events import make_events

US_PER_S = 1_000_000


@dataclass(frozen=True)
class SensorParams:
    """Parameters of the simulated DVS pixel.

    For comparison, the v2e simulator (SensorsINI/v2e, ``EventEmulator``)
    defaults to thresholds 0.2 +- 0.03 (log units) and 0.1 Hz leak noise, and
    its "noisy" preset to sigma 0.05, 5 Hz shot noise and a 10 ms refractory
    period. Ours sit in that range: a slightly higher threshold (0.3) and a
    1 ms refractory period, chosen with ``log_eps`` so that synth-nmnist has
    N-MNIST's event count. ``log_eps`` sets the darkest intensity the log
    resolves: a full black-to-white edge gives about log((1 + eps) / eps) / C
    events (about 6 with the defaults).
    """

    threshold: float = 0.3
    threshold_sigma: float = 0.03
    threshold_min: float = 0.05
    refractory_us: int = 1000
    noise_rate_hz: float = 0.5
    log_eps: float = 0.15

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0 (log units), got {self.threshold}")
        if not self.threshold_sigma >= 0:
            raise ValueError(f"threshold_sigma must be >= 0, got {self.threshold_sigma}")
        if not 0 < self.threshold_min <= self.threshold:
            raise ValueError(
                f"threshold_min must lie in (0, threshold={self.threshold}], got {self.threshold_min}"
            )
        if not self.refractory_us >= 0:
            raise ValueError(f"refractory_us must be >= 0, got {self.refractory_us}")
        if not self.noise_rate_hz >= 0:
            raise ValueError(f"noise_rate_hz must be >= 0, got {self.noise_rate_hz}")
        if not self.log_eps > 0:
            raise ValueError(f"log_eps must be > 0 (it keeps log(I + eps) finite at I = 0), got {self.log_eps}")


def _check_video(videos: np.ndarray, timestamps_us: np.ndarray) -> np.ndarray:
    timestamps_us = np.asarray(timestamps_us, dtype=np.int64)
    if timestamps_us.ndim != 1 or len(timestamps_us) != videos.shape[1]:
        raise ValueError(
            f"need one timestamp per video step: {videos.shape[1]} steps, timestamps of shape {timestamps_us.shape}"
        )
    if len(timestamps_us) < 2 or np.any(np.diff(timestamps_us) <= 0):
        raise ValueError("timestamps_us must be at least two strictly increasing microsecond times")
    if videos.size and (np.nanmin(videos) < 0 or np.nanmax(videos) > 1 or np.isnan(videos).any()):
        raise ValueError("video intensities must lie in [0, 1]; rescale the video first")
    return timestamps_us


def _draw_recording(
    rng: np.random.Generator, params: SensorParams, h: int, w: int, t_first: int, t_last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel thresholds (2, H*W) [ON, OFF] and background events of one recording."""
    thresholds = params.threshold + params.threshold_sigma * rng.standard_normal((2, h * w))
    thresholds = np.maximum(thresholds, params.threshold_min)
    expected = params.noise_rate_hz * h * w * (t_last - t_first) / US_PER_S
    n = rng.poisson(expected)
    pix = rng.integers(0, h * w, size=n)
    t = rng.integers(t_first, t_last, size=n)
    p = rng.integers(0, 2, size=n)
    noise = np.empty(n, dtype=[("pix", np.int64), ("t", np.int64), ("p", np.int8)])
    noise["pix"], noise["t"], noise["p"] = pix, t, p
    return thresholds, noise


def _order_by(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Indices sorting integer arrays by ``major``, then ``minor`` (stable): one sort on a combined key."""
    if len(major) == 0:
        return np.zeros(0, dtype=np.int64)
    major = major.astype(np.int64) - major.min()
    minor = minor.astype(np.int64) - minor.min()
    span = int(minor.max()) + 1
    if (int(major.max()) + 1) * span < 2**62:  # the combined key fits in int64
        return np.argsort(major * span + minor, kind="stable")
    return np.lexsort((minor, major))


def refractory_filter(pix: np.ndarray, t: np.ndarray, refractory_us: int) -> np.ndarray:
    """Indices, sorted by (pixel, time), of the events a pixel with dead time ``refractory_us`` lets through.

    Greedy and exact: an event is kept iff it comes at least ``refractory_us``
    after the last *kept* event of its pixel. Each round drops, in every run
    of too-close events, the first one (its predecessor is then certainly
    kept), so it needs as many rounds as the longest run; rounds after the
    first look only at the pixels that had a too-close pair.
    """
    order = _order_by(pix, t)
    if refractory_us <= 0 or len(order) < 2:
        return order

    def too_close(idx: np.ndarray) -> np.ndarray:
        ps, ts = pix[idx], t[idx]
        close = np.zeros(len(idx), dtype=bool)
        close[1:] = (ps[1:] == ps[:-1]) & (ts[1:] - ts[:-1] < refractory_us)
        return close

    close = too_close(order)
    if not close.any():
        return order
    dirty = np.isin(pix[order], pix[order][close])
    clean, work = order[~dirty], order[dirty]
    while close.any():
        close = too_close(work)
        first_close = close.copy()
        first_close[1:] &= ~close[:-1]
        work = work[~first_close]
    kept = np.concatenate([clean, work])
    return kept[_order_by(pix[kept], t[kept])]


def simulate_batch(
    videos: np.ndarray,
    timestamps_us: np.ndarray,
    rngs: Sequence[np.random.Generator],
    params: SensorParams = SensorParams(),
) -> list[np.ndarray]:
    """Events (EVENT_DTYPE, sorted by time) of B recordings, one per video.

    ``videos`` has shape (B, n_steps, H, W) with intensities in [0, 1], all
    sampled at the same ``timestamps_us`` (n_steps,); ``rngs[b]`` draws the
    thresholds and noise of recording b, so a recording does not depend on
    which others share its batch.
    """
    videos = np.asarray(videos)
    if videos.ndim != 4:
        raise ValueError(f"videos must have shape (B, n_steps, H, W), got {videos.shape}")
    if len(rngs) != videos.shape[0]:
        raise ValueError(f"need one Generator per recording: {videos.shape[0]} videos, {len(rngs)} generators")
    timestamps_us = _check_video(videos, timestamps_us)
    n_rec, n_steps, h, w = videos.shape
    n_pix = h * w
    t_first, t_last = int(timestamps_us[0]), int(timestamps_us[-1])

    drawn = [_draw_recording(rng, params, h, w, t_first, t_last) for rng in rngs]
    c_on = np.concatenate([d[0][0] for d in drawn])
    c_off = np.concatenate([d[0][1] for d in drawn])

    # Only pixels whose intensity changes can cross a threshold; the rest give noise alone.
    flat = videos.reshape(n_rec, n_steps, n_pix).transpose(1, 0, 2).reshape(n_steps, n_rec * n_pix)
    active = np.flatnonzero(flat.max(axis=0) > flat.min(axis=0))
    log_video = np.log(flat[:, active].astype(np.float64) + params.log_eps)
    c_on, c_off = c_on[active], c_off[active]

    ref = log_video[0].copy()
    # The levels whose crossing fires the next ON / OFF event, kept up to date so
    # that the test on all pixels each step is two comparisons.
    upper, lower = ref + c_on, ref - c_off
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k in range(1, n_steps):
        cur = log_video[k]
        fired = np.flatnonzero((cur >= upper) | (cur <= lower))
        if len(fired) == 0:
            continue
        prev = log_video[k - 1, fired]
        now = cur[fired]
        delta = now - ref[fired]
        on = delta > 0
        step_c = np.where(on, c_on[fired], c_off[fired])
        sign = np.where(on, 1.0, -1.0)
        # At least one: the division can round just below 1 where the comparison above held.
        nf = np.maximum(np.floor(np.abs(delta) / step_c), 1.0).astype(np.int64)
        # The j-th crossing (j = 1..n) of each fired pixel, at level ref + sign * j * C.
        rep = np.repeat(np.arange(len(fired)), nf)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(nf) - nf, nf) + 1
        level = ref[fired][rep] + sign[rep] * j * step_c[rep]
        p0, p1 = prev[rep], now[rep]
        # After each step |L - ref| < C, so a crossing needs p1 != p0; the guard is for rounding only.
        span = np.where(p1 != p0, p1 - p0, 1.0)
        frac = np.clip((level - p0) / span, 0.0, 1.0)
        t0, t1 = timestamps_us[k - 1], timestamps_us[k]
        t_ev = np.minimum(t0 + np.floor(frac * (t1 - t0)).astype(np.int64), t1 - 1)
        chunks.append((active[fired][rep], t_ev, on[rep].astype(np.int8)))
        ref[fired] += sign * nf * step_c
        upper[fired] = ref[fired] + c_on[fired]
        lower[fired] = ref[fired] - c_off[fired]

    offsets = np.arange(n_rec, dtype=np.int64) * n_pix
    noise_pix = np.concatenate([d[1]["pix"] + off for d, off in zip(drawn, offsets)])
    noise_t = np.concatenate([d[1]["t"] for d in drawn])
    noise_p = np.concatenate([d[1]["p"] for d in drawn])
    gpix = np.concatenate([c[0] for c in chunks] + [noise_pix])
    t = np.concatenate([c[1] for c in chunks] + [noise_t])
    p = np.concatenate([c[2] for c in chunks] + [noise_p])

    kept = refractory_filter(gpix, t, params.refractory_us)
    gpix, t, p = gpix[kept], t[kept], p[kept]
    rec = gpix // n_pix
    # By recording, then time; ties keep the (pixel, time) order of the filter: deterministic.
    order = _order_by(rec, t)
    gpix, t, p, rec = gpix[order], t[order], p[order], rec[order]
    local = gpix - rec * n_pix
    bounds = np.searchsorted(rec, np.arange(n_rec + 1))
    return [
        make_events(local[a:b] % w, local[a:b] // w, t[a:b], p[a:b])
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


def simulate_events(
    video: np.ndarray,
    timestamps_us: np.ndarray,
    rng: np.random.Generator,
    params: SensorParams = SensorParams(),
) -> np.ndarray:
    """Events (EVENT_DTYPE, sorted by time) that the sensor emits watching ``video`` (n_steps, H, W)."""
    video = np.asarray(video)
    if video.ndim != 3:
        raise ValueError(f"video must have shape (n_steps, H, W), got {video.shape}")
    return simulate_batch(video[None], timestamps_us, [rng], params)[0]


__all__ = ["SensorParams", "refractory_filter", "simulate_batch", "simulate_events"]
