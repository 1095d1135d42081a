"""Checkpoints as plain data, written atomically, read with ``weights_only=True`` (DESIGN.md).

Layout: ``{"format": "sast-checkpoint", "version": 1, "config": {...}, "model":
state_dict, ...}`` plus whatever state the caller adds (optimizer, step, rng, ...).
Only tensors, numbers, strings, lists and dicts are stored, so the file loads with
PyTorch's restricted unpickler; a file that carries pickled code is refused and
none of it runs. Files are written by :func:`runfolder.atomic_write_bytes` (temporary
file, fsync, os.replace; the umask's mode).
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runfolder import atomic_write_bytes, atomic_write_text  # noqa: F401 (importable from here, as before)

FORMAT = "sast-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line and names the file."""


def save(path: str | Path, model: nn.Module, **state: Any) -> None:
    """Save ``model`` (an SNN with a ``config``) and extra plain-data ``state`` atomically."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError("save() needs an SNN whose .config has to_dict()")
    payload = {"format": FORMAT, "version": VERSION, "config": config.to_dict(),
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    clash = set(state) & set(payload)
    if clash:
        raise ValueError(f"state keys {sorted(clash)} are reserved by the checkpoint format")
    payload.update(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # serialised first: a full disk then raises OSError (naming the file), not torch's error
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    atomic_write_bytes(path, lambda f: f.write(data))
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (fsync the directory; a no-op where that is not possible)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint's plain data (no model is built)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; pass the ckpt.pt or best.pt in it")
    if not path.is_file():
        if path.is_symlink():
            raise CheckpointError(f"{path}: a symbolic link to nothing (broken, or a loop); point it at a checkpoint")
        raise CheckpointError(f"{path}: no such checkpoint file")
    with path.open("rb") as f:
        magic = f.read(len(ZIP_MAGIC))
    if magic != ZIP_MAGIC:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt? it is not a torch.save archive)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global:) [^\s]+", str(e))
        why = found.group(0) if found else "objects other than tensors and plain containers"
        raise CheckpointError(
            f"{path}: refused, the file holds pickled code or objects that are not plain data ({why}); "
            "nothing of it was run"
        ) from None
    except Exception as e:  # torch.load raises many types on a damaged file (RuntimeError, EOFError, KeyError...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {first[:160]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sast checkpoint (expected format {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {ckpt.get('version')!r} is not supported (this toolkit reads {VERSION})"
        )
    for key in ("config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks the {key!r} entry")
    return ckpt


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """Load a checkpoint: returns ``(model, checkpoint)``; the model is in eval mode."""
    from sast.model import SNN, SNNConfig

    ckpt = read(path, map_location)
    check_finite(ckpt, path)
    try:
        model = SNN(SNNConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: model config or weights do not fit: {first[:200]}") from None
    model.eval()
    return model.to(map_location), ckpt


SHOWN_NAMES = 5  # tensor names listed in a one-line error before "and N more"


def check_finite(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise CheckpointError naming the model tensors of ``ckpt`` that hold NaN or infinite values.

    A model with such weights predicts nothing meaningful, and every check on it would
    report numbers of no meaning (or fail inside a norm); evaluation, the checks and
    ``--resume`` refuse it with one line instead.
    """
    weights = ckpt.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: the checkpoint's 'model' entry is not a state dict of tensors")
    bad = [name for name, t in weights.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - SHOWN_NAMES} more" if len(bad) > SHOWN_NAMES else ""
        raise CheckpointError(f"{path}: non-finite values in model tensors {', '.join(bad[:SHOWN_NAMES])}{more} "
                              "(NaN or infinity: a diverged or damaged run); use an earlier checkpoint (best.pt?) "
                              "or train again")


def require(ckpt: dict[str, Any], path: str | Path, keys: tuple[str, ...], purpose: str) -> None:
    """Raise CheckpointError naming the file and every entry of ``keys`` that ``ckpt`` lacks for ``purpose``."""
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: cannot {purpose}: the checkpoint lacks {', '.join(missing)} "
                              "(it was not written by python -m sast.train, or is from an older version); "
                              "start a new run folder instead")
