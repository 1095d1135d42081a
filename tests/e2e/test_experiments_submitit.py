"""`python -m sast.experiments grid --executor submitit`: submitit's local executor gives the pool's results.

Each training run is a submitit job (here its local executor: a process per job); the
result files must equal the pool's but for wall-clock times and the sweep's own folder,
a failed job must be named and retried by the next invocation, and bad executor flags
must get one line and exit 2. submitit is in the ``test`` extra, so that CI runs these
tests rather than skipping them.
"""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest

from apps.experiments import cli, main

TINY_GRID = ["grid", "--dataset", "synth-nmnist", "--checks", "none", "--no-corruptions", "--seeds", "1",
             "--limit", "200", "--layers", "dense:16", "--epochs", "1", "--no-progress"]
LOCAL = ["--executor", "submitit", "--executor-options", "cluster=local"]  # never a real SLURM from a test


def _wall_clock(key: str) -> bool:
    return key.startswith("seconds")


def _normalised(value, out):
    """results.json without wall-clock times, with the sweep folder's paths relative to it, without the argv."""
    if isinstance(value, dict):
        return {k: _normalised(v, out) for k, v in value.items() if not _wall_clock(k) and k != "argv"}
    if isinstance(value, list):
        return [_normalised(v, out) for v in value]
    if isinstance(value, str) and value.startswith(str(out)):
        return value[len(str(out)):]
    return value


def _csv_without_wall_clock(path):
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, name in enumerate(rows[0]) if not _wall_clock(name)]
    return [[r[i] for i in keep] for r in rows]


def test_submitit_grid_gives_the_pools_results(tmp_path, cache_dir, capsys):
    pool, jobs = tmp_path / "pool", tmp_path / "submitit"
    grid = [*TINY_GRID, "--set", "rho=0,0.3", "--jobs", "2", "--cache-dir", cache_dir]
    assert main([*grid, "--out", str(pool)]) == 0
    capsys.readouterr()
    assert main([*grid, "--out", str(jobs), *LOCAL]) == 0
    err = capsys.readouterr().err
    assert err.count("submitted: submitit job") == 4 and "4/4 runs done" in err and "left" in err
    assert (jobs / "submitit").is_dir() and not (pool / "submitit").exists()
    # bit-identical numbers (same seeds, same work per run): only wall-clock times may differ
    assert (jobs / "paired.csv").read_bytes() == (pool / "paired.csv").read_bytes()
    assert _csv_without_wall_clock(jobs / "results.csv") == _csv_without_wall_clock(pool / "results.csv")
    a, b = (json.loads((d / "results.json").read_text()) for d in (pool, jobs))
    assert len(a["rows"]) == 4 and a["rows"][0]["hard_acc"] is not None
    assert _normalised(b, jobs) == _normalised(a, pool)


def test_a_failed_job_is_named_and_retried_next_time(tmp_path, cache_dir, capsys, monkeypatch):
    out = tmp_path / "grid"
    args = [*TINY_GRID, "--set", "rho=0", "--jobs", "2", "--cache-dir", cache_dir, "--out", str(out), *LOCAL]
    real = cli.run_one

    def planted(out_dir, spec, *rest):  # pickled by value into the job: it fails the SF run only
        if spec.name == "sf-s0":
            raise RuntimeError("planted failure")
        return real(out_dir, spec, *rest)

    monkeypatch.setattr(cli, "run_one", planted)
    assert main(args) == 70  # as the pool: a run's RuntimeError is an internal error
    err = capsys.readouterr().err.splitlines()
    failed = [line for line in err if "failed: sf-s0" in line]
    assert len(failed) == 1 and "(submitit job " in failed[0] and "RuntimeError: planted failure" in failed[0], err
    assert failed[0].split("log: ")[1].endswith("_log.err")
    assert any("1 of 2 runs failed" in line for line in err)
    assert (out / "hfsb-s0" / "evaluation.json").exists() and not (out / "sf-s0" / "evaluation.json").exists()
    assert not (out / "results.json").exists()  # no tables from part of the runs

    monkeypatch.setattr(cli, "run_one", real)
    before = (out / "hfsb-s0" / "evaluation.json").stat().st_mtime_ns
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "[hfsb-s0] done before" in err and "[sf-s0] submitted: submitit job" in err
    assert err.count("submitted:") == 1
    assert (out / "hfsb-s0" / "evaluation.json").stat().st_mtime_ns == before
    assert [r["method"] for r in json.loads((out / "results.json").read_text())["rows"]] == ["hfsb", "sf"]


@pytest.mark.parametrize("extra, message", [
    (["--executor", "submitit", "--executor-options", "slurm_partitio=gpu"], "did you mean 'slurm_partition'"),
    (["--executor", "submitit", "--executor-options", "timeout_min=soon"], "timeout_min"),
    (["--executor", "submitit", "--executor-options", "partition"], "KEY=VALUE"),
    (["--executor", "submitit", "--executor-options", "cluster=pbs"], "cluster="),
    (["--executor", "submitit", "--slurm-time", "4h"], "HH:MM:SS"),
    (["--executor", "submitit", "--slurm-mem", "lots"], "16G"),
    (["--executor", "submitit", "--slurm-partition", "gpu", "--executor-options", "slurm_partition=cpu"], "once"),
    (["--executor", "subm1tit"], "did you mean 'submitit'"),
    (["--slurm-partition", "gpu"], "--executor submitit"),
])
def test_bad_executor_flags(tmp_path, capsys, extra, message):
    code = main([*TINY_GRID, "--set", "rho=0", "--out", str(tmp_path / "g"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_without_submitit_installed(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    assert main([*TINY_GRID, "--set", "rho=0", "--out", str(tmp_path / "g"), *LOCAL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'sast-toolkit[submitit]'" in err[0], err
