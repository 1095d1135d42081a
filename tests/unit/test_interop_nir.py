"""NIR import and export (sast.interop) against each library's own forward pass, in hard-spike mode.

Per step, with x_t the layer's input current W a_t + b and s_t = [u_t > theta] (SpikingJelly: >=):

    toolkit   zero:      u_t = lam u_{t-1} (1 - s_{t-1}) + x_t
    snnTorch  zero:      u_t = beta (1 - s_{t-1}) u_{t-1} + x_t      (reset_delay=True; its importer's
                         reset_delay=False zeroes u right after the spike: the same values)
    toolkit   subtract:  u_t = lam u_{t-1} - theta s_{t-1} + x_t
    snnTorch  subtract:  u_t = beta u_{t-1} + x_t - theta s_{t-1}    (reset_delay=True, its default)
    Norse     LIFBox:    v_t = v' + (dt/tau)(r x_t + v_leak - v'),  v' = (1 - z_{t-1}) v_{t-1}  (r ignored),
                         i.e. (1 - dt/tau) v' + (dt/tau) x_t + (dt/tau) v_leak: the same values, other rounding;
                         it starts at v_0 = v_leak where the toolkit starts at 0
    SpikingJelly LIFNode (hard reset to 0, tau in steps): v_t = v' - v'/tau + x_t (decay_input=False)
                         or v' + (x_t - v')/tau (decay_input=True)

The toolkit's logits are W^o mean_t(s_t) + b^o; a library's are mean_t(W^o s_t + b^o), the time mean of its
readout layer's outputs: equal up to float32 rounding. One spike more or less moves a logit by |W^o_cj| / T,
about 1e-2 here, far above LOGIT_TOL, so logits equal to LOGIT_TOL mean equal spike trains (the wrong-reset
control below shows the comparison does fail when the dynamics differ).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir", reason="NIR support is optional: pip install 'sast-toolkit[nir]'")

from sast.interop import from_nir, to_nir  # noqa: E402
from sast.model import SNN, SNNConfig  # noqa: E402

LOGIT_TOL = 1e-5  # float32 rounding of logits of size ~1, summed in another order (observed <= 5e-7)
B, T, N_IN, H, C = 8, 20, 12, 16, 4


def _snntorch():
    return pytest.importorskip("snntorch", reason="snnTorch is optional here (pip install snntorch)")


def _norse():
    return pytest.importorskip("norse.torch", reason="Norse is optional here (pip install --no-deps norse)")


def _spikingjelly():
    pytest.importorskip("loguru", reason="SpikingJelly imports loguru (pip install loguru)")
    return pytest.importorskip("spikingjelly.activation_based.nir_exchange",
                               reason="SpikingJelly is optional here (pip install --no-deps spikingjelly)")


def _ours(model: SNN, x: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Hard logits and each spiking layer's firing rate (to show the comparison is not between silent nets)."""
    with torch.no_grad():
        z, trace = model(x, mode="hard", return_trace=True)
    return z, [float(layer.s.mean()) for layer in trace]


def _assert_active(rates: list[float]) -> None:
    assert all(0.02 < r < 0.9 for r in rates), f"firing rates {rates}: too silent or saturated to test anything"


def _time_mean(step, x: torch.Tensor) -> torch.Tensor:
    """mean_t step(x_t) over x of shape (B, T, ...): a library's per-step forward, time-mean decoded."""
    with torch.no_grad():
        return torch.stack([step(x[:, t]) for t in range(x.shape[1])], 1).mean(1)


def _stateful(module):
    """A per-step function over a nirtorch module that returns (output, state) and takes the state back."""
    state = {"s": None}

    def step(x_t):
        out, state["s"] = module(x_t, state["s"])
        return out

    return step


def _snntorch_dense(reset: str, last_spiking: bool = False) -> nn.Module:
    snn = _snntorch()
    torch.manual_seed(0)
    leaky = lambda n: snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), init_hidden=True,  # noqa: E731
                                reset_mechanism=reset)  # per-neuron tensors: NIR's type inference needs them
    tail = [nn.Linear(H, C), leaky(C)] if last_spiking else [nn.Linear(H, C)]
    return nn.Sequential(nn.Linear(N_IN, H), leaky(H), *tail)


def _snntorch_export(net: nn.Module, sample: torch.Tensor):
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_to_nir(net, sample, ignore_dims=[0])


def _snntorch_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from snntorch import utils

    utils.reset(net)
    return _time_mean(net, x)


def _dense_input(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(B, T, N_IN) * 1.5


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_snntorch_dense_logits_equal(reset):
    net = _snntorch_dense(reset)  # subtract: snnTorch's default reset_delay=True, the toolkit's subtract reset
    graph = _snntorch_export(net, torch.rand(1, N_IN))
    x = _dense_input()
    z, rates = _ours(from_nir(graph, dt=1e-4, reset=reset, T=T), x)
    _assert_active(rates)
    torch.testing.assert_close(z, _snntorch_forward(net, x), rtol=0, atol=LOGIT_TOL)


def test_snntorch_conv_logits_equal():
    snn = _snntorch()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1),
                        snn.Leaky(beta=torch.full((4, 8, 8), 0.8), threshold=torch.ones(4, 8, 8), init_hidden=True,
                                  reset_mechanism="zero"),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    with torch.no_grad():
        net[0].weight.mul_(3)  # sparse binary frames need stronger weights to spike
    graph = _snntorch_export(net, torch.rand(1, 2, 8, 8))
    x = (torch.rand(B, T, 2, 8, 8) < 0.3).float()
    model = from_nir(graph, dt=1e-4, reset="zero", T=T)
    assert model.config.layers == ["conv:4:3:1", "pool:2", "flatten"]
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _snntorch_forward(net, x), rtol=0, atol=LOGIT_TOL)


def _spread(n, centre: float, width: float, seed: int) -> torch.Tensor:
    """n values in centre +- width/2 (per-neuron leaks or thresholds)."""
    g = torch.Generator().manual_seed(seed)
    return centre + width * (torch.rand(n, generator=g) - 0.5)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("neurons", ["layer", "neuron"])
def test_snntorch_layer_and_neuron_values_logits_equal(reset, neurons):
    """Two hidden layers with their own beta and threshold (per layer, or per neuron): each layer keeps its own."""
    snn = _snntorch()
    torch.manual_seed(0)

    def leaky(beta: float, threshold: float, seed: int):
        if neurons == "neuron":
            b, th = _spread(H, beta, 0.1, seed), _spread(H, threshold, 0.4, seed + 1)
        else:
            b, th = torch.full((H,), beta), torch.full((H,), threshold)
        return snn.Leaky(beta=b, threshold=th, init_hidden=True, reset_mechanism=reset)

    net = nn.Sequential(nn.Linear(N_IN, H), leaky(0.9, 1.0, 1), nn.Linear(H, H), leaky(0.7, 0.5, 3), nn.Linear(H, C))
    with torch.no_grad():
        net[2].weight.mul_(2)
    graph = _snntorch_export(net, torch.rand(1, N_IN))
    x = _dense_input()
    model = from_nir(graph, dt=1e-4, reset=reset, T=T)
    cfg = model.config
    if neurons == "layer":
        assert cfg.lam == pytest.approx([0.9, 0.7], rel=1e-6) and cfg.theta == pytest.approx([1.0, 0.5], rel=1e-6)
    else:
        assert [len(v) for v in cfg.lam] == [H, H] and [len(v) for v in cfg.theta] == [H, H]
        np.testing.assert_allclose(cfg.lam[1], net[3].beta.numpy(), rtol=1e-6)
        np.testing.assert_allclose(cfg.theta[0], net[1].threshold.numpy(), rtol=1e-6)
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _snntorch_forward(net, x), rtol=0, atol=LOGIT_TOL)
    # the negative control: one layer's values for both layers changes the logits
    uniform = SNN(SNNConfig(**{**cfg.to_dict(), "lam": 0.9, "theta": 1.0}))
    uniform.load_state_dict(model.state_dict())
    assert (_ours(uniform, x)[0] - z).abs().max() > 100 * LOGIT_TOL


def test_snntorch_conv_per_neuron_values_logits_equal():
    snn = _snntorch()
    torch.manual_seed(0)
    shape = (4, 8, 8)
    g = torch.Generator().manual_seed(2)
    beta, threshold = 0.75 + 0.2 * torch.rand(shape, generator=g), 0.7 + 0.6 * torch.rand(shape, generator=g)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1),
                        snn.Leaky(beta=beta, threshold=threshold, init_hidden=True, reset_mechanism="zero"),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    with torch.no_grad():
        net[0].weight.mul_(3)
    graph = _snntorch_export(net, torch.rand(1, 2, 8, 8))
    x = (torch.rand(B, T, 2, 8, 8) < 0.3).float()
    model = from_nir(graph, dt=1e-4, reset="zero", T=T)
    np.testing.assert_allclose(np.reshape(model.config.lam[0], shape), beta.numpy(), rtol=1e-6)
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _snntorch_forward(net, x), rtol=0, atol=LOGIT_TOL)


def test_wrong_reset_flag_gives_mismatches():
    """The negative control: the file cannot say its reset, and the wrong guess changes the spikes."""
    x = _dense_input()
    for reset, wrong in (("zero", "subtract"), ("subtract", "zero")):
        net = _snntorch_dense(reset)
        graph = _snntorch_export(net, torch.rand(1, N_IN))
        right, wrong_model = (from_nir(graph, dt=1e-4, reset=r, T=T) for r in (reset, wrong))
        with torch.no_grad():
            s_right = right(x, mode="hard", return_trace=True)[1][0].s
            s_wrong = wrong_model(x, mode="hard", return_trace=True)[1][0].s
        assert int((s_right != s_wrong).sum()) > 10  # dozens of the 2560 spike slots of layer 1 flip
        z_wrong, _ = _ours(wrong_model, x)
        assert (z_wrong - _snntorch_forward(net, x)).abs().max() > 100 * LOGIT_TOL


def test_graph_ending_in_a_lif_gets_rate_decoding():
    net = _snntorch_dense("zero", last_spiking=True)
    with torch.no_grad():
        net[2].weight.mul_(4)  # so that the output layer spikes often enough to decode
    graph = _snntorch_export(net, torch.rand(1, N_IN))
    model = from_nir(graph, dt=1e-4, reset="zero", T=T)
    assert model.config.num_classes == C and torch.equal(model.readout.weight, torch.eye(C))
    x = _dense_input()
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _snntorch_forward(net, x), rtol=0, atol=LOGIT_TOL)  # spike rates, exactly


def _norse_graph(v_leak: float, rng_seed: int = 1):
    """A dense graph in Norse's conventions (r = 1: the input gain is dt/tau), written by hand."""
    rng = np.random.default_rng(rng_seed)
    full = lambda v: np.full(H, v, np.float32)  # noqa: E731
    nodes = {"input": nir.Input(np.array([N_IN])),
             "fc": nir.Affine((rng.normal(size=(H, N_IN)) * 4).astype(np.float32),
                              (rng.normal(size=H) * 0.5).astype(np.float32)),
             "lif": nir.LIF(tau=full(5e-3), r=full(1.0), v_leak=full(v_leak), v_threshold=full(0.5), v_reset=full(0)),
             "readout": nir.Affine(rng.normal(size=(C, H)).astype(np.float32), rng.normal(size=C).astype(np.float32)),
             "output": nir.Output(np.array([C]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "readout"), ("readout", "output")])


def _norse_forward(graph, x: torch.Tensor, dt: float, zero_start: bool = False) -> torch.Tensor:
    norse = _norse()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch.load is deprecated; Norse warns that it ignores r
        module = norse.from_nir(copy.deepcopy(graph), dt=dt)
    step = _stateful(module)
    if zero_start:  # Norse starts LIFBox at v = v_leak; the toolkit (like snnTorch, SpikingJelly) at 0
        from nirtorch.graph_executor import GraphExecutorState
        from norse.torch.functional.lif_box import LIFBoxFeedForwardState

        lifs = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)]
        start = GraphExecutorState(state={n: (LIFBoxFeedForwardState(v=torch.zeros(x.shape[0], H)),) for n in lifs})
        out = []
        with torch.no_grad():
            for t in range(x.shape[1]):
                o, start = module(x[:, t], start)
                out.append(o)
        return torch.stack(out, 1).mean(1)
    return _time_mean(step, x)


def test_norse_lifbox_at_its_dt():
    graph = _norse_graph(v_leak=0.0)
    x = _dense_input()
    model = from_nir(graph, dt=1e-3, reset="zero", T=T)
    assert model.config.lam == pytest.approx(0.8, rel=1e-6)  # 1 - dt/tau = 1 - 1e-3/5e-3
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _norse_forward(graph, x, dt=1e-3), rtol=0, atol=LOGIT_TOL)


def test_norse_v_leak_is_folded_into_the_bias():
    graph = _norse_graph(v_leak=0.3)
    x = _dense_input()
    z, rates = _ours(from_nir(graph, dt=1e-3, reset="zero", T=T), x)
    _assert_active(rates)
    torch.testing.assert_close(z, _norse_forward(graph, x, dt=1e-3, zero_start=True), rtol=0, atol=LOGIT_TOL)
    # From Norse's own start at v_leak the first steps differ: documented in from_nir, not hidden.
    assert (z - _norse_forward(graph, x, dt=1e-3)).abs().max() > 100 * LOGIT_TOL


def test_norse_sum_pool_and_conv():
    """SumPool2d (Norse: LPPool2d of norm 1) folds its K^2 into the next layer; Norse's Flatten is patched."""
    _norse()
    rng = np.random.default_rng(2)
    full = lambda v, s: np.full(s, v, np.float32)  # noqa: E731
    shape = (3, 6, 6)
    nodes = {"input": nir.Input(np.array([2, 6, 6])),
             "conv": nir.Conv2d(input_shape=(6, 6), weight=(rng.normal(size=(3, 2, 3, 3)) * 6).astype(np.float32),
                                stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3, np.float32)),
             "lif": nir.LIF(tau=full(4e-3, shape), r=full(1, shape), v_leak=full(0, shape),
                            v_threshold=full(1, shape), v_reset=full(0, shape)),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type=np.array([3, 3, 3]), start_dim=0, end_dim=-1),
             "readout": nir.Affine(rng.normal(size=(C, 27)).astype(np.float32), np.zeros(C, np.float32)),
             "output": nir.Output(np.array([C]))}
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])), type_check=False)
    x = (torch.rand(B, T, 2, 6, 6) < 0.4).float()
    model = from_nir(graph, dt=1e-3, reset="zero", T=T)
    assert model.config.layers == ["conv:3:3:1", "pool:2", "flatten"]
    z, rates = _ours(model, x)
    _assert_active(rates)
    norse_graph = copy.deepcopy(graph)
    norse_graph.nodes["flat"].start_dim = 1  # Norse's importer flattens the batch dimension too (NIR.md)
    import norse.torch as nt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = nt.from_nir(norse_graph, dt=1e-3)
    torch.testing.assert_close(z, _time_mean(_stateful(module), x), rtol=0, atol=LOGIT_TOL)


@pytest.mark.parametrize("decay_input", [False, True])
def test_spikingjelly_lif_export(decay_input):
    sj = _spikingjelly()
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(N_IN, H),
                        neuron.LIFNode(tau=2.0, decay_input=decay_input, v_reset=0.0, v_threshold=1.0),
                        layer.Linear(H, C))
    if decay_input:  # the input gain 1/tau = 0.5 is folded into the weights
        with torch.no_grad():
            net[0].weight.mul_(2)
    graph = sj.export_to_nir(net, torch.rand(1, N_IN), dt=1e-4)
    x = _dense_input()
    model = from_nir(graph, dt=1e-4, reset="zero", T=T)
    assert model.config.lam == pytest.approx(0.5)
    z, rates = _ours(model, x)
    _assert_active(rates)
    functional.reset_net(net)
    theirs = _time_mean(net, x)
    torch.testing.assert_close(z, theirs, rtol=0, atol=LOGIT_TOL)
    # the negative controls: the wrong reset, or the wrong dt, gives other logits
    for wrong in (from_nir(graph, dt=1e-4, reset="subtract", T=T), from_nir(graph, dt=0.5e-4, reset="zero", T=T)):
        assert (_ours(wrong, x)[0] - theirs).abs().max() > 100 * LOGIT_TOL


def test_norse_wrong_reset_or_dt_gives_mismatches():
    """Norse's negative controls: its LIFBox resets to 0, and its time constants are meant for dt = 1e-3."""
    graph = _norse_graph(v_leak=0.0)
    x = _dense_input()
    theirs = _norse_forward(graph, x, dt=1e-3)
    for dt, reset in ((1e-3, "subtract"), (1e-4, "zero")):
        z, rates = _ours(from_nir(graph, dt=dt, reset=reset, T=T), x)
        _assert_active(rates)
        assert (z - theirs).abs().max() > 100 * LOGIT_TOL, (dt, reset)


def _conv_model(reset: str = "zero", seed: int = 0) -> SNN:
    torch.manual_seed(seed)
    cfg = SNNConfig(input_shape=(2, 8, 8), layers=["conv:4:3", "pool:2", "dense:10"], T=T, reset=reset,
                    num_classes=5, init_scale=3.0)  # scale 3: strong enough to spike on sparse frames
    return SNN(cfg).eval()


def _frames(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.rand(B, T, 2, 8, 8) < 0.3).float()


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_from_nir_of_to_nir_is_the_model(tmp_path, reset):
    model = _conv_model(reset)
    path = tmp_path / "model.nir"
    nir.write(path, to_nir(model))
    back = from_nir(path, dt=1e-4, reset=reset, T=T)
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert back.config.lam == pytest.approx(model.config.lam, rel=1e-12)
    assert back.config.theta == model.config.theta
    x = _frames()
    z, rates = _ours(model, x)
    _assert_active(rates)
    assert torch.equal(_ours(back, x)[0], z)


def test_to_nir_records_the_readout_and_reset(tmp_path):
    model = _conv_model("subtract")
    path = tmp_path / "model.nir"
    nir.write(path, to_nir(model, dt=1e-3))
    graph = nir.read(path)  # with NIR's own type inference: the graph is well-typed
    meta = graph.metadata["sast"]
    assert meta["decoding"] == "time-mean" and meta["readout_node"] == "readout"
    assert meta["reset"] == "subtract" and int(meta["T"]) == T and float(meta["dt"]) == 1e-3
    lif = graph.nodes["lif1"]
    assert lif.tau.shape == (4, 8, 8)  # per-neuron arrays, never scalars
    np.testing.assert_allclose(lif.tau, 1e-3 / (1 - model.config.lam), rtol=1e-12)
    np.testing.assert_allclose(lif.r * 1e-3 / lif.tau, 1.0, rtol=1e-12)
    assert not lif.v_reset.any() and not lif.v_leak.any()


def _through_snntorch(reset: str, model: SNN | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Our logits and snnTorch's, for a conv model (``_conv_model(reset)`` unless given) exported with to_nir and
    read back by import_from_nir."""
    _snntorch()
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    model = _conv_model(reset) if model is None else model
    graph = to_nir(model)
    for node in graph.nodes.values():
        if isinstance(node, nir.Flatten):
            node.start_dim += 1  # snnTorch's importer flattens the batch dimension too (NIR.md)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = import_from_nir(graph)
    utils.reset(net)
    x = _frames()
    z, rates = _ours(model, x)
    _assert_active(rates)
    return z, _time_mean(_stateful(net), x)


def _per_neuron_model(reset: str = "zero", theta_per_neuron: bool = True) -> SNN:
    """_conv_model with per-neuron lam (and theta) in the conv layer and its own in the dense layer."""
    base = _conv_model(reset)
    rng = np.random.default_rng(4)
    lam = [float(v) for v in rng.uniform(0.7, 0.95, 256)]
    theta = [float(v) for v in rng.uniform(0.6, 1.4, 256)] if theta_per_neuron else 1.2
    cfg = SNNConfig(**{**base.config.to_dict(), "lam": [lam, 0.6], "theta": [theta, 0.8]})
    model = SNN(cfg).eval()
    model.load_state_dict(base.state_dict())
    return model


def test_per_neuron_model_round_trips_through_to_nir_and_snntorch(tmp_path):
    model = _per_neuron_model()
    path = tmp_path / "model.nir"
    nir.write(path, to_nir(model))
    back = from_nir(path, dt=1e-4, reset="zero", T=T)
    np.testing.assert_allclose(back.config.lam[0], model.config.lam[0], rtol=1e-12)
    assert back.config.lam[1] == pytest.approx(0.6, rel=1e-12) and back.config.theta == model.config.theta
    x = _frames()
    z, rates = _ours(model, x)
    _assert_active(rates)
    assert torch.equal(_ours(back, x)[0], z)
    # snnTorch's importer takes per-neuron tau but refuses per-neuron v_threshold ("v_threshold must be same
    # for all neurons"): a model with one threshold per layer
    z, theirs = _through_snntorch("zero", _per_neuron_model(theta_per_neuron=False))
    torch.testing.assert_close(z, theirs, rtol=0, atol=LOGIT_TOL)


def test_round_trip_through_snntorch_import():
    z, theirs = _through_snntorch("zero")
    torch.testing.assert_close(z, theirs, rtol=0, atol=LOGIT_TOL)


def test_snntorch_import_of_a_subtract_model_differs():
    """The caveat to_nir records in the metadata: NIR's LIF resets to 0, so a reader that ignores it runs 'zero'."""
    z, theirs = _through_snntorch("subtract")
    assert (z - theirs).abs().max() > 100 * LOGIT_TOL


def test_from_nir_refuses_a_reset_that_contradicts_the_metadata():
    from sast.interop import NIRImportError

    graph = to_nir(_conv_model("subtract"))
    with pytest.raises(NIRImportError, match="metadata says it was written with reset 'subtract'"):
        from_nir(graph, dt=1e-4, reset="zero", T=T)


def test_a_batch_dimension_in_the_input_node_is_dropped_when_asked():
    net = _snntorch_dense("zero")
    graph = _snntorch_export(net, torch.rand(1, N_IN))
    graph.nodes["input"] = nir.Input(np.array([1, N_IN]))  # as an exporter that keeps the batch writes it
    from sast.interop import NIRImportError

    with pytest.raises(NIRImportError, match=rf"pass input_shape=\({N_IN},\)"):
        from_nir(graph, dt=1e-4, reset="zero", T=T)
    x = _dense_input()
    z, _ = _ours(from_nir(graph, dt=1e-4, reset="zero", T=T, input_shape=(N_IN,)), x)
    torch.testing.assert_close(z, _snntorch_forward(net, x), rtol=0, atol=LOGIT_TOL)


def test_a_float64_model_exports_its_own_dtype():
    model = _conv_model().double()
    graph = to_nir(model)
    assert graph.nodes["conv1"].weight.dtype == np.float64
    np.testing.assert_array_equal(graph.nodes["readout"].weight, model.readout.weight.detach().numpy())


def test_round_trip_through_norse_import():
    torch.manual_seed(3)
    model = SNN(SNNConfig(input_shape=(N_IN,), layers=["dense:16", "dense:8"], T=T, num_classes=C,
                          init_scale=3.0)).eval()
    graph = to_nir(model, dt=1e-3)
    for name, node in graph.nodes.items():  # Norse ignores r (NIR.md): give its Affines the gain r dt/tau = 1
        successor = next((b for a, b in graph.edges if a == name), None)
        if isinstance(node, nir.Affine) and isinstance(graph.nodes[successor], nir.LIF):
            r = graph.nodes[successor].r.reshape(-1, 1)
            node.weight, node.bias = (node.weight * r).astype(np.float32), (node.bias * r[:, 0]).astype(np.float32)
    x = _dense_input()
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _norse_forward(graph, x, dt=1e-3), rtol=0, atol=LOGIT_TOL)


def test_round_trip_through_spikingjelly_import():
    sj = _spikingjelly()
    from spikingjelly.activation_based import functional

    model = _conv_model("zero")
    net = sj.import_from_nir(to_nir(model), dt=1e-4)
    functional.reset_net(net)
    x = _frames()
    z, rates = _ours(model, x)
    _assert_active(rates)
    torch.testing.assert_close(z, _time_mean(_stateful(net), x), rtol=0, atol=LOGIT_TOL)


def test_from_nir_leaves_the_callers_random_stream_alone():
    graph = to_nir(_conv_model())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    from_nir(graph, dt=1e-4, reset="zero", T=T)
    assert torch.equal(torch.rand(3), expected)
