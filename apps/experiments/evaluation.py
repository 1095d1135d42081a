"""Everything a sweep measures on one finished run (written to the run's evaluation.json).

- E1, E2 and ECE on the test split (``sast.transfer.diagnostics``);
- calibration: temperature scaling fitted on the validation split, reliability bins;
- event corruptions at the chosen severities, in both modes (when a suite is given);
- the transfer-gap instruments of ``sast.gap``: per-layer attribution, margins of
  beta (u - theta) in both modes, and per sample the input-gradient norm against the
  hard/smooth logit discrepancy;
- theory alignment on a fixed probe of the test split (64 samples, as ``checks.all``):
  ``checks="all"`` runs every check (checks.json), ``"curvature"`` only T4 (both Hessian
  extremes), ``"none"`` neither; the curvature numbers (lambda_max, lambda_min) and a
  first-order sharpness at a fixed radius (F(w + r g/||g||) - F(w) with r =
  :data:`SHARPNESS_RADIUS`, and ||grad F||) on the same probe serve the mechanism
  correlations across runs.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from runfolder import CHECKS_FILE, EVALUATION_FILE, METRICS_FILE, read_jsonl, write_json
from sast.train import TrainConfig, load_data

CHECK_MODES = ("all", "curvature", "none")
PROBE = 64  # the checks' probe size (checks.all's default)
SHARPNESS_RADIUS = 0.05
"""A fixed radius for the first-order sharpness, the same for every run (rho differs between runs)."""


def corruption_suite(cfg: TrainConfig, severities: Sequence[int], progress: bool) -> dict[tuple[str, int], torch.Tensor]:
    """Corrupted test frames for every corruption and severity (built once per data setting)."""
    from sast.data import event_dataset
    from sast.data.corruptions import CORRUPTIONS, corrupted_frames

    events = event_dataset(cfg.data, "test", cfg.root, limit=cfg.limit, progress=progress)
    return {(name, s): corrupted_frames(cfg.data, "test", cfg.T, name, s, events=events, clip=cfg.clip)
            for name in CORRUPTIONS for s in severities}


def first_order_sharpness(model, probe: tuple[torch.Tensor, torch.Tensor], radius: float = SHARPNESS_RADIUS
                          ) -> dict[str, float]:
    """||grad F(w)|| and F(w + r g/||g||) - F(w) of the smooth-mode probe loss (SAM's ascent step at radius r)."""
    from torch.func import functional_call

    x, y = probe
    params = {k: v.detach() for k, v in model.named_parameters()}
    loss = F.cross_entropy(model(x, mode="smooth"), y)
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    norm = torch.sqrt(sum(g.double().square().sum() for g in grads)).item()
    scale = radius / max(norm, 1e-12)
    moved = {k: p + scale * g for (k, p), g in zip(params.items(), grads)}
    with torch.no_grad():
        loss_eps = F.cross_entropy(functional_call(model, moved, (x,), {"mode": "smooth"}), y)
    return {"grad_norm": norm, "sharpness": float(loss_eps - loss.detach()), "sharpness_radius": radius}


def _theory(run_dir: Path, checks: str, device: str) -> dict[str, Any]:
    import checks as chk

    out: dict[str, Any] = {}
    if checks == "none":
        return out
    loaded = chk.load_checkpoint(run_dir / "ckpt.pt", split="test", batch=PROBE, seed=0, device=device)
    names = list(chk.CHECKS) if checks == "all" else ["smoothness"]
    results = chk.run_all(loaded, names, progress=False)
    if checks == "all":
        write_json(run_dir / CHECKS_FILE, [r.to_json() for r in results])
    out["checks"] = {r.id: r.status for r in results}
    out["violated"] = [r.id for r in results if r.status == "violated"]
    t4 = next((r for r in results if r.id == "T4"), None)
    if t4 is not None:
        out["lambda_max"] = t4.details.get("lambda_max")
        out["lambda_min"] = t4.details.get("lambda_min")
    with torch.enable_grad():
        out.update(first_order_sharpness(loaded.model, loaded.probe))
    return out


def evaluate_run(run_dir: Path, cfg: TrainConfig, *, suite: dict | None, device: str, checks: str = "all"
                 ) -> dict[str, Any]:
    """Everything a sweep reports about one finished run; also written to its evaluation.json."""
    from sast import checkpoint, gap
    from sast.calibration import expected_calibration_error, fit_temperature, reliability_bins
    from sast.inference import predict_logits
    from sast.transfer import diagnostics

    model, _ = checkpoint.load(run_dir / "ckpt.pt")
    model = model.to(device).eval()
    data = load_data(cfg, progress=False)
    test = data.test
    res: dict[str, Any] = dict(diagnostics(model, test.frames, test.labels, device=device))
    for mode in ("smooth", "hard"):
        z_val = predict_logits(model, data.val.frames, mode, device=device)
        z_test = predict_logits(model, test.frames, mode, device=device)
        tau = fit_temperature(z_val, data.val.labels)
        res[f"temperature_{mode}"] = tau
        res[f"ece_{mode}_ts"] = expected_calibration_error(z_test / tau, test.labels)
        res[f"reliability_{mode}"] = reliability_bins(z_test, test.labels)
        res[f"reliability_{mode}_ts"] = reliability_bins(z_test / tau, test.labels)
    if suite:
        corr: dict[str, dict[str, list[float]]] = {}
        for (name, _sev), frames in suite.items():
            for mode in ("smooth", "hard"):
                z = predict_logits(model, frames, mode, device=device)
                corr.setdefault(mode, {}).setdefault(name, []).append(
                    (z.argmax(1) == test.labels).double().mean().item())
        res["corruption_acc"] = corr
        for mode in ("smooth", "hard"):
            accs = [a for per in corr.get(mode, {}).values() for a in per]
            res[f"corruption_mean_{mode}"] = sum(accs) / len(accs) if accs else None
    res.update(gap.attribution_and_margins(model, test.frames, test.labels, device=device))
    band = [v for v in res["margins"]["smooth"]["soft_band_fraction"] if v is not None]
    res["soft_band_mean"] = statistics.fmean(band) if band else None
    mech = gap.mechanism_samples(model, test.frames, test.labels, device=device)
    res["mechanism"] = mech
    res["input_grad_norm_mean"] = mech["input_grad_norm_mean"]
    res["mechanism_spearman"] = mech["spearman"]
    evals = [r for r in read_jsonl(run_dir / METRICS_FILE) if r.get("kind") == "eval"]
    res["seconds_per_epoch"] = statistics.mean(r["seconds"] for r in evals) if evals else None
    res["grad_evals_per_epoch"] = evals[-1]["grad_evals"] / len(evals) if evals else None
    res["margins_over_epochs"] = [{"epoch": r.get("epoch"), "soft_band_fraction": r.get("soft_band_fraction")}
                                  for r in read_jsonl(run_dir / METRICS_FILE) if r.get("kind") == "margins"]
    res.update(_theory(run_dir, checks, device))
    write_json(run_dir / EVALUATION_FILE, res)
    return res
