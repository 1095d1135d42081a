"""sast.gap.MarginLog as a training callback: one margins record per epoch, and training unchanged by it."""

from __future__ import annotations

import torch

from runfolder import read_jsonl


def test_margin_log_records_each_epoch_and_changes_nothing(tmp_path, tiny_train_args):
    from sast.checkpoint import load
    from sast.gap import MarginLog
    from apps.train import build_parser, config_from_args
    from sast.train import train

    cfg = config_from_args(build_parser().parse_args([*tiny_train_args, "--method", "sast", "--epochs", "2"]))
    train(cfg, tmp_path / "plain", progress=False)
    train(cfg, tmp_path / "margins", callbacks=[MarginLog()], progress=False)
    a, _ = load(tmp_path / "plain" / "ckpt.pt")
    b, _ = load(tmp_path / "margins" / "ckpt.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name  # bit for bit: the callback only reads the model
    recs = [r for r in read_jsonl(tmp_path / "margins" / "metrics.jsonl") if r["kind"] == "margins"]
    assert [r["epoch"] for r in recs] == [1, 2]
    assert all(0 <= f <= 1 for r in recs for f in r["soft_band_fraction"])
    assert len(recs[0]["counts"][0]) == len(recs[0]["edges"]) + 1
