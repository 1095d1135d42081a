"""The SNN of THEORY.md: exact smooth gradients, hard mode against an independent loop, HFSB."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.func import functional_call, jvp, vmap

from sast.model import SNN, SNNConfig, parse_layers
from sast.neuron import hfsb_spike, lif


def tiny(layers, reset="zero", input_shape=(2, 5, 5), T=3, beta=2.0, seed=0, num_classes=3, neurons="shared"):
    """A float64 model; ``neurons``: lam and theta shared, one per spiking layer, or per neuron."""
    torch.manual_seed(seed)
    lam, theta = 0.8, 0.7
    if neurons != "shared":
        widths = [spec.width for spec in parse_layers(layers, input_shape) if spec.spiking]
        gen = np.random.default_rng(seed)
        if neurons == "layer":
            lam, theta = [float(v) for v in gen.uniform(0.5, 0.95, len(widths))], [float(v) for v in 0.7 * gen.uniform(0.6, 1.4, len(widths))]
        else:
            lam = [[float(v) for v in gen.uniform(0.5, 0.95, n)] for n in widths]
            theta = [[float(v) for v in 0.7 * gen.uniform(0.6, 1.4, n)] for n in widths]
    cfg = SNNConfig(input_shape=input_shape, layers=layers, T=T, lam=lam, theta=theta, beta=beta, reset=reset,
                    num_classes=num_classes)
    return SNN(cfg).double()


ARCHS = [["dense:4"], ["dense:4", "dense:3"], ["conv:2:3"], ["conv:3:3:2", "dense:4"], ["conv:2:3", "pool:2", "dense:3"]]


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("layers", ARCHS)
def test_smooth_gradcheck_inputs_and_params(layers, reset):
    model = tiny(layers, reset)
    x = torch.rand(2, 3, 2, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x), (x,))
    names, params = zip(*model.named_parameters())

    def f(*ps):
        return functional_call(model, dict(zip(names, ps)), (x.detach(),))

    assert torch.autograd.gradcheck(f, tuple(p.detach().clone().requires_grad_() for p in params))


def _ref_conv(a: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Plain loops: a (C, H, W), w (O, C, K, K) -> (O, H', W')."""
    c, h, wd = a.shape
    o, _, k, _ = w.shape
    ap = np.zeros((c, h + 2 * pad, wd + 2 * pad))
    ap[:, pad : pad + h, pad : pad + wd] = a
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((o, ho, wo))
    for oc in range(o):
        for i in range(ho):
            for j in range(wo):
                patch = ap[:, i * stride : i * stride + k, j * stride : j * stride + k]
                out[oc, i, j] = (patch * w[oc]).sum() + b[oc]
    return out


def _reference_hard(model: SNN, x: np.ndarray) -> np.ndarray:
    """An independent per-sample, per-step reference of hard mode."""
    cfg = model.config
    logits = []
    for sample in x:
        states: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        readout_sum = 0.0
        for t in range(cfg.T):
            a = sample[t]
            for spec in model.plan:
                if spec.kind == "pool":
                    k = spec.kernel
                    c, h, w = a.shape
                    a = a[:, : h // k * k, : w // k * k].reshape(c, h // k, k, w // k, k).mean(axis=(2, 4))
                    continue
                if spec.kind == "flatten":
                    a = a.reshape(-1)
                    continue
                layer = model.layers[spec.index]
                wgt = layer.weight.detach().numpy()
                bias = layer.bias.detach().numpy()
                if spec.kind == "dense":
                    cur = wgt @ a.reshape(-1) + bias
                else:
                    cur = _ref_conv(a, wgt, bias, spec.stride, spec.padding)
                u_prev, s_prev = states.get(spec.index, (np.zeros_like(cur), np.zeros_like(cur)))
                lam, theta = (np.asarray(cfg.neuron_values(name)[spec.index], dtype=float).reshape(
                    cur.shape if isinstance(cfg.neuron_values(name)[spec.index], list) else ()) for name in ("lam", "theta"))
                if cfg.reset == "zero":
                    u = lam * u_prev * (1 - s_prev) + cur
                else:
                    u = lam * u_prev - theta * s_prev + cur
                s = (u > theta).astype(float)
                states[spec.index] = (u, s)
                a = s
            readout_sum = readout_sum + model.readout.weight.detach().numpy() @ a.reshape(-1) + \
                model.readout.bias.detach().numpy()
        logits.append(readout_sum / cfg.T)
    return np.stack(logits)


@pytest.mark.parametrize("neurons", ["shared", "layer", "neuron"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("layers", ARCHS)
def test_hard_mode_matches_independent_loop(layers, reset, neurons):
    model = tiny(layers, reset, seed=3, neurons=neurons)
    with torch.no_grad():  # weights with a positive mean, so that every layer fires and resets
        for p in model.parameters():
            p.normal_(0.2, 1.0)
    x = 2 * torch.rand(3, 3, 2, 5, 5, dtype=torch.double)
    got, trace = model(x, mode="hard", return_trace=True)
    fired = [float(tr.s.mean()) for tr in trace]
    assert all(f > 0 for f in fired) and min(fired) < 1, f"the test needs spikes and silences, got {fired}"
    np.testing.assert_allclose(got.detach().numpy(), _reference_hard(model, x.numpy()), rtol=1e-10, atol=1e-12)


def test_hard_spike_is_strict_at_threshold():
    u, s = lif(torch.tensor([[[0.5], [0.25]]], dtype=torch.double), lam=0.5, theta=0.5, beta=1.0, reset="zero",
               mode="hard")
    assert u.flatten().tolist() == [0.5, 0.5]  # u_1 = theta exactly, u_2 = 0.5 * 0.5 + 0.25 = theta
    assert s.flatten().tolist() == [0.0, 0.0]  # strict: u = theta does not fire


def test_hfsb_forward_is_hard_and_backward_is_sigmoid_derivative():
    v = torch.linspace(-3, 3, 13, dtype=torch.double, requires_grad=True)
    s = hfsb_spike(v, 1.7)
    assert torch.equal(s, (v > 0).double())
    (g,) = torch.autograd.grad(s.sum(), v)
    sig = torch.sigmoid(1.7 * v.detach())
    torch.testing.assert_close(g, 1.7 * sig * (1 - sig), rtol=1e-12, atol=0)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_hfsb_model_gradient_equals_straight_through_formula(reset):
    """HFSB's gradient equals that of H(v) + sig(v) - stopgrad(sig(v)), written independently here."""
    model = tiny(["conv:2:3", "dense:4"], reset, seed=5)
    x = torch.rand(2, 3, 2, 5, 5, dtype=torch.double)
    y = torch.tensor([0, 2])
    loss = torch.nn.functional.cross_entropy(model(x, mode="hfsb"), y)
    got = torch.autograd.grad(loss, list(model.parameters()))

    import sast.neuron as neuron

    def straight_through(v, mode, beta):
        sig = torch.sigmoid(beta * v)
        return (v > 0).double() + sig - sig.detach()

    orig = neuron.spike
    neuron.spike = straight_through
    try:
        loss_ref = torch.nn.functional.cross_entropy(model(x, mode="hfsb"), y)
    finally:
        neuron.spike = orig
    assert torch.allclose(loss, loss_ref)
    want = torch.autograd.grad(loss_ref, list(model.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_works_under_functional_call_vmap_and_jvp():
    model = tiny(["conv:2:3", "pool:2", "dense:3"])
    x = torch.rand(4, 3, 2, 5, 5, dtype=torch.double)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    batched = vmap(f, in_dims=(None, 0))(params, x)
    torch.testing.assert_close(batched, model(x))
    tangent = {k: torch.randn_like(v) for k, v in params.items()}
    _, dz = jvp(lambda p: f(p, x[0]), (params,), (tangent,))
    eps = 1e-6
    plus = f({k: v + eps * tangent[k] for k, v in params.items()}, x[0])
    minus = f({k: v - eps * tangent[k] for k, v in params.items()}, x[0])
    torch.testing.assert_close(dz, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_model_keeps_no_state_between_calls():
    model = tiny(["dense:4"])
    x = torch.rand(2, 3, 2, 5, 5, dtype=torch.double)
    first = model(x, mode="hard")
    model(torch.rand_like(x) * 5, mode="smooth")
    assert torch.equal(first, model(x, mode="hard"))


def test_trace_shapes_and_membrane_recurrence():
    model = tiny(["conv:2:3:2", "dense:4"], "subtract")
    x = torch.rand(2, 3, 2, 5, 5, dtype=torch.double)
    logits, trace = model(x, return_trace=True)
    assert logits.shape == (2, 3)
    assert [tuple(t.u.shape) for t in trace] == [(2, 3, 2, 3, 3), (2, 3, 4)]
    cfg = model.config
    u, s = trace[1]
    cur = model.layers[1](trace[0].s.flatten(2))
    torch.testing.assert_close(u[:, 1], cfg.lam * u[:, 0] - cfg.theta * s[:, 0] + cur[:, 1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers=["dense:0"]), "positive"),
        (dict(layers=["dens:4"]), "did you mean 'dense'"),
        (dict(layers=["pool:2"]), "no spiking layer"),
        (dict(layers=["dense:4", "conv:2:3"]), r"needs a \(C, H, W\)"),
        (dict(layers=["conv:2:x"]), "integers"),
        (dict(lam=1.0), "lam"),
        (dict(beta=0.0), "beta"),
        (dict(reset="soft"), "reset"),
        (dict(T=0), "T must"),
        (dict(lam=[0.5, 0.6]), r"lam has 2 entries, expected one per spiking layer \(1\)"),
        (dict(theta=[[1.0, 1.0]]), r"theta\[0\] has 2 values, expected one per neuron of spiking layer 1 \(4\)"),
        (dict(theta=[[1.0, 1.0, -1.0, 1.0]]), r"theta\[0\] must be > 0"),
        (dict(lam=[float("nan")]), r"lam\[0\] must lie in \[0, 1\)"),
    ],
)
def test_config_errors_are_one_line(kwargs, match):
    base = dict(input_shape=(2, 5, 5), layers=["dense:4"], T=3)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match) as e:
        SNNConfig(**base)
    assert "\n" not in str(e.value)


def test_forward_rejects_wrong_shape_and_mode():
    model = tiny(["dense:4"])
    with pytest.raises(ValueError, match="expected frames of shape"):
        model(torch.rand(2, 4, 2, 5, 5, dtype=torch.double))
    with pytest.raises(ValueError, match="unknown mode"):
        model(torch.rand(2, 3, 2, 5, 5, dtype=torch.double), mode="soft")


def test_config_round_trip():
    cfg = SNNConfig(input_shape=(2, 5, 5), layers=["conv:2:3", "dense:4"], T=3, reset="subtract")
    assert SNNConfig.from_dict(cfg.to_dict()) == cfg
    per_neuron = tiny(["conv:2:3", "dense:4"], neurons="neuron").config
    assert SNNConfig.from_dict(json.loads(json.dumps(per_neuron.to_dict()))) == per_neuron


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_per_neuron_values_equal_to_one_number_give_the_same_model(reset):
    x = 2 * torch.rand(2, 3, 2, 5, 5, dtype=torch.double)
    layers = ["conv:2:3:2", "dense:4"]
    shared = tiny(layers, reset, seed=1)
    spread = SNN(SNNConfig(**{**shared.config.to_dict(), "lam": [[0.8] * 18, 0.8], "theta": [0.7, [0.7] * 4]})).double()
    spread.load_state_dict(shared.state_dict())
    for mode in ("smooth", "hard"):
        assert torch.equal(shared(x, mode), spread(x, mode))
    assert spread.config.neuron_pairs() == [[(0.8, 0.7)], [(0.8, 0.7)]]


@pytest.mark.parametrize("neurons", ["layer", "neuron"])
def test_smooth_gradcheck_with_layer_and_neuron_values(neurons):
    model = tiny(["conv:2:3:2", "dense:3"], "subtract", T=2, neurons=neurons)
    x = torch.rand(1, 2, 2, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x, "smooth"), (x,))
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    f = lambda *ps: functional_call(model, dict(zip(names, ps)), (x.detach(),))  # noqa: E731
    assert torch.autograd.gradgradcheck(f, params)


def test_init_scale_multiplies_the_spiking_weights_only():
    cfg = dict(input_shape=(2, 5, 5), layers=["conv:2:3", "dense:4"], T=3)
    torch.manual_seed(7)
    a = SNN(SNNConfig(**cfg))
    torch.manual_seed(7)
    b = SNN(SNNConfig(**cfg, init_scale=3.0))
    for la, lb in zip(a.layers, b.layers):
        torch.testing.assert_close(lb.weight, 3.0 * la.weight)
        torch.testing.assert_close(lb.bias, la.bias)
    torch.testing.assert_close(b.readout.weight, a.readout.weight)
    with pytest.raises(ValueError, match="init_scale"):
        SNNConfig(**cfg, init_scale=0.0)


def test_dataset_defaults_apply_unless_set():
    from sast.train import TrainConfig

    g = TrainConfig.for_data("synth-gesture")
    assert (g.beta, g.batch_size, g.init_scale) == (2.0, 16, 3.0) and g.resolved_layers()[0].startswith("conv")
    assert TrainConfig.for_data("synth-gesture", beta=0.5, batch_size=None).beta == 0.5
    n = TrainConfig.for_data("synth-nmnist")
    assert (n.beta, n.batch_size, n.resolved_layers()) == (TrainConfig.beta, TrainConfig.batch_size, ["dense:256"])
