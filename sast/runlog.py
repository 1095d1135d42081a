"""The run folder's files (DESIGN.md "The run folder"): config.json and metrics.jsonl.

metrics.jsonl holds one JSON object a line, ``{"kind": "train"|"eval"|"check"|..., "step",
"epoch", ...}``. A run killed mid-write can leave a truncated last line; readers skip
it, and a resumed run drops every line past its checkpoint's step so that the log
equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from sast.checkpoint import atomic_write_text


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats become None (JSON has no NaN), tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _plain(value.item())
    return value


def dumps(record: Any) -> str:
    return json.dumps(_plain(record), allow_nan=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(_plain(obj), indent=2, allow_nan=False) + "\n")


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the complete JSON lines of ``path``; a truncated or malformed line is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                yield rec


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
