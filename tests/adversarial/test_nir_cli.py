"""NIR files on the command lines: every bad file or missing setting is one line naming it, exit 2, nothing written.

Each case runs the real command (``_cli_runner``: a process of its own) with ``--model BAD.nir`` and the settings
a NIR file cannot carry, and checks the exit code, that stderr is one line without a traceback naming the file
(and the node or flag), and that no run folder ``BAD.sast`` was left beside it. ``python -m sast.export`` is held
to the same: a bad checkpoint or output path is one line, and a failed write keeps the file that was there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _cli_runner import ENOSPC, fault
from runfolder import EXIT_BAD_INPUT, EXIT_CODES_EPILOG

nir = pytest.importorskip("nir", reason="NIR support is optional: pip install 'sast-toolkit[nir]'")

from sast.interop import to_nir  # noqa: E402
from sast.model import SNN, SNNConfig  # noqa: E402

N_IN, H, C = 6, 5, 3
SETTINGS = ("--dt", "1e-4", "--reset", "zero", "--data", "synth-nmnist", "--no-progress")
COMMANDS = {
    "checks.all": ("checks.all",),
    "sast.evaluate": ("sast.evaluate",),
    "checks.contraction": ("checks.contraction",),
}


def assert_one_line(res, *names) -> str:
    assert res.code == EXIT_BAD_INPUT, f"exit {res.code}\nstdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr and len(res.lines) == 1, res.stderr
    for name in names:
        assert str(name) in res.lines[0], f"{name} not named in: {res.lines[0]}"
    return res.lines[0]


def full(v, n=H):
    return np.full(n, v, dtype=np.float32)


LIF_VALUES = {"tau": 1e-3, "r": 10.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0}  # lambda 0.9 at dt 1e-4


def lif(**over):
    p = {k: full(v) for k, v in LIF_VALUES.items()}
    p.update(over)
    return nir.LIF(**p)


def affine(n_out=H, n_in=N_IN):
    rng = np.random.default_rng(0)
    return nir.Affine(rng.normal(size=(n_out, n_in)).astype(np.float32), np.zeros(n_out, np.float32))


def graph(edges=None, **swap):
    """Input -> fc -> lif -> readout -> output (nodes swapped or dropped by name: None drops one)."""
    nodes = {"input": nir.Input(np.array([N_IN])), "fc": affine(), "lif": lif(), "readout": affine(C, H),
             "output": nir.Output(np.array([C]))}
    nodes.update(swap)
    nodes = {k: v for k, v in nodes.items() if v is not None}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=edges if edges is not None else list(zip(names, names[1:])),
                        type_check=False)


def _nan_weight():
    bad = affine()
    bad.weight[0, 0] = np.nan
    return bad


BAD_GRAPHS = {
    "weight shape": (lambda: graph(fc=affine(H, N_IN + 1)), "node 'fc' (Affine): weight takes 7 inputs"),
    "LIF shape": (lambda: graph(lif=lif(**{k: full(v, H + 2) for k, v in LIF_VALUES.items()})),
                  "node 'lif' (LIF): tau has shape (7,)"),
    "NaN weight": (lambda: graph(fc=_nan_weight()), "node 'fc' (Affine): weight holds non-finite values"),
    "NaN tau": (lambda: graph(lif=lif(tau=full(np.nan))), "node 'lif' (LIF): tau holds non-finite values"),
    "unsupported node": (lambda: graph(lif=nir.Threshold(threshold=full(1))), "node 'lif' (Threshold)"),
    "cycle": (lambda: graph(w=affine(H, H), edges=[("input", "fc"), ("fc", "lif"), ("lif", "w"), ("w", "lif"),
                                                   ("lif", "readout"), ("readout", "output")]), "cycle"),
    "no Input": (lambda: graph(input=None), "exactly one Input and one Output"),
    "no Output": (lambda: graph(output=None), "exactly one Input and one Output"),
}


@pytest.mark.parametrize("case", BAD_GRAPHS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_graph_the_model_cannot_represent_is_one_line_exit_2(cli, tmp_path, case, command):
    make, match = BAD_GRAPHS[case]
    path = tmp_path / "bad.nir"
    nir.write(path, make())
    line = assert_one_line(cli(*COMMANDS[command], "--model", path, *SETTINGS), path, match)
    assert line.startswith(f"error: {path}: ")
    assert not (tmp_path / "bad.sast").exists()


@pytest.fixture
def good_nir(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(SNN(SNNConfig(input_shape=(2, 34, 34), layers=["dense:8"], T=4, num_classes=10))))
    return path


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _unknown_type(path):
    import h5py

    with h5py.File(path, "r+") as f:
        del f["node"]["nodes"]["lif1"]["type"]
        f["node"]["nodes"]["lif1"].create_dataset("type", data="Frobnicator", dtype=h5py.string_dtype())


BAD_FILES = {
    "truncated": (_truncated, "not a readable NIR graph (truncated or corrupt?)"),
    "not HDF5": (lambda p: p.write_text("not a graph\n"), "not an HDF5 file"),
    "empty": (lambda p: p.write_bytes(b""), "not an HDF5 file"),
    "unknown node type": (_unknown_type, "node 'lif1' (Frobnicator): a node type that nir"),
}


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("command", ["checks.all", "sast.evaluate"])
def test_a_damaged_file_is_one_line_exit_2(cli, good_nir, case, command):
    damage, match = BAD_FILES[case]
    damage(good_nir)
    assert_one_line(cli(command, "--model", good_nir, *SETTINGS), good_nir, match)
    assert not good_nir.with_suffix(".sast").exists()


def test_a_missing_nir_file_is_one_line_exit_2(cli, tmp_path):
    path = tmp_path / "nowhere.nir"
    assert_one_line(cli("checks.all", "--model", path, *SETTINGS), path, "no such NIR file")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("drop, flag", [("--dt", "--dt SECONDS"), ("--reset", "--reset zero|subtract")])
def test_a_nir_file_without_dt_or_reset_names_the_flag_and_the_conventions(cli, good_nir, command, drop, flag):
    i = SETTINGS.index(drop)
    args = SETTINGS[:i] + SETTINGS[i + 2:]
    line = assert_one_line(cli(*COMMANDS[command], "--model", good_nir, *args), good_nir, flag)
    assert "snntorch 0.0001" in line and "norse 0.001" in line
    assert not good_nir.with_suffix(".sast").exists()


def test_a_nir_file_without_data_is_one_line_exit_2(cli, good_nir):
    assert_one_line(cli("sast.evaluate", "--model", good_nir, "--dt", "1e-4", "--reset", "zero"), good_nir,
                    "pass --data NAME")


def test_nir_settings_with_a_checkpoint_are_one_line_exit_2(cli, good_ckpt):
    assert_one_line(cli("checks.all", "--model", good_ckpt, "--dt", "1e-4", "--no-progress"), good_ckpt,
                    "--dt apply to a NIR file")


# ----------------------------------------------------------------------------- sast.export


def test_export_writes_a_nir_file_that_reads_back(cli, good_ckpt, tmp_path):
    out = tmp_path / "net.nir"
    res = cli("sast.export", "--model", good_ckpt, "-o", out, "--json", tmp_path / "export.json")
    assert res.code == 0, res.stderr
    g = nir.read(out)
    assert g.metadata["sast"]["decoding"] == "time-mean" and "readout" in g.nodes
    assert not list(tmp_path.glob("*.tmp"))


def test_export_keeps_the_old_file_when_the_write_fails(cli, good_ckpt, tmp_path):
    out = tmp_path / "net.nir"
    out.write_bytes(b"the file that was there")
    res = cli("sast.export", "--model", good_ckpt, "-o", out, fault=fault(ENOSPC, names=("net.nir",)))
    assert_one_line(res, out, "No space left")
    assert out.read_bytes() == b"the file that was there" and not list(tmp_path.glob(".net.nir.*"))


def test_export_of_a_bad_checkpoint_or_to_a_bad_place_is_one_line_exit_2(cli, good_ckpt, tmp_path, blocker):
    assert_one_line(cli("sast.export", "--model", tmp_path / "none.pt", "-o", tmp_path / "a.nir"), "none.pt",
                    "no such checkpoint")
    assert_one_line(cli("sast.export", "--model", good_ckpt, "-o", blocker / "a.nir"), blocker)
    assert_one_line(cli("sast.export", "--model", good_ckpt, "-o", tmp_path / "a.nir", "--dt", "0"), "dt must be")
    assert not (tmp_path / "a.nir").exists()


def test_export_help_ends_with_the_exit_codes(capsys, monkeypatch):
    from sast.export import main

    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert " ".join(EXIT_CODES_EPILOG.split()) in " ".join(capsys.readouterr().out.split())
