"""The looseness budget of one statement as a horizontal bar chart (inline SVG, like :mod:`reports.figures`).

A budget (``CheckResult.looseness``) replaces one worst-case factor of a bound at a time by
its value measured at w on the probe; each bar is one substitution's log10(before / after),
the last one the remaining proof slack (local bound / estimate). The bars sum to
log10(global bound / estimate): the caption says so, and the figure draws that total as a
dashed line. Entries without a number are listed as "not measured" rather than dropped.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from matplotlib.figure import Figure

from reports.figures import (  # the plumbing of the run report's figures, shared
    BLUE,
    FIG_WIDTH_IN,
    GREY,
    VERMILLION,
    _no_data,
    _render,
    text,
)

BAR_HEIGHT_IN = 0.32
"""Height of one bar's row, label included."""
LABEL_WIDTH_IN = 4.6
"""Left margin for the factor names (wrapped at :data:`LABEL_CHARS`)."""
LABEL_CHARS = 62
MIN_HEIGHT_IN = 1.6
MARGINS_IN = 0.75
"""Room above and below the bars for the title and the axis label."""
REMAINING_PREFIX = "remaining proof slack"
"""The budget's last entry (``theory.local.REMAINING``), drawn in its own colour."""


def _label(factor: str) -> str:
    return "\n".join(textwrap.wrap(text(factor), LABEL_CHARS)[:2]) or "?"


def looseness_svg(factors: Sequence[str], log10_ratios: Sequence[float | None], *, title: str,
                  key: str = "budget") -> str:
    """One horizontal bar per budget entry, in the order of substitution (top to bottom), its log10 ratio.

    Substitutions are blue, the remaining proof slack vermillion; a missing ratio is drawn
    as a grey "not measured" label at 0. Empty input gives a "no data" figure.
    """
    n = len(factors)
    height = max(MIN_HEIGHT_IN, n * BAR_HEIGHT_IN * 1.6 + MARGINS_IN)

    def draw() -> Figure:
        fig = Figure(figsize=(FIG_WIDTH_IN, height))
        ax = fig.add_subplot(1, 1, 1)
        fig.subplots_adjust(left=LABEL_WIDTH_IN / FIG_WIDTH_IN, right=0.97, bottom=0.45 / height,
                            top=1 - 0.3 / height)
        ax.set_title(text(title), loc="left")
        if not n:
            _no_data(ax)
            return fig
        values = [v if v is not None and math.isfinite(v) else None for v in log10_ratios]
        ys = list(range(n))[::-1]
        colors = [VERMILLION if str(f).startswith(REMAINING_PREFIX) else BLUE for f in factors]
        ax.barh(ys, [v or 0.0 for v in values], color=colors, height=0.6)
        for y, v in zip(ys, values):
            if v is None:
                ax.text(0, y, " not measured", va="center", ha="left", color=GREY)
            else:
                ax.text(v, y, f" {10 ** v:.3g}x" if v >= 0 else f" {10 ** v:.3g}x ", va="center",
                        ha="left" if v >= 0 else "right", fontsize=8)
        total = sum(v for v in values if v is not None)
        ax.axvline(0, color=GREY, linewidth=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels([_label(f) for f in factors], fontsize=8)
        ax.set_xlabel(f"log10(before / after); the bars sum to {total:.3g} = log10(global bound / estimate)")
        hi = max([v for v in values if v is not None] + [0.0])
        lo = min([v for v in values if v is not None] + [0.0])
        ax.set_xlim(lo - 0.1 * (hi - lo + 1), hi + 0.25 * (hi - lo + 1))
        ax.grid(axis="y", visible=False)
        return fig

    return _render(key, f"{title}: looseness budget, {n} entries", draw)
