"""Flat parameter vectors: the trainable parameters w of a model as one vector, and grad F(w).

The pieces every other module of :mod:`checks.linalg` builds on: which
parameters are differentiated (:func:`_trainable`: those with
``requires_grad``, detached and cast, so the caller's model is never
modified), how a dict of named tensors maps to one flat vector and back
(:class:`_Layout`, :func:`flatten`, :func:`flat_params`), the default loss
l(z, y) (mean cross-entropy) and the casting of a probe batch
(:func:`_prepare`). :func:`flat_grad` gives grad F as one vector (T5, T6, T7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["LossFn", "flatten", "flat_params", "flat_grad"]

LossFn = Callable[[Tensor, Tensor], Tensor]

# Shared by the Hessian (T4) and the input Jacobian (T3): both refuse non-smooth modes.
_SMOOTH_ONLY = (
    "{what} needs mode='smooth', got mode={mode!r}: hard spikes are piecewise constant and "
    "HFSB's backward is a surrogate, not a derivative, so {stmt} is a smooth-mode statement"
)


def _trainable(model: nn.Module, dtype: torch.dtype | None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The trainable parameters, detached and cast to dtype, and everything else.

    "Everything else" is frozen parameters and buffers: functional_call needs
    them, the Hessian does not differentiate through them. Tensors are detached
    (and copied where the dtype changes) and never written to, so the caller's
    model is untouched.
    """
    params: dict[str, Tensor] = {}
    const: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        target = params if p.requires_grad else const
        target[name] = p.detach().to(dtype or p.dtype)
    for name, b in model.named_buffers():
        const[name] = b.detach().to(dtype) if dtype is not None and b.is_floating_point() else b.detach()
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True); nothing to differentiate")
    return params, const


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _Layout:
    """How a dict of named tensors maps to one flat vector (in insertion order)."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        self.names = list(tensors)
        self.shapes = [tuple(t.shape) for t in tensors.values()]
        self.numels = [t.numel() for t in tensors.values()]
        self.dim = sum(self.numels)

    def unflatten(self, w: Tensor) -> dict[str, Tensor]:
        """Views of the flat vector w shaped like the parameters (pure: works under torch.func)."""
        return {n: c.view(s) for n, c, s in zip(self.names, w.split(self.numels), self.shapes)}


def flatten(tensors: Mapping[str, Tensor], *, batched: bool = True) -> Tensor:
    """Concatenate named tensors into one vector per sample, in the mapping's order.

    With ``batched=True`` every tensor has a leading batch dimension B and the
    result is (B, P); with ``batched=False`` the result is (P,). The order is the
    mapping's (``named_parameters`` order for the dicts made here), the same as
    :func:`flat_params`.
    """
    if not tensors:
        raise ValueError("nothing to flatten: the mapping is empty")
    if batched:
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors.values()], dim=1)
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def flat_params(model: nn.Module, *, dtype: torch.dtype | None = None) -> Tensor:
    """The trainable parameters w of the model as one detached vector (a copy), cast to dtype."""
    params, _ = _trainable(model, dtype)
    return flatten(params, batched=False)


def _default_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy, the loss l(z, y) of THEORY.md."""
    return F.cross_entropy(logits, y)


def _prepare(
    model: nn.Module, x: Tensor, y: Tensor | None, dtype: torch.dtype | None
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor | None, torch.dtype]:
    dtype = dtype or _model_dtype(model)
    params, const = _trainable(model, dtype)
    device = _model_device(model)
    x = x.detach().to(device=device, dtype=dtype)
    if y is not None:
        y = y.detach().to(device)
    return params, const, x, y, dtype


def flat_grad(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    mode: str = "smooth",
    loss_fn: LossFn | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """grad F(w) as one vector: the gradient of loss_fn(model(x, mode), y) over the trainable parameters.

    F is the probe-batch loss of T5 and T6 (mean cross-entropy by default). In
    ``hfsb`` mode this is the surrogate gradient that HFSB trains with. The
    order of entries is that of :func:`flat_params`.
    """
    params, const, x, y, _ = _prepare(model, x, y, dtype)
    loss_fn = loss_fn or _default_loss
    layout = _Layout(params)
    with torch.enable_grad():
        w = flatten(params, batched=False).requires_grad_(True)
        logits = functional_call(model, (layout.unflatten(w), const), (x,), {"mode": mode})
        (g,) = torch.autograd.grad(loss_fn(logits, y), w, allow_unused=True)
    return torch.zeros_like(w).detach() if g is None else g.detach()
