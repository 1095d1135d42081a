"""Each benchmark's core function runs on a tiny size and returns what `make bench` reads.

No timing is asserted (timings depend on the machine and its load). The comparison
libraries (snnTorch, SpikingJelly, PyHessian, tonic) are the optional ``bench`` extra: where
one is missing, the part that needs it is skipped, the rest still runs.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from bench import checks_scale
from bench import data as data_bench
from bench import hessian as hessian_bench
from bench import run_all
from bench import sam_step as sam_bench
from bench import train_step as step_bench
from bench._common import round_robin
from sast import native

TINY = dict(input_shape=(2, 6, 6), T=3)


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_round_robin_pairs_ratios_by_round():
    timing = round_robin({"a": lambda: None, "b": lambda: sum(range(1000))}, rounds=4, warmup=0)
    assert [len(v) for v in timing.times.values()] == [4, 4]
    s = timing.summary("a")
    assert s["a"]["ratio"] == 1.0 and s["b"]["ratio"] > 0


@pytest.mark.parametrize("layers", [["dense:8"], ["conv:2:3:2", "pool:2", "dense:4"]])
def test_train_step_bench_runs_and_contenders_compute_the_same_function(layers):
    res = step_bench.run(layers=layers, batch=4, rounds=2, density=0.2, check_batch=2, progress=False, **TINY)
    timing, checks = res["timing"], res["checks"]
    assert {"floor", "floor+stream", "sast-plain", "sast-fast", "sast-fast-dense"} <= set(timing)
    assert ("sast-fast-torch-ops" in timing) == native.available()  # both paths of the fast step, side by side
    conv = any(spec.startswith("conv") for spec in layers)  # and both layouts of its conv layers
    assert ("sast-fast-contiguous" in timing) == (conv and native.available())
    assert res["vs_bandwidth_floor"]["floor+stream"]["ratio"] == 1.0  # the second table's reference
    for name in ("sast-fast", "sast-fast-dense"):
        assert checks[name]["forward_max_abs_diff"] < 1e-12 and checks[name]["grad_rel_error"] < 1e-10
    if _have("spikingjelly"):  # exact gradient (detach_reset=False)
        assert checks["spikingjelly"]["forward_max_abs_diff"] < 1e-9
        assert checks["spikingjelly"]["grad_rel_error"] < 1e-9
    if _have("snntorch"):  # same forward; its detached reset drops part of the gradient
        assert checks["snntorch"]["forward_max_abs_diff"] < 1e-6
        assert checks["snntorch"]["grad_rel_error"] > 1e-9


def test_gemm_floor_matches_the_layer_shapes():
    model = step_bench.demo_model(layers=["dense:8", "dense:4"], **TINY)
    x = step_bench.event_frames(4, 3, (2, 6, 6), 0.3)
    step_bench.gemm_floor(model, x)()  # runs: every product has matching shapes
    step_bench.bandwidth_floor(model, x)()
    conv = step_bench.demo_model(layers=["conv:2:3:2", "conv:3:3", "pool:2", "dense:4"], **TINY)
    for layout in ("fast", "contiguous"):  # a conv layer's gradients in one call, in either layout
        step_bench.gemm_floor(conv, x, layout)()


def test_sam_step_bench_runs():
    res = sam_bench.run(batch=4, rounds=2, layers=["dense:8"], **TINY)
    assert res["ratio"] > 0


def test_hessian_bench_hvp_part_runs():
    model = hessian_bench.demo_model(layers=["dense:8"], **TINY)
    x = hessian_bench.event_frames(4, 3, (2, 6, 6), 0.3)
    y = hessian_bench.labels(4)
    res = hessian_bench.hvp_vs_gradient(model, x, y, rounds=2, device="cpu")
    assert res["methods_rel_diff"] < 1e-4  # float32: the two exact methods agree to rounding
    assert res["fastest"] in ("double-backward", "forward-over-reverse")


@pytest.mark.skipif(not _have("pyhessian"), reason="PyHessian (the bench extra) is not installed")
def test_hessian_bench_eigen_part_runs():
    model = hessian_bench.demo_model(layers=["dense:8"], **TINY)
    x = hessian_bench.event_frames(4, 3, (2, 6, 6), 0.3)
    y = hessian_bench.labels(4)
    res = hessian_bench.top_eigenvalue(model, x, y, method="double-backward", rounds=1, device="cpu")
    assert res["reference"]["converged"]
    assert res["ours"]["rel_error_max"] < 1e-3
    assert all(p.grad is None for p in model.parameters())  # PyHessian's graph-carrying grads are cleared


@pytest.mark.skipif(not _have("tonic"), reason="tonic (the bench extra) is not installed")
def test_data_bench_binning_matches_tonic():
    res = data_bench.binning(recordings=3, rounds=1)
    assert res["same_frames"] and res["recordings"] == 3


def test_data_bench_generation_into_a_fresh_cache():
    res = data_bench.generation(limit=4)
    assert res["samples"] == {"train": 4, "test": 4} and res["seconds"] > 0


def test_run_all_summary_rows_and_json(tmp_path, monkeypatch):
    """The summary logic on a recorded result, and the JSON it writes (no benchmark is run)."""
    timing = {n: {"median_ms": ms, "ratio": ms / 100} for n, ms in
              [("floor", 100.0), ("sast-plain", 120.0), ("sast-fast", 40.0), ("sast-fast-dense", 110.0),
               ("snntorch", 170.0), ("spikingjelly", 130.0)]}
    bandwidth = {"sast-fast": {"ratio": 1.3}, "sast-fast-torch-ops": {"ratio": 2.2}}
    results = {"train_step": {"timing": timing, "threads": 1}, "sam_step": {"ratio": 2.1, "threads": 1},
               "train_step_conv": {"timing": timing, "vs_bandwidth_floor": bandwidth, "threads": 1}}
    targets = {t.name: t for t in run_all.collect_targets(results, 1)}
    assert targets["conv step: sast-fast / floor+stream"].met is False
    assert targets["conv step: sast-fast / floor+stream"].value == 1.3
    assert targets["demo step: sast-fast / GEMM floor"].met is True
    assert targets["demo step: snnTorch / sast-fast"].value == pytest.approx(170 / 40)
    assert targets["SAST step / SF step"].met is False
    assert targets["SAST step / SF step"].margin == pytest.approx((2.05 - 2.1) / 2.05)
    out = tmp_path / "r.json"
    monkeypatch.setattr(run_all, "MONITOR_SCRIPT", tmp_path / "absent.py")
    assert run_all.main(["--quick", "--out", str(out), "--skip",
                         "train_step,train_step_conv,train_step_default_threads,sam_step,hessian,data"]) == 0
    assert json.loads(out.read_text())["quick"] is True



def test_checks_scale_quick_runs_and_its_output_parses(tmp_path, capsys):
    """--quick on two probe sizes and two cheap checks: each in its own subprocess, then the table, exponents, JSON."""
    out = tmp_path / "scale.json"
    argv = ["--quick", "--only", "probe", "--checks", "contraction,state_bounds", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert checks_scale.main(argv) == 0
    res = json.loads(out.read_text())
    rows = res["configs"]
    assert sorted(r["probe"] for r in rows) == [2, 4] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert set(r["checks"]) == {"contraction", "state_bounds"}
        assert r["total_seconds"] > 0 and r["peak_rss_mb"] > 0
        assert all(c["seconds"] >= 0 and c["ids"] for c in r["checks"].values())
    fits = res["exponents"]["probe"]
    assert set(fits) == {"contraction", "state_bounds", "total"} and fits["total"]["points"] == 2
    text = capsys.readouterr().out
    assert "growth exponents" in text and "A4" in text and "probe 2" in text


def test_checks_scale_reports_a_timeout_as_a_row(tmp_path, capsys):
    """A configuration past --timeout is a row that says so (no crash, no exponent from it)."""
    out = tmp_path / "scale.json"
    argv = ["--quick", "--only", "T", "--checks", "contraction", "--timeout", "0.5",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert checks_scale.main(argv) == 0
    rows = json.loads(out.read_text())["configs"]
    assert rows and all(r["status"].startswith("timeout") for r in rows)
    assert json.loads(out.read_text())["exponents"]["T"]["total"]["time"] is None
    assert "timeout" in capsys.readouterr().out


def test_checks_scale_parameter_counts_and_growth_slope():
    """The analytic count is the model's; width scaling reaches its target; the slope of y = x^2 is 2."""
    from sast.model import SNN, SNNConfig

    layers = checks_scale.layers_for(1e6, checks_scale.FULL.layers, (2, 32, 32), 11)
    n = checks_scale.count_params(layers, (2, 32, 32), 11)
    model = SNN(SNNConfig(input_shape=(2, 32, 32), layers=layers, T=2, num_classes=11))
    assert n == sum(p.numel() for p in model.parameters()) and abs(n / 1e6 - 1) < 0.02
    assert checks_scale.slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert checks_scale.slope([2, 2], [1, 5]) is None

@pytest.mark.cuda
def test_train_step_bench_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = step_bench.run(layers=["dense:8"], batch=4, rounds=2, density=0.2, device="cuda", libraries=False,
                         progress=False, **TINY)
    assert res["checks"]["sast-fast"]["grad_rel_error"] < 1e-10
