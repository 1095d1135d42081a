"""A model file as every ``--model`` takes it: a toolkit checkpoint, or a NIR graph of another library's network.

:func:`load_model` is the one loader behind ``python -m checks.NAME``, ``python -m checks.all`` and
``python -m sast.evaluate``. The file says which kind it is, not the flags: a name ending in ``.nir`` or a file
that begins with the HDF5 signature is NIR (:func:`sast.interop.from_nir`), anything else a checkpoint
(:func:`sast.checkpoint.load`, read with ``weights_only=True``). It returns the model, its data settings (what
the probe and test frames are binned with), its source (what the JSON and the report name: the library or
"sast-toolkit checkpoint", the file's path and sha256) and its run folder.

A NIR file records neither its time step, its reset, its data set nor the smooth surrogate's steepness, so the
flags give them (:func:`add_model_flags`):

- ``--dt`` and ``--reset``: required; without either, one line names the missing flag and the libraries'
  conventions (:data:`sast.interop.LIBRARY_DT`), exit 2;
- ``--data``: required (its ``--root`` for a real data set);
- ``--beta``: the beta the file's metadata records where ``sast.export`` wrote it, else :data:`DEFAULT_BETA`;
- ``--T``: the metadata's T where ``sast.export`` wrote it, else the data set's default binning.

A checkpoint records all of these, and these four flags are refused with it. A NIR file has no run folder: the
commands write theirs beside it, ``NAME.sast/`` for ``NAME.nir`` (:func:`nir_run_dir`), where ``checks.all``
puts checks.json and ``sast.evaluate`` evaluation.json, and :func:`record_source` a config.json naming the
source, so that ``python -m reports.build NAME.sast`` reads it like any run folder.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from runfolder import (CHECKPOINT_LIBRARY, CONFIG_FILE, NIR_RUN_DIR_SUFFIX, SOURCE_CHECKPOINT, SOURCE_KEY,
                       SOURCE_NIR, write_json)

if TYPE_CHECKING:
    from sast.model import SNN

NIR_SUFFIX = ".nir"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first 8 bytes of an HDF5 file without a user block (what ``nir.write`` writes)."""
NIR_BY_SAST = "sast-toolkit (a NIR file written by python -m sast.export)"
NIR_BY_OTHER = "NIR file (the library that wrote it is not recorded in NIR)"
DEFAULT_BETA = 5.0
"""The smooth surrogate's steepness for a NIR file that does not record one (``SNNConfig``'s default, and
``from_nir``'s); hard spikes do not use it, the smooth mode and the checks' bounds do."""
NIR_FLAGS = ("dt", "reset", "beta", "T")
_HASH_CHUNK = 1 << 20

RESET_CONVENTIONS = ("snnTorch Leaky: subtract by default (reset_delay=True), zero with reset_mechanism='zero'; "
                     "Norse LIFBox and SpikingJelly's hard reset: zero")


def _dt_conventions() -> str:
    from sast.interop import LIBRARY_DT

    return ", ".join(f"{lib} {dt:g}" for lib, dt in LIBRARY_DT.items())


MODEL_HELP = ("a checkpoint (ckpt.pt or best.pt of a run folder) or a NIR file (.nir) of another library's network; "
              "a .nir also needs --dt, --reset and --data")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """The settings a NIR file cannot carry: --dt --reset --beta --T (``--model`` and ``--data`` are the caller's)."""
    g = p.add_argument_group("a NIR file's settings (refused with a checkpoint, which records its own)")
    g.add_argument("--dt", type=float, default=None,
                   help=f"seconds per time step the file's time constants are meant for (lambda = 1 - dt/tau); "
                        f"required for a .nir: {_dt_conventions()}")
    g.add_argument("--reset", default=None, metavar="{zero,subtract}",
                   help=f"the neurons' reset, which a NIR file does not record; required for a .nir: "
                        f"{RESET_CONVENTIONS}")
    g.add_argument("--beta", type=float, default=None,
                   help="steepness of the smooth surrogate sig(beta (u - theta)) that smooth mode and the checks use "
                        "(snnTorch's surrogate.sigmoid(slope=beta) is its derivative; its atan(alpha) has the same "
                        "slope at the threshold with beta = 2 alpha); default: the file's own metadata where "
                        f"sast.export wrote it, else {DEFAULT_BETA:g}")
    g.add_argument("--T", type=int, default=None,
                   help="time steps a sample is binned into; default: the file's metadata where sast.export wrote "
                        "it, else the data set's default binning")


def model_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The values of :func:`add_model_flags`' flags as keywords of :func:`load_model`."""
    return {name: getattr(args, name, None) for name in NIR_FLAGS}


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file.

    ``model``: the SNN in eval mode on the CPU. ``ckpt``: the checkpoint's dict; for a NIR file a plain-data
    stand-in with the same keys that readers use (``config``: the model's, ``train_config``: the data settings
    alone, ``source``). ``source``: JSON-ready provenance (``kind`` "checkpoint" or "nir", ``library``, ``path``,
    ``sha256``, ``bytes``; for NIR also dt, reset, beta, T and where each came from). ``run_dir``: where the
    commands write (the checkpoint's folder, or ``NAME.sast`` beside ``NAME.nir``).
    """

    model: "SNN"
    ckpt: dict[str, Any]
    source: dict[str, Any]
    run_dir: Path

    @property
    def is_nir(self) -> bool:
        return self.source.get("kind") == SOURCE_NIR


def is_nir(path: str | Path) -> bool:
    """Whether ``path`` names a NIR file: a ``.nir`` suffix, or a file that begins with the HDF5 signature."""
    path = Path(path)
    if path.suffix.lower() == NIR_SUFFIX:
        return True
    try:
        with path.open("rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:  # missing, a folder, unreadable: the checkpoint reader names the problem
        return False


def sha256(path: str | Path) -> str:
    """The sha256 of the file's bytes, hex."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def nir_run_dir(path: str | Path) -> Path:
    """The run folder of a NIR file: ``NAME.sast`` beside ``NAME.nir`` (a NIR file has none of its own)."""
    path = Path(path)
    return path.parent / (path.stem + NIR_RUN_DIR_SUFFIX)


def _file_facts(path: Path, library: str, kind: str) -> dict[str, Any]:
    return {"kind": kind, "library": library, "path": str(path.resolve()), "sha256": sha256(path),
            "bytes": path.stat().st_size}


def load_model(path: str | Path, *, dt: float | None = None, reset: str | None = None, beta: float | None = None,
               T: int | None = None, data: str | None = None) -> ModelFile:
    """The model of a checkpoint or NIR file at ``path`` with its data settings, source and run folder.

    ``dt``, ``reset``, ``beta``, ``T`` and ``data`` are a NIR file's settings (module docstring); with a
    checkpoint ``dt``, ``reset``, ``beta`` and ``T`` must be None (its own are recorded), and ``data`` is left to
    the caller (it overrides the run's data set when given). Raises a one-line ValueError naming the file:
    ``sast.checkpoint.CheckpointError`` for a checkpoint, ``sast.interop.NIRImportError`` for a NIR file (a
    missing setting included).
    """
    path = Path(path)
    given = {name: value for name, value in zip(NIR_FLAGS, (dt, reset, beta, T)) if value is not None}
    if is_nir(path):
        return _load_nir(path, dt=dt, reset=reset, beta=beta, T=T, data=data)
    from sast import checkpoint

    if given:
        flags = ", ".join(f"--{name}" for name in given)
        raise checkpoint.CheckpointError(f"{path}: {flags} apply to a NIR file (.nir) only; a checkpoint records "
                                         "its own settings: leave them out")
    model, ckpt = checkpoint.load(path)
    return ModelFile(model, ckpt, _file_facts(path, CHECKPOINT_LIBRARY, SOURCE_CHECKPOINT), path.parent)


def _load_nir(path: Path, *, dt: float | None, reset: str | None, beta: float | None, T: int | None,
              data: str | None) -> ModelFile:
    from sast.data import get_spec
    from sast.interop import NIRImportError, from_nir, read_graph, sast_metadata

    try:
        graph = read_graph(path)  # a missing, non-HDF5, truncated or unknown-node file: one line naming it
    except ImportError as e:  # the optional nir package: a setting of this machine, not a bug (exit 2)
        raise NIRImportError(f"{path}: {e}") from None
    meta = sast_metadata(graph)
    missing = [flag for flag, value in (("--dt SECONDS", dt), ("--reset zero|subtract", reset)) if value is None]
    if missing:
        own = (f"; its metadata (sast.export) says --dt {meta['dt']:g} --reset {meta['reset']}"
               if isinstance(meta.get("dt"), float) and isinstance(meta.get("reset"), str) else "")
        raise NIRImportError(f"{path}: a NIR file records neither its time step nor its reset; pass "
                             f"{' and '.join(missing)} (dt: {_dt_conventions()}; reset: {RESET_CONVENTIONS}){own}")
    if data is None:
        raise NIRImportError(f"{path}: a NIR file does not name its data set; pass --data NAME (and --root for "
                             "a real one)")
    spec = get_spec(data)  # an unknown name: one line with the closest match
    for name, value in (("--dt", dt), ("--beta", beta)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise NIRImportError(f"{path}: {name} must be a finite number > 0, got {value:g}")
    if T is not None and T < 1:
        raise NIRImportError(f"{path}: --T must be a whole number >= 1, got {T}")
    beta, beta_from = _setting(beta, meta.get("beta"), DEFAULT_BETA, "default")
    T, T_from = _setting(T, meta.get("T"), spec.default_T, f"the default binning of {data}")
    try:
        model = from_nir(graph, dt=dt, reset=reset, T=int(T), beta=float(beta),
                         input_shape=None if _declares_input(graph) else data_shape(data))
    except NIRImportError as e:  # from_nir of a graph names the node; the command line names the file too
        raise NIRImportError(f"{path}: {e}") from None
    source = {**_file_facts(path, NIR_BY_SAST if meta else NIR_BY_OTHER, SOURCE_NIR),
              "dt": float(dt), "reset": reset, "beta": float(beta), "beta_from": beta_from, "T": int(T),
              "T_from": T_from, "data": data}
    stand_in = {"format": "nir", "config": model.config.to_dict(), "train_config": {"data": data, "T": int(T)},
                SOURCE_KEY: source}
    return ModelFile(model, stand_in, source, nir_run_dir(path))


def _setting(given: Any, recorded: Any, default: Any, default_from: str) -> tuple[Any, str]:
    """A NIR setting and where it came from: the flag, the file's sast metadata, or the default."""
    if given is not None:
        return given, "flag"
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return recorded, "file metadata (sast.export)"
    return default, default_from


def _declares_input(graph: Any) -> bool:
    """Whether the graph's Input node states its shape (exporters do; a hand-made graph may not)."""
    import numpy as np

    for node in graph.nodes.values():
        if type(node).__name__ == "Input":
            shape = (getattr(node, "input_type", None) or {}).get("input")
            return shape is not None and np.asarray(shape).size > 0
    return True  # no Input node: from_nir refuses the graph and says so


def data_shape(data: str) -> tuple[int, ...]:
    """The (P, H, W) of one frame of data set ``data`` at its default binning (no data is read)."""
    from sast.data import get_spec
    from sast.data.events import downsampled_size

    spec = get_spec(data)
    w, h, p = downsampled_size(spec.sensor_size, spec.default_downsample)
    return (p, h, w)


def fit_frames(frames: Any, input_shape: Sequence[int]) -> Any | None:
    """``frames`` (N, T, *shape) as the model takes them, or None where they do not fit.

    Equal shapes pass; a model whose input is flat (N_in,) takes (P, H, W) frames of N_in values flattened in
    C order, as ``x.view(B, -1)`` flattens them before an snnTorch network exported without its Flatten (its
    first layer is dense, which flattens its input anyway, so the numbers are the same).
    """
    got, want = tuple(frames.shape[2:]), tuple(int(d) for d in input_shape)
    if got == want:
        return frames
    if len(want) == 1 and math.prod(got) == want[0]:
        return frames.flatten(2)
    return None


def record_source(run_dir: str | Path, source: dict[str, Any], model_config: dict[str, Any],
                  data: dict[str, Any], *, device: str = "cpu") -> Path | None:
    """For a NIR file, write its run folder's config.json: the source, the model, the data settings, the versions.

    What makes ``NAME.sast`` a run folder that ``reports.build`` reads (it needs config.json or metrics.jsonl),
    and how the report names the model. Written atomically; for a checkpoint (``source["kind"]`` not "nir") it
    does nothing: the trainer wrote its folder's config.json. Returns the path written, or None.
    """
    if source.get("kind") != SOURCE_NIR:
        return None
    from sast.runlog import environment

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    write_json(path, {SOURCE_KEY: source, "model": model_config, "data": data, "environment": environment(),
                      "device": str(device)})
    return path


DATA_FIELDS = ("data", "T", "clip", "root", "limit")
"""The data settings a NIR file's run folder records (config.json's "data")."""


def data_settings(config: Any) -> dict[str, Any]:
    """The fields of :data:`DATA_FIELDS` of a ``TrainConfig``-like object (what the frames were binned with)."""
    return {name: getattr(config, name, None) for name in DATA_FIELDS}
