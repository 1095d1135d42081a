"""Calibration: expected calibration error, reliability bins, temperature scaling.

ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)| over equal-width confidence bins;
temperature scaling divides the logits by one scalar tau > 0 fitted by minimising the
negative log-likelihood on a held-out split (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

ECE_BINS = 15
LOG_TAU_RANGE = (-5.0, 5.0)  # tau in [e^-5, e^5]: wide enough for any sane model, keeps the search bounded


def _bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int):
    if len(labels) == 0:
        raise ValueError("calibration of an empty set is undefined")
    probs = torch.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels.to(pred.device)).double()
    # bin b holds confidences in (b/n, (b+1)/n]; a confidence is >= 1/classes > 0
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    return conf, correct, idx


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """ECE over ``n_bins`` equal-width confidence bins."""
    conf, correct, idx = _bins(logits, labels, n_bins)
    ece = 0.0
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            ece += mask.double().mean().item() * abs(correct[mask].mean().item() - conf[mask].mean().item())
    return ece


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin: its range, count, mean confidence and accuracy (a reliability diagram's data)."""
    conf, correct, idx = _bins(logits, labels, n_bins)
    out = []
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            out.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": int(mask.sum()),
                        "confidence": conf[mask].mean().item(), "accuracy": correct[mask].mean().item()})
    return out


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """tau minimising the mean NLL of softmax(logits / tau) on (logits, labels)."""
    if len(labels) == 0:
        raise ValueError("temperature scaling needs a non-empty held-out split")
    z, y = logits.double(), labels.long()

    def nll(log_tau: float) -> float:
        return F.cross_entropy(z / math.exp(log_tau), y).item()

    res = minimize_scalar(nll, bounds=LOG_TAU_RANGE, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))
