"""Every command line under hostile input and faults: one line naming the file, the right exit code, nothing lost.

The exit codes (runfolder.exits): 0 done, 1 a bound is violated (never a crash), 2 bad
input or an unusable file (one line on stderr naming it), 3 training diverged, 70 an
internal error (traceback), 130 interrupted. Each case runs the real command line in a
process of its own (``_cli_runner``: a fork server, or a fresh interpreter with
``real=True``) and checks the exit code, that stderr is one line without a traceback and
names the file or setting, and that nothing written before is lost (the good checkpoint
G and the run folders are byte for byte as before, no temporary file is left).

Permission bits do not stop root, so the read-only cases that chmod run only as another
user; as root the same commands meet a read-only file system (EROFS) or a full disk
(ENOSPC) planted in the writer, and real ENOTDIR, EISDIR and symbolic-link-loop faults.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from _cli_runner import ENOSPC, EROFS, digest, fault
from runfolder import EXIT_BAD_INPUT, EXIT_CODES_EPILOG, EXIT_INTERNAL, EXIT_INTERRUPTED, guard

IS_ROOT = os.geteuid() == 0
needs_non_root = pytest.mark.skipif(IS_ROOT, reason="permission bits do not stop root; the EROFS cases cover it")


def assert_one_line(res, code: int, *names) -> str:
    """``res`` exited ``code`` with exactly one line on stderr, no traceback, naming each of ``names``."""
    assert res.code == code, f"exit {res.code}, expected {code}\nstdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-4000:]}"
    assert "Traceback" not in res.stderr, res.stderr
    assert len(res.lines) == 1, res.stderr
    line = res.lines[0]
    for name in names:
        assert str(name) in line, f"{name} not named in: {line}"
    return line


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


def unchanged(before: dict[str, str], folder: Path) -> None:
    """Every file of ``before`` is still in ``folder``, byte for byte, and no temporary file is left."""
    after = digest(folder)
    assert {k: after.get(k) for k in before} == before
    assert no_temporaries(folder)


@pytest.fixture(scope="session")
def g_digest(good_run) -> dict[str, str]:
    return digest(good_run)


@pytest.fixture(autouse=True)
def _good_run_untouched(good_run, g_digest):
    yield
    assert digest(good_run) == g_digest, "a test wrote into the good run folder"


def _nan_checkpoint(src: Path, dst: Path) -> str:
    ckpt = torch.load(src, weights_only=True)
    name = next(k for k, t in ckpt["model"].items() if t.is_floating_point())
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    torch.save(ckpt, dst)
    return name


# ----------------------------------------------------------------------------- a file where a folder is expected

UNDER_A_FILE = {
    "evaluate --json": lambda g, r, f, t: ("sast.evaluate", "--model", g, "--json", f / "e.json", "--no-progress"),
    "checks.contraction --json": lambda g, r, f, t: ("checks.contraction", "--model", g, "--json", f / "o.json",
                                                     "--no-progress"),
    "checks.all --out": lambda g, r, f, t: ("checks.all", "--model", g, "--out", f / "c.json", "--no-progress"),
    "checks.convergence --json": lambda g, r, f, t: ("checks.convergence", "--run", r, "--json", f / "t6.json",
                                                     "--no-progress"),
    "train --run-dir": lambda g, r, f, t: ("sast.train", *t, "--run-dir", f),
    "experiments --out": lambda g, r, f, t: ("sast.experiments", "rho-sweep", "--out", f, "--limit", "200",
                                             "--epochs", "1", "--no-progress"),
    "demo --out": lambda g, r, f, t: ("sast.demo", "--out", f / "demo", "--epochs", "1", "--no-progress"),
    "reports.build -o": lambda g, r, f, t: ("reports.build", r, "-o", f / "report.html"),
}


@pytest.mark.parametrize("case", UNDER_A_FILE)
def test_output_under_a_regular_file_is_one_line_exit_2_before_any_work(cli, good_ckpt, good_run, blocker,
                                                                       tiny_flags, case):
    """ENOTDIR/EEXIST: each output path is checked before the work, so nothing is computed, printed or lost."""
    text = blocker.read_text()
    res = cli(*UNDER_A_FILE[case](good_ckpt, good_run, blocker, tiny_flags))
    assert_one_line(res, EXIT_BAD_INPUT, blocker)
    assert res.stdout == ""  # no table printed and then lost
    assert blocker.read_text() == text


@pytest.mark.parametrize("real", [False, True], ids=["fork", "python -m"])
def test_the_fork_runner_agrees_with_a_fresh_interpreter(cli, good_ckpt, blocker, real):
    res = cli("sast.evaluate", "--model", good_ckpt, "--json", blocker / "e.json", "--no-progress", real=real)
    line = assert_one_line(res, EXIT_BAD_INPUT, blocker)
    assert line.startswith("error: ") and "Not a directory" in line


def test_output_that_is_a_folder_is_one_line_exit_2(cli, good_ckpt, good_run, tmp_path):
    """EISDIR: --json, --out and -o naming a folder."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for args in (("sast.evaluate", "--model", good_ckpt, "--json", folder, "--no-progress"),
                 ("checks.all", "--model", good_ckpt, "--out", folder, "--no-progress"),
                 ("reports.build", good_run, "-o", folder)):
        assert_one_line(cli(*args), EXIT_BAD_INPUT, folder)
    assert list(folder.iterdir()) == []


# ----------------------------------------------------------------------------- read-only run folders


@needs_non_root
def test_read_only_run_folder_is_one_line_exit_2(cli, run_copy, tiny_flags):
    before = digest(run_copy)
    run_copy.chmod(0o555)
    ckpt = run_copy / "ckpt.pt"
    assert_one_line(cli("sast.evaluate", "--model", ckpt, "--no-progress"), EXIT_BAD_INPUT, run_copy)
    assert_one_line(cli("checks.all", "--model", ckpt, "--only", "contraction", "--no-progress"), EXIT_BAD_INPUT,
                    run_copy)
    assert_one_line(cli("sast.train", *tiny_flags, "--resume", "--run-dir", run_copy), EXIT_BAD_INPUT, run_copy)
    assert_one_line(cli("sast.train", *tiny_flags, "--run-dir", run_copy / "new"), EXIT_BAD_INPUT, run_copy)
    run_copy.chmod(0o755)
    unchanged(before, run_copy)


@needs_non_root
def test_unreadable_checkpoint_is_one_line_exit_2(cli, run_copy):
    ckpt = run_copy / "ckpt.pt"
    ckpt.chmod(0)
    try:
        assert_one_line(cli("sast.evaluate", "--model", ckpt, "--no-progress"), EXIT_BAD_INPUT, ckpt)
    finally:
        ckpt.chmod(0o644)


# ----------------------------------------------------------------------------- a full disk, a read-only file system


@pytest.fixture(scope="module")
def interrupted(cli, tiny_flags, tmp_path_factory):
    """A two-epoch run stopped by a full disk (ENOSPC) at its second ckpt.pt: the result, and the folder it left."""
    run = tmp_path_factory.mktemp("adv-interrupted") / "run"
    res = cli("sast.train", *tiny_flags, "--epochs", "2", "--run-dir", run,
              fault=fault(ENOSPC, names=("ckpt.pt",), after=1))
    return res, run


@pytest.fixture
def unfinished_copy(interrupted, tmp_path) -> Path:
    """A copy of the interrupted run (ckpt.pt at epoch 1 of 2), to resume."""
    copy = tmp_path / "unfinished"
    shutil.copytree(interrupted[1], copy)
    return copy


def test_full_disk_while_training_keeps_the_earlier_checkpoint(interrupted):
    """ENOSPC at the second epoch's ckpt.pt: exit 2 naming it; the first epoch's ckpt.pt and best.pt survive."""
    res, run = interrupted
    line = assert_one_line(res, EXIT_BAD_INPUT, run / "ckpt.pt")
    assert "No space left" in line
    from sast import checkpoint

    _, ckpt = checkpoint.load(run / "ckpt.pt")
    assert ckpt["epoch"] == 1
    checkpoint.load(run / "best.pt")
    assert no_temporaries(run)


def test_read_only_file_system_is_one_line_exit_2_and_loses_nothing(cli, run_copy, unfinished_copy, tiny_flags):
    """EROFS on every write under a run folder (as root too): evaluate, checks.all, --resume, a new run."""
    ckpt = run_copy / "ckpt.pt"
    before, before_unfinished = digest(run_copy), digest(unfinished_copy)
    ro = fault(EROFS, under=run_copy)
    assert_one_line(cli("sast.evaluate", "--model", ckpt, "--no-progress", fault=ro), EXIT_BAD_INPUT,
                    run_copy / "evaluation.json")
    assert_one_line(cli("checks.all", "--model", ckpt, "--only", "contraction", "--no-progress", fault=ro),
                    EXIT_BAD_INPUT, run_copy / "checks.json")
    assert_one_line(cli("sast.train", *tiny_flags, "--run-dir", run_copy / "new", fault=ro), EXIT_BAD_INPUT,
                    run_copy / "new" / "config.json")
    unchanged(before, run_copy)
    res = cli("sast.train", *tiny_flags, "--epochs", "2", "--resume", "--run-dir", unfinished_copy,
              fault=fault(EROFS, under=unfinished_copy))
    assert_one_line(res, EXIT_BAD_INPUT, unfinished_copy / "metrics.jsonl")
    unchanged(before_unfinished, unfinished_copy)


def test_full_disk_on_resume_evaluate_and_checks_loses_nothing(cli, good_ckpt, unfinished_copy, tiny_flags,
                                                               tmp_path):
    before = digest(unfinished_copy)
    res = cli("sast.train", *tiny_flags, "--epochs", "2", "--resume", "--run-dir", unfinished_copy,
              fault=fault(ENOSPC, names=("metrics.jsonl",)))
    assert_one_line(res, EXIT_BAD_INPUT, unfinished_copy / "metrics.jsonl")
    unchanged(before, unfinished_copy)
    out = tmp_path / "out"
    out.mkdir()
    res = cli("sast.evaluate", "--model", good_ckpt, "--json", out / "e.json", "--no-progress",
              fault=fault(ENOSPC, names=("e.json",)))
    assert_one_line(res, EXIT_BAD_INPUT, out / "e.json")
    res = cli("checks.all", "--model", good_ckpt, "--only", "contraction", "--out", out / "c.json", "--no-progress",
              fault=fault(ENOSPC, names=("c.json",)))
    assert_one_line(res, EXIT_BAD_INPUT, out / "c.json")
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- unusable inputs


def test_checkpoint_that_is_a_folder_or_a_link_loop_is_one_line_exit_2(cli, good_run, tmp_path):
    loop = tmp_path / "loop.pt"
    loop.symlink_to(tmp_path / "back.pt")
    (tmp_path / "back.pt").symlink_to(loop)
    assert_one_line(cli("sast.evaluate", "--model", good_run, "--no-progress"), EXIT_BAD_INPUT, good_run)
    assert_one_line(cli("checks.contraction", "--model", loop, "--no-progress"), EXIT_BAD_INPUT, loop)


def test_unusable_cache_folder_never_crashes(cli, good_ckpt, blocker):
    """--cache-dir naming a regular file: the frames cannot be cached there; never a traceback, never exit 1."""
    res = cli("sast.evaluate", "--model", good_ckpt, "--cache-dir", blocker, "--no-progress",
              "--json", blocker.parent / "e.json")
    assert res.code in (0, EXIT_BAD_INPUT) and "Traceback" not in res.stderr, res.stderr
    if res.code == EXIT_BAD_INPUT:
        assert_one_line(res, EXIT_BAD_INPUT, blocker)


def test_non_finite_checkpoint_is_refused_naming_the_tensors(cli, run_copy, tiny_flags):
    """NaN weights: evaluate, checks.all and --resume refuse them (no accuracy of a NaN model, no crash in a norm)."""
    ckpt = run_copy / "ckpt.pt"
    name = _nan_checkpoint(ckpt, ckpt)
    before = digest(run_copy)
    for args in (("sast.evaluate", "--model", ckpt, "--no-progress"),
                 ("checks.all", "--model", ckpt, "--no-progress"),
                 ("sast.train", *tiny_flags, "--resume", "--run-dir", run_copy)):
        line = assert_one_line(cli(*args), EXIT_BAD_INPUT, ckpt, name)
        assert "non-finite" in line
    unchanged(before, run_copy)


def test_resume_checkpoint_without_training_state_is_one_line_exit_2(cli, run_copy, tiny_flags):
    ckpt = run_copy / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    for key in ("step", "optimizer", "rng"):
        del state[key]
    torch.save(state, ckpt)
    before = digest(run_copy)
    assert_one_line(cli("sast.train", *tiny_flags, "--resume", "--run-dir", run_copy), EXIT_BAD_INPUT,
                    ckpt, "step", "optimizer", "rng")
    unchanged(before, run_copy)


@pytest.mark.parametrize("flags", [("--lr", "1e300"), ("--lr", "3e38", "--optimizer", "adam")],
                         ids=["lr 1e300", "lr 3e38 adam"])
def test_learning_rate_overflowing_float32_is_one_line_exit_2(cli, tiny_flags, tmp_path, flags):
    run = tmp_path / "run"
    line = assert_one_line(cli("sast.train", *tiny_flags, *flags, "--run-dir", run), EXIT_BAD_INPUT, "lr")
    assert "float32" in line
    assert not run.exists()


DEVICE = {
    "sast.train": lambda g, r, t: ("sast.train", *t, "--run-dir", r.parent / "never"),
    "sast.evaluate": lambda g, r, t: ("sast.evaluate", "--model", g, "--no-progress"),
    "checks.contraction": lambda g, r, t: ("checks.contraction", "--model", g, "--no-progress"),
    "checks.all": lambda g, r, t: ("checks.all", "--model", g, "--no-progress"),
    "checks.convergence": lambda g, r, t: ("checks.convergence", "--run", r, "--no-progress"),
    "sast.experiments": lambda g, r, t: ("sast.experiments", "rho-sweep", "--out", r.parent / "never",
                                         "--limit", "200", "--no-progress"),
    "sast.demo": lambda g, r, t: ("sast.demo", "--out", r.parent / "never", "--no-progress"),
}


@pytest.mark.parametrize("command", DEVICE)
def test_unknown_device_is_one_line_exit_2_everywhere(cli, good_ckpt, good_run, tiny_flags, command):
    res = cli(*DEVICE[command](good_ckpt, good_run, tiny_flags), "--device", "tpu")
    assert_one_line(res, EXIT_BAD_INPUT, "'tpu'", "cpu, cuda or cuda:N")
    assert not (good_run.parent / "never").exists()


# ----------------------------------------------------------------------------- reports


def test_reports_on_link_loops_missing_and_unreadable_paths_are_one_line_exit_2(cli, good_run, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "back")
    (tmp_path / "back").symlink_to(loop)
    missing = tmp_path / "missing"
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "results.json").write_bytes(b"\xff\xfe{not utf-8")
    out = tmp_path / "report.html"
    for args, name in ((("reports.build", loop, "-o", out), loop),
                       (("reports.build", good_run, missing, "-o", out), missing),
                       (("reports.sweep", loop, "-o", out), loop),
                       (("reports.sweep", missing, "-o", out), missing),
                       (("reports.sweep", garbled, "-o", out), garbled / "results.json")):
        assert_one_line(cli(*args), EXIT_BAD_INPUT, name)
    assert not out.exists()


# ----------------------------------------------------------------------------- the boundary itself (in process)


def _internal(module: str, attr: str, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(importlib.import_module(module), attr, broken)


@pytest.mark.parametrize("command, patch", [
    ("sast.evaluate", ("sast.transfer", "diagnostics")),
    ("checks.contraction", ("checks.contraction", "run")),
    ("reports.build", ("reports.build", "render_report")),
], ids=["evaluate", "checks.contraction", "reports.build"])
def test_an_internal_error_exits_70_with_its_traceback_never_1(good_ckpt, good_run, tmp_path, monkeypatch, capsys,
                                                               adv_cache, command, patch):
    _internal(*patch, monkeypatch)
    monkeypatch.setenv("SAST_CACHE", str(adv_cache))
    args = {"sast.evaluate": ["--model", str(good_ckpt), "--json", str(tmp_path / "e.json"), "--no-progress"],
            "checks.contraction": ["--model", str(good_ckpt), "--no-progress"],
            "reports.build": [str(good_run), "-o", str(tmp_path / "r.html")]}[command]
    code = importlib.import_module(command).main(args)
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL != 1
    assert "Traceback" in err and "RuntimeError: planted bug" in err
    assert err.strip().splitlines()[-1].startswith("internal error")


def test_the_boundary_maps_each_kind_of_failure_to_its_code(capsys, tmp_path):
    def failing(exc):
        @guard
        def main(argv=None) -> int:
            raise exc
        return main()

    assert failing(KeyboardInterrupt()) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted\n"
    assert failing(PermissionError(13, "Permission denied", str(tmp_path / "x"))) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.count("\n") == 1
    assert failing(ValueError("first\nsecond")) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: first second\n"
    assert failing(MemoryError()) == EXIT_BAD_INPUT
    assert "out of memory" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage errors and --help pass through
        failing(SystemExit(2))


COMMANDS = ["sast.train", "sast.evaluate", "sast.experiments", "sast.demo", "checks.contraction",
            "checks.state_bounds", "checks.lipschitz", "checks.smoothness", "checks.sam_error", "checks.mechanism",
            "checks.transfer", "checks.all", "checks.convergence", "reports.build", "reports.sweep"]


def test_every_help_ends_with_the_exit_codes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # argparse rewraps the epilog to the terminal's width
    for command in COMMANDS:
        module = importlib.import_module("sast.train.__main__" if command == "sast.train" else command)
        with pytest.raises(SystemExit) as stop:
            module.main(["experiment", "--help"] if command == "sast.experiments" else ["--help"])
        assert stop.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert " ".join(EXIT_CODES_EPILOG.split()) in out, command


def test_exit_codes_are_distinct_and_a_crash_is_never_1():
    from runfolder import EXIT_DIVERGED, EXIT_OK, EXIT_VIOLATED

    codes = [EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERNAL, EXIT_INTERRUPTED]
    assert len(set(codes)) == len(codes) and EXIT_VIOLATED == 1 and EXIT_INTERNAL not in (0, 1, 2, 3)
