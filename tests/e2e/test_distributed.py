"""`torchrun --nproc_per_node=2 -m sast.train` on the CPU (gloo) against one process over the same global batches.

The tiny run takes global minibatches of b = 8 (4 a process) for 3 epochs, 66 steps, so
the monitor's probe (every 200 steps) is logged at w_0 only. A 2-process run
adds the same per-sample gradients in another order, so it equals the single-process
run up to float32 rounding: measured, the final parameters differ by at most 8e-7 (sf)
and 5e-7 (sast) of each tensor's largest entry; :data:`RTOL` leaves a margin of 12. The
local (m-sharpness) perturbation differs from the global one by ~5e-2 on the same run,
and planted bugs fail these tests (no gradient averaging: 1.6; the global perturbation
taken per replica: 5e-2; no sharding: local equals global).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from apps.train import build_parser, config_from_args, main
from sast import checkpoint
from sast.runlog import read_jsonl
from sast.train import Callback, train

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-5  # float32: the same sums in another order (measured <= 8e-7 relative after 66 steps)
LOCAL_DIFFERS = 1e-3  # local vs global perturbation on 2 processes (measured ~5e-2)
BATCH, EPOCHS, STEPS_PER_EPOCH = 8, 3, 22  # 180 training samples // 8
METHODS = {"sf": ["--method", "sf"], "sast": ["--method", "sast", "--rho", "0.1"]}


def _torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on a shared CPU: no thread oversubscription
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "sast.train", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def flags(tiny_train_args) -> list[str]:
    # --monitor-preset: after torchrun, --monitor would be read as torchrun's ambiguous --monitor-interval
    return [*tiny_train_args, "--batch-size", str(BATCH), "--epochs", str(EPOCHS), "--monitor-preset", "default"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, flags):
    """Run folders by (launch, method, perturbation), trained once on first use."""
    root = tmp_path_factory.mktemp("dist")
    done: dict[tuple[str, str, str], Path] = {}

    def get(launch: str, method: str, perturbation: str = "global") -> Path:
        key = (launch, method, perturbation)
        if key not in done:
            run = root / "-".join(key)
            args = [*flags, *METHODS[method], "--sam-perturbation", perturbation, "--run-dir", str(run)]
            if launch == "single":
                assert main(args) == 0
            else:
                proc = _torchrun(int(launch.removeprefix("torchrun")), args)
                assert proc.returncode == 0, proc.stderr[-3000:]
                assert proc.stdout.count("run folder:") == 1  # rank 0 alone reports
            done[key] = run
        return done[key]

    return get


def _params(run: Path) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in checkpoint.read(run / "ckpt.pt")["model"].items()}


def _max_rel_diff(a: Path, b: Path) -> float:
    """max over tensors of max|a - b| / max|a| of the final parameters of two runs."""
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    return max(float((pa[k] - pb[k]).abs().max() / pa[k].abs().max()) for k in pa)


def _records(run: Path, kind: str) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == kind]


def _assert_logs_agree(one: Path, two: Path) -> None:
    evals1, evals2 = _records(one, "eval"), _records(two, "eval")
    assert [(r["epoch"], r["step"]) for r in evals2] == [(r["epoch"], r["step"]) for r in evals1]
    for r1, r2 in zip(evals1, evals2):
        for split in ("val", "test"):
            for mode in ("smooth", "hard"):
                assert r2[f"{split}_{mode}_acc"] == r1[f"{split}_{mode}_acc"]  # rank 0 evaluates the whole split
                assert r2[f"{split}_{mode}_loss"] == pytest.approx(r1[f"{split}_{mode}_loss"], rel=RTOL)
    probes1, probes2 = _records(one, "probe"), _records(two, "probe")
    assert [r["step"] for r in probes1] == [r["step"] for r in probes2] == [0]
    for r1, r2 in zip(probes1, probes2):
        assert r2["n_probe"] == r1["n_probe"] and r2["batch_size"] == r1["batch_size"] == BATCH
        for key in ("loss", "grad_norm_sq", "sigma2"):
            assert r2[key] == pytest.approx(r1[key], rel=RTOL), (r1["step"], key)
    train1, train2 = _records(one, "train"), _records(two, "train")
    assert [r["step"] for r in train1] == [r["step"] for r in train2] and train1
    for r1, r2 in zip(train1, train2):  # the logged statistics are the global batch's, averaged over the ranks
        for key in ("loss", "grad_norm", "perturbed_loss"):
            if key in r1:
                assert r2[key] == pytest.approx(r1[key], rel=RTOL), (r1["step"], key)


@pytest.mark.parametrize("method", ["sf", "sast"])
def test_two_processes_equal_one_process(runs, method):
    one, two = runs("single", method), runs("torchrun2", method)
    assert _max_rel_diff(one, two) <= RTOL
    _assert_logs_agree(one, two)
    config = json.loads((two / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert config["command"].startswith("torchrun --nproc_per_node=2 -m sast.train ")
    assert checkpoint.read(two / "ckpt.pt")["world_size"] == 2 and (two / "best.pt").exists()
    assert json.loads((one / "config.json").read_text())["distributed"] == {"world_size": 1, "backend": None}


def test_local_perturbation_differs_on_two_processes_and_equals_global_on_one(runs):
    # m-sharpness: each replica ascends along its own shard's gradient (m = b / 2), by design another step
    assert _max_rel_diff(runs("torchrun2", "sast"), runs("torchrun2", "sast", "local")) > LOCAL_DIFFERS
    # one process under torchrun: DDP over a world of one, and its one shard is the whole batch
    local_one = runs("torchrun1", "sast", "local")
    assert _max_rel_diff(runs("single", "sast"), local_one) <= 1e-6  # measured 0 (bit for bit)
    assert json.loads((local_one / "config.json").read_text())["distributed"]["world_size"] == 1


class _StopAt(Callback):
    """Stops training (as a crash would) after step ``k``, past the first epoch's checkpoint."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_step_end(self, run, stats) -> None:
        if run.step == self.k:
            raise KeyboardInterrupt


def test_resume_under_torchrun_from_a_single_process_checkpoint(runs, flags, tmp_path):
    """A run stopped in its second epoch on one process, resumed on two, ends where the 2-process run ends."""
    from checks.monitor import Monitor

    args = [*flags, *METHODS["sast"], "--run-dir", str(tmp_path / "r")]
    cfg = config_from_args(build_parser().parse_args(args))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "r", callbacks=[Monitor("default"), _StopAt(STEPS_PER_EPOCH + 5)], progress=False)
    assert checkpoint.read(tmp_path / "r" / "ckpt.pt")["epoch"] == 1
    proc = _torchrun(2, [*args, "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained on 1 process(es), resumed on 2" in proc.stderr  # allowed, and said: equal up to rounding
    whole = runs("torchrun2", "sast")
    assert _max_rel_diff(whole, tmp_path / "r") <= RTOL
    _assert_logs_agree(whole, tmp_path / "r")
    assert checkpoint.read(tmp_path / "r" / "ckpt.pt")["world_size"] == 2


def test_resume_local_perturbation_on_another_world_size_is_refused(runs, flags):
    run = runs("torchrun1", "sast", "local")
    proc = _torchrun(2, [*flags, *METHODS["sast"], "--sam-perturbation", "local", "--run-dir", str(run), "--resume"])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]  # rank 0 alone prints it
    assert "--sam-perturbation local on 2 process(es)" in errors[0] and "--nproc_per_node=1" in errors[0]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "--batch-size 7 (the global batch b) does not split"),
        ({"WORLD_SIZE": "2"}, "distributed environment incomplete"),
    ],
)
def test_bad_distributed_input_exits_2_with_one_line(monkeypatch, tmp_path, tiny_train_args, capsys, env, message):
    for k, v in env.items():  # both are refused before any process group is joined
        monkeypatch.setenv(k, v)
    code = main([*tiny_train_args, "--batch-size", "7", "--epochs", "1", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_local_perturbation_needs_sast(tmp_path, tiny_train_args, capsys):
    code = main([*tiny_train_args, "--method", "sf", "--sam-perturbation", "local", "--run-dir", str(tmp_path / "r")])
    assert code == 2 and "needs --method sast" in capsys.readouterr().err
