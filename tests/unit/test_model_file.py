"""sast.model_file: one loader for a checkpoint or a NIR file, its source, run folder and the settings NIR lacks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir", reason="NIR support is optional: pip install 'sast-toolkit[nir]'")

from sast import checkpoint, model_file  # noqa: E402
from sast.interop import LIBRARY_DT, NIRImportError, to_nir  # noqa: E402
from sast.model import SNN, SNNConfig  # noqa: E402
from sast.train import TrainConfig  # noqa: E402

SHAPE = (2, 34, 34)  # synth-nmnist's frames, so --data synth-nmnist fits without reading any data
T = 5


def _model(reset: str = "subtract", beta: float = 1.5) -> SNN:
    torch.manual_seed(0)
    model = SNN(SNNConfig(input_shape=SHAPE, layers=["dense:12", "dense:7"], T=T, beta=beta, reset=reset,
                          num_classes=10))
    with torch.no_grad():  # active enough that a wrong reset or beta would change the logits
        for layer in model.layers:
            layer.weight.mul_(6.0)
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    """(model, checkpoint path, NIR path written by to_nir of the same model)."""
    model = _model()
    ckpt = tmp_path / "run" / "ckpt.pt"
    checkpoint.save(ckpt, model, train_config=TrainConfig(data="synth-nmnist", T=T, layers=["dense:12", "dense:7"]
                                                           ).to_dict())
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(model))
    return model, ckpt, path


def _x(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.rand(n, T, *SHAPE, generator=g) < 0.2).float()


def test_a_nir_file_is_told_by_its_suffix_or_its_hdf5_signature(saved, tmp_path):
    _, ckpt, path = saved
    renamed = tmp_path / "net.h5"
    renamed.write_bytes(path.read_bytes())
    assert model_file.is_nir(path) and model_file.is_nir(renamed)
    assert not model_file.is_nir(ckpt) and not model_file.is_nir(tmp_path / "missing.pt")
    assert model_file.is_nir(tmp_path / "missing.nir")  # the NIR reader then names the missing file


def test_the_same_network_loads_the_same_from_its_checkpoint_and_its_nir_file(saved):
    model, ckpt, path = saved
    from_ckpt = model_file.load_model(ckpt)
    from_nir = model_file.load_model(path, dt=1e-4, reset="subtract", data="synth-nmnist")
    x = _x()
    for mode in ("hard", "smooth"):  # smooth too: beta and T come from the file's metadata (sast.export wrote it)
        torch.testing.assert_close(from_nir.model(x, mode=mode), from_ckpt.model(x, mode=mode), rtol=1e-5, atol=1e-5)
    assert from_nir.model.config.beta == pytest.approx(1.5) and from_nir.model.config.T == T
    assert from_nir.source["beta_from"] == from_nir.source["T_from"] == "file metadata (sast.export)"


def test_the_source_names_library_path_and_sha256(saved):
    _, ckpt, path = saved
    c = model_file.load_model(ckpt)
    n = model_file.load_model(path, dt=1e-4, reset="subtract", data="synth-nmnist", beta=2.0, T=3)
    assert c.source["library"] == "sast-toolkit checkpoint" and c.source["kind"] == "checkpoint"
    assert c.source["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest() and c.run_dir == ckpt.parent
    assert n.source["kind"] == "nir" and n.source["path"] == str(path.resolve())
    assert n.source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (n.source["dt"], n.source["reset"], n.source["beta"], n.source["T"]) == (1e-4, "subtract", 2.0, 3)
    assert n.source["beta_from"] == n.source["T_from"] == "flag"
    assert n.run_dir == path.parent / "net.sast"
    assert n.ckpt["train_config"] == {"data": "synth-nmnist", "T": 3} and n.ckpt["config"]["T"] == 3


def test_another_librarys_file_gets_the_default_beta_and_the_datas_binning(tmp_path):
    path = tmp_path / "other.nir"
    graph = to_nir(_model())
    graph.metadata = {}  # as snnTorch, Norse or SpikingJelly write it: nothing of this toolkit's
    nir.write(path, graph)
    loaded = model_file.load_model(path, dt=1e-4, reset="zero", data="synth-nmnist")
    assert loaded.model.config.beta == model_file.DEFAULT_BETA and loaded.source["beta_from"] == "default"
    assert loaded.model.config.T == 20 and "default binning of synth-nmnist" in loaded.source["T_from"]
    assert loaded.source["library"] == model_file.NIR_BY_OTHER


@pytest.mark.parametrize("given, missing", [({"reset": "zero"}, "--dt"), ({"dt": 1e-4}, "--reset"),
                                            ({}, "--dt SECONDS and --reset")])
def test_a_nir_file_without_dt_or_reset_names_the_flag_and_the_conventions(saved, given, missing):
    _, _, path = saved
    with pytest.raises(NIRImportError) as e:
        model_file.load_model(path, data="synth-nmnist", **given)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and missing in msg
    for lib, dt in LIBRARY_DT.items():
        assert f"{lib} {dt:g}" in msg
    assert "its metadata (sast.export) says --dt 0.0001 --reset subtract" in msg


def test_a_nir_file_without_data_is_refused(saved):
    with pytest.raises(NIRImportError, match="does not name its data set; pass --data NAME"):
        model_file.load_model(saved[2], dt=1e-4, reset="zero")


def test_a_bad_setting_names_the_file(saved):
    _, _, path = saved
    with pytest.raises(NIRImportError, match=rf"^{path}: reset must be one of zero, subtract"):
        model_file.load_model(path, dt=1e-4, reset="soft", data="synth-nmnist")
    with pytest.raises(NIRImportError, match=rf"^{path}: --beta must be a finite number > 0"):
        model_file.load_model(path, dt=1e-4, reset="subtract", beta=float("nan"), data="synth-nmnist")
    with pytest.raises(NIRImportError, match=rf"^{path}: the graph's metadata says it was written with reset"):
        model_file.load_model(path, dt=1e-4, reset="zero", data="synth-nmnist")


def test_nir_settings_with_a_checkpoint_are_refused(saved):
    with pytest.raises(checkpoint.CheckpointError, match="--dt, --beta apply to a NIR file"):
        model_file.load_model(saved[1], dt=1e-4, beta=2.0)


def test_a_graph_without_an_input_shape_takes_the_datas(tmp_path):
    n = 2 * 34 * 34
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([])), "flat": nir.Flatten(np.array(SHAPE), 0, -1),
        "fc": nir.Affine(rng.normal(size=(4, n)).astype(np.float32), np.zeros(4, np.float32)),
        "lif": nir.LIF(tau=np.full(4, 1e-3), r=np.full(4, 10.0), v_leak=np.zeros(4), v_threshold=np.ones(4),
                       v_reset=np.zeros(4)),
        "output": nir.Output(np.array([4]))},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    path = tmp_path / "shapeless.nir"
    nir.write(path, graph)
    loaded = model_file.load_model(path, dt=1e-4, reset="zero", data="synth-nmnist")
    assert loaded.model.config.input_shape == SHAPE and model_file.data_shape("synth-nmnist") == SHAPE


def test_a_flat_input_takes_the_frames_flattened():
    frames = torch.arange(2 * 3 * 2 * 2 * 2).reshape(2, 3, 2, 2, 2)
    assert model_file.fit_frames(frames, (2, 2, 2)) is frames
    torch.testing.assert_close(model_file.fit_frames(frames, (8,)), frames.reshape(2, 3, 8))
    assert model_file.fit_frames(frames, (9,)) is None and model_file.fit_frames(frames, (2, 4, 1)) is None


def test_record_source_makes_a_nir_files_run_folder_and_leaves_a_checkpoints_alone(saved):
    _, ckpt, path = saved
    n = model_file.load_model(path, dt=1e-4, reset="subtract", data="synth-nmnist")
    written = model_file.record_source(n.run_dir, n.source, n.model.config.to_dict(), {"data": "synth-nmnist"})
    config = json.loads(written.read_text())
    assert written == path.parent / "net.sast" / "config.json"
    assert config["source"] == n.source and config["model"]["layers"][-2:] == ["dense:12", "dense:7"]
    assert "argv" in config["environment"]
    c = model_file.load_model(ckpt)
    assert model_file.record_source(c.run_dir, c.source, {}, {}) is None and not (ckpt.parent / "config.json").exists()


def test_the_checks_and_the_evaluation_give_a_flat_input_network_flattened_frames(tmp_path, monkeypatch):
    import sast.train.splits
    from checks import load_checkpoint
    from sast.evaluate import checkpoint_split
    from sast.train import Split

    torch.manual_seed(0)
    flat = SNN(SNNConfig(input_shape=(2 * 34 * 34,), layers=["dense:8"], T=T, num_classes=10))
    path = tmp_path / "flat.nir"
    nir.write(path, to_nir(flat))
    frames = (_x(6) > 0).to(torch.uint8)

    def load_split(cfg, split, progress=True):
        return Split(frames, torch.arange(6) % 10)

    monkeypatch.setattr(sast.train.splits, "load_split", load_split)
    loaded = load_checkpoint(path, dt=1e-4, reset="zero", data="synth-nmnist", batch=4)
    assert loaded.probe[0].shape == (4, T, 2 * 34 * 34) and loaded.source["kind"] == "nir"
    monkeypatch.setattr(sast.train, "load_split", load_split)
    model = model_file.load_model(path, dt=1e-4, reset="zero", data="synth-nmnist")
    x, _ = checkpoint_split(model.ckpt, "test", progress=False)
    torch.testing.assert_close(x, frames.flatten(2))
