"""One live-monitored statement over training, with its status changes marked (inline SVG, like :mod:`reports.figures`).

Estimate and bound per monitored step on a log scale (as ``figures.check_timeline_svg``),
plus a dotted vertical line at every step where the statement's status changed from the
previous record, labelled with the new status, so a reader sees when a bound became
violated or an assumption stopped holding (and when it held again).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from reports.figures import (  # the plumbing of the run report's figures, shared
    GREY,
    ORANGE,
    VERMILLION,
    _legend_outside,
    _log_axis,
    _new_figure,
    _note_dropped,
    _render,
    _step_axis,
    draw_estimate_and_bound,
    text,
)

STATUS_SHORT = {"holds": "holds", "violated": "VIOLATED", "assumption fails": "assumption fails",
                "not applicable": "n/a"}
"""How a status change is labelled in the figure."""
CHANGE_COLOURS = {"violated": VERMILLION, "assumption fails": ORANGE}
"""The dotted line of a change takes the colour of the new status (grey for the others)."""


def status_changes(steps: Sequence[int], statuses: Sequence[str]) -> list[tuple[int, str, str]]:
    """(step, previous status, new status) wherever a record's status differs from the one before it."""
    return [(steps[i], statuses[i - 1], statuses[i]) for i in range(1, len(statuses)) if statuses[i] != statuses[i - 1]]


def monitor_timeline_svg(
    steps: Sequence[int],
    estimates: Sequence[float | None],
    bounds: Sequence[float | None],
    statuses: Sequence[str],
    *,
    title: str,
    key: str = "monitor",
) -> str:
    """One statement over training: estimate and bound on a log scale, status changes as labelled dotted lines.

    Points where an assumption failed are ringed (orange triangles), points where the
    estimate exceeded the bound crossed (vermillion). Values that are not positive cannot
    be drawn on a log axis; the figure says how many.
    """
    def draw() -> Figure:
        fig, (ax,) = _new_figure()
        ax.set_title(text(title), loc="left")
        drawn = draw_estimate_and_bound(ax, steps, estimates, bounds,
                                        [st == "assumption fails" for st in statuses],
                                        [st == "violated" for st in statuses], violation_edge_width=1.4)
        if drawn is None:
            return fig
        xs, dropped = drawn
        _log_axis(ax)
        _step_axis(ax, xs)
        changes = status_changes(steps, statuses)
        for i, (step, _, new) in enumerate(changes):
            ax.axvline(step, color=CHANGE_COLOURS.get(new, GREY), linestyle=":", linewidth=1.0,
                       label="status changes" if i == 0 else None)
            ax.annotate(text(STATUS_SHORT.get(new, new)), xy=(step, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", ha="left", va="top", rotation=90,
                        fontsize="small", color=CHANGE_COLOURS.get(new, GREY))
        ax.set_xlabel("training step")
        ax.set_ylabel("value (log scale)")
        _legend_outside(ax)
        _note_dropped(ax, dropped)
        return fig

    return _render(key, f"{title}: estimate and bound over training steps, status changes marked", draw)
