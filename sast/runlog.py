"""The run folder's files (DESIGN.md "The run folder"): config.json and metrics.jsonl.

metrics.jsonl holds one JSON object a line, ``{"kind": "train"|"eval"|"check"|..., "step",
"epoch", ...}``. A run killed mid-write can leave a truncated last line; readers skip
it, and a resumed run drops every line past its checkpoint's step so that the log
equals an uninterrupted run's. JSON conversion, atomic writing and lenient reading are
:mod:`runfolder`'s (``dumps``, ``read_jsonl`` and ``write_json`` stay importable from here).
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import runfolder
from runfolder import atomic_write_text, dumps, read_jsonl  # noqa: F401 (importable from here, as before)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented plain JSON, atomically (:func:`runfolder.write_json`), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runfolder.write_json(path, obj)


class MetricsLog:
    """Appends records to ``metrics.jsonl``, one JSON object a line, flushed per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def truncate_after(path: str | Path, step: int) -> None:
        """Keep only complete records whose step is <= ``step`` (used when resuming)."""
        path = Path(path)
        if not path.exists():
            return
        kept = [dumps(r) for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def git_commit() -> str | None:
    """The commit of the toolkit's source tree, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Versions and platform facts recorded in config.json."""
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "argv": list(sys.argv),
    }
