"""The run folder's contract (DESIGN.md, "The run folder"), written down once.

A run folder ``runs/NAME/`` is what ties the layers together: ``sast`` (the trainer)
writes it, ``checks`` adds to it, ``reports`` reads it. This module holds everything
those three must agree on, and nothing else:

- file names (:data:`CONFIG_FILE`, :data:`METRICS_FILE`, ...) and the kinds of record
  in metrics.jsonl (:data:`RECORD_KINDS`);
- the statement IDs of THEORY.md in their order, with one readable name each;
- the status words of a check and the one rule that derives them (:func:`derive_status`);
- the schema version of a check record;
- the model's source (:data:`SOURCE_KEY`) and a NIR file's run folder (:data:`NIR_RUN_DIR_SUFFIX`);
- conversion to plain JSON (:func:`plain`), atomic writing (:func:`atomic_write_text`,
  :func:`atomic_write_bytes`, :func:`write_json`) and lenient reading
  (:func:`read_json`, :func:`read_jsonl`, :func:`read_jsonl_lines`);
- the exit codes of every command line and their one error boundary, :func:`guard`
  (:mod:`runfolder.exits`).

It imports the standard library only, so every layer (theory included) may use it and
a report can be built without the model stack.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runfolder.exits import (EXIT_BAD_INPUT, EXIT_CODES_EPILOG, EXIT_DIVERGED, EXIT_INTERNAL, EXIT_INTERRUPTED,
                             EXIT_OK, EXIT_VIOLATED, INPUT_ERRORS, check_writable, describe, guard)

# ----------------------------------------------------------------------------- files and records

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKS_FILE = "checks.json"
EVALUATION_FILE = "evaluation.json"
CHECKPOINT_FILE = "ckpt.pt"
BEST_FILE = "best.pt"
REPORT_FILE = "report.html"
LOCK_FILE = "train.lock"
"""Held (``fcntl.flock``) by the one trainer writing the folder; it holds that trainer's pid, host and start
time as JSON, and is removed when the trainer ends (:mod:`runfolder.lock`)."""
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, METRICS_FILE, CHECKS_FILE, EVALUATION_FILE, CHECKPOINT_FILE, BEST_FILE,
                              REPORT_FILE)
"""Every file a run folder may hold (the lock aside)."""

RECORD_KINDS: tuple[str, ...] = ("train", "eval", "probe", "check", "monitor", "monitor_error", "margins", "error",
                                 "extend")
"""The ``kind`` of a metrics.jsonl record: training loss, per-epoch evaluation, the live
monitor's probe statistics and check results, its start/end and failures, per-epoch
membrane margins, a training error (non-finite loss), and where a run was extended to more
epochs (``--resume --epochs N``)."""

SCHEMA_VERSION = 1
"""Version of the check-record layout (CheckResult); bump it when a field changes meaning or name."""

# ----------------------------------------------------------------------------- the model's source

SOURCE_KEY = "source"
"""Where a model came from, as ``{"kind", "library", "path", "sha256", "bytes", ...}``: in evaluation.json
(``python -m sast.evaluate``, any model) and in the config.json of a NIR file's run folder (with the settings NIR
cannot carry: ``dt``, ``reset``, ``beta``, ``T``, where each came from, and ``data``). Added beside the
existing fields: a reader of an older folder finds none."""
SOURCE_CHECKPOINT = "checkpoint"
SOURCE_NIR = "nir"
SOURCE_KINDS: tuple[str, ...] = (SOURCE_CHECKPOINT, SOURCE_NIR)
"""``source["kind"]``: this toolkit's checkpoint, or a NIR file of any library's network."""
CHECKPOINT_LIBRARY = "sast-toolkit checkpoint"
"""``source["library"]`` of a checkpoint (a NIR file's names its writer where the file says it)."""
NIR_RUN_DIR_SUFFIX = ".sast"
"""A NIR file has no run folder; the commands write ``NAME.sast/`` beside ``NAME.nir``: config.json (the source,
the model, the data settings; no training log), checks.json, evaluation.json."""

# ----------------------------------------------------------------------------- statements

STATEMENT_NAMES: Mapping[str, str] = {
    "A1": "neuron constants",
    "A2": "bounded input",
    "A3": "bounded parameters",
    "A4": "contraction",
    "A5": "stochastic gradients",
    "T1": "scalar lemmas",
    "T2": "state stability",
    "T3": "input Lipschitz",
    "T4": "smoothness",
    "T5": "SAM first-order error",
    "T6": "convergence",
    "T7": "local mechanism",
    "E1": "hard-spike transfer",
    "E2": "deployment",
}
"""Every statement ID of THEORY.md, in its order, with a short readable name."""

STATEMENT_IDS: tuple[str, ...] = tuple(STATEMENT_NAMES)
VERDICT_IDS: tuple[str, ...] = ("A4", "T2", "T3", "T4", "T5", "T6", "T7", "E1", "E2")
"""The statements that have a check, in the order of THEORY.md's table."""


def statement_sort_key(statement_id: str) -> tuple[int, str]:
    """Sort key placing statement IDs in THEORY.md's order, unknown IDs last (alphabetically)."""
    try:
        return (STATEMENT_IDS.index(statement_id), statement_id)
    except ValueError:
        return (len(STATEMENT_IDS), statement_id)


# ----------------------------------------------------------------------------- statuses

HOLDS = "holds"
VIOLATED = "violated"
ASSUMPTION_FAILS = "assumption fails"
NOT_APPLICABLE = "not applicable"
STATUSES: tuple[str, ...] = (HOLDS, VIOLATED, ASSUMPTION_FAILS, NOT_APPLICABLE)


@dataclass(frozen=True)
class Verdict:
    """What :func:`derive_status` derives: ``ratio = estimate / bound``, ``holds``, ``status``, and
    ``local_holds`` (None without a local bound: whether the local certificate lies at or above what it bounds)."""

    ratio: float | None
    holds: bool | None
    status: str
    local_holds: bool | None = None


def derive_status(bound: float | None, estimate: float | None, assumptions: Mapping[str, bool] | None = None,
                  *, rtol: float = 0.0, local_bound: float | None = None,
                  local_estimate: float | None = None) -> Verdict:
    """The one rule that turns a bound, an estimate and the assumptions into a status word.

    - no bound or no estimate: ``holds`` and ``ratio`` are None, status "not applicable";
    - ``holds = estimate <= bound * (1 + rtol)`` (``rtol`` the estimator's stated accuracy,
      never a loosening of the bound); an estimate above the bound is "violated" whatever
      the assumptions say;
    - a local bound is a certificate at (w, probe) of the quantity the estimate measures there
      (``local_estimate``, default ``estimate``, where the estimate also covers more, as T3's
      adversarial secants do): ``local_holds = local_estimate <= local_bound * (1 + rtol)``, and a
      local bound below it makes the record "violated" too (``holds`` False) however far the
      global bound lies above: a certificate below what it bounds is broken;
    - a bound that holds with some assumption False is "assumption fails" (THEORY.md's
      finite-T forms still apply, but the guarantee is weaker); otherwise "holds".
    """
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0 (it states the estimator's accuracy), got {rtol}")
    if bound is None or estimate is None:
        return Verdict(None, None, NOT_APPLICABLE)
    ratio = estimate / bound if bound != 0 else None
    holds = bool(estimate <= bound * (1.0 + rtol))  # a Python bool even for numpy scalars
    local_holds = None
    if local_bound is not None:
        measured = estimate if local_estimate is None else local_estimate
        local_holds = bool(measured <= local_bound * (1.0 + rtol))
        holds = holds and local_holds
    return Verdict(ratio, holds, status_from_holds(holds, assumptions), local_holds)


def status_from_holds(holds: bool, assumptions: Mapping[str, bool] | None = None) -> str:
    """The status word of a bound whose ``holds`` is already decided (the second half of :func:`derive_status`).

    "violated" when it does not hold, whatever the assumptions say; "assumption fails"
    when it holds with some assumption False; otherwise "holds". A reader of a record
    that carries ``holds`` but no status uses this directly: the record's ``holds`` was
    judged with the estimator's ``rtol``, which the record does not carry.
    """
    if not holds:
        return VIOLATED
    if not all((assumptions or {}).values()):
        return ASSUMPTION_FAILS
    return HOLDS


# ----------------------------------------------------------------------------- plain JSON


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON types: non-finite floats become None (JSON has no NaN), tuples
    lists, mapping keys strings, and numpy or torch scalars and arrays Python numbers and
    lists (through their ``tolist``, without importing either). Anything else raises
    TypeError naming it."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy and torch scalars and arrays
        return plain(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} {obj!r} to JSON; use plain numbers, strings or lists")


def dumps(record: Any, *, indent: int | None = None) -> str:
    """``record`` as JSON text (through :func:`plain`; never NaN or Infinity)."""
    return json.dumps(plain(record), indent=indent, allow_nan=False)


# ----------------------------------------------------------------------------- writing


def file_mode() -> int:
    """The mode of a new regular file under the process's umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file atomically: ``write(f)`` into a temporary file in the same folder, fsync, os.replace.

    A crash at any point leaves either the old file or the new one, never a mix; the
    temporary file is removed on failure. The file gets the umask's mode, as a plain
    ``open`` would give it. An OSError of the writing itself (a full disk, a read-only or
    missing folder, a folder in the way) names ``path``, not the temporary file.
    """
    path = Path(path)
    prefix = f".{path.name}."
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as e:
        raise _naming(e, path, prefix) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(e, path, prefix) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _naming(err: OSError, path: Path, prefix: str) -> OSError:
    """``err`` naming ``path`` where it named the temporary file (or nothing); unchanged otherwise."""
    named = err.filename
    ours = named is None or (Path(os.fsdecode(named)).parent == path.parent
                             and Path(os.fsdecode(named)).name.startswith(prefix))
    if not ours or err.errno is None:
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), os.fspath(path))  # the subclass of its errno


def temp_files(folder: str | os.PathLike[str], names: tuple[str, ...] = RUN_FILES) -> list[Path]:
    """The temporary files that :func:`atomic_write_bytes` left in ``folder`` for ``names`` (``.NAME.*.tmp``).

    A writer removes its own on failure; those found here were left by a process killed
    mid-write (or belong to a write in progress: only their writer's owner may remove them).
    """
    folder = Path(folder)
    return sorted(p for name in names for p in folder.glob(f".{name}.*.tmp") if p.is_file())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    data = text.encode("utf-8")
    atomic_write_bytes(path, lambda f: f.write(data))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented plain JSON, atomically."""
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


# ----------------------------------------------------------------------------- reading


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document at ``path``. Raises OSError, or ValueError naming the file when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


@dataclass(frozen=True)
class JsonLines:
    """The records of a JSON-lines file and what could not be read.

    ``bad_lines`` are the 1-based numbers of lines that are not a JSON object (invalid
    JSON or invalid UTF-8); ``truncated_last`` is True when the last non-empty line is
    one of them (a run killed mid-write).
    """

    records: list[dict[str, Any]]
    bad_lines: list[int]
    truncated_last: bool


def read_jsonl_lines(path: str | os.PathLike[str]) -> JsonLines:
    """Read a JSON-lines file leniently: every line that is a JSON object, and the numbers of those that are not.

    A missing file reads as empty; other OSErrors propagate.
    """
    path = Path(path)
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    last = 0
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return JsonLines([], [], False)
    with f:
        for lineno, raw in enumerate(f, start=1):
            raw = raw.strip()
            if not raw:
                continue
            last = lineno
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                bad.append(lineno)
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                bad.append(lineno)
    return JsonLines(records, bad, bool(bad) and bad[-1] == last)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSON-lines file, skipping malformed lines (see :func:`read_jsonl_lines`)."""
    yield from read_jsonl_lines(path).records


__all__ = [
    "ASSUMPTION_FAILS", "BEST_FILE", "CHECKPOINT_FILE", "CHECKPOINT_LIBRARY", "CHECKS_FILE", "CONFIG_FILE",
    "EVALUATION_FILE", "HOLDS",
    "EXIT_BAD_INPUT", "EXIT_CODES_EPILOG", "EXIT_DIVERGED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK",
    "EXIT_VIOLATED", "INPUT_ERRORS", "check_writable", "describe", "guard",
    "JsonLines", "LOCK_FILE", "METRICS_FILE", "NOT_APPLICABLE", "RECORD_KINDS", "REPORT_FILE", "RUN_FILES",
    "NIR_RUN_DIR_SUFFIX", "SCHEMA_VERSION", "SOURCE_CHECKPOINT", "SOURCE_KEY", "SOURCE_KINDS", "SOURCE_NIR",
    "STATEMENT_IDS", "STATEMENT_NAMES", "STATUSES", "VERDICT_IDS", "VIOLATED", "Verdict",
    "atomic_write_bytes", "atomic_write_text",
    "derive_status", "dumps", "file_mode", "plain", "read_json", "read_jsonl", "read_jsonl_lines",
    "statement_sort_key", "status_from_holds", "temp_files", "write_json",
]
