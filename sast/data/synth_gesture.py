"""synth-gesture: 11 parametric arm and hand motions, per simulated subject, seen by a simulated event sensor.

DVS Gesture (Amir et al. 2017, "A Low Power, Fully Event-Based Gesture
Recognition System", CVPR) holds 11 gestures by 29 subjects in front of a
DVS128 (128 x 128 pixels, two polarities), users 1-23 for training and 24-29
for testing. This module builds an embedded stand-in without downloading
anything:

1. each subject draws its own parameters (``Subject``: gesture speed,
   amplitude, body position and size, hand brightness, background noise rate
   of its "recording session"); each recording (subject, repetition, class)
   jitters them a little and draws a starting phase (``Take``);
2. a scene of a dim upper body (head and torso) on a darker background, two
   arms (capsules from the shoulders) and two brighter hands (disks) is
   rendered while the hands move along the class's parametric path
   (``hand_paths``), every ``SIM_STEP_US``, on a ``RENDER_SCALE`` times coarser
   grid than the sensor and repeated onto its 128 x 128 pixels (rendering is
   the cost; the sensor's per-pixel threshold mismatch still tells the pixels
   of one block apart, and the default 4 x 4 binning cannot see the blocks);
3. the sensor model of ``sast.data.sensor`` (``SENSOR`` with the subject's
   noise rate) turns each video into events.

The subject faces the sensor, so the subject's right hand appears on the
sensor's left (smaller x). Rotation senses are as the sensor sees them, in
image coordinates (x right, y down): clockwise is right -> down -> left -> up.
The classes (tonic's order and labels):

====  ===========================  ==================================================================
  0   hand clap                    both hands meet and part horizontally in front of the chest
  1   right hand wave              right hand raised above the shoulder, swinging side to side
  2   left hand wave               mirror image of 1
  3   right arm clockwise          right hand on a circle beside the body, clockwise
  4   right arm counter-clockwise  3 played backwards in time
  5   left arm clockwise           mirror image of 4
  6   left arm counter-clockwise   mirror image of 3
  7   arm roll                     both hands on small circles in front of the belly, half a turn apart
  8   air drums                    both hands strike downwards in turn
  9   air guitar                   right hand strums fast and vertically, left hand slides on the "neck"
 10   other                        one hand (either) on a Lissajous figure with a random frequency ratio
====  ===========================  ==================================================================

Mirror images are taken about the body's vertical axis (x -> 2 cx - x, hands
swapped); the body is symmetric, so a mirrored class on a centred subject is
the mirrored video. Each recording lasts ``RECORDING_DURATION_US``.

Split by subject, as DVS Gesture: ``TRAIN_SUBJECTS`` (1-23) and
``TEST_SUBJECTS`` (24-29), each performing every class ``REPETITIONS`` times:
1012 training and 264 test recordings. Recordings are ordered subject by
subject, repetition by repetition, class by class, so that the first 11 hold
every class. ``EventSet.sources`` is the subject (train/validation splits by it
keep a subject on one side) and ``passes`` the repetition.

Recording (subject, repetition, class) draws its jitter and its sensor noise
from its own generators, seeded by (seed, subject, repetition, class), and a
subject's parameters from (seed, subject): a recording is the same whatever
``limit`` or batch it is generated in.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from sast.data.events import EventSet, check_split
from sast.data.sensor import US_PER_S, SensorParams, simulate_batch

GENERATOR_VERSION = 1
"""Bumped whenever any constant or step below changes what is generated."""

NAME = "synth-gesture"
SENSOR_SIZE = (128, 128, 2)  # (W, H, P), as DVS Gesture's DVS128
CLASSES = (
    "hand clap",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other",
)
NUM_CLASSES = len(CLASSES)
(
    HAND_CLAP,
    RIGHT_HAND_WAVE,
    LEFT_HAND_WAVE,
    RIGHT_ARM_CW,
    RIGHT_ARM_CCW,
    LEFT_ARM_CW,
    LEFT_ARM_CCW,
    ARM_ROLL,
    AIR_DRUMS,
    AIR_GUITAR,
    OTHER,
) = range(NUM_CLASSES)

RIGHT, LEFT = 0, 1
"""Hand indices: the subject's right hand (seen on the sensor's left) and left hand."""
SIDE_SIGN = np.array([-1.0, 1.0])
"""The x direction, on the sensor, of the side of each hand (RIGHT, LEFT)."""

MIRRORED = {LEFT_HAND_WAVE: RIGHT_HAND_WAVE, LEFT_ARM_CW: RIGHT_ARM_CCW, LEFT_ARM_CCW: RIGHT_ARM_CW}
"""Classes defined as the mirror image of another (x -> 2 cx - x, hands swapped)."""
REVERSED = {RIGHT_ARM_CCW: RIGHT_ARM_CW}
"""Classes defined as another played backwards in time (t -> duration - t)."""

# --- subjects and the split ---------------------------------------------------------------------

TRAIN_SUBJECTS = tuple(range(1, 24))  # DVS Gesture's users 1-23
TEST_SUBJECTS = tuple(range(24, 30))  # and 24-29
REPETITIONS = 4
"""Recordings of each class by each subject (DVS Gesture has about four sessions, one per
lighting condition, per subject); gives 1012 train and 264 test recordings (tonic's DVS
Gesture test split also holds 264)."""


@dataclass(frozen=True)
class Range:
    """A closed interval [low, high] that a parameter is drawn from uniformly."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


SPEED_HZ = Range(1.2, 2.0)
"""Gesture cycles per second: at least 1.2 cycles per recording, so every class shows a whole cycle."""
AMPLITUDE = Range(0.8, 1.2)
"""Scale of the motion paths (1: the nominal extents below)."""
BODY_SIZE = Range(0.85, 1.1)
"""Scale of the whole body in sensor pixels (1: the nominal geometry below); 1.1 keeps the
largest circles (arm clockwise, amplitude 1.2) inside the sensor."""
CENTRE_X_OFFSET_PX = Range(-8.0, 8.0)
CENTRE_Y_OFFSET_PX = Range(-6.0, 6.0)
HAND_LEVEL = Range(0.6, 0.85)
"""Hand intensity (the arm sleeve is ARM_LEVEL, the body BODY_LEVEL)."""
NOISE_RATE_HZ = Range(0.01, 0.05)
"""Background events per second per pixel. At the default 4 x 4 binning and 50 ms bins a
rate r lights about 16 px * r * 0.05 s / 2 polarities = 0.4 r of the 1024 cells of one
polarity per bin (410 r cells), against 10 to 20 cells lit by a gesture: up to 0.05 Hz the
noise stays at most comparable to the signal in binary frames."""

SPEED_JITTER = Range(0.9, 1.1)  # of one recording, relative to its subject
AMPLITUDE_JITTER = Range(0.95, 1.05)
POSITION_JITTER_PX = Range(-2.0, 2.0)
OTHER_FREQUENCY_RATIO = Range(1.5, 3.0)
"""y over x frequency of the "other" Lissajous figure: never 1 (a circle or a line, which
the rotations and waves use)."""

NOMINAL_CENTRE = (63.5, 64.0)
"""Body centre (chest) at nominal position, in sensor pixel coordinates: horizontally the
middle of the 128 pixels (whose centres lie at 0..127), so mirror images are exact."""

# --- scene geometry, in pixels at body size 1, relative to the body centre ---------------------

SHOULDER_DX, SHOULDER_DY = 20.0, -14.0
HEAD_DY, HEAD_RADIUS = -34.0, 12.0
TORSO_DY, TORSO_HALF_WIDTH, TORSO_HALF_HEIGHT = 22.0, 22.0, 34.0
ARM_RADIUS = 3.5
HAND_RADIUS = 6.0
REST_DX, REST_DY = 6.0, 40.0  # a hanging hand, from its shoulder (x outwards)

BACKGROUND_LEVEL = 0.05
BODY_LEVEL = 0.25
ARM_LEVEL = 0.45
"""Intensities in [0, 1]: hands brightest, then sleeves, then the body on a dark background,
so that every moving edge has contrast (the sensor sees log-intensity changes)."""

# Per-class path constants (pixels at body size 1 and amplitude 1; speeds in cycles of u).
CLAP_MIN_HALF_GAP, CLAP_SWING, CLAP_DY = 4.0, 16.0, 6.0
WAVE_DX, WAVE_DY, WAVE_SWING = 6.0, -30.0, 14.0
CIRCLE_DX, CIRCLE_DY, CIRCLE_RADIUS = 8.0, 6.0, 26.0
ROLL_DX, ROLL_DY, ROLL_RADIUS, ROLL_SPEED = 6.0, 8.0, 7.0, 1.5
DRUM_DX, DRUM_DY, DRUM_STROKE, DRUM_SPEED = 16.0, 2.0, 12.0, 1.5
STRUM_DX, STRUM_DY, STRUM_SWING, STRUM_SPEED = -6.0, 16.0, 9.0, 2.0
NECK_DX, NECK_DY, NECK_SLIDE = 32.0, -4.0, 3.0
OTHER_DX, OTHER_DY, OTHER_SWING = 10.0, 6.0, 16.0

# --- time and rendering ---------------------------------------------------------------------------

RECORDING_DURATION_US = 1_000_000
SIM_STEP_US = 10_000
"""Video step: the fastest hand (circles, about 2 pi 34 px 2.2 Hz = 470 px/s) moves under
5 px per step, less than a hand's diameter, and the sensor times crossings within a step by
interpolation."""
RENDER_SCALE = 2
"""Sensor pixels per rendered pixel along each axis: the scene is rendered on a 64 x 64 grid,
which halves the generation time (rendering dominates it)."""
RENDER_SIZE = SENSOR_SIZE[0] // RENDER_SCALE
EDGE_WIDTH_PX = float(RENDER_SCALE)
"""Width of the linear intensity ramp at every shape's border (anti-aliasing over one rendered
pixel), so that sub-pixel motion changes intensities smoothly."""

CHUNK_RECORDINGS = 11
"""Recordings rendered and simulated together (at most one subject's, who share a sensor):
keeps the videos (recordings x steps x 128 x 128 float32) near 75 MB."""

SENSOR = SensorParams(
    threshold=0.3, threshold_sigma=0.03, threshold_min=0.05, refractory_us=1000, noise_rate_hz=0.03, log_eps=0.15
)
"""Sensor of this set, pinned here (as synth-nmnist's); each subject replaces noise_rate_hz."""


@dataclass(frozen=True)
class Subject:
    """The parameters of one simulated subject (and its recording session)."""

    index: int
    speed_hz: float
    amplitude: float
    size: float
    cx: float
    cy: float
    hand_level: float
    noise_rate_hz: float


@dataclass(frozen=True)
class Take:
    """The parameters of one recording: the subject's, jittered, and a starting phase.

    ``phase`` is in cycles; ``other_hand``, ``other_ratio``, ``other_phase_x``
    and ``other_phase_y`` shape the "other" class only.
    """

    speed_hz: float
    amplitude: float
    size: float
    cx: float
    cy: float
    hand_level: float
    phase: float
    other_hand: int = RIGHT
    other_ratio: float = 2.0
    other_phase_x: float = 0.0
    other_phase_y: float = 0.0


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    return int(seed)


def draw_subject(seed: int, index: int) -> Subject:
    """Subject ``index`` (1..29) of generation ``seed``: its parameters, drawn from (seed, index)."""
    rng = np.random.default_rng([_check_seed(seed), int(index)])
    return Subject(
        index=int(index),
        speed_hz=SPEED_HZ.draw(rng),
        amplitude=AMPLITUDE.draw(rng),
        size=BODY_SIZE.draw(rng),
        cx=NOMINAL_CENTRE[0] + CENTRE_X_OFFSET_PX.draw(rng),
        cy=NOMINAL_CENTRE[1] + CENTRE_Y_OFFSET_PX.draw(rng),
        hand_level=HAND_LEVEL.draw(rng),
        noise_rate_hz=NOISE_RATE_HZ.draw(rng),
    )


def draw_take(subject: Subject, rng: np.random.Generator) -> Take:
    """One recording's parameters: ``subject``'s, jittered with ``rng``, and a random phase."""
    return Take(
        speed_hz=subject.speed_hz * SPEED_JITTER.draw(rng),
        amplitude=subject.amplitude * AMPLITUDE_JITTER.draw(rng),
        size=subject.size,
        cx=subject.cx + POSITION_JITTER_PX.draw(rng),
        cy=subject.cy + POSITION_JITTER_PX.draw(rng),
        hand_level=subject.hand_level,
        phase=float(rng.uniform()),
        other_hand=int(rng.integers(0, 2)),
        other_ratio=OTHER_FREQUENCY_RATIO.draw(rng),
        other_phase_x=float(rng.uniform()),
        other_phase_y=float(rng.uniform()),
    )


def split_subjects(split: str) -> tuple[int, ...]:
    """The subjects of ``split``: 1-23 train, 24-29 test (fixed, whatever the seed)."""
    check_split(split)
    return TRAIN_SUBJECTS if split == "train" else TEST_SUBJECTS


def recordings(split: str) -> np.ndarray:
    """The recordings of ``split`` in generation order: rows (subject, repetition, label)."""
    subjects = np.asarray(split_subjects(split), dtype=np.int64)
    s, r, c = np.meshgrid(subjects, np.arange(REPETITIONS), np.arange(NUM_CLASSES), indexing="ij")
    return np.stack([s.ravel(), r.ravel(), c.ravel()], axis=1)


def timestamps() -> np.ndarray:
    """Video step times in microseconds, 0 to RECORDING_DURATION_US inclusive."""
    return np.arange(0, RECORDING_DURATION_US + 1, SIM_STEP_US, dtype=np.int64)


# --- paths -----------------------------------------------------------------------------------------


def shoulders(take: Take) -> np.ndarray:
    """Shoulder positions (2 hands, xy) in sensor pixels."""
    s = take.size
    return np.stack([take.cx + SIDE_SIGN * SHOULDER_DX * s, np.full(2, take.cy + SHOULDER_DY * s)], axis=1)


def _rest(take: Take, hand: int, n: int) -> np.ndarray:
    """A hanging, still hand: (n, xy)."""
    sh = shoulders(take)[hand]
    pos = sh + np.array([SIDE_SIGN[hand] * REST_DX, REST_DY]) * take.size
    return np.broadcast_to(pos, (n, 2))


def _base_path(label: int, take: Take, t_us: np.ndarray) -> np.ndarray:
    """Hand positions (n, 2 hands, xy) of a class not defined as a mirror or reversal of another."""
    n = len(t_us)
    u = take.speed_hz * np.asarray(t_us, dtype=np.float64) / US_PER_S + take.phase  # cycles
    s, a = take.size, take.amplitude
    cx, cy = take.cx, take.cy
    sh = shoulders(take)
    pos = np.empty((n, 2, 2))
    if label == HAND_CLAP:
        half_gap = (CLAP_MIN_HALF_GAP + CLAP_SWING * a * (1 + np.cos(2 * np.pi * u)) / 2) * s
        for h in (RIGHT, LEFT):
            pos[:, h, 0] = cx + SIDE_SIGN[h] * half_gap
            pos[:, h, 1] = cy + CLAP_DY * s
    elif label == RIGHT_HAND_WAVE:
        pos[:, RIGHT, 0] = sh[RIGHT, 0] + (SIDE_SIGN[RIGHT] * WAVE_DX + WAVE_SWING * a * np.sin(2 * np.pi * u)) * s
        pos[:, RIGHT, 1] = sh[RIGHT, 1] + WAVE_DY * s
        pos[:, LEFT] = _rest(take, LEFT, n)
    elif label == RIGHT_ARM_CW:
        centre = sh[RIGHT] + np.array([SIDE_SIGN[RIGHT] * CIRCLE_DX, CIRCLE_DY]) * s
        theta = 2 * np.pi * u  # increasing angle with y down: clockwise on the sensor
        pos[:, RIGHT, 0] = centre[0] + CIRCLE_RADIUS * a * s * np.cos(theta)
        pos[:, RIGHT, 1] = centre[1] + CIRCLE_RADIUS * a * s * np.sin(theta)
        pos[:, LEFT] = _rest(take, LEFT, n)
    elif label == ARM_ROLL:
        theta = 2 * np.pi * ROLL_SPEED * u
        for h in (RIGHT, LEFT):
            pos[:, h, 0] = cx + (SIDE_SIGN[h] * ROLL_DX + ROLL_RADIUS * a * np.cos(theta + np.pi * h)) * s
            pos[:, h, 1] = cy + (ROLL_DY + ROLL_RADIUS * a * np.sin(theta + np.pi * h)) * s
    elif label == AIR_DRUMS:
        for h in (RIGHT, LEFT):  # strokes alternate: the left hand half a stroke later
            stroke = np.sin(np.pi * (DRUM_SPEED * u + h / 2)) ** 2
            pos[:, h, 0] = cx + SIDE_SIGN[h] * DRUM_DX * s
            pos[:, h, 1] = cy + (DRUM_DY + DRUM_STROKE * a * stroke) * s
    elif label == AIR_GUITAR:
        pos[:, RIGHT, 0] = cx + STRUM_DX * s
        pos[:, RIGHT, 1] = cy + (STRUM_DY + STRUM_SWING * a * np.sin(2 * np.pi * STRUM_SPEED * u)) * s
        slide = NECK_SLIDE * a * np.sin(np.pi * u)  # half the speed: a slow fret change
        pos[:, LEFT, 0] = cx + (NECK_DX + slide) * s
        pos[:, LEFT, 1] = cy + (NECK_DY - slide) * s
    elif label == OTHER:
        h = take.other_hand
        pos[:, h, 0] = sh[h, 0] + (
            SIDE_SIGN[h] * OTHER_DX + OTHER_SWING * a * np.sin(2 * np.pi * (u + take.other_phase_x))
        ) * s
        pos[:, h, 1] = sh[h, 1] + (
            OTHER_DY + OTHER_SWING * a * np.sin(2 * np.pi * (take.other_ratio * u + take.other_phase_y))
        ) * s
        pos[:, 1 - h] = _rest(take, 1 - h, n)
    else:
        raise ValueError(f"label must be a whole number from 0 to {NUM_CLASSES - 1}, got {label!r}")
    return pos


def hand_paths(label: int, take: Take, t_us: np.ndarray) -> np.ndarray:
    """Hand centres (n, 2 hands [RIGHT, LEFT], xy) in sensor pixels at times ``t_us`` of class ``label``.

    Mirrored classes: x -> 2 cx - x with the hands swapped; reversed classes:
    the base class at RECORDING_DURATION_US - t.
    """
    label = int(label)
    t_us = np.asarray(t_us, dtype=np.int64)
    if label in MIRRORED:
        pos = hand_paths(MIRRORED[label], take, t_us)[:, ::-1].copy()
        pos[..., 0] = 2 * take.cx - pos[..., 0]
        return pos
    if label in REVERSED:
        return hand_paths(REVERSED[label], take, RECORDING_DURATION_US - t_us)
    return _base_path(label, take, t_us)


# --- rendering -------------------------------------------------------------------------------------


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Centres of the rendered pixels in sensor pixel coordinates: x (1, W) and y (H, 1)."""
    c = ((np.arange(RENDER_SIZE) + 0.5) * RENDER_SCALE - 0.5).astype(np.float32)
    return c[None, :], c[:, None]


def _coverage(distance: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """How much of a pixel at ``distance`` from a shape's centre line a shape of ``radius`` covers."""
    return np.clip((radius - distance) / EDGE_WIDTH_PX + 0.5, 0.0, 1.0)


def _body(take: Take) -> np.ndarray:
    """The still scene (H, W): background, torso ellipse and head, on the rendered grid."""
    x, y = _grid()
    s = take.size
    dh = np.hypot(x - take.cx, y - (take.cy + HEAD_DY * s))
    head = _coverage(dh, HEAD_RADIUS * s)
    # Ellipse distance, approximated by the radial one scaled to the half-width (exact on the x axis).
    r = np.hypot((x - take.cx) / TORSO_HALF_WIDTH, (y - (take.cy + TORSO_DY * s)) / TORSO_HALF_HEIGHT) / s
    torso = _coverage(r * TORSO_HALF_WIDTH * s, TORSO_HALF_WIDTH * s)
    return BACKGROUND_LEVEL + (BODY_LEVEL - BACKGROUND_LEVEL) * np.maximum(head, torso)


def render_videos(labels: Sequence[int], takes: Sequence[Take], t_us: np.ndarray) -> np.ndarray:
    """Intensity videos (B, n_steps, 128, 128) float32 in [0, 1]: class ``labels[b]`` performed as ``takes[b]``.

    Rendered on the RENDER_SIZE grid and repeated onto RENDER_SCALE x RENDER_SCALE sensor pixels.
    """
    if len(labels) != len(takes):
        raise ValueError(f"need one take per label: {len(labels)} labels, {len(takes)} takes")
    x, y = _grid()
    t_us = np.asarray(t_us, dtype=np.int64)
    out = np.empty((len(labels), len(t_us), SENSOR_SIZE[1], SENSOR_SIZE[0]), dtype=np.float32)
    for b, (label, take) in enumerate(zip(labels, takes)):
        frame = np.broadcast_to(_body(take).astype(np.float32), (len(t_us), RENDER_SIZE, RENDER_SIZE)).copy()
        hands = hand_paths(label, take, t_us).astype(np.float32)[:, :, :, None, None]  # (n, 2, 2, 1, 1)
        sh = shoulders(take).astype(np.float32)
        for h in (RIGHT, LEFT):
            hx, hy = hands[:, h, 0], hands[:, h, 1]  # (n, 1, 1)
            # Arm: distance to the segment shoulder -> hand.
            vx, vy = hx - sh[h, 0], hy - sh[h, 1]
            wx, wy = x - sh[h, 0], y - sh[h, 1]
            along = np.clip((wx * vx + wy * vy) / np.maximum(vx * vx + vy * vy, 1e-6), 0.0, 1.0)
            arm = _coverage(np.hypot(wx - along * vx, wy - along * vy), ARM_RADIUS * take.size)
            hand = _coverage(np.hypot(x - hx, y - hy), HAND_RADIUS * take.size)
            np.maximum(frame, ARM_LEVEL * arm, out=frame)
            np.maximum(frame, take.hand_level * hand, out=frame)
        big = np.repeat(np.repeat(frame, RENDER_SCALE, axis=1), RENDER_SCALE, axis=2)
        out[b] = np.clip(big, 0.0, 1.0)
    return out


# --- generation ------------------------------------------------------------------------------------


def _generators(seed: int, subject: int, rep: int, label: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The take and sensor generators of one recording, independent streams of (seed, subject, rep, label)."""
    take_seq, sensor_seq = np.random.SeedSequence([seed, int(subject), int(rep), int(label)]).spawn(2)
    return np.random.default_rng(take_seq), np.random.default_rng(sensor_seq)


def take_of(seed: int, subject: int, rep: int, label: int) -> Take:
    """The take of recording (subject, rep, label) of generation ``seed``."""
    return draw_take(draw_subject(seed, subject), _generators(_check_seed(seed), subject, rep, label)[0])


def generate(
    split: str,
    seed: int = 0,
    *,
    limit: int | None = None,
    params: SensorParams = SENSOR,
    progress: bool = True,
) -> EventSet:
    """The event recordings of ``split``: every class, REPETITIONS times, by each of its subjects.

    ``limit`` keeps the first ``limit`` recordings (see ``recordings`` for the
    order), and only those are simulated. ``params`` is the sensor; each
    subject replaces its ``noise_rate_hz``.
    """
    check_split(split)
    seed = _check_seed(seed)
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (recordings) or None (all), got {limit!r}")
    todo = recordings(split)
    if limit is not None:
        todo = todo[: int(limit)]
    t_us = timestamps()

    events: list[np.ndarray] = []
    bar = tqdm(total=len(todo), desc=f"{NAME} {split}", unit="rec", file=sys.stderr, disable=not progress)
    with bar:
        for subject_index in np.unique(todo[:, 0]):
            subject = draw_subject(seed, int(subject_index))
            sensor = replace(params, noise_rate_hz=subject.noise_rate_hz)
            mine = todo[todo[:, 0] == subject_index]
            for start in range(0, len(mine), CHUNK_RECORDINGS):
                chunk = mine[start : start + CHUNK_RECORDINGS]
                gens = [_generators(seed, s, r, c) for s, r, c in chunk]
                takes = [draw_take(subject, g[0]) for g in gens]
                videos = render_videos(chunk[:, 2], takes, t_us)
                events.extend(simulate_batch(videos, t_us, [g[1] for g in gens], sensor))
                bar.update(len(chunk))
    return EventSet(events, todo[:, 2], sources=todo[:, 0], passes=todo[:, 1])


__all__ = [
    "CLASSES",
    "NAME",
    "NUM_CLASSES",
    "RECORDING_DURATION_US",
    "SENSOR_SIZE",
    "Subject",
    "Take",
    "draw_subject",
    "draw_take",
    "generate",
    "hand_paths",
    "recordings",
    "render_videos",
    "split_subjects",
    "take_of",
]
