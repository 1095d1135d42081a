"""The public surface of checks: load_checkpoint, explicit options, declared needs, lazy exports."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import checks
import sast.train
from checks._common import KNOWN_NEEDS, CheckInputError, declared_needs
from checks._load import Loaded, load_checkpoint, probe_from_split
from checks._result import make_result
from checks.all import CHECKS, run_all
from checks.monitor import Check
from sast import checkpoint
from sast.model import SNN, SNNConfig
from sast.train import Split, TrainConfig

SHAPE = (2, 3, 3)  # a tiny "sensor": 18 inputs
T = 4
N = 30  # samples per fake split
ROOT = Path(__file__).resolve().parents[2]


def _model() -> SNN:
    torch.manual_seed(0)
    return SNN(SNNConfig(input_shape=SHAPE, layers=["dense:5"], T=T, beta=2.0, num_classes=3))


def _save(tmp_path: Path, **train) -> Path:
    path = tmp_path / "run" / "ckpt.pt"
    cfg = TrainConfig(data="synth-nmnist", rho=0.2, layers=["dense:5"], T=T, beta=2.0, **train)
    checkpoint.save(path, _model(), train_config=cfg.to_dict())
    return path


def _fake_split(cfg: TrainConfig, split: str, shape=SHAPE) -> Split:
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    frames = (torch.rand(N, cfg.T, *shape, generator=g) < 0.3).to(torch.uint8)
    return Split(frames, torch.randint(0, 3, (N,), generator=g))


@pytest.fixture
def splits(monkeypatch) -> list[tuple[TrainConfig, str]]:
    """sast.train.splits.load_split (what checks._load calls) replaced by fake frames; the calls it got."""
    calls: list[tuple[TrainConfig, str]] = []

    def load_split(cfg: TrainConfig, split: str, progress: bool = True) -> Split:
        calls.append((cfg, split))
        return _fake_split(cfg, split)

    monkeypatch.setattr(sast.train.splits, "load_split", load_split)
    return calls


# --------------------------------------------------------------------------- load_checkpoint


def test_load_checkpoint_gives_the_runs_config_and_the_probe_of_probe_from_split(tmp_path, splits):
    path = _save(tmp_path)
    loaded = load_checkpoint(path, split="val", batch=8, seed=3, dtype="float64")
    assert isinstance(loaded.config, TrainConfig)
    assert (loaded.config.data, loaded.config.rho, loaded.config.T) == ("synth-nmnist", 0.2, T)
    assert [s for _, s in splits] == ["val"] and splits[0][0] == loaded.config
    split = _fake_split(loaded.config, "val")
    x, y = probe_from_split(split.frames, split.labels, 8, 3)  # the same indices as before the loader existed
    assert torch.equal(loaded.probe[0], x.double()) and torch.equal(loaded.probe[1], y)
    assert loaded.probe[0].dtype == torch.float64 and loaded.dtype == torch.float64
    assert next(loaded.model.parameters()).dtype == torch.float64 and not loaded.model.training
    assert loaded.run_dir == path.parent and loaded.device == torch.device("cpu")
    assert loaded.ckpt["train_config"]["rho"] == 0.2  # the raw checkpoint dict


def test_load_checkpoint_overrides_data_root_and_cache_dir(tmp_path, splits):
    path = _save(tmp_path, cache_dir="/run/cache")
    kept = load_checkpoint(path)
    assert kept.config.cache_dir == "/run/cache" and splits[-1][1] == "test"
    loaded = load_checkpoint(path, data="synth-gesture", root="/data", cache_dir="/tmp/c")
    assert (loaded.config.data, loaded.config.root, loaded.config.cache_dir) == ("synth-gesture", "/data", "/tmp/c")
    assert loaded.config.rho == 0.2 and loaded.config.T == T  # the rest is the run's


@pytest.mark.parametrize("bad, match", [
    ({"split": "validation"}, "split must be one of train, val, test"),
    ({"dtype": "float16"}, "dtype must be one of float32, float64"),
    ({"device": "gpu"}, "device 'gpu'"),
    ({"device": "cuda:99"}, "device 'cuda:99'"),
])
def test_bad_split_dtype_or_device_is_one_line_of_check_input_error(tmp_path, splits, bad, match):
    path = _save(tmp_path)
    with pytest.raises(CheckInputError, match=match) as e:
        load_checkpoint(path, **bad)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    assert splits == []  # refused before any data is read


def test_data_of_another_input_shape_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sast.train.splits, "load_split",
                        lambda cfg, split, progress=True: _fake_split(cfg, split, (2, 4, 4)))
    with pytest.raises(CheckInputError, match=r"input shape \(2, 4, 4\), the model expects \(2, 3, 3\)"):
        load_checkpoint(_save(tmp_path))


def test_a_checkpoint_without_train_config_needs_data(tmp_path, splits):
    path = tmp_path / "bare.pt"
    checkpoint.save(path, _model())
    with pytest.raises(CheckInputError, match="does not say which data set"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, data="synth-nmnist")
    assert loaded.config.T == T  # binned as the model expects


# --------------------------------------------------------------------------- explicit options


def _probe(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, T, *SHAPE, generator=g) < 0.3).float(), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("name", list(CHECKS))
def test_a_misspelled_option_raises_type_error(name):
    module = importlib.import_module(f"checks.{name}")
    with pytest.raises(TypeError, match="tl"):
        module.run(_model(), _probe(), tl=1e-3)  # tol misspelled: never swallowed


def test_the_monitor_passes_its_options_as_they_are():
    with pytest.raises(TypeError, match="method"):  # the HVP option is hvp_method everywhere
        Check("smoothness", (("method", "double-backward"),))(_model(), _probe(), None, 0)


def test_every_check_declares_known_needs():
    needs = {name: declared_needs(importlib.import_module(f"checks.{name}")) for name in CHECKS}
    assert needs == {"contraction": (), "state_bounds": (), "lipschitz": (), "smoothness": (),
                     "sam_error": ("rho",), "convergence": ("run_dir",), "mechanism": (), "transfer": ()}
    assert set().union(*needs.values()) <= set(KNOWN_NEEDS)


# --------------------------------------------------------------------------- needs by declaration


def _fake_check(monkeypatch, name: str, needs: tuple[str, ...], run) -> None:
    module = types.ModuleType(f"checks.{name}")
    module.run = run
    if needs is not None:
        module.NEEDS = needs
    monkeypatch.setitem(sys.modules, f"checks.{name}", module)


def _loaded(tmp_path: Path, train_config: dict) -> Loaded:
    return Loaded(_model(), {"train_config": train_config}, _probe(), tmp_path, torch.device("cpu"), torch.float32)


def test_run_all_passes_what_a_check_declares(tmp_path, monkeypatch):
    got: dict[str, dict] = {}

    def needy(model, probe, *, seed, progress, rho, rho_source, run_dir):
        got["needy"] = {"seed": seed, "progress": progress, "rho": rho, "rho_source": rho_source, "run_dir": run_dir}
        return make_result("X1", "needy", bound=None, estimate=None)

    def modest(model, probe, *, seed, progress):  # would raise TypeError if given rho or run_dir
        got["modest"] = {"seed": seed}
        return [make_result("X2", "modest", bound=None, estimate=None)]

    _fake_check(monkeypatch, "_needy", ("rho", "run_dir"), needy)
    _fake_check(monkeypatch, "_modest", (), modest)
    results = run_all(_loaded(tmp_path, {"rho": 0.3}), ["_needy", "_modest"], seed=4, progress=False)
    assert [r.id for r in results] == ["X1", "X2"]
    assert got == {"needy": {"seed": 4, "progress": False, "rho": 0.3, "rho_source": "checkpoint train_config.rho",
                             "run_dir": tmp_path},
                   "modest": {"seed": 4}}
    run_all(_loaded(tmp_path, {"rho": 0.0}), ["_needy"], progress=False)
    assert (got["needy"]["rho"], got["needy"]["rho_source"]) == (None, "the checkpoint's rho is 0")


def test_a_check_without_needs_or_with_an_unknown_need_is_refused(tmp_path, monkeypatch):
    _fake_check(monkeypatch, "_silent", None, lambda model, probe, *, seed, progress: [])
    _fake_check(monkeypatch, "_greedy", ("gpu",), lambda model, probe, *, seed, progress: [])
    with pytest.raises(TypeError, match="declares no NEEDS"):
        run_all(_loaded(tmp_path, {}), ["_silent"], progress=False)
    with pytest.raises(TypeError, match="needs 'gpu'"):
        run_all(_loaded(tmp_path, {}), ["_greedy"], progress=False)


def test_run_all_checks_T5_at_the_runs_rho_and_records_T6_without_a_monitor_log(tmp_path):
    for rho, source in ((0.0, "default 0.05 (the checkpoint's rho is 0)"), (0.2, "checkpoint train_config.rho")):
        (t5,) = run_all(_loaded(tmp_path, {"rho": rho}), ["sam_error"], progress=False)
        assert t5.details["rho_source"] == source and t5.details["rho"] == (rho or 0.05)
    (t6,) = run_all(_loaded(tmp_path, {"rho": 0.2}), ["convergence"], seed=2, progress=False)
    assert t6.id == "T6" and t6.status == "not applicable" and t6.seed == 2
    assert "config.json does not exist" in t6.details["reason"]


def test_the_monitor_passes_the_runs_rho_by_declaration(tmp_path):
    options = (("local", False), ("ascent_steps", 1), ("ascent_starts", 0), ("taylor_samples", 1))
    for rho, source in ((0.0, "default 0.05 (the run's rho is 0)"), (0.1, "the run's rho")):
        run = types.SimpleNamespace(cfg=types.SimpleNamespace(rho=rho), run_dir=tmp_path)
        r = Check("sam_error", options)(_model(), _probe(), run, 0)
        assert r.details["rho_source"] == source and r.details["rho"] == (rho or 0.05)


# --------------------------------------------------------------------------- the package


def test_public_names_resolve_lazily():
    for name in checks.__all__:
        assert getattr(checks, name) is not None
    with pytest.raises(AttributeError):
        checks.no_such_name  # noqa: B018
    code = "import sys, checks; assert 'torch' not in sys.modules and 'checks.all' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_python_m_checks_all_imports_it_once():
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "checks.all", "--help"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "RuntimeWarning" not in out.stderr and "--only" in out.stdout
