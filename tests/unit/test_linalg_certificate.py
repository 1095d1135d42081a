"""checks/linalg/certificate.py: the Kuczynski-Wozniakowski spectral-radius certificate.

References: numpy.linalg.eigvalsh on dense float64 matrices with chosen spectra, the exact
Hessian of a tiny SNN (torch.autograd.functional.hessian), and empirical failure frequencies
over many random starts, on spectra built to be hard for Lanczos (including one tailored to
the theorem's worst case, on which the bound is within a factor ~2 of tight, so that a wrong
certificate is caught).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import checks.linalg.certificate as certificate
from checks.linalg import HessianOperator, RandomizedBound, spectral_radius_certificate
from checks.linalg.certificate import KW_CONSTANT, kw_epsilon, kw_failure_probability, steps_for
from sast.model import SNN, SNNConfig


def random_symmetric(eigenvalues, seed: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(np.asarray(eigenvalues), dtype=torch.float64)) @ q.T


def radius(a: torch.Tensor) -> float:
    return float(np.abs(np.linalg.eigvalsh(a.numpy())).max())


# --------------------------------------------------------------------------- the bound's arithmetic


@pytest.mark.parametrize("n", [1, 10, 200, 230_000, 10**7])
@pytest.mark.parametrize("k", [1, 3, 10, 50, 400])
@pytest.mark.parametrize("delta", [1e-9, 1e-3, 0.2, 0.9])
def test_kw_epsilon_and_failure_probability_are_inverse(n, k, delta):
    eps = kw_epsilon(n, k, delta)
    assert eps > 0
    assert kw_failure_probability(n, k, eps) == pytest.approx(delta, rel=1e-12)
    assert eps == pytest.approx((math.log(KW_CONSTANT * math.sqrt(n) / delta) / (2 * k - 1)) ** 2, rel=1e-14)
    # and the other way round, where the formula is below 1
    for e in (1e-4, 0.05, 0.5):
        p = kw_failure_probability(n, k, e)
        if p < 1:
            assert kw_epsilon(n, k, p) == pytest.approx(e, rel=1e-10)


def test_kw_functions_are_monotone():
    ks = [1, 2, 5, 10, 20, 50, 100, 1000]
    for n in (10, 1000, 10**6):
        for delta in (1e-6, 1e-3, 0.2):
            e = [kw_epsilon(n, k, delta) for k in ks]
            assert all(a > b for a, b in zip(e, e[1:]))  # more steps: smaller eps
        assert kw_epsilon(n, 10, 1e-6) > kw_epsilon(n, 10, 1e-3) > kw_epsilon(n, 10, 0.2)  # smaller delta: larger eps
        p = [kw_failure_probability(n, k, 0.01) for k in ks]
        assert all(a >= b for a, b in zip(p, p[1:])) and p[-1] < p[0]
        q = [kw_failure_probability(n, 20, e) for e in (0.0, 1e-3, 0.01, 0.1, 0.5, 0.99)]
        assert all(a >= b for a, b in zip(q, q[1:])) and q[0] == 1.0 and q[-1] < q[1]
    assert kw_epsilon(10, 10, 1e-3) < kw_epsilon(10**4, 10, 1e-3) < kw_epsilon(10**8, 10, 1e-3)  # larger n: larger eps
    assert 0.0 <= kw_failure_probability(5, 3, 10.0) <= 1.0  # eps >= 1: still an upper bound (the event is empty)


@pytest.mark.parametrize("n", [2, 200, 230_000, 10**7])
@pytest.mark.parametrize("delta", [1e-6, 1e-3, 0.2])
@pytest.mark.parametrize("eps", [0.5, 0.1, 0.01, 1e-4])
def test_steps_for_is_the_fewest_steps_reaching_eps(n, delta, eps):
    k = steps_for(n, delta, eps)
    assert kw_epsilon(n, k, delta) <= eps
    assert k == 1 or kw_epsilon(n, k - 1, delta) > eps


def test_arguments_are_checked():
    for bad in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="failure_probability"):
            kw_epsilon(10, 5, bad)
        with pytest.raises(ValueError, match="failure_probability"):
            spectral_radius_certificate(np.eye(3), steps=2, failure_probability=bad)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            spectral_radius_certificate(np.eye(3), steps=bad)
    with pytest.raises(ValueError, match="dimension"):
        kw_epsilon(0, 5, 0.1)
    with pytest.raises(ValueError, match="eps"):
        kw_failure_probability(10, 5, -0.1)
    with pytest.raises(ValueError, match="eps"):
        steps_for(10, 0.1, 1.0)


# --------------------------------------------------------------------------- bounds on dense matrices


def spectra(n: int = 60):
    rng = np.random.default_rng(7)
    return {
        "indefinite": rng.uniform(-1, 1, n) * np.r_[3.0, np.ones(n - 1)],
        "negative-end": np.r_[-2.0, rng.uniform(-1.5, 1.9, n - 1)],
        "psd": rng.uniform(0, 1, n) ** 2,
        "nsd": -rng.uniform(0, 5, n),
        "pair": np.r_[-1.0, 1.0, rng.uniform(-0.5, 0.5, n - 2)],  # +-rho: a double eigenvalue of H^2
        "wide": np.r_[1e3, -rng.uniform(0, 1, n - 1)],
    }


@pytest.mark.parametrize("name", list(spectra()))
@pytest.mark.parametrize("steps", [5, 15, 40])
def test_value_is_above_and_ritz_below_the_true_spectral_radius(name, steps):
    h = random_symmetric(spectra()[name])
    rho = radius(h)
    for seed in range(5):
        r = spectral_radius_certificate(h, steps=steps, failure_probability=1e-3, seed=seed)
        assert isinstance(r, RandomizedBound) and r.kind == "probabilistic" and "Kuczynski" in r.reference
        assert r.steps == steps and r.n_products == 2 * steps and r.failure_probability == 1e-3
        assert r.eps == kw_epsilon(60, steps, 1e-3)
        assert r.ritz <= rho * (1 + 1e-12)
        if r.eps < 1:
            assert r.value == pytest.approx(r.ritz / math.sqrt(1 - r.eps), rel=1e-15)
            assert r.value >= rho
        else:
            assert r.value is None


def test_too_few_steps_give_no_bound():
    r = spectral_radius_certificate(random_symmetric(np.linspace(-1, 2, 200)), steps=1)
    assert r.eps >= 1 and r.value is None and r.ritz > 0 and r.n_products == 2


def test_numpy_torch_scipy_and_callable_agree():
    h = random_symmetric(spectra()["negative-end"])
    ref = spectral_radius_certificate(h, steps=12, seed=4)
    from scipy.sparse.linalg import aslinearoperator

    for op, kw in ((h.numpy(), {}), (aslinearoperator(h.numpy()), {}), (lambda v: h @ v, {"dim": 60})):
        r = spectral_radius_certificate(op, steps=12, seed=4, **kw)
        assert r.value == pytest.approx(ref.value, rel=1e-12) and r.n_products == ref.n_products


def test_nonfinite_products_raise():
    with pytest.raises(FloatingPointError):
        spectral_radius_certificate(lambda v: v * float("nan"), dim=5, steps=3)


# --------------------------------------------------------------------------- breakdown and k >= n


def test_low_rank_operator_breaks_down_restarts_and_still_bounds():
    # H has 3 distinct eigenvalues: A = H^2 has 3 (with 0), so the recurrence breaks down after 3 steps
    h = random_symmetric(np.r_[-2.0, 1.5, np.zeros(38)])
    r = spectral_radius_certificate(h, steps=10, seed=0)
    assert r.n_products == 20  # the remaining steps were spent on restarts, not dropped
    assert r.ritz == pytest.approx(2.0, rel=1e-12)  # an invariant Krylov space holds the top eigenvalue
    assert r.value >= 2.0


def test_restart_finds_what_a_degenerate_start_missed(monkeypatch):
    # A start inside an invariant subspace without the top eigenvector (a null event for a random
    # start): the recurrence breaks down at once, and the restart still finds rho.
    ev = np.r_[-3.0, np.linspace(-1, 1, 29)]
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    h = q @ torch.diag(torch.as_tensor(ev)) @ q.T
    monkeypatch.setattr(certificate, "_start_vector", lambda start, n, seed, device, dtype: q[:, 5].clone())
    r = spectral_radius_certificate(h, steps=25, seed=0)
    assert r.ritz == pytest.approx(3.0, rel=1e-10) and r.value >= 3.0


def test_zero_operator_and_more_steps_than_dimensions():
    r = spectral_radius_certificate(torch.zeros(6, 6, dtype=torch.float64), steps=6)
    assert r.value == 0.0 and r.ritz == 0.0 and r.n_products == 12
    h = random_symmetric([0.5, -1.25, 0.75, 1.0, -0.1, 0.3, 0.2, -0.9])
    r = spectral_radius_certificate(h, steps=20, seed=2)
    assert r.steps == 20 and r.n_products == 16  # the basis spans R^8 after 8 steps
    assert r.ritz == pytest.approx(1.25, rel=1e-12) and r.value >= 1.25
    assert r.eps == kw_epsilon(8, 20, 1e-3)  # the bound is for the requested k (xi_k = xi_n for k >= n)


# --------------------------------------------------------------------------- empirical failure frequency

N_EMP, K_EMP, DELTA_EMP, SEEDS = 200, 10, 0.2, range(200)


def _arcsine(top: float, m: int) -> np.ndarray:
    return top * (1 - np.cos(np.linspace(0, math.pi, m))) / 2


def hard_spectra():
    """Eigenvalues of H (n = 200, rho = 1), each hard for Lanczos on H^2 in its own way."""
    rng = np.random.default_rng(0)
    n, signs = N_EMP, np.where(np.arange(N_EMP - 1) % 2, 1.0, -1.0)
    eps = kw_epsilon(N_EMP, K_EMP, DELTA_EMP)
    return {
        # one top eigenvalue and a cluster just below it
        "cluster": np.r_[1.0, rng.uniform(0.9, 0.99, n - 1)],
        "cluster-negative-end": np.r_[-1.0, rng.uniform(0.9, 0.99, n - 1) * signs],
        # a tiny gap: a second eigenvalue within 1e-6, or a continuum reaching up to it
        "tiny-gap": np.r_[1.0, 1 - 1e-6, rng.uniform(0.9, 0.99, n - 2)],
        "tiny-gap-continuum": np.r_[-1.0, np.sqrt(_arcsine(1 - 1e-6, n - 1)) * signs],
        # the theorem's worst case for this k: H^2 has 1 and an arcsine continuum on [0, 1 - eps] (Chebyshev
        # polynomials are the best filters there), so a failure is a start with too small a top component
        "kw-worst-case": np.r_[-1.0, np.sqrt(_arcsine(1 - eps, n - 1)) * signs],
    }


def _failure_frequencies(name):
    h = random_symmetric(hard_spectra()[name])
    rho = radius(h)
    runs = [spectral_radius_certificate(h, steps=K_EMP, failure_probability=DELTA_EMP, seed=s) for s in SEEDS]
    ritz = np.array([r.ritz for r in runs])
    eps = runs[0].eps
    # planted bugs: the bare Ritz value (no 1/(1 - eps)), and k counted in H-products (2k) instead of H^2-steps
    eps_2k = kw_epsilon(N_EMP, 2 * K_EMP, DELTA_EMP)
    return {
        "certificate": float(np.mean(np.array([r.value for r in runs]) < rho)),
        "bare-ritz": float(np.mean(ritz < rho)),
        "k-as-products": float(np.mean(ritz / math.sqrt(1 - eps_2k) < rho)),
        "eps": eps,
    }


@pytest.mark.parametrize("name", list(hard_spectra()))
def test_empirical_failure_frequency_is_below_delta(name):
    f = _failure_frequencies(name)
    assert f["eps"] < 1
    assert f["certificate"] <= DELTA_EMP
    # not vacuous: without the 1/(1 - eps) factor the "bound" fails far more often than delta
    assert f["bare-ritz"] > DELTA_EMP


def test_the_worst_case_spectrum_catches_a_too_optimistic_certificate():
    f = _failure_frequencies("kw-worst-case")
    # the theorem's bound is nearly attained here: the right certificate fails at a visible rate
    # (below delta), and one that claims the accuracy of 2k steps after k fails more often than delta
    assert 0.02 < f["certificate"] <= DELTA_EMP
    assert f["k-as-products"] > DELTA_EMP
    assert f["bare-ritz"] == 1.0


# --------------------------------------------------------------------------- a Hessian operator


def test_hessian_operator_of_a_tiny_model():
    torch.manual_seed(0)
    cfg = SNNConfig(input_shape=(4,), layers=["dense:3"], T=3, beta=2.0, reset="zero", num_classes=3)
    model = SNN(cfg).to(torch.float64)
    x = 2.0 * torch.rand(5, cfg.T, *cfg.input_shape, dtype=torch.float64)
    y = torch.randint(0, cfg.num_classes, (5,))
    shapes = [(name, p.shape, p.numel()) for name, p in model.named_parameters()]

    def loss(w):
        params, i = {}, 0
        for name, s, k in shapes:
            params[name] = w[i:i + k].reshape(s)
            i += k
        return F.cross_entropy(functional_call(model, params, (x,), {"mode": "smooth"}), y)

    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    hess = torch.autograd.functional.hessian(loss, w, vectorize=True)
    rho = radius(hess)
    op = HessianOperator(model, None, x, y)
    n = op.dim
    assert n == hess.shape[0]
    for steps, delta in ((n // 2, 0.1), (n, 1e-3)):
        r = spectral_radius_certificate(op, steps=steps, failure_probability=delta, seed=1)
        assert r.eps < 1 and r.ritz <= rho * (1 + 1e-10) and r.value >= rho
        assert r.n_products == 2 * steps
    # with k = n steps the Krylov space is everything: the Ritz value is the spectral radius
    assert r.ritz == pytest.approx(rho, rel=1e-8)
    dense = spectral_radius_certificate(hess, steps=n, seed=1)
    assert dense.value == pytest.approx(r.value, rel=1e-8)


# --------------------------------------------------------------------------- the certificate read off a Lanczos run on H


def _from_lanczos(h, k: int, seed: int, delta: float = 1e-3):
    from checks.linalg import certificate_from_lanczos, lanczos_extremes

    res = lanczos_extremes(h, seed=seed, tol=1e-300, min_iter=2 * k - 1, max_iter=2 * k - 1)
    return res, certificate_from_lanczos(res, h.shape[0], failure_probability=delta)


@pytest.mark.parametrize("name", list(spectra()))
@pytest.mark.parametrize("k", [5, 15])
def test_lanczos_read_certificate_holds_and_is_at_least_the_h2_runs_ritz(name, k):
    """From the same start b, 2k - 1 steps on H span K_k(H^2, b): the Ritz value of H^2 is >= the H^2 run's."""
    h = random_symmetric(spectra()[name])
    rho = radius(h)
    for seed in range(5):
        res, r = _from_lanczos(h, k, seed)
        own = spectral_radius_certificate(h, steps=k, failure_probability=1e-3, seed=seed)  # the same start b
        assert res.iterations == 2 * k - 1 and r.steps == k and r.n_products == 0 and r.eps == own.eps
        assert own.ritz * (1 - 1e-12) <= r.ritz <= rho * (1 + 1e-12)
        assert max(abs(res.lambda_min), abs(res.lambda_max)) <= r.ritz * (1 + 1e-12)  # H's Ritz values too
        if r.eps < 1:
            assert r.value >= rho and r.value == pytest.approx(r.ritz / math.sqrt(1 - r.eps), rel=1e-15)


@pytest.mark.parametrize("name", ["kw-worst-case", "tiny-gap-continuum", "cluster-negative-end"])
def test_lanczos_read_certificate_fails_no_more_often_than_delta(name):
    h = random_symmetric(hard_spectra()[name])
    rho = radius(h)
    runs = [_from_lanczos(h, K_EMP, s, DELTA_EMP)[1] for s in SEEDS]
    assert runs[0].eps < 1
    assert float(np.mean(np.array([r.value for r in runs]) < rho)) <= DELTA_EMP
    # not vacuous: the bare Ritz value of H^2 falls below rho more often than delta on these spectra
    assert float(np.mean(np.array([r.ritz for r in runs]) < rho)) > DELTA_EMP


def test_lanczos_read_certificate_refuses_a_warm_start_and_a_bare_result():
    from checks.linalg import LanczosResult, certificate_from_lanczos, lanczos_extremes

    h = random_symmetric(spectra()["psd"])
    warm = lanczos_extremes(h, start=torch.ones(60, dtype=torch.float64), max_iter=9)
    with pytest.raises(ValueError, match="warm-started"):
        certificate_from_lanczos(warm, 60)
    with pytest.raises(ValueError, match="tridiagonal"):
        certificate_from_lanczos(LanczosResult(0.0, 1.0, True, 3, 3, 0.0, 0.0, random_start=True), 60)


def test_min_iter_runs_past_convergence_and_max_iter_still_caps():
    from checks.linalg import lanczos_extremes

    h = random_symmetric(np.r_[5.0, np.linspace(0.1, 0.2, 59)])  # converges within a few steps
    early = lanczos_extremes(h, seed=1)
    longer = lanczos_extremes(h, seed=1, min_iter=early.iterations + 10)
    assert longer.iterations == early.iterations + 10 and longer.converged
    assert longer.lambda_max >= early.lambda_max - 1e-12 and len(longer.betas) == longer.iterations
    assert lanczos_extremes(h, seed=1, min_iter=30, max_iter=12).iterations == 12
