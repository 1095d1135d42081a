"""``from_nir``: a NIR graph (file or object) of another library's network as this toolkit's :class:`SNN`.

Node by node along the chain from Input to Output (``sast.interop._graph``):

- ``Affine`` / ``Linear`` (weight (out, in), bias or none) followed by ``LIF``: a ``dense:out`` layer;
- ``Conv2d`` followed by ``LIF``: a ``conv:C:K:S`` layer, if its kernel is square, its stride the same in both
  directions, its padding the model's (K - 1) // 2, and it has no dilation or groups;
- ``AvgPool2d`` / ``SumPool2d`` on spikes (or on the input): ``pool:K`` with stride K and no padding; a sum pool
  is K^2 times the model's average pool, and that factor goes into the next weight layer (exact for K^2 a power
  of two, else to float32 rounding);
- ``Flatten`` of all dimensions (NIR's dims exclude the batch): ``flatten``;
- ``LIF``: lambda = 1 - dt/tau, theta = v_threshold (the layer's own; per neuron where its neurons differ),
  and the input gain r dt/tau and leak (dt/tau) v_leak folded into the weights before it (``sast.interop._lif``);
- the last ``Affine`` / ``Linear`` after the last ``LIF``, before ``Output``: the readout. The model's logits
  are z = (1/T) sum_t (W^o s_t + b^o), the time mean of that node's output: the decoding this importer assumes.
  A graph that ends in a ``LIF`` (or a pool or flatten after it) gets an identity readout: z is then the spike
  rate (1/T) sum_t s_t of each output neuron (times K^2 after a sum pool), the usual rate decoding.

Anything else is refused with :class:`NIRImportError`, one line naming the file and node, never approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from sast.interop import _graph, _lif
from sast.interop._common import METADATA_KEY, NIRImportError, check_dt
from sast.model import SNN, SNNConfig
from sast.neuron import RESETS

LIBRARY_DT = {"snntorch": 1e-4, "spikingjelly": 1e-4, "norse": 1e-3}
"""The dt (seconds per step) each library assumes when it writes or reads NIR; a file does not record it."""


@dataclass
class _Weight:
    """A weight layer waiting for its LIF (or the Output, as the readout)."""

    name: str
    kind: str  # "dense" or "conv"
    weight: np.ndarray  # float64
    bias: np.ndarray
    out_shape: tuple[int, ...]
    spec: str


@dataclass
class _Plan:
    """What the walk along the chain collects: the SNNConfig's parts and the state dict's arrays."""

    input_shape: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()
    layers: list[str] = field(default_factory=list)
    weights: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    lifs: list[_lif.LIFMap] = field(default_factory=list)  # one per spiking layer, in order
    pending: _Weight | None = None
    scale: float = 1.0  # sum-pool factor waiting for the next weight layer
    readout: tuple[np.ndarray, np.ndarray] | None = None


def _array(node: Any, name: str, label: str, ndim: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(getattr(node, name), dtype=np.float64)
    except (TypeError, ValueError, AttributeError):
        raise NIRImportError(f"{label}: {name} is missing or not an array of numbers") from None
    if ndim is not None and arr.ndim != ndim:
        raise NIRImportError(f"{label}: {name} has shape {arr.shape}, expected {ndim} dimensions")
    if not np.isfinite(arr).all():
        raise NIRImportError(f"{label}: {name} holds non-finite values (NaN or infinity)")
    return arr


def _pair(value: Any, label: str, what: str) -> tuple[int, int]:
    """An int, pair or array of a conv/pool node as (h, w) integers."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.equal(np.mod(arr, 1), 0)):
        raise NIRImportError(f"{label}: {what} {value!r} is not an integer or a pair of integers")
    return int(arr[0]), int(arr[1])


def _shape_of(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0:
        return None
    return tuple(int(d) for d in arr)


def _input(plan: _Plan, name: str, node: Any, input_shape: Sequence[int] | None, where: str) -> None:
    label = f"{where}{_graph.node_label(name, node)}"
    declared = _shape_of((node.input_type or {}).get("input"))
    given = None if input_shape is None else tuple(int(d) for d in input_shape)
    if declared is not None and given is not None and declared not in (given, (1, *given)):
        raise NIRImportError(f"{label}: the graph's input shape {declared} differs from input_shape={given}")
    shape = given or declared  # given wins over a declared (1, *given): an exporter's batch dimension
    if shape is None:
        raise NIRImportError(f"{label}: no input shape in the graph; pass input_shape=(C, H, W) or (N,)")
    if any(d <= 0 for d in shape):
        raise NIRImportError(f"{label}: input shape {shape} has a size <= 0")
    plan.input_shape = plan.shape = shape


def _affine(plan: _Plan, name: str, node: Any, label: str) -> None:
    w = _array(node, "weight", label, ndim=2)
    out, inp = w.shape
    bias = _array(node, "bias", label, ndim=1) if type(node).__name__ == "Affine" else np.zeros(out)
    if bias.shape != (out,):
        raise NIRImportError(f"{label}: bias has shape {bias.shape}, expected ({out},)")
    if plan.shape != (inp,):
        hint = ""
        if plan.shape == (1, inp):
            hint = f"; a batch dimension in the Input node? pass input_shape=({inp},)"
        elif math.prod(plan.shape) == inp:
            hint = "; add a Flatten node before it"
        raise NIRImportError(f"{label}: weight takes {inp} inputs but receives shape {plan.shape}{hint}")
    plan.pending = _Weight(name, "dense", w * plan.scale, bias, (out,), f"dense:{out}")
    plan.scale = 1.0


def _conv(plan: _Plan, name: str, node: Any, label: str) -> None:
    w = _array(node, "weight", label, ndim=4)
    c_out, c_in, kh, kw = w.shape
    bias = _array(node, "bias", label, ndim=1) if getattr(node, "bias", None) is not None else np.zeros(c_out)
    if bias.shape != (c_out,):
        raise NIRImportError(f"{label}: bias has shape {bias.shape}, expected ({c_out},)")
    if len(plan.shape) != 3 or plan.shape[0] != c_in:
        raise NIRImportError(f"{label}: weight takes {c_in} channels of (C, H, W) input but receives shape "
                             f"{plan.shape}")
    if int(np.asarray(getattr(node, "groups", 1))) != 1:
        raise NIRImportError(f"{label}: groups = {node.groups}; the toolkit's convolutions are not grouped")
    if _pair(getattr(node, "dilation", 1), label, "dilation") != (1, 1):
        raise NIRImportError(f"{label}: dilation {node.dilation}; the toolkit's convolutions are not dilated")
    if kh != kw:
        raise NIRImportError(f"{label}: kernel {kh}x{kw} is not square; the toolkit's kernels are K x K")
    sh, sw = _pair(node.stride, label, "stride")
    if sh != sw:
        raise NIRImportError(f"{label}: stride ({sh}, {sw}) differs between directions; the toolkit has one stride")
    k, pad = kh, (kh - 1) // 2
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = padding.decode() if isinstance(padding, bytes) else padding
        same = {"same": k % 2 == 1 and sh == 1, "valid": pad == 0}.get(padding, False)
        if not same:
            raise NIRImportError(f"{label}: padding {padding!r} with kernel {k} and stride {sh} is not the "
                                 f"toolkit's padding (K - 1) // 2 = {pad}")
    elif _pair(padding, label, "padding") != (pad, pad):
        raise NIRImportError(f"{label}: padding {tuple(np.asarray(padding).reshape(-1).tolist())} is not the "
                             f"toolkit's padding (K - 1) // 2 = {pad} for kernel {k}")
    declared = _shape_of(getattr(node, "input_shape", None))
    if declared is not None and declared != plan.shape[1:]:
        raise NIRImportError(f"{label}: input_shape {declared} differs from the shape it receives {plan.shape[1:]}")
    spec = f"conv:{c_out}:{k}:{sh}"
    h = (plan.shape[1] + 2 * pad - k) // sh + 1
    wd = (plan.shape[2] + 2 * pad - k) // sh + 1
    if h < 1 or wd < 1:
        raise NIRImportError(f"{label}: kernel {k} does not fit its input {plan.shape}")
    plan.pending = _Weight(name, "conv", w * plan.scale, bias, (c_out, h, wd), spec)
    plan.scale = 1.0


def _pool(plan: _Plan, name: str, node: Any, label: str) -> None:
    if plan.pending is not None:
        raise NIRImportError(f"{label}: pools the currents of {plan.pending.name!r} before its LIF; the toolkit "
                             "pools spikes (or the input) only")
    if len(plan.shape) != 3:
        raise NIRImportError(f"{label}: needs a (C, H, W) input, receives shape {plan.shape}")
    kh, kw = _pair(node.kernel_size, label, "kernel_size")
    stride = _pair(node.stride, label, "stride")
    padding = _pair(node.padding, label, "padding")
    if kh != kw or stride != (kh, kw) or padding != (0, 0):
        raise NIRImportError(f"{label}: kernel {(kh, kw)}, stride {stride}, padding {padding}; the toolkit pools "
                             "K x K windows with stride K and no padding")
    c, h, w = plan.shape
    if kh < 1 or h < kh or w < kh:
        raise NIRImportError(f"{label}: kernel {kh} does not fit its input {plan.shape}")
    plan.layers.append(f"pool:{kh}")
    plan.shape = (c, h // kh, w // kh)
    if type(node).__name__ == "SumPool2d":
        plan.scale *= kh * kh


def _flatten(plan: _Plan, name: str, node: Any, label: str) -> None:
    if plan.pending is not None:
        raise NIRImportError(f"{label}: flattens the currents of {plan.pending.name!r} before its LIF; put the "
                             "Flatten after the LIF")
    nd = len(plan.shape)
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = start + nd if start < 0 else start, end + nd if end < 0 else end
    if not (0 <= start <= end < nd):
        raise NIRImportError(f"{label}: start_dim {node.start_dim}, end_dim {node.end_dim} do not fit the shape "
                             f"{plan.shape} it receives (NIR's dims exclude the batch)")
    if start == end:
        return  # flattening one dimension changes nothing
    if (start, end) != (0, nd - 1):
        raise NIRImportError(f"{label}: flattens dims {start}..{end} of {plan.shape} only; the toolkit flattens all")
    plan.layers.append("flatten")
    plan.shape = (math.prod(plan.shape),)


def _neuron(plan: _Plan, name: str, node: Any, label: str, dt: float) -> None:
    pending = plan.pending
    if pending is None:
        raise NIRImportError(f"{label}: no Affine, Linear or Conv2d before it; the toolkit's neurons take W a + b")
    m = _lif.map_lif(node, pending.out_shape, dt, label)
    plan.lifs.append(m)
    if pending.kind == "dense":
        gain, leak = m.gain, m.leak_bias
    else:  # a conv weight is shared over positions: gain and leak must be one number per channel
        c = pending.out_shape[0]
        gain, leak = m.gain.reshape(c, -1), m.leak_bias.reshape(c, -1)
        for what, arr in (("input gain r dt/tau", gain), ("leak (dt/tau) v_leak", leak)):
            if np.any(np.abs(arr - arr[:, :1]) > _lif.FLOAT32_TOL * np.maximum(1.0, np.abs(arr[:, :1]))):
                raise NIRImportError(f"{label}: the {what} varies within a channel; a convolution shares its "
                                     "weights over positions, so it must be one number per channel")
        gain, leak = gain[:, 0], leak[:, 0]
    shape = (-1,) + (1,) * (pending.weight.ndim - 1)
    weight = pending.weight if np.all(gain == 1.0) else pending.weight * gain.reshape(shape)
    bias = pending.bias if np.all(gain == 1.0) else pending.bias * gain
    plan.layers.append(pending.spec)
    plan.weights.append((weight, bias + leak))
    plan.shape, plan.pending = pending.out_shape, None


def _output(plan: _Plan, name: str, node: Any, label: str, where: str) -> None:
    if not plan.lifs:
        raise NIRImportError(f"{where}the graph has no LIF node; the toolkit's SNN needs at least one spiking layer")
    pending = plan.pending
    if pending is not None:
        if pending.kind != "dense":
            raise NIRImportError(f"{where}node {pending.name!r} (Conv2d): a convolution as the readout; "
                                 "the toolkit's readout is a linear map of the last spikes")
        plan.readout = (pending.weight, pending.bias)
        plan.shape = pending.out_shape
    else:  # rate decoding: an identity readout (a sum pool's factor included)
        n = math.prod(plan.shape)
        plan.readout = (np.eye(n) * plan.scale, np.zeros(n))
        plan.shape = (n,)
    declared = _shape_of((node.output_type or {}).get("output"))
    if declared is not None and math.prod(declared) != math.prod(plan.shape):
        raise NIRImportError(f"{label}: declares shape {declared} but receives {plan.shape}")
    if plan.shape[0] < 2:
        raise NIRImportError(f"{label}: {plan.shape[0]} output; the toolkit's readout needs >= 2 classes")


def build_plan(path: list[tuple[str, Any]], *, dt: float, input_shape: Sequence[int] | None, where: str) -> _Plan:
    """Walk the chain and collect the layer strings, weights, lambda and theta (see the module docstring)."""
    plan = _Plan()
    for name, node in path:
        kind = type(node).__name__
        label = f"{where}{_graph.node_label(name, node)}"
        if kind == "Input":
            _input(plan, name, node, input_shape, where)
        elif kind in ("Affine", "Linear", "Conv2d"):
            if plan.pending is not None:
                raise NIRImportError(f"{label}: follows {plan.pending.name!r} without a LIF between; each weight "
                                     "layer of the toolkit feeds one LIF (or is the readout)")
            (_affine if kind != "Conv2d" else _conv)(plan, name, node, label)
        elif kind in ("AvgPool2d", "SumPool2d"):
            _pool(plan, name, node, label)
        elif kind == "Flatten":
            _flatten(plan, name, node, label)
        elif kind == "LIF":
            _neuron(plan, name, node, label, dt)
        else:  # Output: the chain ends here
            _output(plan, name, node, label, where)
    return plan


def _state_dict(plan: _Plan) -> dict[str, torch.Tensor]:
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    state = {}
    for i, (w, b) in enumerate(plan.weights):
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = t(w), t(b)
    assert plan.readout is not None  # set by _output, which every chain ends with
    state["readout.weight"], state["readout.bias"] = t(plan.readout[0]), t(plan.readout[1])
    return state


def read_graph(source: str | Path | Any) -> Any:
    """The ``nir.NIRGraph`` of a ``.nir`` file (a graph passes through), read as :func:`from_nir` reads it.

    A file that is missing, not HDF5, truncated, or holds a node type nir does not know is refused with one
    :class:`NIRImportError` line naming the file. The graph is not checked further: :func:`from_nir` does that.
    """
    return _graph.load(source)[0]


def sast_metadata(graph: Any) -> dict[str, Any]:
    """What :func:`sast.interop.to_nir` recorded under the graph's ``metadata["sast"]`` (T, dt, reset, lam,
    theta, beta, the decoding), as plain Python values; ``{}`` for a graph another library wrote."""
    meta = getattr(graph, "metadata", None)
    own = meta.get(METADATA_KEY) if isinstance(meta, dict) else None
    if not isinstance(own, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in own.items():
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    return out


def _check_own_metadata(graph: Any, reset: str, where: str) -> None:
    """Refuse a reset that contradicts the one this toolkit's ``to_nir`` recorded (NIR's LIF cannot say it)."""
    recorded = sast_metadata(graph).get("reset")
    if recorded is not None and recorded != reset:
        raise NIRImportError(f"{where}the graph's metadata says it was written with reset {recorded!r}, "
                             f"but reset={reset!r} was asked; pass reset={recorded!r}")


def _per_layer(plan: _Plan, name: str) -> float | list:
    """``lam`` or ``theta`` for ``SNNConfig``: one number where every LIF has the same (to float32 rounding),
    else one entry per spiking layer (a number, or the layer's per-neuron list)."""
    values = [getattr(m, name) for m in plan.lifs]
    if all(isinstance(v, float) for v in values) and _lif.spread(np.asarray(values)) <= _lif.FLOAT32_TOL:
        return values[0]
    return values


def from_nir(source: str | Path | Any, *, dt: float, reset: str, T: int,
             input_shape: Sequence[int] | None = None, beta: float = SNNConfig.beta) -> SNN:
    """This toolkit's :class:`SNN` from a NIR graph (a ``.nir`` file's path or a ``nir.NIRGraph``), in eval mode.

    A NIR file records neither the time step nor the reset, so both are required:

    - ``dt``: the seconds per step the graph's time constants are meant for. snnTorch and SpikingJelly write
      (and read) with dt = 1e-4, Norse with 1e-3 (``LIBRARY_DT``). lambda = 1 - dt/tau.
    - ``reset``: ``"zero"`` (u_t = lam (1 - s_{t-1}) u_{t-1} + I_t: snnTorch ``reset_mechanism="zero"``, Norse
      ``LIFBox``, SpikingJelly's hard reset to 0) or ``"subtract"`` (u_t = lam u_{t-1} - theta s_{t-1} + I_t:
      snnTorch ``"subtract"`` with its default ``reset_delay=True``; SpikingJelly's soft reset, Sinabs and
      Rockpool decay the subtraction, lam (u - theta s), which the toolkit does not compute). snnTorch writes
      v_reset = 0 for either mechanism, so a file cannot tell; files before NIR 1.0.6 have no v_reset at all.
    - ``T``: the number of steps the model runs (its input frames are (B, T, *input_shape)).
    - ``input_shape``: the frames' shape without batch and time, where the graph's Input node has none (or to
      check it); ``beta``: the surrogate's slope (smooth mode only; hard spikes do not use it).

    The membrane starts at u_0 = 0, as in snnTorch and SpikingJelly; Norse starts ``LIFBox`` at v = v_leak, so
    with v_leak != 0 its first steps differ from the toolkit's (and from snnTorch's) while the leak decays in.
    The logits are the time mean of the readout's output (module docstring). Spikes fire when u > theta,
    strictly, as in NIR, snnTorch and Norse (SpikingJelly fires at u >= theta: the same but on exact ties).
    A graph written by :func:`sast.interop.to_nir` records its reset in its metadata, and another ``reset``
    is refused. The model is float32, the dtype the libraries run in (``.double()`` converts it after).

    Raises :class:`NIRImportError` (a ValueError) with one line naming the file and node for anything the
    model cannot represent exactly; ImportError when the ``nir`` package is missing.
    """
    graph, where = _graph.load(source)
    dt = check_dt(dt)
    if reset not in RESETS:
        raise NIRImportError(f"reset must be one of {', '.join(RESETS)} (a NIR file does not record it), "
                             f"got {reset!r}")
    _check_own_metadata(graph, reset, where)
    path = _graph.chain(graph, where)
    plan = build_plan(path, dt=dt, input_shape=input_shape, where=where)
    assert plan.lifs and plan.readout is not None  # _output refuses a graph without them
    try:
        config = SNNConfig(input_shape=plan.input_shape, layers=plan.layers, T=T, lam=_per_layer(plan, "lam"),
                           theta=_per_layer(plan, "theta"), beta=beta, reset=reset,
                           num_classes=plan.readout[0].shape[0])
    except ValueError as e:
        raise NIRImportError(f"{where}the graph maps to an invalid model configuration: {e}") from None
    with torch.random.fork_rng(devices=[]):  # the constructor's random init must not move the caller's RNG
        model = SNN(config)
    model.load_state_dict(_state_dict(plan))
    return model.eval()
