"""The surrogate-forward LIF SNN of THEORY.md ("The model"), stateless.

A model is described by :class:`SNNConfig`, whose ``layers`` is a list of strings:

- ``"dense:N"``: a dense spiking layer of N neurons (its input is flattened);
- ``"conv:C:K"`` or ``"conv:C:K:S"``: a conv spiking layer, C output channels,
  kernel K, stride S (default 1), zero padding (K - 1) // 2;
- ``"pool:K"``: average pooling with kernel and stride K between layers (a
  linear map of norm <= 1 that THEORY.md folds into the next layer's W^l);
- ``"flatten"``: flattens the spikes (dense layers also flatten on their own).

The readout is the time mean of a linear map of the last spiking layer's
spikes: z = (1/T) sum_t (W^o s^D_t + b^o). ``SNN.forward`` keeps no state between
calls, so the model works under ``torch.func.functional_call``, ``jvp`` and
``vmap`` in smooth mode. Build a graph that will be differentiated twice (double-backward
Hessian-vector products) inside :func:`second_order`: the conv layers then record a node with
a cheaper double backward (``sast._fast``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sast import _fast
from sast._fast import second_order
from sast.neuron import MODES, RESETS, lif

__all__ = ["Conv2d", "LayerSpec", "LayerTrace", "SNN", "SNNConfig", "parse_layers", "second_order"]

LAYER_KINDS = ("dense", "conv", "pool", "flatten")


@dataclass
class SNNConfig:
    """Everything needed to rebuild an :class:`SNN` (also stored in checkpoints)."""

    input_shape: tuple[int, ...]
    layers: list[str]
    T: int
    lam: float | list = 0.9  # one number, or one entry per spiking layer (see ``neuron_values``)
    theta: float | list = 1.0
    beta: float = 5.0
    reset: str = "zero"
    num_classes: int = 10
    init_scale: float = 1.0  # multiplies PyTorch's default initial weights of the spiking layers

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(d) for d in self.input_shape)
        self.layers = list(self.layers)
        if not self.input_shape or any(d <= 0 for d in self.input_shape):
            raise ValueError(f"input_shape must be positive sizes, got {self.input_shape}")
        if int(self.T) != self.T or self.T < 1:
            raise ValueError(f"T must be a positive integer, got {self.T!r}")
        self.T = int(self.T)
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0 (assumption A1), got beta={self.beta}")
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {', '.join(RESETS)}, got {self.reset!r}")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ValueError(f"init_scale must be a finite number > 0, got {self.init_scale}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        plan = parse_layers(self.layers, self.input_shape)  # validates the strings and shapes
        widths = [spec.width for spec in plan if spec.spiking]
        self.lam = _neuron_setting("lam", self.lam, widths, lambda v: 0 <= v < 1, "lie in [0, 1) (assumption A1)")
        self.theta = _neuron_setting("theta", self.theta, widths, lambda v: v > 0, "be > 0 (assumption A1)")

    def neuron_values(self, name: str) -> list[float | list[float]]:
        """``lam`` or ``theta`` per spiking layer l = 1..D: a float, or a list of one value per neuron.

        A per-neuron list follows the layer's neurons in row-major order of its output shape
        (C, H, W for a conv layer). A single number in the config stands for every layer.
        """
        value = getattr(self, name)
        if isinstance(value, (int, float)):
            return [value] * sum(1 for spec in self.layers if spec.strip().split(":")[0] in ("dense", "conv"))
        return list(value)

    def neuron_summary(self) -> str:
        """``lam`` and ``theta`` in a few words: "lam 0.9, theta 1", or per layer, with a range per neuron."""
        def show(name: str) -> str:
            value = getattr(self, name)
            if isinstance(value, float):
                return f"{name} {value:g}"
            parts = [f"{v:g}" if isinstance(v, float) else f"{min(v):g}..{max(v):g} per neuron" for v in value]
            return f"{name} per layer [{', '.join(parts)}]"

        return f"{show('lam')}, {show('theta')}"

    def neuron_pairs(self) -> list[list[tuple[float, float]]]:
        """Per spiking layer the distinct (lam, theta) pairs of its neurons, sorted (one pair per layer
        unless the config holds per-neuron values): what THEORY.md's per-layer constants take the max over."""
        out = []
        for lam, theta in zip(self.neuron_values("lam"), self.neuron_values("theta")):
            if isinstance(lam, list) or isinstance(theta, list):
                n = len(lam) if isinstance(lam, list) else len(theta)
                lams = lam if isinstance(lam, list) else [lam] * n
                thetas = theta if isinstance(theta, list) else [theta] * n
                out.append(sorted(set(zip(lams, thetas))))
            else:
                out.append([(lam, theta)])
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SNNConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class LayerSpec:
    """One entry of the layer plan, with the shapes it maps between (no batch, no time)."""

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    size: int = 0  # N for dense, C for conv, K for pool
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    index: int = -1  # position among the spiking layers (l - 1), -1 otherwise
    pools_before: tuple[int, ...] = field(default_factory=tuple)  # avg-pool kernels folded into W^l

    @property
    def spiking(self) -> bool:
        return self.kind in ("dense", "conv")

    @property
    def width(self) -> int:
        """n_l: the number of neurons of a spiking layer (output size)."""
        return math.prod(self.out_shape)


def _neuron_setting(name: str, value: Any, widths: list[int], ok: Any, expected: str) -> float | list:
    """Validate ``lam`` or ``theta``: one number, or one entry per spiking layer, each a number or a
    list of one number per neuron of that layer. Returns the value with plain floats (JSON-ready)."""
    def number(x: Any, where: str) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not ok(float(x)):
            raise ValueError(f"{name}{where} must {expected}, got {x!r}")
        return float(x)

    if not isinstance(value, (list, tuple)):
        return number(value, "")
    if len(value) != len(widths):
        raise ValueError(f"{name} has {len(value)} entries, expected one per spiking layer ({len(widths)})")
    out: list = []
    for l, (entry, n) in enumerate(zip(value, widths), start=1):
        if isinstance(entry, (list, tuple)):
            if len(entry) != n:
                raise ValueError(f"{name}[{l - 1}] has {len(entry)} values, expected one per neuron of spiking layer {l} ({n})")
            out.append([number(x, f"[{l - 1}]") for x in entry])
        else:
            out.append(number(entry, f"[{l - 1}]"))
    return out


def _layer_error(spec: str, why: str) -> ValueError:
    return ValueError(
        f"bad layer {spec!r}: {why}; expected 'dense:N', 'conv:C:K', 'conv:C:K:S', 'pool:K' or 'flatten'"
    )


def parse_layers(layers: list[str], input_shape: tuple[int, ...]) -> list[LayerSpec]:
    """Parse layer strings into a plan with shapes; raises ValueError with a one-line reason."""
    shape = tuple(input_shape)
    plan: list[LayerSpec] = []
    pools: list[int] = []
    n_spiking = 0
    for spec in layers:
        if not isinstance(spec, str):
            raise _layer_error(str(spec), "not a string")
        parts = spec.strip().split(":")
        kind = parts[0]
        if kind not in LAYER_KINDS:
            close = difflib.get_close_matches(kind, LAYER_KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _layer_error(spec, f"unknown kind {kind!r}{hint}")
        try:
            nums = [int(p) for p in parts[1:]]
        except ValueError:
            raise _layer_error(spec, "sizes must be integers") from None
        if any(n <= 0 for n in nums):
            raise _layer_error(spec, "sizes must be positive")
        if kind == "dense":
            if len(nums) != 1:
                raise _layer_error(spec, "dense takes one size")
            out = (nums[0],)
            plan.append(LayerSpec("dense", shape, out, size=nums[0], index=n_spiking, pools_before=tuple(pools)))
            n_spiking += 1
            pools = []
        elif kind == "conv":
            if len(nums) not in (2, 3):
                raise _layer_error(spec, "conv takes C:K or C:K:S")
            if len(shape) != 3:
                raise _layer_error(spec, f"conv needs a (C, H, W) input, got shape {shape}")
            c, k = nums[0], nums[1]
            s = nums[2] if len(nums) == 3 else 1
            pad = (k - 1) // 2
            h = (shape[1] + 2 * pad - k) // s + 1
            w = (shape[2] + 2 * pad - k) // s + 1
            if h < 1 or w < 1:
                raise _layer_error(spec, f"kernel {k} does not fit input {shape}")
            out = (c, h, w)
            plan.append(
                LayerSpec("conv", shape, out, size=c, kernel=k, stride=s, padding=pad, index=n_spiking,
                          pools_before=tuple(pools))
            )
            n_spiking += 1
            pools = []
        elif kind == "pool":
            if len(nums) != 1:
                raise _layer_error(spec, "pool takes one kernel size")
            if len(shape) != 3:
                raise _layer_error(spec, f"pool needs a (C, H, W) input, got shape {shape}")
            k = nums[0]
            if shape[1] < k or shape[2] < k:
                raise _layer_error(spec, f"pool kernel {k} larger than input {shape}")
            out = (shape[0], shape[1] // k, shape[2] // k)
            plan.append(LayerSpec("pool", shape, out, size=k, kernel=k, stride=k))
            pools.append(k)
        else:  # flatten
            if nums:
                raise _layer_error(spec, "flatten takes no size")
            out = (math.prod(shape),)
            plan.append(LayerSpec("flatten", shape, out))
        shape = out
    if n_spiking == 0:
        raise ValueError(f"layers {layers} have no spiking layer: add at least one 'dense:N' or 'conv:C:K'")
    return plan


class LayerTrace(NamedTuple):
    """Membrane potentials u^l_t and spikes s^l_t of one spiking layer, shape (B, T, ...)."""

    u: torch.Tensor
    s: torch.Tensor


class Conv2d(nn.Conv2d):
    """A conv layer of the SNN: torch's ``nn.Conv2d`` (its parameters, state dict, hooks and ``isinstance``), whose
    forward takes ``fast=True`` from :meth:`SNN.forward` to run the fast path's node (``sast._fast.conv2d``)."""

    def forward(self, input: torch.Tensor, fast: bool = False) -> torch.Tensor:  # noqa: A002 (nn.Conv2d's name)
        return _fast.conv2d(self, input) if fast else super().forward(input)


class SNN(nn.Module):
    """The LIF SNN of THEORY.md with a time-mean linear readout.

    ``forward(x, mode)`` takes frames of shape (B, T, *input_shape) and returns logits
    (B, num_classes); with ``return_trace=True`` it returns ``(logits, trace)``, trace a
    list with one :class:`LayerTrace` per spiking layer.
    """

    def __init__(self, config: SNNConfig) -> None:
        super().__init__()
        self.config = config
        self.plan = parse_layers(config.layers, config.input_shape)
        self.layers = nn.ModuleList()
        for spec in self.plan:
            if spec.kind == "dense":
                self.layers.append(nn.Linear(math.prod(spec.in_shape), spec.size))
            elif spec.kind == "conv":
                self.layers.append(
                    Conv2d(spec.in_shape[0], spec.size, spec.kernel, stride=spec.stride, padding=spec.padding)
                )
        self.readout = nn.Linear(math.prod(self.plan[-1].out_shape), config.num_classes)
        # lam_l, theta_l: floats, or tensors of the layer's neuron shape where the config holds
        # per-neuron values (made from the config's numbers in the dtype and on the device of use, so
        # that a float64 model holds them exactly; not in the state dict: the config stores them)
        self._neuron: list[dict[str, Any]] = [
            {"lam": lam, "theta": theta}
            for lam, theta in zip(config.neuron_values("lam"), config.neuron_values("theta"))]
        self._neuron_tensors: dict[tuple[int, str, torch.dtype, torch.device], torch.Tensor] = {}
        if config.init_scale != 1.0:
            # PyTorch's default init gives currents far below theta on sparse event frames (a few
            # percent of inputs active), so deep conv stacks start silent; a larger scale wakes them.
            with torch.no_grad():
                for layer in self.layers:
                    layer.weight.mul_(config.init_scale)

    @property
    def spiking_specs(self) -> list[LayerSpec]:
        """The plan entries of the spiking layers l = 1..D, in order."""
        return [s for s in self.plan if s.spiking]

    def neuron_parameters(self, index: int) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """(lam, theta) of spiking layer ``index`` (0-based): floats, or tensors of the layer's neuron
        shape (in the dtype and on the device of the model's parameters) where the config holds
        per-neuron values."""
        w = self.readout.weight
        out = []
        for name in ("lam", "theta"):
            value = self._neuron[index][name]
            if isinstance(value, list):
                key = (index, name, w.dtype, w.device)
                if key not in self._neuron_tensors:
                    self._neuron_tensors[key] = torch.tensor(value, dtype=torch.float64).reshape(
                        self.spiking_specs[index].out_shape).to(dtype=w.dtype, device=w.device)
                value = self._neuron_tensors[key]
            out.append(value)
        return out[0], out[1]

    def neuron_numpy(self, index: int, flat: bool = False) -> tuple[Any, Any]:
        """(lam, theta) of spiking layer ``index`` for numpy code: floats, or float64 arrays of the
        layer's neuron shape (``flat``: one axis of n_l) where the config holds per-neuron values."""
        spec = self.spiking_specs[index]
        out = []
        for name in ("lam", "theta"):
            value = self._neuron[index][name]
            if isinstance(value, list):
                arr = np.asarray(value, dtype=np.float64)
                out.append(arr if flat else arr.reshape(spec.out_shape))
            else:
                out.append(value)
        return out[0], out[1]

    def layer_modes(self, mode: str | Sequence[str]) -> tuple[str, ...]:
        """The spike mode of each spiking layer: ``mode`` for all, or one mode per layer (l = 1..D)."""
        n = len(self.spiking_specs)
        modes = (mode,) * n if isinstance(mode, str) else tuple(mode)
        if len(modes) != n:
            raise ValueError(f"expected one spike mode per spiking layer ({n}), got {len(modes)}: {list(modes)}")
        for m in modes:
            if m not in MODES:
                raise ValueError(f"unknown mode {m!r}: expected one of {', '.join(MODES)}")
        return modes

    def forward(
        self, x: torch.Tensor, mode: str | Sequence[str] = "smooth", return_trace: bool = False, *,
        fast: bool = True, sparse_input: bool | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[LayerTrace]]:
        """Logits (and the trace); ``fast=False`` runs the plain reference ops throughout.

        ``mode`` is one spike mode for every layer, or a sequence of one mode per spiking
        layer (mixed modes: hard spikes in some layers, smooth in the others, as the
        per-layer transfer attribution of ``sast.gap`` runs them).
        The fast path (``sast._fast``) computes the same function with the same gradients
        (tests/unit/test_fast_path.py). ``sparse_input`` chooses whether a first dense layer
        on the raw frames multiplies over their nonzeros only; None: by device (a CPU yes).
        """
        cfg = self.config
        modes = self.layer_modes(mode)
        expected = (cfg.T, *cfg.input_shape)
        if x.dim() != 2 + len(cfg.input_shape) or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected frames of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        a = x.to(self.readout.weight.dtype)
        B, T = a.shape[0], a.shape[1]
        trace: list[LayerTrace] = []
        fast = fast and _fast.usable()
        if sparse_input is None:
            sparse_input = _fast.sparse_default(a.device)
        raw = True  # a is still the input frames (no pooling or spiking layer yet)
        for spec in self.plan:
            if spec.kind == "pool":
                frames = a.flatten(0, 1)
                pooled = _fast.avg_pool(frames, spec.kernel) if fast else F.avg_pool2d(frames, spec.kernel)
                a = pooled.unflatten(0, (B, T))
                raw = False
            elif spec.kind == "flatten":
                a = a.flatten(2)
            else:
                layer = self.layers[spec.index]
                if spec.kind == "dense" and raw and fast and sparse_input:  # event frames: mostly zeros
                    currents = _fast.sparse_input_linear(a.flatten(2), layer.weight, layer.bias)
                elif spec.kind == "dense":
                    currents = layer(a.flatten(2))  # all T in one matmul
                else:
                    frames = a.flatten(0, 1)
                    currents = layer(frames, fast=fast).unflatten(0, (B, T))
                lam, theta = self.neuron_parameters(spec.index)
                u, a = lif(currents, lam=lam, theta=theta, beta=cfg.beta, reset=cfg.reset,
                           mode=modes[spec.index], fast=fast)
                raw = False
                trace.append(LayerTrace(u, a))
        logits = self.readout(a.flatten(2).mean(dim=1))  # (1/T) sum_t (W^o s_t + b^o)
        if return_trace:
            return logits, trace
        return logits
