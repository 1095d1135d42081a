"""The faster paths of the checks give the same numbers: chunked and cached measurements, shared observations,
the Hessian operator's reused product and its calibration on a slice of the probe, A4's screened maximum."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import checks.all as checks_all
import checks.local as local
from checks import linalg
from checks.local import measure, observe, sharing_observations
from checks.testing import NEURONS, SOFT_BAND, nets, one_thread
from sast.model import SNN, SNNConfig

FIELDS = [f.name for f in dataclasses.fields(local.LayerConstants)]


def _same_layers(a: local.Measured, b: local.Measured) -> None:
    """Every per-layer constant, the readout input, the kept sups and inputs: equal bit for bit."""
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        for name in FIELDS:
            va, vb = getattr(la, name), getattr(lb, name)
            assert (va is None) == (vb is None), name
            if va is not None:
                assert np.array_equal(va, vb), name
    assert np.array_equal(a.readout_in, b.readout_in)
    assert len(a.sups) == len(b.sups) and len(a.inputs) == len(b.inputs)
    for sa, sb in zip(a.sups, b.sups):
        assert all(np.array_equal(x, y) for x, y in zip(sa, sb))
    for ia, ib in zip(a.inputs, b.inputs):
        assert np.array_equal(ia, ib)


def _calls(model: SNN) -> list[dict]:
    """The measure() calls the checks make: at w (T3 with norms, T4 without), and T5's ball, first and second order."""
    D = len(model.spiking_specs)
    deltas = [0.3 * (l + 1) for l in range(D)]
    caps = [(2.0, 5.0)] * D
    return [dict(norms=True), dict(norms=False),
            dict(norms=False, delta=deltas, rho=0.05, caps=caps, second_order=False),
            dict(norms=False, delta=deltas, rho=0.05, caps=caps, second_order=True),
            dict(norms=False, delta=[0.0] + deltas[1:], rho=0.05)]


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(st.sampled_from(("dense", "conv", "mixed")), st.sampled_from(NEURONS))
       .flatmap(lambda kn: nets(kn[0], SOFT_BAND, neurons=kn[1])))
@one_thread
def test_measure_in_one_sample_chunks_with_kept_values_equals_one_fresh_pass(spec) -> None:
    """measure() chunked to one sample and one pair stack per sample, reading the values it kept on the observation
    from earlier calls, gives the numbers of one unchunked pass on a fresh observation, for every kind of call."""
    net = dataclasses.replace(spec, batch=spec.batch + 1).build()  # two samples at least: two chunks
    model, x, y = net.model, net.x, net.y
    kept = observe(model, x, y, jacobian=False)
    for call in _calls(model):
        want = measure(model, observe(model, x, y, jacobian=False), **call)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(local, "MEASURE_CHUNK_BYTES", 1)
            mp.setattr(local, "PAIR_CHUNK_BYTES", 1)
            got = measure(model, kept, **call)
        _same_layers(got, want)
    assert kept.derived, "the observation keeps what every call reads alike"


def _model(layers: list[str], shape: tuple[int, ...], reset: str = "zero") -> SNN:
    torch.manual_seed(0)
    cfg = SNNConfig(input_shape=shape, layers=layers, T=5, lam=0.8, theta=0.5, beta=3.0, reset=reset, num_classes=3)
    return SNN(cfg).double()


def _probe(shape: tuple[int, ...], n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, 5, *shape), generator=g, dtype=torch.float64) * 2, torch.randint(3, (n,), generator=g)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_first_order_measure_keeps_every_first_order_constant_and_bounds_the_rest(reset: str) -> None:
    """second_order=False (T5's search for delta) changes no constant that U1 reads; its |g''| and |sig''| (T1's
    closed forms) bound the values at the observed states, which lie in every interval [u - delta, u + delta].
    (They may lie below the measured sups, which add delta times a bound on the next derivative: both bound
    the same sup.)"""
    model = _model(["conv:2:3:2", "dense:4", "dense:3"], (1, 7, 7), reset)
    x, y = _probe((1, 7, 7))
    obs = observe(model, x, y, jacobian=False)
    delta = [0.2, 0.1, 0.4]
    full = measure(model, obs, delta=delta, rho=0.05, norms=False)
    first = measure(model, obs, delta=delta, rho=0.05, norms=False, second_order=False)
    at_states = measure(model, obs, norms=False)
    for a, b, w in zip(full.layers, first.layers, at_states.layers):
        for name in ("kappa", "sig1", "d1", "K", "A", "J1", "E"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None and vb is None) or np.array_equal(va, vb), name
        assert np.all(b.gam >= w.gam) and np.all(b.sig2 >= w.sig2) and np.all(b.d2 >= w.d2)
        assert b.J2 is None


def test_the_max_of_sig_prime_over_time_read_from_the_nearest_state_equals_the_full_sups() -> None:
    """Where measure() needs only max_t sup sig' it reads sig' at min_t |u - theta| less delta: the same numbers as
    the max over t of the elementwise sups over [v - delta, v + delta]."""
    model = _model(["dense:6", "dense:3"], (5,))
    x, y = _probe((5,), n=6)
    obs = observe(model, x, y, jacobian=False)
    for delta in (0.0, 0.05, 0.7):
        m = measure(model, obs, delta=[delta, delta], norms=False)
        for l, lc in enumerate(m.layers[:-1]):  # the last layer at w takes the full path (T3's readout weights)
            _, theta = model.neuron_numpy(l, flat=True)
            want = local._sig1_sup(obs.u[l] - theta, model.config.beta, delta).max(axis=1)
            assert lc.d1 == pytest.approx(want, rel=1e-14, abs=0)


def test_sharing_observations_hands_back_one_observation_until_the_weights_change() -> None:
    model = _model(["dense:4", "dense:3"], (5,))
    x, y = _probe((5,))
    outside = observe(model, x, y), observe(model, x, y)
    assert outside[0] is not outside[1], "outside the block nothing is held"
    with sharing_observations():
        a = observe(model, x, y)
        assert observe(model, x, y) is a
        assert observe(model, x, y, jacobian=False) is not a, "only observations with Grams are shared"
        assert observe(model, x.clone(), y) is not a, "another probe tensor is another probe"
        b = observe(model, x, y)
        with torch.no_grad():
            next(model.parameters()).add_(0.25)  # an optimizer step: in place, the version counter moves
        c = observe(model, x, y)
        assert c is not b and not np.array_equal(c.logits, b.logits)
        assert observe(model, x, y) is c
    assert local._SHARED is None


def _records(loaded, **kw) -> list[dict]:
    out = []
    for r in checks_all.run_all(loaded, list(checks_all.CHECKS), progress=False,
                                certificate={"failure_probability": 1e-3, "certificate_steps": None}, **kw):
        rec = r.to_json()
        rec.pop("seconds")
        rec["details"].pop("hvp_calibration", None)
        loc = rec["details"].get("local")
        if isinstance(loc, dict):
            loc.pop("seconds", None)
        out.append(rec)
    return out


def test_checks_all_records_are_the_same_with_and_without_the_shared_observation(monkeypatch, tmp_path) -> None:
    """checks.all's T4 and T5 local bounds read one observation; each check reading its own gives the same records."""
    from checks._load import Loaded

    model = _model(["conv:2:3:2", "pool:2", "dense:4"], (1, 9, 9)).float()
    x, y = _probe((1, 9, 9), n=5)
    loaded = Loaded(model.eval(), {"train_config": {"rho": 0.1}}, (x.float(), y), tmp_path, torch.device("cpu"),
                    torch.float32, None, "checkpoint")
    shared = _records(loaded)
    monkeypatch.setattr(checks_all, "sharing_observations", contextlib.nullcontext)
    alone = _records(loaded)
    assert [r["id"] for r in shared] == [r["id"] for r in alone]
    for a, b in zip(shared, alone):
        assert a == b, a["id"]


def test_the_determinism_product_is_lanczos_first_product() -> None:
    """The determinism check multiplies Lanczos' own random unit start: Lanczos reuses that product (one fewer
    Hessian-vector product) and returns what it returns from an operator that computes every product."""
    model = _model(["dense:4", "dense:3"], (5,))
    x, y = _probe((5,))
    checked = linalg.HessianOperator(model, None, x, y, method="double-backward", seed=3)
    plain = linalg.HessianOperator(model, None, x, y, method="double-backward", seed=3, check_deterministic=False)
    a = linalg.lanczos_extremes(checked, seed=3, max_iter=6, tol=1e-12)
    b = linalg.lanczos_extremes(plain, seed=3, max_iter=6, tol=1e-12)
    assert checked.reused_products == 1 and plain.reused_products == 0
    assert a.n_products == b.n_products == 6
    assert (a.lambda_min, a.lambda_max) == (b.lambda_min, b.lambda_max)
    assert a.alphas == b.alphas


def test_calibration_times_both_methods_on_a_slice_and_keeps_no_graph() -> None:
    model = _model(["dense:4", "dense:3"], (5,))
    x, y = _probe((5,), n=linalg.CALIBRATION_SAMPLES + 3)
    op = linalg.HessianOperator(model, None, x, y, method="auto", check_deterministic=False)
    assert set(op.calibration) == {"double-backward", "forward-over-reverse"}
    assert op._graph is None, "the slice's graph is freed; the operator builds its own on its first product"
    v = torch.randn(op.dim, dtype=torch.float64)
    want = linalg.HessianOperator(model, None, x, y, method="forward-over-reverse", check_deterministic=False) @ v
    assert op @ v == pytest.approx(want, rel=1e-10, abs=1e-12)  # the whole probe's Hessian, not the slice's
    assert math.isfinite(min(op.calibration.values()))


@settings(deadline=None, max_examples=60)
@given(reset=st.sampled_from(("zero", "subtract")), per_neuron=st.booleans(), dtype=st.sampled_from(("32", "64")),
       beta=st.floats(0.5, 8.0), spread=st.floats(0.1, 30.0), seed=st.integers(0, 2**31 - 1))
@one_thread
def test_screened_max_of_g_prime_equals_the_float64_pass_on_every_state(reset, per_neuron, dtype, beta, spread,
                                                                        seed) -> None:
    """A4's kappa_emp: the screening pass in the states' dtype keeps every maximiser of the float64 formula."""
    from checks.contraction import max_abs_g_prime
    from theory.scalar import g_derivative

    g = torch.Generator().manual_seed(seed)
    u = torch.randn((3, 6, 2, 5), generator=g, dtype=torch.float64) * spread
    if per_neuron:
        lam = np.random.default_rng(seed).uniform(0.1, 0.95, (2, 5))
        theta = np.random.default_rng(seed + 1).uniform(0.2, 3.0, (2, 5))
    else:
        lam, theta = 0.9, 1.0
    # near-ties: one neuron's states crowd around its largest |g'|, closer than float32 rounding tells apart
    top = np.abs(g_derivative(u.numpy(), 1, lam, theta, beta, reset))[:, :, 0, 0].argmax()
    u[:, :, 0, 0] = u[:, :, 0, 0].flatten()[top] * (1 + torch.linspace(-1e-6, 1e-6, 18, dtype=torch.float64)).view(3, 6)
    u = u.to(getattr(torch, f"float{dtype}"))
    want = float(np.abs(g_derivative(u.double().numpy(), 1, lam, theta, beta, reset)).max())
    assert max_abs_g_prime(u, lam, theta, beta, reset) == want


@pytest.mark.parametrize("seed", range(5))
def test_screened_max_of_g_prime_keeps_a_maximiser_that_float32_ranks_below_others(seed) -> None:
    """States crowding the peak of |g'| (subtract reset: u = theta, where g'' = 0): float32 ranks about a hundred of
    them equal at its maximum, float64 tells them apart; the answer is float64's maximiser among them."""
    from checks.contraction import max_abs_g_prime
    from theory.scalar import g_derivative

    lam, theta, beta = 0.5, 3.0, 4.0
    offsets = torch.from_numpy(np.random.default_rng(seed).uniform(-3e-3, 3e-3, (4, 10, 64)))
    u = (theta + offsets).float()
    want = float(np.abs(g_derivative(u.double().numpy(), 1, lam, theta, beta, "subtract")).max())
    assert max_abs_g_prime(u, lam, theta, beta, "subtract") == want


def _close(a, b, path="") -> list[str]:
    """Where two records differ beyond float64 rounding (relative 1e-9, absolute 1e-10), as paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} entries"]
        return [d for i, (p, q) in enumerate(zip(a, b)) for d in _close(p, q, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-10) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_checks_all_records_are_the_same_with_the_compiled_loops_and_the_torch_ops(tmp_path) -> None:
    """The recurrence's compiled loops (sast.native) and the fast path's torch ops agree to a few ulp: every check's
    record of checks.all (float64, a conv net with pooling) is the same, to float64 rounding."""
    from checks._load import Loaded
    from sast import native

    if not native.available():
        pytest.skip(f"the compiled loops are not available here: {native.status()}")
    model = _model(["conv:2:3:2", "pool:2", "dense:4"], (1, 9, 9))
    x, y = _probe((1, 9, 9), n=5)
    loaded = Loaded(model.eval(), {"train_config": {"rho": 0.1}}, (x, y), tmp_path, torch.device("cpu"),
                    torch.float64, None, "checkpoint")
    with native.setting("require"):
        loops = _records(loaded)
    with native.setting("off"):
        ops = _records(loaded)
    assert [r["id"] for r in loops] == [r["id"] for r in ops]
    assert [r["status"] for r in loops] == [r["status"] for r in ops]
    assert _close(loops, ops) == []
