"""`python -m sast.evaluate` on a trained checkpoint, and its errors."""

from __future__ import annotations

import json

import pytest
import torch

from sast.evaluate import main


def test_evaluate_prints_table_and_writes_json(tiny_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for row in ("accuracy", "transfer gap", "INT8 hard accuracy", "SynOps", "ECE"):
        assert row in text
    res = json.loads(out.read_text())
    assert res["data"] == "synth-nmnist" and res["split"] == "test"
    assert 0 <= res["hard_acc"] <= 1 and res["gap"] == pytest.approx(res["smooth_acc"] - res["hard_acc"])
    assert res["synops_hard"] >= 0 and len(res["soft_band_fraction"]) == 1


def test_evaluate_default_json_goes_beside_the_checkpoint(tiny_run, capsys):
    assert main(["--model", str(tiny_run / "best.pt"), "--no-progress"]) == 0
    assert (tiny_run / "evaluation.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope.pt"], "no such checkpoint"),
        (["--model", "{run}/ckpt.pt", "--data", "synth-nmist"], "synth-nmnist"),
        (["--model", "{run}/ckpt.pt", "--split", "validation"], "split"),
        (["--model", "{run}/config.json"], "not a readable checkpoint"),
    ],
)
def test_evaluate_errors(tiny_run, capsys, args, message):
    args = [a.format(run=tiny_run) for a in args]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_checkpoint_split_partitions_as_training_did(tiny_run):
    """--split train is the training split less validation, val that part: together the whole training split."""
    from sast import checkpoint
    from sast.data import frame_dataset
    from sast.evaluate import checkpoint_split
    from sast.train import TrainConfig, load_data

    _, ckpt = checkpoint.load(tiny_run / "ckpt.pt")
    train, _ = checkpoint_split(ckpt, "train", progress=False)
    val, _ = checkpoint_split(ckpt, "val", progress=False)
    test, test_labels = checkpoint_split(ckpt, "test", progress=False)
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    data = load_data(cfg, progress=False)
    assert len(train) == len(data.train) and len(val) == len(data.val) and len(test) == len(data.test)
    assert len(train) + len(val) == len(frame_dataset(cfg.data, "train", cfg.T, cache_dir=cfg.cache_dir,
                                                       limit=cfg.limit, progress=False))
    assert len(val) > 0 and torch.equal(val, data.val.frames) and torch.equal(test_labels, data.test.labels)


def test_checkpoint_split_errors(tiny_run):
    from sast import checkpoint
    from sast.evaluate import checkpoint_split

    _, ckpt = checkpoint.load(tiny_run / "ckpt.pt")
    with pytest.raises(ValueError, match="does not say which data set it was trained on; pass --data NAME"):
        checkpoint_split({k: v for k, v in ckpt.items() if k != "train_config"}, "test", progress=False)
    bare = {k: v for k, v in ckpt.items() if k != "train_config"}  # --data names the set; T comes from the model
    frames, _ = checkpoint_split(bare, "test", data="synth-nmnist", limit=50,
                                 cache_dir=ckpt["train_config"]["cache_dir"], progress=False)
    assert tuple(frames.shape[1:]) == (ckpt["config"]["T"], *ckpt["config"]["input_shape"]) and len(frames) == 50
    wrong = {**ckpt, "config": {**ckpt["config"], "input_shape": [2, 17, 17]}}
    with pytest.raises(ValueError, match=r"has input shape \(2, 34, 34\), the model expects \(2, 17, 17\)"):
        checkpoint_split(wrong, "test", progress=False)
