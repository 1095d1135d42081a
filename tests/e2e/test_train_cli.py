"""`python -m sast.train`: run folder, bit-for-bit resume after a kill, divergence, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from apps.train import main
from sast import checkpoint
from sast.runlog import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def _timeless(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_run_folder_contents(tmp_path, tiny_train_args, capsys):
    run = tmp_path / "run"
    assert main([*tiny_train_args, "--method", "sast", "--rho", "0.1", "--epochs", "2", "--run-dir", str(run)]) == 0
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "ckpt.pt", "best.pt"}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["method"] == "sast" and cfg["train"]["rho"] == 0.1
    assert cfg["model"]["layers"] == ["dense:16"] and cfg["environment"]["torch"] == torch.__version__
    evals = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert all(0 <= r["test_smooth_acc"] <= 1 and 0 <= r["test_hard_acc"] <= 1 for r in evals)
    assert evals[-1]["grad_evals"] == 2 * evals[-1]["step"]  # SAST costs two gradients a step
    model, ckpt = checkpoint.load(run / "ckpt.pt")
    assert ckpt["step"] == evals[-1]["step"] and ckpt["train_config"]["rho"] == 0.1
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(run) in out


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from apps.train import build_parser, config_from_args
    from sast.train import Callback, train

    class KillAt(Callback):
        def on_step_end(self, run, stats):
            if run.step == int(sys.argv[1]):
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a real kill

    args = build_parser().parse_args(sys.argv[3:])
    train(config_from_args(args), sys.argv[2], callbacks=[KillAt()], progress=False)
    """
)


@pytest.mark.parametrize("method", ["sast", "hfsb"])
def test_killed_run_resumes_bit_for_bit(tmp_path, tiny_train_args, method):
    flags = [*tiny_train_args, "--method", method, "--epochs", "3", "--optimizer", "momentum", "--seed", "3",
             "--monitor", "off"]  # the killed script below trains without callbacks
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*flags, "--run-dir", str(whole)]) == 0
    steps_per_epoch = [r for r in read_jsonl(whole / "metrics.jsonl") if r["kind"] == "eval"][0]["step"]
    kill_step = steps_per_epoch + 2  # in the middle of the second epoch
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(kill_step), str(killed), *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    _, partial = checkpoint.load(killed / "ckpt.pt")
    assert partial["epoch"] == 1
    assert main([*flags, "--run-dir", str(killed), "--resume"]) == 0
    m1, c1 = checkpoint.load(whole / "ckpt.pt")
    m2, c2 = checkpoint.load(killed / "ckpt.pt")
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert c1["step"] == c2["step"] and c1["best"] == c2["best"]
    for buf1, buf2 in zip(c1["optimizer"]["state"].values(), c2["optimizer"]["state"].values()):
        assert torch.equal(buf1["momentum_buffer"], buf2["momentum_buffer"])
    assert _timeless(read_jsonl(whole / "metrics.jsonl")) == _timeless(read_jsonl(killed / "metrics.jsonl"))


def test_divergence_stops_with_exit_3_and_keeps_last_checkpoint(tmp_path, tiny_train_args, capsys):
    run = tmp_path / "run"
    assert main([*tiny_train_args, "--epochs", "1", "--run-dir", str(run)]) == 0
    good = (run / "ckpt.pt").read_bytes()
    code = main([*tiny_train_args, "--epochs", "3", "--lr", "1e38", "--run-dir", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 3
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the loss became") and "smaller --lr" in last
    assert (run / "ckpt.pt").read_bytes() == good


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "sgd"], "unknown method 'sgd'"),
        (["--method", "sf", "--rho", "0.3"], "needs --method sast"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
        (["--layers", "dense:16,dens:4"], "did you mean 'dense'"),
        (["--data", "synth-nmist"], "synth-nmnist"),
        (["--lam", "1.5"], "lam must lie in [0, 1)"),
        (["--lr", "-1"], "lr must be"),
        (["--resume"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, tiny_train_args, capsys, extra, message):
    code = main([*tiny_train_args, "--epochs", "1", "--run-dir", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_existing_run_needs_resume(tmp_path, tiny_train_args, capsys):
    run = tmp_path / "r"
    assert main([*tiny_train_args, "--epochs", "1", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main([*tiny_train_args, "--epochs", "1", "--run-dir", str(run)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*tiny_train_args, "--epochs", "1", "--lr", "0.1", "--run-dir", str(run), "--resume"]) == 2
    assert "different settings (lr)" in capsys.readouterr().err  # more epochs extend it: test_train_extend.py


def test_recorded_command_reproduces_the_configuration(tmp_path, tiny_train_args):
    import shlex

    from apps.train import build_parser, config_from_args

    run = tmp_path / "r"
    assert main([*tiny_train_args, "--method", "sast", "--epochs", "1", "--run-dir", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    argv = shlex.split(cfg["command"])
    assert argv[:3] == ["python", "-m", "sast.train"]
    again = config_from_args(build_parser().parse_args(argv[3:]))
    assert again.to_dict() == cfg["train"]
