"""The sweep report's figures: plain data in, an inline ``<svg ...>`` string out, one function per figure.

The plumbing is :mod:`reports.figures`' (no pyplot, settings inside an rc context,
deterministic ids, run strings drawn as literal text through :func:`~reports.figures.text`);
the data come from :mod:`reports.sweep_views`, which reads a sweep's ``results.json``.
Every series is a method at a rho (:class:`Series`): HFSB, SF and the compute-matched SF
keep one colour and line style each, SAST's rhos run along a sequential colour map, so a
series reads the same in every figure. Empty data gives a figure that says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from reports.figures import (  # the plumbing of the run report's figures, shared
    BLACK, BLUE, FIG_WIDTH_IN, FONT_SIZE_PT, GREEN, GREY, LEGEND_ROW_IN, MARGIN_BOTTOM_IN, MARGIN_LEFT_IN,
    MARGIN_RIGHT_IN, MARGIN_TOP_IN, MARKER_SIZE, PANEL_GAP_IN, PERCENT, SCATTER_SIZE, _finite, _log_axis,
    _new_figure, _no_data, _render, text,
)
from reports.runs import NOT_MEASURED

SOFT_BAND = 4.0
"""The soft band |beta (u - theta)| < 4 of THEORY.md E1 (``sast.gap.SOFT_BAND``; a test keeps them equal)."""
SAST_COLORMAP, SAST_SHADES = "plasma", (0.25, 0.8)
"""SAST's rhos, smallest to largest, along this part of the colour map (its yellow end is unreadable on white)."""
MAX_SCATTER_POINTS = 400
"""Per-sample points drawn per run in the mechanism scatter (every k-th sample above this; each is an SVG element)."""
MAP_SIDE_BY_SIDE_COLUMNS = 4
"""Above this many columns the two heatmaps of the transfer-gap map are stacked (the cells' labels need room)."""
MAP_ROW_IN, MAP_LABEL_CHARS = 0.5, 14
"""Height of one heatmap row (inches), and the longest row label before it is cut with an ellipsis."""
CELL_FONT_PT = FONT_SIZE_PT - 1.5
PANELS_PER_ROW = 4
"""Per-layer panels side by side before a new row starts."""
PANEL_ROW_IN = 2.6
CORRELATES_PER_ROW = 2
"""The across-runs mechanism panels two a row: their two-line titles need the width."""
TITLE_ROOM_IN = 0.3
"""Extra top margin for a figure title (suptitle) above the panels' own titles."""
LIGHT_TEXT_BELOW = 0.5
"""A heatmap cell darker than this relative luminance gets white text."""
BAR_GROUP_WIDTH = 0.8
P_FLOOR = 1e-3
"""p-values below this read 'p < 0.001': the runs are not independent draws, so smaller ones mean nothing more."""
OUTSIDE_SHOWN = 5e-4
"""Margin mass outside the histogram's range is written in the panel from this fraction on (0.1% rounded)."""

METHOD_NAMES = {"hfsb": "HFSB", "sf": "SF", "sf-matched": "SF-matched", "sast": "SAST"}
_FIXED_STYLES = {"hfsb": (BLACK, "--", "v"), "sf": (BLUE, "-", "o"), "sf-matched": (GREEN, ":", "s")}
_SAST_MARKERS = ("D", "^", "P", "X", "*", "h")


class Series(NamedTuple):
    """A method at one rho: the unit every sweep figure draws one line, bar or point colour for."""

    method: str
    rho: float

    @property
    def label(self) -> str:
        name = METHOD_NAMES.get(self.method, self.method)
        return f"{name} ρ={self.rho:g}" if self.method == "sast" else name


class Style(NamedTuple):
    color: str
    linestyle: str
    marker: str


class Cell(NamedTuple):
    """A mean over seeds with its 95% interval (None where not measured, lo/hi None with one seed)."""

    mean: float | None
    lo: float | None = None
    hi: float | None = None


class Samples(NamedTuple):
    """One run's per-sample mechanism numbers: input-gradient norm, logit discrepancy, their Spearman."""

    series: Series
    input_grad_norm: Sequence[float | None]
    logit_discrepancy: Sequence[float | None]
    spearman: float | None


class Correlate(NamedTuple):
    """One panel of the across-runs mechanism figure: a quantity against the gap, run by run."""

    name: str
    points: Sequence[tuple[Series, float | None, float | None]]
    spearman: float | None
    p: float | None
    n: int | None


def style_of(series: Series, sast_rhos: Sequence[float]) -> Style:
    """Colour, line style and marker of ``series``; SAST's shade is its rank among ``sast_rhos``."""
    if series.method in _FIXED_STYLES:
        return Style(*_FIXED_STYLES[series.method])
    rhos = sorted(set(sast_rhos) | {series.rho})
    i = rhos.index(series.rho)
    lo, hi = SAST_SHADES
    shade = lo + (hi - lo) * (i / (len(rhos) - 1) if len(rhos) > 1 else 0.5)
    color = matplotlib.colors.to_hex(matplotlib.colormaps[SAST_COLORMAP](shade))
    return Style(color, "-", _SAST_MARKERS[i % len(_SAST_MARKERS)])


def p_text(p: float | None) -> str:
    """A p-value as text: 'p = 0.031', 'p < 0.001' (smaller values are not meaningful here), 'p not measured'."""
    if not _finite(p):
        return f"p {NOT_MEASURED}"
    return "p < 0.001" if p < P_FLOOR else f"p = {p:.2g}"


def _short(label: str, limit: int = MAP_LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _suptitle(fig: Figure, title: str) -> None:
    """The figure's own title (a setting), left-aligned above the panels' titles."""
    if title:
        fig.suptitle(text(title), x=0.01, ha="left", fontweight="bold", fontsize=FONT_SIZE_PT + 1)


def _panel_grid(n: int, *, legend_rows: int = 0, title: bool = False, row_in: float = PANEL_ROW_IN,
                per_row: int = PANELS_PER_ROW, extra_gap_in: float = 0.0) -> tuple[Figure, list[Axes]]:
    """``n`` panels, at most ``per_row`` a row, fixed margins, room for a legend below (and
    ``extra_gap_in`` more between rows, for panel titles of several lines)."""
    ncols = max(1, min(n, per_row))
    nrows = max(1, math.ceil(n / ncols))
    bottom = MARGIN_BOTTOM_IN + legend_rows * LEGEND_ROW_IN
    top = MARGIN_TOP_IN + (TITLE_ROOM_IN if title else 0.0)
    gap = MARGIN_BOTTOM_IN + MARGIN_TOP_IN + extra_gap_in  # between rows: the x labels above, the panel titles below
    height = bottom + top + nrows * row_in + (nrows - 1) * gap
    fig = Figure(figsize=(FIG_WIDTH_IN, height))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    width = (FIG_WIDTH_IN - MARGIN_LEFT_IN - MARGIN_RIGHT_IN - (ncols - 1) * PANEL_GAP_IN) / ncols
    fig.subplots_adjust(left=MARGIN_LEFT_IN / FIG_WIDTH_IN, right=1 - MARGIN_RIGHT_IN / FIG_WIDTH_IN,
                        bottom=bottom / height, top=1 - top / height, wspace=PANEL_GAP_IN / width,
                        hspace=gap / row_in)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend_below(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for the figure, below the panels (each label once)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(len(seen), 6),
                   bbox_to_anchor=(0.5, 0.0))


def _legend_rows(n: int) -> int:
    return max(1, math.ceil(n / 6))


# --- a: the transfer-gap map ----------------------------------------------------------------------

def transfer_gap_map_svg(row_labels: Sequence[str], columns: Sequence[Series],
                         hard: Sequence[Sequence[Cell]], gap: Sequence[Sequence[Cell]],
                         *, row_axis: str, sast_rhos: Sequence[float] = (), title: str = "",
                         key: str = "gap-map") -> str:
    """Two heatmaps, hard-spike accuracy and transfer gap (means over seeds, in %), rows x methods.

    ``hard[i][j]`` and ``gap[i][j]`` are the cells of row ``row_labels[i]`` (a value of
    ``row_axis``) and column ``columns[j]``; each cell reads "mean" over "[lo, hi]". The
    gap's colours diverge around 0 (smaller is better), the accuracy's are sequential.
    """
    stacked = len(columns) > MAP_SIDE_BY_SIDE_COLUMNS
    nrows = max(1, len(row_labels))
    panel_h = nrows * MAP_ROW_IN + 0.1
    top = MARGIN_TOP_IN + (TITLE_ROOM_IN if title else 0.0)
    bottom = MARGIN_BOTTOM_IN + 0.25  # two-line column labels

    def draw() -> Figure:
        height = top + bottom + (2 * panel_h + bottom + MARGIN_TOP_IN if stacked else panel_h)
        fig = Figure(figsize=(FIG_WIDTH_IN, height))
        grid = (2, 1) if stacked else (1, 2)
        axes = fig.subplots(*grid, squeeze=False).ravel().tolist()
        fig.subplots_adjust(left=MARGIN_LEFT_IN / FIG_WIDTH_IN + 0.02, right=1 - MARGIN_RIGHT_IN / FIG_WIDTH_IN,
                            bottom=bottom / height, top=1 - top / height, wspace=0.35,
                            hspace=(bottom + MARGIN_TOP_IN) / panel_h)
        _suptitle(fig, title)
        _heatmap(fig, axes[0], row_labels, columns, hard, row_axis=row_axis,
                 what="hard-spike accuracy (%)", diverging=False)
        _heatmap(fig, axes[1], row_labels, columns, gap, row_axis=row_axis,
                 what="transfer gap, smooth − hard (pp)", diverging=True)
        return fig

    return _render(key, "Transfer-gap map: hard-spike accuracy and transfer gap per method and setting", draw)


def _cell_text(cell: Cell, signed: bool) -> str:
    if cell.mean is None:
        return "not\nmeasured"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    head = fmt.format(cell.mean * PERCENT)
    if cell.lo is None or cell.hi is None:
        return head
    return f"{head}\n[{cell.lo * PERCENT:.1f}, {cell.hi * PERCENT:.1f}]"


def _heatmap(fig: Figure, ax: Axes, row_labels: Sequence[str], columns: Sequence[Series],
             cells: Sequence[Sequence[Cell]], *, row_axis: str, what: str, diverging: bool) -> None:
    ax.set_title(what, loc="left")
    n_rows, n_cols = len(row_labels), len(columns)
    values = np.full((max(1, n_rows), max(1, n_cols)), np.nan)
    for i in range(n_rows):
        for j in range(n_cols):
            cell = cells[i][j] if i < len(cells) and j < len(cells[i]) else Cell(None)
            if _finite(cell.mean):
                values[i, j] = cell.mean * PERCENT
    if not n_rows or not n_cols or np.isnan(values).all():
        _no_data(ax, NOT_MEASURED)
        return
    finite = values[np.isfinite(values)]
    if diverging:
        span = max(float(np.abs(finite).max()), 1e-9)
        norm: Normalize = TwoSlopeNorm(0.0, -span, span)
        cmap = matplotlib.colormaps["RdBu_r"]
    else:
        lo, hi = float(finite.min()), float(finite.max())
        norm = Normalize(lo - 1.0, hi) if hi - lo < 1e-9 else Normalize(lo, hi)
        cmap = matplotlib.colormaps["cividis"]
    cmap = cmap.with_extremes(bad="#eeeeee")
    mesh = ax.pcolormesh(np.ma.masked_invalid(values), cmap=cmap, norm=norm, edgecolors="white", linewidth=1.5)
    for i in range(n_rows):
        for j in range(n_cols):
            cell = cells[i][j] if i < len(cells) and j < len(cells[i]) else Cell(None)
            if np.isfinite(values[i, j]):
                r, g, b, _ = cmap(norm(values[i, j]))
                color = "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < LIGHT_TEXT_BELOW else BLACK
            else:
                color = GREY
            ax.text(j + 0.5, i + 0.5, _cell_text(cell, diverging), ha="center", va="center",
                    fontsize=CELL_FONT_PT, color=color, linespacing=1.15)
    ax.set_xticks([j + 0.5 for j in range(n_cols)],
                  [text(s.label.replace(" ", "\n", 1)) for s in columns])
    ax.set_yticks([i + 0.5 for i in range(n_rows)], [text(_short(r)) for r in row_labels])
    ax.set_ylabel(text(_short(row_axis)) if row_axis else "")
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)  # first value on top, as in the tables
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(mesh, ax=ax, fraction=0.04, pad=0.02).outline.set_visible(False)


# --- b: per-layer attribution ---------------------------------------------------------------------

def attribution_svg(layers: Sequence[str], bars: Sequence[tuple[Series, Sequence[Sequence[float]],
                                                                 Sequence[Sequence[float]]]],
                    *, sast_rhos: Sequence[float] = (), title: str = "", key: str = "attribution") -> str:
    """Per layer and series: ``drop`` (accuracy lost with hard spikes in that layer only) and
    ``recovered`` (accuracy regained with smooth spikes in that layer only), in percentage points.

    ``bars`` holds, per series, the per-seed values of drop and of recovered for each layer;
    a bar is their mean, its whisker their range over seeds.
    """
    def draw() -> Figure:
        fig, axes = _panel_grid(2, legend_rows=_legend_rows(len(bars)), title=bool(title))
        _suptitle(fig, title)
        names = ("drop: hard spikes in this layer only", "recovered: smooth spikes in this layer only")
        for panel, (ax, name) in enumerate(zip(axes, names)):
            ax.set_title(name, loc="left")
            drawn = False
            width = BAR_GROUP_WIDTH / max(1, len(bars))
            for k, (series, drops, recovered) in enumerate(bars):
                per_layer = drops if panel == 0 else recovered
                style = style_of(series, sast_rhos)
                xs, means, lo_err, hi_err = [], [], [], []
                for li in range(len(layers)):
                    vals = [v * PERCENT for v in (per_layer[li] if li < len(per_layer) else []) if _finite(v)]
                    if vals:
                        m = sum(vals) / len(vals)
                        xs.append(li - BAR_GROUP_WIDTH / 2 + (k + 0.5) * width)
                        means.append(m)
                        lo_err.append(m - min(vals))
                        hi_err.append(max(vals) - m)
                if xs:
                    drawn = True
                    ax.bar(xs, means, width * 0.92, color=style.color, label=text(series.label),
                           yerr=[lo_err, hi_err], error_kw={"elinewidth": 0.8, "ecolor": GREY, "capsize": 0})
            if not drawn:
                _no_data(ax, NOT_MEASURED)
                continue
            ax.axhline(0.0, color=BLACK, linewidth=0.8)
            ax.set_xticks(range(len(layers)), [text(_short(lab)) for lab in layers])
            ax.set_ylabel("accuracy (percentage points)")
            ax.grid(axis="x", visible=False)
        _legend_below(fig, axes)
        return fig

    return _render(key, "Per-layer attribution of the transfer gap: drop and recovered accuracy", draw)


# --- c: margin histograms -------------------------------------------------------------------------

def margins_svg(edges: Sequence[float], layers: Sequence[str],
                curves: Sequence[tuple[Series, Sequence[Sequence[float]]]],
                *, sast_rhos: Sequence[float] = (), title: str = "", key: str = "margins") -> str:
    """Smooth-mode density of the margin beta (u - theta) per layer, one line per series.

    ``curves`` holds per series the histogram counts per layer (len(edges) + 1 bins: one
    below edges[0], one at or above edges[-1]), summed over seeds. The density is count /
    (total x bin width); the mass outside the edges is written in the panel. The soft band
    |beta (u - theta)| < :data:`SOFT_BAND` is shaded.
    """
    def draw() -> Figure:
        fig, axes = _panel_grid(max(1, len(layers)), legend_rows=_legend_rows(len(curves)), title=bool(title))
        _suptitle(fig, title)
        usable = len(edges) >= 2
        for li, ax in enumerate(axes):
            ax.set_title(text(_short(layers[li], 30)) if li < len(layers) else "", loc="left")
            outside: list[str] = []
            for series, per_layer in curves:
                counts = [float(c) if _finite(c) else 0.0 for c in (per_layer[li] if li < len(per_layer) else [])]
                total = sum(counts)
                if not usable or len(counts) != len(edges) + 1 or total <= 0:
                    continue
                centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
                density = [c / total / (b - a) for c, a, b in zip(counts[1:-1], edges[:-1], edges[1:])]
                style = style_of(series, sast_rhos)
                ax.plot(centres, density, color=style.color, linestyle=style.linestyle, linewidth=1.3,
                        label=text(series.label))
                out = (counts[0] + counts[-1]) / total
                if out >= OUTSIDE_SHOWN:
                    outside.append(f"{series.label}: {out:.1%}")
            if not ax.has_data():
                _no_data(ax, NOT_MEASURED)
                continue
            ax.axvspan(-SOFT_BAND, SOFT_BAND, color=GREY, alpha=0.15, linewidth=0, label="soft band |m| < 4")
            ax.set_xlabel("margin m = β(u − θ)")
            ax.set_ylabel("density")
            if outside:
                ax.text(0.99, 0.98, text("outside the range:\n" + "\n".join(outside)), transform=ax.transAxes,
                        ha="right", va="top", color=GREY, fontsize=FONT_SIZE_PT - 2)
        _legend_below(fig, axes)
        return fig

    return _render(key, "Smooth-mode margin density per layer, soft band shaded", draw)


# --- d: soft-band fraction over epochs ------------------------------------------------------------

def soft_band_epochs_svg(layers: Sequence[str],
                         curves: Sequence[tuple[Series, Sequence[float], Sequence[Sequence[float | None]]]],
                         *, sast_rhos: Sequence[float] = (), title: str = "", key: str = "soft-band") -> str:
    """Per layer, the fraction of smooth-mode margins in the soft band against the epoch.

    ``curves`` holds per series the epochs and, per layer, the fraction at each epoch
    (means over seeds).
    """
    def draw() -> Figure:
        fig, axes = _panel_grid(max(1, len(layers)), legend_rows=_legend_rows(len(curves)), title=bool(title))
        _suptitle(fig, title)
        for li, ax in enumerate(axes):
            ax.set_title(text(_short(layers[li], 30)) if li < len(layers) else "", loc="left")
            for series, epochs, per_layer in curves:
                ys = per_layer[li] if li < len(per_layer) else []
                pts = [(e, y * PERCENT) for e, y in zip(epochs, ys) if _finite(e) and _finite(y)]
                if pts:
                    style = style_of(series, sast_rhos)
                    ax.plot(*zip(*pts), color=style.color, linestyle=style.linestyle, marker=style.marker,
                            markersize=MARKER_SIZE, linewidth=1.2, label=text(series.label))
            if not ax.has_data():
                _no_data(ax, NOT_MEASURED)
                continue
            ax.set_xlabel("epoch")
            ax.set_ylabel("in the soft band (%)")
        _legend_below(fig, axes)
        return fig

    return _render(key, "Soft-band fraction per layer over training epochs", draw)


# --- e: mechanism ---------------------------------------------------------------------------------

def mechanism_scatter_svg(samples: Sequence[Samples], *, sast_rhos: Sequence[float] = (), title: str = "",
                          key: str = "mechanism") -> str:
    """Per sample of one run per series: input-gradient norm (x, log scale) against logit discrepancy
    ||z_hard - z_smooth|| (y); the run's Spearman rank correlation in the legend."""
    def draw() -> Figure:
        fig, (ax,) = _new_figure()
        ax.set_title(text(title or "per-sample mechanism"), loc="left")
        dropped = 0
        for s in samples:
            pts = [(float(x), float(y)) for x, y in zip(s.input_grad_norm, s.logit_discrepancy)
                   if _finite(x) and _finite(y)]
            kept = [(x, y) for x, y in pts if x > 0]
            dropped += len(pts) - len(kept)
            if len(kept) > MAX_SCATTER_POINTS:
                kept = kept[:: math.ceil(len(kept) / MAX_SCATTER_POINTS)]
            if not kept:
                continue
            style = style_of(s.series, sast_rhos)
            rho_s = NOT_MEASURED if not _finite(s.spearman) else f"{s.spearman:+.2f}"
            ax.scatter(*zip(*kept), s=SCATTER_SIZE * 0.6, color=style.color, marker=style.marker,
                       alpha=0.6, linewidths=0, label=text(f"{s.series.label} (Spearman {rho_s})"))
        if not ax.has_data():
            _no_data(ax, NOT_MEASURED)
            return fig
        _log_axis(ax, "x")
        ax.set_xlabel("input-gradient norm ‖∇ₓ ℓ‖ per sample (log scale)")
        ax.set_ylabel("‖z_hard − z_smooth‖")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, markerscale=1.5)
        if dropped:
            ax.text(0.99, 0.02, f"{dropped} sample(s) with a norm <= 0 not shown (log scale)",
                    transform=ax.transAxes, ha="right", va="bottom", color=GREY, fontsize=FONT_SIZE_PT - 1)
        return fig

    return _render(key, "Per-sample input-gradient norm against hard/smooth logit discrepancy", draw)


def correlates_svg(panels: Sequence[Correlate], *, sast_rhos: Sequence[float] = (),
                   key: str = "correlates") -> str:
    """Across runs: the transfer gap (y, pp) against each mechanism quantity (x), one panel each,
    titled with the Spearman rank correlation over all smooth-trained runs and its p-value."""
    series = list(dict.fromkeys(s for p in panels for s, _, _ in p.points))

    def draw() -> Figure:
        fig, axes = _panel_grid(max(1, len(panels)), legend_rows=_legend_rows(len(series)),
                                row_in=PANEL_ROW_IN - 0.3, title=True, per_row=CORRELATES_PER_ROW,
                                extra_gap_in=TITLE_ROOM_IN)
        for ax, panel in zip(axes, panels):
            if _finite(panel.spearman):
                stat = f"Spearman {panel.spearman:+.2f}, {p_text(panel.p)}, n = {panel.n}"
            else:
                stat = f"Spearman {NOT_MEASURED}"
            ax.set_title(text(f"{panel.name}\n{stat}"), loc="left", fontsize=FONT_SIZE_PT)
            for s in series:
                pts = [(float(x), float(y) * PERCENT) for t, x, y in panel.points
                       if t == s and _finite(x) and _finite(y)]
                if pts:
                    style = style_of(s, sast_rhos)
                    ax.scatter(*zip(*pts), s=SCATTER_SIZE * 1.4, color=style.color, marker=style.marker,
                               label=text(s.label))
            if not ax.has_data():
                _no_data(ax, NOT_MEASURED)
                continue
            ax.set_xlabel(text(panel.name), fontsize=FONT_SIZE_PT - 1)
            ax.set_ylabel("transfer gap (pp)")
            ax.xaxis.get_major_locator().set_params(nbins=4)
        _legend_below(fig, axes)
        return fig

    return _render(key, "Across runs: transfer gap against the mechanism's quantities", draw)
