"""T5 check (checks.sam_error) against a hand computation on a tiny float64 SNN."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from checks import sam_error
from checks._cli import CheckInputError
from sast.model import SNN, SNNConfig

RHO = 0.3


def _net(seed: int = 0) -> SNN:
    torch.manual_seed(seed)
    return SNN(SNNConfig(input_shape=(5,), layers=["dense:4"], T=3, lam=0.8, beta=2.0, num_classes=3)).double().eval()


def _probe(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, 5, generator=g, dtype=torch.float64) * 2, torch.randint(0, 3, (n,), generator=g)


def _hand(model: SNN, x: torch.Tensor, y: torch.Tensor, rho: float, seed: int, taylor_samples: int) -> dict[str, float]:
    """q1, q3 and the Taylor remainders of T5 written out with torch.func on a parameter dict."""
    params = {k: v.detach().clone() for k, v in model.named_parameters()}

    def F_(p):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    g = grad(F_)(params)
    gn = math.sqrt(sum(float((v ** 2).sum()) for v in g.values()))
    shifted = {k: params[k] + rho * g[k] / gn for k in params}
    g_hat = grad(F_)(shifted)
    q1 = abs(float(F_(shifted)) - float(F_(params)) - rho * gn)
    q3 = math.sqrt(sum(float(((g_hat[k] - g[k]) ** 2).sum()) for k in params))
    # the same random directions as sam_quantities: float64 normals from a generator seeded by seed
    gen = torch.Generator().manual_seed(seed)
    flat_g = torch.cat([v.reshape(-1) for v in g.values()])
    remainders = []
    for _ in range(taylor_samples):
        v = torch.randn(flat_g.numel(), generator=gen, dtype=torch.float64)
        eps = rho * v / v.norm()
        chunks = dict(zip(params, eps.split([p.numel() for p in params.values()])))
        moved = {k: params[k] + chunks[k].view_as(params[k]) for k in params}
        remainders.append(abs(float(F_(moved)) - float(F_(params)) - float(flat_g @ eps)))
    return {"ascent_step": q1, "grad_shift": q3, "taylor": max(remainders), "F": float(F_(params)), "grad_norm": gn}


def test_quantities_equal_hand_computation_and_T5_holds():
    model = _net()
    x, y = _probe()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = sam_error.run(model, (x, y), rho=RHO, rho_source="test", seed=5, taylor_samples=4, tol=1e-8)
    want = _hand(model, x, y, RHO, seed=5, taylor_samples=4)
    q = r.details["quantities"]
    for key in ("ascent_step", "grad_shift", "taylor"):
        assert q[key]["value"] == pytest.approx(want[key], rel=1e-9, abs=1e-14), key  # float64 rounding only
    assert r.details["F"] == pytest.approx(want["F"], rel=1e-12)
    assert r.details["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-12)
    L = r.details["L"]
    assert q["ascent_step"]["bound"] == pytest.approx(L * RHO ** 2 / 2)
    assert q["inner_max_gap"]["bound"] == pytest.approx(L * RHO ** 2)
    assert q["grad_shift"]["bound"] == pytest.approx(L * RHO)
    assert r.status == "holds" and r.holds is True and r.details["worst"] in q
    assert r.estimate == q[r.details["worst"]]["value"] and r.bound == q[r.details["worst"]]["bound"]
    assert r.ratio == pytest.approx(max(v["ratio"] for v in q.values()))
    # the local curvature: Lanczos on the probe Hessian, shown beside the T4 bound
    L_local = r.details["L_local"]
    assert 0 < L_local < L and q["grad_shift"]["bound_local"] == pytest.approx(L_local * RHO)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # never modified


def test_inner_max_gap_is_nonnegative_and_below_L_rho_squared():
    model = _net(1)
    x, y = _probe()
    r = sam_error.run(model, (x, y), rho=RHO, ascent_steps=15, ascent_starts=3, local=False)
    gap = r.details["quantities"]["inner_max_gap"]
    assert r.details["q2_negative"] is False and gap["value"] >= 0.0
    assert gap["value"] <= r.details["L"] * RHO ** 2
    assert r.details["ascent"]["starts"] == 4 and r.details["L_local"] is None


class _Quadratic:
    """F(w + eps) = 1/2 eps^T A eps + b^T eps: the inner maximum over the ball is known."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor) -> None:
        self.A, self.b = A, b

    def loss_and_grad(self, eps: torch.Tensor) -> tuple[float, torch.Tensor]:
        return float(0.5 * eps @ self.A @ eps + self.b @ eps), self.A @ eps + self.b


def test_projected_ascent_reaches_the_known_maximum_and_never_exceeds_it():
    # max over ||eps|| <= 1 of 1/2 (eps1^2 + 5 eps2^2) + 0.1 eps1: near eps = (0.025, +-1), value ~ 2.5 + ...
    A, b = torch.diag(torch.tensor([1.0, 5.0], dtype=torch.float64)), torch.tensor([0.1, 0.0], dtype=torch.float64)
    grid = torch.linspace(0, 2 * math.pi, 200001, dtype=torch.float64)
    sphere = torch.stack([grid.cos(), grid.sin()], dim=1)
    true_max = float((0.5 * (sphere @ A * sphere).sum(1) + sphere @ b).max())  # on the sphere (A is PD)
    starts = [torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.6, 0.1], dtype=torch.float64)]
    best, k, per_start = sam_error.inner_max(_Quadratic(A, b), starts, rho=1.0, steps=30)
    assert best <= true_max + 1e-12  # every iterate is feasible: a lower estimate
    assert best >= true_max * (1 - 1e-3)  # and ascent finds it from a poor start (along e1, the wrong axis)


def test_rho_from_checkpoint_says_where_it_came_from():
    assert sam_error.rho_from_checkpoint({"train_config": {"rho": 0.3}}) == (0.3, "checkpoint train_config.rho")
    rho, why = sam_error.rho_from_checkpoint({"train_config": {"rho": 0.0}})
    assert rho == sam_error.DEFAULT_RHO and "0" in why and "default" in why
    rho, why = sam_error.rho_from_checkpoint({})
    assert rho == sam_error.DEFAULT_RHO and "absent" in why


def test_bad_rho_is_refused():
    with pytest.raises(CheckInputError, match="rho must be"):
        sam_error.run(_net(), _probe(), rho=0.0)


def test_t5_takes_t4s_lanczos_extremes_where_they_ran_alike():
    """checks.all hands T5 the T4 record: the same curvature numbers as T5's own Lanczos, without running it."""
    from checks import smoothness

    model, probe = _net(), _probe()
    t4 = smoothness.run(model, probe, local=False)
    own = sam_error.run(model, probe, rho=RHO)
    shared = sam_error.run(model, probe, rho=RHO, t4_result=t4)
    assert own.details["curvature_source"] == "own Lanczos run" and own.n_products > 0
    assert shared.details["curvature_source"] == "T4's record" and shared.n_products == 0
    for key in ("lambda_min", "lambda_max", "L_local"):
        assert shared.details[key] == pytest.approx(own.details[key], rel=1e-9)
    assert shared.estimate == own.estimate and shared.bound == own.bound and shared.status == own.status
    assert shared.local_bound == pytest.approx(own.local_bound, rel=1e-12)
    # a T4 record of other settings (another seed, tolerance or step limit) is not taken for this run
    assert sam_error.run(model, probe, rho=RHO, t4_result=t4, seed=1).details["curvature_source"] == "own Lanczos run"
    assert sam_error.run(model, probe, rho=RHO, t4_result=t4, tol=1e-2).details["curvature_source"] == (
        "own Lanczos run")
    short = smoothness.run(model, probe, local=False, max_iter=2)  # fewer steps than T5's default allows
    assert sam_error.run(model, probe, rho=RHO, t4_result=short).details["curvature_source"] == "own Lanczos run"
    # more steps than asked for are fine: the Ritz values only move outward
    assert sam_error.run(model, probe, rho=RHO, t4_result=t4, max_iter=3).details["curvature_source"] == (
        "T4's record")
