"""E1/E2/ECE (sast.transfer) against hand computations on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sast.model import SNN, SNNConfig
from sast.calibration import expected_calibration_error, fit_temperature, reliability_bins
from sast.transfer import diagnostics, fanouts, quantize_int8


def _model(layers, input_shape=(2, 6, 6), seed=0):
    torch.manual_seed(seed)
    m = SNN(SNNConfig(input_shape=input_shape, layers=layers, T=3, lam=0.8, theta=0.5, beta=3.0, num_classes=4))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.1, 0.6)  # dense enough activity to count spikes
    return m


def _fanout_by_structure(model, producer_index):
    """Fan-out of each element of layer ``producer_index``'s output (0 = input), from the nonzero pattern
    of the consumer's linear map with all-ones weights, built by pushing unit vectors through it."""
    plan = model.plan
    producers = [None] + [s for s in plan if s.spiking]
    prod = producers[producer_index]
    start = 0 if prod is None else plan.index(prod) + 1
    shape = tuple(model.config.input_shape) if prod is None else prod.out_shape
    n = math.prod(shape)
    counts = torch.zeros(n)
    for i in range(n):
        a = torch.zeros(1, n)
        a[0, i] = 1.0
        a = a.reshape(1, *shape)
        for s in plan[start:]:
            if s.kind == "pool":
                a = F.avg_pool2d(a, s.kernel)
            elif s.kind == "flatten":
                a = a.flatten(1)
            elif s.kind == "dense":
                a = F.linear(a.flatten(1), torch.ones(s.size, a[0].numel()))
                break
            else:
                a = F.conv2d(a, torch.ones(s.size, a.shape[1], s.kernel, s.kernel), stride=s.stride, padding=s.padding)
                break
        else:
            a = F.linear(a.flatten(1), torch.ones(model.config.num_classes, a[0].numel()))
        counts[i] = (a != 0).sum()
    return counts.reshape(shape)


@pytest.mark.parametrize("layers", [["dense:5"], ["conv:3:3", "dense:4"], ["conv:3:3:2", "pool:1", "dense:4"],
                                    ["conv:2:3", "pool:2", "conv:3:3", "dense:4"], ["conv:2:2", "pool:2"]])
def test_fanouts_equal_the_synapse_structure(layers):
    model = _model(layers)
    fans = fanouts(model)
    assert len(fans) == 1 + len(model.spiking_specs)
    for l, fan in enumerate(fans):
        torch.testing.assert_close(fan, _fanout_by_structure(model, l), rtol=0, atol=0)


def test_synops_counted_by_a_loop():
    model = _model(["conv:2:3", "pool:2", "dense:4"])
    x = (torch.rand(3, 3, 2, 6, 6) < 0.3).float()
    res = diagnostics(model, x, torch.tensor([0, 1, 2]))
    for mode, key in (("hard", "synops_hard"), ("smooth", "synops_smooth")):
        with torch.no_grad():
            _, trace = model(x, mode=mode, return_trace=True)
        layers = [x] + [tr.s for tr in trace]
        total = 0.0
        for l, s in enumerate(layers):
            fan = _fanout_by_structure(model, l)
            for b in range(s.shape[0]):
                for t in range(s.shape[1]):
                    total += float((s[b, t] * fan).sum())
        assert res[key] == pytest.approx(total / 3, rel=1e-5)
    assert res["synops_hard"] > 0


def test_int8_quantisation_round_trip():
    model = _model(["conv:2:3", "dense:4"])
    q = quantize_int8(model)
    for (name, w), (_, wq) in zip(model.named_parameters(), q.named_parameters()):
        w, wq = w.detach(), wq.detach()
        if name.endswith("bias"):
            assert torch.equal(w, wq)
            continue
        scale = w.abs().max() / 127
        ints = wq / scale
        torch.testing.assert_close(ints, ints.round(), rtol=0, atol=1e-4)  # integer levels
        assert ints.abs().max() <= 127 + 1e-4
        assert (wq - w).abs().max() <= scale / 2 + 1e-7  # rounding error at most half a level
        assert wq.abs().max() == pytest.approx(w.abs().max().item(), rel=1e-6)
    assert not torch.equal(model.layers[0].weight, q.layers[0].weight)  # the original is untouched


def test_ece_against_a_hand_computed_example():
    # 4 samples, 2 classes; confidences 0.9, 0.9, 0.6, 0.6; correct: yes, no, yes, yes
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]], dtype=torch.float64)
    logits = p.log()
    labels = torch.tensor([0, 1, 0, 1])
    # bins (15 equal-width): 0.9 -> bin 13, 0.6 -> bin 8. bin 13: acc 0.5, conf 0.9; bin 8: acc 1, conf 0.6
    want = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(logits, labels) == pytest.approx(want, rel=1e-12)


def test_e1_fields_and_consistency():
    model = _model(["dense:6"])
    x = torch.rand(8, 3, 2, 6, 6)
    y = torch.randint(0, 4, (8,))
    res = diagnostics(model, x, y)
    assert res["gap"] == pytest.approx(res["smooth_acc"] - res["hard_acc"])
    z_s, z_h = model(x, mode="smooth"), model(x, mode="hard")
    assert res["agreement"] == pytest.approx((z_s.argmax(1) == z_h.argmax(1)).float().mean().item())
    assert res["logit_discrepancy"] == pytest.approx((z_h - z_s).norm(dim=1).mean().item(), rel=1e-5)
    _, trace = model(x, return_trace=True)
    band = ((trace[0].u - 0.5).abs() < 4 / 3.0).float().mean().item()
    assert res["soft_band_fraction"] == [pytest.approx(band)]


def test_temperature_scaling_recovers_a_known_temperature():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 5, dtype=torch.float64) * 2
    labels = torch.distributions.Categorical(logits=true_logits).sample()
    tau = fit_temperature(true_logits * 3.0, labels)  # over-confident by a factor 3
    assert tau == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(true_logits * 3 / tau, labels) < expected_calibration_error(true_logits * 3, labels)


def test_reliability_bins_add_up():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.1, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    bins = reliability_bins(logits, labels)
    assert sum(b["count"] for b in bins) == 4
    ece = sum(b["count"] / 4 * abs(b["accuracy"] - b["confidence"]) for b in bins)
    assert ece == pytest.approx(expected_calibration_error(logits, labels))
