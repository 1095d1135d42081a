"""`python -m sast.train --resume --epochs N`: a run of fewer epochs extended to N equals an N-epoch run.

A tiny run of 1 epoch extended to 2 is compared with a 2-epoch run from the start: the
weights, the optimizer state, the generators and the log (bar the "extend" record and
timings) are the same, bit for bit on the CPU. The refusals (fewer epochs, another changed
setting, a default --epochs) exit 2 with one line and leave the folder as it was.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from apps.train import build_parser, config_from_args, main
from runfolder import BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE
from sast import checkpoint
from sast.runlog import read_jsonl
from sast.train import Callback, train


def _untimed(obj):
    """``obj`` without timing fields (any key with "seconds" in it), at every depth (tensors kept as they are)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if "seconds" not in str(k)}
    if isinstance(obj, (list, tuple)):
        return [_untimed(v) for v in obj]
    return obj


def _records(run: Path) -> list[dict]:
    return list(read_jsonl(run / METRICS_FILE))


def _same_tensors(a, b, what: str) -> None:
    """``a`` and ``b`` (nested dicts and lists of tensors and numbers) equal, tensors by torch.equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), what
        for k in a:
            _same_tensors(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _same_tensors(x, y, f"{what}[{i}]")
    else:
        assert a == b, (what, a, b)


def _assert_same_training_state(whole: Path, extended: Path, name: str = CHECKPOINT_FILE) -> None:
    """The checkpoints ``name`` of the two folders hold the same weights, optimizer, generators and counters.

    A checkpoint written after the extension counts the "extend" record among the log's records (``log_records``).
    """
    c1, c2 = checkpoint.read(whole / name), checkpoint.read(extended / name)
    for k, a in c1["model"].items():
        assert torch.equal(a, c2["model"][k]), f"{name}: weights {k}"
    for key in ("optimizer", "rng", "step", "epoch", "grad_evals", "best", "callbacks"):
        _same_tensors(_untimed(c1[key]), _untimed(c2[key]), f"{name}: {key}")  # the monitor's state: timings aside
    assert c2["log_records"] == c1["log_records"] + (1 if c2["epoch"] > 1 else 0), name


EXTEND_CASES = {  # plain SGD, SAST (its own perturbation batches), and an optimizer with state; one with the monitor
    "sf-sgd-monitor": ["--method", "sf", "--optimizer", "sgd", "--monitor", "default"],
    "sast-sgd": ["--method", "sast", "--rho", "0.1", "--optimizer", "sgd", "--monitor", "off"],
    "hfsb-momentum": ["--method", "hfsb", "--optimizer", "momentum", "--monitor", "off"],
}


@pytest.mark.parametrize("case", list(EXTEND_CASES))
def test_extended_run_equals_the_longer_run_bit_for_bit(tmp_path, tiny_train_args, capsys, case):
    flags = [*tiny_train_args, *EXTEND_CASES[case], "--seed", "2"]
    whole, extended = tmp_path / "whole", tmp_path / "extended"
    assert main([*flags, "--epochs", "2", "--run-dir", str(whole)]) == 0
    assert main([*flags, "--epochs", "1", "--run-dir", str(extended)]) == 0
    config_before = json.loads((extended / CONFIG_FILE).read_text())
    steps_per_epoch = checkpoint.read(extended / CHECKPOINT_FILE)["step"]
    capsys.readouterr()

    assert main([*flags, "--epochs", "2", "--run-dir", str(extended), "--resume"]) == 0
    assert "extending the run" in capsys.readouterr().err

    # the weights, optimizer, generators and counters of the last checkpoint: bit for bit
    _assert_same_training_state(whole, extended)
    assert checkpoint.read(extended / CHECKPOINT_FILE)["train_config"] == \
        checkpoint.read(whole / CHECKPOINT_FILE)["train_config"]
    # best.pt: the same weights and state; written in the first segment, its train_config says 1 epoch
    _assert_same_training_state(whole, extended, BEST_FILE)
    b1, b2 = checkpoint.read(whole / BEST_FILE), checkpoint.read(extended / BEST_FILE)
    assert b2["train_config"] == {**b1["train_config"], "epochs": 1 if b2["epoch"] == 1 else 2}

    # the log: the 2-epoch run's, plus one record where the run was extended (after epoch 1's records)
    got, want = _records(extended), _records(whole)
    marks = [i for i, r in enumerate(got) if r["kind"] == "extend"]
    assert len(marks) == 1
    mark = got[marks[0]]
    assert mark == {"kind": "extend", "step": steps_per_epoch, "epoch": 1, "from_epochs": 1, "to_epochs": 2}
    assert got[marks[0] - 1]["kind"] == "eval" and got[marks[0] - 1]["epoch"] == 1
    assert _untimed(got[: marks[0]] + got[marks[0] + 1:]) == _untimed(want)
    if "monitor" in case:  # the first segment's end records (final T6, monitor "end") were dropped: one of each
        assert [(r["kind"], r.get("event")) for r in got if r["kind"] == "monitor"] == \
            [("monitor", "start"), ("monitor", "end")]

    # config.json: 2 epochs, in its settings and its command; everything else as it was
    config_after = json.loads((extended / CONFIG_FILE).read_text())
    assert config_after["train"] == {**config_before["train"], "epochs": 2}
    command = shlex.split(config_after["command"])
    assert command[command.index("--epochs") + 1] == "2"
    assert config_after == {**config_before, "train": config_after["train"], "command": config_after["command"]}
    assert config_from_args(build_parser().parse_args(command[3:])).to_dict() == config_after["train"]
    assert config_after["train"] == json.loads((whole / CONFIG_FILE).read_text())["train"]


class StopAt(Callback):
    """Interrupts training (as Ctrl-C would) after step ``k``."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_step_end(self, run, stats) -> None:
        if run.step == self.k:
            raise KeyboardInterrupt


def test_an_extension_interrupted_in_its_first_epoch_is_extended_again(tmp_path, tiny_train_args):
    """Stopped before the extension's first epoch ends, ckpt.pt is still the 1-epoch run's: --resume --epochs 2
    extends it again, and the end is the 2-epoch run's (one extend record in the log)."""
    flags = [*tiny_train_args, "--method", "sast", "--rho", "0.1", "--monitor", "off"]
    whole, run = tmp_path / "whole", tmp_path / "run"
    assert main([*flags, "--epochs", "2", "--run-dir", str(whole)]) == 0
    assert main([*flags, "--epochs", "1", "--run-dir", str(run)]) == 0
    steps_per_epoch = checkpoint.read(run / CHECKPOINT_FILE)["step"]
    cfg = config_from_args(build_parser().parse_args([*flags, "--epochs", "2"]))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, resume=True, extend=True, callbacks=[StopAt(steps_per_epoch + 2)], progress=False)
    assert json.loads((run / CONFIG_FILE).read_text())["train"]["epochs"] == 2
    assert checkpoint.read(run / CHECKPOINT_FILE)["train_config"]["epochs"] == 1
    assert main([*flags, "--epochs", "2", "--run-dir", str(run), "--resume"]) == 0
    _assert_same_training_state(whole, run)
    got = _records(run)
    assert [r["kind"] for r in got].count("extend") == 1
    assert _untimed([r for r in got if r["kind"] != "extend"]) == _untimed(_records(whole))


@pytest.fixture()
def finished(tmp_path, tiny_run) -> Path:
    """A copy of conftest's finished 2-epoch SAST run."""
    return Path(shutil.copytree(tiny_run, tmp_path / "finished"))


TINY_RUN_FLAGS = ["--method", "sast", "--rho", "0.1"]  # conftest's tiny_run (with tiny_train_args)


@pytest.mark.parametrize(
    "extra, messages",
    [
        (["--epochs", "1"], ["--resume --epochs 1:", "already trained 2 epochs", "not shorten"]),
        (["--epochs", "3", "--lr", "0.1"], ["--resume with different settings (lr) than"]),
        (["--epochs", "3", "--rho", "0.2", "--batch-size", "16"],
         ["--resume with different settings (batch_size, rho) than"]),
        ([], ["--resume with different settings (epochs) than", "pass --epochs 2 to continue it"]),
    ],
    ids=["fewer-epochs", "lr-changed", "two-settings-changed", "default-epochs"],
)
def test_extending_is_refused_with_fewer_epochs_or_other_settings(finished, tiny_train_args, capsys, extra,
                                                                  messages):
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    code = main([*tiny_train_args, *TINY_RUN_FLAGS, *extra, "--run-dir", str(finished), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert all(m in err for m in messages), err
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before  # nothing written, nothing cut


def test_an_interrupted_run_is_not_shortened(finished, tiny_train_args, capsys):
    """A run of 3 epochs interrupted after 2: --epochs 2 would shorten it (refused, naming 3 and 2)."""
    c = checkpoint.read(finished / CHECKPOINT_FILE)
    c["train_config"]["epochs"] = 3
    torch.save(c, finished / CHECKPOINT_FILE)
    code = main([*tiny_train_args, *TINY_RUN_FLAGS, "--epochs", "2", "--run-dir", str(finished), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--resume --epochs 2:" in err and "has 3 epochs (2 trained so far)" in err, err


def test_the_same_epochs_resume_as_before(finished, tiny_train_args, capsys):
    """--epochs equal to the run's: a plain --resume (a finished run: its last evaluation, nothing written)."""
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    assert main([*tiny_train_args, *TINY_RUN_FLAGS, "--epochs", "2", "--run-dir", str(finished), "--resume"]) == 0
    assert "extending" not in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_help_of_resume_explains_extending():
    help_text = " ".join(build_parser().format_help().split())
    resume = help_text[help_text.index("--resume continue"):]
    assert "--resume --epochs N with N > E" in resume and "extend" in resume and "refused" in resume
