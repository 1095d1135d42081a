"""Checkpoints: plain data, atomic, and refused when they carry code, are truncated or unknown."""

from __future__ import annotations

import os

import pytest
import torch

from sast import checkpoint
from sast.checkpoint import CheckpointError
from sast.model import SNN, SNNConfig


def _model():
    torch.manual_seed(0)
    return SNN(SNNConfig(input_shape=(2, 6, 6), layers=["conv:2:3", "pool:2", "dense:4"], T=3, num_classes=3))


def test_round_trip(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 2, 6, 6)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, model, optimizer=opt.state_dict(), step=7, rng={"g": torch.Generator().get_state()})
    loaded, ckpt = checkpoint.load(path)
    assert ckpt["step"] == 7 and ckpt["format"] == "sast-checkpoint" and ckpt["version"] == 1
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.rand(2, 3, 2, 6, 6)
    assert torch.equal(model(x, mode="hard"), loaded(x, mode="hard"))
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ckpt["optimizer"])
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    model = _model()
    torch.save({"format": "sast-checkpoint", "version": 1, "config": model.config.to_dict(),
                "model": model.state_dict(), "extra": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused") as e:
        checkpoint.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert not marker.exists(), "the payload ran"


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, _model(), step=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        checkpoint.load(path)
    assert "\n" not in str(e.value)


def test_unknown_version_and_foreign_files(tmp_path):
    model = _model()
    path = tmp_path / "v9.pt"
    torch.save({"format": "sast-checkpoint", "version": 9, "config": model.config.to_dict(),
                "model": model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="version 9 is not supported"):
        checkpoint.load(path)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a sast checkpoint"):
        checkpoint.load(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "text.pt")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, _model(), step=1)
    before = path.read_bytes()

    def boom(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_write_bytes(path, boom)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_creates_the_folder_and_gives_the_umask_mode(tmp_path):
    from runfolder import file_mode

    path = tmp_path / "new" / "deeper" / "ckpt.pt"
    checkpoint.save(path, _model(), step=3)
    assert checkpoint.load(path)[1]["step"] == 3
    assert path.stat().st_mode & 0o777 == file_mode()
