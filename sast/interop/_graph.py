"""Reading a NIR source (a file or a ``nir.NIRGraph``) and ordering its nodes into the chain an SNN is.

The toolkit's SNN is a feed-forward chain (DESIGN.md: stateless; dense, conv, pool, flatten, a readout), so a
graph is accepted here only when its nodes form one path from its single Input node to its single Output node.
Edges may be listed in any order (NIR does not order them): the path is found by a topological sort, which also
finds recurrent edges (cycles) and names a node on them.
"""

from __future__ import annotations

import graphlib
from pathlib import Path
from typing import Any

from sast.interop._common import NIRImportError, one_line, require_nir

SUPPORTED = ("Input", "Affine", "Linear", "Conv2d", "LIF", "AvgPool2d", "SumPool2d", "Flatten", "Output")

_WHY_NOT = {
    "IF": "integrate-and-fire has no leak (lambda = 1), which assumption A1 (0 <= lambda < 1) excludes",
    "CubaLIF": ("a current-based LIF carries a synaptic current with its own time constant tau_syn across steps; "
                "the toolkit's LIF has no synaptic state"),
    "CubaLI": "a current-based leaky integrator has no spikes and a synaptic state; the toolkit has neither",
    "LI": "a leaky integrator (non-spiking, with leak) is not the toolkit's readout, a time mean of a linear map",
    "I": "an integrator (non-spiking, no leak) is not the toolkit's readout, a time mean of a linear map",
    "Delay": "a delay keeps past inputs as state; the toolkit's layers see only the current step",
    "NIRGraph": "a nested subgraph (how snnTorch writes a recurrent layer); the toolkit's SNN has no recurrence",
    "Threshold": "a bare threshold without membrane dynamics has no counterpart in the toolkit's SNN",
    "Scale": "an elementwise scale between layers has no counterpart in the toolkit's SNN",
    "Conv1d": "the toolkit's convolutions are 2-d",
}

HDF5_HINT = "a NIR file is HDF5, written by nir.write"


def load(source: Any) -> tuple[Any, str]:
    """``(graph, where)``: the graph of ``source`` and the prefix that error messages start with.

    ``where`` is ``"PATH: "`` when the source is a path, so every refusal names the file, else ``""``.
    A file is read with ``nir.read(path, type_check=False)``: NIR's own type inference fails on graphs with
    scalar neuron parameters (NIR.md), and the importer checks every shape itself as it walks the chain.
    """
    nir = require_nir()
    import h5py  # nir's own requirement, there whenever nir is

    if isinstance(source, nir.NIRGraph):
        return source, ""
    if not isinstance(source, (str, Path)):
        raise NIRImportError(f"source must be a path to a .nir file or a nir.NIRGraph, got {type(source).__name__}")
    path = Path(source)
    where = f"{path}: "
    if path.is_dir():
        raise NIRImportError(f"{where}is a folder, not a NIR file")
    if not path.is_file():
        raise NIRImportError(f"{where}no such NIR file")
    if not h5py.is_hdf5(path):
        raise NIRImportError(f"{where}not an HDF5 file ({HDF5_HINT}); empty, truncated, or another format?")
    try:
        graph = nir.read(path, type_check=False)
    except Exception as e:  # h5py and nir raise OSError, KeyError, AssertionError, ValueError... on a damaged file
        unknown = _unknown_node_type(path, nir)
        if unknown is not None:
            raise NIRImportError(f"{where}node {unknown[0]!r} ({unknown[1]}): a node type that nir "
                                 f"{getattr(nir, '__version__', '?')} does not know; supported: "
                                 f"{', '.join(SUPPORTED)}") from None
        raise NIRImportError(f"{where}not a readable NIR graph (truncated or corrupt?): "
                             f"{type(e).__name__}: {one_line(e)}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRImportError(f"{where}holds a single {type(graph).__name__} node, not a NIR graph")
    return graph, where


def _unknown_node_type(path: Path, nir: Any) -> tuple[str, str] | None:
    """The first top-level node of the file whose type nir does not know, as (name, type); None if none or unreadable.

    nir.read fails on such a node with a bare AssertionError; this names it instead.
    """
    import h5py

    known = set(nir.ir.__all__)
    try:
        with h5py.File(path, "r") as f:
            for name, group in f["node"]["nodes"].items():
                kind = group["type"][()]
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                if kind not in known:
                    return name, kind
    except Exception:  # a damaged file: the caller reports nir's own error
        return None
    return None


def node_label(name: str, node: Any) -> str:
    """How messages name a node: ``node 'lif1' (LIF)``."""
    return f"node {name!r} ({type(node).__name__})"


def chain(graph: Any, where: str = "") -> list[tuple[str, Any]]:
    """The nodes of ``graph`` as ``(name, node)`` in order from Input to Output; NIRImportError otherwise."""
    nodes: dict[str, Any] = dict(graph.nodes)
    edges = [(str(a), str(b)) for a, b in graph.edges]
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind not in SUPPORTED:
            why = _WHY_NOT.get(kind, f"unsupported node type; supported: {', '.join(SUPPORTED)}")
            raise NIRImportError(f"{where}{node_label(name, node)}: {why}")
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NIRImportError(f"{where}edge ({a!r}, {b!r}) names a node {end!r} that the graph does not have")
    inputs = [n for n, node in nodes.items() if type(node).__name__ == "Input"]
    outputs = [n for n, node in nodes.items() if type(node).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"{where}the graph needs exactly one Input and one Output node, "
                             f"found {len(inputs)} Input {inputs} and {len(outputs)} Output {outputs}")
    predecessors: dict[str, set[str]] = {n: set() for n in nodes}
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a == b:
            raise NIRImportError(f"{where}{node_label(a, nodes[a])}: recurrent edge onto itself; "
                                 "the toolkit's SNN is feed-forward")
        predecessors[b].add(a)
        successors[a].append(b)
    try:
        order = list(graphlib.TopologicalSorter(predecessors).static_order())
    except graphlib.CycleError as e:
        cycle = list(e.args[1]) if len(e.args) > 1 else []
        first = cycle[0] if cycle else "?"
        raise NIRImportError(f"{where}{node_label(first, nodes.get(first))}: recurrent edges (a cycle "
                             f"{' -> '.join(cycle)}); the toolkit's SNN is feed-forward") from None
    for name in order:
        if len(successors[name]) > 1 or len(predecessors[name]) > 1:
            many = f"{len(successors[name])} successors" if len(successors[name]) > 1 \
                else f"{len(predecessors[name])} predecessors"
            raise NIRImportError(f"{where}{node_label(name, nodes[name])}: has {many}; the toolkit's SNN is one "
                                 "chain of layers (no branches, skips or merges)")
    path, name = [], inputs[0]
    while True:
        path.append((name, nodes[name]))
        if not successors[name]:
            break
        name = successors[name][0]
    if path[-1][0] != outputs[0] or len(path) != len(nodes):
        left = sorted(set(nodes) - {n for n, _ in path})
        raise NIRImportError(f"{where}the nodes do not form one path from Input {inputs[0]!r} to Output "
                             f"{outputs[0]!r} (not on it: {left or [path[-1][0]]})")
    return path
