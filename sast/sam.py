"""Sharpness-aware minimisation as SAST uses it (THEORY.md T6).

One SAST step, with a perturbation minibatch B_k and an update minibatch B'_k:

    g_k     = grad l(w_k; B_k)
    eps_k   = rho g_k / ||g_k||              (eps_k = 0 when g_k = 0)
    w_{k+1} = base_step(w_k, grad l(w_k + eps_k; B'_k))

B'_k is an independent draw by default (the setting T6 analyses); ``same`` batch
(B'_k = B_k) is the original SAM of Foret et al. (2021). The base step is plain
SGD by default (T6 applies only to it); momentum SGD and Adam are options. The
parameters are restored bit for bit after the perturbed pass (saved copies, not
w + eps - eps). Unlike optax's SAM, the normalisation guards against a zero
gradient, which happens with all-zero surrogate gradients.

References: P. Foret et al., "Sharpness-Aware Minimization for Efficiently
Improving Generalization", ICLR 2021; optax.contrib.sam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9  # the usual heavy-ball coefficient for the "momentum" option

# Below this gradient norm the perturbation is set to zero rather than divided by ~0.
GRAD_NORM_FLOOR = 1e-12

LossFn = Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """The base step: ``sgd`` (plain, T6's setting), ``momentum`` (SGD, 0.9) or ``adam``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")


@dataclass(frozen=True)
class StepStats:
    """What one training step measured (floats, for logging)."""

    loss: float  # l(w_k; B'_k) for SGD, l(w_k; B_k) for SAST (the unperturbed loss)
    grad_norm: float  # ||g_k||, the unperturbed minibatch gradient norm
    perturbed_loss: float | None = None  # l(w_k + eps_k; B'_k) (SAST only)
    update_grad_norm: float | None = None  # ||grad l(w_k + eps_k; B'_k)|| (SAST only)
    grad_evals: int = 1  # gradient evaluations this step cost


def _grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((g.double() ** 2).sum() for g in grads))


def sgd_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor]
) -> StepStats:
    """One plain step of the base optimiser on ``batch`` (SF and HFSB training)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model, batch)
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    return StepStats(loss=float(loss.detach()), grad_norm=float(_grad_norm(grads)))


def sam_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    perturb_batch: tuple[torch.Tensor, torch.Tensor],
    update_batch: tuple[torch.Tensor, torch.Tensor],
    rho: float,
) -> StepStats:
    """One SAST step (THEORY.md T6): perturb along the B_k gradient, update with B'_k's.

    Pass the same tuple twice for same-batch SAM. With rho = 0 this is the base step on
    B'_k at the cost of two gradient evaluations.
    """
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model, perturb_batch)
    grads = torch.autograd.grad(loss, params)
    norm = _grad_norm(grads)
    scale = rho / torch.clamp(norm, min=GRAD_NORM_FLOOR)  # eps = 0 exactly when g = 0
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g * scale.to(g.dtype))
    perturbed = loss_fn(model, update_batch)
    update_grads = torch.autograd.grad(perturbed, params)
    with torch.no_grad():
        for p, w in zip(params, saved):
            p.copy_(w)
    for p, g in zip(params, update_grads):
        p.grad = g
    optimizer.step()
    return StepStats(
        loss=float(loss.detach()),
        grad_norm=float(norm),
        perturbed_loss=float(perturbed.detach()),
        update_grad_norm=float(_grad_norm(update_grads)),
        grad_evals=2,
    )
