"""``--tensorboard DIR`` of sast.train, the demo and the grid: the event files hold what metrics.jsonl holds.

Each run's folder ``DIR/RUN`` is read back with TensorBoard's own reader (EventAccumulator)
and compared, tag by tag and point by point, with what the README's tag table says each
record of the run's metrics.jsonl becomes (written out here from that table, not from
``sast.tensorboard_log``). TensorBoard keeps scalars in float32, so values compare after
rounding to float32, exactly. Without the tensorboard package the flag is one line on
stderr naming the extra to install, exit 2, before any work. tensorboard is in the ``test``
extra, so that CI runs these tests rather than skipping them.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from apps import demo
from apps.experiments import main as experiments_main
from apps.train import main as train_main
from runfolder import EXIT_BAD_INPUT, METRICS_FILE, STATUSES, read_jsonl

REPO = Path(__file__).resolve().parents[2]
INSTALL = "pip install 'sast-toolkit[tensorboard]'"
EVENT_FILES = "events.out.tfevents.*"
ALL = {"scalars": 0}  # EventAccumulator keeps every point, not a sample


def expected(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] that the README's table makes of ``records``, values rounded to float32."""
    want: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def put(tag: str, step: int, value) -> None:
        if value is not None:
            want[tag].append((step, float(np.float32(value))))

    for r in records:
        if r["kind"] == "train":
            for name in ("loss", "grad_norm", "perturbed_loss"):
                put(f"train/{name}", r["step"], r.get(name))
        elif r["kind"] == "eval":
            for name in ("val_smooth_acc", "val_hard_acc", "test_smooth_acc", "test_hard_acc", "test_gap",
                         "val_smooth_loss", "val_hard_loss", "test_smooth_loss", "test_hard_loss"):
                put(f"eval/{name}", r["epoch"], r[name])
        elif r["kind"] in ("check", "probe"):
            local = r["local_bound"] if "local_bound" in r else (r.get("result") or {}).get("local_bound")
            put(f"{r['id']}/estimate", r["step"], r["estimate"])
            put(f"{r['id']}/bound", r["step"], r["bound"])
            put(f"{r['id']}/local_bound", r["step"], local)
            put(f"{r['id']}/status", r["step"], STATUSES.index(r["status"]))
            if r["kind"] == "probe":
                put(f"{r['id']}/loss", r["step"], r["loss"])
                put(f"{r['id']}/sigma2", r["step"], r["sigma2"])
    return dict(want)


def read_back(folder: Path, accumulator: EventAccumulator | None = None) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the event files in ``folder``, as TensorBoard reads them."""
    ea = accumulator or EventAccumulator(str(folder), size_guidance=ALL)
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def assert_mirrors(tb: Path, run: Path, *tags: str) -> dict[str, list[tuple[int, float]]]:
    """``tb`` holds exactly what ``run``'s metrics.jsonl holds, and at least ``tags`` (so it cannot pass empty)."""
    want = expected(list(read_jsonl(run / METRICS_FILE)))
    got = read_back(tb)
    assert set(tags) <= set(want), sorted(want)
    assert got.keys() == want.keys(), sorted(got.keys() ^ want.keys())
    for tag in want:
        assert got[tag] == want[tag], tag
    return got


def test_train_mirrors_every_record_of_metrics_jsonl(tmp_path, tiny_train_args):
    # batch 16: 11 steps in the epoch, so a train record (every 10 steps) and the monitor's steps 0-8
    run, tb = tmp_path / "run", tmp_path / "tb"
    assert train_main([*tiny_train_args, "--batch-size", "16", "--method", "sast", "--rho", "0.1", "--epochs", "1",
                       "--run-dir", str(run), "--tensorboard", str(tb)]) == 0
    assert [p.name for p in tb.iterdir()] == ["run"]  # DIR/RUN, RUN the run folder's name
    got = assert_mirrors(tb / "run", run, "train/loss", "train/perturbed_loss", "eval/test_smooth_acc",
                         "eval/test_hard_acc", "A4/estimate", "A4/bound", "A4/status", "T4/estimate", "T6/status",
                         "probe/sigma2")
    assert [step for step, _ in got["eval/test_hard_acc"]] == [1]  # epoch records at their epoch
    assert got["A4/status"][0] == (0, 0.0) and got["probe/status"][0] == (0, 3.0)  # holds 0, not applicable 3


def test_resume_rewrites_the_folder_from_the_cut_log(tmp_path, tiny_train_args):
    """A resumed (here: extended) run's folder reads as its log; points a killed launch wrote past the checkpoint
    are gone, also for a reader that had loaded them (the new file's first event purges every earlier step)."""
    flags = [*tiny_train_args, "--batch-size", "16", "--method", "sf", "--monitor", "off", "--run-dir",
             str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]
    run, tb = tmp_path / "run", tmp_path / "tb" / "run"
    assert train_main([*flags, "--epochs", "1"]) == 0
    stale = SummaryWriter(str(tb), filename_suffix=".stale")  # what a killed launch wrote past its checkpoint
    stale.add_scalar("eval/test_smooth_acc", 0.125, 2)
    stale.add_scalar("train/loss", 9.5, 15)
    stale.close()
    watching = EventAccumulator(str(tb), size_guidance=ALL)  # a TensorBoard that is open on the folder
    assert (2, 0.125) in read_back(tb, watching)["eval/test_smooth_acc"]
    assert train_main([*flags, "--epochs", "2", "--resume"]) == 0
    assert len(list(tb.glob(EVENT_FILES))) == 3  # one file a launch, and the planted one: superseded, not deleted
    got = assert_mirrors(tb, run, "train/loss", "eval/test_smooth_acc")
    assert [step for step, _ in got["eval/test_smooth_acc"]] == [1, 2]
    assert [step for step, _ in got["train/loss"]] == [10, 20]
    assert read_back(tb, watching) == got


def test_an_interrupted_run_leaves_what_it_logged(tmp_path, tiny_train_args):
    """Ctrl-C during training: the writer is flushed and closed with the log, holding every record written."""
    from apps.train import build_parser, config_from_args
    from sast.tensorboard_log import TensorBoardLog
    from sast.train import Callback, train

    class CtrlC(Callback):
        def on_step_end(self, run, stats):
            if run.step == 10:  # after the first train record
                raise KeyboardInterrupt

    class Closing(TensorBoardLog):
        closed = 0

        def close(self):
            super().close()
            self.closed += 1

    cfg = config_from_args(build_parser().parse_args([*tiny_train_args, "--batch-size", "16", "--epochs", "2"]))
    run, tb = tmp_path / "run", tmp_path / "tb"
    sink = Closing(tb)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, callbacks=[CtrlC()], progress=False, sinks=[sink])
    assert sink.closed == 1
    assert assert_mirrors(tb, run, "train/loss")["train/loss"][0][0] == 10


def test_grid_writes_one_folder_per_run(tmp_path, cache_dir):
    out, tb = tmp_path / "grid", tmp_path / "tb"
    # batch 16 as an axis: 11 steps an epoch (a train record), and run folders one level down
    assert experiments_main(["grid", "--dataset", "synth-nmnist", "--checks", "none", "--no-corruptions", "--seeds",
                             "1", "--limit", "200", "--layers", "dense:16", "--epochs", "1", "--no-progress", "--set",
                             "rho=0", "--set", "batch_size=16", "--monitor", "off", "--cache-dir", cache_dir, "--out",
                             str(out), "--tensorboard", str(tb)]) == 0
    runs = sorted(p.relative_to(tb).as_posix() for p in tb.glob("*/*") if p.is_dir())
    assert runs == ["batch_size=16/hfsb-s0", "batch_size=16/sf-s0"]  # named like the runs' folders in the sweep
    for name in runs:
        assert_mirrors(tb / name, out / name, "train/loss", "eval/test_smooth_acc", "eval/test_hard_acc")


def test_demo_writes_its_two_runs(tmp_path, cache_dir, monkeypatch):
    """The demo's wiring, on tiny settings (the demo itself trains the full data set for 30 epochs)."""
    tiny = dict(limit=200, layers=["dense:16"], T=8, batch_size=16, cache_dir=cache_dir)
    real_train, real_load = demo.train, demo.load_data
    monkeypatch.setattr(demo, "load_data", lambda cfg, progress: real_load(dataclasses.replace(cfg, **tiny), False))
    monkeypatch.setattr(demo, "train", lambda cfg, run_dir, **kw: real_train(
        dataclasses.replace(cfg, **tiny), run_dir, **kw))
    out, tb = tmp_path / "demo", tmp_path / "tb"
    assert demo.main(["--out", str(out), "--epochs", "1", "--monitor", "off", "--no-checks", "--no-progress",
                      "--tensorboard", str(tb)]) == 0
    assert sorted(p.name for p in tb.iterdir()) == ["sast-rho0.3", "sf"]
    for name in ("sf", "sast-rho0.3"):
        assert_mirrors(tb / name, out / name, "train/loss", "eval/test_smooth_acc", "eval/test_hard_acc")


# ----------------------------------------------------------------------------- without tensorboard installed

WITHOUT_TENSORBOARD = textwrap.dedent(
    """
    import runpy, sys
    sys.modules["tensorboard"] = None  # `import tensorboard` raises ImportError, as when it is not installed
    sys.argv = ["python -m sast.train", *sys.argv[1:]]
    runpy.run_module("sast.train", run_name="__main__", alter_sys=True)
    """
)


def test_train_without_tensorboard_is_one_line_exit_2(tmp_path, tiny_train_args):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TENSORBOARD, *tiny_train_args, "--run-dir", str(run),
                           "--tensorboard", str(tmp_path / "tb")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr[-2000:]
    assert len(lines) == 1 and "tensorboard" in lines[0] and INSTALL in lines[0], lines
    assert not run.exists() and not (tmp_path / "tb").exists()  # refused before any work


@pytest.mark.parametrize("command", ["demo", "grid"])
def test_demo_and_grid_without_tensorboard_are_one_line_exit_2(tmp_path, cache_dir, monkeypatch, capsys, command):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    out = tmp_path / "out"
    if command == "demo":
        code = demo.main(["--out", str(out), "--no-progress", "--tensorboard", str(tmp_path / "tb")])
    else:
        code = experiments_main(["grid", "--limit", "200", "--cache-dir", cache_dir, "--no-progress", "--out", str(out),
                                 "--tensorboard", str(tmp_path / "tb")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT
    assert len(lines) == 1 and lines[0].startswith("error: ") and INSTALL in lines[0], lines
    assert not out.exists() and not (tmp_path / "tb").exists()
