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
    BLACK,
    BLUE,
    BOUND_TICK_SIZE,
    GREY,
    MARKER_SIZE,
    MAX_MARKED_POINTS,
    ORANGE,
    VERMILLION,
    VIOLATION_MARKER_SIZE,
    _finite,
    _legend_outside,
    _log_axis,
    _new_figure,
    _no_data,
    _note_dropped,
    _positive_pairs,
    _render,
    _step_axis,
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
        ex, ey, dropped_e = _positive_pairs(steps, estimates)
        bx, by, dropped_b = _positive_pairs(steps, bounds)
        if not ex and not bx:
            _no_data(ax)
            return fig
        if bx:
            ax.plot(bx, by, color=BLACK, linestyle="--", linewidth=1.2, label="bound",
                    marker="_" if len(bx) <= MAX_MARKED_POINTS else None, markersize=BOUND_TICK_SIZE)
        if ex:
            ax.plot(ex, ey, color=BLUE, marker="o" if len(ex) <= MAX_MARKED_POINTS else None,
                    markersize=MARKER_SIZE, linewidth=1.2, label="estimate")
        for status, marker, colour, label in (("assumption fails", "^", ORANGE, "assumption fails"),
                                              ("violated", "X", VERMILLION, "violated")):
            pts = [(s, e) for s, e, st in zip(steps, estimates, statuses) if st == status and _finite(e) and e > 0]
            if pts:
                ax.plot(*zip(*pts), linestyle="none", marker=marker, markersize=VIOLATION_MARKER_SIZE,
                        markerfacecolor="none" if marker == "^" else colour, markeredgecolor=colour,
                        markeredgewidth=1.4, label=label)
        _log_axis(ax)
        _step_axis(ax, ex + bx)
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
        _note_dropped(ax, dropped_e + dropped_b)
        return fig

    return _render(key, f"{title}: estimate and bound over training steps, status changes marked", draw)
