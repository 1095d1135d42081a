"""Batched inference: a model's logits over a whole split, and their accuracy and loss.

Shared by training (per-epoch evaluation), ``sast.evaluate`` and ``sast.transfer``; it
imports neither, so they can all import it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EVAL_BATCH = 256  # large enough to amortise overhead, small enough for a laptop's memory


@torch.no_grad()
def predict_logits(
    model: nn.Module, frames: torch.Tensor, mode: str, *, batch_size: int = EVAL_BATCH, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits of ``model`` in ``mode`` for all ``frames`` (N, T, ...), returned on the CPU."""
    outs = []
    for i in range(0, len(frames), batch_size):
        x = frames[i : i + batch_size].to(device, torch.float32)
        outs.append(model(x, mode=mode).float().cpu())
    if not outs:
        return torch.empty(0, getattr(model, "config").num_classes)
    return torch.cat(outs)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``logits`` against ``labels``."""
    labels = labels.to(logits.device)
    acc = (logits.argmax(dim=1) == labels).double().mean().item()
    loss = F.cross_entropy(logits, labels).item()
    return acc, loss
