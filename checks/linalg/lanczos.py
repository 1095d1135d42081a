"""Both extreme eigenvalues of a symmetric operator by Lanczos (T4's lambda_min and lambda_max).

:func:`lanczos_extremes` takes a dense symmetric matrix (torch or numpy), any
:class:`MatVec` (an operator with ``dim`` and ``matvec``, such as
:class:`~checks.linalg.hvp.HessianOperator`), a scipy LinearOperator, or a
plain callable with ``dim``, and returns a :class:`LanczosResult`;
non-convergence is recorded (``converged=False``), never raised.
:func:`_orthogonalise` (full reorthogonalisation, done twice) is shared with
the Jacobian Lanczos of :mod:`checks.linalg.jacobian` (whose vmapped loop cannot branch on
values), as is :data:`DEFAULT_TOL`; :func:`lanczos_extremes` itself runs the three-term
recurrence and one reorthogonalisation pass, a second only where the DGKS test asks for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

__all__ = ["DEFAULT_TOL", "DEFAULT_LANCZOS_MAX_ITER", "MatVec", "LanczosResult", "lanczos_extremes"]

# Relative Ritz residual at which the iterations count as converged by default:
# the largest estimate / bound ratios THEORY.md reports are 0.87 (T3) and 0.23
# (T4), so a 1e-3 relative error can only change a verdict within 0.1% of a bound.
DEFAULT_TOL = 1e-3
# Lanczos steps at most (each one product); its basis holds this many vectors of
# the parameter dimension, so the memory is DEFAULT_LANCZOS_MAX_ITER * P * 8 bytes
# in float64. On a 2312-256-10 SNN (T = 20, batch 128) the stopping rule needed 38
# steps at tol 1e-3 and 51 at 1e-4.
DEFAULT_LANCZOS_MAX_ITER = 150
# The Lanczos basis starts with room for this many vectors and doubles when full.
_BASIS_START = 32

_NONFINITE_PRODUCT = (
    "the operator returned NaN or infinite values at Lanczos step {step}; the loss or the model "
    "diverged at these parameters (check the probe loss is finite before estimating curvature)"
)
_NOT_SQUARE = "expected a square matrix, got shape {shape}"
_NEED_DIM = "pass dim= with a plain callable matvec (it cannot be inferred); got dim={dim!r}"
_DIM_MISMATCH = "dim={dim} contradicts the operator's size {size}"
_BAD_START = "start must have shape (dim,) or (k, dim) with dim = {n}, got {shape}; pass the previous result's vectors"
_ZERO_START = "start is zero or not finite; pass the previous result's vectors, or start=None for a random start"


@runtime_checkable
class MatVec(Protocol):
    """Anything with a size and a torch matrix-vector product: what the estimators accept."""

    @property
    def dim(self) -> int: ...

    def matvec(self, v: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class LanczosResult:
    """Both extreme eigenvalues of a symmetric operator, as found by :func:`lanczos_extremes`.

    ``lambda_min`` and ``lambda_max`` are the extreme Ritz values (always inside
    the true spectrum's range: lambda_min >= true min, lambda_max <= true max);
    ``residual_min`` and ``residual_max`` bound the distance from each to an
    eigenvalue; ``converged`` says both residuals reached the tolerance;
    ``n_products`` counts matrix-vector products (one per Lanczos step, so it
    equals ``iterations``). ``vectors`` (only with ``return_vectors=True``): the two
    Ritz vectors (rows: for lambda_min, for lambda_max; unit norm, in the basis dtype),
    the start of a later run on a nearby operator (``start=``). ``alphas`` and ``betas``: the
    tridiagonal's diagonal and off-diagonal, with the last step's residual norm beta_j
    appended (so ``len(betas) == iterations``): Q^T A Q = T and ||A Q y||^2 = ||T~ y||^2 for the
    (j + 1) x j matrix T~ of T above beta_j e_j^T, which is what
    :func:`~checks.linalg.certificate.certificate_from_lanczos` reads. ``random_start``: the start
    was drawn from ``seed`` (not passed as ``start=``), as a randomized certificate needs.
    """

    lambda_min: float
    lambda_max: float
    converged: bool
    n_products: int
    iterations: int
    residual_min: float
    residual_max: float
    vectors: Tensor | None = None
    alphas: tuple[float, ...] = ()
    betas: tuple[float, ...] = ()
    random_start: bool = False


def _orthogonalise(basis: Tensor, w: Tensor) -> Tensor:
    """w minus its projection on the rows of ``basis`` (orthonormal), done twice.

    Twice is enough (Kahan-Parlett): one classical Gram-Schmidt pass loses
    orthogonality in proportion to the condition number; a second restores it
    to working precision, so no spurious copies of converged Ritz values appear.
    """
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


# A second Gram-Schmidt pass is run when the first leaves less than this fraction of the norm
# (Daniel, Gragg, Kaufman and Stewart 1976, the test ARPACK uses): then rounding in the first
# pass may have left components along the basis of the size of what remains.
_DGKS = 1 / math.sqrt(2)


def _reorthogonalise(basis: Tensor, w: Tensor) -> Tensor:
    """w minus its projection on the rows of ``basis`` (orthonormal): once, twice where needed (DGKS).

    After the three-term recurrence w is already orthogonal to the basis up to rounding, so
    one pass usually suffices; the test repeats it where the pass cancelled much of w. Each
    pass reads the basis twice: on a large model this, not the product, bounds the step.
    """
    before = float(w.norm())
    w = w - basis.T @ (basis @ w)
    if float(w.norm()) < _DGKS * before:
        w = w - basis.T @ (basis @ w)
    return w


def _as_matvec(
    a: Tensor | np.ndarray | MatVec | LinearOperator | Callable[[Tensor], Tensor], dim: int | None
) -> tuple[Callable[[Tensor], Tensor], int, torch.device]:
    """A torch matvec, its size and its device, from a matrix, an operator or a callable."""
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(a)
    if isinstance(a, Tensor):
        if a.dim() != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(_NOT_SQUARE.format(shape=tuple(a.shape)))
        size, matrix = a.shape[0], a.detach()
        fn: Callable[[Tensor], Tensor] = lambda v: matrix @ v.to(matrix.dtype)  # noqa: E731
        device = matrix.device
    elif isinstance(a, LinearOperator):
        if a.shape[0] != a.shape[1]:
            raise ValueError(_NOT_SQUARE.format(shape=a.shape))
        size, lin = a.shape[0], a

        def fn(v: Tensor) -> Tensor:
            return torch.from_numpy(np.asarray(lin.matvec(v.detach().cpu().numpy()), dtype=np.float64).reshape(-1))

        device = torch.device("cpu")
    elif isinstance(a, MatVec):
        size, fn, device = a.dim, a.matvec, getattr(a, "device", torch.device("cpu"))
    elif callable(a):
        if dim is None:
            raise ValueError(_NEED_DIM.format(dim=dim))
        size, fn, device = dim, a, torch.device("cpu")
    else:
        raise TypeError(
            f"expected a square matrix, an operator with .matvec and .dim, or a callable; got {type(a).__name__}"
        )
    if dim is not None and dim != size:
        raise ValueError(_DIM_MISMATCH.format(dim=dim, size=size))
    return fn, int(size), torch.device(device)


def lanczos_extremes(
    a: Tensor | np.ndarray | MatVec | LinearOperator | Callable[[Tensor], Tensor],
    dim: int | None = None,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    start: Tensor | None = None,
    return_vectors: bool = False,
    min_iter: int = 1,
) -> LanczosResult:
    """lambda_min and lambda_max of a symmetric operator by Lanczos with full reorthogonalisation (T4).

    ``a`` is a dense symmetric matrix (torch or numpy), an operator with
    ``matvec`` and ``dim`` (such as :class:`HessianOperator`), a scipy
    LinearOperator, or a callable torch matvec together with ``dim``. Each step
    is one product; the Krylov basis is kept in ``dtype`` (float64 by default,
    so P * 8 bytes per step) and every new vector is reorthogonalised against all
    previous ones after the three-term recurrence (once, twice where the DGKS test
    asks: "twice is enough"), so no spurious copies of converged Ritz values appear.

    Stopping rule: after step j the extreme Ritz pairs (theta, y) of the
    tridiagonal T_j have residuals ||A y - theta y|| = beta_j |e_j^T s|, and each
    theta is within its residual of an eigenvalue of A. The run stops when both
    residuals are <= tol * max(|theta_min|, |theta_max|), i.e. relative to the
    spectral radius, the scale on which T4 compares abs(lambda) with L (a
    relative rule on each end alone would never stop for a lambda_min near 0).
    A Krylov space that becomes invariant (beta_j = 0, at the latest at
    j = dim) gives exact Ritz values and stops too. Without convergence after
    ``max_iter`` steps (default min(dim, :data:`DEFAULT_LANCZOS_MAX_ITER`)) the
    last Ritz values are returned with ``converged=False``. ``min_iter``: the run
    goes on to at least this many steps (at most ``max_iter``) even once converged
    (a randomized certificate read off the same run needs 2k - 1 of them), unless
    the space becomes invariant. A NaN or infinite
    product raises FloatingPointError (a diverged model is not non-convergence).

    Why this and not scipy's eigsh(which='BE'): ARPACK restarts its Lanczos
    basis every ncv (20 by default for two eigenvalues) steps and discards
    Krylov information. On the Hessian of a 2312-256-10 SNN (T = 20, batch 128,
    float32, P = 594698) eigsh needed 55 products at tol 1e-3 and 73 at 1e-4,
    this function 38 and 51, to the same accuracy (the top eigenvalue alone was
    within 1e-3 after 15 steps; lambda_min converges last). Here all the heavy
    work (products, reorthogonalisation) stays in torch on the operator's
    device, so scipy's and torch's thread pools never run side by side; only
    the small tridiagonal eigenproblem is scipy.
    """
    fn, n, device = _as_matvec(a, dim)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    steps = min(n, DEFAULT_LANCZOS_MAX_ITER) if max_iter is None else min(int(max_iter), n)
    if steps < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    q = _start_vector(start, n, seed, device, dtype)
    # The basis grows by doubling, so a run that converges early never holds max_iter vectors.
    basis = torch.empty((min(steps, _BASIS_START), n), dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    theta_min = theta_max = 0.0
    res_min = res_max = math.inf
    converged = False
    j = 0
    for j in range(1, steps + 1):
        if j > basis.shape[0]:
            basis = torch.cat([basis, torch.empty((min(steps, 2 * basis.shape[0]) - basis.shape[0], n),
                                                  dtype=dtype, device=device)])
        basis[j - 1] = q
        w = fn(q).to(device=device, dtype=dtype).reshape(-1)
        alpha = float(torch.dot(q, w))
        alphas.append(alpha)
        # The three-term recurrence, then full reorthogonalisation against q_1..q_j: one pass,
        # and a second where the first removed most of what was left (see _reorthogonalise).
        w = w - alpha * q
        if j > 1:
            w = w - betas[-1] * basis[j - 2]
        w = _reorthogonalise(basis[:j], w)
        beta = float(w.norm())
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            raise FloatingPointError(_NONFINITE_PRODUCT.format(step=j))
        theta, s = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas))
        theta_min, theta_max = float(theta[0]), float(theta[-1])
        res_min, res_max = beta * abs(float(s[-1, 0])), beta * abs(float(s[-1, -1]))
        scale = max(abs(theta_min), abs(theta_max))
        invariant = beta <= np.finfo(np.float64).eps * scale or beta == 0.0
        converged = bool(invariant or max(res_min, res_max) <= tol * scale)
        if invariant or (converged and j >= min_iter):
            break
        betas.append(beta)
        q = w / beta
    vectors = None
    if return_vectors:  # Ritz vectors y = Q s of both ends, from the last tridiagonal's eigenvectors
        ends = torch.from_numpy(np.ascontiguousarray(s[:, [0, -1]])).to(device=device, dtype=dtype)
        vectors = (basis[:j].T @ ends).T
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return LanczosResult(theta_min, theta_max, converged, j, j, res_min, res_max, vectors,
                         alphas=tuple(alphas), betas=tuple(betas[: j - 1]) + (beta,), random_start=start is None)


def _start_vector(start: Tensor | None, n: int, seed: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The unit start vector: the sum of ``start``'s rows (a vector or a (k, n) basis), or random from ``seed``."""
    if start is None:
        q = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    else:
        q = start.detach().to(dtype=torch.float64)
        q = q.reshape(-1, q.shape[-1]).sum(dim=0) if q.dim() == 2 else q.reshape(-1)
        if q.numel() != n:
            raise ValueError(_BAD_START.format(shape=tuple(start.shape), n=n))
        if not bool(torch.isfinite(q).all()) or float(q.norm()) == 0.0:
            raise ValueError(_ZERO_START)
    q = q.to(device=device, dtype=dtype)
    return q / q.norm()
