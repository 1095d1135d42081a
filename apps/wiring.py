"""The live checks monitor as training callbacks: what ``sast.train --monitor PRESET`` wires in (:mod:`apps.train`)."""

from __future__ import annotations

from sast.callbacks import Callback


def monitor_callbacks(preset: str, on_violation: str = "warn") -> list[Callback]:
    """The live checks monitor for ``preset`` ("off": none); ``on_violation``: "warn" or "stop" (exit 1)."""
    if preset == "off":
        return []
    from checks.monitor import Monitor

    return [Monitor(preset, on_violation=on_violation)]
