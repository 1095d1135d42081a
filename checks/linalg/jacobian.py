"""Input-Jacobian spectral norms ||dz/dx||_2 by Lanczos on J^T J, matrix-free (T3).

:func:`jacobian_spectral_norm` estimates sigma_max(df/dx) for one function and
point; :func:`input_jacobian_norms` does so for every probe sample of a model
(batched by ``torch.func.vmap``), whose maximum estimates L_in from below.
Products J^T (J v) are reverse passes (the Jacobian is never formed). Only the
smooth mode is differentiable, so other modes are refused.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm import tqdm

from checks.linalg._flat import _SMOOTH_ONLY, _prepare
from checks.linalg.lanczos import DEFAULT_TOL, _orthogonalise

__all__ = [
    "DEFAULT_JACOBIAN_MAX_ITER",
    "DEFAULT_JACOBIAN_CHUNK",
    "SpectralNormResult",
    "jacobian_spectral_norm",
    "InputJacobianNorms",
    "input_jacobian_norms",
]

# Lanczos steps at most on J^T J (each one product): J^T J has rank <= k for k
# outputs, so classes + 2 steps suffice (see _jacobian_steps); the cap binds only
# for k >= 63 outputs.
DEFAULT_JACOBIAN_MAX_ITER = 64
# Lanczos steps on J^T J beyond the k + 1 that exact arithmetic needs (see _jacobian_steps).
_ROUNDING_STEPS = 1
# Samples per vmap call in input_jacobian_norms: bounds the memory of the batched
# graphs and Krylov bases (32 samples of a 20 x 2312 input, 12 steps: ~71 MB in float32).
DEFAULT_JACOBIAN_CHUNK = 32


@dataclass(frozen=True)
class SpectralNormResult:
    """sigma_max(J) as found by :func:`jacobian_spectral_norm`.

    ``value`` = sqrt(theta) for the top Ritz value theta of J^T J: a lower bound
    on ||J||_2 (a Rayleigh quotient), exact once the Krylov space is exhausted.
    ``residual`` = ||J^T J y - theta y|| for its Ritz vector y; ``n_products``
    counts products with J^T J (each one J v and one J^T u, by reverse passes).
    """

    value: float
    converged: bool
    n_products: int
    iterations: int
    residual: float


def _jtj_lanczos(f: Callable[[Tensor], Tensor], x: Tensor, v0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """``steps`` Lanczos steps on J^T J, J = df/dx at x, from v0: returns (alphas, betas), each (steps,).

    Pure tensor code without branching on values, so ``torch.func.vmap`` can
    batch it over samples. The graphs are built once and reused by every step:
    u -> J^T u is a vjp, and v -> J v is the vjp of that linear map (its
    transpose), i.e. reverse-over-reverse. That replaces ``torch.func.jvp``,
    which on one sample of the SNN cost 9-30 ms a product against 2 ms here (forward-mode AD
    decomposes the LIF recurrence's scalar arithmetic into slow primitives).
    """
    out, jt = torch.func.vjp(f, x)  # jt(u) = (J^T u,)
    _, j = torch.func.vjp(lambda u: jt(u)[0], torch.zeros_like(out))  # j(v) = (J v,)
    q = v0.reshape(-1) / torch.linalg.vector_norm(v0)
    # Preallocated (zeros_like keeps vmap's batching), so no step copies the basis.
    basis = torch.zeros_like(q).unsqueeze(0).repeat(steps, 1)
    alphas, betas = [], []
    for i in range(steps):
        basis[i] = q
        w = jt(j(q.view_as(x))[0])[0].reshape(-1)
        alphas.append(torch.dot(q, w))
        w = _orthogonalise(basis[: i + 1], w)  # also removes the alpha q_i and beta q_{i-1} terms
        beta = torch.linalg.vector_norm(w)
        betas.append(beta)
        # beta = 0: the Krylov space is invariant and the Ritz values exact; continue with q = 0
        # (zero rows in T add a Ritz value 0, harmless for the top of a PSD operator).
        q = torch.where(beta > 0, w / torch.where(beta > 0, beta, torch.ones_like(beta)), torch.zeros_like(w))
    return torch.stack(alphas), torch.stack(betas)


def _top_ritz(alphas: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Top Ritz value theta of the Lanczos tridiagonal T and its residual |beta_m e_m^T s|.

    Batched over leading dimensions; computed in float64 (T is tiny).
    """
    alphas, betas = alphas.double(), betas.double()
    t = torch.diag_embed(alphas) + torch.diag_embed(betas[..., :-1], 1) + torch.diag_embed(betas[..., :-1], -1)
    theta, s = torch.linalg.eigh(t)
    return theta[..., -1], (betas[..., -1] * s[..., -1, -1]).abs()


def _jacobian_steps(k: int, n: int, max_iter: int) -> int:
    """Lanczos steps for J^T J with J of shape (k, n): rank <= k, so k + 1 steps exhaust the Krylov space.

    In floating point J^T J maps null-space vectors to rounding noise of size
    eps ||J||^2 rather than to 0, so the space is not exactly invariant after
    k + 1 steps; :data:`_ROUNDING_STEPS` more take the relative Ritz residual
    from up to 3e-3 to below 1e-8 in float32 (measured on a 2312-256-10 SNN).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    return min(k + 1 + _ROUNDING_STEPS, n, max_iter)


def jacobian_spectral_norm(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_JACOBIAN_MAX_ITER,
    seed: int = 0,
    v0: Tensor | None = None,
) -> SpectralNormResult:
    """sigma_max(J) = ||df/dx||_2 at x, f: R^{shape x} -> R^k, matrix-free (T3).

    Lanczos on J^T J with products J^T (J v) by reverse passes (the Jacobian is
    never formed). J^T J has rank <= k, so k + 1 steps exhaust the Krylov space
    and make the top Ritz value theta equal to sigma_max^2 up to rounding;
    min(k + 2, max_iter) steps are run (one more against rounding, see
    :func:`_jacobian_steps`). Lanczos rather than plain power iteration: its
    Krylov space contains the power iterate, so it is never worse per product,
    and on a 2312-256-10 SNN (T = 20) power iteration needed 40 products per
    sample on average, up to 78, to a relative Ritz residual of 1e-3, where
    this needs 12 and ends near 1e-8. ``converged``: the Ritz
    residual is <= tol * theta (theta is within it of an eigenvalue, so value
    is within about tol / 2 relative). The start is ``v0`` or random from ``seed``.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    x = x.detach()
    if v0 is None:
        v0 = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v0 = v0.to(device=x.device, dtype=x.dtype).reshape(x.shape)
    with torch.no_grad():  # torch.func builds its own graphs; nothing outside needs one
        steps = _jacobian_steps(f(x).numel(), x.numel(), max_iter)
        alphas, betas = _jtj_lanczos(f, x, v0, steps)
    theta, res = _top_ritz(alphas, betas)
    theta_f, res_f = max(float(theta), 0.0), float(res)
    return SpectralNormResult(math.sqrt(theta_f), res_f <= tol * theta_f, steps, steps, res_f)


@dataclass(frozen=True)
class InputJacobianNorms:
    """Per probe sample i, sigma_max(dz/dx_i) as found by :func:`input_jacobian_norms` (T3).

    ``values[i]`` is a lower bound on ||J_i||_2 (exact once the Krylov space is
    exhausted, see :func:`jacobian_spectral_norm`); ``converged[i]`` per sample;
    ``iterations`` the Lanczos steps run for every sample; ``n_products`` the
    total number of J^T J products (iterations times samples).
    """

    values: tuple[float, ...]
    converged: tuple[bool, ...]
    iterations: int
    n_products: int

    @property
    def max(self) -> float:
        """The largest per-sample norm: T3's empirical estimate of L_in (from below)."""
        return max(self.values)


def input_jacobian_norms(
    model: nn.Module,
    x: Tensor,
    *,
    mode: str = "smooth",
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_JACOBIAN_MAX_ITER,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    vectorize: bool = True,
    chunk_size: int | None = DEFAULT_JACOBIAN_CHUNK,
    progress: bool = True,
) -> InputJacobianNorms:
    """||dz/dx_i||_2 for each sample x_i of x (B, T, *input_shape), z the logits in R^classes (T3).

    x_i is a whole input sequence (T, *input_shape) under the Euclidean norm,
    which is ||.||_{2,2} of THEORY.md, so max_i of these estimates L_in from
    below. Each sample runs :func:`jacobian_spectral_norm`'s Lanczos (classes + 2
    steps by default: exact up to rounding) and is seen by the model as a batch
    of one, so nothing couples samples. The samples are batched by ``torch.func.vmap``,
    ``chunk_size`` at a time (the Krylov bases take chunk * steps * |x_i|
    numbers); with ``vectorize=False``, or if vmap fails for the model (a
    warning says why), a loop over samples runs with a progress bar on stderr.
    Both use the same start vectors (drawn for the whole batch from ``seed``).
    """
    if mode != "smooth":
        raise ValueError(_SMOOTH_ONLY.format(what="the input Jacobian", mode=mode, stmt="T3"))
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    params, const, x, _, _ = _prepare(model, x, None, dtype)
    B = x.shape[0]
    v0 = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x)

    def f(xi: Tensor) -> Tensor:
        return functional_call(model, (params, const), (xi.unsqueeze(0),), {"mode": mode}).squeeze(0)

    with torch.no_grad():
        k = f(x[0]).numel()
    steps = _jacobian_steps(k, x[0].numel(), max_iter)

    def run(xi: Tensor, vi: Tensor) -> tuple[Tensor, Tensor]:
        return _jtj_lanczos(f, xi, vi, steps)

    alphas = betas = None
    if vectorize:
        try:
            with torch.no_grad():
                alphas, betas = torch.func.vmap(run, chunk_size=chunk_size)(x, v0)
        except (RuntimeError, NotImplementedError) as err:
            warnings.warn(f"vmap failed for this model ({err}); using a loop over samples", stacklevel=2)
    if alphas is None or betas is None:
        rows = []
        for i in tqdm(range(B), desc="input Jacobian norms", file=sys.stderr, disable=not progress):
            with torch.no_grad():
                rows.append(run(x[i], v0[i]))
        alphas, betas = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
    theta, res = _top_ritz(alphas, betas)
    theta = theta.clamp_min(0)
    return InputJacobianNorms(
        values=tuple(float(t) for t in theta.sqrt()),
        converged=tuple(bool(c) for c in res <= tol * theta),
        iterations=steps,
        n_products=steps * B,
    )
