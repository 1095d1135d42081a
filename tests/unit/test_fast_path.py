"""The fast path (sast._fast) computes the same function and gradients as the plain path.

The plain path (``fast=False``) is the reference: a Python loop over time with autograd
through every op, itself tested against an independent loop in test_model.py. Every test
runs twice: with the recurrence's compiled loops (sast.native; skipped where no C compiler
is found) and with the fast path's torch ops.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from sast import _fast, native
from sast.model import SNN, SNNConfig, second_order
from sast.native import _build
from sast.neuron import MODES, RESETS, lif, plain_lif

ARCHS = [["dense:4"], ["dense:4", "dense:3"], ["conv:2:3", "pool:2", "dense:3"], ["conv:3:3:2", "dense:4"]]
INPUTS = ("sparse", "zeros", "dense")


@pytest.fixture(autouse=True, params=["compiled", "torch-ops"])
def lif_loops(request, monkeypatch):
    """The recurrence's compiled loops (SAST_NATIVE=require: a failed build fails the test), or torch ops."""
    if request.param == "compiled" and _build.compiler() is None:
        pytest.skip("no C compiler: the compiled LIF loops cannot be built here")
    monkeypatch.setenv(native.ENV, "require" if request.param == "compiled" else "off")
    return request.param


def _model(layers, reset, seed=0, T=4):
    torch.manual_seed(seed)
    cfg = SNNConfig(input_shape=(2, 5, 5), layers=layers, T=T, lam=0.8, theta=0.7, beta=2.0, reset=reset,
                    num_classes=3)
    model = SNN(cfg).double()
    with torch.no_grad():  # a positive mean weight: every layer fires and resets (tested below)
        for p in model.parameters():
            p.normal_(0.1, 1.0)
    return model


def _frames(kind: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "zeros":
        return torch.zeros(3, 4, 2, 5, 5, dtype=torch.double)
    if kind == "dense":  # every entry nonzero: the sparse first layer falls back to the GEMM
        return 0.05 + 0.25 * torch.rand(3, 4, 2, 5, 5, generator=g, dtype=torch.double)
    counts = torch.randint(1, 3, (3, 4, 2, 5, 5), generator=g).double()
    return counts * (torch.rand(3, 4, 2, 5, 5, generator=g, dtype=torch.double) < 0.2)


def _loss_and_grads(model, x, y, mode, fast):
    logits, trace = model(x, mode=mode, fast=fast, return_trace=True)
    # the loss reads u and s of every layer too, so both of the recurrence's outputs carry gradients
    loss = F.cross_entropy(logits, y) + sum((tr.u ** 2).mean() + tr.s.mean() for tr in trace)
    return logits, trace, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("layers", ARCHS)
def test_fast_path_equals_plain_path(layers, reset, mode, inputs):
    model = _model(layers, reset)
    x = _frames(inputs)
    y = torch.tensor([0, 1, 2])
    logits_f, trace_f, grads_f = _loss_and_grads(model, x, y, mode, fast=True)
    logits_p, trace_p, grads_p = _loss_and_grads(model, x, y, mode, fast=False)
    if inputs != "zeros":
        fired = [float(tr.s.detach().mean()) for tr in trace_p]
        assert all(0 < f < 1 for f in fired), f"the test needs spikes and silences in every layer, got {fired}"
    # forward: the recurrence is bit-equal; the sparse first layer sums in another order (1e-15 in float64)
    torch.testing.assert_close(logits_f, logits_p, rtol=1e-13, atol=1e-13)
    for tf, tp in zip(trace_f, trace_p):
        torch.testing.assert_close(tf.u, tp.u, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(tf.s, tp.s, rtol=1e-13, atol=1e-13)
    for gf, gp in zip(grads_f, grads_p):
        torch.testing.assert_close(gf, gp, rtol=1e-10, atol=1e-12)


def _neuron_kw(per_neuron: bool, n: int) -> dict:
    """lam 0.8 and theta 0.7, or per-neuron tensors around them (n neurons)."""
    if not per_neuron:
        return dict(lam=0.8, theta=0.7)
    return dict(lam=torch.linspace(0.5, 0.95, n, dtype=torch.double), theta=torch.linspace(1.1, 0.4, n, dtype=torch.double))


@pytest.mark.parametrize("per_neuron", [False, True], ids=["shared", "per-neuron"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reset", RESETS)
def test_lif_recurrence_is_bit_equal_and_gradients_match(reset, mode, per_neuron, lif_loops):
    """The torch ops run the plain loop's ops in its order: bit-equal. The compiled loops have their own exp (in the
    sigmoid): within a few units in the last place of float64, and bit-equal where no sigmoid runs (hard, HFSB)."""
    g = torch.Generator().manual_seed(0)
    currents = (2 * torch.rand(3, 6, 5, generator=g, dtype=torch.double) - 0.5).requires_grad_()
    kw = dict(**_neuron_kw(per_neuron, 5), beta=2.0, reset=reset, mode=mode)
    u_f, s_f = _fast.lif(currents, **kw)
    u_p, s_p = plain_lif(currents, **kw)
    if lif_loops == "torch-ops" or mode != "smooth":
        assert torch.equal(u_f, u_p) and torch.equal(s_f, s_p)
    else:
        torch.testing.assert_close(u_f, u_p, rtol=4e-16, atol=4e-16)
        torch.testing.assert_close(s_f, s_p, rtol=4e-16, atol=4e-16)
    gu, gs = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.double)
    cases = [((u_f, s_f), (u_p, s_p), (gu, gs)), ((u_f,), (u_p,), (gu,)), ((s_f,), (s_p,), (gs,))]
    if mode == "hard":  # hard spikes carry no gradient in either path
        assert not s_f.requires_grad and not s_p.requires_grad
        cases = cases[1:2]
    for outs_f, outs_p, grads in cases:
        want = torch.autograd.grad(outs_p, currents, grads, retain_graph=True)[0]
        got = torch.autograd.grad(outs_f, currents, grads, retain_graph=True)[0]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("per_neuron", [False, True], ids=["shared", "per-neuron"])
@pytest.mark.parametrize("reset", RESETS)
def test_lif_function_gradcheck_and_gradgradcheck(reset, per_neuron):
    g = torch.Generator().manual_seed(2)
    currents = (2 * torch.rand(2, 5, 3, generator=g, dtype=torch.double)).requires_grad_()

    def f(c):
        return _fast.lif(c, **_neuron_kw(per_neuron, 3), beta=2.0, reset=reset, mode="smooth")

    assert torch.autograd.gradcheck(f, (currents,))
    assert torch.autograd.gradgradcheck(f, (currents,))


@pytest.mark.parametrize("outputs", ["u and s", "s only", "u only"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["shared", "per-neuron"])
@pytest.mark.parametrize("reset", RESETS)
def test_lif_adjoint_node_second_and_third_derivatives(reset, per_neuron, outputs):
    """The smooth mode's create_graph backward is one node (_LIFAdjoint) with its own backward: gradcheck and
    gradgradcheck of the gradient itself (the second and third derivatives of the LIF), whichever outputs the
    loss reads (gu or gs may be absent)."""
    g = torch.Generator().manual_seed(5)
    currents = (2 * torch.rand(2, 5, 3, generator=g, dtype=torch.double)).requires_grad_()
    wu, ws = torch.randn(2, 2, 5, 3, generator=g, dtype=torch.double)

    def grad(c):
        u, s = _fast.lif(c, **_neuron_kw(per_neuron, 3), beta=2.0, reset=reset, mode="smooth")
        loss = {"u and s": (u * wu).sum() + (s * s * ws).sum(), "s only": (s * s * ws).sum(),
                "u only": (u * u * wu).sum()}[outputs]
        return torch.autograd.grad(loss, c, create_graph=True)[0]

    assert torch.autograd.gradcheck(grad, (currents,))
    assert torch.autograd.gradgradcheck(grad, (currents,))
    # the node's backward in place (no create_graph) and out of place (create_graph): the same numbers
    v = torch.randn(2, 5, 3, generator=g, dtype=torch.double)
    plain = torch.autograd.grad(grad(currents), currents, v)[0]
    recorded = torch.autograd.grad(grad(currents), currents, v, create_graph=True)[0]
    torch.testing.assert_close(recorded.detach(), plain, rtol=1e-13, atol=1e-14)


def test_lif_inplace_and_differentiable_backwards_agree():
    """The no-grad backward (in place) and the create_graph one (out of place) are the same formulas."""
    g = torch.Generator().manual_seed(3)
    for reset, mode, per_neuron in itertools.product(RESETS, MODES, (False, True)):
        currents = (2 * torch.rand(2, 5, 3, generator=g, dtype=torch.double)).requires_grad_()
        u, s = _fast.lif(currents, **_neuron_kw(per_neuron, 3), beta=2.0, reset=reset, mode=mode)
        gu, gs = torch.randn(2, 2, 5, 3, generator=g, dtype=torch.double)
        outs, grads = ((u, s), (gu, gs)) if mode != "hard" else ((u,), (gu,))
        plain = torch.autograd.grad(outs, currents, grads, retain_graph=True)[0]
        graph = torch.autograd.grad(outs, currents, grads, retain_graph=True, create_graph=True)[0]
        torch.testing.assert_close(graph.detach(), plain, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_sparse_input_linear_gradcheck_and_gradgradcheck(density):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 6, generator=g, dtype=torch.double) * (torch.rand(2, 3, 6, generator=g) < density)
    x[0, 0, 0] = -0.0  # a negative zero counts as a nonzero with value -0.0: harmless
    w = torch.randn(4, 6, generator=g, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(_fast.sparse_input_linear(x, w, b), F.linear(x, w, b), rtol=1e-14, atol=1e-14)
    f = lambda w, b: _fast.sparse_input_linear(x, w, b)  # noqa: E731
    assert torch.autograd.gradcheck(f, (w, b))
    assert torch.autograd.gradgradcheck(f, (w, b))


def test_sparse_matmul_pair_is_adjoint():
    """x @ w and x^T @ g, both over x's nonzeros, against dense products (float64)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 9, generator=g, dtype=torch.double) * (torch.rand(7, 9, generator=g) < 0.3)
    x[3] = 0  # an empty row, and an empty column below
    x[:, 4] = 0
    flat = x.reshape(-1)
    idx = flat.nonzero().squeeze(1)
    sp = _fast.SparseRows(idx, flat[idx], (7, 9))
    w, gr = torch.randn(9, 2, generator=g, dtype=torch.double), torch.randn(7, 2, generator=g, dtype=torch.double)
    torch.testing.assert_close(_fast._SparseMatmul.apply(w, sp, False), x @ w, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(_fast._SparseMatmul.apply(gr, sp, True), x.t() @ gr, rtol=1e-14, atol=1e-14)


def test_model_gradgradcheck_through_the_fast_path():
    """Exact second derivatives of the smooth model (what double-backward HVPs use), float64."""
    model = _model(["dense:3"], "zero", seed=6, T=3)
    x = _frames("sparse", seed=7)[:2, :3]
    y = torch.tensor([0, 2])
    names, params = zip(*model.named_parameters())

    def loss(*ps):
        return F.cross_entropy(functional_call(model, dict(zip(names, ps)), (x,)), y)

    ps = tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(loss, ps)
    assert torch.autograd.gradgradcheck(loss, ps)


@pytest.mark.parametrize("second", [False, True])
def test_double_backward_hvp_equals_plain_path(second):
    """Hessian-vector products by double backward, with torch's conv node and inside second_order with the fast
    path's (sast._fast._Conv2d)."""
    model = _model(["conv:2:3", "pool:2", "dense:3"], "zero", seed=8)
    x, y = _frames("sparse", seed=9), torch.tensor([0, 1, 2])
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]

    def hvp(fast):
        with second_order() if second and fast else contextlib.nullcontext():
            loss = F.cross_entropy(model(x, fast=fast), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(grads, params, grad_outputs=v)

    for a, b in zip(hvp(True), hvp(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_layers_keep_their_state_channels_last_where_the_loops_run(lif_loops, dtype):
    """With the compiled loops, conv layers convolve, fire and pool in channels-last order (sast._fast.conv_input),
    with the plain path's numbers (float32: to its rounding); with the torch ops, in the default order."""
    torch.manual_seed(3)
    cfg = SNNConfig(input_shape=(2, 8, 8), layers=["conv:3:3", "pool:2", "conv:4:3:2", "dense:3"], T=3, lam=0.8,
                    theta=0.7, beta=2.0, reset="zero", num_classes=3)
    model = SNN(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.1, 1.0)
    x = (torch.rand(4, 3, 2, 8, 8) < 0.3).to(dtype)
    y = torch.tensor([0, 1, 2, 0])
    logits_f, trace_f, grads_f = _loss_and_grads(model, x, y, "smooth", fast=True)
    logits_p, trace_p, grads_p = _loss_and_grads(model, x, y, "smooth", fast=False)
    for tr in trace_f[:2]:
        frames = tr.u.flatten(0, 1)
        assert frames.is_contiguous() == (lif_loops == "torch-ops")
        assert frames.is_contiguous(memory_format=torch.channels_last) == (lif_loops == "compiled")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(logits_f, logits_p, **tol)
    for a, b in zip(trace_f, trace_p):
        torch.testing.assert_close(a.s, b.s, **tol)
    for a, b in zip(grads_f, grads_p):
        torch.testing.assert_close(a, b, **({**tol, "rtol": 1e-4} if dtype == torch.float32 else tol))


@pytest.mark.parametrize("stride,padding,bias", [(1, 1, True), (2, 1, False), (2, 0, True)])
def test_conv_node_gradcheck_and_gradgradcheck(stride, padding, bias):
    """The conv layer's own node (sast._fast._Conv2d) and its backward node: first and second derivatives in every
    input, against finite differences; and the same numbers as torch's conv2d to third order."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.double, requires_grad=True) if bias else None
    inputs = (x, w, b) if bias else (x, w)

    def conv(*t):
        return _fast._Conv2d.apply(t[0], t[1], t[2] if bias else None, [stride] * 2, [padding] * 2)

    def ref(*t):
        return F.conv2d(t[0], t[1], t[2] if bias else None, stride=stride, padding=padding)

    assert torch.autograd.gradcheck(conv, inputs)
    assert torch.autograd.gradgradcheck(conv, inputs)
    # third order: the derivative of a double-backward product, against torch's conv
    v = [torch.randn(t.shape, generator=g, dtype=torch.double) for t in inputs]

    def third(fn):
        out = fn(*inputs)
        grads = torch.autograd.grad((out ** 3).sum(), inputs, create_graph=True)
        hv = torch.autograd.grad(grads, inputs, v, create_graph=True)
        return torch.autograd.grad(sum((h ** 2).sum() for h in hv), inputs)

    for a, c in zip(third(conv), third(ref)):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("second", [False, True])
def test_the_model_runs_its_conv_layers_through_the_conv_node_for_second_order(lif_loops, second):
    """Inside sast.model.second_order the conv layers record sast._fast._Conv2d (autograd names its node
    _Conv2dBackward); outside, torch's own node."""
    model = _model(["conv:2:3", "pool:2", "dense:3"], "zero")
    if second:
        with second_order():
            _, trace = model(_frames("sparse"), return_trace=True)
    else:
        _, trace = model(_frames("sparse"), return_trace=True)
    node = trace[0].u.grad_fn.next_functions[0][0]  # the LIF node's input: the currents' producer
    while type(node).__name__ not in ("_Conv2dBackward", "ConvolutionBackward0"):
        node = node.next_functions[0][0]
    assert type(node).__name__ == ("_Conv2dBackward" if second else "ConvolutionBackward0")


def test_batched_hessian_through_the_conv_node_equals_torchs():
    """Vectorised Hessians (batched grad_outputs) take torch's convolution_backward in the node's backward."""
    w = torch.randn(2, 1, 3, 3, dtype=torch.double)
    x = torch.randn(1, 1, 5, 5, dtype=torch.double)

    def f(conv):
        return lambda t: (conv(x, t) ** 3).sum()

    got = torch.autograd.functional.hessian(f(lambda a, t: _fast._Conv2d.apply(a, t, None, [1, 1], [1, 1])), w,
                                            vectorize=True)
    want = torch.autograd.functional.hessian(f(lambda a, t: F.conv2d(a, t, padding=1)), w, vectorize=True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fast_path_steps_aside_under_transforms():
    model = _model(["dense:4"], "zero")
    x = _frames("sparse")
    assert _fast.usable()
    seen = []
    orig = _fast.lif

    def spy(*args, **kwargs):
        seen.append(_fast.usable())
        return orig(*args, **kwargs)

    params = {k: v.detach() for k, v in model.named_parameters()}
    tangent = {k: torch.ones_like(v) for k, v in params.items()}
    _fast.lif = spy
    try:
        torch.func.jvp(lambda p: functional_call(model, p, (x,)), (params,), (tangent,))
        torch.func.vmap(lambda xi: model(xi.unsqueeze(0)), in_dims=0)(x)
        model(x)
    finally:
        _fast.lif = orig
    assert seen == [True], "the fast path must run only outside torch.func transforms"


def test_lif_rejects_bad_arguments_on_both_paths():
    c = torch.zeros(1, 2, 3)
    for fast in (True, False):
        with pytest.raises(ValueError, match="unknown reset"):
            lif(c, lam=0.5, theta=1.0, beta=1.0, reset="soft", mode="smooth", fast=fast)
        with pytest.raises(ValueError, match="unknown spike mode"):
            lif(c, lam=0.5, theta=1.0, beta=1.0, reset="zero", mode="soft", fast=fast)


def test_cpu_threads_are_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not CPU_THREADS: the fast path lowers it around its ops, then restores it
    try:
        model = _model(["dense:4"], "zero")
        loss = F.cross_entropy(model(_frames("sparse")), torch.tensor([0, 1, 2]))
        assert torch.get_num_threads() == 2
        loss.backward()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.cuda
@pytest.mark.parametrize("sparse_input", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_on_cuda_equals_plain_path(mode, sparse_input):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = _model(["dense:4", "dense:3"], "zero")
    x, y = _frames("sparse"), torch.tensor([0, 1, 2])
    logits_cpu, _, want_cpu = _loss_and_grads(model, x, y, mode, fast=False)
    model = model.cuda()
    x, y = x.cuda(), y.cuda()
    logits = model(x, mode=mode, sparse_input=sparse_input)
    got = torch.autograd.grad(F.cross_entropy(logits, y), list(model.parameters()))
    want = torch.autograd.grad(F.cross_entropy(model(x, mode=mode, fast=False), y), list(model.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(logits.cpu(), logits_cpu, rtol=1e-12, atol=1e-12)


@pytest.mark.cuda
def test_conv_fast_path_and_hvp_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = _model(["conv:2:3", "pool:2", "dense:3"], "subtract").cuda()
    x, y = _frames("sparse").cuda(), torch.tensor([0, 1, 2]).cuda()
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]

    def hvp(fast):
        grads = torch.autograd.grad(F.cross_entropy(model(x, fast=fast), y), params, create_graph=True)
        return torch.autograd.grad(grads, params, grad_outputs=v)

    for a, b in zip(hvp(True), hvp(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
