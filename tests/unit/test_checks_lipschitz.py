"""checks.lipschitz (T3) on tiny float64 SNNs against exact Jacobians and the closed-form L_in."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from checks import lipschitz
from checks._cli import CheckInputError
from sast.model import SNN, SNNConfig
from theory import bounds

# Relative tolerance of the Krylov estimate against the exact spectral norm: the stopping
# rule (tol 1e-3 on the Ritz residual) gives ~5e-4; with classes + 1 steps the space is
# exhausted and float64 agrees far below 1e-4 (the brief's tolerance).
JAC_RTOL = 1e-4


def tiny(reset: str = "zero", *, seed: int = 0, beta: float = 2.0, lam: float = 0.9, theta: float = 1.0,
         T: int = 4, n0: int = 5, layers: tuple[str, ...] = ("dense:6", "dense:4"), classes: int = 3,
         batch: int = 5, weight_scale: float = 1.0):
    torch.manual_seed(seed)
    model = SNN(SNNConfig(input_shape=(n0,), layers=list(layers), T=T, lam=lam, theta=theta, beta=beta,
                          reset=reset, num_classes=classes)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(weight_scale)
    g = torch.Generator().manual_seed(seed + 1)
    x = 2.0 * torch.rand(batch, T, n0, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=g)
    return model.eval(), x, y


def exact_jacobian_norm(model: SNN, xi: torch.Tensor) -> float:
    J = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0), mode="smooth").squeeze(0), xi)
    return float(torch.linalg.matrix_norm(J.reshape(J.shape[0], -1), ord=2))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_jacobian_estimate_equals_exact_spectral_norm(reset):
    model, x, y = tiny(reset, weight_scale=3.0)
    r = lipschitz.run(model, (x, y), adversarial=0)
    exact = [exact_jacobian_norm(model, xi) for xi in x]
    assert r.converged is True
    for est, ref in zip(r.details["jacobian_norm"], exact):
        assert est == pytest.approx(ref, rel=JAC_RTOL)
    assert r.estimate == pytest.approx(max(exact), rel=JAC_RTOL)
    assert r.details["jacobian_argmax"] == max(range(len(x)), key=lambda i: exact[i])
    assert r.n_products > 0 and r.details["adversarial_ratio"] == []


def test_adversarial_ratio_is_positive_and_below_L_in():
    model, x, y = tiny("zero", weight_scale=3.0)
    r = lipschitz.run(model, (x, y), adversarial=3, steps=10)
    ratios = r.details["adversarial_ratio"]
    assert len(ratios) == 3 and all(0 < q <= r.bound for q in ratios)
    # the attacked samples are those of largest Jacobian norm
    jac = r.details["jacobian_norm"]
    assert sorted(jac, reverse=True)[:3] == [jac[i] for i in r.details["adversarial_samples"]]
    assert r.estimate == max(r.details["jacobian_max"], max(ratios))


def test_adversarial_iterates_secant_ratio_at_small_radius_matches_local_jacobian():
    # zero steps: x' = P(x + r0 u) at a tiny radius, so the secant ratio is ||J u'|| / ||u'|| <= ||J||
    # up to second-order terms; far from zero (the start is not degenerate) and below the norm.
    model, x, _ = tiny("zero", weight_scale=3.0)
    ratios = lipschitz.adversarial_ratios(model, x[:2], float(x.max()), steps=0, start=1e-6)
    for q, xi in zip(ratios, x[:2]):
        assert 0 < q <= exact_jacobian_norm(model, xi) * (1 + 1e-4)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_T3_holds_on_random_tiny_nets(seed, reset):
    model, x, y = tiny(reset, seed=seed, beta=1.0 + 2 * seed, weight_scale=1.0 + seed)
    r = lipschitz.run(model, (x, y), adversarial=2, steps=8, seed=seed)
    assert r.holds is True and r.status in ("holds", "assumption fails")
    assert 0 < r.estimate <= r.bound
    assert r.details["grad_x_norm_max"] <= r.details["grad_x_bound"] and r.details["grad_x_holds"] is True


def test_bound_is_theory_input_lipschitz():
    from checks.constants import model_constants

    model, x, y = tiny("subtract")
    r = lipschitz.run(model, (x, y), adversarial=0)
    rec = bounds.input_lipschitz(model_constants(model, x))
    assert r.bound == rec.value and r.details["grad_x_bound"] == pytest.approx(math.sqrt(2) * rec.value)
    assert r.assumptions == {"A1": True, "A4": True} and r.details["finite_T"] is False


def test_input_gradient_norms_match_a_loop():
    model, x, y = tiny("zero")
    got = lipschitz.input_gradient_norms(model, x, y)
    for gi, xi, yi in zip(got, x, y):
        xi = xi.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi.unsqueeze(0)), yi.unsqueeze(0)), xi)
        assert gi == pytest.approx(float(g.norm()), rel=1e-12)


def test_hard_mode_is_not_applicable_without_a_number():
    model, x, y = tiny("zero")
    r = lipschitz.run(model, (x, y), mode="hard")
    assert r.status == "not applicable" and r.bound is None and r.estimate is None and r.holds is None
    assert "discontinuous" in r.details["reason"]


def test_A4_failure_gives_finite_T_form():
    # subtract reset: A4 <=> theta beta < 4 (1 + lam); here 1 * 8 >= 4 * 1.5
    model, x, y = tiny("subtract", beta=8.0, lam=0.5, theta=1.0)
    r = lipschitz.run(model, (x, y), adversarial=1, steps=5)
    assert r.assumptions["A4"] is False
    assert r.status == "assumption fails" and r.holds is True
    assert r.details["finite_T"] is True and "finite-T" in r.details["reason"]
    assert r.details["L_in_T_uniform"] is None


@pytest.mark.parametrize("kwargs", [{"mode": "hfsb"}, {"adversarial": -1}, {"steps": -2}])
def test_bad_options_are_input_errors(kwargs):
    model, x, y = tiny("zero")
    with pytest.raises(CheckInputError):
        lipschitz.run(model, (x, y), **kwargs)


def test_cli_missing_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    assert lipschitz.main(["--model", str(tmp_path / "nope.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")


def test_cli_bad_mode_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        lipschitz.main(["--model", "x.pt", "--mode", "soft"])
    assert e.value.code == 2


def attaining_net(beta: float = 3.0) -> tuple[SNN, torch.Tensor, torch.Tensor]:
    """A net where T3 is attained: T = 1, lam = 0 (A4 holds), one layer, rank-one aligned W^1 and W^o, u = theta at x0.

    Then dz/dx = W^o diag(sig_beta'(0)) W^1 = (beta/4) W^o W^1 and ||W^o W^1|| = R_o R_1, so
    ||dz/dx|| = R_o (beta/4) R_1 K_1 T^{-1/2} = L_in exactly (K_1 = 1 at T = 1).
    """
    model = SNN(SNNConfig(input_shape=(3,), layers=["dense:2"], T=1, lam=0.0, beta=beta, num_classes=2)).double()
    u1 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    v1 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    u2 = torch.tensor([3.0, -1.0], dtype=torch.float64)
    x0 = torch.tensor([[[0.5, 1.0, 0.25]]], dtype=torch.float64)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.outer(u1, v1))
        model.layers[0].bias.copy_(model.config.theta - model.layers[0].weight @ x0[0, 0])
        model.readout.weight.copy_(torch.outer(u2, u1))
        model.readout.bias.zero_()
    return model, x0, torch.tensor([0])


def test_T3_is_attained_and_a_planted_slip_in_the_bound_would_be_caught():
    beta = 8.0  # beta/4 = 2, so a bound that dropped the factor beta/4 would be half of L_in
    model, x, y = attaining_net(beta)
    r = lipschitz.run(model, (x, y), adversarial=1, steps=5)
    assert r.ratio == pytest.approx(1.0, rel=1e-9)  # the estimate meets L_in exactly
    assert r.status == "holds"
    assert r.estimate > r.bound / (beta / 4) * 1.5  # the planted slip would read as a violation
