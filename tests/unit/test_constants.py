"""checks.constants: norms read off a torch SNN against exact dense matrices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from checks.constants import conv_norm_bound, exact_conv_matrix, folded_dense_matrix, model_constants, receptive_overlap
from sast.model import SNN, SNNConfig


def _model(layers, input_shape=(2, 8, 8), seed=0):
    torch.manual_seed(seed)
    return SNN(SNNConfig(input_shape=input_shape, layers=layers, T=3, num_classes=3)).double()


def test_folded_dense_matrix_equals_pool_then_linear():
    model = _model(["conv:3:3", "pool:2", "dense:5"])
    pool = [s for s in model.plan if s.kind == "pool"]
    w = folded_dense_matrix(model.layers[1].weight, pool)
    a = torch.rand(4, *model.plan[0].out_shape, dtype=torch.float64)  # spikes of the conv layer
    want = F.linear(F.avg_pool2d(a, 2).flatten(1), model.layers[1].weight)
    torch.testing.assert_close(a.flatten(1) @ w.T, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kernel, stride", [(3, 1), (3, 2), (5, 2), (2, 1)])
def test_conv_bound_is_an_upper_bound_of_the_exact_norm(seed, kernel, stride):
    torch.manual_seed(seed)
    model = _model([f"conv:3:{kernel}:{stride}"], input_shape=(2, 7, 7), seed=seed)
    spec = model.spiking_specs[0]
    exact = torch.linalg.matrix_norm(exact_conv_matrix(spec, model.layers[0].weight), ord=2).item()
    bound = conv_norm_bound(model.layers[0].weight)
    assert exact <= bound * (1 + 1e-12)  # rigorous: never below the true norm
    assert bound <= 10 * exact  # and not vacuous on small kernels


def test_receptive_overlap_counts_exactly():
    # kernel 3, stride 1, padding 1: an interior input lies in 3 receptive fields
    assert receptive_overlap(7, 3, 1, 1) == 3
    # kernel 3, stride 2: at most ceil(3/2) = 2
    assert receptive_overlap(7, 3, 2, 1) == 2
    assert receptive_overlap(7, 2, 1, 0) == 2


def test_model_constants_dense_and_conv():
    model = _model(["conv:3:3:2", "pool:2", "dense:5"])
    x = torch.rand(4, 3, 2, 8, 8, dtype=torch.float64)
    c = model_constants(model, x)
    assert c.n == (3 * 4 * 4, 5) and c.n_0 == 128 and c.kinds == ("conv", "dense")
    assert c.A == pytest.approx(x.flatten(2).norm(dim=2).max().item())
    assert c.X_inf == pytest.approx(x.max().item())
    conv = model.layers[0]
    assert c.R_inf[0] == pytest.approx(conv.weight.abs().sum(dim=(1, 2, 3)).max().item())
    assert c.b_norm[0] == pytest.approx(conv.bias.norm().item() * 4)  # broadcast over 16 positions
    assert c.P[0] == 16 and c.m[0] == pytest.approx(2.0)
    dense = folded_dense_matrix(model.layers[1].weight, [s for s in model.plan if s.kind == "pool"])
    assert c.R[1] == pytest.approx(torch.linalg.matrix_norm(dense, ord=2).item())
    assert c.R_o == pytest.approx(torch.linalg.matrix_norm(model.readout.weight, ord=2).item())
    exact0 = torch.linalg.matrix_norm(exact_conv_matrix(model.spiking_specs[0], conv.weight), ord=2).item()
    assert c.R[0] >= exact0


def test_model_constants_rejects_bad_probe():
    model = _model(["dense:4"])
    with pytest.raises(ValueError, match="probe batch must have shape"):
        model_constants(model, torch.rand(2, 4, 2, 8, 8))
    with pytest.raises(ValueError, match=">= 0"):
        model_constants(model, -torch.rand(2, 3, 2, 8, 8))
    assert math.isfinite(model_constants(model, torch.rand(2, 3, 2, 8, 8)).R[0])


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (1, 4), (6, 6)])
def test_spectral_norm_equals_the_largest_singular_value(shape):
    from checks.constants import spectral_norm

    w = torch.randn(*shape, dtype=torch.float64)
    assert spectral_norm(w) == pytest.approx(torch.linalg.svdvals(w)[0].item(), rel=1e-12)


@pytest.mark.parametrize("layers", [["dense:5", "dense:4"], ["conv:3:3:2", "pool:2", "dense:5"], ["pool:2", "dense:4"],
                                    ["conv:2:3", "pool:2", "conv:3:3"]])
@pytest.mark.parametrize("seed", range(4))
def test_ball_constants_cover_every_perturbation_of_size_rho(layers, seed):
    from checks.constants import ball_constants

    model = _model(layers, seed=seed)
    x = torch.rand(3, 3, 2, 8, 8, dtype=torch.float64)
    rho = 0.3
    ball = ball_constants(model, model_constants(model, x), rho)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(5):
        params = list(model.parameters())
        e = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        scale = rho / torch.sqrt(sum((v ** 2).sum() for v in e))
        perturbed = _model(layers, seed=seed)
        with torch.no_grad():
            for p, q, v in zip(perturbed.parameters(), params, e):
                p.copy_(q + scale * v)
        c = model_constants(perturbed, x)
        for name in ("R", "R_inf", "b_inf", "b_norm"):
            assert all(a <= b * (1 + 1e-12) for a, b in zip(getattr(c, name), getattr(ball, name))), name
        assert c.R_o <= ball.R_o * (1 + 1e-12)
