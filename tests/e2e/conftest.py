"""Fixtures for end-to-end tests: one small frame cache shared by the session."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_train_args) -> Path:
    """A finished SAST run of a few seconds (2 epochs) that tests of evaluate, checks and reports read."""
    from apps.train import main

    run = tmp_path_factory.mktemp("runs") / "tiny-sast"
    assert main([*tiny_train_args, "--method", "sast", "--rho", "0.1", "--epochs", "2", "--run-dir", str(run)]) == 0
    return run
