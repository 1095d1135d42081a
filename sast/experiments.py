"""``python -m sast.experiments``: sweeps with their controls (rho-sweep, grid).

The sweeps are a composition root (they wire ``checks`` and ``reports`` into training),
so they live in :mod:`apps.experiments`; this module is the command's entry point.
"""

from __future__ import annotations

from typing import Sequence

from runfolder import guard


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from apps.experiments import main as run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
