"""Local bounds (theory.local via checks._budgets) against exact float64 quantities on random tiny SNNs.

For each drawn network (``checks.testing``: dense with 1-3 layers, conv with 1-2, conv -> [pool ->]
1-2 dense; both resets), on both range families (``WIDE`` and ``SOFT_BAND``, where trained networks
live and the soft band is populated), and its probe batch:

- the local bound holds at that point: >= the exact quantity (observed states for T2, the exact
  input Jacobian per sample for T3, the exact Hessian of the probe-batch loss for T4, the exact
  Hessian at points of the rho-ball for T5's ball version, the exact input gradient for T7);
- it is no larger than the global bound (global >= local), up to float64 rounding;
- its budget telescopes: the log10 ratios sum to log10(global bound / estimate) within 1e-9.

Tolerances only absorb float64 rounding (``checks.testing.assert_certificate``'s rtol relative to
the bound, atol absolute), as in test_bounds_exact.py. Ratios exact / local are logged per
statement, kind and family (``_log.LOG``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, target
from hypothesis import strategies as st

from _log import LOG
from checks import _budgets, linalg
from checks.constants import ball_constants
from checks.testing import (
    FAMILIES,
    KINDS,
    NetSpec,
    Ranges,
    assert_certificate,
    hessian_eigenvalues,
    input_jacobian,
    nets,
    one_thread,
)
from theory import input_lipschitz, smoothness, state_interval

SUM_TOL = 1e-9  # the budget's log10 ratios against log10(global / estimate)
# assert_certificate's defaults (rtol 1e-9, atol 1e-12) absorb float64 rounding everywhere else


def telescopes(loc: _budgets.Local, bound: float, estimate: float) -> None:
    ratios = [e["log10_ratio"] for e in loc.looseness]
    if bound > 0 and estimate > 0 and all(r is not None for r in ratios):
        assert abs(sum(ratios) - math.log10(bound / estimate)) <= SUM_TOL, f"budget {ratios} does not telescope"
    else:
        LOG.count(f"budget without log ratios ({'zero estimate' if estimate <= 0 else 'zero bound'})")


@one_thread
def check_t2(spec: NetSpec, family: str = "wide") -> None:
    """T2: for the worst side, the local interval (measured currents) holds every observed state; global contains it."""
    net = spec.build()
    c = net.constants()
    I_T = state_interval(c).details["I_T"]
    for mode in ("smooth", "hard"):
        with torch.no_grad():
            us = [tr.u for tr in net.model(net.x, mode=mode, return_trace=True)[1]]
        for l, u in enumerate(us):
            for side in ("max", "min"):
                est = max(float(u.max()), 0.0) if side == "max" else max(-float(u.min()), 0.0)
                bound = I_T[l][1] if side == "max" else -I_T[l][0]
                loc = _budgets.t2(net.model, net.x, c, (mode, l, side), bound, est)
                lo, hi = loc.details["interval"]
                what = f"T2 local {mode} layer {l + 1}"
                assert_certificate(hi, float(u.max()), what=f"{what}: interval top against max u")
                assert_certificate(-lo, -float(u.min()), what=f"{what}: interval bottom against min u (negated)")
                assert_certificate(bound, loc.bound, what=f"{what} ({side}): global against local")
                assert_certificate(loc.bound, est, what=f"{what} ({side}): local against observed")
                telescopes(loc, bound, est)
                LOG.record(f"T2 local {spec.kind} {family} (observed / local)", est, loc.bound, spec)


@one_thread
def check_t3(spec: NetSpec, family: str = "wide") -> None:
    """T3: the per-sample local bound >= the exact ||dz/dx(x_b)||; max over samples <= L_in."""
    net = spec.build()
    c = net.constants()
    rec = input_lipschitz(c, net.grid_h(c))
    assume(rec.value is not None)
    norms = [torch.linalg.matrix_norm(input_jacobian(net, b), ord=2).item() for b in range(spec.batch)]
    est = max(norms)
    assume(est > 0)
    loc = _budgets.t3(net.model, (net.x, net.y), c, rec, est, est)
    for b, (n, L_b, P_b) in enumerate(zip(norms, loc.details["per_sample"], loc.details["proof_per_sample"])):
        # spectral norm from an SVD in float64: relative error ~1e-15
        assert_certificate(L_b, n, what=f"T3 local, sample {b}: local bound against ||dz/dx||")
        # the proof with measured constants on its own (the local bound is its min with the exact Gram norm)
        assert_certificate(P_b, n, what=f"T3 local proof, sample {b}: proof with measured constants against ||dz/dx||")
    assert_certificate(rec.value, loc.bound, what="T3: global L_in against local")
    telescopes(loc, rec.value, est)
    target(LOG.record(f"T3 local {spec.kind} {family} (||dz/dx|| / local)", est, loc.bound, spec), label="T3 exact / local")


@one_thread
def check_t4(spec: NetSpec, family: str = "wide") -> None:
    """T4: the local bound (mean of per-sample bounds) >= |lambda| of the exact probe-batch Hessian; <= L."""
    net = spec.build()
    c = net.constants()
    rec = smoothness(c, net.grid_h(c))
    assume(rec.value is not None)
    top = hessian_eigenvalues(net, net.x, net.y).abs().max().item()
    assume(top > 0)
    loc = _budgets.t4(net.model, (net.x, net.y), c, rec, top)  # the proof alone (no randomized certificate)
    # eigvalsh of a float64 matrix of size < 300: absolute error ~1e-13 ||H||
    assert_certificate(loc.bound, top, what="T4 local: local bound against |lambda|max of the probe-batch Hessian")
    # the randomized certificate, at a failure probability small enough that no example of any run fails by chance
    op = linalg.HessianOperator(net.model, None, net.x, net.y, mode="smooth", check_deterministic=False)
    cert = linalg.spectral_radius_certificate(op, steps=linalg.steps_for(op.dim, 1e-12, 0.5), failure_probability=1e-12,
                                              seed=spec.seed)
    assert_certificate(cert.value, top, what="T4 randomized certificate against |lambda|max of the probe-batch Hessian")
    assert_certificate(rec.value, loc.bound, what="T4: global L against local")
    telescopes(loc, rec.value, top)
    target(LOG.record(f"T4 local {spec.kind} {family} (|lambda| / local)", top, loc.bound, spec), label="T4 exact / local")


@one_thread
def check_t5_ball(spec: NetSpec, rho: float, family: str = "wide") -> None:
    """T5's ball: L from T4's chain on the rho-ball >= |lambda| of the exact Hessian at points of the ball; <= global."""
    net = spec.build()
    c = net.constants()
    c_ball = ball_constants(net.model, c, rho)
    rec_ball = smoothness(c_ball, net.grid_h(c_ball))
    assume(rec_ball.value is not None)
    out = _budgets.t4_ball(net.model, (net.x, net.y), c, c_ball, rec_ball, rho)
    L_ball = out[0][-1].value
    assert_certificate(rec_ball.value, L_ball, what="T5 ball: global L on the ball against local")
    f, w = net.loss_fn(), net.flat_params()
    gen = torch.Generator().manual_seed(spec.seed + 7)
    g = torch.func.grad(f)(w)
    points = [torch.zeros_like(w)] + ([rho * g / g.norm()] if g.norm() > 0 else [])
    for _ in range(2):
        v = torch.randn(w.numel(), generator=gen, dtype=torch.float64)
        points.append(rho * v / v.norm())
    worst = 0.0
    for eps in points:
        top = hessian_eigenvalues(net, eps=eps).abs().max().item()
        assert_certificate(L_ball, top, what=f"T5 ball local: L on the ball against |lambda| at ||eps|| = {eps.norm().item():.3g}")
        worst = max(worst, LOG.record(f"T5 ball local {spec.kind} {family} (|lambda| in ball / local)", top, L_ball, spec))
    target(worst, label="T5 ball exact / local")


@one_thread
def check_t7(spec: NetSpec, family: str = "wide") -> None:
    """T7: ||grad_x l|| <= ||W^1|| ||D||_F (local) <= (||W^1|| / s_T(X)) ||grad_{W^1} l|| (global), per sample."""
    assume(spec.T <= spec.input_shape[0])
    net = spec.build()
    W1 = net.model.layers[0].weight
    W1_norm = torch.linalg.matrix_norm(W1.detach(), ord=2).item()
    for b in range(spec.batch):
        s = torch.linalg.svdvals(net.x[b])
        assume(s[-1].item() > 1e-5 * s[0].item())
        x = net.x.clone().requires_grad_(True)
        loss = F.cross_entropy(net.model(x[b:b + 1], mode="smooth"), net.y[b:b + 1])
        gW, gx = torch.autograd.grad(loss, (W1, x))
        est, bound = gx.norm().item(), W1_norm / s[-1].item() * gW.norm().item()
        assume(est > 0)
        loc = _budgets.t7(net.model, net.x, net.y, b, W1_norm, bound, est, gW.norm().item(), s[-1].item())
        # X^+ amplifies rounding by s_1/s_T (<= 1e5 here): 1e-11 relative covers it
        assert_certificate(loc.bound, est, rtol=1e-11, what=f"T7 local, sample {b}: local bound against ||grad_x l||")
        assert_certificate(bound, loc.bound, rtol=1e-11, what=f"T7, sample {b}: global against local")
        telescopes(loc, bound, est)
        LOG.record(f"T7 local {family} (||grad_x l|| / local)", est, loc.bound, spec)


RHO = st.floats(-3.0, -0.5).map(lambda e: 10.0**e)
# every local statement on both range families and (T7: dense first layer only) every kind of net
CASES = [(ranges, kind) for ranges in FAMILIES for kind in KINDS]
CASE_IDS = [f"{ranges.name}-{kind}" for ranges, kind in CASES]
FAMILY_IDS = [ranges.name for ranges in FAMILIES]


@pytest.mark.parametrize("ranges, kind", CASES, ids=CASE_IDS)
@given(data=st.data())
def test_T2_local(ranges: Ranges, kind: str, data: st.DataObject) -> None:
    check_t2(data.draw(nets(kind, ranges), label="net"), ranges.name)


@pytest.mark.parametrize("ranges, kind", CASES, ids=CASE_IDS)
@given(data=st.data())
def test_T3_local(ranges: Ranges, kind: str, data: st.DataObject) -> None:
    check_t3(data.draw(nets(kind, ranges), label="net"), ranges.name)


@pytest.mark.parametrize("ranges, kind", CASES, ids=CASE_IDS)
@given(data=st.data())
def test_T4_local(ranges: Ranges, kind: str, data: st.DataObject) -> None:
    check_t4(data.draw(nets(kind, ranges), label="net"), ranges.name)


@pytest.mark.parametrize("ranges, kind", CASES, ids=CASE_IDS)
@given(data=st.data(), rho=RHO)
def test_T5_ball_local(ranges: Ranges, kind: str, data: st.DataObject, rho: float) -> None:
    check_t5_ball(data.draw(nets(kind, ranges), label="net"), rho, ranges.name)


@pytest.mark.parametrize("ranges", FAMILIES, ids=FAMILY_IDS)
@given(data=st.data())
def test_T7_local(ranges: Ranges, data: st.DataObject) -> None:
    check_t7(data.draw(nets("dense", ranges), label="net"), ranges.name)
