"""Hard-spike transfer (THEORY.md E1), deployment (E2) and calibration diagnostics.

E1: accuracy in smooth and hard mode, the transfer gap (smooth - hard), hard/smooth
prediction agreement, the logit discrepancy ||z_hard - z_smooth||, and per layer the
fraction of membrane values in the soft band |u - theta| < 4/beta.

E2: hard-spike accuracy after INT8 weight quantisation (per-tensor symmetric, biases
kept in floating point), and synaptic operations per sample (SynOps): each spike times
its fan-out (the number of synapses it drives in the next layer or the readout),
summed over layers and time. Input events count as the spikes of layer 0; in smooth
mode a "spike" is the real value s in (0, 1), so SynOps there is the expected count.

ECE: expected calibration error (15 equal-width bins, ``sast.calibration``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from sast import geometry
from sast.calibration import expected_calibration_error
from sast.inference import EVAL_BATCH
from sast.model import SNN

SOFT_BAND_WIDTH = 4.0  # in units of 1/beta: sig_beta(4) ~ 0.982, the band where sigmoid and Heaviside differ
INT8_LEVELS = 127  # symmetric int8: integers in [-127, 127]


def quantize_int8(model: SNN) -> SNN:
    """A copy of ``model`` whose weight tensors are rounded to per-tensor symmetric INT8.

    w_q = scale * clamp(round(w / scale), -127, 127) with scale = max|w| / 127; biases
    stay in floating point (they are added once per neuron and step, not per synapse).
    """
    q = copy.deepcopy(model)
    with torch.no_grad():
        for module in q.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                w = module.weight
                scale = w.abs().max() / INT8_LEVELS
                if scale > 0:
                    w.copy_(torch.clamp(torch.round(w / scale), -INT8_LEVELS, INT8_LEVELS) * scale)
    return q


def fanouts(model: SNN) -> list[torch.Tensor]:
    """Per layer l = 0..D (0: the input), the fan-out of each element, shaped like that layer's output
    (:func:`sast.geometry.fanouts`)."""
    return geometry.fanouts(model.plan, model.config.input_shape, model.config.num_classes)


@torch.no_grad()
def _forward_all(model: SNN, frames: torch.Tensor, mode: str, device, fans: list[torch.Tensor] | None):
    """Logits, soft-band fractions per layer and SynOps per sample, batched over ``frames``."""
    cfg = model.config
    band = SOFT_BAND_WIDTH / cfg.beta
    logits, n_band, n_total, synops = [], None, None, 0.0
    fans = [f.to(device) for f in fans] if fans is not None else None
    for i in range(0, len(frames), EVAL_BATCH):
        x = frames[i : i + EVAL_BATCH].to(device, torch.float32)
        z, trace = model(x, mode=mode, return_trace=True)
        logits.append(z.float().cpu())
        counts = [((tr.u - model.neuron_parameters(l)[1]).abs() < band).sum().item() for l, tr in enumerate(trace)]
        totals = [tr.u.numel() for tr in trace]
        n_band = counts if n_band is None else [a + b for a, b in zip(n_band, counts)]
        n_total = totals if n_total is None else [a + b for a, b in zip(n_total, totals)]
        if fans is not None:
            spikes = [x] + [tr.s for tr in trace]
            synops += sum(float((s * f).sum()) for s, f in zip(spikes, fans))
    soft = [a / b for a, b in zip(n_band or [], n_total or [])]
    return torch.cat(logits), soft, synops / max(1, len(frames))


def diagnostics(model: SNN, frames: torch.Tensor, labels: torch.Tensor, device="cpu") -> dict[str, Any]:
    """E1, E2 and ECE of ``model`` on ``frames``/``labels`` (see the module docstring)."""
    model = model.to(device).eval()
    fans = fanouts(model)
    z_s, soft_s, syn_s = _forward_all(model, frames, "smooth", device, fans)
    z_h, soft_h, syn_h = _forward_all(model, frames, "hard", device, fans)
    z_q, _, _ = _forward_all(quantize_int8(model), frames, "hard", device, None)
    pred_s, pred_h = z_s.argmax(1), z_h.argmax(1)
    acc_s = (pred_s == labels).double().mean().item()
    acc_h = (pred_h == labels).double().mean().item()
    disc = (z_h - z_s).norm(dim=1)
    return {
        "n": len(labels),
        "smooth_acc": acc_s,
        "hard_acc": acc_h,
        "gap": acc_s - acc_h,
        "agreement": (pred_s == pred_h).double().mean().item(),
        "logit_discrepancy": disc.mean().item(),
        "logit_discrepancy_max": disc.max().item(),
        "soft_band_fraction": soft_s,
        "soft_band_fraction_hard": soft_h,
        "int8_hard_acc": (z_q.argmax(1) == labels).double().mean().item(),
        "synops_smooth": syn_s,
        "synops_hard": syn_h,
        "ece_smooth": expected_calibration_error(z_s, labels),
        "ece_hard": expected_calibration_error(z_h, labels),
    }
