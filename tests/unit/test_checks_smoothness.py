"""T4 check (checks.smoothness) against the exact Hessian of a tiny float64 SNN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from checks import smoothness
from sast.model import SNN, SNNConfig


def _net(seed: int = 0, **kw) -> SNN:
    torch.manual_seed(seed)
    cfg = dict(input_shape=(5,), layers=["dense:4"], T=3, lam=0.8, theta=1.0, beta=2.0, reset="zero", num_classes=3)
    cfg.update(kw)
    return SNN(SNNConfig(**cfg)).double().eval()


def _probe(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 5, generator=g, dtype=torch.float64) * 2, torch.randint(0, 3, (n,), generator=g)


def exact_hessian_eigenvalues(model: SNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """eigvalsh of the Hessian of the smooth probe loss over all parameters, flattened in named order."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(w: torch.Tensor) -> torch.Tensor:
        params = {n: c.view(s) for n, c, s in zip(names, w.split(sizes), shapes)}
        return F.cross_entropy(functional_call(model, params, (x,), {"mode": "smooth"}), y)

    H = torch.autograd.functional.hessian(loss, w0)
    return torch.linalg.eigvalsh((H + H.T) / 2)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("hvp_method", ["double-backward", "forward-over-reverse"])
def test_lanczos_extremes_equal_exact_hessian_eigenvalues(reset, hvp_method):
    model = _net(reset=reset)
    x, y = _probe()
    ev = exact_hessian_eigenvalues(model, x, y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = smoothness.run(model, (x, y), tol=1e-10, hvp_method=hvp_method)
    # P = 39 parameters: Lanczos runs to an invariant Krylov space or to the tolerance; 1e-8
    # relative to the spectral radius is far above float64 rounding, far below any bug
    scale = float(ev.abs().max())
    assert r.details["lambda_min"] == pytest.approx(float(ev[0]), abs=1e-8 * scale)
    assert r.details["lambda_max"] == pytest.approx(float(ev[-1]), abs=1e-8 * scale)
    assert r.estimate == pytest.approx(scale, rel=1e-8)
    assert r.converged is True and r.details["hvp_method"] == hvp_method and r.n_products >= 2
    assert r.holds is True and r.status == "holds" and r.bound == r.details["L"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is untouched


def test_t4_record_details_carry_the_theory_quantities():
    model = _net()
    r = smoothness.run(model, _probe(), tol=1e-6)
    d = r.details
    for key in ("U1", "S1", "U2", "S2", "Z1", "Z2", "K", "kappa", "finite_T", "residual_min", "residual_max"):
        assert key in d, key
    assert d["Z1"] ** 2 / 2 + 2 ** 0.5 * d["Z2"] == pytest.approx(r.bound, rel=1e-12)  # L = Z1^2/2 + sqrt2 Z2
    assert r.assumptions == {"A1": True, "A4": True} and d["finite_T"] is False
    assert r.to_json()["id"] == "T4"


def test_violated_A4_gives_assumption_fails_with_the_finite_T_bound():
    # subtract reset: A4 <=> theta beta < 4 (1 + lam); here theta beta = 8 >= 4 * 1.5 = 6
    model = _net(reset="subtract", lam=0.5, theta=1.0, beta=8.0)
    x, y = _probe()
    r = smoothness.run(model, (x, y), tol=1e-8)
    assert r.assumptions["A4"] is False and r.details["finite_T"] is True
    assert r.status == "assumption fails" and r.holds is True
    assert r.bound is not None and r.estimate <= r.bound
    ev = exact_hessian_eigenvalues(model, x, y)
    assert r.estimate == pytest.approx(float(ev.abs().max()), rel=1e-6)


def test_non_convergence_is_recorded_not_raised():
    model = _net(layers=["dense:6"])
    x, y = _probe()
    r = smoothness.run(model, (x, y), tol=1e-12, max_iter=2)
    assert r.converged is False and r.n_products == 2
    # Ritz values lie inside the spectrum: the estimate is a lower estimate of the spectral radius
    assert r.estimate <= float(exact_hessian_eigenvalues(model, x, y).abs().max()) * (1 + 1e-10)
    assert r.status in ("holds", "assumption fails")


def test_bad_probe_is_refused():
    from checks._cli import CheckInputError

    with pytest.raises(CheckInputError, match="probe x must have shape"):
        smoothness.run(_net(), (torch.rand(4, 3, 7, dtype=torch.float64), torch.zeros(4, dtype=torch.long)))
