"""``python -m sast.train``: the entry point of the training command line, :mod:`apps.train`.

The command line is a composition root (it wires the live checks monitor into training),
so it lives in :mod:`apps.train`, as the demo's lives in :mod:`apps.demo`; this module is the
command's entry point, where users type it. Python runs it as ``__main__`` and nothing imports
it, so importing ``sast`` or ``sast.train`` never loads ``apps``: its one upward import is a
named entry point of ``tests/unit/test_layers.py`` (``ENTRY_POINTS``).
"""

from __future__ import annotations

from typing import Sequence

from runfolder import guard


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from apps.train import main as run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
