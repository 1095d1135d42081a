"""checks/linalg.py against independent dense float64 references on tiny SNNs.

References: the exact Hessian (torch.autograd.functional.hessian through
functional_call on the flattened parameters), exact Jacobians
(torch.autograd.functional.jacobian), eigvalsh / matrix_norm, finite
differences of gradients, and plain Python loops instead of vmap.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from checks.linalg import (
    HessianOperator,
    NondeterminismError,
    determinism_check,
    flat_grad,
    flat_params,
    flatten,
    input_jacobian_norms,
    jacobian_spectral_norm,
    lanczos_extremes,
    per_sample_grads,
)
from sast.model import SNN, SNNConfig

CONFIGS = {
    "dense-zero": SNNConfig(input_shape=(4,), layers=["dense:3"], T=3, beta=2.0, reset="zero", num_classes=3),
    "dense2-subtract": SNNConfig(input_shape=(3,), layers=["dense:3", "dense:2"], T=4, beta=3.0,
                                 reset="subtract", num_classes=3),
    "conv": SNNConfig(input_shape=(1, 4, 4), layers=["conv:2:3:2", "flatten"], T=2, beta=2.0, num_classes=3),
}
B = 5
X_INF = 2.0  # inputs in [0, X_INF] (assumption A2), large enough to make the sigmoids work


def make(name: str, seed: int = 0, dtype: torch.dtype = torch.float64):
    torch.manual_seed(seed)
    cfg = copy.deepcopy(CONFIGS[name])
    model = SNN(cfg).to(dtype)
    x = X_INF * torch.rand(B, cfg.T, *cfg.input_shape, dtype=dtype)
    y = torch.randint(0, cfg.num_classes, (B,))
    return model, x, y


def loss_of_flat(model, x, y):
    """F(w) on the flat parameter vector, written independently of checks.linalg."""
    shapes = [(n, p.shape, p.numel()) for n, p in model.named_parameters()]

    def loss(w):
        params, i = {}, 0
        for n, s, k in shapes:
            params[n] = w[i:i + k].reshape(s)
            i += k
        return F.cross_entropy(functional_call(model, params, (x,), {"mode": "smooth"}), y)

    return loss


def exact_hessian(model, x, y):
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.autograd.functional.hessian(loss_of_flat(model, x, y), w, vectorize=True)


# --------------------------------------------------------------------------- Hessian-vector products


@pytest.mark.parametrize("name", list(CONFIGS))
def test_both_hvp_methods_equal_exact_hessian_times_v(name):
    model, x, y = make(name)
    H = exact_hessian(model, x, y)
    ops = {m: HessianOperator(model, None, x, y, method=m) for m in ("double-backward", "forward-over-reverse")}
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(H.shape[0], generator=gen, dtype=torch.float64)
        ref = H @ v
        hv = {m: op.matvec(v) for m, op in ops.items()}
        for m in ops:  # float64, exact methods: agreement to rounding (relative 1e-10)
            assert torch.linalg.vector_norm(hv[m] - ref) <= 1e-10 * torch.linalg.vector_norm(ref), m
        assert torch.linalg.vector_norm(hv["double-backward"] - hv["forward-over-reverse"]) <= (
            1e-10 * torch.linalg.vector_norm(ref))
    assert all(op.n_products == 3 for op in ops.values())


def test_hvp_equals_finite_differences_of_gradients():
    model, x, y = make("dense2-subtract")
    op = HessianOperator(model, None, x, y, method="double-backward")
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v /= v.norm()
    h = 1e-5  # central differences in float64: error ~ h^2 |F'''| + eps / h ~ 1e-10

    def grad_at(w):
        shifted = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(w, shifted.parameters())
        return flat_grad(shifted, x, y)

    w = flat_params(model)
    fd = (grad_at(w + h * v) - grad_at(w - h * v)) / (2 * h)
    hv = op.matvec(v)
    assert torch.linalg.vector_norm(hv - fd) <= 1e-6 * torch.linalg.vector_norm(hv)  # relative 1e-6


def test_auto_picks_a_method_by_timing_and_counts_overhead_apart():
    model, x, y = make("dense-zero")
    op = HessianOperator(model, None, x, y)  # method="auto"
    assert op.method in ("double-backward", "forward-over-reverse")
    assert set(op.calibration) == {"double-backward", "forward-over-reverse"}
    assert op.calibration[op.method] == min(op.calibration.values())
    assert op.n_products == 0 and op.overhead_products > 0
    op.matvec(torch.ones(op.dim))
    assert op.n_products == 1


def test_operator_casts_a_copy_and_leaves_the_model_alone():
    model, x, y = make("dense-zero", dtype=torch.float32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    op = HessianOperator(model, None, x, y, dtype=torch.float64, method="double-backward")
    assert op.dtype == torch.float64 and op.matvec(torch.ones(op.dim)).dtype == torch.float64
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p.detach(), before[n]) and p.grad is None
    assert flat_grad(model, x, y, dtype=torch.float64).dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32


def test_to_scipy_is_float64_numpy():
    model, x, y = make("dense-zero")
    op = HessianOperator(model, None, x, y, method="forward-over-reverse")
    H = exact_hessian(model, x, y).numpy()
    lin = op.to_scipy()
    v = np.random.default_rng(0).standard_normal(op.dim)
    out = lin.matvec(v)
    assert out.dtype == np.float64 and lin.shape == (op.dim, op.dim)
    np.testing.assert_allclose(out, H @ v, rtol=1e-10, atol=1e-12 * np.abs(H @ v).max())


def test_nonsmooth_modes_are_refused():
    model, x, y = make("dense-zero")
    for mode in ("hard", "hfsb"):
        with pytest.raises(ValueError, match="smooth"):
            HessianOperator(model, None, x, y, mode=mode)
        with pytest.raises(ValueError, match="smooth"):
            input_jacobian_norms(model, x, mode=mode)
    with pytest.raises(ValueError, match="unknown HVP method"):
        HessianOperator(model, None, x, y, method="finite-differences")


# --------------------------------------------------------------------------- determinism


def noisy_loss(logits, y):
    """Cross-entropy of logits plus fresh noise: what dropout or augmentation inside the loss does."""
    return F.cross_entropy(logits + 0.1 * torch.rand_like(logits), y)


@pytest.mark.parametrize("method", ["double-backward", "forward-over-reverse", "auto"])
def test_determinism_check_raises_on_random_loss(method):
    model, x, y = make("dense-zero")
    with pytest.raises(NondeterminismError, match="dropout"):
        HessianOperator(model, noisy_loss, x, y, method=method)


def test_determinism_check_passes_on_the_model_and_names_what_differs():
    model, x, y = make("dense-zero")
    op = HessianOperator(model, None, x, y, method="double-backward")  # runs the check by default
    determinism_check(op, torch.randn(op.dim, dtype=torch.float64))
    unchecked = HessianOperator(model, noisy_loss, x, y, method="forward-over-reverse", check_deterministic=False)
    with pytest.raises(NondeterminismError, match="the loss computed twice"):
        determinism_check(unchecked, torch.randn(unchecked.dim, dtype=torch.float64))


# --------------------------------------------------------------------------- Lanczos


@pytest.mark.parametrize("name", list(CONFIGS))
def test_lanczos_on_exact_hessian_equals_eigvalsh(name):
    model, x, y = make(name)
    H = exact_hessian(model, x, y)
    ev = torch.linalg.eigvalsh(H)
    for a in (H, HessianOperator(model, None, x, y)):
        r = lanczos_extremes(a, tol=1e-10)
        assert r.converged
        # relative 1e-4 on each end (both ends are well away from 0 for these models)
        assert abs(r.lambda_max - ev[-1]) <= 1e-4 * abs(ev[-1])
        assert abs(r.lambda_min - ev[0]) <= 1e-4 * abs(ev[0])
        assert r.n_products == r.iterations <= H.shape[0]


def random_symmetric(eigenvalues, seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T


def spectra():
    rng = np.random.default_rng(0)
    yield "indefinite", rng.uniform(-3, 2, 80)
    yield "psd", rng.uniform(0, 1, 80)
    yield "negative-definite", -rng.uniform(0.5, 4, 80)
    # clustered extremes: three eigenvalues within 2e-7 at each end
    yield "clustered", np.concatenate([[5, 5 - 1e-7, 5 - 2e-7, -3, -3 + 1e-7, -3 + 2e-7], rng.uniform(-1, 1, 74)])
    yield "low-rank", np.concatenate([[2.0, -1.0, 0.5], np.zeros(77)])


@pytest.mark.parametrize("kind,eigs", list(spectra()), ids=[k for k, _ in spectra()])
@pytest.mark.parametrize("seed", [0, 1])
def test_lanczos_on_random_symmetric_matrices(kind, eigs, seed):
    A = random_symmetric(eigs, seed)
    radius = np.abs(eigs).max()
    r = lanczos_extremes(A, tol=1e-9, seed=seed)
    assert r.converged
    # relative to the spectral radius, the scale of the stopping rule: 1e-7
    assert abs(r.lambda_max - eigs.max()) <= 1e-7 * radius
    assert abs(r.lambda_min - eigs.min()) <= 1e-7 * radius
    r_np = lanczos_extremes(A.numpy(), tol=1e-9, seed=seed)  # numpy input, same numbers
    assert (r_np.lambda_min, r_np.lambda_max) == pytest.approx((r.lambda_min, r.lambda_max), rel=1e-12)


def test_lanczos_exhausts_a_low_rank_matrix_early():
    eigs = np.concatenate([[2.0, -1.0, 0.5], np.zeros(77)])
    r = lanczos_extremes(random_symmetric(eigs, 0), tol=1e-9)
    # Krylov space of a rank-3 matrix from a generic start has dimension 4: it becomes invariant there
    assert r.converged and r.iterations <= 5


def test_lanczos_records_nonconvergence_without_raising():
    eigs = np.random.default_rng(1).uniform(-3, 2, 80)
    A = random_symmetric(eigs, 0)
    r = lanczos_extremes(A, tol=1e-9, max_iter=3)
    assert r.converged is False
    assert r.n_products == r.iterations == 3
    # Ritz values interlace: they lie inside the spectrum even when not converged
    assert eigs.min() - 1e-12 <= r.lambda_min <= r.lambda_max <= eigs.max() + 1e-12
    assert max(r.residual_min, r.residual_max) > 1e-9 * np.abs(eigs).max()


def test_lanczos_accepts_callables_and_checks_sizes():
    A = random_symmetric(np.linspace(-1, 2, 10), 0)
    r = lanczos_extremes(lambda v: A @ v, dim=10, tol=1e-10)
    assert (r.lambda_min, r.lambda_max) == pytest.approx((-1.0, 2.0), rel=1e-8)
    with pytest.raises(ValueError, match="dim="):
        lanczos_extremes(lambda v: A @ v)
    with pytest.raises(ValueError, match="contradicts"):
        lanczos_extremes(A, dim=11)
    with pytest.raises(ValueError, match="square"):
        lanczos_extremes(torch.zeros(3, 4))
    zero = lanczos_extremes(torch.zeros(6, 6, dtype=torch.float64))  # H = 0: exact after one step
    assert zero.converged and zero.lambda_min == zero.lambda_max == 0.0
    with pytest.raises(FloatingPointError, match="NaN"):
        lanczos_extremes(torch.full((4, 4), float("nan"), dtype=torch.float64))


def test_lanczos_default_tol_reaches_its_stated_accuracy_on_the_top_end():
    eigs = np.random.default_rng(2).uniform(-1, 4, 300)
    r = lanczos_extremes(random_symmetric(eigs, 0))  # tol = 1e-3 relative to the spectral radius
    assert r.converged and r.n_products < 300
    assert abs(r.lambda_max - eigs.max()) <= 1e-3 * np.abs(eigs).max()


# --------------------------------------------------------------------------- Jacobian norms


def per_sample_fn(model):
    params = {n: p.detach() for n, p in model.named_parameters()}
    return lambda xi: functional_call(model, params, (xi.unsqueeze(0),), {"mode": "smooth"}).squeeze(0)


def exact_jacobian_norm(f, xi):
    J = torch.autograd.functional.jacobian(f, xi)
    return float(torch.linalg.matrix_norm(J.reshape(f(xi).numel(), -1), ord=2))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_jacobian_spectral_norm_equals_exact(name):
    model, x, _ = make(name)
    f = per_sample_fn(model)
    for i in range(2):
        r = jacobian_spectral_norm(f, x[i], tol=1e-8)
        exact = exact_jacobian_norm(f, x[i])
        assert r.converged
        assert r.value == pytest.approx(exact, rel=1e-4)  # relative 1e-4
        assert r.value <= exact * (1 + 1e-12)  # a Rayleigh quotient: never above the true norm


def test_jacobian_spectral_norm_general_maps():
    gen = torch.Generator().manual_seed(3)
    for k, shape in ((7, (3, 4)), (8, (5,))):  # more inputs than outputs, and more outputs than inputs
        M = torch.randn(k, int(np.prod(shape)), generator=gen, dtype=torch.float64)
        f = lambda t, M=M: torch.tanh(M @ t.reshape(-1))  # noqa: E731
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        r = jacobian_spectral_norm(f, x, tol=1e-8)
        assert r.converged and r.value == pytest.approx(exact_jacobian_norm(f, x), rel=1e-6)
    not_yet = jacobian_spectral_norm(f, x, tol=1e-8, max_iter=1)
    assert not_yet.converged is False and not_yet.n_products == 1


def test_input_jacobian_norms_vmap_loop_and_exact_agree():
    model, x, _ = make("dense2-subtract")
    f = per_sample_fn(model)
    batched = input_jacobian_norms(model, x, tol=1e-8)
    looped = input_jacobian_norms(model, x, tol=1e-8, vectorize=False, progress=False)
    exact = [exact_jacobian_norm(f, xi) for xi in x]
    assert all(batched.converged) and all(looped.converged)
    assert batched.values == pytest.approx(exact, rel=1e-4)  # relative 1e-4
    assert batched.values == pytest.approx(looped.values, rel=1e-10)  # same algorithm, same start vectors
    assert batched.max == pytest.approx(max(exact), rel=1e-4)
    assert batched.n_products == batched.iterations * B


def test_input_jacobian_norms_do_not_touch_model_and_cast():
    model, x, _ = make("dense-zero", dtype=torch.float32)
    r64 = input_jacobian_norms(model, x, dtype=torch.float64, tol=1e-8)
    r32 = input_jacobian_norms(model, x)
    assert next(model.parameters()).dtype == torch.float32
    assert r32.values == pytest.approx(r64.values, rel=1e-4)  # float32 vs float64 rounding


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("mode", ["smooth", "hfsb"])
def test_per_sample_grads_equal_a_loop(mode):
    model, x, y = make("dense2-subtract")
    grads = per_sample_grads(model, x, y, mode=mode)
    names = [n for n, _ in model.named_parameters()]
    assert list(grads) == names
    for n, p in model.named_parameters():
        assert grads[n].shape == (B, *p.shape)
    flat = flatten(grads)
    assert flat.shape == (B, flat_params(model).numel())
    for i in range(B):
        ref = flat_grad(model, x[i:i + 1], y[i:i + 1], mode=mode)
        assert torch.allclose(flat[i], ref, rtol=1e-10, atol=1e-14)  # float64: same arithmetic up to order
    # the mean of per-sample gradients is the batch gradient (mean cross-entropy)
    assert torch.allclose(flat.mean(0), flat_grad(model, x, y, mode=mode), rtol=1e-10, atol=1e-14)


def test_flat_params_and_flatten_follow_named_parameters_order():
    model, _, _ = make("dense-zero")
    w = flat_params(model)
    expected = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    assert torch.equal(w, expected)
    named = {n: p.detach() for n, p in model.named_parameters()}
    assert torch.equal(flatten(named, batched=False), expected)
    w[0] += 1.0  # a copy: the model is unchanged
    assert not torch.equal(flat_params(model), w)


# --------------------------------------------------------------------------- warm-started Lanczos (the live T4)


def test_warm_started_lanczos_agrees_with_a_cold_start_and_eigvalsh():
    # the live monitor's refresh: the Ritz vectors found at w start the run at w' (the weights moved)
    model, x, y = make("dense-zero")
    before = lanczos_extremes(HessianOperator(model, None, x, y), tol=1e-8, return_vectors=True)
    assert before.vectors.shape == (2, sum(p.numel() for p in model.parameters()))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(5)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    H = exact_hessian(model, x, y)
    ev = torch.linalg.eigvalsh(H)
    radius = float(ev.abs().max())
    op = HessianOperator(model, None, x, y)
    for tol in (1e-3, 1e-8):
        cold = lanczos_extremes(op, tol=tol)
        warm = lanczos_extremes(op, tol=tol, start=before.vectors, return_vectors=True)
        assert cold.converged and warm.converged
        # the stopping rule's accuracy, relative to the spectral radius, on both ends and against the cold start
        for r in (cold, warm):
            assert abs(r.lambda_max - float(ev[-1])) <= tol * radius
            assert abs(r.lambda_min - float(ev[0])) <= tol * radius
        assert abs(warm.lambda_min - cold.lambda_min) <= 2 * tol * radius
        assert abs(warm.lambda_max - cold.lambda_max) <= 2 * tol * radius
        # the returned vectors are unit Ritz vectors: their Rayleigh quotients are the Ritz values
        v = warm.vectors
        assert torch.allclose(v.norm(dim=1), torch.ones(2, dtype=v.dtype), rtol=1e-12)
        rq = [float(v[i] @ H @ v[i]) for i in range(2)]
        assert rq == pytest.approx([warm.lambda_min, warm.lambda_max], rel=1e-9, abs=1e-12)
    # deterministic: the same start gives the same run
    a = lanczos_extremes(op, tol=1e-3, start=before.vectors)
    b = lanczos_extremes(op, tol=1e-3, start=before.vectors)
    assert (a.lambda_min, a.lambda_max, a.n_products) == (b.lambda_min, b.lambda_max, b.n_products)


def test_a_warm_start_needs_few_products_on_a_slightly_changed_operator():
    eigs = np.random.default_rng(3).uniform(-1, 4, 300)
    A = random_symmetric(eigs, 0)
    first = lanczos_extremes(A, tol=1e-3, return_vectors=True)
    E = random_symmetric(np.random.default_rng(4).uniform(-1, 1, 300), 1)
    B_ = A + 1e-3 * E  # the operator a few steps later
    ev = torch.linalg.eigvalsh(B_)
    cold = lanczos_extremes(B_, tol=1e-3)
    warm = lanczos_extremes(B_, tol=1e-3, start=first.vectors)
    assert warm.converged and warm.n_products <= cold.n_products // 3  # measured: 6 against 37
    radius = float(ev.abs().max())
    assert abs(warm.lambda_max - float(ev[-1])) <= 1e-3 * radius
    assert abs(warm.lambda_min - float(ev[0])) <= 1e-3 * radius


def test_a_bad_start_is_refused_in_one_line():
    A = random_symmetric(np.linspace(-1, 2, 10), 0)
    with pytest.raises(ValueError, match="start must have shape"):
        lanczos_extremes(A, start=torch.ones(11))
    with pytest.raises(ValueError, match="zero or not finite"):
        lanczos_extremes(A, start=torch.zeros(2, 10))
    one = lanczos_extremes(A, tol=1e-10, start=torch.ones(10))  # a plain vector works too
    assert (one.lambda_min, one.lambda_max) == pytest.approx((-1.0, 2.0), rel=1e-8)
