"""Local bounds (theory.local via checks._budgets) against exact float64 quantities on random tiny SNNs.

For each drawn network (dense, conv, conv -> [pool ->] dense; both resets) and its probe batch:

- the local bound holds at that point: >= the exact quantity (observed states for T2, the exact
  input Jacobian per sample for T3, the exact Hessian of the probe-batch loss for T4, the exact
  Hessian at points of the rho-ball for T5's ball version, the exact input gradient for T7);
- it is no larger than the global bound (global >= local), up to float64 rounding;
- its budget telescopes: the log10 ratios sum to log10(global bound / estimate) within 1e-9.

Tolerances only absorb float64 rounding (RTOL relative to the bound, ATOL absolute), as in
test_bounds_exact.py. Ratios exact / local are logged (``_nets.record``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, target
from hypothesis import strategies as st

from _nets import NETS, NetSpec, count, one_thread, record
from checks import _budgets
from checks.constants import ball_constants
from test_bounds_exact import hessian_eigenvalues, input_jacobian
from theory import input_lipschitz, smoothness, state_interval

RTOL = 1e-9
ATOL = 1e-12
SUM_TOL = 1e-9  # the budget's log10 ratios against log10(global / estimate)


def within(estimate: float, bound: float) -> bool:
    return estimate <= bound * (1 + RTOL) + ATOL


def kind(spec: NetSpec) -> str:
    if spec.layers[0].startswith("conv"):
        return "mixed" if any(l.startswith("dense") for l in spec.layers) else "conv"
    return "dense"


def telescopes(loc: _budgets.Local, bound: float, estimate: float) -> None:
    ratios = [e["log10_ratio"] for e in loc.looseness]
    if bound > 0 and estimate > 0 and all(r is not None for r in ratios):
        assert abs(sum(ratios) - math.log10(bound / estimate)) <= SUM_TOL, f"budget {ratios} does not telescope"
    else:
        count(f"budget without log ratios ({'zero estimate' if estimate <= 0 else 'zero bound'})")


@one_thread
def check_t2(spec: NetSpec) -> None:
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
                assert within(float(u.max()), hi) and within(-float(u.min()), -lo), f"T2 local {mode} l={l + 1}"
                assert within(loc.bound, bound), f"T2 local {loc.bound!r} > global {bound!r}"
                assert within(est, loc.bound)
                telescopes(loc, bound, est)
                record(f"T2 local {kind(spec)} (observed / local)", est, loc.bound, spec)


@one_thread
def check_t3(spec: NetSpec) -> None:
    """T3: the per-sample local bound >= the exact ||dz/dx(x_b)||; max over samples <= L_in."""
    net = spec.build()
    c = net.constants()
    rec = input_lipschitz(c, net.grid_h(c))
    assume(rec.value is not None)
    norms = [torch.linalg.matrix_norm(input_jacobian(net, b), ord=2).item() for b in range(spec.batch)]
    est = max(norms)
    assume(est > 0)
    loc = _budgets.t3(net.model, (net.x, net.y), c, rec, est, est)
    for b, (n, L_b) in enumerate(zip(norms, loc.details["per_sample"])):
        assert within(n, L_b), f"T3 local sample {b}: ||dz/dx|| = {n!r} > local {L_b!r}"
    assert within(loc.bound, rec.value), f"T3 local {loc.bound!r} > global {rec.value!r}"
    telescopes(loc, rec.value, est)
    target(record(f"T3 local {kind(spec)} (||dz/dx|| / local)", est, loc.bound, spec), label="T3 exact / local")


@one_thread
def check_t4(spec: NetSpec) -> None:
    """T4: the local bound (mean of per-sample bounds) >= |lambda| of the exact probe-batch Hessian; <= L."""
    net = spec.build()
    c = net.constants()
    rec = smoothness(c, net.grid_h(c))
    assume(rec.value is not None)
    top = hessian_eigenvalues(net, net.x, net.y).abs().max().item()
    assume(top > 0)
    loc = _budgets.t4(net.model, (net.x, net.y), c, rec, top)
    assert within(top, loc.bound), f"T4 local: |lambda|max = {top!r} > local {loc.bound!r}"
    assert within(loc.bound, rec.value), f"T4 local {loc.bound!r} > global {rec.value!r}"
    telescopes(loc, rec.value, top)
    target(record(f"T4 local {kind(spec)} (|lambda| / local)", top, loc.bound, spec), label="T4 exact / local")


@one_thread
def check_t5_ball(spec: NetSpec, rho: float) -> None:
    """T5's ball: L from T4's chain on the rho-ball >= |lambda| of the exact Hessian at points of the ball; <= global."""
    net = spec.build()
    c = net.constants()
    c_ball = ball_constants(net.model, c, rho)
    rec_ball = smoothness(c_ball, net.grid_h(c_ball))
    assume(rec_ball.value is not None)
    out = _budgets.t4_ball(net.model, (net.x, net.y), c, c_ball, rec_ball, rho)
    L_ball = out[0][-1].value
    assert within(L_ball, rec_ball.value), f"T5 ball local {L_ball!r} > global {rec_ball.value!r}"
    f, w = net.loss_fn(), net.flat_params()
    gen = torch.Generator().manual_seed(spec.seed + 7)
    g = torch.func.grad(f)(w)
    points = [torch.zeros_like(w)] + ([rho * g / g.norm()] if g.norm() > 0 else [])
    for _ in range(2):
        v = torch.randn(w.numel(), generator=gen, dtype=torch.float64)
        points.append(rho * v / v.norm())
    worst = 0.0
    for eps in points:
        H = torch.autograd.functional.hessian(f, w + eps, vectorize=True)
        top = torch.linalg.eigvalsh((H + H.T) / 2).abs().max().item()
        assert within(top, L_ball), f"T5 ball: |lambda| = {top!r} at ||eps|| = {eps.norm().item():.3g} > {L_ball!r}"
        worst = max(worst, record(f"T5 ball local {kind(spec)} (|lambda| in ball / local)", top, L_ball, spec))
    target(worst, label="T5 ball exact / local")


@one_thread
def check_t7(spec: NetSpec) -> None:
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
        assert est <= loc.bound * (1 + 1e-11) + ATOL, f"T7 local sample {b}: {est!r} > {loc.bound!r}"
        assert loc.bound <= bound * (1 + 1e-11) + ATOL, f"T7 local {loc.bound!r} > global {bound!r}"
        telescopes(loc, bound, est)
        record("T7 local (||grad_x l|| / local)", est, loc.bound, spec)


KINDS = ["dense", "conv", "mixed"]
RHO = st.floats(-3.0, -0.5).map(lambda e: 10.0**e)


@pytest.mark.parametrize("kind_", KINDS)
@given(data=st.data())
def test_T2_local(kind_: str, data: st.DataObject) -> None:
    check_t2(data.draw(NETS[kind_], label="net"))


@pytest.mark.parametrize("kind_", KINDS)
@given(data=st.data())
def test_T3_local(kind_: str, data: st.DataObject) -> None:
    check_t3(data.draw(NETS[kind_], label="net"))


@pytest.mark.parametrize("kind_", KINDS)
@given(data=st.data())
def test_T4_local(kind_: str, data: st.DataObject) -> None:
    check_t4(data.draw(NETS[kind_], label="net"))


@pytest.mark.parametrize("kind_", KINDS)
@given(data=st.data(), rho=RHO)
def test_T5_ball_local(kind_: str, data: st.DataObject, rho: float) -> None:
    check_t5_ball(data.draw(NETS[kind_], label="net"), rho)


@given(spec=NETS["dense"])
def test_T7_local(spec: NetSpec) -> None:
    check_t7(spec)
