"""``python -m sast.train``: see :mod:`sast.train.cli`."""

from sast.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
