"""synth-gesture: each class's motion, its mirror and time-reversal relations, subjects, split, determinism, speed."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from sast.data import EventSet, event_dataset, frame_dataset, get_spec, simulate_events, to_frames
from sast.data import synth_gesture as sg

T_US = sg.timestamps()
CENTRED = dataclasses.replace(sg.take_of(0, 24, 0, 0), cx=sg.NOMINAL_CENTRE[0], amplitude=1.0, size=1.0)
"""A take on the sensor's vertical mid-line (so mirror images are exact), nominal size and amplitude."""


@pytest.fixture(scope="module")
def first_subject() -> EventSet:
    """One repetition of every class by the first test subject."""
    return sg.generate("test", seed=0, limit=sg.NUM_CLASSES, progress=False)


def path(label: int, take: sg.Take = CENTRED) -> np.ndarray:
    return sg.hand_paths(label, take, T_US)


def moving(p: np.ndarray, hand: int) -> bool:
    return bool(np.ptp(p[:, hand], axis=0).max() > 1.0)  # pixels


def counts(events: np.ndarray, T: int = 20) -> np.ndarray:
    """Event counts (T, P, 32, 32), float, at the default downsampling."""
    return to_frames(events, sg.SENSOR_SIZE, T, clip=None, downsample=4, duration=sg.RECORDING_DURATION_US).astype(
        float
    )


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def on_centroid_angles(events: np.ndarray, centre: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Unwrapped angle (image coordinates, y down) of the ON-event centroid around ``centre``, per time bin."""
    on = events[events["p"] == 1]
    b = np.minimum(on["t"] * n_bins // sg.RECORDING_DURATION_US, n_bins - 1)
    angles = []
    for k in range(n_bins):
        sel = on[b == k]
        angles.append(np.arctan2(sel["y"].mean() - centre[1], sel["x"].mean() - centre[0]))
    return np.unwrap(angles)


# --- the classes ------------------------------------------------------------------------------------


def test_eleven_classes_in_tonics_order() -> None:
    assert sg.NUM_CLASSES == 11 and get_spec(sg.NAME).num_classes == 11
    assert sg.CLASSES[sg.RIGHT_ARM_CW] == "right arm clockwise" and sg.CLASSES[sg.OTHER] == "other"


@pytest.mark.parametrize("label, hand", [(sg.RIGHT_ARM_CW, sg.RIGHT), (sg.RIGHT_ARM_CCW, sg.RIGHT),
                                         (sg.LEFT_ARM_CW, sg.LEFT), (sg.LEFT_ARM_CCW, sg.LEFT)])
def test_arm_rotations_turn_the_named_way_with_the_named_arm(label: int, hand: int) -> None:
    p = path(label)
    assert moving(p, hand) and not moving(p, 1 - hand)
    # The subject faces the sensor: its right arm is on the sensor's left.
    assert np.sign(p[:, hand, 0].mean() - CENTRED.cx) == sg.SIDE_SIGN[hand]
    # Clockwise as the sensor sees it (y down): at the top of the circle the hand moves right.
    x, y = p[:, hand, 0], p[:, hand, 1]
    top = np.argmin(y[1:-1]) + 1
    vx = x[top + 1] - x[top - 1]
    clockwise = label in (sg.RIGHT_ARM_CW, sg.LEFT_ARM_CW)
    assert (vx > 0) == clockwise, (sg.CLASSES[label], vx)
    # A circle: constant distance from the centre of the path (to rounding).
    r = np.hypot(x - (x.max() + x.min()) / 2, y - (y.max() + y.min()) / 2)
    assert np.ptp(r) < 0.02 * r.mean()


def test_counter_clockwise_is_clockwise_played_backwards() -> None:
    for ccw, cw in [(sg.RIGHT_ARM_CCW, sg.RIGHT_ARM_CW), (sg.LEFT_ARM_CCW, sg.LEFT_ARM_CW)]:
        assert np.allclose(path(ccw), path(cw)[::-1])
        videos = sg.render_videos([cw, ccw], [CENTRED, CENTRED], T_US)
        assert np.array_equal(videos[1], videos[0][::-1])


@pytest.mark.parametrize("left, right", [(sg.LEFT_HAND_WAVE, sg.RIGHT_HAND_WAVE), (sg.LEFT_ARM_CW, sg.RIGHT_ARM_CCW),
                                         (sg.LEFT_ARM_CCW, sg.RIGHT_ARM_CW)])
def test_left_variants_are_horizontal_mirrors_of_right_ones(left: int, right: int) -> None:
    pl, pr = path(left), path(right)
    assert np.allclose(pl[:, sg.LEFT, 0], 2 * CENTRED.cx - pr[:, sg.RIGHT, 0])
    assert np.allclose(pl[:, sg.LEFT, 1], pr[:, sg.RIGHT, 1])
    videos = sg.render_videos([left, right], [CENTRED, CENTRED], T_US)
    assert np.allclose(videos[0], videos[1][..., ::-1], atol=1e-5)  # float32 rounding of mirrored coordinates
    assert not np.allclose(videos[0], videos[1], atol=0.1)


def test_waves_are_horizontal_and_raised() -> None:
    for label, hand in [(sg.RIGHT_HAND_WAVE, sg.RIGHT), (sg.LEFT_HAND_WAVE, sg.LEFT)]:
        p = path(label)
        assert moving(p, hand) and not moving(p, 1 - hand)
        assert np.ptp(p[:, hand, 1]) < 1e-9 < np.ptp(p[:, hand, 0])  # side to side only
        assert p[:, hand, 1].max() < sg.shoulders(CENTRED)[hand, 1]  # above the shoulder (y down)
        assert np.sign(p[:, hand, 0].mean() - CENTRED.cx) == sg.SIDE_SIGN[hand]


def test_clap_is_symmetric_and_the_hands_meet() -> None:
    p = path(sg.HAND_CLAP)
    assert np.allclose(p[:, sg.RIGHT, 0] + p[:, sg.LEFT, 0], 2 * CENTRED.cx)
    assert np.allclose(p[:, sg.RIGHT, 1], p[:, sg.LEFT, 1])
    gap = p[:, sg.LEFT, 0] - p[:, sg.RIGHT, 0]
    assert gap.min() < 2 * sg.HAND_RADIUS < gap.max() / 2  # the hands touch, then part widely


def test_drums_strike_vertically_in_turn() -> None:
    p = path(sg.AIR_DRUMS)
    for h in (sg.RIGHT, sg.LEFT):
        assert np.ptp(p[:, h, 0]) < 1e-9 < np.ptp(p[:, h, 1])
    assert correlation(p[:, sg.RIGHT, 1], p[:, sg.LEFT, 1]) < -0.5  # alternating strokes


def test_roll_guitar_and_other_have_their_shapes() -> None:
    roll = path(sg.ARM_ROLL)
    centres = (roll.max(axis=0) + roll.min(axis=0)) / 2  # (hand, xy)
    rel = roll - centres
    assert correlation(rel[:, sg.RIGHT, 0], rel[:, sg.LEFT, 0]) < -0.9  # half a turn apart
    guitar = path(sg.AIR_GUITAR)
    assert np.ptp(guitar[:, sg.RIGHT, 1]) > 3 * np.ptp(guitar[:, sg.RIGHT, 0])  # strumming
    assert guitar[:, sg.LEFT, 0].min() > CENTRED.cx  # the other hand on the neck, to the sensor's right
    assert not np.allclose(guitar[:, sg.LEFT, 0], 2 * CENTRED.cx - guitar[:, sg.RIGHT, 0])  # not symmetric
    other = path(sg.OTHER)
    h = CENTRED.other_hand
    assert moving(other, h) and not moving(other, 1 - h)
    r = np.hypot(*(other[:, h] - other[:, h].mean(axis=0)).T)
    assert np.ptp(r) > 0.3 * r.mean()  # not a circle


def test_events_rotate_the_named_way(first_subject: EventSet) -> None:
    """From the events alone: the ON-event centroid turns clockwise (angle increasing, y down) or not."""
    for label in (sg.RIGHT_ARM_CW, sg.RIGHT_ARM_CCW, sg.LEFT_ARM_CW, sg.LEFT_ARM_CCW):
        take = sg.take_of(0, sg.TEST_SUBJECTS[0], 0, label)
        hand = sg.RIGHT if label in (sg.RIGHT_ARM_CW, sg.RIGHT_ARM_CCW) else sg.LEFT
        centre = sg.shoulders(take)[hand]  # inside every circle: the whole arm turns about it
        turned = on_centroid_angles(first_subject.events[label], centre)
        cycles = (turned[-1] - turned[0]) / (2 * np.pi)
        clockwise = label in (sg.RIGHT_ARM_CW, sg.LEFT_ARM_CW)
        # At least 1.2 cycles pass (SPEED_HZ); the centroid of one 50 ms bin lags, so ask for most of one.
        assert (cycles > 0.8) if clockwise else (cycles < -0.8), (sg.CLASSES[label], cycles)


def test_events_of_reversed_and_mirrored_classes_match_up_to_noise() -> None:
    """The sensor output inherits the relations: reversal swaps polarities (a brightening played back darkens)."""
    labels = [sg.RIGHT_ARM_CW, sg.RIGHT_ARM_CCW, sg.LEFT_ARM_CCW]
    videos = sg.render_videos(labels, [CENTRED] * 3, T_US)
    cw, ccw, left_ccw = (counts(simulate_events(v, T_US, np.random.default_rng(i), sg.SENSOR))
                         for i, v in enumerate(videos))
    # Independent noise and thresholds per recording; 0.98 measured for the true relations, below 0.2 otherwise.
    assert correlation(ccw, cw[::-1, ::-1]) > 0.9
    assert correlation(ccw, cw[::-1]) < 0.5 and correlation(ccw, cw) < 0.5
    assert correlation(left_ccw, cw[..., ::-1]) > 0.9
    assert correlation(left_ccw, cw) < 0.5


# --- subjects, split, determinism ---------------------------------------------------------------


def test_splits_are_by_subject_and_share_none() -> None:
    train, test = sg.recordings("train"), sg.recordings("test")
    assert len(train) == 23 * 11 * sg.REPETITIONS and len(test) == 6 * 11 * sg.REPETITIONS
    assert not set(train[:, 0]) & set(test[:, 0])
    assert set(train[:, 0]) | set(test[:, 0]) == set(range(1, 30))
    # Each subject performs every class REPETITIONS times.
    for rows in (train, test):
        per = {(s, c): 0 for s in set(rows[:, 0]) for c in range(11)}
        for s, _, c in rows:
            per[s, c] += 1
        assert set(per.values()) == {sg.REPETITIONS}


def test_generated_recordings_carry_subject_repetition_and_class(first_subject: EventSet) -> None:
    assert first_subject.labels.tolist() == list(range(11))
    assert set(first_subject.sources) == {sg.TEST_SUBJECTS[0]} and set(first_subject.passes) == {0}
    tr = sg.generate("train", limit=2, progress=False)
    assert set(tr.sources) <= set(sg.TRAIN_SUBJECTS)


def test_subjects_differ() -> None:
    subjects = [sg.draw_subject(0, s) for s in range(1, 30)]
    for field in ("speed_hz", "amplitude", "size", "cx", "cy", "hand_level", "noise_rate_hz"):
        values = [getattr(s, field) for s in subjects]
        assert len(set(values)) == len(values), field
    # Same class and repetition, two subjects: different paths and different events.
    a, b = sg.take_of(0, 24, 0, sg.HAND_CLAP), sg.take_of(0, 25, 0, sg.HAND_CLAP)
    assert not np.allclose(sg.hand_paths(sg.HAND_CLAP, a, T_US), sg.hand_paths(sg.HAND_CLAP, b, T_US))
    ev = sg.generate("test", limit=sg.NUM_CLASSES * sg.REPETITIONS + 1, progress=False)
    first, second = ev.events[0], ev.events[-1]  # clap by subjects 24 and 25
    assert ev.labels[0] == ev.labels[-1] == sg.HAND_CLAP and ev.sources[0] != ev.sources[-1]
    assert not np.allclose(counts(first), counts(second))
    # Repetitions by one subject differ too (phase and jitter).
    reps = ev.events[0 :: sg.NUM_CLASSES][: sg.REPETITIONS]
    assert len({len(e) for e in reps}) == sg.REPETITIONS


def test_deterministic_for_a_seed(first_subject: EventSet) -> None:
    again = sg.generate("test", seed=0, limit=sg.NUM_CLASSES, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(first_subject.events, again.events))
    other = sg.generate("test", seed=1, limit=3, progress=False)
    assert not any(np.array_equal(a, b) for a, b in zip(first_subject.events[:3], other.events))
    assert sg.draw_subject(1, 24) != sg.draw_subject(0, 24)


def test_a_recording_does_not_depend_on_the_subset(first_subject: EventSet) -> None:
    few = sg.generate("test", seed=0, limit=3, progress=False)  # another chunk composition
    assert all(np.array_equal(a, b) for a, b in zip(few.events, first_subject.events[:3]))


def test_events_are_on_the_128_sensor_and_realistic(first_subject: EventSet) -> None:
    for ev in first_subject.events:
        assert ev["x"].min() >= 0 and ev["x"].max() < 128 and ev["y"].min() >= 0 and ev["y"].max() < 128
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() < sg.RECORDING_DURATION_US
        assert set(np.unique(ev["p"])) == {0, 1}
        assert 1_000 < len(ev) < 60_000  # measured 2.4k-56k over the whole set: 20 frames, little memory


def test_small_subset_is_fast() -> None:
    start = time.perf_counter()
    sg.generate("train", seed=3, limit=sg.NUM_CLASSES, progress=False)
    assert time.perf_counter() - start < 5.0  # measured ~0.6 s on 2 shared cores


def test_frame_dataset_defaults(tmp_path) -> None:
    ds = frame_dataset(sg.NAME, "test", cache_dir=tmp_path, limit=4, progress=False)
    spec = get_spec(sg.NAME)
    assert ds.T == spec.default_T == 20 and ds.input_shape == (2, 32, 32) and ds.num_classes == 11
    assert spec.sensor_size == (128, 128, 2) and spec.default_downsample == 4
    ev = event_dataset(sg.NAME, "test", limit=4, progress=False)
    want = to_frames(ev[3][0], spec.sensor_size, 20, clip=1, downsample=4, duration=spec.duration_us)
    assert np.array_equal(ds.frames[3].numpy(), want)
    assert ds.sources.tolist() == [24] * 4  # the subject: train/validation splits keep a subject together


def test_bad_arguments_raise_one_line() -> None:
    for kwargs, match in [({"seed": -1}, "seed"), ({"limit": 0}, "limit")]:
        with pytest.raises(ValueError, match=match) as err:
            sg.generate("test", progress=False, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="label"):
        sg.hand_paths(11, CENTRED, T_US)


@pytest.mark.slow
def test_full_set_generates_in_time() -> None:
    start = time.perf_counter()
    tr = sg.generate("train", progress=False)
    te = sg.generate("test", progress=False)
    elapsed = time.perf_counter() - start
    assert (len(tr), len(te)) == (1012, 264)
    assert elapsed < 120, elapsed  # the budget on 2 shared cores
