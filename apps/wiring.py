"""The live checks monitor as training callbacks: what ``sast.train --monitor PRESET`` wires in."""

from __future__ import annotations

from sast.callbacks import Callback


def monitor_callbacks(preset: str) -> list[Callback]:
    """The live checks monitor for ``preset`` ("off": none)."""
    if preset == "off":
        return []
    from checks.monitor import Monitor

    return [Monitor(preset)]
