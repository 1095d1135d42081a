"""The live monitor (checks.monitor): schedules, records, the sigma^2 estimator, and no effect on training."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from checks import linalg, monitor
from checks.monitor import (Check, Monitor, ProbeStats, Quantity, at, at_epoch_end, every, log_spaced, log_then_every,
                            staggered)
from sast.model import SNN, SNNConfig
from sast.runlog import read_jsonl
from sast.train import Callback, Data, Split, StopTraining, TrainConfig, train

SHAPE = (2, 3, 3)  # a tiny "sensor": 18 inputs


def _data(seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        frames = (torch.rand(n, 4, *SHAPE, generator=g) < 0.3).to(torch.uint8)
        return Split(frames, torch.randint(0, 3, (n,), generator=g))

    return Data(train=split(64), val=split(24), test=split(16), input_shape=SHAPE, num_classes=3)


def _cfg(**kw) -> TrainConfig:
    base = dict(data="synthetic", method="sast", rho=0.1, optimizer="momentum", lr=0.2, batch_size=16, epochs=2,
                layers=["dense:6"], T=4, beta=2.0, seed=1, log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def test_schedules():
    assert [k for k in range(60) if every(25)(k)] == [0, 25, 50]
    assert [k for k in range(12) if every(5, start=2)(k)] == [2, 7]
    assert [k for k in range(40) if log_spaced()(k)] == [1, 2, 4, 8, 16, 32]
    assert [k for k in range(100) if log_spaced(base=3, start=2)(k)] == [2, 6, 18, 54]
    assert [k for k in range(10) if at(7, 3)(k)] == [3, 7]
    assert all(at_epoch_end(k) for k in range(5))
    with pytest.raises(ValueError):
        every(0)
    points = log_then_every(100, base=4)
    assert [k for k in range(450) if points(k)] == [0, 1, 4, 16, 64, 100, 200, 300, 400]
    assert [points.index(k) for k in (0, 1, 4, 16, 64, 100, 400)] == [0, 1, 2, 3, 4, 5, 8]
    assert points.index(5) is None and points.index(150) is None
    assert [k for k in range(450) if staggered(points, 1, 3)(k)] == [1, 64, 300]
    assert [k for k in range(20) if log_then_every(8)(k)] == [0, 1, 2, 4, 8, 16]  # 8 itself once
    with pytest.raises(ValueError):
        staggered(points, 3, 3)


EXPENSIVE = ("T3", "T4", "T5", "T7")


@pytest.mark.parametrize("name", ["default", "full"])
def test_presets_stagger_the_expensive_checks(name):
    quantities = {q.id: q for q in monitor.preset(name)}
    for k in range(5000):
        due = [sid for sid in EXPENSIVE if quantities[sid].schedule(k)]
        assert len(due) <= 1, (k, due)  # at most one expensive check at any step
        if due:  # and A4, T2 at every such point, sharing its constants and traces
            assert quantities["A4"].schedule(k) and quantities["T2"].schedule(k)
    demo = range(1801)  # python -m sast.train's defaults: 30 epochs of 60 steps
    for sid in EXPENSIVE:
        assert sum(quantities[sid].schedule(k) for k in demo) >= 2, sid
    assert quantities["T4"].schedule(0)  # T6 holds its first probe against T4's L from step 0 on
    assert quantities["T6"].at_end and quantities["T6"].schedule == quantities["probe"].schedule


def test_presets_are_named_lists_with_stable_ids():
    assert monitor.preset("off") == ()
    ids = {name: [q.id for q in monitor.preset(name)] for name in ("default", "full")}
    assert ids["default"] == ids["full"] == ["A4", "T2", "T4", "T3", "T5", "T7", "probe", "T6"]
    with pytest.raises(ValueError, match="did you mean 'default'"):
        monitor.preset("defualt")


def test_probe_statistics_equal_a_plain_gradient():
    torch.manual_seed(0)
    model = SNN(SNNConfig(input_shape=(5,), layers=["dense:4"], T=3, beta=2.0, num_classes=3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 3, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g)
    out = monitor.probe_statistics(model, x, y, groups=4)
    grad = linalg.flat_grad(model, x, y)
    assert out["loss"] == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-12)
    assert out["grad_norm_sq"] == pytest.approx(float(grad @ grad), rel=1e-10)
    assert out["sigma2_groups"] == 4 and out["n_probe"] == 12
    # by hand: sum_j s_j ||g_j - g||^2 / (m - 1) over the contiguous groups of 3
    gj = [linalg.flat_grad(model, x[i:i + 3], y[i:i + 3]) for i in range(0, 12, 3)]
    want = sum(3 * float((v - grad) @ (v - grad)) for v in gj) / 3
    assert out["sigma2"] == pytest.approx(want, rel=1e-8)
    # the subsampling error in the record: sigma^2/n, and the standard error of F from the groups' losses
    assert out["grad_norm_sq_bias"] == pytest.approx(want / 12, rel=1e-8)
    losses = [float(F.cross_entropy(model(x[i:i + 3]), y[i:i + 3]).detach()) for i in range(0, 12, 3)]
    spread = sum(3 * (v - out["loss"]) ** 2 for v in losses) / 3
    assert out["loss_se"] == pytest.approx((spread / 12) ** 0.5, rel=1e-8)


def test_grouped_sigma2_averages_to_the_per_sample_variance_over_partitions():
    # Over all orderings of the probe, the grouped estimator's mean is exactly the per-sample
    # sample variance (1/(n-1)) sum_i ||g_i - g||^2: the estimator is unbiased, not just close.
    torch.manual_seed(2)
    model = SNN(SNNConfig(input_shape=(5,), layers=["dense:3"], T=2, beta=2.0, num_classes=2)).double()
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(4, 2, 5, generator=g, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    G = linalg.flatten(linalg.per_sample_grads(model, x, y))
    per_sample = float(((G - G.mean(0)) ** 2).sum()) / (len(G) - 1)
    ests = [monitor.probe_statistics(model, x[list(p)], y[list(p)], groups=2)["sigma2"]
            for p in itertools.permutations(range(4))]
    assert sum(ests) / len(ests) == pytest.approx(per_sample, rel=1e-9)
    assert max(ests) > 1.05 * min(ests)  # the single estimates do vary: the identity is not trivial


def _records(run_dir: Path, kinds=None):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if kinds is None or r["kind"] in kinds]


def test_monitor_logs_probe_and_check_records(tmp_path):
    quantities = (
        Quantity("probe", every(2), ProbeStats(groups=3)),
        Quantity("A4", every(4), Check("contraction"), probe_size=8),
        Quantity("T4", at_epoch_end, Check("smoothness", monitor.LIVE_LANCZOS), on="epoch", probe_size=8),
        Quantity("T2", monitor.at_train_end, Check("state_bounds"), on="end", probe_size=8),
    )
    mon = Monitor(quantities, probe_size=12, strict=True)
    train(_cfg(), tmp_path / "run", callbacks=[mon], progress=False, data=_data())
    steps_per_epoch = 64 // 16
    probes = _records(tmp_path / "run", {"probe"})
    assert [r["step"] for r in probes] == [0, 2, 4, 6, 8]
    for r in probes:
        assert {"kind", "step", "epoch", "loss", "grad_norm_sq", "sigma2", "batch_size"} <= set(r)
        assert r["batch_size"] == 16 and r["n_probe"] == 12 and r["sigma2_groups"] == 3
        assert r["loss"] > 0 and r["grad_norm_sq"] > 0 and r["sigma2"] >= 0
    assert probes[0]["epoch"] == 0 and probes[-1]["epoch"] == 1  # the epoch in progress, as train records
    checks = _records(tmp_path / "run", {"check"})
    a4 = [r for r in checks if r["result"]["id"] == "A4"]
    t4 = [r for r in checks if r["result"]["id"] == "T4"]
    assert [r["step"] for r in a4] == [0, 4, 8]
    assert [(r["step"], r["epoch"]) for r in t4] == [(steps_per_epoch, 1), (2 * steps_per_epoch, 2)]
    assert all(r["result"]["holds"] is True and r["result"]["details"]["n_probe"] == 8 for r in t4)
    assert [(r["step"], r["epoch"]) for r in checks if r["result"]["id"] == "T2"] == [(8, 2)]  # once, at the end
    start, end = _records(tmp_path / "run", {"monitor"})
    assert start["event"] == "start" and start["probe"]["size"] == 12 and start["preset"] is None
    assert [q["id"] for q in start["quantities"]] == ["probe", "A4", "T4", "T2"]
    assert end["event"] == "end" and end["runs_by_id"] == {"probe": 5, "A4": 3, "T4": 2, "T2": 1}
    assert end["errors"] == 0
    assert mon.seconds > 0


def test_the_probe_comes_from_the_training_split_and_the_log_says_so(tmp_path):
    data = _data()
    mon = Monitor([Quantity("probe", every(100), ProbeStats(groups=2))], probe_size=8, strict=True)
    train(_cfg(epochs=1), tmp_path / "run", callbacks=[mon], progress=False, data=data)
    (start,) = [r for r in _records(tmp_path / "run", {"monitor"}) if r["event"] == "start"]
    assert start["probe"]["split"] == "train"  # T6's F is the training loss
    assert torch.equal(mon.probe[0], data.train.frames[start["probe"]["indices"]].float())


def test_probe_set_is_the_same_whatever_the_preset():
    data = _data()
    a = monitor.draw_probe(data.val, 16)
    b = monitor.draw_probe(data.val, 16)
    assert a[2] == b[2] and torch.equal(a[0], b[0])
    assert sorted(a[2]) != a[2] or len(a[2]) < 3  # a random order: the first n are a uniform subset


class _Spy(Callback):
    """After the monitor in the callback list: sees the model as training continues."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_step_end(self, run, stats) -> None:
        self.modes.append(run.model.training)


def _final_state(tmp_path: Path, name: str, callbacks, **cfg_kw) -> tuple[dict, dict, torch.Tensor, list]:
    cfg = _cfg(**cfg_kw)
    train(cfg, tmp_path / name, callbacks=callbacks, progress=False, data=_data())
    from sast import checkpoint

    model, ckpt = checkpoint.load(tmp_path / name / "ckpt.pt")
    rest = [{k: v for k, v in r.items() if k != "seconds"} for r in _records(tmp_path / name, {"train", "eval"})]
    return model.state_dict(), ckpt["optimizer"], torch.get_rng_state(), rest


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


SF_SGD = dict(method="sf", rho=0.0, optimizer="sgd", epochs=3)  # T6 applies: plain SGD


@pytest.mark.parametrize("preset", ["default", "full"])
@pytest.mark.parametrize("settings", [{}, SF_SGD], ids=["sast-momentum", "sf-sgd"])
def test_training_with_the_monitor_ends_bit_identical(tmp_path, preset, settings):
    # CPU, one seed: the final weights, the optimizer state, the global RNG and every train and eval
    # record are the same with the monitor as without it (the monitor runs every statement here)
    spy = _Spy()
    plain = _final_state(tmp_path, "plain", [], **settings)
    monitored = _final_state(tmp_path, "monitored", [Monitor(preset, probe_size=12, strict=True), spy], **settings)
    for a, b, what in zip(plain, monitored, ("model", "optimizer", "global RNG", "train and eval records")):
        assert _same(a, b), what
    assert spy.modes and all(spy.modes)  # the monitor put the model back in train mode
    records = _records(tmp_path / "monitored")
    kinds = {r["kind"] for r in records}
    assert {"probe", "check", "monitor"} <= kinds and "monitor_error" not in kinds
    assert {r["id"] for r in records if r["kind"] == "check"} >= {"A4", "T2", "T3", "T4", "T5", "T6"}


def test_the_identity_test_catches_a_monitor_that_draws_from_the_global_rng(tmp_path):
    # a planted bug: a quantity that consumes the training RNG must change the final RNG state
    def greedy(model, probe, run, seed, shared=None):
        torch.rand(1)
        return {"loss": 0.0, "grad_norm_sq": 0.0, "sigma2": None, "batch_size": 16}

    plain = _final_state(tmp_path, "plain", [])
    bad = _final_state(tmp_path, "bad", [Monitor([Quantity("probe", every(3), greedy)], strict=True)])
    assert not _same(plain[2], bad[2])


def test_a_failing_quantity_is_recorded_and_training_goes_on(tmp_path):
    def broken(model, probe, run, seed, shared=None):
        raise RuntimeError("planted failure")

    run = tmp_path / "run"
    train(_cfg(epochs=1), run, callbacks=[Monitor([Quantity("probe", every(2), broken)])], progress=False,
          data=_data())
    errors = _records(run, {"monitor_error"})
    assert [r["step"] for r in errors] == [0, 2, 4] and "planted failure" in errors[0]["error"]
    assert _records(run, {"eval"})  # the run finished


def test_resume_continues_from_the_checkpoint_step(tmp_path):
    run = tmp_path / "run"
    q = (Quantity("probe", every(2), ProbeStats(groups=2)),)
    train(_cfg(epochs=1), run, callbacks=[Monitor(q, probe_size=8)], progress=False, data=_data())
    cfg = _cfg(epochs=1)
    cfg.epochs = 2  # resuming needs the same settings: rewrite the saved config as a 2-epoch run
    from sast import checkpoint

    state = checkpoint.read(run / "ckpt.pt")
    state["train_config"]["epochs"] = 2
    torch.save(state, run / "ckpt.pt")
    train(cfg, run, callbacks=[Monitor(q, probe_size=8)], resume=True, progress=False, data=_data())
    steps = [r["step"] for r in _records(run, {"probe"})]
    assert steps == [0, 2, 4, 6, 8]  # step 4 (the checkpoint) is logged once
    # one start and one end, as in an uninterrupted run: the first run's end record is cut with the log (the
    # checkpoint stores the log's length), and the resumed monitor takes its counters from the checkpoint
    events = [(r["event"], r["step"]) for r in _records(run, {"monitor"})]
    assert events == [("start", 0), ("end", 8)]
    assert _records(run, {"monitor"})[-1]["runs_by_id"] == {"probe": 5}


class _StopAt(Callback):
    """Stops training after step ``k`` as the monitor does with --on-violation stop."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_step_end(self, run, stats) -> None:
        if run.step == self.k:
            raise StopTraining(f"planted stop at step {self.k}")


def _timeless(obj):
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


@pytest.mark.parametrize("k", [2, 5])  # in the first epoch (4 steps each), and in the second
def test_a_run_stopped_mid_epoch_resumes_as_the_uninterrupted_run(tmp_path, k):
    from sast import checkpoint

    cfg = _cfg(**SF_SGD)
    train(cfg, tmp_path / "whole", callbacks=[Monitor("default", probe_size=12)], progress=False, data=_data())
    run = tmp_path / "stopped"
    with pytest.raises(StopTraining, match=f"planted stop at step {k}"):
        train(cfg, run, callbacks=[Monitor("default", probe_size=12), _StopAt(k)], progress=False, data=_data())
    ckpt = checkpoint.read(run / "ckpt.pt")  # the state at step k, not the last epoch's
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_index"]) == (k, k // 4, k % 4)
    assert ckpt["stopped"] == {"step": k, "epoch": k // 4, "reason": f"planted stop at step {k}"}
    train(cfg, run, callbacks=[Monitor("default", probe_size=12)], resume=True, progress=False, data=_data())
    whole, resumed = _records(tmp_path / "whole"), _records(run)
    assert _timeless(resumed) == _timeless(whole)  # T4's warm start came back with the monitor's state
    a, _ = checkpoint.load(tmp_path / "whole" / "ckpt.pt")
    b, _ = checkpoint.load(run / "ckpt.pt")
    assert _same(a.state_dict(), b.state_dict())


@pytest.mark.cuda
def test_on_cuda_the_monitor_reads_no_device_value_between_its_checks(tmp_path):
    # a step without a due quantity must not wait for the GPU: on_step_end runs under CUDA's
    # sync debug mode "error" there (any .item(), float() or .cpu() of a CUDA tensor would raise)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    mon = Monitor("default", probe_size=12, strict=True)
    hook = mon.on_step_end
    guarded = []

    def on_step_end(run, stats):
        if any(q.on == "step" and q.schedule(run.step) for q in mon.quantities):
            return hook(run, stats)
        guarded.append(run.step)
        torch.cuda.set_sync_debug_mode("error")
        try:
            hook(run, stats)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    mon.on_step_end = on_step_end
    train(_cfg(device="cuda", **SF_SGD), tmp_path / "run", callbacks=[mon], progress=False, data=_data())
    assert guarded  # steps 3, 5, 6, ... of the 12
    checks = _records(tmp_path / "run", {"check"})
    assert {r["id"] for r in checks} >= {"A4", "T2", "T3", "T4", "T5", "T6"}
    assert all(r["result"]["device"].startswith("cuda") for r in checks if r["id"] in ("T4", "T3"))
    assert not _records(tmp_path / "run", {"monitor_error"})


def test_alarms_fire_on_changes_only_and_each_assumption_is_its_own_statements(capsys):
    from types import SimpleNamespace

    from checks._result import make_result

    mon = Monitor("default", on_violation="stop")
    run = SimpleNamespace(step=0, postfix={})

    def react(step, sid, bound, estimate, **assumptions):
        run.step = step
        return mon._react(run, make_result(sid, sid, bound=bound, estimate=estimate, assumptions=assumptions))

    assert react(0, "A4", 0.96, 0.9, A4=True) is None
    assert react(0, "T6", 5.0, 1.0, **{"eta <= 1/L": False}) is None  # fails from its first record: said, no alarm
    assert run.postfix["theory"] == "fails: eta <= 1/L"
    sid, reason = react(4, "A4", 1.2, 1.1, A4=False)  # A4 stops holding: an alarm (stop would raise on it)
    assert sid == "A4" and reason.startswith("step 4: assumption A4 stopped holding (A4: estimate 1.1, bound 1.2")
    assert react(8, "A4", 0.96, 0.9, A4=True) is None  # holds again: a line, no alarm
    # T6 merges A4 over every T4 record so far (still False): not A4's own record, so no new alarm
    assert react(8, "T6", 5.0, 1.0, A4=False, **{"eta <= 1/L": False}) is None
    sid, reason = react(9, "T2", 1.0, 2.0, A1=True)  # a violated bound: an alarm, once
    assert sid == "T2" and "T2 (T2) VIOLATED: estimate 2, bound 1 (ratio 2)" in reason
    assert react(10, "T2", 1.0, 3.0, A1=True) is None and run.postfix["theory"] == "VIOLATED T2"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "monitor: step 0: assumption eta <= 1/L fails (T6: estimate 1, bound 5)",
        "monitor: step 4: assumption A4 stopped holding (A4: estimate 1.1, bound 1.2)",
        "monitor: step 8: assumption A4 holds again (A4: estimate 0.9, bound 0.96)",
        "monitor: step 9: T2 (T2) VIOLATED: estimate 2, bound 1 (ratio 2)",
    ]
