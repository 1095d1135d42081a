"""The geometry of a layer plan: which layer feeds which, through which pools, over which positions.

Functions over ``SNN.plan`` (a list of :class:`sast.model.LayerSpec`), shared by
``checks.constants`` (THEORY.md T4's m_l, the pooling folded into W^l) and
``sast.transfer`` (E2's fan-outs), so that both read one count:

- :func:`pools_before` and :func:`consumer`: the average pools between two spiking layers
  (a linear map THEORY.md folds into the next layer's W^l);
- :func:`receptive_counts`: along one axis of a conv, how many output positions' receptive
  fields hold each input position; :func:`receptive_overlap` its maximum, T4's m_l per axis
  (m_l^2 = the product over the two axes);
- :func:`fanout` / :func:`fanouts`: the number of synapses each element of a layer's output
  drives in the next spiking layer or the readout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sast.model import LayerSpec


def pools_before(plan: Sequence[LayerSpec], spec: LayerSpec) -> list[LayerSpec]:
    """The pooling entries of ``plan`` between the previous spiking layer (or the input) and ``spec``, in order."""
    idx = plan.index(spec)
    pools: list[LayerSpec] = []
    for prev in reversed(plan[:idx]):
        if prev.spiking:
            break
        if prev.kind == "pool":
            pools.insert(0, prev)
    return pools


def consumer(plan: Sequence[LayerSpec], producer: LayerSpec | None) -> tuple[LayerSpec | None, list[LayerSpec]]:
    """The spiking layer that reads ``producer``'s output (None: the readout) and the pools between, in order.

    ``producer`` None stands for the input.
    """
    start = 0 if producer is None else plan.index(producer) + 1
    pools: list[LayerSpec] = []
    for s in plan[start:]:
        if s.kind == "pool":
            pools.append(s)
        elif s.spiking:
            return s, pools
    return None, pools


def receptive_counts(n_in: int, kernel: int, stride: int, padding: int) -> list[int]:
    """Along one axis: for each input position, the number of output positions whose receptive field holds it.

    Output j (0 <= j < n_out, n_out = (n_in + 2 padding - kernel) // stride + 1) reads the
    inputs j stride - padding ... j stride - padding + kernel - 1 (those outside
    0 ... n_in - 1 are the zero padding).
    """
    n_out = (n_in + 2 * padding - kernel) // stride + 1
    counts = [0] * n_in
    for j in range(n_out):
        for i in range(max(0, j * stride - padding), min(n_in, j * stride - padding + kernel)):
            counts[i] += 1
    return counts


def receptive_overlap(n_in: int, kernel: int, stride: int, padding: int) -> int:
    """THEORY.md T4's m_l along one axis: the largest number of outputs whose receptive field holds one input."""
    return max(receptive_counts(n_in, kernel, stride, padding))


def _consumer_fanout(spec: LayerSpec | None, num_classes: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Fan-out of each element of an input of ``shape`` into the spiking layer ``spec`` (None: the readout)."""
    if spec is None or spec.kind == "dense":
        fan = spec.size if spec is not None else num_classes
        return torch.full(shape, float(fan))
    # conv: C_out times the number of output positions whose receptive field holds the element
    c, h, w = shape

    def per_axis(n_in: int) -> torch.Tensor:
        return torch.tensor(receptive_counts(n_in, spec.kernel, spec.stride, spec.padding), dtype=torch.float32)

    return (spec.size * per_axis(h)[:, None] * per_axis(w)[None, :]).expand(c, h, w).clone()


def fanout(plan: Sequence[LayerSpec], producer: LayerSpec | None, input_shape: tuple[int, ...],
           num_classes: int) -> torch.Tensor:
    """The fan-out of each element of ``producer``'s output (None: the input), shaped like that output.

    Each element drives every synapse of the consumer (:func:`consumer`) that reads it; an
    element of a pooling block drives what the pooled value drives, an element cropped by
    a pooling (sizes not divisible by its kernel) drives nothing.
    """
    shape = tuple(input_shape) if producer is None else producer.out_shape
    spec, pools = consumer(plan, producer)
    pooled_shape = pools[-1].out_shape if pools else shape
    if spec is not None and spec.kind == "dense":
        pooled_shape = (math.prod(pooled_shape),)
    fan = _consumer_fanout(spec, num_classes, pooled_shape)
    for pool in reversed(pools):
        k = pool.kernel
        fan = fan.reshape(pool.out_shape).repeat_interleave(k, 1).repeat_interleave(k, 2)
        full = torch.zeros(pool.in_shape)
        full[:, : fan.shape[1], : fan.shape[2]] = fan
        fan = full
    return fan.reshape(shape)


def fanouts(plan: Sequence[LayerSpec], input_shape: tuple[int, ...], num_classes: int) -> list[torch.Tensor]:
    """Per layer l = 0..D (0: the input), the fan-out of each element, shaped like that layer's output."""
    producers: list[LayerSpec | None] = [None, *(s for s in plan if s.spiking)]
    return [fanout(plan, p, input_shape, num_classes) for p in producers]
