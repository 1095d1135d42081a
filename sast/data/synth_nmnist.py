"""synth-nmnist: scikit-learn's digits seen by a simulated event sensor during three saccades.

N-MNIST (Orchard et al. 2015, "Converting static image datasets to spiking
neuromorphic datasets using saccades") was recorded by moving an ATIS sensor
in three ~100 ms saccades along a triangle in front of a screen showing an
MNIST digit; it has a 34 x 34 sensor, two polarities and ~4000 events per
300 ms sample. This module builds its embedded stand-in without downloading
anything:

1. the 1797 8 x 8 images of ``sklearn.datasets.load_digits`` (values 0-16)
   are upsampled bilinearly to 28 x 28, scaled to [0, 1] and centred on a
   black 34 x 34 canvas;
2. the canvas moves along the triangle ``SACCADE_VERTICES_PX`` at constant
   speed, one side per ``SACCADE_DURATION_US``, rendered every
   ``SIM_STEP_US`` by bilinear interpolation;
3. the sensor model of ``sast.data.sensor`` (parameters ``SENSOR``) turns
   each video into events.

The train/test split is fixed (stratified by digit, ``TEST_FRACTION`` of the
images, ``SPLIT_SEED``) and does not depend on the generation seed; each
training image is recorded ``TRAIN_PASSES`` times (fresh threshold mismatch
and noise each pass), each test image once. Recording (split, image, pass)
draws from its own generator, seeded by (seed, split, image, pass), so it is
the same whatever ``limit`` or batch it is generated in.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from sast.data.events import EventSet, check_split
from sast.data.sensor import SensorParams, simulate_batch

GENERATOR_VERSION = 1
"""Bumped whenever any constant or step below changes what is generated."""

NAME = "synth-nmnist"
SENSOR_SIZE = (34, 34, 2)  # (W, H, P), as N-MNIST
NUM_CLASSES = 10
CANVAS_SIZE = 34
DIGIT_SIZE = 28  # MNIST's digit size, which N-MNIST shows on its 34 x 34 sensor
SOURCE_MAX = 16.0  # load_digits pixels are counts 0..16 (4 x 4 blocks of a 32 x 32 bitmap)

SACCADE_VERTICES_PX = ((-2.0, -2.0), (0.0, 2.0), (2.0, -2.0))
"""(dx, dy) corners of the triangle; the path returns to the first corner.

Sides of about 4.5 px, centred on the canvas, so the 28 px digit (3 px from
each border) stays in view; N-MNIST's saccades move the image a few pixels.
"""
SACCADE_DURATION_US = 100_000
N_SACCADES = len(SACCADE_VERTICES_PX)
RECORDING_DURATION_US = N_SACCADES * SACCADE_DURATION_US
SIM_STEP_US = 5_000
"""Video step: 0.22 px of motion per step at the speed above. Crossings between
steps are timed by interpolation, so a finer step changes little but costs
more: 1 ms, 2.5 ms and 5 ms steps gave the same mean event count (3971 on the
test split) to within 0.01 %, at 4x, 2x and 1x the time."""

TEST_FRACTION = 0.2
SPLIT_SEED = 0
TRAIN_PASSES = 3
TEST_PASSES = 1
_SPLIT_CODE = {"train": 0, "test": 1}

CHUNK_IMAGES = 48
"""Images simulated together: large enough to amortise the per-step overhead,
small enough to keep the video batch (images x passes x steps x pixels) near 100 MB."""

SENSOR = SensorParams(
    threshold=0.3, threshold_sigma=0.03, threshold_min=0.05, refractory_us=1000, noise_rate_hz=0.5, log_eps=0.15
)
"""Sensor of this set, pinned here (not taken from SensorParams' defaults, which may change)
so that GENERATOR_VERSION alone says what was generated; it gives 3970 events per sample
on average, N-MNIST's ~4000."""


def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digit canvases (N, 34, 34) in [0, 1] (float32) and their labels (N,)."""
    digits = load_digits()
    images = digits.images.astype(np.float64) / SOURCE_MAX
    factor = DIGIT_SIZE / images.shape[1]
    big = np.clip(zoom(images, (1, factor, factor), order=1), 0.0, 1.0)
    canvas = np.zeros((len(images), CANVAS_SIZE, CANVAS_SIZE), dtype=np.float32)
    o = (CANVAS_SIZE - DIGIT_SIZE) // 2
    canvas[:, o : o + DIGIT_SIZE, o : o + DIGIT_SIZE] = big
    return canvas, digits.target.astype(np.int64)


def split_indices(split: str) -> np.ndarray:
    """Indices into ``source_digits()`` of the images of ``split`` (fixed, stratified by digit)."""
    check_split(split)
    labels = load_digits().target
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return np.asarray(train if split == "train" else test, dtype=np.int64)


def saccade_timestamps() -> np.ndarray:
    """Video step times in microseconds, 0 to RECORDING_DURATION_US inclusive."""
    return np.arange(0, RECORDING_DURATION_US + 1, SIM_STEP_US, dtype=np.int64)


def saccade_path(t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canvas offset (dx, dy) in pixels at times ``t_us``: constant speed along the triangle."""
    corners = np.array(SACCADE_VERTICES_PX + SACCADE_VERTICES_PX[:1], dtype=np.float64)
    pos = np.clip(np.asarray(t_us, dtype=np.float64) / SACCADE_DURATION_US, 0.0, N_SACCADES)
    side = np.minimum(pos.astype(np.int64), N_SACCADES - 1)
    frac = (pos - side)[:, None]
    xy = corners[side] * (1 - frac) + corners[side + 1] * frac
    return xy[:, 0], xy[:, 1]


def render_video(canvases: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Videos (B, n_steps, H, W): each canvas shifted by (dx[k], dy[k]) px, bilinear, black outside.

    ``out[y, x] = canvas(y - dy, x - dx)`` sampled bilinearly, so positive dx
    moves the image right.
    """
    b, h, w = canvases.shape
    pad = int(np.ceil(max(np.abs(dx).max(), np.abs(dy).max()))) + 1
    padded = np.pad(canvases, ((0, 0), (pad, pad), (pad, pad)))
    out = np.empty((b, len(dx), h, w), dtype=np.float32)
    for k, (sx, sy) in enumerate(zip(dx, dy)):
        ix, iy = int(np.floor(-sx)), int(np.floor(-sy))
        fx, fy = -sx - ix, -sy - iy
        y0, x0 = pad + iy, pad + ix

        def window(oy: int, ox: int) -> np.ndarray:
            return padded[:, y0 + oy : y0 + oy + h, x0 + ox : x0 + ox + w]

        out[:, k] = (
            (1 - fy) * ((1 - fx) * window(0, 0) + fx * window(0, 1))
            + fy * ((1 - fx) * window(1, 0) + fx * window(1, 1))
        )
    return np.clip(out, 0.0, 1.0)


def generate(
    split: str,
    seed: int = 0,
    *,
    limit: int | None = None,
    passes: int | None = None,
    params: SensorParams = SENSOR,
    progress: bool = True,
) -> EventSet:
    """The event recordings of ``split``: ``passes`` sensor passes over each of its images.

    ``passes`` defaults to TRAIN_PASSES for train and TEST_PASSES for test.
    Recordings are ordered image by image, passes of one image together;
    ``limit`` keeps the first ``limit`` recordings (samples, not images), and
    only those are simulated.
    """
    check_split(split)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (recordings) or None (all), got {limit!r}")
    n_passes = (TRAIN_PASSES if split == "train" else TEST_PASSES) if passes is None else int(passes)
    if n_passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes!r}")

    canvases, labels = source_digits()
    images = split_indices(split)
    n_rec = len(images) * n_passes if limit is None else min(int(limit), len(images) * n_passes)
    images = images[: -(-n_rec // n_passes)]  # ceil: the images the first n_rec recordings show
    timestamps = saccade_timestamps()
    dx, dy = saccade_path(timestamps)

    events: list[np.ndarray] = []
    sources = np.repeat(images, n_passes)[:n_rec]
    passes_of = np.tile(np.arange(n_passes), len(images))[:n_rec]
    bar = tqdm(total=n_rec, desc=f"{NAME} {split}", unit="rec", file=sys.stderr, disable=not progress)
    with bar:
        for start in range(0, n_rec, CHUNK_IMAGES * n_passes):
            src = sources[start : start + CHUNK_IMAGES * n_passes]
            q = passes_of[start : start + CHUNK_IMAGES * n_passes]
            chunk, first = np.unique(src, return_inverse=True)
            videos = render_video(canvases[chunk], dx, dy)[first]  # each image rendered once per chunk
            rngs = [np.random.default_rng([int(seed), _SPLIT_CODE[split], int(i), int(k)]) for i, k in zip(src, q)]
            events.extend(simulate_batch(videos, timestamps, rngs, params))
            bar.update(len(rngs))
    return EventSet(events, labels[sources], sources=sources, passes=passes_of)
