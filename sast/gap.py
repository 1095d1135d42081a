"""Instruments that explain the hard-spike transfer gap (E1, taken apart).

The transfer gap (smooth minus hard accuracy, THEORY.md E1) says how much is lost when a
model trained with sigmoid spikes runs with Heaviside spikes; these say where and why.

- **Per-layer attribution** (:func:`layer_attribution`): run the model with hard spikes
  in layer l only (every other spiking layer smooth), and with smooth spikes in layer l
  only (every other layer hard). For each l it reports accuracy, the mean logit
  discrepancy against the all-smooth model (hard in l only) or the all-hard model
  (smooth in l only), and the share of the gap each explains:
  ``drop_l = smooth_acc - acc(hard in l only)`` and
  ``recovered_l = acc(smooth in l only) - hard_acc``. A layer that carries the gap has
  a large drop and a large recovery. With one spiking layer both runs are the all-hard
  and all-smooth models.
- **Margins** (:func:`margins`): the distribution of the scaled margin
  m = beta (u - theta) of every membrane value, per layer, as a histogram on fixed bins
  (:data:`MARGIN_EDGES`), and the fraction inside the soft band |m| < 4 (where
  sig_beta(m / beta) lies in (0.018, 0.982), so sigmoid and Heaviside spikes differ by
  more than 1.8%; the same band as E1's soft-band fraction, |u - theta| < 4 / beta).
  :func:`attribution_and_margins` gives both, in both modes, for one model: what ``sast.evaluate``
  and the sweeps report.
- **Mechanism per sample** (:func:`input_gradient_norms`): ||grad_x l|| in smooth mode
  for every sample, to set against that sample's logit discrepancy ||z_hard - z_smooth||
  (THEORY.md T7: controlling parameter gradients bounds input gradients; the paper's
  argument is that small input gradients make the hard forward pass, a perturbation of
  the smooth one, change the logits less).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from sast.callbacks import Callback
from sast.model import SNN

SOFT_BAND = 4.0
"""|beta (u - theta)| below this is the soft band (sig(4) ~ 0.982)."""
MARGIN_EDGES: tuple[float, ...] = tuple(float(e) for e in range(-16, 17, 1))
"""Histogram bin edges of beta (u - theta): unit bins from -16 to 16, plus one bin below and one above."""
GAP_BATCH = 256  # samples per forward pass: amortises overhead, small enough for a laptop


def _batches(frames: torch.Tensor, labels: torch.Tensor | None, device):
    for i in range(0, len(frames), GAP_BATCH):
        x = frames[i: i + GAP_BATCH].to(device, torch.float32)
        yield x, (None if labels is None else labels[i: i + GAP_BATCH].to(device))


@torch.no_grad()
def logits(model: SNN, frames: torch.Tensor, mode: str | Sequence[str], device="cpu") -> torch.Tensor:
    """Logits of ``model`` for all ``frames`` with spike mode ``mode`` (one, or one per layer), on the CPU."""
    out = [model(x, mode=mode).float().cpu() for x, _ in _batches(frames, None, device)]
    return torch.cat(out) if out else torch.empty(0, model.config.num_classes)


def _accuracy(z: torch.Tensor, labels: torch.Tensor) -> float:
    return (z.argmax(1) == labels).double().mean().item() if len(labels) else float("nan")


def layer_attribution(model: SNN, frames: torch.Tensor, labels: torch.Tensor, device="cpu") -> dict[str, Any]:
    """Per spiking layer: accuracy and logit discrepancy with hard spikes in that layer only, and smooth only.

    Returns ``{"smooth_acc", "hard_acc", "gap", "layers": [{"layer", "hard_only_acc",
    "hard_only_discrepancy", "drop", "smooth_only_acc", "smooth_only_discrepancy",
    "recovered"}, ...]}`` (layers numbered 1..D as in THEORY.md; discrepancies are means
    over samples of ||z - z_ref||, z_ref the all-smooth logits for hard-only runs and the
    all-hard logits for smooth-only runs).
    """
    model = model.to(device).eval()
    labels = labels.cpu()
    D = len(model.spiking_specs)
    z_s, z_h = logits(model, frames, "smooth", device), logits(model, frames, "hard", device)
    acc_s, acc_h = _accuracy(z_s, labels), _accuracy(z_h, labels)
    layers = []
    for l in range(D):
        hard_only = ["smooth"] * D
        hard_only[l] = "hard"
        smooth_only = ["hard"] * D
        smooth_only[l] = "smooth"
        z_ho = z_h if D == 1 else logits(model, frames, hard_only, device)
        z_so = z_s if D == 1 else logits(model, frames, smooth_only, device)
        a_ho, a_so = _accuracy(z_ho, labels), _accuracy(z_so, labels)
        layers.append({
            "layer": l + 1,
            "hard_only_acc": a_ho,
            "hard_only_discrepancy": (z_ho - z_s).norm(dim=1).mean().item(),
            "drop": acc_s - a_ho,
            "smooth_only_acc": a_so,
            "smooth_only_discrepancy": (z_so - z_h).norm(dim=1).mean().item(),
            "recovered": a_so - acc_h,
        })
    return {"smooth_acc": acc_s, "hard_acc": acc_h, "gap": acc_s - acc_h, "layers": layers}


def margin_counts(trace: Sequence[Any], beta: float, theta: Any,
                  edges: Sequence[float] = MARGIN_EDGES) -> tuple[list[list[int]], list[int], list[int]]:
    """Histogram counts of beta (u - theta) per layer of a trace, soft-band counts and totals.

    ``theta``: one number, or one per layer (a number, or a tensor of the layer's neuron shape).

    Bins: (-inf, e_0), [e_0, e_1), ..., [e_{n-1}, inf): len(edges) + 1 counts per layer.
    """
    bounds = torch.tensor(list(edges), dtype=torch.float64)
    hists, band, total = [], [], []
    thetas = theta if isinstance(theta, (list, tuple)) else [theta] * len(trace)
    for tr, th in zip(trace, thetas):
        m = (beta * (tr.u.detach().double() - th)).flatten()
        idx = torch.bucketize(m, bounds.to(m.device), right=True)  # 0 below e_0, len(edges) at or above e_{n-1}
        hists.append(torch.bincount(idx, minlength=len(edges) + 1).cpu().tolist())
        band.append(int((m.abs() < SOFT_BAND).sum()))
        total.append(m.numel())
    return hists, band, total


@torch.no_grad()
def margins(model: SNN, frames: torch.Tensor, mode: str = "smooth", device="cpu") -> dict[str, Any]:
    """The distribution of beta (u - theta) per spiking layer over all frames, in ``mode``.

    Returns ``{"mode", "edges", "counts": [per layer, len(edges) + 1 ints], "soft_band_fraction":
    [per layer], "mean_abs_margin": [per layer], "n_values": [per layer]}``.
    """
    cfg = model.config
    model = model.to(device).eval()
    hists: list[list[int]] | None = None
    band: list[int] | None = None
    total: list[int] | None = None
    abs_sum: list[float] | None = None
    for x, _ in _batches(frames, None, device):
        _, trace = model(x, mode=mode, return_trace=True)
        thetas = [model.neuron_parameters(l)[1] for l in range(len(trace))]
        h, b, t = margin_counts(trace, cfg.beta, thetas)
        a = [float((cfg.beta * (tr.u.double() - th)).abs().sum()) for tr, th in zip(trace, thetas)]
        if hists is None:
            hists, band, total, abs_sum = h, b, t, a
        else:
            hists = [[p + q for p, q in zip(u, v)] for u, v in zip(hists, h)]
            band = [p + q for p, q in zip(band, b)]
            total = [p + q for p, q in zip(total, t)]
            abs_sum = [p + q for p, q in zip(abs_sum, a)]
    hists, band, total, abs_sum = hists or [], band or [], total or [], abs_sum or []
    return {"mode": mode, "edges": list(MARGIN_EDGES), "counts": hists,
            "soft_band_fraction": [b / t if t else None for b, t in zip(band, total)],
            "mean_abs_margin": [a / t if t else None for a, t in zip(abs_sum, total)], "n_values": total}


def attribution_and_margins(model: SNN, frames: torch.Tensor, labels: torch.Tensor, device="cpu") -> dict[str, Any]:
    """The transfer gap taken apart on one model: per-layer attribution and the margins in both modes.

    ``{"attribution": layer_attribution(...), "margins": {"smooth": margins(...), "hard": margins(...)}}``:
    what ``python -m sast.evaluate`` reports for any model (a checkpoint or a NIR file), and the sweeps'
    evaluation for every run (``apps.experiments.evaluation``), under the same keys.
    """
    return {"attribution": layer_attribution(model, frames, labels, device=device),
            "margins": {mode: margins(model, frames, mode, device=device) for mode in ("smooth", "hard")}}


def input_gradient_norms(model: SNN, frames: torch.Tensor, labels: torch.Tensor, device="cpu") -> list[float]:
    """||grad_x l(z(x), y)|| per sample in smooth mode (the per-sample cross-entropy, not the batch mean)."""
    model = model.to(device).eval()
    out: list[float] = []
    for x, y in _batches(frames, labels, device):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x, mode="smooth"), y, reduction="sum")  # sum: per-sample gradients stay unscaled
        (g,) = torch.autograd.grad(loss, x)
        out += g.flatten(1).norm(dim=1).tolist()
    return out


def logit_discrepancies(model: SNN, frames: torch.Tensor, device="cpu") -> list[float]:
    """||z_hard - z_smooth|| per sample."""
    model = model.to(device).eval()
    return (logits(model, frames, "hard", device) - logits(model, frames, "smooth", device)).norm(dim=1).tolist()


def mechanism_samples(model: SNN, frames: torch.Tensor, labels: torch.Tensor, device="cpu") -> dict[str, Any]:
    """Per sample: the smooth-mode input-gradient norm and the hard/smooth logit discrepancy, with their
    Spearman rank correlation over samples (None when either is constant)."""
    from scipy import stats

    g = input_gradient_norms(model, frames, labels, device)
    d = logit_discrepancies(model, frames, device)
    rho = None
    if len(g) > 2 and len(set(g)) > 1 and len(set(d)) > 1:
        rho = float(stats.spearmanr(g, d).statistic)
    mean_g = sum(g) / len(g) if g else None
    return {"input_grad_norm": g, "logit_discrepancy": d, "spearman": rho, "input_grad_norm_mean": mean_g}


class MarginLog(Callback):
    """Training callback: after every epoch, the margins of beta (u - theta) on the test split in smooth mode.

    Logs ``{"kind": "margins", "step", "epoch", "split": "test", "soft_band_fraction": [per layer],
    "mean_abs_margin": [per layer], "counts": [per layer], "edges"}`` to metrics.jsonl. It costs one
    smooth forward pass over the test split per epoch (the evaluation's own passes keep no trace).
    It reads the model in eval mode and changes nothing: training is bit-identical with or without it.
    """

    def __init__(self, split: str = "test") -> None:
        if split not in ("test", "val"):
            raise ValueError(f"MarginLog split must be 'test' or 'val', got {split!r}")
        self.split = split

    def on_epoch_end(self, run, record: dict[str, Any]) -> None:
        split = run.data.test if self.split == "test" else run.data.val
        training = run.model.training
        device = next(run.model.parameters()).device
        try:
            m = margins(run.model, split.frames, "smooth", device=device)
        finally:
            run.model.train(training)
        run.log.log({"kind": "margins", "step": run.step, "epoch": run.epoch + 1, "split": self.split,
                     "soft_band_fraction": m["soft_band_fraction"], "mean_abs_margin": m["mean_abs_margin"],
                     "counts": m["counts"], "edges": m["edges"]})
