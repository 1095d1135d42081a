"""The report's figures: plain data in, an inline ``<svg ...>`` string out, one function per figure.

Each function draws on its own :class:`matplotlib.figure.Figure` (no pyplot, no
global backend or rcParams changed: settings apply inside
:func:`matplotlib.rc_context`) and returns SVG text ready to paste into HTML:

- text stays text (``svg.fonttype = 'none'``), so the file is small and opens
  offline with the reader's own sans-serif font; nothing is fetched;
- the XML prolog and DOCTYPE (which name a remote DTD) are stripped, and so is
  the RDF metadata block;
- element ids are deterministic (``svg.hashsalt`` set from ``key``) and
  prefixed with ``key``, so several figures on one page never share an id and
  the same data gives the same bytes;
- strings from a run (labels) are drawn as literal text: ``$`` is escaped so
  mathtext never parses them, and matplotlib escapes ``<``, ``>`` and ``&``.

Empty data gives a figure that says "no data" rather than an error.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies, and every
# series also differs in marker or line style, so the figures read in grey too.
BLUE = "#0072B2"
VERMILLION = "#D55E00"
ORANGE = "#E69F00"
GREEN = "#009E73"
GREY = "#777777"
BLACK = "#000000"

FIG_WIDTH_IN = 10.0
"""Figure width in inches: 720 pt, 960 CSS px, the report's column width (it shrinks with the page)."""
FIG_HEIGHT_IN = 3.0
"""Height of a one-panel figure."""
PANEL_HEIGHT_IN = 3.4
"""Height of a two-panel (side-by-side) figure."""
MARGIN_LEFT_IN, MARGIN_RIGHT_IN = 0.85, 0.2
LEGEND_OUTSIDE_IN = 2.2
"""Right margin of a one-panel figure, for a legend outside the axes."""
MARGIN_BOTTOM_IN, MARGIN_TOP_IN = 0.5, 0.3
"""Fixed margins (inches) for tick labels and titles; a layout engine would draw every figure twice."""
PANEL_GAP_IN = 0.9
"""Horizontal gap between two side-by-side panels (room for the right panel's tick labels)."""
LEGEND_ROW_IN = 0.22
"""Height of one row of a figure-level legend."""
LEGEND_COLUMNS = 3
SWEEP_LINESTYLES = ("-", "--", "-.")
"""Line styles telling swept methods apart (colour tells the quantity)."""
SEED_POINT_ALPHA = 0.35
"""Opacity of the per-seed points behind a mean."""
MINOR_LABEL_DECADES = (1.0, 0.4)
"""Label a subset of minor log ticks below 1 decade of span, all of them below 0.4 (matplotlib's rule)."""
MANTISSA_DIGITS = 6
"""Rounding of a tick's mantissa before comparing it with 2 or 5 (floating-point tick positions)."""
PLAIN_TICKS_DECADES = 3.0
"""A log axis spanning fewer decades than this gets plain tick labels (0.92, 20) instead of 10^k."""
FONT_SIZE_PT = 9
MARKER_SIZE = 4.0
VIOLATION_MARKER_SIZE = 9.0
BOUND_TICK_SIZE = 10.0
"""A bound is drawn as a dashed line with a short horizontal tick at each step (visible with one step)."""
SINGLE_STEP_HALF_SPAN = 1.0
"""Half the x-range, in steps, of a figure whose points all sit at one step."""
MAX_MARKED_POINTS = 200
"""Above this many points a line is drawn without markers (each marker is an SVG element)."""
SCATTER_SIZE = 14.0
"""Area of a scatter point in pt^2."""

PERCENT = 100.0
"""Accuracies are stored as fractions in [0, 1] and drawn in percent."""

_RC = {
    "svg.fonttype": "none",
    "font.size": FONT_SIZE_PT,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.titlesize": FONT_SIZE_PT + 1,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": FONT_SIZE_PT - 1,
    "legend.frameon": False,
    "path.simplify": True,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_ID_ATTR = re.compile(r'\bid="([^"]+)"')
_HREF_REF = re.compile(r'((?:xlink:)?href)="#([^"]+)"')
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_METADATA_BLOCK = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_STYLE_BLOCK = re.compile(r"\s*<defs>\s*<style[^>]*>[^<]*</style>\s*</defs>")
"""matplotlib's global ``*{stroke-linejoin: ...}`` rule: inline, it would style the whole page; the
report's stylesheet sets the same for ``svg.figure`` instead (:data:`FIGURE_CSS`)."""
FIGURE_CSS = "svg.figure * { stroke-linejoin: round; stroke-linecap: butt; }"

NO_DATA = "no data"


class SweepPoint(NamedTuple):
    """One run of a rho sweep: its method, rho and final test accuracies (fractions)."""

    method: str
    rho: float
    smooth_acc: float | None
    hard_acc: float | None
    gap: float | None


# --- plumbing -----------------------------------------------------------------------------------

def _safe_key(key: str) -> str:
    """``key`` reduced to characters valid in an XML id (letters, digits, '-', '_')."""
    cleaned = _KEY_CHARS.sub("-", key) or "fig"
    return cleaned if cleaned[0].isalpha() else f"f{cleaned}"


def _prefix_ids(svg: str, prefix: str) -> str:
    """Prefix every id of ``svg``, and every reference to one, with ``prefix``."""
    svg = _ID_ATTR.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _HREF_REF.sub(lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"', svg)
    return _URL_REF.sub(lambda m: f"url(#{prefix}-{m.group(1)})", svg)


def text(label: str) -> str:
    """A run's string as literal matplotlib text: '$' escaped, no leading '_' (legend hides those)."""
    label = label.replace("$", r"\$")
    return f" {label}" if label.startswith("_") else label


def _new_figure(ncols: int = 1, height: float = FIG_HEIGHT_IN,
                bottom_in: float = MARGIN_BOTTOM_IN) -> tuple[Figure, list[Axes]]:
    """A figure with ``ncols`` side-by-side axes and fixed margins (``bottom_in`` inches below)."""
    fig = Figure(figsize=(FIG_WIDTH_IN, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    right_in = LEGEND_OUTSIDE_IN if ncols == 1 else MARGIN_RIGHT_IN
    panel_width = (FIG_WIDTH_IN - MARGIN_LEFT_IN - right_in - (ncols - 1) * PANEL_GAP_IN) / ncols
    fig.subplots_adjust(left=MARGIN_LEFT_IN / FIG_WIDTH_IN, right=1 - right_in / FIG_WIDTH_IN,
                        bottom=bottom_in / height, top=1 - MARGIN_TOP_IN / height,
                        wspace=PANEL_GAP_IN / panel_width)
    return fig, list(axes)


def _step_axis(ax: Axes, steps: Sequence[float]) -> None:
    """Integer ticks on a step axis, and a sensible span when every point sits at one step."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if steps and min(steps) == max(steps):
        ax.set_xlim(steps[0] - SINGLE_STEP_HALF_SPAN, steps[0] + SINGLE_STEP_HALF_SPAN)


def _legend_outside(ax: Axes) -> None:
    """The legend right of the axes, where it never hides data (and needs no placement search)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _log_axis(ax: Axes, which: str = "y") -> None:
    """Log scale on ``which``; plain tick labels when the data span few decades (easier to read)."""
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if lo > 0 and hi > lo and math.log10(hi / lo) < PLAIN_TICKS_DECADES:
        span = math.log10(hi / lo)
        axis.set_major_formatter(FuncFormatter(_plain_tick))
        axis.set_minor_formatter(FuncFormatter(lambda v, _pos: _minor_tick(v, span)))


def _plain_tick(value: float, _pos: int | None = None) -> str:
    """A tick label as a plain number ('0.04', '20', '1.5e3' only beyond three significant digits)."""
    return f"{value:.3g}"


def _minor_tick(value: float, span_decades: float) -> str:
    """A minor log tick's label: all of them on a very short axis, 2 and 5 times a power of ten on a
    short one, none on a long one (matplotlib's LogFormatter rule, with plain numbers)."""
    if value <= 0 or span_decades >= MINOR_LABEL_DECADES[0]:
        return ""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), MANTISSA_DIGITS)
    if span_decades < MINOR_LABEL_DECADES[1] or mantissa in (2.0, 5.0):
        return _plain_tick(value)
    return ""


def _to_svg(fig: Figure, key: str, description: str) -> str:
    """Render ``fig`` as inline SVG: no prolog, metadata or style sheet, ids prefixed with ``key``, a label."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = _METADATA_BLOCK.sub("", svg)
    svg = _STYLE_BLOCK.sub("", svg, count=1)
    svg = _prefix_ids(svg, key)
    label = html.escape(description, quote=True)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="figure" ', 1).strip() + "\n"


def _render(key: str, description: str, draw: Callable[[], Figure]) -> str:
    """Build a figure with ``draw()`` under the report's rc settings, return its SVG."""
    safe = _safe_key(key)
    with matplotlib.rc_context({**_RC, "svg.hashsalt": safe}):
        fig = draw()
        return _to_svg(fig, safe, description)


def _no_data(ax: Axes, message: str = NO_DATA) -> None:
    """Mark ``ax`` as empty: a centred message, no ticks."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=GREY)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _positive_pairs(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[list[float], list[float], int]:
    """The (x, y) pairs with y finite and > 0 (drawable on a log axis), and how many y were not."""
    kept_x, kept_y, dropped = [], [], 0
    for x, y in zip(xs, ys):
        if _finite(y) and y > 0 and _finite(x):
            kept_x.append(float(x))
            kept_y.append(float(y))
        elif y is not None:
            dropped += 1
    return kept_x, kept_y, dropped


def _note_dropped(ax: Axes, dropped: int) -> None:
    """Say on the axes how many values a log scale could not show."""
    if dropped:
        ax.text(0.99, 0.02, f"{dropped} value(s) <= 0 not shown (log scale)", transform=ax.transAxes,
                ha="right", va="bottom", color=GREY, fontsize=FONT_SIZE_PT - 1)


# --- figures ------------------------------------------------------------------------------------

def draw_estimate_and_bound(ax: Axes, steps: Sequence[float], estimates: Sequence[float | None],
                            bounds: Sequence[float | None], assumption_failed: Sequence[bool],
                            violated: Sequence[bool], *, violation_edge_width: float | None = None
                            ) -> tuple[list[float], int] | None:
    """A check's estimate and bound over steps on ``ax``, failing assumptions ringed, violations crossed.

    Returns the steps drawn and how many values were not positive (not drawable on a log
    axis), or None after marking ``ax`` empty when nothing is drawable. Shared by the run
    report's timelines and the live monitor's figure (``reports.monitor_figures``).
    """
    ex, ey, dropped_e = _positive_pairs(steps, estimates)
    bx, by, dropped_b = _positive_pairs(steps, bounds)
    if not ex and not bx:
        _no_data(ax)
        return None
    if bx:
        ax.plot(bx, by, color=BLACK, linestyle="--", linewidth=1.2, label="bound",
                marker="_" if len(bx) <= MAX_MARKED_POINTS else None, markersize=BOUND_TICK_SIZE)
    if ex:
        ax.plot(ex, ey, color=BLUE, marker="o" if len(ex) <= MAX_MARKED_POINTS else None,
                markersize=MARKER_SIZE, linewidth=1.2, label="estimate")
    fail = [(s, e) for s, e, f in zip(steps, estimates, assumption_failed) if f and _finite(e) and e > 0]
    if fail:
        ax.plot(*zip(*fail), linestyle="none", marker="^", markersize=VIOLATION_MARKER_SIZE,
                markerfacecolor="none", markeredgecolor=ORANGE, markeredgewidth=1.4,
                label="assumption fails")
    bad = [(s, e) for s, e, v in zip(steps, estimates, violated) if v and _finite(e) and e > 0]
    if bad:
        ax.plot(*zip(*bad), linestyle="none", marker="X", markersize=VIOLATION_MARKER_SIZE,
                color=VERMILLION, label="violated",
                **({} if violation_edge_width is None else {"markeredgewidth": violation_edge_width}))
    return ex + bx, dropped_e + dropped_b


def check_timeline_svg(
    steps: Sequence[int],
    estimates: Sequence[float | None],
    bounds: Sequence[float | None],
    assumption_failed: Sequence[bool],
    violated: Sequence[bool],
    *,
    title: str,
    key: str = "timeline",
) -> str:
    """One check over training: estimate and bound per monitored step, log scale.

    Points where an assumption failed are ringed (orange triangles), points
    where the estimate exceeded the bound are crossed (vermillion). Values that
    are not positive cannot be drawn on a log axis; the figure says how many.
    """
    def draw() -> Figure:
        fig, (ax,) = _new_figure()
        ax.set_title(text(title), loc="left")
        drawn = draw_estimate_and_bound(ax, steps, estimates, bounds, assumption_failed, violated)
        if drawn is None:
            return fig
        xs, dropped = drawn
        _log_axis(ax)
        _step_axis(ax, xs)
        ax.set_xlabel("training step")
        ax.set_ylabel("value (log scale)")
        _legend_outside(ax)
        _note_dropped(ax, dropped)
        return fig

    return _render(key, f"{title}: estimate and bound over training steps", draw)


def convergence_t6_svg(
    steps: Sequence[int],
    running_mean: Sequence[float | None],
    rhs: Sequence[float | None],
    rhs_local: Sequence[float | None],
    *,
    key: str = "t6",
) -> str:
    """T6: the running mean of ||grad F(w_k)||^2 against the right-hand side, log scale.

    The right-hand side 2 (F(w_0) - F_inf)/(eta K) + L^2 rho^2 + L eta sigma^2/b is
    drawn twice: with L from T4 (the guarantee) and with the local curvature
    (how tight it could be). Either may be empty.
    """
    def draw() -> Figure:
        fig, (ax,) = _new_figure()
        ax.set_title("T6: mean squared gradient norm against the bound", loc="left")
        series = [
            (rhs, "RHS, L from T4", BLACK, "--", None),
            (rhs_local, "RHS, local curvature", GREEN, "-.", None),
            (running_mean, "running mean of ‖∇F(w_k)‖²", BLUE, "-", "o"),
        ]
        dropped, drawn = 0, 0
        for ys, label, color, style, marker in series:
            x, y, d = _positive_pairs(steps, ys)
            dropped += d
            if x:
                drawn += 1
                marker = marker if len(x) <= MAX_MARKED_POINTS else None
                ax.plot(x, y, color=color, linestyle=style, marker=marker, markersize=MARKER_SIZE,
                        linewidth=1.3, label=label)
        if not drawn:
            _no_data(ax)
            return fig
        _log_axis(ax)
        _step_axis(ax, [float(v) for v in steps if _finite(v)])
        ax.set_xlabel("training step K")
        ax.set_ylabel("value (log scale)")
        _legend_outside(ax)
        _note_dropped(ax, dropped)
        return fig

    return _render(key, "T6: running mean of the squared gradient norm against the right-hand side", draw)


def mechanism_t7_svg(
    w1_grad_norm: Sequence[float | None],
    input_grad_norm: Sequence[float | None],
    condition_holds: Sequence[bool | None],
    w1_norm: float | None,
    s_T: Sequence[float | None],
    *,
    key: str = "t7",
) -> str:
    """T7: per sample, ||grad_x l|| against ||grad_{W^1} l||, with the bound's line.

    Per sample the bound is ||grad_x l|| <= (||W^1|| / s_T(X)) ||grad_{W^1} l||
    where the conditioning condition holds. The line drawn uses the smallest
    s_T(X) among those samples, so it lies above every sample's own bound;
    samples above their own bound are crossed, samples where the condition
    fails (no bound) are hollow grey.
    """
    n = min(len(w1_grad_norm), len(input_grad_norm))

    def draw() -> Figure:
        fig, (ax,) = _new_figure()
        ax.set_title("T7: input-gradient norm against first-layer gradient norm", loc="left")
        groups: dict[str, tuple[list[float], list[float]]] = {"ok": ([], []), "above": ([], []), "none": ([], [])}
        for i in range(n):
            x, y = w1_grad_norm[i], input_grad_norm[i]
            if not (_finite(x) and _finite(y)):
                continue
            cond = condition_holds[i] if i < len(condition_holds) else None
            s = s_T[i] if i < len(s_T) else None
            if cond and _finite(w1_norm) and _finite(s) and s > 0:
                group = "ok" if y <= w1_norm / s * x else "above"
            else:
                group = "none"
            groups[group][0].append(x)
            groups[group][1].append(y)
        if not any(xs for xs, _ in groups.values()):
            _no_data(ax)
            return fig
        xs_all = [x for xs, _ in groups.values() for x in xs]
        ys_all = [y for _, ys in groups.values() for y in ys]
        log = all(v > 0 for v in xs_all + ys_all)
        if groups["ok"][0]:
            ax.scatter(*groups["ok"], s=SCATTER_SIZE, color=BLUE, label="condition holds, within bound")
        if groups["above"][0]:
            ax.scatter(*groups["above"], s=SCATTER_SIZE * 2, color=VERMILLION, marker="x",
                       label="above its bound")
        if groups["none"][0]:
            ax.scatter(*groups["none"], s=SCATTER_SIZE, facecolors="none", edgecolors=GREY,
                       label="condition fails (no bound)")
        s_ok = [s_T[i] for i in range(min(n, len(s_T), len(condition_holds)))
                if condition_holds[i] and _finite(s_T[i]) and s_T[i] > 0]
        if _finite(w1_norm) and s_ok:
            slope = w1_norm / min(s_ok)
            lo, hi = min(xs_all), max(xs_all)
            if log:
                line_x = [lo / 2, hi * 2]
            else:
                line_x = [0.0, hi * 1.1]
            ax.plot(line_x, [slope * v for v in line_x], color=BLACK, linestyle="--", linewidth=1.2,
                    label="bound ‖W¹‖ / min s_T(X)")
        if log:
            _log_axis(ax, "x")
            _log_axis(ax, "y")
        ax.set_xlabel("‖∇_W¹ ℓ‖_F per sample")
        ax.set_ylabel("‖∇ₓ ℓ‖_F per sample")
        _legend_outside(ax)
        return fig

    return _render(key, "T7: per-sample input-gradient norm against first-layer gradient norm", draw)


def training_curves_svg(
    loss_steps: Sequence[int],
    loss: Sequence[float | None],
    perturbed_loss: Sequence[float | None],
    epochs: Sequence[int],
    smooth_acc: Sequence[float | None],
    hard_acc: Sequence[float | None],
    *,
    key: str = "training",
) -> str:
    """Training curves: loss per logged step (and the SAM-perturbed loss), test accuracy per epoch.

    ``perturbed_loss`` runs along ``loss_steps`` (None where not logged, e.g. not SAST);
    accuracies are fractions, drawn in percent, smooth-mode and hard-mode.
    """
    def draw() -> Figure:
        fig, (ax_loss, ax_acc) = _new_figure(2, PANEL_HEIGHT_IN)
        ax_loss.set_title("training loss", loc="left")
        pairs = [(s, v) for s, v in zip(loss_steps, loss) if _finite(v)]
        pert = [(s, v) for s, v in zip(loss_steps, perturbed_loss) if _finite(v)]
        if pairs or pert:
            if pairs:
                ax_loss.plot(*zip(*pairs), color=BLUE, linewidth=1.2, label="loss F(w)")
            if pert:
                ax_loss.plot(*zip(*pert), color=ORANGE, linewidth=1.0, linestyle="--",
                             label="perturbed loss F(w + ε)")
            _step_axis(ax_loss, [float(p[0]) for p in pairs + pert])
            ax_loss.set_xlabel("training step")
            ax_loss.set_ylabel("cross-entropy")
            ax_loss.legend(loc="upper right")  # losses fall: the corner stays clear
        else:
            _no_data(ax_loss)

        ax_acc.set_title("test accuracy per epoch", loc="left")
        drawn = False
        for ys, label, color, marker, style in ((smooth_acc, "smooth forward", BLUE, "o", "-"),
                                                 (hard_acc, "hard spikes", VERMILLION, "s", "--")):
            pts = [(e, v * PERCENT) for e, v in zip(epochs, ys) if _finite(v) and e is not None]
            if pts:
                drawn = True
                ax_acc.plot(*zip(*pts), color=color, marker=marker, markersize=MARKER_SIZE,
                            linestyle=style, linewidth=1.2, label=label)
        if drawn:
            ax_acc.set_xlabel("epoch")
            ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax_acc.set_ylabel("accuracy (%)")
            ax_acc.legend(loc="lower right")  # accuracies rise
        else:
            _no_data(ax_acc)
        return fig

    return _render(key, "Training loss per step and test accuracy per epoch", draw)


def rho_sweep_svg(points: Sequence[SweepPoint], *, key: str = "rho-sweep") -> str:
    """The rho sweep: final smooth and hard test accuracy, and the transfer gap, against rho.

    Runs of one method are joined by rho (the mean over seeds, with each seed's
    point shown faintly when there are several). A method whose runs all share
    one rho while another method varies it (a baseline) is drawn as a
    horizontal dotted line. One legend below both panels.
    """
    usable = [p for p in points if _finite(p.rho)]
    methods = sorted({p.method for p in usable})
    rhos_of = {m: sorted({p.rho for p in usable if p.method == m}) for m in methods}
    swept = [m for m in methods if len(rhos_of[m]) > 1]
    legend_rows = max(1, len(methods))
    legend_in = legend_rows * LEGEND_ROW_IN
    height = PANEL_HEIGHT_IN + legend_in

    def draw() -> Figure:
        fig, (ax_acc, ax_gap) = _new_figure(2, height, bottom_in=MARGIN_BOTTOM_IN + legend_in)
        ax_acc.set_title("final test accuracy against rho", loc="left")
        ax_gap.set_title("transfer gap (smooth \u2212 hard) against rho", loc="left")
        if not usable:
            _no_data(ax_acc)
            _no_data(ax_gap)
            return fig
        for method in methods:
            runs = [p for p in usable if p.method == method]
            rhos = rhos_of[method]
            baseline = method not in swept and bool(swept)
            style = SWEEP_LINESTYLES[swept.index(method) % len(SWEEP_LINESTYLES)] if method in swept else "-"
            panels = ((ax_acc, "smooth_acc", "smooth", BLUE, "o"),
                      (ax_acc, "hard_acc", "hard", VERMILLION, "s"),
                      (ax_gap, "gap", "gap", GREEN, "D"))
            for ax, field_name, what, color, marker in panels:
                means = []
                for rho in rhos:
                    vals = [getattr(p, field_name) for p in runs
                            if p.rho == rho and _finite(getattr(p, field_name))]
                    if vals:
                        means.append((rho, sum(vals) / len(vals) * PERCENT))
                        if len(vals) > 1:
                            ax.scatter([rho] * len(vals), [v * PERCENT for v in vals], s=SCATTER_SIZE / 2,
                                       color=color, alpha=SEED_POINT_ALPHA)
                if not means:
                    continue
                if baseline:
                    ax.axhline(means[0][1], color=color, linestyle=":", linewidth=1.2,
                               label=text(f"{what}, {method} (rho = {means[0][0]:g}, baseline)"))
                else:
                    ax.plot(*zip(*means), color=color, linestyle=style, marker=marker,
                            markersize=MARKER_SIZE + 1, linewidth=1.3, label=text(f"{what}, {method}"))
        handles, labels = [], []
        for ax, ylabel in ((ax_acc, "accuracy (%)"), (ax_gap, "gap (percentage points)")):
            ax.set_xlabel("SAM radius ρ")
            ax.set_ylabel(ylabel)
            if ax.has_data():
                h, lab = ax.get_legend_handles_labels()
                handles += h
                labels += lab
            else:
                _no_data(ax)
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=LEGEND_COLUMNS, bbox_to_anchor=(0.5, 0.0))
        return fig

    return _render(key, "Rho sweep: accuracy and transfer gap against rho", draw)
