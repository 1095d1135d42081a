"""A checkpoint (or NIR file) and its probe set, ready for the checks: :func:`load_checkpoint`.

The one way the check command lines (``python -m checks.NAME``, ``python -m checks.all``)
and ``checks.convergence`` load a model. The checkpoint's ``train_config`` names the
data set and its binning, so the path alone is enough: the probe set is ``batch``
samples of ``split`` drawn by ``seed`` (:func:`probe_from_split`). A NIR file of another
library's network loads through the same function with the settings NIR cannot carry
(``dt``, ``reset``, ``data``; ``beta`` and ``T`` have defaults): :mod:`sast.model_file`,
the loader that ``sast.evaluate`` shares.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from checks._common import CheckInputError
from sast import model_file

if TYPE_CHECKING:
    from sast.model import SNN
    from sast.train import TrainConfig

DEFAULT_PROBE = 64  # probe samples: enough for stable curvature estimates, cheap on a laptop
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

_BAD_SPLIT = "split must be one of {allowed}, got {got!r} (train is the training split less validation)"
_BAD_DTYPE = "dtype must be one of {allowed}, got {got!r}"
_NO_DATA = ("the checkpoint {path} does not say which data set it was trained on (no train_config); "
            "pass data=NAME (--data NAME)")
_SHAPE_MISMATCH = ("data set {name!r} has input shape {got}, the model expects {want}; "
                   "pass the data set it was trained on")
_TOO_FEW_CLASSES = ("data set {name!r} has label {label}, the model has {classes} outputs; "
                    "pass the data set it was trained on")


@dataclass(frozen=True)
class Loaded:
    """A checkpoint ready for the checks.

    ``model`` in eval mode, on ``device``, in ``dtype``; ``ckpt`` the checkpoint's raw
    dict; ``probe`` the (x, y) probe set on ``device`` (x in ``dtype``); ``run_dir`` the
    checkpoint's folder (a run folder when sast.train wrote it); ``config`` the run's
    ``sast.train.TrainConfig`` as the probe was drawn with it (None where a caller built
    the record without one); ``source`` where the model came from (``sast.model_file``:
    kind, library, path, sha256), None where a caller built the record without one. For a
    NIR file ``ckpt`` is a plain-data stand-in (``config``, ``train_config`` with the data
    settings only, ``source``) and ``run_dir`` the folder ``NAME.sast`` beside ``NAME.nir``.
    """

    model: "SNN"
    ckpt: dict[str, Any]
    probe: tuple[torch.Tensor, torch.Tensor]
    run_dir: Path
    device: torch.device
    dtype: torch.dtype
    config: "TrainConfig | None" = None
    source: dict[str, Any] | None = None


def probe_from_split(frames: torch.Tensor, labels: torch.Tensor, batch: int, seed: int):
    """A fixed probe set: ``batch`` samples drawn without replacement by ``seed`` (sorted order)."""
    if batch < 1:
        raise CheckInputError(f"--batch must be >= 1, got {batch}")
    n = len(labels)
    if n == 0:
        raise CheckInputError("the probe split is empty")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(batch, n)].sort().values
    return frames[idx].float(), labels[idx]


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``dtype`` ("float32", "float64" or that torch dtype) as a torch dtype; CheckInputError otherwise."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise CheckInputError(_BAD_DTYPE.format(allowed=", ".join(DTYPES), got=str(dtype).removeprefix("torch.")))


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that this machine has (:func:`sast.inference.resolve_device`, tried with an
    empty tensor); CheckInputError (one line) otherwise."""
    from sast.inference import resolve_device as resolve

    try:
        return resolve(device, try_allocation=True)
    except ValueError as e:
        raise CheckInputError(str(e)) from None


def checkpoint_rho(ckpt: dict[str, Any]) -> tuple[float | None, str]:
    """The run's SAM radius from the checkpoint's ``train_config.rho``, and where it came from.

    ``(None, why)`` when it is 0 or absent (an SF or HFSB run): the "rho" need of
    ``checks._common.KNOWN_NEEDS`` as a checkpoint provides it.
    """
    rho = (ckpt.get("train_config") or {}).get("rho")
    if isinstance(rho, (int, float)) and rho > 0:
        return float(rho), "checkpoint train_config.rho"
    return None, f"the checkpoint's rho is {'absent' if rho is None else format(rho, 'g')}"


def checkpoint_config(ckpt: dict[str, Any], path: str | Path, *, data: str | None = None, root: str | None = None,
                      cache_dir: str | None = None) -> "TrainConfig":
    """The run's TrainConfig from the checkpoint's ``train_config``, with the given overrides (None: keep).

    A checkpoint without ``train_config`` needs ``data``; its binning is then the model's
    T and the default clip.
    """
    from sast.train.config import TrainConfig  # the defining modules, not the package (whose command line, apps.train, wires the monitor)

    settings = dict(ckpt.get("train_config") or {})
    if not settings and data is None:
        raise CheckInputError(_NO_DATA.format(path=path))
    settings.setdefault("T", ckpt["config"]["T"])  # the binning must fit the model
    overrides = {k: v for k, v in (("data", data), ("root", root), ("cache_dir", cache_dir)) if v is not None}
    return dataclasses.replace(TrainConfig.from_dict(settings), **overrides)


def load_checkpoint(
    path: str | Path,
    *,
    split: str = "test",
    batch: int = DEFAULT_PROBE,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    data: str | None = None,
    root: str | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    dt: float | None = None,
    reset: str | None = None,
    beta: float | None = None,
    T: int | None = None,
) -> Loaded:
    """The model of the checkpoint or NIR file at ``path`` and a fixed probe set from its data, ready for the checks.

    The probe is ``batch`` samples of ``split`` ("train": the training split less the
    validation part, "val", or "test") of the data set the run was trained on (or
    ``data``; ``root`` and ``cache_dir`` override the run's), binned as the run binned
    it, drawn without replacement by ``seed``. The model is in eval mode, on ``device``,
    in ``dtype`` ("float32" or "float64"); x is in ``dtype`` too.

    A NIR file (``.nir``, or HDF5) needs ``dt``, ``reset`` and ``data``; ``beta`` and ``T``
    default as :mod:`sast.model_file` says; a model whose input is flat takes the frames
    flattened (:func:`sast.model_file.fit_frames`).

    Raises CheckInputError (a ValueError, one line) for a bad split, dtype or device, a
    checkpoint that names no data set, or a data set whose input shape does not fit the
    model; ``sast.checkpoint.CheckpointError`` or ``sast.interop.NIRImportError`` (also
    ValueErrors, naming the file) for a missing or unreadable checkpoint or NIR file.
    """
    from sast.train.splits import SPLITS, load_split

    if split not in SPLITS:
        raise CheckInputError(_BAD_SPLIT.format(allowed=", ".join(SPLITS), got=split))
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    loaded = model_file.load_model(path, dt=dt, reset=reset, beta=beta, T=T, data=data)
    model, ckpt = loaded.model, loaded.ckpt
    config = checkpoint_config(ckpt, path, data=data, root=root, cache_dir=cache_dir)
    part = load_split(config, split, progress=progress)
    frames, labels = part.frames, part.labels
    fitted = model_file.fit_frames(frames, model.config.input_shape)
    if fitted is None:
        raise CheckInputError(_SHAPE_MISMATCH.format(name=config.data, got=tuple(frames.shape[2:]),
                                                     want=tuple(model.config.input_shape)))
    if len(labels) and int(labels.max()) >= model.config.num_classes:
        raise CheckInputError(_TOO_FEW_CLASSES.format(name=config.data, label=int(labels.max()),
                                                      classes=model.config.num_classes))
    x, y = probe_from_split(fitted, labels, batch, seed)
    model = model.to(device=torch_device, dtype=torch_dtype).eval()
    return Loaded(model, ckpt, (x.to(torch_device, torch_dtype), y.to(torch_device)), loaded.run_dir,
                  torch_device, torch_dtype, config, loaded.source)

