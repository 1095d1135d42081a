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

Under torchrun, :func:`ddp_sgd_step` and :func:`ddp_sam_step` take the same steps on a
DistributedDataParallel model, each rank holding its shard of the global minibatches.

References: P. Foret et al., "Sharpness-Aware Minimization for Efficiently
Improving Generalization", ICLR 2021; optax.contrib.sam.
"""

from __future__ import annotations

import contextlib
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


def _ascend(params: list[torch.Tensor], grads: list[torch.Tensor] | tuple[torch.Tensor, ...], rho: float):
    """w <- w + eps, eps = rho g / ||g|| (eps = 0 exactly when g = 0); returns the saved w and ||g||."""
    norm = _grad_norm(list(grads))
    scale = rho / torch.clamp(norm, min=GRAD_NORM_FLOOR)
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g * scale.to(g.dtype))
    return saved, norm


def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    """Put back the saved weights bit for bit (w + eps - eps would not be)."""
    with torch.no_grad():
        for p, w in zip(params, saved):
            p.copy_(w)


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
    saved, norm = _ascend(params, torch.autograd.grad(loss, params), rho)
    perturbed = loss_fn(model, update_batch)
    update_grads = torch.autograd.grad(perturbed, params)
    _restore(params, saved)
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


# --------------------------------------------------------------------------- data-parallel steps

SAM_PERTURBATIONS = ("global", "local")
"""Where a data-parallel SAST step takes its perturbation from (see :func:`ddp_sam_step`)."""


def _ddp_params(model: nn.Module) -> list[torch.Tensor]:
    inner = getattr(model, "module", model)  # DistributedDataParallel keeps the model as .module
    return [p for p in inner.parameters() if p.requires_grad]


def _backward_grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``loss.backward()`` into empty ``.grad``s (so DDP averages them over the ranks); the gradients."""
    for p in params:
        p.grad = None  # no accumulation into the previous pass's gradient
    loss.backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad for p in params]


def _mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """The average of ``values`` over the ranks (float64): every rank gets the same numbers."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def ddp_sgd_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor]
) -> StepStats:
    """:func:`sgd_step` on a DistributedDataParallel ``model`` and this rank's shard of the global batch.

    The gradient comes from ``backward()``, which DDP averages over the ranks: with equal
    shards that is the gradient of the mean loss over the global batch. The reported loss
    is averaged over the ranks too (the global batch's mean loss), so every rank sees the
    same statistics and takes the same decisions (the divergence stop).
    """
    params = _ddp_params(model)
    loss = loss_fn(model, batch)
    grads = _backward_grads(loss, params)
    norm = _grad_norm(grads)
    optimizer.step()
    mean_loss, = _mean_over_ranks([float(loss.detach())], params[0].device)
    return StepStats(loss=mean_loss, grad_norm=float(norm))


def ddp_sam_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    perturb_batch: tuple[torch.Tensor, torch.Tensor],
    update_batch: tuple[torch.Tensor, torch.Tensor],
    rho: float,
    *,
    perturbation: str = "global",
) -> StepStats:
    """:func:`sam_step` on a DistributedDataParallel ``model``, each rank holding its shard of B_k and B'_k.

    Both gradients come from ``backward()`` on the DDP model (``torch.autograd.grad``
    would bypass DDP's reducer and nothing would be averaged):

    - ``global`` (the default): g_k is the all-reduced gradient of B_k, so eps_k, and the
      whole step, equal the single-process step on the global batches up to float
      rounding;
    - ``local``: g_k is this rank's own shard gradient (the pass runs under
      ``model.no_sync()``), so each replica ascends to its own w_k + eps_k^r, the
      m-sharpness of Foret et al. (2021, Sec. 4.1) with m = b / world_size; with one
      process it is ``global``.

    The update gradient grad l(w_k + eps_k; B'_k) is all-reduced in both modes, so the
    ranks take the same step, and the parameters are restored bit for bit from saved
    copies before it. Statistics are averaged over the ranks (for ``local`` the reported
    grad_norm is the mean of the replicas' norms).
    """
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    if perturbation not in SAM_PERTURBATIONS:
        raise ValueError(f"unknown SAM perturbation {perturbation!r}: expected one of {', '.join(SAM_PERTURBATIONS)}")
    params = _ddp_params(model)
    sync = getattr(model, "no_sync", None) if perturbation == "local" else None
    with sync() if sync is not None else contextlib.nullcontext():  # forward and backward both unsynced
        loss = loss_fn(model, perturb_batch)
        grads = _backward_grads(loss, params)
    saved, norm = _ascend(params, grads, rho)
    perturbed = loss_fn(model, update_batch)
    update_grads = _backward_grads(perturbed, params)  # synced: the all-reduced update gradient
    _restore(params, saved)
    optimizer.step()
    stats = _mean_over_ranks([float(loss.detach()), float(norm), float(perturbed.detach()),
                              float(_grad_norm(update_grads))], params[0].device)
    return StepStats(loss=stats[0], grad_norm=stats[1], perturbed_loss=stats[2], update_grad_norm=stats[3],
                     grad_evals=2)
