"""sast.geometry: receptive counts against a loop over output positions, and the plan's pools and consumers."""

from __future__ import annotations

import random

import pytest

from sast.geometry import consumer, pools_before, receptive_counts, receptive_overlap
from sast.model import parse_layers


def _counts_by_output_positions(n_in: int, kernel: int, stride: int, padding: int) -> list[int]:
    """For each input position i, the outputs j whose window (on the zero-padded axis) holds it, by brute force."""
    padded = n_in + 2 * padding
    counts = [0] * n_in
    j = 0
    while j * stride + kernel <= padded:  # output j reads padded positions j*stride ... j*stride + kernel - 1
        for p in range(j * stride, j * stride + kernel):
            i = p - padding
            if 0 <= i < n_in:
                counts[i] += 1
        j += 1
    return counts


@pytest.mark.parametrize("seed", range(200))
def test_receptive_counts_equal_a_loop_over_output_positions(seed):
    rng = random.Random(seed)
    kernel = rng.randint(1, 7)
    stride = rng.randint(1, 4)
    padding = rng.randint(0, kernel - 1)
    n_in = rng.randint(max(1, kernel - 2 * padding), 20)  # at least one output position
    want = _counts_by_output_positions(n_in, kernel, stride, padding)
    assert receptive_counts(n_in, kernel, stride, padding) == want
    assert receptive_overlap(n_in, kernel, stride, padding) == max(want)


def test_receptive_counts_by_hand():
    # kernel 3, stride 1, padding 1 on 5 inputs: the ends lie in 2 windows, the interior in 3
    assert receptive_counts(5, 3, 1, 1) == [2, 3, 3, 3, 2]
    # kernel 3, stride 2, padding 1 on 5 inputs: outputs read [-1..1], [1..3], [3..5]
    assert receptive_counts(5, 3, 2, 1) == [1, 2, 1, 2, 1]
    # kernel 2, stride 2, no padding on 5 inputs: the last input is never read
    assert receptive_counts(5, 2, 2, 0) == [1, 1, 1, 1, 0]


def test_pools_before_and_consumer_on_a_conv_plan():
    plan = parse_layers(["pool:1", "conv:2:3", "pool:2", "pool:1", "conv:3:3:2", "pool:1", "dense:4"], (1, 12, 12))
    conv1, conv2, dense = (s for s in plan if s.spiking)
    assert [p.kernel for p in pools_before(plan, conv1)] == [1]
    assert [p.kernel for p in pools_before(plan, conv2)] == [2, 1]
    assert pools_before(plan, conv2)[0] is plan[2] and pools_before(plan, conv2)[1] is plan[3]
    assert [p.kernel for p in pools_before(plan, dense)] == [1]
    assert consumer(plan, None) == (conv1, [plan[0]])
    assert consumer(plan, conv1) == (conv2, [plan[2], plan[3]])
    assert consumer(plan, conv2) == (dense, [plan[5]])
    assert consumer(plan, dense) == (None, [])
    # pools_before(spec) are the pools that consumer(previous spiking layer) passes through
    for prev, spec in zip([None, conv1, conv2], [conv1, conv2, dense]):
        assert consumer(plan, prev) == (spec, pools_before(plan, spec))


def test_consumer_of_the_last_layer_is_the_readout_through_its_pools():
    plan = parse_layers(["conv:2:3", "pool:2", "pool:1"], (1, 8, 8))
    assert consumer(plan, plan[0]) == (None, [plan[1], plan[2]])
