"""Read a run folder (DESIGN.md, "The run folder") into plain data, recording what is missing.

A run folder ``runs/NAME/`` holds ``config.json``, ``metrics.jsonl`` (one JSON
object a line, ``{"kind": "train"|"eval"|"check"|"probe"|"error", "step", ...}``),
``checks.json`` (a list of CheckResult dicts) and, optionally,
``evaluation.json`` (from ``python -m sast.evaluate``). A NIR file's run folder
(``NAME.sast``, written by ``checks.all`` and ``sast.evaluate`` on ``NAME.nir``) has a
config.json with the model's ``source`` and its ``data`` settings, and no metrics.jsonl.
Every field may be
absent in an older or partial run; :func:`load_run` never raises for that: it
records what is missing or malformed in :attr:`Run.problems`, and the report
says "not measured". Only a folder that is not a run folder at all (neither
config.json nor metrics.jsonl) raises :class:`NotARunFolder`.

The contract itself (file names, statement IDs and names, status words and the
rule that derives them, JSON-lines reading) is :mod:`runfolder`'s; the names
below that come from there are re-exported for the report's modules.

This module reads JSON only: it imports neither torch nor the ``sast`` or
``checks`` packages (``sast.runlog`` pulls torch in through ``sast.checkpoint``),
so a report can be built on a machine without the model stack.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import runfolder
from runfolder import (
    ASSUMPTION_FAILS,
    CHECKPOINT_FILE,
    CHECKPOINT_LIBRARY,
    CHECKS_FILE,
    CONFIG_FILE,
    EVALUATION_FILE,
    HOLDS,
    METRICS_FILE,
    NOT_APPLICABLE,
    SOURCE_CHECKPOINT,
    SOURCE_KEY,
    SOURCE_NIR,
    STATEMENT_NAMES,
    STATUSES,
    VERDICT_IDS,
    VIOLATED,
    JsonLines,
    read_jsonl_lines,
    statement_sort_key,
)

NOT_MEASURED = "not measured"
"""The status shown for a statement that no check record covers (the report's own word:
a run folder never records it, so it is not one of :data:`runfolder.STATUSES`)."""

PLAIN_SGD = "sgd"
"""The only base step under which T6 applies (THEORY.md, T6)."""

read_jsonl = read_jsonl_lines
"""Kept for importers of ``reports.runs.read_jsonl``: returns :class:`runfolder.JsonLines`
(unlike :func:`runfolder.read_jsonl`, which yields the records only)."""

_NOT_A_RUN = (
    "{path} is not a run folder (it has neither config.json nor metrics.jsonl); "
    "pass a folder written by `python -m sast.train`, such as runs/NAME"
)
_NOT_A_DIR = "{path} is not a folder; pass a run folder written by `python -m sast.train`, such as runs/NAME"


def _first_text(*values: Any) -> str | None:
    """The first of ``values`` that is a non-empty string (the sources of a run's setting, in order of trust)."""
    return next((v for v in values if isinstance(v, str) and v), None)


class NotARunFolder(ValueError):
    """A path given as a run folder that is none; the message is one line."""


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (None, NaN, infinities, bools, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def numbers(value: Any) -> list[float | None]:
    """A JSON list as finite floats (None where an entry is not one); [] for a non-list."""
    if not isinstance(value, list):
        return []
    return [number(v) for v in value]


def flag(value: Any) -> bool | None:
    """A JSON boolean, or None for anything else."""
    return value if isinstance(value, bool) else None


def slack(bound: float | None, estimate: float | None) -> float | None:
    """The slack of a check, ``bound / estimate``; None where it is undefined.

    Undefined when either number is missing, or the estimate is not positive
    (a zero estimate gives no finite slack; the report says so in words).
    """
    if bound is None or estimate is None or estimate <= 0:
        return None
    ratio = bound / estimate
    return ratio if math.isfinite(ratio) else None


@dataclass(frozen=True)
class Check:
    """One CheckResult as read from JSON, every field possibly absent.

    ``status`` is one of :data:`runfolder.STATUSES`, taken from the record; where an
    old record lacks it, it is derived by :func:`_derive_status` and
    ``status_derived`` is True.
    ``step`` is the training step of a live-monitor record (None for
    checks.json); ``source`` says which file the record came from.
    """

    id: str
    name: str
    bound: float | None
    estimate: float | None
    ratio: float | None
    holds: bool | None
    status: str
    assumptions: dict[str, bool]
    converged: bool | None
    n_products: int | None
    seed: int | None
    dtype: str | None
    device: str | None
    seconds: float | None
    details: dict[str, Any]
    source: str
    step: int | None = None
    status_derived: bool = False
    local_bound: float | None = None
    looseness: list[dict[str, Any]] = field(default_factory=list)
    local_holds: bool | None = None
    local_kind: str | None = None
    local_failure_probability: float | None = None

    @property
    def broken_certificate(self) -> bool:
        """Whether the local bound, a certificate (not a conditional value), lies below what it bounds."""
        return self.local_holds is False and self.local_kind != "conditional"

    @property
    def slack(self) -> float | None:
        """``bound / estimate`` (see :func:`slack`)."""
        return slack(self.bound, self.estimate)

    @property
    def local_slack(self) -> float | None:
        """``local_bound / estimate`` (see :func:`slack`); None for records without a local bound."""
        return slack(self.local_bound, self.estimate)

    @property
    def failed_assumptions(self) -> list[str]:
        """The IDs of the assumptions recorded as not holding."""
        return [k for k, v in self.assumptions.items() if v is False]


def _derive_status(holds: bool | None, bound: float | None, estimate: float | None,
                   assumptions: dict[str, bool]) -> str:
    """The status of a record that lacks one, by the contract's rule (:func:`runfolder.derive_status`).

    A recorded ``holds`` wins over one recomputed from the numbers: the check judged
    it with its estimator's accuracy (``rtol``), which the record does not carry.
    Where there is neither ``holds`` nor an estimate, nothing was measured: the
    report's own :data:`NOT_MEASURED`.
    """
    if holds is not None:
        return runfolder.status_from_holds(holds, assumptions)
    if bound is not None and estimate is not None:
        return runfolder.derive_status(bound, estimate, assumptions).status
    return NOT_APPLICABLE if estimate is not None else NOT_MEASURED


def parse_looseness(value: Any) -> list[dict[str, Any]]:
    """A record's looseness budget, leniently: entries with a string factor, numbers or None elsewhere."""
    if not isinstance(value, list):
        return []
    out = []
    for e in value:
        if isinstance(e, dict) and isinstance(e.get("factor"), str):
            layer = e.get("layer")
            out.append({"factor": e["factor"], "worst_case": e.get("worst_case"), "measured": e.get("measured"),
                        "log10_ratio": number(e.get("log10_ratio")),
                        "layer": layer if isinstance(layer, (int, str)) and not isinstance(layer, bool) else None})
    return out


def parse_check(record: Any, source: str, step: int | None = None) -> Check | None:
    """A :class:`Check` from one CheckResult dict, or None if it has no statement ID."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        return None
    sid = record["id"]
    raw_assumptions = record.get("assumptions")
    assumptions = {str(k): v for k, v in raw_assumptions.items() if isinstance(v, bool)} \
        if isinstance(raw_assumptions, dict) else {}
    bound, estimate = number(record.get("bound")), number(record.get("estimate"))
    holds = flag(record.get("holds"))
    status = record.get("status")
    derived = status not in STATUSES
    if derived:
        status = _derive_status(holds, bound, estimate, assumptions)
    n_products, seed = number(record.get("n_products")), number(record.get("seed"))
    details = record.get("details")
    name = record.get("name")
    return Check(
        id=sid,
        name=name if isinstance(name, str) and name else STATEMENT_NAMES.get(sid, ""),
        bound=bound,
        estimate=estimate,
        ratio=number(record.get("ratio")),
        holds=holds,
        status=status,
        assumptions=assumptions,
        converged=flag(record.get("converged")),
        n_products=None if n_products is None else int(n_products),
        seed=None if seed is None else int(seed),
        dtype=record["dtype"] if isinstance(record.get("dtype"), str) else None,
        device=record["device"] if isinstance(record.get("device"), str) else None,
        seconds=number(record.get("seconds")),
        details=details if isinstance(details, dict) else {},
        source=source,
        step=step,
        status_derived=derived,
        local_bound=number(record.get("local_bound")),
        looseness=parse_looseness(record.get("looseness")),
        local_holds=flag(record.get("local_holds")),
        local_kind=record["local_kind"] if isinstance(record.get("local_kind"), str) else None,
        local_failure_probability=number(record.get("local_failure_probability")),
    )


@dataclass
class Run:
    """A run folder read into plain data.

    ``config`` is config.json as a dict ({} when missing). The metrics are
    split by kind, in file order: ``train``, ``evals``, ``probes``, ``errors``
    (raw dicts) and ``live_checks`` (monitor records as :class:`Check`, with
    their step). ``checks`` is checks.json (None when missing or unreadable),
    ``evaluation`` is evaluation.json (None when absent). ``problems`` lists,
    one sentence each, what is missing or malformed; ``notes`` lists what a
    reader should know but is not a defect.
    """

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    live_checks: list[Check] = field(default_factory=list)
    monitor: list[dict[str, Any]] = field(default_factory=list)
    """The live monitor's own records ("monitor" start/end/stop events, "monitor_error"), raw, in file order."""
    checks: list[Check] | None = None
    evaluation: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # --- configuration -------------------------------------------------------------------
    @property
    def train_config(self) -> dict[str, Any]:
        """config.json's "train" section ({} when absent)."""
        section = self.config.get("train")
        return section if isinstance(section, dict) else {}

    @property
    def model_config(self) -> dict[str, Any]:
        """config.json's "model" section ({} when absent)."""
        section = self.config.get("model")
        return section if isinstance(section, dict) else {}

    @property
    def environment(self) -> dict[str, Any]:
        """config.json's "environment" section ({} when absent)."""
        section = self.config.get("environment")
        return section if isinstance(section, dict) else {}

    @property
    def rho(self) -> float | None:
        """The SAM radius rho of the run (None when not recorded)."""
        return number(self.train_config.get("rho"))

    @property
    def method(self) -> str | None:
        """The training method (hfsb, sf, sast), or None when not recorded."""
        method = self.train_config.get("method")
        return method if isinstance(method, str) else None

    @property
    def base_optimizer(self) -> str | None:
        """The base step (sgd, momentum, adam): T6's details first, then the train config."""
        t6 = self.final_checks().get("T6")
        return _first_text((t6.details.get("base_optimizer") if t6 else None), self.train_config.get("optimizer"))

    @property
    def device(self) -> str | None:
        """The device the run trained on."""
        return _first_text(self.config.get("device"), self.train_config.get("device"))

    @property
    def data_settings(self) -> dict[str, Any]:
        """config.json's "data" section ({} when absent): what a NIR file's frames were binned with."""
        section = self.config.get("data")
        return section if isinstance(section, dict) else {}

    @property
    def data_name(self) -> str | None:
        """The data set: the train config's, else the data section's (a NIR file's run folder)."""
        return _first_text(self.train_config.get("data"), self.data_settings.get("data"))

    # --- where the model came from -------------------------------------------------------
    @property
    def source_kind(self) -> str | None:
        """"nir" or "checkpoint" as config.json's source records it (None where it records none)."""
        source = self.config.get(SOURCE_KEY)
        kind = source.get("kind") if isinstance(source, dict) else None
        return kind if isinstance(kind, str) else None

    def source(self) -> dict[str, Any]:
        """The model file the results came from: library (or "sast-toolkit checkpoint"), path, sha256.

        evaluation.json's ``source`` first (what ``sast.evaluate`` loaded), then config.json's (a NIR file's
        run folder), then the folder's own ckpt.pt hashed now (``"recorded": False``: a run folder of
        ``sast.train`` whose evaluation did not record it); {} where there is none of these.
        """
        for record in (self.evaluation, self.config):
            source = record.get(SOURCE_KEY) if isinstance(record, dict) else None
            if isinstance(source, dict) and source:
                return {**source, "recorded": True}
        ckpt = self.path / CHECKPOINT_FILE
        if ckpt.is_file():
            try:
                digest = _sha256(ckpt)
            except OSError:
                digest = None
            return {"kind": SOURCE_CHECKPOINT, "library": CHECKPOINT_LIBRARY, "path": str(ckpt), "sha256": digest,
                    "recorded": False}
        return {}

    # --- checks --------------------------------------------------------------------------
    def final_checks(self) -> dict[str, Check]:
        """The latest result per statement ID: checks.json, else the last live-monitor record."""
        latest: dict[str, Check] = {}
        for check in self.live_checks:
            latest[check.id] = check
        for check in self.checks or []:
            latest[check.id] = check
        return dict(sorted(latest.items(), key=lambda kv: statement_sort_key(kv[0])))

    def live_series(self) -> dict[str, list[Check]]:
        """The live-monitor records grouped by statement ID, in step order."""
        series: dict[str, list[Check]] = {}
        for check in self.live_checks:
            series.setdefault(check.id, []).append(check)
        for checks in series.values():
            checks.sort(key=lambda c: -1 if c.step is None else c.step)
        return dict(sorted(series.items(), key=lambda kv: statement_sort_key(kv[0])))

    # --- results -------------------------------------------------------------------------
    def final_accuracy(self) -> tuple[float | None, float | None, float | None, str]:
        """(smooth, hard, gap, source) of the finished run, on the test set.

        The last eval record of metrics.jsonl first (every run that finished an
        epoch has one, so a sweep compares like with like), then evaluation.json,
        then the E1 check's details. The gap is smooth minus hard.
        """
        candidates: list[tuple[dict[str, Any], tuple[str, str, str], str]] = []
        if self.evals:
            last = self.evals[-1]
            epoch = last.get("epoch")
            candidates.append((last, ("test_smooth_acc", "test_hard_acc", "test_gap"),
                               f"metrics.jsonl, epoch {epoch}" if epoch is not None else "metrics.jsonl"))
        if self.evaluation:
            candidates.append((self.evaluation, ("smooth_acc", "hard_acc", "gap"), EVALUATION_FILE))
        e1 = self.final_checks().get("E1")
        if e1 is not None:
            candidates.append((e1.details, ("smooth_acc", "hard_acc", "gap"), f"E1 ({e1.source})"))
        for record, (ks, kh, kg), source in candidates:
            smooth, hard, gap = number(record.get(ks)), number(record.get(kh)), number(record.get(kg))
            if smooth is not None or hard is not None:
                if gap is None and smooth is not None and hard is not None:
                    gap = smooth - hard
                return smooth, hard, gap, source
        return None, None, None, NOT_MEASURED


def _sha256(path: Path) -> str:
    """The sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path, problems: list[str]) -> Any:
    """Parse a JSON file; on failure record one sentence in ``problems`` and return None."""
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        problems.append(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno}); it was ignored.")
    except OSError as exc:
        problems.append(f"{path.name} could not be read ({exc.strerror}); it was ignored.")
    return None


def _line_list(lines: list[int], shown: int = 5) -> str:
    """'3, 8, 12' or '3, 8, 12, 15, 20 and 4 more'."""
    head = ", ".join(map(str, lines[:shown]))
    return head if len(lines) <= shown else f"{head} and {len(lines) - shown} more"


def is_run_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding config.json or metrics.jsonl."""
    return path.is_dir() and ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file())


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read the run folder ``path``; see the module docstring for what is tolerated.

    Raises :class:`NotARunFolder` (one-line message) when ``path`` is not a
    folder or has neither config.json nor metrics.jsonl.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotARunFolder(_NOT_A_DIR.format(path=path))
    if not is_run_folder(path):
        raise NotARunFolder(_NOT_A_RUN.format(path=path))
    run = Run(path=path, name=name or path.resolve().name)

    config_path = path / CONFIG_FILE
    if config_path.is_file():
        config = _read_json(config_path, run.problems)
        if isinstance(config, dict):
            run.config = config
        elif config is not None:
            run.problems.append(f"{CONFIG_FILE} is not a JSON object; it was ignored.")
    else:
        run.problems.append(f"{CONFIG_FILE} is missing: the configuration, versions and command are unknown.")

    metrics_path = path / METRICS_FILE
    if metrics_path.is_file():
        _read_metrics(metrics_path, run)
    elif run.source_kind == SOURCE_NIR:  # trained elsewhere: no log to miss
        run.notes.append(f"The model is a NIR file, trained outside this folder: no {METRICS_FILE} (no training "
                         "curves, live checks or T6 from this toolkit).")
    else:
        run.problems.append(f"{METRICS_FILE} is missing: no training curves or live checks.")

    checks_path = path / CHECKS_FILE
    if checks_path.is_file():
        _read_checks(checks_path, run)
    else:
        missing = f"{CHECKS_FILE} is missing (the final checks did not run or did not finish)"
        run.problems.append(missing + ("; the verdicts come from the last live-monitor records."
                                       if run.live_checks else "."))

    evaluation_path = path / EVALUATION_FILE
    if evaluation_path.is_file():
        evaluation = _read_json(evaluation_path, run.problems)
        if isinstance(evaluation, dict):
            run.evaluation = evaluation
        elif evaluation is not None:
            run.problems.append(f"{EVALUATION_FILE} is not a JSON object; it was ignored.")
    return run


def _read_metrics(path: Path, run: Run) -> None:
    """Split metrics.jsonl into the run's record lists, noting unreadable lines."""
    try:
        lines: JsonLines = read_jsonl_lines(path)
    except OSError as exc:
        run.problems.append(f"{METRICS_FILE} could not be read ({exc.strerror}).")
        return
    bad = list(lines.bad_lines)
    if lines.truncated_last:
        run.problems.append(
            f"{METRICS_FILE}: the last line ({bad[-1]}) is truncated, as when a run is killed "
            "mid-write; it was skipped."
        )
        bad = bad[:-1]
    if bad:
        run.problems.append(f"{METRICS_FILE}: {len(bad)} malformed line(s) skipped (line {_line_list(bad)}).")
    skipped_checks = 0
    for rec in lines.records:
        kind = rec.get("kind")
        if kind == "train":
            run.train.append(rec)
        elif kind == "eval":
            run.evals.append(rec)
        elif kind == "probe":
            run.probes.append(rec)
        elif kind == "error":
            run.errors.append(rec)
        elif kind in ("monitor", "monitor_error"):
            run.monitor.append(rec)
        elif kind == "check":
            step = number(rec.get("step"))
            check = parse_check(rec.get("result"), source="live monitor",
                                step=None if step is None else int(step))
            if check is None:
                skipped_checks += 1
            else:
                run.live_checks.append(check)
    if skipped_checks:
        run.problems.append(f"{METRICS_FILE}: {skipped_checks} check record(s) without a statement ID skipped.")
    if not lines.records:
        run.problems.append(f"{METRICS_FILE} holds no complete record.")


def _read_checks(path: Path, run: Run) -> None:
    """Read checks.json into ``run.checks``, noting a malformed file or entries."""
    data = _read_json(path, run.problems)
    if data is None:
        return
    if not isinstance(data, list):
        run.problems.append(f"{CHECKS_FILE} is not a JSON list of check results; it was ignored.")
        return
    parsed = [parse_check(rec, source=CHECKS_FILE) for rec in data]
    run.checks = [c for c in parsed if c is not None]
    skipped = len(parsed) - len(run.checks)
    if skipped:
        run.problems.append(f"{CHECKS_FILE}: {skipped} entr{'y' if skipped == 1 else 'ies'} without a "
                            "statement ID skipped.")
    if any(c.status_derived for c in run.checks):
        ids = ", ".join(sorted({c.id for c in run.checks if c.status_derived}, key=statement_sort_key))
        run.notes.append(f"{CHECKS_FILE}: no status recorded for {ids}; derived from holds and assumptions.")
