"""sast.gap: per-layer attribution, margins and the mechanism's per-sample quantities, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sast import gap
from sast.model import SNN, SNNConfig

SATURATE = 5000.0  # beta |u - theta| > 745 makes sig_beta exactly 0 or 1 in float64 (exp(-745) underflows)


def _two_layer(seed: int = 0, binary_layer: int | None = None) -> SNN:
    torch.manual_seed(seed)
    cfg = SNNConfig(input_shape=(12,), layers=["dense:7", "dense:5"], T=6, beta=0.7, num_classes=3)
    model = SNN(cfg).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(4.0)
        if binary_layer is not None:  # its neurons fire always or never, with saturated sigmoids
            layer = model.layers[binary_layer - 1]
            layer.weight.zero_()
            pattern = torch.tensor([1.0 if i % 2 else -1.0 for i in range(layer.bias.numel())], dtype=torch.float64)
            layer.bias.copy_(SATURATE * pattern + 1.0)
    return model


def _data(n: int = 40, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 6, 12, generator=g) < 0.4).double()
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def test_mixed_modes_equal_uniform_modes():
    model, (x, _) = _two_layer(), _data()
    assert torch.equal(model(x, mode=["smooth", "smooth"]), model(x, mode="smooth"))
    assert torch.equal(model(x, mode=["hard", "hard"]), model(x, mode="hard"))
    with pytest.raises(ValueError, match="one spike mode per spiking layer"):
        model(x, mode=["hard"])
    with pytest.raises(ValueError, match="unknown mode"):
        model(x, mode=["hard", "soft"])


def test_attribution_puts_the_whole_gap_on_the_non_binary_layer():
    model, (x, y) = _two_layer(binary_layer=1), _data()
    # layer 1 is exactly binary: its smooth and hard spikes coincide
    _, ts = model(x, mode="smooth", return_trace=True)
    _, th = model(x, mode="hard", return_trace=True)
    assert torch.equal(ts[0].s, th[0].s)
    att = gap.layer_attribution(model, x, y)
    l1, l2 = att["layers"]
    assert l1["drop"] == 0 and l1["recovered"] == 0
    assert l1["hard_only_discrepancy"] == 0 and l1["smooth_only_discrepancy"] == 0
    assert l2["drop"] == pytest.approx(att["gap"], abs=0) and l2["recovered"] == pytest.approx(att["gap"], abs=0)
    z_s, z_h = model(x, mode="smooth").float(), model(x, mode="hard").float()
    assert l2["hard_only_discrepancy"] == pytest.approx((z_h - z_s).norm(dim=1).mean().item(), rel=1e-6)
    assert l2["hard_only_discrepancy"] > 0  # the planted case is not trivial


def test_attribution_accuracies_are_the_mixed_forward_passes():
    model, (x, y) = _two_layer(seed=3), _data(seed=4)
    att = gap.layer_attribution(model, x, y)
    for l, rec in enumerate(att["layers"]):
        hard_only = ["smooth", "smooth"]
        hard_only[l] = "hard"
        acc = (model(x, mode=hard_only).argmax(1) == y).double().mean().item()
        assert rec["hard_only_acc"] == acc and rec["drop"] == pytest.approx(att["smooth_acc"] - acc)


def test_margins_against_a_direct_histogram():
    model, (x, _) = _two_layer(seed=2), _data(seed=5)
    res = gap.margins(model, x, "smooth")
    with torch.no_grad():
        _, trace = model(x, mode="smooth", return_trace=True)
    edges = np.array(gap.MARGIN_EDGES)
    for l, tr in enumerate(trace):
        m = (model.config.beta * (tr.u.detach() - model.config.theta)).flatten().numpy()
        below, above = int((m < edges[0]).sum()), int((m >= edges[-1]).sum())
        direct = np.concatenate([[below], np.histogram(m[(m >= edges[0]) & (m < edges[-1])], bins=edges)[0], [above]])
        assert res["counts"][l] == direct.tolist()
        assert res["soft_band_fraction"][l] == pytest.approx(float((np.abs(m) < gap.SOFT_BAND).mean()))
        assert res["mean_abs_margin"][l] == pytest.approx(float(np.abs(m).mean()))


def test_input_gradient_norms_are_per_sample():
    model, (x, y) = _two_layer(seed=6), _data(n=5, seed=7)
    norms = gap.input_gradient_norms(model, x, y)
    for i in range(len(y)):
        xi = x[i: i + 1].clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xi, mode="smooth"), y[i: i + 1])
        (g,) = torch.autograd.grad(loss, xi)
        assert norms[i] == pytest.approx(g.norm().item(), rel=1e-5)


def test_mechanism_samples_correlation():
    model, (x, y) = _two_layer(seed=8), _data(seed=9)
    res = gap.mechanism_samples(model, x, y)
    assert len(res["input_grad_norm"]) == len(res["logit_discrepancy"]) == len(y)
    from scipy import stats

    assert res["spearman"] == pytest.approx(stats.spearmanr(res["input_grad_norm"], res["logit_discrepancy"]).statistic)
