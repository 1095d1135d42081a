"""Evaluate a checkpoint in smooth and hard mode: transfer (E1), deployment (E2), calibration.

    python -m sast.evaluate --model runs/demo/sf/ckpt.pt

Prints a table and writes JSON (``evaluation.json`` beside the checkpoint, or --json).
Exit codes (:mod:`runfolder.exits`): 0 done, 2 bad input or an unusable file (one line on
stderr naming it), 70 an internal error.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch

from runfolder import EVALUATION_FILE, EXIT_CODES_EPILOG, check_writable, guard
from sast.data import DOWNLOAD_HELP, download as fetch
from sast.inference import EVAL_BATCH, accuracy_and_loss, predict_logits, resolve_device

__all__ = ["EVAL_BATCH", "accuracy_and_loss", "checkpoint_split", "format_table", "main", "predict_logits"]


def checkpoint_split(
    ckpt: dict[str, Any], split: str = "test", *, data: str | None = None, root: str | None = None,
    limit: int | None = None, cache_dir: str | None = None, progress: bool = True, download: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames and labels of ``split`` of the data set a checkpoint was trained on (or ``data``).

    ``split`` is one of :data:`sast.train.SPLITS`, partitioned as training partitioned it
    ("train" is the training split less the validation part). The checkpoint's training
    configuration, with ``data``, ``root``, ``limit`` and ``cache_dir`` overriding it where
    given, and the model's binning (T), so that the frames fit the model. ``download=True``
    first fetches the data set's split with tonic unless its files are under ``root``
    (:func:`sast.data.download`).
    """
    from sast.train import TrainConfig, load_split

    tc = ckpt.get("train_config")
    if not tc and not data:
        raise ValueError("the checkpoint does not say which data set it was trained on; pass --data NAME")
    given = {"data": data, "root": root, "limit": limit, "cache_dir": cache_dir}
    cfg = dataclasses.replace(TrainConfig.from_dict(tc or {}), T=ckpt["config"]["T"],
                              **{k: v for k, v in given.items() if v is not None})
    if download:  # "train" and "val" are parts of the data set's training split
        fetch(cfg.data, ["test" if split == "test" else "train"], cfg.root)
    part = load_split(cfg, split, progress=progress)
    shape, expected = tuple(part.frames.shape[2:]), tuple(ckpt["config"]["input_shape"])
    if shape != expected:
        raise ValueError(f"data set {cfg.data!r} has input shape {shape}, the model expects {expected}")
    return part.frames, part.labels


def format_table(res: dict[str, Any]) -> str:
    rows = [
        ("accuracy", f"{res['smooth_acc']:.4f}", f"{res['hard_acc']:.4f}"),
        ("transfer gap (smooth - hard)", f"{res['gap']:+.4f}", ""),
        ("prediction agreement", f"{res['agreement']:.4f}", ""),
        ("logit discrepancy (mean / max)", f"{res['logit_discrepancy']:.4f}", f"{res['logit_discrepancy_max']:.4f}"),
        ("soft-band fraction per layer", " ".join(f"{v:.3f}" for v in res["soft_band_fraction"]),
         " ".join(f"{v:.3f}" for v in res["soft_band_fraction_hard"])),
        ("INT8 hard accuracy (E2)", "", f"{res['int8_hard_acc']:.4f}"),
        ("SynOps per sample (E2)", f"{res['synops_smooth']:.4g}", f"{res['synops_hard']:.4g}"),
        ("ECE, 15 bins", f"{res['ece_smooth']:.4f}", f"{res['ece_hard']:.4f}"),
    ]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'':<{w}}  {'smooth':>14}  {'hard':>14}"]
    lines += [f"{a:<{w}}  {b:>14}  {c:>14}" for a, b, c in rows]
    return "\n".join(lines)


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from sast import checkpoint
    from sast.runlog import write_json
    from sast.transfer import diagnostics

    p = argparse.ArgumentParser(prog="python -m sast.evaluate", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    p.add_argument("--model", required=True, help="checkpoint (ckpt.pt or best.pt of a run folder)")
    p.add_argument("--data", default=None, help="data set name (default: the one the model was trained on)")
    p.add_argument("--root", default=None, help="folder of a real data set (nmnist, dvsgesture)")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument("--split", default="test", help="train (less the validation part), val or test")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", default=None, help="write JSON here (default: evaluation.json beside the checkpoint)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    # bad input (a bad device, checkpoint or output path, an unusable file system) is the boundary's: one line, exit 2
    device = resolve_device(args.device, try_allocation=True)
    model, ckpt = checkpoint.load(args.model)
    out = check_writable(args.json if args.json else Path(args.model).parent / EVALUATION_FILE)
    frames, labels = checkpoint_split(ckpt, args.split, data=args.data, root=args.root, limit=args.limit,
                                      cache_dir=args.cache_dir, progress=not args.no_progress,
                                      download=args.download)
    res = diagnostics(model, frames, labels, device=str(device))
    res = {"model": str(args.model), "split": args.split, "data": args.data or ckpt.get("train_config", {}).get("data"),
           **res}
    write_json(out, res)
    print(f"{res['data']} {args.split} split, {res['n']} samples, {args.model}")
    print(format_table(res))
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
