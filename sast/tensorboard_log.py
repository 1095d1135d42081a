"""The run's records mirrored into TensorBoard event files: the ``--tensorboard DIR`` flag.

    python -m sast.train --method sast --rho 0.3 --tensorboard runs/tb
    tensorboard --logdir runs/tb

:class:`TensorBoardLog` is a record sink of :class:`sast.runlog.MetricsLog`
(``sast.train.train(..., sinks=[...])``): every record is handed to it as it is written to
metrics.jsonl, and it writes that record's numbers as TensorBoard scalars through
``torch.utils.tensorboard.SummaryWriter``. Nothing else feeds it, so the event files and
metrics.jsonl cannot disagree. Each run writes its own subfolder ``DIR/RUN``, named like its
run folder (:func:`tensorboard_sinks`). Tags (:func:`scalars`), each at a global step:

=============================================  ==================  =====================================
tag                                            global step         from the metrics.jsonl records
=============================================  ==================  =====================================
``train/loss``, ``train/grad_norm``,           optimisation step   ``"train"`` (every ``log_every`` steps;
``train/perturbed_loss`` (SAST)                                    the loss is the mean of those steps)
``eval/{val,test}_{smooth,hard}_acc``,         epoch (1, 2, ...)   ``"eval"`` (the end of each epoch)
``eval/{val,test}_{smooth,hard}_loss``,
``eval/test_gap``
``ID/estimate``, ``ID/bound``,                 optimisation step   the live monitor's ``"check"`` and
``ID/local_bound``, ``ID/status``                                  ``"probe"`` records; ID their ``id``
``probe/loss``, ``probe/sigma2``               optimisation step   ``"probe"`` (T6's F and sigma^2; its
                                                                   estimate is ``||grad F||^2``)
=============================================  ==================  =====================================

ID is the statement ID the record carries (A4, T2, ..., T7; ``probe`` for T6's inputs). A
check record's local bound is its ``local_bound``, or its CheckResult's (``result``) where the
record has none at the top. ``ID/status`` is the status word as a number, its index in
:data:`runfolder.STATUSES` (:data:`STATUS_CODES`): 0 holds, 1 violated, 2 assumption fails,
3 not applicable. A field that is absent or null (no bound applies, no local bound, a
non-finite number) is not written; records of other kinds (the monitor's start and end,
errors, ``extend``) have no scalars. TensorBoard keeps scalars in single precision: a value
reads back as metrics.jsonl's rounded to float32, and one beyond float32's range
(3.4e38, a vacuous bound) as infinity.

Starting and resuming. Each launch of a run writes one new event file in ``DIR/RUN``. When
the log opens (training starts, after the run folder is locked) the sink writes again every
record that metrics.jsonl holds, into that new file, whose first event marks a restart at
step 0 (``purge_step=0``): TensorBoard then shows the new file's points in place of the
earlier files', also where it had those loaded already (its Python reader drops every earlier
point at the mark; its fast data server drops, tag by tag, the points at and after the first
step the new file writes, so only a tag that the new file never writes keeps old points). A
new run starts from an empty log; a resumed run (``--resume``) from its log cut back to its
checkpoint, so its TensorBoard folder shows what an uninterrupted run's would (an extended
run's included: the first segment's end-of-run records are dropped from both), and what a
killed launch wrote past its checkpoint is gone. Earlier files are kept, not deleted
(TensorBoard's reader stops following a folder whose current file vanishes), so a reader
that ignores the restart mark sees each launch. The writer is flushed every
:data:`FLUSH_SECONDS` and closed when training ends, also on Ctrl-C, a stop or divergence. A
finished run that is resumed trains nothing and leaves its folder as it is.

``tensorboard`` is an optional dependency (``pip install 'sast-toolkit[tensorboard]'``):
:func:`require_tensorboard` raises :class:`TensorBoardMissing`, which the command lines
report in one line (exit 2) before any work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runfolder import STATUSES, check_writable

TENSORBOARD_INSTALL = "pip install 'sast-toolkit[tensorboard]'"

STATUS_CODES: Mapping[str, int] = {word: code for code, word in enumerate(STATUSES)}
"""``ID/status``: a status word of the run folder's contract as a number, its index in ``runfolder.STATUSES``."""

TRAIN_FIELDS = ("loss", "grad_norm", "perturbed_loss")
"""Fields of a ``"train"`` record written as ``train/FIELD`` at the record's step."""
EVAL_FIELDS = ("val_smooth_acc", "val_hard_acc", "test_smooth_acc", "test_hard_acc", "test_gap",
               "val_smooth_loss", "val_hard_loss", "test_smooth_loss", "test_hard_loss")
"""Fields of an ``"eval"`` record written as ``eval/FIELD`` at the record's epoch."""
MONITOR_KINDS = ("check", "probe")
"""The kinds of the live monitor's records that carry an estimate, a bound and a status."""
MONITOR_FIELDS = ("estimate", "bound", "local_bound", "status")
"""Fields of a monitor record written as ``ID/FIELD`` at the record's step (``status`` through STATUS_CODES)."""
PROBE_FIELDS = ("loss", "sigma2")
"""Further fields of a ``"probe"`` record (T6's F and sigma^2), written as ``ID/FIELD``."""

FLUSH_SECONDS = 10
"""How often the writer's thread flushes to disk: a TensorBoard that is open shows new points within seconds."""
EVENT_FILE_PREFIX = "events.out.tfevents."
"""How the name of every event file of a SummaryWriter begins."""


def tensorboard_help(run: str = "the run folder's name") -> str:
    """The ``--help`` of ``--tensorboard`` in every command line that has it; ``run`` says what names ``DIR/RUN``."""
    codes = ", ".join(f"{code} {word}" for word, code in STATUS_CODES.items())
    return (f"write TensorBoard event files into DIR/RUN (RUN: {run}), mirroring metrics.jsonl: train/loss by step, "
            "eval/{val,test}_{smooth,hard}_{acc,loss} by epoch, and each live check as ID/estimate, ID/bound, "
            f"ID/local_bound and ID/status ({codes}) by step. Each launch (--resume too) writes the log again into a "
            f"new event file that supersedes the earlier ones. Needs {TENSORBOARD_INSTALL}")


class TensorBoardMissing(ImportError, ValueError):
    """``--tensorboard`` without the tensorboard package (an ImportError; also a ValueError: one line, exit 2)."""


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or :class:`TensorBoardMissing` naming the extra to install."""
    try:
        import tensorboard  # noqa: F401 (imported first: torch's wrapper would hide which package is missing)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise TensorBoardMissing(f"--tensorboard needs the tensorboard package, which could not be imported ({e}); "
                                 f"install it: {TENSORBOARD_INSTALL}") from None
    return SummaryWriter


def _number(value: Any) -> float | None:
    """``value`` as a float where it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def scalars(record: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """The (tag, value, global step) that :class:`TensorBoardLog` writes for one metrics.jsonl record (module table)."""
    kind = record.get("kind")
    out: list[tuple[str, float, int]] = []

    def add(tag: str, value: Any, step: Any) -> None:
        number, at = _number(value), _number(step)
        if number is not None and at is not None:
            out.append((tag, number, int(at)))

    if kind == "train":
        for name in TRAIN_FIELDS:
            add(f"train/{name}", record.get(name), record.get("step"))
    elif kind == "eval":
        for name in EVAL_FIELDS:
            add(f"eval/{name}", record.get(name), record.get("epoch"))
    elif kind in MONITOR_KINDS and isinstance(record.get("id"), str) and record["id"]:
        sid, step = record["id"], record.get("step")
        result = record.get("result") if isinstance(record.get("result"), Mapping) else {}
        for name in MONITOR_FIELDS:
            value = record[name] if name in record else result.get(name)
            if name == "status":
                value = STATUS_CODES.get(value) if isinstance(value, str) else None
            add(f"{sid}/{name}", value, step)
        if kind == "probe":
            for name in PROBE_FIELDS:
                add(f"{sid}/{name}", record.get(name), step)
    return out


class TensorBoardLog:
    """A record sink (:class:`sast.runlog.RecordSink`) that writes each record's :func:`scalars` into ``log_dir``.

    Nothing is touched until :meth:`open` (the run folder is locked by then): it starts a new
    event file in ``log_dir`` that supersedes the earlier ones and holds the records the log
    holds, then :meth:`write` adds each new one; :meth:`close` flushes and closes the writer
    (module docstring).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    def open(self, records: Sequence[Mapping[str, Any]]) -> None:
        summary_writer = require_tensorboard()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # purge_step=0: TensorBoard drops the earlier files' points (also those it has loaded) on reading this file
        self._writer = summary_writer(str(self.log_dir), purge_step=0, flush_secs=FLUSH_SECONDS)
        for record in records:
            self.write(record)
        self._writer.flush()

    def write(self, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            raise RuntimeError(f"TensorBoardLog({self.log_dir}) was written to before it was opened")
        for tag, value, step in scalars(record):
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def tensorboard_sinks(root: str | os.PathLike[str] | None, run: str) -> list[TensorBoardLog]:
    """The sinks of ``--tensorboard ROOT`` for the run named ``run``: none without ROOT, else ``ROOT/run``'s log.

    Checked before any work: the tensorboard package imports (:class:`TensorBoardMissing`)
    and ``ROOT/run`` can be written (the OSError that writing it would raise).
    """
    if root is None:
        return []
    require_tensorboard()
    log_dir = Path(root) / run
    check_writable(log_dir / EVENT_FILE_PREFIX)
    return [TensorBoardLog(log_dir)]


__all__ = ["EVAL_FIELDS", "MONITOR_FIELDS", "MONITOR_KINDS", "PROBE_FIELDS", "STATUS_CODES", "TENSORBOARD_INSTALL",
           "TRAIN_FIELDS", "TensorBoardLog", "TensorBoardMissing", "require_tensorboard", "scalars",
           "tensorboard_help", "tensorboard_sinks"]
