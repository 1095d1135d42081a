"""NIR graphs and files that the toolkit's SNN cannot represent exactly: each refused with one NIRImportError line.

The line names the node (by its name in the graph) or, for a damaged source, the file; nothing is approximated.
"""

from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir", reason="NIR support is optional: pip install 'sast-toolkit[nir]'")

from sast.interop import NIRImportError, from_nir, to_nir  # noqa: E402
from sast.model import SNN, SNNConfig  # noqa: E402

N_IN, H, C = 6, 5, 3
DT = 1e-4


def full(v, n=H):
    return np.full(n, v, dtype=np.float32)


def lif(**over):
    p = dict(tau=full(DT / (1 - 0.9)), r=full(1 / (1 - 0.9)), v_leak=full(0), v_threshold=full(1), v_reset=full(0))
    p.update(over)
    return nir.LIF(**p)


def affine(n_out=H, n_in=N_IN, scale=1.0):
    rng = np.random.default_rng(0)
    return nir.Affine((rng.normal(size=(n_out, n_in)) * scale).astype(np.float32), np.zeros(n_out, np.float32))


def chain(*pairs, edges=None):
    """A graph of named nodes, linked in order unless ``edges`` is given; NIR's type checks off (we test ours)."""
    nodes = dict(pairs)
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=edges if edges is not None else list(zip(names, names[1:])),
                        type_check=False)


def good(**swap):
    """Input -> fc -> lif -> readout -> output, with any node swapped by name."""
    nodes = {"input": nir.Input(np.array([N_IN])), "fc": affine(), "lif": lif(), "readout": affine(C, H),
             "output": nir.Output(np.array([C]))}
    nodes.update(swap)
    return chain(*nodes.items())


def refused(source, match: str, **kw) -> str:
    """from_nir's error for ``source``: a NIRImportError of one line that contains ``match``."""
    kw = {"dt": DT, "reset": "zero", "T": 4, **kw}
    with pytest.raises(NIRImportError) as info:
        from_nir(source, **kw)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert match in msg, msg
    return msg


def test_the_good_graph_imports():
    model = from_nir(good(), dt=DT, reset="zero", T=4)
    assert model.config.layers == [f"dense:{H}"] and model.config.lam == pytest.approx(0.9, rel=1e-6)


def test_cubalif_with_a_synaptic_time_constant():
    cuba = nir.CubaLIF(tau_syn=full(5e-4), tau_mem=full(1e-3), r=full(10), v_leak=full(0), v_threshold=full(1),
                       v_reset=full(0), w_in=full(5))
    msg = refused(good(lif=cuba), "'lif' (CubaLIF)")
    assert "synaptic" in msg


def test_recurrent_edges():
    g = good()
    g.nodes["w_rec"] = affine(H, H)
    g.edges += [("lif", "w_rec"), ("w_rec", "lif")]
    assert "feed-forward" in refused(g, "cycle")


def test_self_loop():
    g = good()
    g.edges.append(("lif", "lif"))
    refused(g, "node 'lif' (LIF): recurrent edge onto itself")


def test_recurrent_subgraph():
    sub = chain(("i", nir.Input(np.array([H]))), ("l", lif()), ("o", nir.Output(np.array([H]))))
    refused(good(lif=sub), "'lif' (NIRGraph)")


def test_delay():
    refused(good(lif=nir.Delay(delay=full(2e-4))), "'lif' (Delay)")


def test_non_zero_v_reset():
    refused(good(lif=lif(v_reset=full(-0.5))), "'lif' (LIF): v_reset = -0.5")


def test_if_violates_a1():
    msg = refused(good(lif=nir.IF(r=full(1), v_threshold=full(1), v_reset=full(0))), "'lif' (IF)")
    assert "A1" in msg


def test_unknown_node():
    refused(good(lif=nir.Threshold(threshold=full(1))), "'lif' (Threshold)")


def test_no_input_node():
    g = good()
    del g.nodes["input"]
    g.edges = [e for e in g.edges if e[0] != "input"]
    refused(g, "exactly one Input and one Output")


def test_no_output_node():
    g = good()
    del g.nodes["output"]
    g.edges = [e for e in g.edges if e[1] != "output"]
    refused(g, "exactly one Input and one Output")


def test_branching_graph():
    g = good()
    g.nodes["fc2"] = affine()
    g.edges.append(("input", "fc2"))
    refused(g, "node 'input' (Input): has 2 successors")


def test_weight_shape_does_not_fit():
    refused(good(fc=affine(H, N_IN + 1)), f"'fc' (Affine): weight takes {N_IN + 1} inputs")


def test_lif_shape_does_not_fit():
    n = H + 2
    wide = lif(tau=full(1e-3, n), r=full(1, n), v_leak=full(0, n), v_threshold=full(1, n), v_reset=full(0, n))
    refused(good(lif=wide), f"'lif' (LIF): tau has shape ({n},), but the layer before it has ({H},) neurons")


def test_nan_weight():
    bad = affine()
    bad.weight[0, 0] = np.nan
    refused(good(fc=bad), "'fc' (Affine): weight holds non-finite values")


def test_infinite_tau():
    refused(good(lif=lif(tau=full(np.inf))), "'lif' (LIF): tau holds non-finite values")


def test_lambda_outside_a1_in_one_neuron_names_it():
    tau = full(1e-3)
    tau[2] = 5e-5  # dt/tau = 2: lambda = -1
    refused(good(lif=lif(tau=tau)), "'lif' (LIF): lambda = 1 - dt/tau = -1 (tau = 5e-05, dt = 0.0001) in neuron 2")


def test_theta_at_or_below_zero_in_one_neuron():
    th = full(1.0)
    th[0] = 0.0
    refused(good(lif=lif(v_threshold=th)), "'lif' (LIF): v_threshold = 0; theta must be > 0")


def test_values_that_differ_across_neurons_and_layers_are_kept():
    """Not refused: each layer keeps its own lambda and theta, per neuron where its neurons differ."""
    tau = full(1e-3)
    tau[2] = 2e-3
    g = chain(("input", nir.Input(np.array([N_IN]))), ("fc1", affine()), ("lif1", lif(tau=tau)),
              ("fc2", affine(H, H)), ("lif2", lif(v_threshold=full(2.0))), ("readout", affine(C, H)),
              ("output", nir.Output(np.array([C]))))
    cfg = from_nir(g, dt=DT, reset="zero", T=4).config
    assert cfg.lam[0] == pytest.approx([0.9, 0.9, 0.95, 0.9, 0.9]) and cfg.lam[1] == pytest.approx(0.9)
    assert cfg.theta == pytest.approx([1.0, 2.0])


def test_dt_too_large_for_tau():
    refused(good(), "outside [0, 1) (assumption A1)", dt=1.0)


def test_lif_without_a_weight_layer():
    g = chain(("input", nir.Input(np.array([H]))), ("lif", lif()), ("readout", affine(C, H)),
              ("output", nir.Output(np.array([C]))))
    refused(g, "'lif' (LIF): no Affine")


def test_two_weight_layers_in_a_row():
    g = chain(("input", nir.Input(np.array([N_IN]))), ("fc1", affine()), ("fc2", affine(H, H)), ("lif", lif()),
              ("readout", affine(C, H)), ("output", nir.Output(np.array([C]))))
    refused(g, "'fc2' (Affine): follows 'fc1' without a LIF")


def test_conv_padding_other_than_the_models():
    w = np.ones((2, 1, 3, 3), np.float32)
    conv = nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(2))
    g = chain(("input", nir.Input(np.array([1, 4, 4]))), ("conv", conv), ("lif", lif()), ("out", nir.Output([8])))
    refused(g, "'conv' (Conv2d): padding (0, 0) is not the toolkit's padding (K - 1) // 2 = 1")


def test_pool_with_overlapping_windows():
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    g = chain(("input", nir.Input(np.array([1, 4, 4]))), ("pool", pool), ("flat", nir.Flatten(None, 0, -1)),
              ("fc", affine(H, 9)), ("lif", lif()), ("output", nir.Output(np.array([H]))))
    refused(g, "'pool' (AvgPool2d)")


def test_single_output():
    refused(good(readout=affine(1, H), output=nir.Output(np.array([1]))), "needs >= 2 classes")


def test_no_input_shape_anywhere():
    refused(good(input=nir.Input(np.array([]))), "'input' (Input): no input shape")


def test_input_shape_argument_contradicts_the_graph():
    refused(good(), "differs from input_shape=(7,)", input_shape=(7,))


def test_bad_reset_flag():
    refused(good(), "reset must be one of zero, subtract", reset="soft")


def test_bad_dt():
    refused(good(), "dt must be a finite number > 0", dt=0.0)


def test_not_a_graph():
    refused(12, "source must be a path")


@pytest.fixture
def good_file(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(SNN(SNNConfig(input_shape=(N_IN,), layers=["dense:8"], T=4, num_classes=C))))
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.nir"
    refused(path, f"{path}: no such NIR file")


def test_folder(tmp_path):
    refused(tmp_path, f"{tmp_path}: is a folder")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.nir"
    path.write_text("not a graph\n")
    refused(path, f"{path}: not an HDF5 file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nir"
    path.write_bytes(b"")
    refused(path, f"{path}: not an HDF5 file")


def test_truncated_file(good_file):
    data = good_file.read_bytes()
    good_file.write_bytes(data[: len(data) // 2])
    refused(good_file, f"{good_file}: not a readable NIR graph (truncated or corrupt?)")


def test_a_file_refusal_names_the_file_and_the_node(good_file, tmp_path):
    g = nir.read(good_file)
    g.nodes["lif1"].v_reset = np.full_like(g.nodes["lif1"].v_reset, 0.25)
    path = tmp_path / "reset.nir"
    nir.write(path, g)
    refused(path, f"{path}: node 'lif1' (LIF): v_reset = 0.25")


def test_a_file_with_a_node_type_nir_does_not_know(good_file):
    import h5py

    with h5py.File(good_file, "r+") as f:
        del f["node"]["nodes"]["lif1"]["type"]
        f["node"]["nodes"]["lif1"].create_dataset("type", data="Frobnicator", dtype=h5py.string_dtype())
    refused(good_file, f"{good_file}: node 'lif1' (Frobnicator): a node type that nir")
