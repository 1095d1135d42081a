"""Fixtures for end-to-end tests: one small frame cache shared by the session."""

from __future__ import annotations

import pytest

TINY_LIMIT = 200  # samples per split: enough for a few batches, generated in seconds


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("frame-cache"))


@pytest.fixture(scope="session")
def tiny_train_args(cache_dir) -> list[str]:
    """Flags of `python -m sast.train` for a run of seconds on synth-nmnist."""
    return ["--limit", str(TINY_LIMIT), "--layers", "dense:16", "--T", "8", "--batch-size", "32",
            "--cache-dir", cache_dir, "--no-progress"]
