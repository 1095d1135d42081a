"""Batched inference: a model's logits over a whole split, and their accuracy and loss; the device to run on.

Shared by training (per-epoch evaluation), ``sast.evaluate`` and ``sast.transfer``; it
imports neither, so they can all import it. :func:`resolve_device` is the one check of
a ``--device`` setting, used by training (``TrainConfig.validate``), evaluation, the
checks, the sweeps and the demo.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

EVAL_BATCH = 256  # large enough to amortise overhead, small enough for a laptop's memory

DEVICE_FORMS = "cpu, cuda or cuda:N"
_DEVICE = re.compile(r"cpu|cuda(?::\d+)?")
_BAD_DEVICE = "device {got!r} is not a device this toolkit runs on: expected {forms}; use --device cpu or cuda"
_NO_CUDA = "device {got!r}: CUDA is not available on this machine; use cpu (--device cpu)"
_NO_SUCH_GPU = "device {got!r}: this machine has {n} GPU(s), cuda:0 to cuda:{last}; use one of them or cpu"
_UNUSABLE_DEVICE = "device {got!r} cannot be used on this machine ({why}); use cpu (--device cpu)"


def resolve_device(device: str | torch.device, *, try_allocation: bool = False) -> torch.device:
    """``device`` ("cpu", "cuda" or "cuda:N") as a torch device this machine has; ValueError (one line) otherwise.

    With ``try_allocation`` an empty tensor is made on it, which catches a GPU that is
    there but unusable (a build without its kernels); training leaves that out, since
    under torchrun it would open a CUDA context on one GPU for every process.
    """
    got = str(device)
    if not _DEVICE.fullmatch(got):
        raise ValueError(_BAD_DEVICE.format(got=got, forms=DEVICE_FORMS))
    dev = torch.device(got)
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise ValueError(_NO_CUDA.format(got=got))
    n = torch.cuda.device_count()
    if dev.index is not None and dev.index >= n:
        raise ValueError(_NO_SUCH_GPU.format(got=got, n=n, last=n - 1))
    if try_allocation:
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as e:
            raise ValueError(_UNUSABLE_DEVICE.format(got=got, why=str(e).strip().splitlines()[0][:200])) from None
    return dev


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
