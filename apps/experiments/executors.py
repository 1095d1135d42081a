"""Where a sweep's runs execute: the local process pool, or submitit jobs (a SLURM array, or local processes).

``--executor submitit`` hands every training run to submitit (https://github.com/facebookincubator/submitit)
as one job: :class:`submitit.AutoExecutor` submits them as a SLURM array where SLURM is
installed, and as local processes (its local executor) elsewhere. Each job calls the
function a pool worker calls (``apps.experiments.cli.run_one``) with the same arguments,
and its return value (the run's row) is collected the same way, so the result files are
those of the pool. This module maps the command line's ``--slurm-*`` and
``--executor-options`` flags to submitit's parameters, and waits on the jobs
(:func:`run_jobs`): a job that fails is reported by name and the others go on.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from runfolder import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERNAL, EXIT_INTERRUPTED
from runfolder.exits import is_input_error

from apps.experiments.plan import RunSpec

EXECUTORS = ("pool", "submitit")
SUBMITIT_FOLDER = "submitit"
"""The sweep's subfolder of submitit's job files: pickled calls and results, each job's stdout and stderr."""

SUBMITIT_MISSING = ("--executor submitit needs the submitit package, which is not installed; "
                    "install it with: pip install 'sast-toolkit[submitit]' (or use --executor pool)")

DEFAULT_TIMEOUT_MIN = 24 * 60
"""A job's time limit without ``--slurm-time``: submitit's own defaults (5 minutes on SLURM,
2 on its local executor) would stop every real training run; a day fits the paper's runs."""

POLL_S = 0.5
"""Seconds between two looks at the running jobs (a look reads a file; on SLURM, submitit
itself rate-limits its ``sacct`` calls)."""

CLUSTERS = ("local", "slurm", "debug")
"""``--executor-options cluster=NAME``: submitit's executors (AutoExecutor picks slurm where
``srun`` exists, local otherwise; debug runs the jobs in this process, for a debugger)."""

_SLURM_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_SLURM_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2})$")
_ONE_TASK = ("tasks_per_node", "slurm_ntasks_per_node", "local_tasks_per_node", "slurm_tasks_per_node")
_CLUSTER_STOPPED = "the job stopped without finishing the run"


def slurm_time_minutes(text: str) -> int:
    """``--slurm-time``: minutes (``90``), ``HH:MM:SS`` or ``D-HH:MM:SS`` -> whole minutes (seconds round up)."""
    text = text.strip()
    if text.isdigit():
        minutes = int(text)
    else:
        m = _SLURM_TIME.match(text)
        if m is None:
            raise ValueError(f"--slurm-time takes minutes (90), HH:MM:SS (01:30:00) or D-HH:MM:SS (2-00:00:00), "
                             f"got {text!r}")
        seconds = (int(m["d"] or 0) * 86400 + int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"]))
        minutes = -(-seconds // 60)
    if minutes < 1:
        raise ValueError(f"--slurm-time must be at least one minute, got {text!r}")
    return minutes


def parse_option(item: str) -> tuple[str, Any]:
    """``--executor-options KEY=VALUE``: the value read as JSON (numbers, true/false, lists), else as text."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ValueError(f"--executor-options takes KEY=VALUE (e.g. slurm_account=myproject), got {item!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw.strip()
    return key, value


def submitit_parameters(*, partition: str | None, time: str | None, gpus_per_task: int | None, mem: str | None,
                        array_parallelism: int | None, options: Sequence[str], device: str,
                        name: str) -> tuple[str | None, dict[str, Any]]:
    """The cluster (None: submitit picks) and the parameters of ``AutoExecutor.update_parameters``.

    Always tasks_per_node=1 (one process per run). --slurm-partition P -> slurm_partition;
    --slurm-time T -> timeout_min (both executors; default :data:`DEFAULT_TIMEOUT_MIN`);
    --slurm-gpus-per-task N -> slurm_gpus_per_task and, for the local executor (which hides
    every GPU from a job that asks for none), gpus_per_node (default 1 with a CUDA
    ``--device``); --slurm-mem M -> slurm_mem; --slurm-array-parallelism N ->
    slurm_array_parallelism; each ``--executor-options KEY=VALUE`` -> KEY (``cluster=NAME``
    picks submitit's executor).
    """
    # one task per job: a second task would train the same run folder (and SLURM's --gpus-per-task needs a count)
    params: dict[str, Any] = {"name": name, "tasks_per_node": 1}
    params["timeout_min"] = slurm_time_minutes(time) if time is not None else DEFAULT_TIMEOUT_MIN
    if partition is not None:
        if not partition.strip():
            raise ValueError("--slurm-partition takes a partition name, got ''")
        params["slurm_partition"] = partition.strip()
    if gpus_per_task is None and device.startswith("cuda"):
        gpus_per_task = 1
    if gpus_per_task is not None:
        if gpus_per_task < 0:
            raise ValueError(f"--slurm-gpus-per-task must be >= 0, got {gpus_per_task}")
        params["slurm_gpus_per_task"] = gpus_per_task
        params["local_gpus_per_node"] = gpus_per_task
    if mem is not None:
        if not _SLURM_MEM.match(mem.strip()):
            raise ValueError(f"--slurm-mem takes a size such as 16G or 4000M, got {mem!r}")
        params["slurm_mem"] = mem.strip()
    if array_parallelism is not None:
        if array_parallelism < 1:
            raise ValueError(f"--slurm-array-parallelism must be >= 1, got {array_parallelism}")
        params["slurm_array_parallelism"] = array_parallelism
    cluster = None
    flags = set(params) - {"name", "timeout_min", "tasks_per_node"}
    for item in options:
        key, value = parse_option(item)
        if key in _ONE_TASK:
            raise ValueError(f"--executor-options {key}=...: a run is one task (a second would train the same run "
                             "folder); leave it out")
        if key == "cluster":
            if value not in CLUSTERS:
                raise ValueError(f"--executor-options cluster= takes one of {', '.join(CLUSTERS)}, got {value!r}")
            cluster = value
            continue
        if key in flags:
            raise ValueError(f"--executor-options {key}=...: its --slurm-* flag sets it too; give it once")
        params[key] = value
    return cluster, params


def make_executor(folder: Path, cluster: str | None, params: dict[str, Any]) -> Any:
    """A :class:`submitit.AutoExecutor` writing to ``folder``, with ``params``; ValueError (one line) if refused."""
    try:
        import submitit
    except ImportError:
        raise ValueError(SUBMITIT_MISSING) from None
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"submitit could not start its {cluster or 'automatic'} executor: {_first_line(e)}") from None
    for key, value in params.items():  # one at a time, so that a refusal names its key
        try:
            executor.update_parameters(**{key: value})
        except (NameError, ValueError, TypeError, AssertionError) as e:
            known = _known_parameters()
            close = difflib.get_close_matches(key, known, n=1) if key not in known else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--executor-options {key}={value!r}: submitit rejects it{hint}: "
                             f"{_first_line(e).split('. Valid arguments')[0]}") from None
    return executor


def _known_parameters() -> list[str]:
    """Every parameter name AutoExecutor accepts (for a closest-match hint; empty if submitit's internals moved)."""
    try:
        import submitit
        from submitit.core import plugins

        generic = sorted(submitit.AutoExecutor._valid_parameters())
        known = list(generic)
        for ex_name, ex in plugins.get_executors().items():
            known += [f"{ex_name}_{p}" for p in sorted(set(ex._valid_parameters()) | set(generic))]
        return known
    except Exception:  # noqa: BLE001 (a hint only)
        return []


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@dataclasses.dataclass(frozen=True)
class Failure:
    """A run whose job failed: the run, the job, what stopped it, its log, and the exit code it earns."""

    spec: RunSpec
    job_id: str
    state: str
    error: str
    log: str
    exit_code: int

    def line(self) -> str:
        state = f", {self.state}" if self.state else ""
        return f"[sweep] failed: {self.spec.path} (submitit job {self.job_id}{state}): {self.error}; log: {self.log}"


def exit_code_of(exception_line: str) -> int:
    """The exit code that the pool (the ``guard`` boundary) gives a run raising this exception.

    ``exception_line`` is a traceback's last line, ``module.Class: message``: 3 for
    ``TrainingDiverged``, 2 for bad input or memory exhausted, 130 for submitit's
    ``UncompletedJobError`` (timed out, not requeued: the cluster stopped the run), 70 otherwise.
    """
    qualname = exception_line.split(":", 1)[0].strip()
    module, _, name = qualname.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "builtins"), name)
    except (ImportError, AttributeError, ValueError):
        return EXIT_INTERNAL
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return EXIT_INTERNAL
    if name == "TrainingDiverged":
        return EXIT_DIVERGED
    if name == "UncompletedJobError":
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if is_input_error(cls.__new__(cls)) else EXIT_INTERNAL


def outcome(job: Any, spec: RunSpec) -> tuple[Any, Failure | None]:
    """A finished job's result (the run's row), or its :class:`Failure`."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return job.result(), None
    except FailedJobError as e:  # the run raised (or submitit stopped it at its time limit)
        trace = str(e).split("-" * 22)
        body = [line.strip() for line in (trace[1] if len(trace) > 2 else str(e)).splitlines() if line.strip()]
        error = body[-1] if body else type(e).__name__
        return None, Failure(spec, str(job.job_id), "", error, str(job.paths.stderr), exit_code_of(error))
    except UncompletedJobError:  # no result: killed, cancelled, pre-empted, out of memory, node failure
        state = str(job.state)
        code = EXIT_BAD_INPUT if state.upper().startswith("OUT_OF_M") else EXIT_INTERRUPTED
        return None, Failure(spec, str(job.job_id), state, _CLUSTER_STOPPED, str(job.paths.stderr), code)


def run_jobs(executor: Any, todo: Sequence[RunSpec], fn: Callable[..., Any], args_of: Callable[[RunSpec], tuple],
             on_row: Callable[[RunSpec, Any], None], on_failure: Callable[[Failure], None], *,
             window: int | None, poll_s: float = POLL_S) -> list[Failure]:
    """Submit ``fn(*args_of(spec))`` for every spec and wait for all; return the failures.

    ``window``: at most that many jobs at once (submitit's local executor starts every job
    it is given at once: this is ``--jobs``); None submits all as one job array (SLURM, where
    ``slurm_array_parallelism`` caps the jobs running at once). Each finished job's row goes
    to ``on_row``, each failed job to ``on_failure``, as they end. Stopped (Ctrl-C, SIGTERM,
    an error), the jobs not yet finished are cancelled: none goes on writing a run folder
    unattended (a run resumes from its checkpoint next time).
    """
    queue = list(todo)
    pending: dict[Any, RunSpec] = {}
    failures: list[Failure] = []
    try:
        while queue or pending:
            if window is None and queue:
                with executor.batch():
                    jobs = [executor.submit(fn, *args_of(spec)) for spec in queue]
                for job, spec in zip(jobs, queue):
                    pending[job] = spec
                    print(f"[{spec.path}] submitted: submitit job {job.job_id}", file=sys.stderr, flush=True)
                queue = []
            while window is not None and queue and len(pending) < window:
                spec = queue.pop(0)
                job = executor.submit(fn, *args_of(spec))
                pending[job] = spec
                print(f"[{spec.path}] submitted: submitit job {job.job_id}", file=sys.stderr, flush=True)
            finished = [job for job in pending if job.done()]
            for job in finished:
                spec = pending.pop(job)
                row, failure = outcome(job, spec)
                if failure is None:
                    on_row(spec, row)
                else:
                    failures.append(failure)
                    on_failure(failure)
            if not finished:
                time.sleep(poll_s)
    except BaseException:
        for job in pending:
            try:
                job.cancel(check=False)
            except Exception as e:  # noqa: BLE001 (cancel the others; say which one may go on)
                print(f"warning: submitit job {job.job_id} could not be cancelled: {_first_line(e)}",
                      file=sys.stderr)
        raise
    return failures
