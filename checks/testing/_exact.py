"""Exact float64 references on a drawn :class:`Net`: what a bound of THEORY.md bounds, computed without estimation.

Dense autograd Jacobians and Hessians (the nets of the strategies have at most a few
hundred parameters), through ``torch.func.functional_call`` on one flat parameter vector
(``Net.flat_params``: spiking layers in order, then the readout), smooth mode:

- :func:`input_jacobian`: dz/dx of one sample over its whole sequence (T3, T7);
- :func:`logit_jacobian`: dz/dw of one sample over every parameter (the Gauss-Newton factor of T4);
- :func:`exact_hessian`, :func:`hessian_eigenvalues`: the Hessian of the mean cross-entropy (T4, T5);
- :func:`sam_errors`: the T5 quantities at a given rho. Every value of F in them is exact;
  the inner maximum over the rho-ball is found by projected gradient ascent, so that one
  quantity is exact at the point it found and a lower estimate of the max, which is the
  side from which an upper bound can be tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from checks.testing._nets import Net

# T5: projected gradient ascent for the inner max over the rho-ball.
PGA_STARTS = 3  # eps_hat and two random points on the sphere
PGA_STEPS = 15
T5_RANDOM_DIRECTIONS = 3  # random points on the sphere for the Taylor remainder


def input_jacobian(net: Net, b: int) -> torch.Tensor:
    """dz/dx of sample b (smooth mode) as a (classes, T n_0) matrix: x flattened over the whole sequence."""
    def z(xb: torch.Tensor) -> torch.Tensor:
        return net.model(xb.unsqueeze(0), mode="smooth")[0]

    J = torch.autograd.functional.jacobian(z, net.x[b], vectorize=True)
    return J.reshape(J.shape[0], -1)


def logit_jacobian(net: Net, b: int) -> torch.Tensor:
    """dz/dw of sample b (smooth mode) as a (classes, parameters) matrix, w = ``net.flat_params()`` (torch.func.jacrev)."""
    z = net.logits_fn(net.x[b:b + 1])
    return torch.func.jacrev(lambda w: z(w)[0])(net.flat_params())


def exact_hessian(net: Net, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                  eps: torch.Tensor | None = None) -> torch.Tensor:
    """The Hessian (symmetrised) of the mean cross-entropy on (x, y) (default: the probe batch) over all parameters,
    at w + eps (default: at w)."""
    w = net.flat_params() if eps is None else net.flat_params() + eps
    H = torch.autograd.functional.hessian(net.loss_fn(x, y), w, vectorize=True)
    return (H + H.T) / 2


def hessian_eigenvalues(net: Net, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                        eps: torch.Tensor | None = None) -> torch.Tensor:
    """Eigenvalues (ascending) of :func:`exact_hessian`; their largest absolute value is what T4's L bounds."""
    return torch.linalg.eigvalsh(exact_hessian(net, x, y, eps=eps))


def value_and_grad(f: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(f(w), grad f(w)) by reverse mode."""
    w = w.detach().requires_grad_(True)
    value = f(w)
    (grad,) = torch.autograd.grad(value, w)
    return value.item(), grad


def sphere_point(gen: torch.Generator, n: int, rho: float) -> torch.Tensor:
    """A uniform random point of the sphere ||eps|| = rho in R^n (float64)."""
    v = torch.randn(n, generator=gen, dtype=torch.float64)
    return rho * v / v.norm()


def inner_max(f: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor, rho: float, starts: list[torch.Tensor],
              steps: int = PGA_STEPS) -> float:
    """max_{||eps|| <= rho} f(w + eps), estimated from below by projected (normalised) gradient ascent."""
    best = -math.inf
    for eps in starts:
        step = rho / 2
        for _ in range(steps + 1):
            value, grad = value_and_grad(f, w + eps)
            best = max(best, value)
            gnorm = grad.norm()
            if gnorm == 0:  # a stationary point: nothing to ascend
                break
            eps = eps + step * grad / gnorm
            eps = eps * min(1.0, rho / eps.norm().item())
            step *= 0.85
    return best


@dataclass(frozen=True)
class SamErrors:
    """T5's quantities at w for one rho (F: the probe-batch loss, g = grad F(w), eps_hat = rho g / ||g||).

    taylor: |F(w + eps) - F(w) - <g, eps>| at random eps of the sphere ||eps|| = rho (each <= L rho^2/2);
    ascent_step: |F(w + eps_hat) - F(w) - rho ||g|||  (<= L rho^2/2);
    inner_max_gap: max_{||eps|| <= rho} F(w + eps) - F(w + eps_hat), the max from below (<= L rho^2);
    grad_shift: ||grad F(w + eps_hat) - g||  (<= L rho). With g = 0, eps_hat = 0 (grad_norm says so).
    """

    rho: float
    loss: float
    grad_norm: float
    taylor: tuple[float, ...]
    ascent_step: float
    inner_max_gap: float
    grad_shift: float


def sam_errors(net: Net, rho: float, *, seed: int, directions: int = T5_RANDOM_DIRECTIONS, starts: int = PGA_STARTS,
               steps: int = PGA_STEPS) -> SamErrors:
    """T5's quantities (:class:`SamErrors`) of the probe-batch loss at the net's weights, random points from ``seed``."""
    f, w = net.loss_fn(), net.flat_params()
    F0, g = value_and_grad(f, w)
    gnorm = g.norm().item()
    gen = torch.Generator().manual_seed(seed)
    taylor = []
    for _ in range(directions):
        eps = sphere_point(gen, w.numel(), rho)
        taylor.append(abs(f(w + eps).item() - F0 - (g @ eps).item()))
    eps_hat = rho * g / gnorm if gnorm > 0 else torch.zeros_like(w)
    F_hat, g_hat = value_and_grad(f, w + eps_hat)
    # eps_hat is a start, so the best value seen is >= F_hat: the gap is >= 0 by construction
    best = inner_max(f, w, rho, [eps_hat] + [sphere_point(gen, w.numel(), rho) for _ in range(starts - 1)], steps)
    return SamErrors(rho=rho, loss=F0, grad_norm=gnorm, taylor=tuple(taylor), ascent_step=abs(F_hat - F0 - rho * gnorm),
                     inner_max_gap=best - F_hat, grad_shift=(g_hat - g).norm().item())
