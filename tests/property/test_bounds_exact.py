"""T2, A4, T3, T4, T5, T7 of THEORY.md against exact computation on random tiny float64 SNNs.

Each ``check_*`` builds a drawn network (``checks.testing`` strategies), computes
the statement's bound with ``theory`` on the constants that
``checks.constants.model_constants`` reads off the model and its probe batch, and
asserts with ``checks.testing.assert_certificate`` that the exact quantity
(``checks.testing``'s autograd Jacobians, Hessians and SAM errors; observed
membrane traces) lies within it. The tolerances only absorb float64 rounding: a
relative rtol of the bound plus a tiny absolute atol, stated at each assertion.
Every ratio estimate / bound is logged (``_log.LOG``) and the largest per
statement is printed at the end of the session.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, target
from hypothesis import strategies as st

from _log import LOG
from checks.testing import (
    Net,
    NetSpec,
    assert_certificate,
    conv_nets,
    dense_nets,
    hessian_eigenvalues,
    input_jacobian,
    one_thread,
    sam_errors,
)
from theory import contraction, input_lipschitz, local_mechanism, sam_first_order, smoothness, state_interval, state_interval_at
from theory.scalar import g_derivative

# assert_certificate's defaults, rtol=1e-9 (float64 rounding of sums of O(100) terms, with a wide
# margin) and atol=1e-12 (rounding of O(1) losses and logits), hold every assertion below.
SLOW_EXAMPLES = 300
NETS = {"dense": dense_nets(), "conv": conv_nets()}
# lam and theta per spiking layer, or per neuron (a few distinct (lam, theta) pairs in a layer)
NEURON_NETS = {(kind, neurons): strategy(neurons=neurons) for kind, strategy in (("dense", dense_nets), ("conv", conv_nets))
               for neurons in ("layer", "neuron")}


# ---------------------------------------------------------------------------
# T2 and A4: observed membrane potentials


def _traces(net: Net) -> dict[str, list[torch.Tensor]]:
    with torch.no_grad():
        return {mode: [tr.u for tr in net.model(net.x, mode=mode, return_trace=True)[1]] for mode in ("smooth", "hard")}


@one_thread
def check_state_interval(spec: NetSpec) -> None:
    """T2: every u^l_t (smooth and hard mode) lies in the finite-t interval and in I_l (t = infinity)."""
    net = spec.build()
    c = net.constants()
    t2 = state_interval(c)
    assert t2.status == "ok"  # A1 holds by construction of the strategy
    I_inf = t2.details["I"]
    I_t = [state_interval_at(c, t) for t in range(1, spec.T + 1)]
    worst = 0.0
    for mode, us in _traces(net).items():
        for l, u in enumerate(us):
            for t in range(spec.T):
                u_t = u[:, t]
                for lo, hi in (I_t[t][l], I_inf[l]):  # lo <= 0 <= hi
                    # rounding of W a + b and of the recursion: relative to the interval, rtol
                    assert_certificate(hi, u_t.max().item(), what=f"T2 {mode} layer {l + 1} t={t + 1}: max u")
                    assert_certificate(-lo, -u_t.min().item(), what=f"T2 {mode} layer {l + 1} t={t + 1}: -min u")
                # how far towards its nearer end of the interval each extreme state went (1 = on the end)
                for key, (lo, hi) in ((f"T2 {spec.kind} (finite t)", I_t[t][l]), (f"T2 {spec.kind} (t = inf)", I_inf[l])):
                    fraction = max(u_t.max().item() / hi, u_t.min().item() / lo)
                    worst = max(worst, LOG.record(key, fraction, 1.0, spec))
                    if c.X_inf > 0:  # all-zero inputs put u = b on an end exactly (lam^k terms aside): log the rest apart
                        LOG.record(f"{key[:-1]}, some input > 0)", fraction, 1.0, spec)
    target(worst, label="T2 fraction of the interval")


@one_thread
def check_contraction(spec: NetSpec) -> None:
    """A4: kappa_emp = max over observed states (both modes) of |g'(u)| <= kappa_l, per layer."""
    net = spec.build()
    c = net.constants()
    a4 = contraction(c, net.grid_h(c))
    if a4.status != "ok":
        LOG.count(f"A4 {spec.kind}: assumption fails (kappa_l >= 1)")
    worst = 0.0
    for mode, us in _traces(net).items():
        for l, u in enumerate(us):
            kappa_emp = float(abs(g_derivative(u.numpy(), 1, *net.model.neuron_numpy(l), spec.beta, spec.reset)).max())
            kappa = a4.details["kappa"][l]
            # g' is evaluated in float64 at the observed states; kappa is a rigorous sup over I_l
            assert_certificate(kappa, kappa_emp, what=f"A4 {mode} layer {l + 1}: kappa_l against kappa_emp")
            worst = max(worst, LOG.record(f"A4 {spec.kind}", kappa_emp, kappa, spec))
    target(worst, label="A4 kappa_emp / kappa")


# ---------------------------------------------------------------------------
# T3: input Jacobian


@one_thread
def check_input_lipschitz(spec: NetSpec) -> None:
    """T3: ||dz/dx||_2 <= L_in (x the whole sequence, ||.||_{2,2}) and ||grad_x l|| <= sqrt(2) L_in, per sample."""
    net = spec.build()
    c = net.constants()
    t3 = input_lipschitz(c, net.grid_h(c))
    if t3.value is None:
        LOG.count(f"T3 {spec.kind}: L_in overflows (None)")
    assume(t3.value is not None)
    L_in, grad_bound = t3.value, t3.details["grad_x_bound"]
    worst = 0.0
    for b in range(spec.batch):
        J = input_jacobian(net, b)
        spectral = torch.linalg.matrix_norm(J, ord=2).item()
        z = net.model(net.x[b:b + 1], mode="smooth")
        grad_z = torch.softmax(z, dim=1)[0] - F.one_hot(net.y[b], spec.num_classes).double()  # d CE / dz
        grad_x = (J.T @ grad_z).norm().item()
        # spectral norm from an SVD in float64: relative error ~1e-15, rtol covers it
        assert_certificate(L_in, spectral, what=f"T3 L_in against ||dz/dx||, sample {b}")
        assert_certificate(grad_bound, grad_x, what=f"T3 sqrt(2) L_in against ||grad_x l||, sample {b}")
        worst = max(worst, LOG.record(f"T3 {spec.kind} (||dz/dx|| / L_in)", spectral, L_in, spec))
        LOG.record(f"T3 {spec.kind} (||grad_x l|| / sqrt2 L_in)", grad_x, grad_bound, spec)
    target(worst, label="T3 ||dz/dx|| / L_in")


# ---------------------------------------------------------------------------
# T4: Hessian spectrum over all parameters


@one_thread
def check_smoothness(spec: NetSpec) -> None:
    """T4: every Hessian eigenvalue of one sample's loss and of the batch mean lies in [-L, L]."""
    net = spec.build()
    c = net.constants()
    t4 = smoothness(c, net.grid_h(c))
    if t4.value is None:
        LOG.count(f"T4 {spec.kind}: L overflows (None)")
    assume(t4.value is not None)
    L = t4.value
    worst = 0.0
    for name, x, y in (("sample", net.x[:1], net.y[:1]), ("batch", net.x, net.y)):
        top = hessian_eigenvalues(net, x, y).abs().max().item()
        # eigvalsh of a float64 matrix of size < 300: absolute error ~1e-13 ||H||, far inside rtol L (L >= 1.5)
        assert_certificate(L, top, what=f"T4 ({name}) L against |lambda|max")
        worst = max(worst, LOG.record(f"T4 {spec.kind}", top, L, spec))
    target(worst, label="T4 |lambda| / L")


# ---------------------------------------------------------------------------
# T5: SAM first order, with L valid on the whole rho-ball


def ball_constants(net: Net, rho: float):
    """A3 on the ball ||w' - w|| <= rho: every norm of the constants at w, enlarged by what a perturbation of size rho can add.

    Dense layer (n_in inputs): ||W + E|| <= R + rho, ||W + E||_inf <= R_inf + sqrt(n_in) rho (each
    row's l1 norm is at most sqrt(n_in) times its l2 norm), ||b + e||_inf <= b_inf + rho,
    ||b + e|| <= r + rho; readout R_o + rho. T4 on these constants bounds the Hessian at every
    w + eps of the ball, which T5's Taylor arguments need (THEORY.md A3: "... plus rho").
    """
    c = net.constants()
    n_in = [c.n_0, *c.n[:-1]]
    assert all(kind == "dense" for kind in c.kinds)
    return dataclasses.replace(
        c, R=tuple(r + rho for r in c.R), R_inf=tuple(r + math.sqrt(n) * rho for r, n in zip(c.R_inf, n_in)),
        b_inf=tuple(b + rho for b in c.b_inf), b_norm=tuple(b + rho for b in c.b_norm), R_o=c.R_o + rho,
    )


@one_thread
def check_sam_first_order(spec: NetSpec, rho: float) -> None:
    """T5: the four SAM first-order inequalities at random w and labels, L from T4 on the rho-ball."""
    net = spec.build()
    c, h = net.constants(), net.grid_h(net.constants())
    t4 = smoothness(ball_constants(net, rho), h)
    if t4.value is None:
        LOG.count("T5: L overflows (None)")
    assume(t4.value is not None)
    t5 = sam_first_order(t4.value, rho).details
    # for the report only: the same ratios against L from the constants at w alone (not valid on the ball)
    L_at_w = smoothness(c, h).value
    t5_at_w = sam_first_order(L_at_w, rho).details if L_at_w is not None else None

    def log(name: str, estimate: float) -> float:
        if t5_at_w is not None:
            LOG.record(f"T5 {name} (info: L at w, not asserted)", estimate, t5_at_w[name], spec)
        return LOG.record(f"T5 {name}", estimate, t5[name], spec)

    errors = sam_errors(net, rho, seed=spec.seed + 1)
    assume(errors.grad_norm > 0)  # eps_hat needs a direction
    # every quantity is a difference of O(1) losses or gradients: atol covers its rounding
    worst = 0.0
    for gap in errors.taylor:  # random points of the sphere ||eps|| = rho
        assert_certificate(t5["taylor"], gap, what="T5 taylor: L rho^2/2 against |F(w+eps) - F(w) - <g, eps>|")
        worst = max(worst, log("taylor", gap))
    assert_certificate(t5["ascent_step"], errors.ascent_step, what="T5 ascent step: L rho^2/2")
    worst = max(worst, log("ascent_step", errors.ascent_step))
    # 0 <= max F(w+eps) - F(w+eps_hat) holds by construction (eps_hat is a start); the ascent value is a
    # lower estimate of the max, so it must stay below the upper bound L rho^2.
    assert_certificate(t5["inner_max_gap"], errors.inner_max_gap, what="T5 inner max gap: L rho^2")
    worst = max(worst, log("inner_max_gap", errors.inner_max_gap))
    assert_certificate(t5["grad_shift"], errors.grad_shift, what="T5 grad shift: L rho")
    worst = max(worst, log("grad_shift", errors.grad_shift))
    target(worst, label="T5 worst ratio")


# ---------------------------------------------------------------------------
# T7: local mechanism (dense first layer)


@one_thread
def check_local_mechanism(spec: NetSpec, mode: str) -> None:
    """T7, per sample: grad_{W1} l = D X, grad_{x_t} l = W1^T delta_t, and ||grad_x l||_F <= ||W1|| ||D||_F <= (||W1||/s_T(X)) ||grad_{W1} l||_F.

    D = [delta_1 .. delta_T] is not read off the model (its first layer may run through a fused
    op that no hook sees): under T7's condition X has full row rank, so D is determined by
    grad_{W1} l = D X as D = grad_{W1} l X^+; the identities then say that grad_{W1} l has its rows
    in the row space of X (D X = grad_{W1} l) and that the same D gives the input gradient
    (grad_x l = D^T W1), two facts about two independent autograd outputs.
    """
    n_0 = spec.input_shape[0]
    assume(spec.T <= n_0)  # full row rank of X (T x n_0) needs T <= n_0
    net = spec.build()
    svals = [torch.linalg.svdvals(net.x[b]) for b in range(spec.batch)]  # s_1 >= .. >= s_T of X = [x_1 .. x_T]^T
    # the local conditioning condition, as theory.local_mechanism decides it (s_T > 1e-5 s_1)
    assume(all(local_mechanism(1.0, s[-1].item(), 1.0, s_1=s[0].item()).status == "ok" for s in svals))
    W1 = net.model.layers[0].weight
    W1_norm = torch.linalg.matrix_norm(W1.detach(), ord=2).item()
    x = net.x.clone().requires_grad_(True)
    z = net.model(x, mode=mode)
    for b in range(spec.batch):
        loss = F.cross_entropy(z[b:b + 1], net.y[b:b + 1])
        grad_W1, grad_x = torch.autograd.grad(loss, (W1, x), retain_graph=True)
        X, s = net.x[b], svals[b]
        D = grad_W1 @ torch.linalg.pinv(X)  # n_1 x T
        # X^+ amplifies rounding by cond(X) = s_1/s_T (<= 1e5 under the condition): 1e-12 cond relative
        cond = (s[0] / s[-1]).item()
        torch.testing.assert_close(D @ X, grad_W1, rtol=0, atol=1e-12 * cond * grad_W1.norm().item() + 1e-300)
        torch.testing.assert_close(D.T @ W1.detach(), grad_x[b], rtol=0, atol=1e-12 * cond * W1_norm * D.norm().item() + 1e-300)
        t7 = local_mechanism(W1_norm, s[-1].item(), grad_W1.norm().item(), s_1=s[0].item())
        assert t7.status == "ok"
        gx, middle = grad_x[b].norm().item(), W1_norm * D.norm().item()
        # middle: D from X^+, relative error ~1e-16 cond <= 1e-11, inside rtol
        assert_certificate(middle, gx, what=f"T7 sample {b}: ||W1|| ||D||_F against ||grad_x l||")
        # s_T from an SVD in float64 with s_T > 1e-5 s_1: relative error < 1e-10, inside rtol
        assert_certificate(t7.value, gx, what=f"T7 sample {b}: ||W1|| ||grad_W1 l|| / s_T against ||grad_x l||")
        LOG.record("T7 (||grad_x l|| / ||W1|| ||D||)", gx, middle, spec)
        target(LOG.record("T7", gx, t7.value, spec), label=f"T7 ratio sample {b}")


# ---------------------------------------------------------------------------
# the tests: the default copy (profile "ci": 25 examples) and a slow copy with many more

PER_NET = [(check_state_interval, "dense"), (check_state_interval, "conv"), (check_contraction, "dense"),
           (check_contraction, "conv"), (check_input_lipschitz, "dense"), (check_input_lipschitz, "conv"),
           (check_smoothness, "dense"), (check_smoothness, "conv")]
PER_NET_IDS = [f"{check.__name__.removeprefix('check_')}-{kind}" for check, kind in PER_NET]
RHO = st.floats(-3.0, 0.0).map(lambda e: 10.0**e)
T7_MODES = st.sampled_from(["smooth", "hfsb"])


@pytest.mark.parametrize("check, kind", PER_NET, ids=PER_NET_IDS)
@given(data=st.data())
def test_bound_holds(check, kind: str, data: st.DataObject) -> None:
    check(data.draw(NETS[kind], label="net"))


@pytest.mark.parametrize("neurons", ["layer", "neuron"])
@pytest.mark.parametrize("check, kind", PER_NET, ids=PER_NET_IDS)
@given(data=st.data())
def test_bound_holds_with_layer_and_neuron_values(check, kind: str, neurons: str, data: st.DataObject) -> None:
    """The statements with lam_l, theta_l per layer, and per neuron (the sup over a layer's pairs)."""
    check(data.draw(NEURON_NETS[kind, neurons], label="net"))


@given(spec=dense_nets(), rho=RHO)
def test_T5_sam_first_order(spec: NetSpec, rho: float) -> None:
    check_sam_first_order(spec, rho)


@given(spec=dense_nets(neurons="neuron"), rho=RHO)
def test_T5_sam_first_order_neuron_values(spec: NetSpec, rho: float) -> None:
    check_sam_first_order(spec, rho)


@given(spec=dense_nets(), mode=T7_MODES)
def test_T7_local_mechanism(spec: NetSpec, mode: str) -> None:
    check_local_mechanism(spec, mode)


@pytest.mark.slow
@pytest.mark.parametrize("check, kind", PER_NET, ids=PER_NET_IDS)
@settings(max_examples=SLOW_EXAMPLES)
@given(data=st.data())
def test_bound_holds_slow(check, kind: str, data: st.DataObject) -> None:
    check(data.draw(NETS[kind], label="net"))


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES)
@given(spec=dense_nets(), rho=RHO)
def test_T5_sam_first_order_slow(spec: NetSpec, rho: float) -> None:
    check_sam_first_order(spec, rho)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES)
@given(spec=dense_nets(), mode=T7_MODES)
def test_T7_local_mechanism_slow(spec: NetSpec, mode: str) -> None:
    check_local_mechanism(spec, mode)
