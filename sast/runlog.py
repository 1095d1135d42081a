"""The run folder's files (DESIGN.md "The run folder"): config.json and metrics.jsonl.

metrics.jsonl holds one JSON object a line, ``{"kind": "train"|"eval"|"check"|..., "step",
"epoch", ...}``. A run killed mid-write can leave a truncated last line; readers skip
it, and a resumed run drops every line past its checkpoint's step so that the log
equals an uninterrupted run's. JSON conversion, atomic writing and lenient reading are
:mod:`runfolder`'s (``dumps``, ``read_jsonl`` and ``write_json`` stay importable from here).

A :class:`RecordSink` gets every record as the log writes it (a TensorBoard mirror:
:mod:`sast.tensorboard_log`), so that what it shows and metrics.jsonl cannot disagree.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import runfolder
from runfolder import atomic_write_text, dumps, read_jsonl  # noqa: F401 (importable from here, as before)
from runfolder import plain


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented plain JSON, atomically (:func:`runfolder.write_json`), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runfolder.write_json(path, obj)


class RecordSink(Protocol):
    """Another place the records of metrics.jsonl go, as :class:`MetricsLog` writes them.

    ``open(records)``: the log was opened holding ``records`` (none for a new run; a resumed
    run's, already cut back to its checkpoint): the sink starts over from them. ``write(record)``:
    one record, as metrics.jsonl holds it (plain JSON types, non-finite numbers as None), after
    it was written there. ``close()``: the log was closed, however training ended (finished,
    stopped, diverged, interrupted).
    """

    def open(self, records: Sequence[dict[str, Any]]) -> None: ...

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class MetricsLog:
    """Appends records to ``metrics.jsonl``, one JSON object a line, flushed per line, and hands each to ``sinks``.

    ``records`` counts the records the file holds (those found on opening and those
    logged since): a checkpoint stores it, so that resuming cuts the log back to exactly
    the records written before that checkpoint (:meth:`truncate_after`).
    """

    def __init__(self, path: str | Path, sinks: Sequence[RecordSink] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = runfolder.read_jsonl_lines(self.path).records
        self.records = len(held)
        self.sinks = tuple(sinks)
        self._f = self.path.open("a", encoding="utf-8")
        try:
            for sink in self.sinks:
                sink.open(held)
        except BaseException:
            self.close()
            raise

    def log(self, record: dict[str, Any]) -> None:
        doc = plain(record)  # what a reader of the file gets back: the sinks see exactly that
        self._f.write(dumps(doc) + "\n")
        self._f.flush()
        self.records += 1
        for sink in self.sinks:
            sink.write(doc)

    def close(self) -> None:
        """Close the file, then every sink (each one even when another fails; the first failure is raised)."""
        self._f.close()
        failure: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as e:  # noqa: BLE001 (closed all, then raised)
                failure = failure or e
        if failure is not None:
            raise failure

    @staticmethod
    def truncate_after(path: str | Path, step: int, records: int | None = None) -> int:
        """Keep the complete records whose step is <= ``step``, and of them the first ``records`` if given.

        Used when resuming: ``records`` is the count a checkpoint stored (:attr:`records`),
        which also drops what was logged at the checkpoint's step after it was written
        (the end-of-training records of a finished run that is resumed for more epochs).
        Lines that are not JSON objects (truncated, invalid UTF-8) or carry no whole
        ``step`` are dropped, with a note on stderr naming the file. Returns the number of
        records kept.
        """
        path = Path(path)
        if not path.exists():
            return 0
        lines = runfolder.read_jsonl_lines(path)
        kept, stepless = [], 0
        for r in lines.records:
            s = r.get("step", 0)
            if isinstance(s, bool) or not isinstance(s, int):
                stepless += 1
                continue
            if s <= step:
                kept.append(dumps(r))
        if records is not None:
            kept = kept[: max(records, 0)]
        bad = len(lines.bad_lines) - (1 if lines.truncated_last else 0) + stepless  # a cut last line: a kill
        if bad > 0:
            print(f"note: {path}: dropped {bad} unreadable line(s) (not a JSON object, invalid UTF-8 or no whole "
                  f"step) while cutting the log back to step {step}", file=sys.stderr)
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        return len(kept)


def git_commit() -> str | None:
    """The commit of the toolkit's source tree, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Versions and platform facts recorded in config.json."""
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "argv": list(sys.argv),
    }
