"""A probabilistic upper bound on the spectral radius of a symmetric operator (Kuczynski-Wozniakowski).

Lanczos Ritz values converge to the extreme eigenvalues from inside the
spectrum, so :func:`~checks.linalg.lanczos_extremes` gives estimates, never
upper bounds: a converged-looking top Ritz value can sit below an eigenvalue
that the Krylov space has not found yet. With a random start the shortfall is
bounded in probability, and that is what this module certifies.

The theorem
-----------
Kuczynski and Wozniakowski, "Estimating the largest eigenvalue by the power and
Lanczos algorithms with a random start", SIAM J. Matrix Anal. Appl. 13(4),
1094-1122 (1992). Let A be a symmetric positive definite n x n matrix with
largest eigenvalue lambda_1, b uniformly distributed on the unit sphere of R^n,
and xi_k the largest Ritz value after k Lanczos steps from b, i.e. the largest
Rayleigh quotient x^T A x / x^T x over the Krylov space
K_k(A, b) = span(b, A b, ..., A^{k-1} b) (k products with A: the "Krylov
information [b, A b, ..., A^k b]" of the paper). Then for every eps in (0, 1)

    P[ xi_k < (1 - eps) lambda_1 ]  <=  1.648 sqrt(n) exp(-sqrt(eps) (2k - 1)),

whatever the spectrum of A. (For the power method the paper's bound is of
order sqrt(n) (1 - eps)^k, much weaker: Lanczos has sqrt(eps) k in the exponent.)

Sources: the paper's abstract (doi 10.7916/D8B56SVV) states the setting (A
symmetric positive definite, b uniform on the unit sphere, k matrix-vector
multiplications) and the form of the Lanczos bound, "at most as sqrt n
e^{-(2k-1) sqrt eps}", for a worst-case distribution of eigenvalues that may
depend on k; the constant 1.648 is the one of the paper's Lanczos theorem as
it is usually quoted, not read here from the paper's text. It is not too small
empirically (not a proof): on the theorem's worst case for a given k
(A = diag(1, continuum on [0, 1 - eps])), the failure frequency over 400 to
2000 random starts was 0.07-0.12 where the bound says 0.2 (n = 200 to 1e5,
k = 5 to 20), a constant of about 0.6-1.0 (n = 200 is a test in
tests/unit/test_linalg_certificate.py).

Positive SEMIdefinite A is covered too: A + tI (t > 0) is definite, has the same
Krylov spaces and Ritz values shifted by t, and the events
{xi_k + t < (1 - eps)(lambda_1 + t)} increase to {xi_k < (1 - eps) lambda_1}
as t decreases to 0, so the bound passes to the limit.

The certificate
---------------
For a symmetric H (the Hessian, as Hessian-vector products) put A = H^2: it is
PSD, lambda_1(A) = max |lambda(H)|^2 = rho(H)^2, and one product with A is two
with H. Running k Lanczos steps on v -> H(H v) from a Gaussian start
normalised to the unit sphere (uniform on it) gives xi_k, and with probability
at least 1 - delta over the start

    rho(H)  <=  sqrt(xi_k / (1 - eps)),   eps = (ln(1.648 sqrt(n) / delta) / (2k - 1))^2

(eps solves 1.648 sqrt(n) exp(-sqrt(eps)(2k - 1)) = delta; see :func:`kw_epsilon`).
If eps >= 1 the k steps are too few for any bound and the value is None. The
factor sqrt(1 / (1 - eps)) depends only on n, k and delta, not on the operator:
:func:`steps_for` gives the k that reaches a wanted eps. ``ritz`` = sqrt(xi_k)
is a lower estimate (a Rayleigh quotient of H^2 is ||H x||^2 <= rho^2).
The failure probability is over the random start only, for the operator as it
is: it is not a statement about other operators, and a start correlated with H
(a warm start, a Ritz vector from an earlier run) voids it.

Early termination
-----------------
If the recurrence breaks down at step j < k (the new residual beta_j is zero,
or at rounding level), K_j(A, b) is an invariant subspace and K_m(A, b) = K_j(A, b)
for every m >= j; in particular the quantity the theorem is about, xi_k, equals
xi_j. (It is then even the exact lambda_1 almost surely: an invariant Krylov
space contains the projection of b on the top eigenspace, which is nonzero
unless b lies in a null set; but only the weaker fact is used.) The run does not
stop there: it restarts with a fresh random vector orthogonalised against the
basis found so far (the coupling to the old block is zero) and spends the
remaining steps, as ARPACK does. The final top Ritz value is the largest
Rayleigh quotient over a space that contains K_k(A, b) (in exact arithmetic:
K_k(A, b) = K_j(A, b) lies in the basis), so it is >= xi_k, and the
bound for the requested k holds as stated (the restarts only add information and
guard against a top component lost to rounding). The restart vectors need no
particular distribution for this argument. If k >= n the basis reaches all of
R^n after n steps (2n products) and the top Ritz value is lambda_1 itself up to
rounding; the bound is still reported for the requested k.

The same bound from a Lanczos run on H
--------------------------------------
A Lanczos run on H itself (:func:`~checks.linalg.lanczos_extremes`, T4's estimate) from a
start b uniform on the sphere holds an orthonormal basis Q_m of K_m(H, b) after m products.
K_k(A, b) = span(b, H^2 b, ..., H^{2(k-1)} b) lies in K_{2k-1}(H, b), so for k = floor((m + 1) / 2)
the largest Rayleigh quotient of A = H^2 over span(Q_m), max_y ||H Q_m y||^2 / ||y||^2, is at
least xi_k, and at most lambda_1(A): the event {that quotient < (1 - eps) lambda_1} lies inside
the theorem's event, and the same bound holds with the same eps(n, k, delta). The quotient needs
no further product: H Q_m = Q_{m+1} T~ with T~ the (m + 1) x m matrix of the tridiagonal T_m above
beta_m e_m^T, so it is sigma_max(T~)^2 (:func:`certificate_from_lanczos`). One run then gives T4's
estimate and its certificate with m = 2k - 1 products in place of the estimate's own steps plus
2k. A space that became invariant (the run stops with beta_m at rounding level) holds K_k(A, b) for
every k, so k = floor((m + 1) / 2) stays a valid (conservative) choice. The start must be the
run's own random one: a warm start (``start=``) voids the bound, and the function refuses it.

Floating point
--------------
The theorem is a statement in exact arithmetic. Here the Krylov basis is kept
in float64 by default and every new vector is fully reorthogonalised (the
recurrence, one Gram-Schmidt pass, a second where the DGKS test asks:
:func:`checks.linalg.lanczos._reorthogonalise`), so the basis Q is orthonormal
to working precision and the tridiagonal T is, up to rounding, the
Rayleigh-Ritz matrix Q A Q^T of span(Q): its top eigenvalue is a Rayleigh
quotient of A (so ``ritz`` <= rho up to rounding) and, by the usual
backward-error view of Lanczos with full reorthogonalisation, the Ritz values
of an exact run on a matrix within a few unit roundoffs (times low powers of n
and k) of A in norm. In float64 that is many orders of magnitude below any eps
a run can reach (eps = 1e-6 already needs k in the thousands), and a breakdown
declared at rounding level (the restart above) moves the Ritz values by at
most the dropped beta, again of rounding size. No rounding margin is added,
because none could be justified from here: the dominant error is the
operator's own (a float32 Hessian-vector product is accurate to ~1e-7 relative
and only nearly symmetric), which this module cannot see, and the perturbed
matrix of the backward-error view depends on the start, so the theorem does
not transfer to it verbatim. The certificate is thus for the operator as
computed, with the Lanczos run exact up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

from checks.linalg.lanczos import (
    _NONFINITE_PRODUCT,
    LanczosResult,
    MatVec,
    _as_matvec,
    _orthogonalise,
    _reorthogonalise,
    _start_vector,
)

__all__ = [
    "KW_CONSTANT",
    "KW_REFERENCE",
    "RandomizedBound",
    "certificate_from_lanczos",
    "kw_epsilon",
    "kw_failure_probability",
    "steps_for",
    "spectral_radius_certificate",
]

# The constant of the Kuczynski-Wozniakowski Lanczos bound (see the module docstring for its provenance).
KW_CONSTANT = 1.648
KW_REFERENCE = (
    "Kuczynski & Wozniakowski, Estimating the largest eigenvalue by the power and Lanczos algorithms with a "
    "random start, SIAM J. Matrix Anal. Appl. 13(4):1094-1122 (1992): for PSD A and a start uniform on the "
    "sphere, P[xi_k < (1 - eps) lambda_1(A)] <= 1.648 sqrt(n) exp(-sqrt(eps)(2k - 1)); applied to A = H^2"
)

# Restart seeds are drawn from a generator offset from the start's seed, so that a restart
# vector never repeats the start vector of the same seed (any restart vector is sound).
_RESTART_SEED_OFFSET = 0x5EED_C0DE

_BAD_DELTA = "failure_probability must be in (0, 1), got {delta!r}"
_BAD_STEPS = "steps must be an integer >= 1, got {steps!r}"
_BAD_N = "the dimension n must be an integer >= 1, got {n!r}"
_BAD_EPS = "eps must be >= 0 (kw_failure_probability) or in (0, 1) (steps_for), got {eps!r}"


@dataclass(frozen=True)
class RandomizedBound:
    """An upper bound that holds with probability >= 1 - ``failure_probability`` over a random start.

    ``value``: the bound on max |lambda(H)| (None when the steps were too few: eps >= 1);
    ``eps``: the relative accuracy on lambda_1(H^2) at which the Kuczynski-Wozniakowski bound
    equals ``failure_probability`` for this n and ``steps`` (value = ritz / sqrt(1 - eps));
    ``steps``: k, the Lanczos steps on H^2 the bound is for; ``n_products``: products with H
    actually computed (2 per step; fewer when k > n); ``ritz``: sqrt of the top Ritz value of
    H^2, a lower estimate of max |lambda(H)|; ``kind``: "probabilistic" (not a deterministic
    bound); ``reference``: the theorem used.
    """

    value: float | None
    failure_probability: float
    eps: float
    steps: int
    n_products: int
    ritz: float
    kind: str = "probabilistic"
    reference: str = KW_REFERENCE


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(_BAD_N.format(n=n))
    return int(n)


def _check_steps(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(_BAD_STEPS.format(steps=k))
    return int(k)


def _check_delta(delta: float) -> float:
    if not 0.0 < delta < 1.0:
        raise ValueError(_BAD_DELTA.format(delta=delta))
    return float(delta)


def kw_failure_probability(n: int, k: int, eps: float) -> float:
    """The Kuczynski-Wozniakowski bound min(1, 1.648 sqrt(n) exp(-sqrt(eps)(2k - 1))).

    An upper bound on P[xi_k < (1 - eps) lambda_1] after k Lanczos steps on a PSD n x n
    matrix from a start uniform on the sphere. Valid for every eps >= 0 (for eps >= 1 the
    event is impossible for PSD A and the formula is still an upper bound). Decreasing in
    k and in eps, increasing in n.
    """
    n, k = _check_n(n), _check_steps(k)
    if not eps >= 0.0:
        raise ValueError(_BAD_EPS.format(eps=eps))
    return min(1.0, KW_CONSTANT * math.sqrt(n) * math.exp(-math.sqrt(eps) * (2 * k - 1)))


def kw_epsilon(n: int, k: int, delta: float) -> float:
    """The eps at which the Kuczynski-Wozniakowski bound equals delta: (ln(1.648 sqrt(n) / delta) / (2k - 1))^2.

    The inverse of :func:`kw_failure_probability` in eps. May be >= 1: then k steps
    certify nothing at this delta. Decreasing in k and in delta, increasing in n.
    """
    n, k, delta = _check_n(n), _check_steps(k), _check_delta(delta)
    # KW_CONSTANT * sqrt(n) >= 1.648 > 1 > delta, so the logarithm is positive
    return (math.log(KW_CONSTANT * math.sqrt(n) / delta) / (2 * k - 1)) ** 2


def steps_for(n: int, delta: float, eps: float) -> int:
    """The fewest Lanczos steps k (on H^2: 2k products with H) with kw_epsilon(n, k, delta) <= eps.

    k = ceil((ln(1.648 sqrt(n) / delta) / sqrt(eps) + 1) / 2); the bound factor on the
    spectral radius is then at most sqrt(1 / (1 - eps)).
    """
    n, delta = _check_n(n), _check_delta(delta)
    if not 0.0 < eps < 1.0:
        raise ValueError(_BAD_EPS.format(eps=eps))
    k = max(1, math.ceil((math.log(KW_CONSTANT * math.sqrt(n) / delta) / math.sqrt(eps) + 1) / 2))
    # guard the ceiling against rounding in either direction
    while kw_epsilon(n, k, delta) > eps:
        k += 1
    while k > 1 and kw_epsilon(n, k - 1, delta) <= eps:
        k -= 1
    return k


def spectral_radius_certificate(
    op: Tensor | np.ndarray | MatVec | LinearOperator | Callable[[Tensor], Tensor],
    *,
    steps: int,
    failure_probability: float = 1e-3,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    dim: int | None = None,
) -> RandomizedBound:
    """An upper bound on max |lambda(H)| that holds with probability >= 1 - ``failure_probability``.

    ``op`` is a symmetric H in any form :func:`~checks.linalg.lanczos_extremes` accepts (a
    dense matrix, an operator with ``matvec`` and ``dim`` such as
    :class:`~checks.linalg.HessianOperator`, a scipy LinearOperator, or a callable with
    ``dim``). Runs ``steps`` = k Lanczos steps on A = H^2 (two products with H each) from a
    Gaussian start normalised to the unit sphere (from ``seed``), with full
    reorthogonalisation, and returns sqrt(xi_k / (1 - eps)) with
    eps = :func:`kw_epsilon` (n, k, failure_probability); see the module docstring for the
    theorem, breakdowns (restarted, soundly) and rounding. ``dtype`` is that of the Krylov
    basis (None: float64); ``dim`` is needed only for a plain callable. The start must
    not depend on H (never pick the seed, or H, after seeing results); several certificates
    hold together with probability at least 1 minus the sum of their failure probabilities
    (a union bound: no independence between them is needed). Memory: the basis holds
    min(k, n) vectors of length n in ``dtype``.

    A NaN or infinite product raises FloatingPointError.
    """
    fn, n, device = _as_matvec(op, dim)
    k = _check_steps(steps)
    delta = _check_delta(failure_probability)
    dtype = torch.float64 if dtype is None else dtype
    eps = kw_epsilon(n, k, delta)

    def a_matvec(v: Tensor, step: int) -> Tensor:
        hv = fn(v).to(device=device, dtype=dtype).reshape(-1)
        ahv = fn(hv).to(device=device, dtype=dtype).reshape(-1)
        if not bool(torch.isfinite(ahv).all()):
            raise FloatingPointError(_NONFINITE_PRODUCT.format(step=step))
        return ahv

    m = min(k, n)  # after n steps the basis spans R^n (restarts included)
    basis = torch.empty((m, n), dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []  # off-diagonal of T; 0 where a block ends (breakdown, restart)
    q = _start_vector(None, n, seed, device, dtype)
    restart_gen: torch.Generator | None = None
    a_norm = 0.0  # max ||A q_j||: a lower bound on ||A||, the scale of a breakdown
    tiny = float(torch.finfo(dtype).eps)
    for j in range(m):
        basis[j] = q
        w = a_matvec(q, j + 1)
        a_norm = max(a_norm, float(w.norm()))
        alpha = float(torch.dot(q, w))
        alphas.append(alpha)
        if j == m - 1:
            break
        w = w - alpha * q
        if j > 0:  # betas[-1] is 0 after a restart
            w = w - betas[-1] * basis[j - 1]
        w = _reorthogonalise(basis[: j + 1], w)
        beta = float(w.norm())
        if beta > tiny * a_norm and beta > 0.0:
            betas.append(beta)
            q = w / beta
            continue
        # Breakdown: span(basis) is invariant up to rounding, so K_k(A, b) = K_{j+1}(A, b) lies in it.
        # Restart with a random vector orthogonal to it (two Gram-Schmidt passes) and no coupling.
        if restart_gen is None:
            restart_gen = torch.Generator().manual_seed(seed + _RESTART_SEED_OFFSET)
        r = torch.randn(n, generator=restart_gen, dtype=torch.float64).to(device=device, dtype=dtype)
        r = _orthogonalise(basis[: j + 1], r / r.norm())
        betas.append(0.0)
        q = r / r.norm()
    xi = float(scipy.linalg.eigvalsh_tridiagonal(np.array(alphas), np.array(betas))[-1])
    xi = max(xi, 0.0)  # A = H^2 is PSD; a negative top Ritz value is rounding around A = 0
    value = math.sqrt(xi / (1.0 - eps)) if eps < 1.0 else None
    return RandomizedBound(
        value=value,
        failure_probability=delta,
        eps=eps,
        steps=k,
        n_products=2 * m,
        ritz=math.sqrt(xi),
    )


def certificate_from_lanczos(res: LanczosResult, n: int, *, failure_probability: float = 1e-3) -> RandomizedBound:
    """The Kuczynski-Wozniakowski bound on max |lambda(H)| from a Lanczos run on H itself (module docstring).

    ``res``: :func:`~checks.linalg.lanczos_extremes` on the n x n symmetric H from its own random
    start (``res.random_start``; a ValueError otherwise), after m = ``res.iterations`` products;
    the bound is for k = floor((m + 1) / 2) steps on H^2 and costs no product (``n_products`` 0).
    """
    n = _check_n(n)
    delta = _check_delta(failure_probability)
    if not res.random_start:
        raise ValueError("a randomized certificate needs the Lanczos run's own random start; this run was "
                         "warm-started (start=), which voids the bound")
    m = res.iterations
    if m < 1 or len(res.alphas) != m or len(res.betas) != m:
        raise ValueError(f"the Lanczos result holds no tridiagonal of its {m} steps (a result of another version?)")
    k = (m + 1) // 2
    eps = kw_epsilon(n, k, delta)
    t = np.zeros((m + 1, m))
    idx = np.arange(m)
    t[idx, idx] = res.alphas
    t[idx[1:], idx[:-1]] = res.betas[:-1]
    t[idx[:-1], idx[1:]] = res.betas[:-1]
    t[m, m - 1] = res.betas[-1]
    xi = float(np.linalg.svd(t, compute_uv=False)[0]) ** 2
    value = math.sqrt(xi / (1.0 - eps)) if eps < 1.0 else None
    return RandomizedBound(value=value, failure_probability=delta, eps=eps, steps=k, n_products=0,
                           ritz=math.sqrt(xi))
