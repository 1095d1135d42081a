"""``to_nir``: this toolkit's :class:`SNN` as a NIR graph, in snnTorch's conventions.

Each spiking layer becomes its weight node (``Affine``, or ``Conv2d`` with its input shape) and a ``LIF`` with
per-neuron arrays (scalars break NIR's type inference and snnTorch's importer, NIR.md):

    tau = dt / (1 - lam),  r = tau / dt,  v_leak = 0,  v_threshold = theta,  v_reset = 0,

so that a reader stepping at the same ``dt`` gets lambda = 1 - dt/tau = lam and the input gain r dt/tau = 1.
The default dt = 1e-4 is snnTorch's and SpikingJelly's; pass Norse's 1e-3 for Norse (whose importer ignores r,
so it also needs each weight scaled by r: NIR.md). Pools become ``AvgPool2d``, flattens ``Flatten`` (dims
without the batch), and a dense layer on a (C, H, W) input gets the ``Flatten`` the model applies implicitly.

The readout becomes an ``Affine`` before the ``Output``. Its decoding is recorded in the graph's ``metadata``
(a dict that ``nir.write`` stores as an HDF5 group): under the key ``"sast"``, the logits are the time mean
(1/T) sum_t of the readout node's output, with T, dt, reset, lam, theta (per layer where layers differ) and
beta. The reset in particular is
recorded only there: NIR's LIF resets to v_reset (0 here), which is the toolkit's ``"zero"`` reset; a model with
``"subtract"`` is written the same way (as snnTorch writes its subtract reset) and runs differently in a reader
that ignores the metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sast.interop._common import METADATA_KEY, check_dt, require_nir
from sast.model import SNN

DECODING = "time-mean"
"""``metadata["sast"]["decoding"]``: logits = (1/T) sum_t of the readout node's output over the T steps."""
METADATA_VERSION = 1


def _array(t: torch.Tensor) -> np.ndarray:
    """A parameter as a numpy array of its own dtype (a float64 model is not rounded to float32)."""
    return t.detach().cpu().numpy().copy()


def _lif(nir: Any, shape: tuple[int, ...], lam: float | list[float], theta: float | list[float], dt: float) -> Any:
    """A LIF node with per-neuron float64 arrays: lambda = 1 - dt/tau and r dt/tau = 1 to float64 rounding.

    lam and theta: the layer's, one number or a list of one per neuron (row-major over ``shape``)."""
    def full(value: float | list[float]) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(shape if isinstance(value, list) else ()),
                               shape).copy()

    tau = dt / (1.0 - full(lam))
    return nir.LIF(tau=tau, r=tau / dt, v_leak=full(0.0), v_threshold=full(theta), v_reset=full(0.0))


def _neuron_metadata(cfg: Any) -> dict[str, Any]:
    """lam and theta for the metadata: the number where the model has one; one per spiking layer where each
    layer has its own; a note where some layer has per-neuron values (its LIF node holds them)."""
    out: dict[str, Any] = {}
    for name in ("lam", "theta"):
        value = getattr(cfg, name)
        if isinstance(value, float):
            out[name] = value
        elif all(isinstance(v, float) for v in value):
            out[name] = np.asarray(value, dtype=np.float64)
        else:
            out[name] = "per neuron in some layers: read the LIF nodes"
    return out


def to_nir(model: SNN, *, dt: float = 1e-4) -> Any:
    """The ``nir.NIRGraph`` of ``model`` (a hard-spike network at time step ``dt`` seconds; module docstring).

    Node names: ``input``, ``fc1`` / ``conv1`` and ``lif1`` for spiking layer 1 (and so on), ``pool1``,
    ``flatten1``, ..., ``readout``, ``output``. ``nir.write(path, to_nir(model))`` writes the file.
    """
    nir = require_nir()
    if not isinstance(model, SNN):
        raise TypeError(f"to_nir() takes a sast.model.SNN, got {type(model).__name__}")
    dt = check_dt(dt)
    cfg = model.config
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(cfg.input_shape))}
    order = ["input"]
    counts: dict[str, int] = {}

    def add(prefix: str, node: Any) -> None:
        counts[prefix] = counts.get(prefix, 0) + 1
        name = f"{prefix}{counts[prefix]}"
        nodes[name] = node
        order.append(name)

    def flatten_if_needed(shape: tuple[int, ...]) -> None:
        if len(shape) > 1:  # the model's dense layers and readout flatten their input implicitly
            add("flatten", nir.Flatten(input_type=np.array(shape), start_dim=0, end_dim=-1))

    for spec in model.plan:
        if spec.kind == "pool":
            k = np.array([spec.kernel, spec.kernel])
            add("pool", nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.zeros(2, dtype=int)))
        elif spec.kind == "flatten":
            flatten_if_needed(spec.in_shape)
        else:
            layer = model.layers[spec.index]
            if spec.kind == "dense":
                flatten_if_needed(spec.in_shape)
                add("fc", nir.Affine(weight=_array(layer.weight), bias=_array(layer.bias)))
            else:
                add("conv", nir.Conv2d(input_shape=tuple(spec.in_shape[1:]), weight=_array(layer.weight),
                                       stride=(spec.stride, spec.stride), padding=(spec.padding, spec.padding),
                                       dilation=(1, 1), groups=1, bias=_array(layer.bias)))
            add("lif", _lif(nir, tuple(spec.out_shape), cfg.neuron_values("lam")[spec.index],
                            cfg.neuron_values("theta")[spec.index], dt))
    flatten_if_needed(tuple(model.plan[-1].out_shape))
    nodes["readout"] = nir.Affine(weight=_array(model.readout.weight), bias=_array(model.readout.bias))
    nodes["output"] = nir.Output(output_type=np.array([cfg.num_classes]))
    order += ["readout", "output"]
    metadata = {METADATA_KEY: {
        "version": METADATA_VERSION, "decoding": DECODING, "readout_node": "readout",
        "decoding_formula": "logits = (1/T) sum_t readout(s_t), the time mean of the readout node's output",
        "T": int(cfg.T), "dt": dt, "reset": cfg.reset, **_neuron_metadata(cfg),
        "beta": float(cfg.beta), "layers": ",".join(cfg.layers),
    }}
    edges = list(zip(order, order[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
