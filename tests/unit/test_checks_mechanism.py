"""checks.mechanism (T7) on tiny float64 SNNs against a hand computation of the identity of T7."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from checks import mechanism
from sast.model import SNN, SNNConfig
from theory import bounds

# float64 autograd against a hand loop: both sum the same products in a different order.
NORM_RTOL = 1e-10


def tiny(*, seed: int = 0, T: int = 3, n0: int = 6, layers=("dense:5", "dense:4"), reset: str = "zero",
         batch: int = 5, input_shape=None, weight_scale: float = 2.0):
    torch.manual_seed(seed)
    shape = input_shape or (n0,)
    model = SNN(SNNConfig(input_shape=shape, layers=list(layers), T=T, beta=2.0, reset=reset,
                          num_classes=3)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(weight_scale)
    g = torch.Generator().manual_seed(seed + 1)
    x = 2.0 * torch.rand(batch, T, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (batch,), generator=g)
    return model, x, y


def hand_gradients(model: SNN, xi: torch.Tensor, yi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x l, grad_{W^1} l) of one sample via T7's identity: delta_t = dl/d(W^1 x_t), D X and W^1^T delta_t.

    delta is the gradient with respect to the first layer's currents of a forward pass
    written out here (smooth LIF, both resets); nothing of the check's code is reused.
    """
    cfg = model.config
    W1, b1 = model.layers[0].weight.detach(), model.layers[0].bias.detach()
    currents = (xi @ W1.T + b1).detach().requires_grad_(True)  # (T, n_1): W^1 x_t + b^1
    a = None
    for l, layer in enumerate(model.layers):
        inp = currents if l == 0 else a @ layer.weight.T + layer.bias
        u, s, spikes = None, None, []
        for t in range(cfg.T):
            if u is None:
                u = inp[t]
            elif cfg.reset == "zero":
                u = cfg.lam * u * (1 - s) + inp[t]
            else:
                u = cfg.lam * u - cfg.theta * s + inp[t]
            s = torch.sigmoid(cfg.beta * (u - cfg.theta))
            spikes.append(s)
        a = torch.stack(spikes)
    z = (a @ model.readout.weight.T + model.readout.bias).mean(dim=0)
    assert torch.allclose(z, model(xi.unsqueeze(0)).squeeze(0), rtol=1e-12, atol=1e-14)  # same model
    (delta,) = torch.autograd.grad(F.cross_entropy(z.unsqueeze(0), yi.unsqueeze(0)), currents)  # (T, n_1)
    D = delta.T  # n_1 x T
    X = xi  # T x n_0
    return (W1.T @ D).T, D @ X


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_per_sample_norms_equal_the_hand_computation(reset):
    model, x, y = tiny(reset=reset)
    r = mechanism.run(model, (x, y))
    for i in range(len(x)):
        gx, gw = hand_gradients(model, x[i], y[i])
        assert r.details["input_grad_norm"][i] == pytest.approx(float(gx.norm()), rel=NORM_RTOL)
        assert r.details["w1_grad_norm"][i] == pytest.approx(float(gw.norm()), rel=NORM_RTOL)
        sv = torch.linalg.svdvals(x[i])
        assert r.details["s_T"][i] == pytest.approx(float(sv[-1]), rel=1e-12)
    assert r.details["w1_norm"] == pytest.approx(float(torch.linalg.svdvals(model.layers[0].weight.detach())[0]), rel=1e-12)


def test_hand_identity_is_autograd():
    # the identity grad_{W^1} l = D X of THEORY.md T7, checked against autograd on the weight itself
    model, x, y = tiny()
    _, gw = hand_gradients(model, x[0], y[0])
    model.zero_grad()
    F.cross_entropy(model(x[:1]), y[:1]).backward()
    assert torch.allclose(gw, model.layers[0].weight.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_inequality_holds_per_sample_and_the_worst_sample_is_reported(seed):
    model, x, y = tiny(seed=seed, weight_scale=1.0 + seed)
    r = mechanism.run(model, (x, y))
    assert r.status == "holds" and r.assumptions == {"T7 condition": True}
    gx, per = r.details["input_grad_norm"], r.details["bound_per_sample"]
    ratios = [g / b for g, b in zip(gx, per)]
    assert all(q <= 1 for q in ratios)
    i = r.details["sample"]
    assert ratios[i] == max(ratios) and r.estimate == gx[i] and r.bound == per[i]
    assert per[i] == pytest.approx(bounds.local_mechanism(r.details["w1_norm"], r.details["s_T"][i],
                                                          r.details["w1_grad_norm"][i]).value, rel=1e-12)
    assert r.details["fraction_condition"] == 1.0 and "finding" not in r.details
    assert r.details["input_grad_norm_max"] == max(gx)


def test_zero_time_bin_is_rank_deficient_and_gets_no_bound():
    model, x, y = tiny()
    x[2, 1] = 0.0  # sample 2 has an all-zero frame: X has a zero row
    r = mechanism.run(model, (x, y))
    assert r.details["condition_holds"][2] is False and r.details["bound_per_sample"][2] is None
    assert r.details["s_T"][2] == 0.0 and r.details["zero_time_bins"][2] == 1
    assert r.details["fraction_condition"] == pytest.approx(4 / 5)
    assert "1 of 5" in r.details["finding"] and "all-zero" in r.details["finding"]
    assert r.details["sample"] != 2 and r.status == "holds"


def test_nearly_dependent_frames_fail_the_rank_tolerance():
    model, x, y = tiny(batch=2)
    x[0, 2] = x[0, 0] + 1e-9  # s_T(X) ~ 1e-9 s_1 <= rtol s_1: numerically rank deficient
    r = mechanism.run(model, (x, y))
    assert r.details["condition_holds"] == [False, True]


def test_condition_failing_everywhere_is_not_applicable():
    model, x, y = tiny(T=4, n0=3)  # T > n_0: X (4 x 3) cannot have full row rank
    r = mechanism.run(model, (x, y))
    assert r.status == "not applicable" and r.bound is None and r.estimate is None
    assert r.details["reason"].startswith("condition fails") and "T = 4 > n_0 = 3" in r.details["finding"]
    assert r.details["bound_per_sample"] == [None] * len(x)


@pytest.mark.parametrize("layers", [("conv:2:3", "dense:4"), ("pool:2", "dense:4")])
def test_conv_first_layer_or_pooling_before_it_is_not_applicable(layers):
    model, x, y = tiny(layers=layers, input_shape=(1, 4, 4))
    r = mechanism.run(model, (x, y))
    assert r.status == "not applicable" and r.bound is None and r.estimate is None
    assert r.details["reason"].startswith("condition fails")
    assert len(r.details["input_grad_norm"]) == len(x) and r.details["w1_norm"] is None


def test_cli_missing_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    assert mechanism.main(["--model", str(tmp_path / "nope.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
