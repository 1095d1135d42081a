"""A self-contained HTML report of a sweep: ``python -m reports.sweep SWEEP_DIR -o report.html``.

A sweep is what ``python -m sast.experiments grid|rho-sweep`` writes: a folder whose
``results.json`` holds every run's evaluation, the table of means and 95% intervals over
seeds, the paired differences SAST minus SF and minus the compute-matched SF, and rank
correlations across runs (``apps.experiments.cli.analyse``). The report reads that one
file. It opens with pictures: the transfer-gap map (figure a) and one summary table,
setting x rho, of SAST minus SF and minus the compute-matched SF in hard-spike accuracy
with each difference's verdict as a symbol; then it says what the numbers show (findings
generated from them, with their intervals), lays out the results and the paired
differences, and draws the other figures:

a. the transfer-gap map: hard-spike accuracy and transfer gap per setting and method;
b. per-layer attribution: accuracy lost with hard spikes in one layer, regained with
   smooth spikes in one layer;
c. the smooth-mode margins beta (u - theta) per layer, with the soft band |m| < 4;
d. the soft-band fraction over training epochs (when the runs logged it);
e. the mechanism: per sample, input-gradient norm against logit discrepancy; across runs,
   the gap against input-gradient norm, lambda_max, sharpness and the soft-band fraction.

Like :mod:`reports.build` the page has no scripts, loads nothing, and is rendered with
autoescaping on; the figures (:mod:`reports.sweep_figures`) are the only markup passed
through. Any part of ``results.json`` may be missing in a partial or older file: the
report then says "not measured". This module imports neither torch nor ``sast``.

Exit codes: 0 the report was written, 2 bad input (no readable results.json) or an
output that cannot be written, 70 an internal error (:mod:`runfolder.exits`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from markupsafe import Markup

import runfolder

from reports import build, figures
from reports import sweep_figures as sf
from reports import sweep_views as sv
from reports.runs import number, numbers
from reports.views import FigureView

RESULTS_FILE = "results.json"
PROGRESS_FILE = "sweep.json"
"""Written when a sweep starts; results.json only when it ends."""
DEFAULT_OUTPUT = "report.html"
"""Without -o: report.html inside the sweep folder, beside results.json."""
TEMPLATE = "sweep.html"
_PROG = "python -m reports.sweep"
_LAYER_NUMBER = re.compile(r"(\d+)$")
HEADLINE_FACTS = ("axes", "seeds", "runs", "wall time")
"""Facts repeated in the line under the title; all of them are in the section "The sweep"."""

__all__ = ["DEFAULT_OUTPUT", "NotASweep", "build_sweep_report", "load_sweep", "main", "render_sweep"]


class NotASweep(ValueError):
    """A path given as a sweep that has no readable results.json; the message is one line."""


def load_sweep(path: str | Path) -> dict[str, Any]:
    """The sweep's results: ``path`` is a sweep folder holding results.json, or that file itself.

    Raises :class:`NotASweep` (one line naming the path) when there is no such file, or it
    is not a JSON object. Everything inside is read leniently by the report.
    """
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        if path.is_dir() and (path / PROGRESS_FILE).is_file():
            raise NotASweep(f"{path} has {PROGRESS_FILE} but no {RESULTS_FILE}: the sweep has not finished; "
                            f"run the same python -m sast.experiments command again to finish it")
        raise NotASweep(f"{path} is not a sweep: expected a folder holding {RESULTS_FILE} (written by "
                        f"python -m sast.experiments grid|rho-sweep) or that file")
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise NotASweep(f"{file} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise NotASweep(f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        f"rerun python -m sast.experiments to rewrite it") from None
    if not isinstance(results, dict):
        raise NotASweep(f"{file} holds a JSON {type(results).__name__}, expected an object with 'rows', "
                        f"'table', 'paired'; is it a sweep's results.json?")
    return results


# --- figures --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FigureBlock:
    """One of the five figures: per setting (or one), its caption, and what to say when there is no data."""

    id: str
    title: str
    caption: str
    figures: list[FigureView] = field(default_factory=list)
    empty: str = ""


def _layer_label(value: Any) -> str:
    return f"layer {value}" if isinstance(value, (int, str)) and not isinstance(value, bool) else "layer ?"


def _by_layer(labels: Sequence[str]) -> list[str]:
    def key(label: str) -> tuple[int, str]:
        m = _LAYER_NUMBER.search(label)
        return (int(m.group(1)) if m else 1 << 30, label)
    return sorted(set(labels), key=key)


def _title(sw: sv.Sweep, setting: str) -> str:
    return "" if len(sw.settings) <= 1 and not setting else f"setting {sv.setting_label(setting)}"


def map_block(sw: sv.Sweep) -> FigureBlock:
    """a: one transfer-gap map per combination of the axes after the first; its rows are the first axis."""
    block = FigureBlock("fig-map", "a. Transfer-gap map",
                        "Mean over seeds of the hard-spike test accuracy (left) and the transfer gap, smooth minus "
                        "hard accuracy (right), in percent, with the 95% interval over seeds below each mean "
                        "(none with one seed). Columns: HFSB (hard forward, surrogate backward), SF (smooth "
                        "forward), SF-matched (SF with SAST's gradient evaluations) and SAST at each rho.")
    if not sw.settings or not sw.columns:
        return replace(block, empty=f"Transfer-gap map: {sv.NOT_MEASURED} (no runs).")
    names = list(sw.axes)
    row_axis, others = (names[0], names[1:]) if names else ("", [])
    maps: dict[tuple[str, ...], list[str]] = {}
    for s in sw.settings:
        maps.setdefault(tuple(sw.values[s].get(a, "?") for a in others), []).append(s)
    for i, (combo, settings) in enumerate(maps.items()):
        rows = [sw.values[s].get(row_axis, sv.setting_label(s)) if row_axis else sv.SUMMARY_ALL for s in settings]
        title = ", ".join(f"{a} = {v}" for a, v in zip(others, combo))
        svg = sf.transfer_gap_map_svg(
            rows, sw.columns, [[sw.cell(s, c, "hard_acc") for c in sw.columns] for s in settings],
            [[sw.cell(s, c, "gap") for c in sw.columns] for s in settings],
            row_axis=row_axis, sast_rhos=sw.sast_rhos, title=title, key=f"map-{i}")
        block.figures.append(FigureView(title, Markup(svg)))
    return block


def _compared(sw: sv.Sweep) -> list[sf.Series]:
    return [sf.Series("sf", 0.0)] + [sf.Series("sast", rho) for rho in sw.sast_rhos]


def attribution_block(sw: sv.Sweep) -> FigureBlock:
    block = FigureBlock("fig-attribution", "b. Per-layer attribution of the gap",
                        "Per spiking layer, means over seeds (whiskers: range over seeds) for SF and SAST at each "
                        "rho. Left, drop: accuracy lost when only that layer spikes hard (the rest smooth). Right, "
                        "recovered: accuracy regained when only that layer stays smooth (the rest hard). A layer "
                        "with a large drop carries the transfer gap.")
    for i, setting in enumerate(sw.settings):
        bars, layers = [], []
        for series in _compared(sw):
            per_run = []
            for run in sw.runs_of(setting, series):
                entries = [sv.as_dict(x) for x in sv.as_list(sv.as_dict(run.data.get("attribution")).get("layers"))]
                per_run.append({_layer_label(e.get("layer")): e for e in entries})
                layers += list(per_run[-1])
            bars.append((series, per_run))
        layers = _by_layer(layers)
        if not layers:
            continue
        data = [(series, [[number(r[lab].get("drop")) for r in runs if lab in r] for lab in layers],
                 [[number(r[lab].get("recovered")) for r in runs if lab in r] for lab in layers])
                for series, runs in bars if runs]
        svg = sf.attribution_svg(layers, data, sast_rhos=sw.sast_rhos, title=_title(sw, setting), key=f"attr-{i}")
        block.figures.append(FigureView(_title(sw, setting), Markup(svg)))
    if not block.figures:
        return replace(block, empty=f"Per-layer attribution: {sv.NOT_MEASURED}.")
    return block


def margins_block(sw: sv.Sweep) -> FigureBlock:
    block = FigureBlock("fig-margins", "c. Margins in smooth mode",
                        "Density of the margin m = β(u − θ) of every neuron at every time step on the test split, "
                        "in smooth mode, per spiking layer, counts summed over seeds (HFSB dashed). The shaded soft "
                        "band |m| < 4 is where the smooth spike is neither 0 nor 1, so where hard spikes change the "
                        "forward pass; mass outside ±16 is written in the panel.")
    for i, setting in enumerate(sw.settings):
        edges: list[float] = []
        curves = []
        for series in _compared(sw) + [sf.Series("hfsb", 0.0)]:
            total: list[list[float]] = []
            for run in sw.runs_of(setting, series):
                smooth = sv.as_dict(sv.as_dict(run.data.get("margins")).get("smooth"))
                run_edges = [e for e in numbers(smooth.get("edges")) if e is not None]
                if not run_edges or (edges and run_edges != edges):
                    continue
                edges = run_edges
                for li, counts in enumerate(sv.as_list(smooth.get("counts"))):
                    counts = [c or 0.0 for c in numbers(counts)]
                    if li == len(total):
                        total.append(counts)
                    elif len(total[li]) == len(counts):
                        total[li] = [a + b for a, b in zip(total[li], counts)]
            if total:
                curves.append((series, total))
        if not curves:
            continue
        layers = [f"layer {k + 1}" for k in range(max(len(c[1]) for c in curves))]
        svg = sf.margins_svg(edges, layers, curves, sast_rhos=sw.sast_rhos, title=_title(sw, setting),
                             key=f"margins-{i}")
        block.figures.append(FigureView(_title(sw, setting), Markup(svg)))
    if not block.figures:
        return replace(block, empty=f"Margin histograms: {sv.NOT_MEASURED}.")
    return block


def soft_band_block(sw: sv.Sweep) -> FigureBlock:
    block = FigureBlock("fig-soft-band", "d. Soft-band fraction over training",
                        "Per spiking layer, the fraction of smooth-mode margins inside the soft band |m| < 4 at the "
                        "end of each epoch, mean over seeds: how fast each method pushes membrane potentials out "
                        "of the region where hard and smooth spikes differ.")
    for i, setting in enumerate(sw.settings):
        curves = []
        for series in [sf.Series(m, 0.0) for m in ("hfsb", "sf", "sf-matched")] + _compared(sw)[1:]:
            per_epoch: dict[float, list[list[float | None]]] = {}
            for run in sw.runs_of(setting, series):
                for rec in sv.as_list(run.data.get("margins_over_epochs")):
                    epoch = number(sv.as_dict(rec).get("epoch"))
                    if epoch is not None:
                        per_epoch.setdefault(epoch, []).append(numbers(sv.as_dict(rec).get("soft_band_fraction")))
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            n_layers = max(len(f) for fs in per_epoch.values() for f in fs)
            fractions = [[sv.mean_or_none([f[li] for f in per_epoch[e] if li < len(f)]) for e in epochs]
                         for li in range(n_layers)]
            curves.append((series, epochs, fractions))
        if not curves or not any(v is not None for _, _, fr in curves for layer in fr for v in layer):
            continue
        layers = [f"layer {k + 1}" for k in range(max(len(c[2]) for c in curves))]
        svg = sf.soft_band_epochs_svg(layers, curves, sast_rhos=sw.sast_rhos, title=_title(sw, setting),
                                      key=f"soft-band-{i}")
        block.figures.append(FigureView(_title(sw, setting), Markup(svg)))
    if not block.figures:
        return replace(block, empty=f"Soft-band fraction over epochs: {sv.NOT_MEASURED} (the "
                                     "runs logged no margins during training).")
    return block


def mechanism_blocks(sw: sv.Sweep) -> tuple[FigureBlock, FigureBlock]:
    samples = [sv.as_dict(m) for m in sv.as_list(sw.results.get("mechanism_samples"))]
    per_sample = FigureBlock("fig-mechanism", "e. Mechanism, per sample",
                             "One run per method (SF and SAST at each rho, the lowest seed, seed 0 where there is "
                             "one): per test sample, the norm of the loss gradient with respect to the input "
                             "against the logit discrepancy between hard and smooth spikes. The mechanism "
                             "predicts larger discrepancies where input gradients are larger; each run's Spearman "
                             "rank correlation is in the legend.")
    for i, setting in enumerate(sw.settings):
        drawn = []
        for series in _compared(sw):
            runs = [m for m in samples if m.get("setting", "") == setting and m.get("method") == series.method
                    and sv.rho_key(m.get("rho")) == series.rho and number(m.get("seed")) is not None]
            if runs:
                m = min(runs, key=lambda r: number(r.get("seed")))
                drawn.append(sf.Samples(series, numbers(m.get("input_grad_norm")),
                                        numbers(m.get("logit_discrepancy")), number(m.get("spearman"))))
        if drawn:
            svg = sf.mechanism_scatter_svg(drawn, sast_rhos=sw.sast_rhos, title=_title(sw, setting),
                                           key=f"mechanism-{i}")
            per_sample.figures.append(FigureView(_title(sw, setting), Markup(svg)))
    if not per_sample.figures:
        per_sample = replace(per_sample, empty=f"Per-sample mechanism: {sv.NOT_MEASURED}.")
    across = FigureBlock("fig-correlates", "e. Mechanism, across runs",
                         "Each point is one smooth-trained run (SF, SF-matched, SAST; every setting and seed): its "
                         "transfer gap against the mean input-gradient norm, the largest Hessian eigenvalue on the "
                         "checks' probe, the first-order sharpness and the mean soft-band fraction. Panel titles: "
                         "Spearman's rank correlation over all these runs and its p-value; runs of one seed share "
                         "data and initialisation, so p is a guide, not a test at its nominal level.")
    runs = [r for r in sw.runs if r.method in sv.SMOOTH_TRAINED]
    panels = []
    for x, name in sv.CORRELATE_PANELS:
        rec = sw.correlation(x) or {}
        n = number(rec.get("n"))
        panels.append(sf.Correlate(name, [(r.series, r.get(x), r.get("gap")) for r in runs],
                                   number(rec.get("spearman")), number(rec.get("p")), None if n is None else int(n)))
    if any(x is not None and y is not None for p in panels for _, x, y in p.points):
        across.figures.append(FigureView("", Markup(sf.correlates_svg(panels, sast_rhos=sw.sast_rhos))))
    else:
        across = replace(across, empty=f"Mechanism across runs: {sv.NOT_MEASURED}.")
    return per_sample, across


# --- rendering and the command line ---------------------------------------------------------------

def render_sweep(results: dict[str, Any]) -> str:
    """The report's HTML for a sweep's results (as :func:`load_sweep` returns them)."""
    results = results if isinstance(results, dict) else {}
    sw = sv.Sweep(results)
    dataset = results.get("dataset") if isinstance(results.get("dataset"), str) else "sweep"
    experiment = results.get("experiment") if isinstance(results.get("experiment"), str) else ""
    return build._environment().get_template(TEMPLATE).render(
        title=f"{dataset} {experiment}".strip(),
        facts=sv.facts(sw),
        command=sv.command(sw),
        base=sv.base_config(sw),
        headline=[(k, v) for k, v in sv.facts(sw) if k in HEADLINE_FACTS],
        summary=sv.summary_table(sw),
        verdict_legend=[(sv.VERDICT_SYMBOLS[word], text) for word, text in sv.VERDICT_LEGEND],
        findings=sv.findings(sw),
        result_columns=[label for _, label in sv.RESULT_COLUMNS],
        results=sv.result_rows(sw),
        paired=sv.paired_rows(sw),
        paired_measured=sw.paired is not None,
        lead=map_block(sw),
        blocks=[attribution_block(sw), margins_block(sw), soft_band_block(sw), *mechanism_blocks(sw)],
        figure_css=figures.FIGURE_CSS,
    )


def build_sweep_report(sweep_dir: str | Path, output: str | Path | None = None) -> Path:
    """Read the sweep at ``sweep_dir``, render it, write it atomically to ``output``; return its path.

    ``output`` defaults to report.html in the sweep folder. Raises :class:`NotASweep`
    (nothing written) when there is no readable results.json.
    """
    results = load_sweep(sweep_dir)
    path = Path(output) if output is not None else _default_output(sweep_dir)
    build.write_atomic(path, render_sweep(results))
    return path


def _default_output(sweep_dir: str | Path) -> Path:
    sweep_dir = Path(sweep_dir)
    return (sweep_dir if sweep_dir.is_dir() else sweep_dir.parent) / DEFAULT_OUTPUT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Render a sweep's results.json (python -m sast.experiments grid|rho-sweep) into one "
                    "self-contained HTML report: findings, results with 95%% intervals, paired differences, "
                    "the transfer-gap map, per-layer attribution, margins and the mechanism.",
        epilog=runfolder.EXIT_CODES_EPILOG)
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep folder holding results.json, or that file")
    p.add_argument("-o", "--output", default=None,
                   help=f"where to write the HTML report (default: {DEFAULT_OUTPUT} in the sweep folder)")
    return p


@runfolder.guard
def main(argv: Sequence[str] | None = None) -> int:
    """Build the report; print its path. Exit 0 when written, 2 on bad input or an unwritable output."""
    args = build_parser().parse_args(argv)
    try:
        results = load_sweep(args.sweep_dir)
    except NotASweep as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    path = Path(args.output) if args.output else _default_output(args.sweep_dir)
    try:
        build.write_atomic(path, render_sweep(results))
    except OSError as exc:
        print(f"{_PROG}: error: cannot write {path}: {exc.strerror or exc}; choose a writable path with -o",
              file=sys.stderr)
        return 2
    print(path.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
