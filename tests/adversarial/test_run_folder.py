"""Run folders under faults and concurrent use: one trainer per folder, no stuck folder, an exact resume.

Each case about the command line runs the real one (``python -m sast.train``, in a
process of its own: conftest's runner, or a fresh interpreter where the case needs one)
and asserts its exit code, a stderr without a traceback, and that nothing written
before is lost. A kill mid-epoch followed by ``--resume`` is tested in
tests/e2e/test_train_cli.py (test_killed_run_resumes_bit_for_bit) and not repeated here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from apps.train import build_parser, config_from_args, main, monitor_callbacks
from runfolder import CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, METRICS_FILE, file_mode, read_jsonl
from sast import checkpoint
from sast.train import Callback, train

REPO = Path(__file__).resolve().parents[2]
UMASK = 0o027  # not the usual 022: every file of the reference run must get 0o640 under it


@pytest.fixture(scope="session")
def flags(tiny_flags) -> list[str]:
    """conftest's tiny flags (one epoch, the session cache), seed 1, with the default monitor."""
    return [*tiny_flags, "--seed", "1", "--monitor", "default"]


@pytest.fixture(scope="session")
def train_cli(cli, flags):
    """``train_cli(*args, real=False)``: ``python -m sast.train FLAGS args`` in a process of its own (conftest's
    runner); returns its Result (code, stdout, stderr)."""
    return lambda *args, real=False: cli("sast.train", *flags, *args, real=real, timeout=300)


def one_line_error(res, code: int = 2) -> str:
    """The stderr of a run that failed with ``code``: one line, ``error: ...``, no traceback."""
    err = res.stderr.strip()
    assert res.code == code, (res.code, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def succeeded(res) -> str:
    assert res.code == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr
    return res.stderr


def timeless(obj):
    """``obj`` without timing fields (any key with "seconds" in it), at every depth."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [timeless(v) for v in obj]
    return obj


def records(run: Path) -> list[dict]:
    return list(read_jsonl(run / METRICS_FILE))


@pytest.fixture(scope="session")
def whole(tmp_path_factory, train_cli) -> Path:
    """An uninterrupted 2-epoch run with the default monitor (the reference), written by a fresh interpreter
    under UMASK."""
    run = tmp_path_factory.mktemp("runs") / "whole"
    mask = os.umask(UMASK)
    try:
        succeeded(train_cli("--epochs", "2", "--run-dir", run, real=True))
    finally:
        os.umask(mask)
    return run


@pytest.fixture(scope="session")
def one_epoch(tmp_path_factory, train_cli, whole) -> Path:
    """A finished 1-epoch run of the same settings (read-only: tests copy it)."""
    run = tmp_path_factory.mktemp("runs") / "one-epoch"
    succeeded(train_cli("--run-dir", run))
    return run


def modes(folder: Path) -> dict[str, str]:
    return {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir()}


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# --- one trainer per folder ---------------------------------------------------------------------------------

HELD_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from apps.train import build_parser, config_from_args
    from sast.train import Callback, train

    class WaitForGo(Callback):  # holds the folder (and its lock) until the test says go
        def on_train_start(self, run):
            go = Path(sys.argv[1])
            while not go.exists():
                time.sleep(0.05)

    args = build_parser().parse_args(sys.argv[3:])
    train(config_from_args(args), sys.argv[2], callbacks=[WaitForGo()], progress=False)
    """
)


def test_a_second_trainer_on_a_busy_folder_exits_2_naming_the_first(tmp_path, train_cli, flags):
    run, go = tmp_path / "run", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-c", HELD_RUN, str(go), str(run), *flags], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / CONFIG_FILE).exists():  # config.json is written under the lock, before training starts
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == first.pid
        err = one_line_error(train_cli("--run-dir", run))
        assert f"pid {first.pid}" in err and "in use by another trainer" in err, err
        err = one_line_error(train_cli("--run-dir", run, "--resume"))  # resuming is refused alike
        assert f"pid {first.pid}" in err, err
        go.touch()
        _, stderr = first.communicate(timeout=300)
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-2000:]
    # the first run is whole: one config, one start, one eval, its checkpoint; the lock is gone
    assert [r["epoch"] for r in records(run) if r["kind"] == "eval"] == [1]
    assert checkpoint.read(run / CHECKPOINT_FILE)["epoch"] == 1
    assert json.loads((run / CONFIG_FILE).read_text())["train"]["epochs"] == 1
    assert not (run / LOCK_FILE).exists()


KILLED_HOLDER = textwrap.dedent(
    """
    import os, signal, sys
    from runfolder.lock import RunLock

    RunLock(sys.argv[1]).acquire()
    os.kill(os.getpid(), signal.SIGKILL)  # dies holding it: the kernel releases the flock, the file stays
    """
)


def test_a_stale_lock_of_a_dead_trainer_is_taken_over(tmp_path, train_cli):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.run([sys.executable, "-c", KILLED_HOLDER, str(run)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert holder.returncode == -signal.SIGKILL, holder.stderr
    dead = json.loads((run / LOCK_FILE).read_text())["pid"]
    err = succeeded(train_cli("--monitor", "off", "--run-dir", run))
    assert f"stale lock of pid {dead}" in err and "no longer running" in err, err
    assert [r["epoch"] for r in records(run) if r["kind"] == "eval"] == [1]
    assert not (run / LOCK_FILE).exists()


# --- a folder is never stuck --------------------------------------------------------------------------------


def _stuck_run(run: Path) -> None:
    """What a run killed (or stopped by NaN) before its first epoch ended leaves: a log and a config, no ckpt.pt."""
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps({"train": {"epochs": 1}}))
    (run / METRICS_FILE).write_text(
        json.dumps({"kind": "monitor", "event": "start", "step": 0, "epoch": 0}) + "\n"
        + json.dumps({"kind": "error", "step": 1, "epoch": 0, "error": "non-finite loss"}) + "\n"
        + '{"kind": "train", "st'  # cut mid-line by the kill
    )


@pytest.mark.parametrize("resume", [False, True], ids=["fresh-start", "resume"])
def test_a_folder_without_checkpoint_is_started_over(tmp_path, train_cli, one_epoch, resume):
    run = tmp_path / "run"
    _stuck_run(run)
    err = succeeded(train_cli("--run-dir", run, *(["--resume"] if resume else [])))
    assert "starting it over" in err and "metrics.jsonl" in err, err
    if resume:
        assert "nothing to continue" in err, err
    # the stale records are gone: the log is exactly that of a run started in an empty folder
    assert timeless(records(run)) == timeless(records(one_epoch))
    assert json.loads((run / CONFIG_FILE).read_text())["train"]["seed"] == 1


def test_resume_on_a_folder_with_no_run_is_refused(tmp_path, train_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = one_line_error(train_cli("--run-dir", empty, "--resume"))
    assert "holds no run" in err and "--run-dir" in err, err
    assert list(empty.iterdir()) == []  # nothing left behind, not even the lock


def test_a_fresh_start_on_a_folder_with_a_checkpoint_is_refused(tmp_path, train_cli, one_epoch):
    run = copy_run(one_epoch, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    err = one_line_error(train_cli("--run-dir", run))
    assert "pass --resume" in err, err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# --- leftovers and damaged logs -----------------------------------------------------------------------------


def test_orphan_temporary_files_are_removed_at_the_next_start(tmp_path, train_cli, one_epoch):
    run = copy_run(one_epoch, tmp_path)
    orphans = [run / ".ckpt.pt.k3j2h1.tmp", run / ".metrics.jsonl.a8b7c6.tmp", run / ".config.json.zz.tmp"]
    for p in orphans:
        p.write_bytes(b"half a file")
    young_other = run / ".checks.json.q1w2e3.tmp"  # another command's write may be in progress: kept
    young_other.write_text("{")
    before = records(run)
    err = succeeded(train_cli("--run-dir", run, "--resume"))
    assert "removed 3 temporary file(s)" in err, err
    assert not any(p.exists() for p in orphans) and young_other.exists()
    assert records(run) == before  # a finished run resumed: nothing to do, nothing lost


def test_invalid_utf8_in_the_log_does_not_stop_a_resume(tmp_path, train_cli, whole, one_epoch):
    run = copy_run(one_epoch, tmp_path)
    c = checkpoint.read(run / CHECKPOINT_FILE)
    c["train_config"]["epochs"] = 2  # train on: the same run with 2 epochs
    torch.save(c, run / CHECKPOINT_FILE)
    lines = (run / METRICS_FILE).read_bytes().splitlines(keepends=True)
    lines.insert(1, b'{"kind": "train", "note": "\xff\xfe latin-1 junk"}\n')
    (run / METRICS_FILE).write_bytes(b"".join(lines))
    err = succeeded(train_cli("--epochs", "2", "--run-dir", run, "--resume"))
    assert str(run / METRICS_FILE) in err and "dropped 1 unreadable line" in err, err
    assert timeless(records(run)) == timeless(records(whole))
    got = modes(run)  # the log cut back on resume, the new checkpoints: the umask's mode too
    assert got == dict.fromkeys(got, oct(file_mode()))  # the runner's processes share this process's umask


def test_every_file_of_a_run_folder_gets_the_umask_mode(whole):
    got = modes(whole)  # written under UMASK: appended (metrics.jsonl) and atomically replaced (the others) alike
    assert {"config.json", "metrics.jsonl", "ckpt.pt", "best.pt"} <= set(got)
    assert got == dict.fromkeys(got, oct(0o666 & ~UMASK))


# --- a resumed run's log is the uninterrupted run's ---------------------------------------------------------


class StopAt(Callback):
    """Interrupts training (as Ctrl-C would) after step ``k``: nothing is killed."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_step_end(self, run, stats) -> None:
        if run.step == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["one-epoch-then-resume-to-two", "stopped-mid-epoch-two"])
def test_a_resumed_run_logs_what_the_uninterrupted_run_logs(tmp_path, flags, whole, one_epoch, how):
    """With the default monitor: its start record is not repeated, its end record and counters are the
    uninterrupted run's (the checkpoint holds the log's length and the monitor's state)."""
    if how == "one-epoch-then-resume-to-two":
        run = copy_run(one_epoch, tmp_path)  # finished: its log ends with the monitor's end record
        c = checkpoint.read(run / CHECKPOINT_FILE)
        c["train_config"]["epochs"] = 2
        torch.save(c, run / CHECKPOINT_FILE)
    else:
        run = tmp_path / "run"
        steps_per_epoch = next(r["step"] for r in records(whole) if r["kind"] == "eval")
        cfg = config_from_args(build_parser().parse_args([*flags, "--epochs", "2"]))
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run, callbacks=[*monitor_callbacks("default"), StopAt(steps_per_epoch + 2)], progress=False)
        assert not (run / LOCK_FILE).exists()
    assert main([*flags, "--epochs", "2", "--run-dir", str(run), "--resume"]) == 0
    got, want = records(run), records(whole)
    assert [r["kind"] for r in got].count("monitor") == 2  # one start, one end
    assert timeless(got) == timeless(want)
    m1, _ = checkpoint.load(whole / CHECKPOINT_FILE)
    m2, _ = checkpoint.load(run / CHECKPOINT_FILE)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
