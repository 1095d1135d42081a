"""apps.experiments.executors: the --slurm-* flags' mapping to submitit, exit codes, and the job loop on fake jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from submitit.core import utils as submitit_utils  # submitit is in the test extra

from apps.experiments.executors import (DEFAULT_TIMEOUT_MIN, exit_code_of, parse_option, run_jobs, slurm_time_minutes,
                                        submitit_parameters)
from apps.experiments.plan import RunSpec

TRACE = "-" * 22


@pytest.mark.parametrize("text, minutes", [("90", 90), ("01:30:00", 90), ("0:00:01", 1), ("1:00:30", 61),
                                           ("2-00:00:00", 2880), ("1-01:01:00", 1501)])
def test_slurm_time_in_minutes(text, minutes):
    assert slurm_time_minutes(text) == minutes


@pytest.mark.parametrize("text", ["4h", "0", "1:2", "00:00:00", ""])
def test_slurm_time_refused(text):
    with pytest.raises(ValueError, match="slurm-time"):
        slurm_time_minutes(text)


def test_executor_options_are_read_as_json_where_they_parse():
    assert parse_option("cpus_per_task=8") == ("cpus_per_task", 8)
    assert parse_option("slurm_exclusive=true") == ("slurm_exclusive", True)
    assert parse_option('slurm_setup=["module load cuda"]') == ("slurm_setup", ["module load cuda"])
    assert parse_option("slurm_account=my-proj") == ("slurm_account", "my-proj")
    assert parse_option("slurm_comment=a=b") == ("slurm_comment", "a=b")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_option("slurm_account")


def _params(**kw):
    args = dict(partition=None, time=None, gpus_per_task=None, mem=None, array_parallelism=None, options=(),
                device="cpu", name="sast-grid")
    return submitit_parameters(**{**args, **kw})


def test_flags_map_to_submitit_parameters():
    cluster, p = _params(partition="gpu", time="04:00:00", gpus_per_task=2, mem="16G", array_parallelism=8,
                         options=["slurm_account=proj", "cluster=local"])
    assert cluster == "local"
    assert p == {"name": "sast-grid", "tasks_per_node": 1, "timeout_min": 240, "slurm_partition": "gpu", "slurm_gpus_per_task": 2,
                 "local_gpus_per_node": 2, "slurm_mem": "16G", "slurm_array_parallelism": 8,
                 "slurm_account": "proj"}
    # no flags: a day, not submitit's 2 (local) or 5 (SLURM) minutes; no GPU on the CPU, one with CUDA
    assert _params() == (None, {"name": "sast-grid", "tasks_per_node": 1, "timeout_min": DEFAULT_TIMEOUT_MIN})
    assert _params(device="cuda")[1]["slurm_gpus_per_task"] == 1
    with pytest.raises(ValueError, match="once"):
        _params(mem="4G", options=["slurm_mem=8G"])
    with pytest.raises(ValueError, match="16G"):
        _params(mem="sixteen")
    with pytest.raises(ValueError, match="one task"):  # two tasks would train one run folder twice at once
        _params(options=["slurm_ntasks_per_node=2"])


def test_exit_codes_are_the_pools():
    assert exit_code_of("sast.train.loop.TrainingDiverged: loss is nan at step 3") == 3
    assert exit_code_of("FileNotFoundError: [Errno 2] No such file or directory: 'x'") == 2
    assert exit_code_of("ValueError: bad setting") == 2
    assert exit_code_of("RuntimeError: planted failure") == 70
    assert exit_code_of("submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out") == 130
    assert exit_code_of("no.such.module.Error: ?") == 70


class FakeJob:
    """A submitit job that ends after ``polls`` looks, with a row, an exception trace or no result."""

    def __init__(self, spec, n, polls, fail=None):
        self.spec, self.job_id, self.polls, self.fail = spec, str(n), polls, fail
        self.paths = type("Paths", (), {"stderr": Path(f"/jobs/{n}_0_log.err")})()
        self.state = "TIMEOUT" if fail == "no result" else "FINISHED"
        self.cancelled = False

    def done(self):
        self.polls -= 1
        return self.polls <= 0

    def result(self):
        if self.fail == "no result":
            raise submitit_utils.UncompletedJobError("has not produced any output")
        if self.fail:
            raise submitit_utils.FailedJobError(f"Job failed with trace:\n{TRACE}\nTraceback (most recent call last):"
                                                f"\n  File x\n{self.fail}\n{TRACE}\nlogs")
        return {"run": self.spec.name}

    def cancel(self, check=True):
        self.cancelled = True


class FakeExecutor:
    def __init__(self, fails=None, polls=2):
        self.fails, self.polls, self.jobs, self.running_max, self.batches = fails or {}, polls, [], 0, 0

    def submit(self, fn, out, spec, *rest):
        job = FakeJob(spec, len(self.jobs), self.polls, self.fails.get(spec.name))
        self.jobs.append(job)
        self.running_max = max(self.running_max, sum(j.polls > 0 for j in self.jobs))
        return job

    def batch(self):
        import contextlib

        self.batches += 1
        return contextlib.nullcontext()


SPECS = [RunSpec("hfsb", 0.0, 0), RunSpec("sf", 0.0, 0), RunSpec("sast", 0.3, 0), RunSpec("sf-matched", 0.0, 0)]


def _run(ex, window, rows, failures):
    return run_jobs(ex, SPECS, print, lambda s: ("out", s), lambda s, r: rows.append((s.name, r)), failures.append,
                    window=window, poll_s=0)


def test_local_window_runs_at_most_jobs_at_once_and_names_each_failure():
    ex, rows, seen = FakeExecutor({"sf-s0": "RuntimeError: planted", "sast-rho0.3-s0": "no result"}), [], []
    failures = _run(ex, 2, rows, seen)
    assert ex.running_max == 2 and ex.batches == 0 and len(ex.jobs) == 4
    assert sorted(rows) == [("hfsb-s0", {"run": "hfsb-s0"}), ("sf-matched-s0", {"run": "sf-matched-s0"})]
    assert failures == seen and [f.spec.name for f in failures] == ["sf-s0", "sast-rho0.3-s0"]
    assert failures[0].line() == ("[sweep] failed: sf-s0 (submitit job 1): RuntimeError: planted; "
                                  "log: /jobs/1_0_log.err")
    assert failures[0].exit_code == 70
    assert "(submitit job 2, TIMEOUT)" in failures[1].line() and failures[1].exit_code == 130


def test_slurm_submits_one_array():
    ex, rows = FakeExecutor(), []
    assert _run(ex, None, rows, []) == []
    assert ex.batches == 1 and ex.running_max == 4 and len(rows) == 4


def test_stopping_cancels_the_unfinished_jobs():
    """Ctrl-C (or SIGTERM, turned into KeyboardInterrupt) while jobs run: none may go on unattended."""
    ex = FakeExecutor(polls=1)

    def interrupted(spec, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_jobs(ex, SPECS, print, lambda s: ("out", s), interrupted, print, window=None, poll_s=0)
    # the first job's row was being handled when the interrupt came; the three others are cancelled
    assert [j.cancelled for j in ex.jobs] == [False, True, True, True]
