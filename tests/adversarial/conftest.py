"""Fixtures of the adversarial tests: one good run trained once, a session frame cache, a command-line runner."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from _cli_runner import Runner

TINY = ["--limit", "200", "--layers", "dense:16", "--T", "8", "--batch-size", "32", "--epochs", "1",
        "--monitor", "off", "--no-progress"]
"""Flags of `python -m sast.train` for a run of seconds (one epoch of 180 synth-nmnist samples)."""


@pytest.fixture(scope="session")
def adv_cache(tmp_path_factory) -> Path:
    """The frame cache shared by the session (SAST_CACHE of every command line, --cache-dir of training)."""
    return tmp_path_factory.mktemp("adv-cache")


@pytest.fixture(scope="session")
def tiny_flags(adv_cache) -> list[str]:
    """The tiny training flags, with the session cache."""
    return [*TINY, "--cache-dir", str(adv_cache)]


@pytest.fixture(scope="session")
def good_run(tmp_path_factory, tiny_flags) -> Path:
    """A finished one-epoch run folder (config.json, metrics.jsonl, ckpt.pt, best.pt); never written to by a test."""
    from apps.train import main

    run = tmp_path_factory.mktemp("adv-runs") / "good"
    assert main([*tiny_flags, "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="session")
def good_ckpt(good_run) -> Path:
    """G: the good run's ckpt.pt."""
    return good_run / "ckpt.pt"


@pytest.fixture(scope="session")
def cli(tmp_path_factory, adv_cache):
    """``cli(module, *args, fault=None, real=False) -> Result``: a command line in a process of its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAST_CACHE": str(adv_cache)}
    runner = Runner(env, tmp_path_factory.mktemp("adv-cli"))
    yield runner
    runner.close()


@pytest.fixture
def run_copy(good_run, tmp_path) -> Path:
    """A writable copy of the good run folder, for the cases that resume or write into it."""
    copy = tmp_path / "run"
    shutil.copytree(good_run, copy)
    yield copy
    for p in [copy, *copy.rglob("*")]:  # a test may have made it read-only
        if p.is_dir() and not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IRWXU)


@pytest.fixture
def blocker(tmp_path) -> Path:
    """F: a regular file standing where a command expects a folder."""
    f = tmp_path / "F"
    f.write_text("a plain text file\n")
    return f
