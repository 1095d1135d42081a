"""Evaluate a checkpoint or NIR file in smooth and hard mode: transfer (E1) per layer, deployment (E2), calibration.

    python -m sast.evaluate --model runs/demo/sf/ckpt.pt
    python -m sast.evaluate --model net.nir --dt 1e-4 --reset subtract --data nmnist --root data

Prints a table and writes JSON (``evaluation.json`` beside the checkpoint, in ``NAME.sast/``
beside ``NAME.nir``, or --json): E1, E2 and ECE (``sast.transfer``), the per-layer attribution
of the transfer gap and the margins beta (u - theta) in both modes (``sast.gap``), and the
model's source (library or "sast-toolkit checkpoint", path, sha256: ``sast.model_file``).
Exit codes (:mod:`runfolder.exits`): 0 done, 2 bad input or an unusable file (one line on
stderr naming it), 70 an internal error.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence

import torch

from runfolder import EVALUATION_FILE, EXIT_CODES_EPILOG, SOURCE_KEY, check_writable, guard
from sast import process
from sast.data import DEFAULT_CLIP, DOWNLOAD_HELP, download as fetch
from sast.inference import EVAL_BATCH, accuracy_and_loss, predict_logits, resolve_device
from sast.model_file import MODEL_HELP, add_model_flags, fit_frames, load_model, model_flags, record_source

__all__ = ["EVAL_BATCH", "accuracy_and_loss", "build_parser", "checkpoint_split", "format_attribution", "format_table",
           "main", "predict_logits"]


def checkpoint_split(
    ckpt: dict[str, Any], split: str = "test", *, data: str | None = None, root: str | None = None,
    limit: int | None = None, cache_dir: str | None = None, progress: bool = True, download: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames and labels of ``split`` of the data set a checkpoint was trained on (or ``data``).

    ``split`` is one of :data:`sast.train.SPLITS`, partitioned as training partitioned it
    ("train" is the training split less the validation part). The checkpoint's training
    configuration, with ``data``, ``root``, ``limit`` and ``cache_dir`` overriding it where
    given, and the model's binning (T), so that the frames fit the model (flattened for a
    model with a flat input: :func:`sast.model_file.fit_frames`). ``ckpt`` may be the
    stand-in of a NIR file (:class:`sast.model_file.ModelFile`). ``download=True``
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
    frames = fit_frames(part.frames, expected)
    if frames is None:
        raise ValueError(f"data set {cfg.data!r} has input shape {shape}, the model expects {expected}")
    classes = ckpt["config"].get("num_classes")
    if len(part.labels) and isinstance(classes, int) and int(part.labels.max()) >= classes:
        raise ValueError(f"data set {cfg.data!r} has label {int(part.labels.max())}, the model has {classes} "
                         "outputs; pass the data set it was trained on")
    return frames, part.labels


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
    if res.get("attribution"):
        lines += ["", format_attribution(res["attribution"], res.get("margins") or {})]
    return "\n".join(lines)


def format_attribution(attribution: dict[str, Any], margins: dict[str, Any]) -> str:
    """The gap per spiking layer: hard spikes in layer l only (the rest smooth) and smooth in l only (the rest
    hard), with the margins beta (u - theta) of that layer in both modes (``sast.gap``)."""
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    def per_layer(mode: str, key: str, l: int) -> Any:
        values = (margins.get(mode) or {}).get(key) or []
        return values[l] if l < len(values) else None

    head = (f"{'layer':<6}{'hard-only acc':>14}{'drop':>9}{'smooth-only acc':>16}{'recovered':>11}"
            f"{'soft band s/h':>16}{'mean |m| s/h':>15}")
    lines = ["per-layer attribution of the gap (hard in layer l only vs all smooth: drop; smooth in l only vs "
             "all hard: recovered) and margins m = beta (u - theta), soft band |m| < 4",
             head, "-" * len(head)]
    for l, row in enumerate(attribution.get("layers", [])):
        band = f"{fmt(per_layer('smooth', 'soft_band_fraction', l), '.3f')}/" \
               f"{fmt(per_layer('hard', 'soft_band_fraction', l), '.3f')}"
        mean = f"{fmt(per_layer('smooth', 'mean_abs_margin', l), '.2f')}/" \
               f"{fmt(per_layer('hard', 'mean_abs_margin', l), '.2f')}"
        lines.append(f"{row['layer']:<6}{row['hard_only_acc']:>14.4f}{row['drop']:>+9.4f}"
                     f"{row['smooth_only_acc']:>16.4f}{row['recovered']:>+11.4f}{band:>16}{mean:>15}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sast.evaluate``."""
    p = argparse.ArgumentParser(prog="python -m sast.evaluate", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--data", default=None,
                   help="data set name (default: the one the model was trained on; required for a .nir)")
    p.add_argument("--root", default=None, help="folder of a real data set (nmnist, dvsgesture)")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument("--split", default="test", help="train (less the validation part), val or test")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", default=None,
                   help="write JSON here (default: evaluation.json beside the checkpoint, or in NAME.sast/ beside "
                        "NAME.nir, with a config.json naming the source)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_model_flags(p)
    return p


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from sast.gap import attribution_and_margins
    from sast.runlog import write_json
    from sast.transfer import diagnostics

    args = build_parser().parse_args(argv)
    process.prepare()  # freed memory kept in the heap; SAST_MALLOC, SAST_NATIVE checked (sast.process)
    # bad input (a bad device, model file or output path, an unusable file system) is the boundary's: one line, exit 2
    device = resolve_device(args.device, try_allocation=True)
    loaded = load_model(args.model, data=args.data, **model_flags(args))
    model, ckpt = loaded.model, loaded.ckpt
    out = check_writable(args.json if args.json else loaded.run_dir / EVALUATION_FILE)
    frames, labels = checkpoint_split(ckpt, args.split, data=args.data, root=args.root, limit=args.limit,
                                      cache_dir=args.cache_dir, progress=not args.no_progress,
                                      download=args.download)
    res = diagnostics(model, frames, labels, device=str(device))
    res.update(attribution_and_margins(model, frames, labels, device=str(device)))
    data = args.data or ckpt.get("train_config", {}).get("data")
    res = {"model": str(args.model), SOURCE_KEY: loaded.source, "split": args.split, "data": data, **res}
    if not args.json:  # into the run folder: a NIR file's gets the config.json that names its source
        settings = {"data": data, "T": model.config.T, "clip": DEFAULT_CLIP, "root": args.root, "limit": args.limit}
        record_source(loaded.run_dir, loaded.source, model.config.to_dict(), settings, device=str(device))
    write_json(out, res)
    src = loaded.source
    print(f"{res['data']} {args.split} split, {res['n']} samples, {args.model} ({src['library']}, "
          f"sha256 {src['sha256'][:12]})")
    print(format_table(res))
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
