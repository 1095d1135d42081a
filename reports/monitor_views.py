"""The live monitor in a run report: every monitored statement over training, status changes, cost, errors.

:func:`monitor_section` gives the run view's "checks over training" section
(``reports.views.run_view`` wraps it in a ``Section``): one figure per statement the monitor logged (estimate and
bound on a log scale, status changes marked: :mod:`reports.monitor_figures`), and lines
saying what the monitor ran (preset, probe, on-violation), what it cost against the
training time, where a status changed, whether it stopped training, and every
``monitor_error`` record (a quantity that raised was skipped and training went on).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from reports import _format as fmt
from reports import monitor_figures
from reports.runs import VIOLATED, Run, number, statement_sort_key

Figure = tuple[str, Markup, str]
"""A figure of the section: (title, inline SVG, caption)."""


def _events(run: Run, event: str) -> list[dict[str, Any]]:
    return [r for r in run.monitor if r.get("kind") == "monitor" and r.get("event") == event]


def _training_seconds(run: Run) -> float | None:
    """Seconds of the training steps (the eval records' per-epoch ``seconds``, hooks included)."""
    secs = [number(r.get("seconds")) for r in run.evals]
    secs = [s for s in secs if s is not None]
    return sum(secs) if secs else None


def cost_line(run: Run) -> str | None:
    """What the monitor cost: its own seconds, against the training time, and per quantity."""
    ends = _events(run, "end") + _events(run, "stop")
    if not ends:
        return None
    last = ends[-1]
    seconds = number(last.get("seconds"))
    if seconds is None:
        return None
    train = _training_seconds(run)
    share = (f", {fmt.pct(seconds / (train - seconds))} of the rest of the training time"
             if train is not None and train > seconds else "")
    by_id = last.get("seconds_by_id") if isinstance(last.get("seconds_by_id"), dict) else {}
    runs = last.get("runs_by_id") if isinstance(last.get("runs_by_id"), dict) else {}
    parts = [f"{qid} {number(s):.2f} s / {runs.get(qid, '?')}" for qid, s in by_id.items() if number(s) is not None]
    return (f"The monitor took {seconds:.2f} s{share}" + (f" (by quantity, seconds / runs: {', '.join(parts)})"
                                                          if parts else "") + ".")


def monitor_section(run: Run, key: str) -> tuple[list[Figure], list[str], str]:
    """(figures, lines, empty message): one figure per monitored statement (status changes marked), and lines on
    the monitor's set-up, cost, status changes, stop and errors."""
    series = run.live_series()
    lines: list[str] = []
    for start in _events(run, "start")[:1]:
        probe = start.get("probe") if isinstance(start.get("probe"), dict) else {}
        lines.append(f"Preset {fmt.plain(start.get('preset') or 'custom')}: a probe of {fmt.plain(probe.get('size'))} "
                     f"{fmt.plain(probe.get('split', 'training'))} samples (seed {fmt.plain(probe.get('seed'))}); "
                     f"on a violation: {fmt.plain(start.get('on_violation', 'warn'))}.")
    cost = cost_line(run)
    if cost:
        lines.append(cost)
    for stop in _events(run, "stop"):
        lines.append(f"Training was stopped at step {fmt.plain(stop.get('step'))} (--on-violation stop): "
                     f"{fmt.plain(stop.get('reason'))}.")
    figs = []
    for index, (sid, checks) in enumerate(series.items()):
        steps = [c.step if c.step is not None else i for i, c in enumerate(checks)]
        statuses = [c.status for c in checks]
        changes = monitor_figures.status_changes(steps, statuses)
        for step, old, new in changes:
            lines.append(f"Step {step}: {sid} went from {old} to {new}.")
        svg = monitor_figures.monitor_timeline_svg(steps, [c.estimate for c in checks], [c.bound for c in checks],
                                                   statuses, title=f"{sid}: {checks[-1].name}",
                                                   key=f"{key}-monitor{index}")
        failing = sorted({a for c in checks for a in c.failed_assumptions}, key=statement_sort_key)
        bad = sum(s == VIOLATED for s in statuses)
        has_bound = any(c.bound is not None for c in checks)
        caption = (f"{len(checks)} monitored step(s), {steps[0]} to {steps[-1]}; "
                   + ("no bound applies: only the estimate is drawn; " if not has_bound else
                      f"the bound is violated at {bad} of them; " if bad else "the bound holds at all; ")
                   + (f"assumption(s) failing somewhere: {', '.join(failing)}; " if failing else
                      "every recorded assumption held; ")
                   + (f"{len(changes)} status change(s), marked." if changes else "no status change."))
        figs.append((f"{sid} {checks[-1].name}", Markup(svg), caption))
    errors = [r for r in run.monitor if r.get("kind") == "monitor_error"]
    if errors:
        lines.append(f"{len(errors)} monitor error(s): the quantity was skipped at that step and training went on.")
        lines += [f"Step {fmt.plain(e.get('step'))}: {fmt.plain(e.get('id'))} failed: {fmt.plain(e.get('error'))}"
                  for e in errors]
    if not figs and not lines:
        return [], [], ("The live monitor logged nothing during training (no \"check\" or \"monitor\" records in "
                        "metrics.jsonl; train with --monitor default).")
    return figs, lines, "" if figs else "The live monitor logged no check result during training."
