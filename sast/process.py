"""What every command line sets up in its process before its work.

:func:`prepare`: freed tensor memory stays in the heap (:mod:`sast.heap`, ``SAST_MALLOC``), and ``SAST_NATIVE``
(:mod:`sast.native`) is checked, so that a mistyped value of either is refused in one line with exit 2 before a
run folder is made or a model is read.
"""

from __future__ import annotations

from sast import heap, native


def prepare() -> None:
    """The command lines' process set-up (the module docstring); ValueError for a mistyped setting."""
    heap.retain_freed_memory()  # the SNN's large temporaries are reused, not faulted in again
    native.check_setting()
