"""Per-sample gradients grad_w l(z(w; x_i), y_i) for every probe sample i (T6's sigma^2, T7)."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call

from checks.linalg._flat import LossFn, _default_loss, _prepare

__all__ = ["per_sample_grads"]


def per_sample_grads(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    mode: str = "smooth",
    loss_fn: LossFn | None = None,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """grad_w l(z(w; x_i), y_i) for every sample i: name -> (B, *param_shape) (T6's sigma^2, T7).

    Computed by ``torch.func.vmap`` over ``torch.func.grad`` with
    ``functional_call``, each sample a batch of one (so ``loss_fn`` sees logits
    of shape (1, classes)). ``chunk_size`` bounds vmap's memory. In ``hfsb``
    mode (whose custom autograd.Function has no vmap rule) a loop over samples
    gives the same result. Use :func:`flatten` for a (B, P) tensor.
    """
    params, const, x, y_, _ = _prepare(model, x, y, dtype)
    y = cast(Tensor, y_)  # given, so _prepare returned it
    loss_fn = loss_fn or _default_loss

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (p, const), (xi.unsqueeze(0),), {"mode": mode})
        return loss_fn(logits, yi.unsqueeze(0))

    if mode != "hfsb":
        batched = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)
        return dict(batched(params, x, y))
    rows: list[dict[str, Tensor]] = []
    for i in range(x.shape[0]):
        with torch.enable_grad():
            p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
            grads = torch.autograd.grad(loss_one(p, x[i], y[i]), list(p.values()), allow_unused=True)
        rows.append({n: torch.zeros_like(p[n]) if g is None else g.detach() for n, g in zip(p, grads)})
    return {n: torch.stack([r[n] for r in rows]) for n in params}
