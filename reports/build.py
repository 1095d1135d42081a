"""Build one self-contained HTML report from run folders: ``python -m reports.build RUN_DIR... -o report.html``.

The report opens offline in any browser: its only parts are inline CSS and
inline SVG figures (see :mod:`reports.figures`); it has no scripts and loads
nothing. It is rendered by a jinja2 template with autoescaping on, so no string
from a run (names, paths, config values) can inject markup; the figures are
the only markup passed through unescaped, and matplotlib escapes their text.

A reader sees, per run: a banner for any violated bound, the verdict table
(one row per statement of THEORY.md with its assumptions, bound, estimate,
slack = bound / estimate and status), each live-monitored check over training,
T6 (convergence), T7 (local mechanism), the training curves with E1/E2; then,
with several runs, a comparison (and the rho sweep when rho varies); then the
configuration and the command that reproduces each run.

Exit codes: 0 the report was written (whatever the verdicts: rendering is not
checking; ``python -m checks.all`` exits 1 on a violated bound), 2 bad input
(a path that is not a run folder) or an output that cannot be written, 70 an internal
error (:mod:`runfolder.exits`).

This module is the command line and the rendering; the view models are in
:mod:`reports.views`, the command and configuration of each run in
:mod:`reports.provenance`, and reading a run folder in :mod:`reports.runs`.
Their public names are re-exported here, where callers have always found them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import jinja2

import runfolder
from reports import figures
from reports.provenance import command_line, reproduce_command
from reports.runs import (  # re-exported: importers have always found these here
    NOT_MEASURED,
    PLAIN_SGD,
    STATEMENT_NAMES,
    VERDICT_IDS,
    Check,
    NotARunFolder,
    Run,
    flag,
    load_run,
    number,
    numbers,
    statement_sort_key,
)
from reports.views import (
    ATTRIBUTION_HEADERS,
    ComparisonView,
    FigureView,
    RunView,
    Section,
    TableRow,
    VerdictRow,
    comparison,
    run_anchor,
    run_view,
    t6_section,
    t7_section,
    timeline_section,
    training_section,
    transfer_rows,
    verdict_rows,
    violations,
)

DEFAULT_OUTPUT = "report.html"
"""Where the report goes without -o: report.html in the current folder."""

REPORT_MODE = 0o644
"""File mode of the written report under the usual umask 022 (:func:`runfolder.atomic_write_text`
gives a new file the umask's mode, as a plain ``open`` would)."""

TEMPLATE = "report.html"
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_PROG = "python -m reports.build"

__all__ = [
    "DEFAULT_OUTPUT", "REPORT_MODE", "TEMPLATE",
    "build_parser", "build_report", "load_runs", "main", "render_report", "write_atomic",
    # reports.views
    "ComparisonView", "FigureView", "RunView", "Section", "TableRow", "VerdictRow", "comparison", "run_anchor",
    "run_view", "t6_section", "t7_section", "timeline_section", "training_section", "transfer_rows",
    "verdict_rows", "violations",
    # reports.provenance
    "command_line", "reproduce_command",
    # reports.runs
    "NOT_MEASURED", "PLAIN_SGD", "STATEMENT_NAMES", "VERDICT_IDS", "Check", "NotARunFolder", "Run", "flag",
    "load_run", "number", "numbers", "statement_sort_key",
]


def _environment() -> jinja2.Environment:
    """The jinja2 environment: templates beside this module, autoescaping on for every template."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Read each run folder; names are the folder names, or the paths where two names collide.

    Raises :class:`NotARunFolder` for the first path that is not a run folder.
    """
    paths = [Path(p) for p in paths]
    names = [Path(os.path.realpath(p)).name for p in paths]  # realpath: a symbolic-link loop is load_run's to report
    return [load_run(p, name=str(p) if names.count(n) > 1 else n) for p, n in zip(paths, names)]


def render_report(runs: Sequence[Run]) -> str:
    """The report's HTML for ``runs`` (at least one)."""
    if not runs:
        raise ValueError("render_report needs at least one run; pass the runs that load_runs returned")
    views = [run_view(run, i) for i, run in enumerate(runs)]
    all_violations = [(v.anchor, v.name, text) for v in views for text in v.violations]
    title = views[0].name if len(views) == 1 else f"{len(views)} runs"
    return _environment().get_template(TEMPLATE).render(
        title=title,
        runs=views,
        violations=all_violations,
        comparison=comparison(runs),
        attribution_headers=ATTRIBUTION_HEADERS,
        figure_css=figures.FIGURE_CSS,
    )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`runfolder.atomic_write_text`), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    runfolder.atomic_write_text(path, text)


def build_report(run_dirs: Sequence[str | Path], output: str | Path = DEFAULT_OUTPUT) -> Path:
    """Read ``run_dirs``, render them, write the report atomically to ``output``; return its path.

    Raises :class:`NotARunFolder` when a path is not a run folder (nothing is written).
    """
    html = render_report(load_runs(run_dirs))
    output = Path(output)
    write_atomic(output, html)
    return output


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m reports.build``."""
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Render run folders (config.json, metrics.jsonl, checks.json, evaluation.json) into one "
                    "self-contained HTML report that opens offline: verdicts per THEORY.md statement, the "
                    "checks over training, T6, T7, training curves, a comparison of several runs, and the "
                    "command that reproduces each run.",
        epilog=runfolder.EXIT_CODES_EPILOG,
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run folder written by python -m sast.train")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                   help=f"where to write the HTML report (default: {DEFAULT_OUTPUT} in the current folder)")
    return p


@runfolder.guard
def main(argv: Sequence[str] | None = None) -> int:
    """Build the report; print its path. Exit 0 when written, 2 on bad input or an unwritable output."""
    args = build_parser().parse_args(argv)
    try:
        runs = load_runs(args.run_dirs)
    except NotARunFolder as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    path = Path(args.output)
    try:
        write_atomic(path, render_report(runs))
    except OSError as exc:
        print(f"{_PROG}: error: cannot write {path}: {exc.strerror or exc}; choose a writable path with -o",
              file=sys.stderr)
        return 2
    print(path.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
