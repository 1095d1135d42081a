"""``python -m sast.demo``: the main job (what ``make demo`` runs).

The demo is a composition root (it wires ``checks`` and ``reports`` into training), so it
lives in :mod:`apps.demo`; this module is the command's entry point.
"""

from __future__ import annotations

from typing import Sequence

from runfolder import guard


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from apps.demo import main as run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
