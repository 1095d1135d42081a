"""Hypothesis strategies for tiny float64 SNNs and their event batches, over a stated :class:`Ranges`.

A drawn network is a plain :class:`NetSpec` (configuration, weight scales, input
range, seed): hypothesis prints it on failure, and ``spec.build()`` rebuilds the
same model, probe batch and labels bit for bit, so every counterexample is
reproducible from its printout alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from checks.constants import model_constants
from sast.model import SNN, SNNConfig, parse_layers
from sast.neuron import RESETS
from theory import ModelConstants, state_interval_at

# A4's zero-reset kappa_l / gam_l are grid maxima plus a correction (theory.bounds._grid_sup).
# "default" is the production grid (h=None: up to 2^20 + 1 points per layer, ~0.3 s each);
# "fine" and "coarse" put 2^16 and 2^8 intervals on the widest I_l, which keeps the suite
# fast and, for "coarse", makes the correction term carry the bound (testing its rigour).
GRIDS = {"default": None, "fine": 2**16, "coarse": 2**8}


@dataclass(frozen=True)
class Ranges:
    """The region a strategy draws from: closed intervals (lo, hi) and finite choices.

    lam is drawn from [lo, hi) (A1 needs lam < 1); weight_log10 scales the N(0, 1)/sqrt(fan_in)
    init of each layer by 10^s (s = 0: the usual init; log10(3): three times it); bias_log10 scales
    N(0, 1) biases; x_inf is the largest input entry (inputs in [0, x_inf], a fraction zero_frac of
    them set to 0, as in binned event frames); grids are A4's grid choices (keys of GRIDS).
    """

    name: str
    lam: tuple[float, float]
    theta: tuple[float, float]
    beta: tuple[float, float]
    weight_log10: tuple[float, float]
    bias_log10: tuple[float, float]
    x_inf: tuple[float, float]
    T: tuple[int, int]
    resets: tuple[str, ...] = RESETS
    zero_fracs: tuple[float, ...] = (0.0, 0.5, 0.9)
    grids: tuple[str, ...] = ("fine", "coarse", "fine", "default")  # "fine" twice: drawn half the time

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> ValueError:
            return ValueError(f"Ranges {self.name!r}: {field} must be {expected}, got {getattr(self, field)!r}; "
                              f"fix it in the Ranges(...) call or dataclasses.replace(...)")

        for field in ("lam", "theta", "beta", "weight_log10", "bias_log10", "x_inf", "T"):
            lo, hi = getattr(self, field)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise bad(field, "a pair (lo, hi) of finite numbers with lo <= hi")
        if not 0 <= self.lam[0] < self.lam[1] <= 1:
            raise bad("lam", "(lo, hi) with 0 <= lo < hi <= 1 (A1: lam in [0, 1); hi is excluded)")
        for field in ("theta", "beta", "x_inf"):
            if getattr(self, field)[0] <= 0:
                raise bad(field, "positive (A1, A2)")
        if not (all(isinstance(t, int) for t in self.T) and self.T[0] >= 1):
            raise bad("T", "a pair of integers >= 1")
        if not self.resets or not set(self.resets) <= set(RESETS):
            raise bad("resets", f"a non-empty tuple drawn from {RESETS}")
        if not self.zero_fracs or not all(0 <= z < 1 for z in self.zero_fracs):
            raise bad("zero_fracs", "a non-empty tuple of fractions in [0, 1)")
        if not self.grids or not set(self.grids) <= set(GRIDS):
            raise bad("grids", f"a non-empty tuple drawn from {tuple(GRIDS)}")

    def replace(self, **changes) -> "Ranges":
        """A copy with some fields changed (``dataclasses.replace``), e.g. ``SOFT_BAND.replace(resets=("zero",))``."""
        return dataclasses.replace(self, **changes)


WIDE = Ranges(
    # Beta reaches 10 and theta 5 so that A4 fails in many draws (subtract: A4 <=> theta beta < 4(1 + lam)),
    # and weight scales span 10^-1..10^1.3 around the 1/sqrt(fan_in) init, so that states reach far
    # outside the soft band too.
    name="wide", lam=(0.0, 0.99), theta=(0.05, 5.0), beta=(0.1, 10.0), weight_log10=(-1.0, 1.3),
    bias_log10=(-3.0, 0.5), x_inf=(0.05, 4.0), T=(1, 8),
)
"""Wide ranges: saturated and silent neurons, A4 failing, states far from theta."""

SOFT_BAND = Ranges(
    # Weights from half to three times the usual init, a shallow sigmoid (beta 0.5-3), a leak of trained
    # nets (lam 0.3-0.9), thresholds and inputs of order one, frames not too sparse: the states sit in the
    # soft band |u - theta| < 4/beta, where sig_beta' is large and the zero reset's g' = lam(1 - sig) -
    # lam u sig' changes sign. WIDE rarely draws this region, and a real soundness bug of a local
    # certificate (T3, zero reset: |g'| where the signed g' was needed) lived in it.
    name="soft-band", lam=(0.3, 0.9), theta=(0.25, 2.0), beta=(0.5, 3.0),
    weight_log10=(math.log10(0.5), math.log10(3.0)), bias_log10=(-3.0, 0.0), x_inf=(0.5, 2.0), T=(1, 8),
    zero_fracs=(0.0, 0.5),
)
"""Focused ranges: the regime of trained networks, where the soft band is populated.

Measured on 300 random dense nets of each family (hypothesis, derandomized; all layers, times and
probe samples, smooth mode): on average 90% of the membrane values lie in the soft band here
(fewer than half in 6% of the nets), against 54% for WIDE (fewer than half in 46% of its nets).
"""

FAMILIES = (WIDE, SOFT_BAND)


@dataclass(frozen=True)
class NetSpec:
    """One drawn network: everything needed to rebuild model, probe batch x and labels y."""

    input_shape: tuple[int, ...]
    layers: tuple[str, ...]
    T: int
    lam: float | tuple  # one number, or per spiking layer a number or a tuple of one per neuron
    theta: float | tuple
    beta: float
    reset: str
    num_classes: int
    weight_log10: tuple[float, ...]  # per spiking layer, then the readout
    bias_log10: float
    x_inf: float
    zero_frac: float  # fraction of input entries set to 0 (event frames are sparse)
    batch: int
    grid: str
    seed: int

    @property
    def kind(self) -> str:
        """'dense', 'conv' (conv layers only) or 'mixed' (conv, then dense)."""
        if self.layers[0].startswith("conv"):
            return "mixed" if any(layer.startswith("dense") for layer in self.layers) else "conv"
        return "dense"

    def config(self) -> SNNConfig:
        return SNNConfig(input_shape=self.input_shape, layers=list(self.layers), T=self.T, lam=self.lam, theta=self.theta,
                         beta=self.beta, reset=self.reset, num_classes=self.num_classes)

    def build(self) -> "Net":
        """The float64 model (weights N(0, 1)/sqrt(fan_in) times 10^scale, biases N(0, 1) times 10^bias), x, y."""
        gen = torch.Generator().manual_seed(self.seed)
        model = SNN(self.config()).double()
        modules = [*model.layers, model.readout]  # spiking layers in order (pooling has no module), then the readout
        with torch.no_grad():
            for module, scale in zip(modules, self.weight_log10):
                w = module.weight
                fan_in = math.prod(w.shape[1:])
                w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float64) * (10.0**scale / math.sqrt(fan_in)))
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen, dtype=torch.float64) * 10.0**self.bias_log10)
        x, y = _events(gen, (self.batch, self.T, *self.input_shape), self.x_inf, self.zero_frac, self.num_classes)
        return Net(self, model, x, y)


@dataclass(frozen=True)
class EventSpec:
    """One drawn event batch for a model of your own: x (batch, T, *input_shape) in [0, x_inf], sparse; labels y."""

    input_shape: tuple[int, ...]
    T: int
    num_classes: int
    x_inf: float
    zero_frac: float
    batch: int
    seed: int

    def build(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        return _events(gen, (self.batch, self.T, *self.input_shape), self.x_inf, self.zero_frac, self.num_classes)


def _events(gen: torch.Generator, shape: tuple[int, ...], x_inf: float, zero_frac: float,
            num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform entries in [0, x_inf], each zeroed with probability zero_frac (float64), and uniform labels."""
    x = torch.rand(shape, generator=gen, dtype=torch.float64) * x_inf
    x = x * (torch.rand(shape, generator=gen, dtype=torch.float64) >= zero_frac)
    y = torch.randint(num_classes, (shape[0],), generator=gen)
    return x, y


@dataclass
class Net:
    spec: NetSpec
    model: SNN
    x: torch.Tensor  # (B, T, *input_shape), entries in [0, x_inf]
    y: torch.Tensor  # (B,) labels

    def constants(self) -> ModelConstants:
        return model_constants(self.model, self.x)

    def grid_h(self, c: ModelConstants) -> float | None:
        """The A4 grid spacing for theory's kappa/gam (None: theory's own choice)."""
        intervals = GRIDS[self.spec.grid]
        if intervals is None:
            return None
        widest = max(hi - lo for lo, hi in state_interval_at(c, math.inf))
        return widest / intervals if widest > 0 else None

    # -- exact derivatives through functional_call on one flat parameter vector --

    def flat_params(self) -> torch.Tensor:
        """Every parameter (spiking layers in order, then the readout) as one float64 vector."""
        return torch.cat([p.detach().flatten() for p in self.model.parameters()])

    def logits_fn(self, x: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """w -> z(w; x), the smooth model's logits (B, C) with parameters w (flat, as :meth:`flat_params`)."""
        x = self.x if x is None else x
        named = [(n, p.shape) for n, p in self.model.named_parameters()]

        def z(w: torch.Tensor) -> torch.Tensor:
            params, i = {}, 0
            for name, shape in named:
                k = math.prod(shape)
                params[name] = w[i:i + k].view(shape)
                i += k
            return torch.func.functional_call(self.model, params, (x,), {"mode": "smooth"})

        return z

    def loss_fn(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """w -> mean cross-entropy of the smooth model with parameters w (flat) on (x, y)."""
        z = self.logits_fn(x)
        y = self.y if y is None else y
        return lambda w: F.cross_entropy(z(w), y)


def _layer_kwargs(draw: st.DrawFn, ranges: Ranges, n_spiking: int) -> dict:
    return dict(
        T=draw(st.integers(*ranges.T), label="T"),
        lam=draw(st.floats(*ranges.lam, exclude_max=True), label="lam"),
        theta=draw(st.floats(*ranges.theta), label="theta"),
        beta=draw(st.floats(*ranges.beta), label="beta"),
        reset=draw(st.sampled_from(ranges.resets), label="reset"),
        weight_log10=tuple(draw(st.floats(*ranges.weight_log10), label=f"weight_log10[{i}]") for i in range(n_spiking + 1)),
        bias_log10=draw(st.floats(*ranges.bias_log10), label="bias_log10"),
        x_inf=draw(st.floats(*ranges.x_inf), label="x_inf"),
        zero_frac=draw(st.sampled_from(ranges.zero_fracs), label="zero_frac"),
        grid=draw(st.sampled_from(ranges.grids), label="grid"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )


NEURONS = ("shared", "layer", "neuron")
"""How the strategies draw lam and theta: one pair for the net, one per spiking layer, or per neuron."""


def _neuron_values(draw: st.DrawFn, ranges: Ranges, kwargs: dict, input_shape: tuple[int, ...],
                   layers: tuple[str, ...], neurons: str) -> dict:
    """Replace kwargs' lam and theta by per-layer (``"layer"``) or per-neuron (``"neuron"``) values.

    Per neuron, each layer draws 1-3 (lam, theta) pairs and gives each neuron one of them, so that a
    layer's neurons share a few pairs (as files with per-neuron parameters do) and the pairs differ
    in both coordinates: the bounds must take the max over pairs, not over lam and theta apart.
    """
    if neurons not in NEURONS:
        raise ValueError(f"neurons must be one of {NEURONS}, got {neurons!r}")
    if neurons == "shared":
        return kwargs
    widths = [spec.width for spec in parse_layers(list(layers), input_shape) if spec.spiking]
    lams, thetas = [], []
    for l, n in enumerate(widths):
        k = 1 if neurons == "layer" else draw(st.integers(1, 3), label=f"pairs[{l}]")
        pairs = [(draw(st.floats(*ranges.lam, exclude_max=True), label=f"lam[{l}]"),
                  draw(st.floats(*ranges.theta), label=f"theta[{l}]")) for _ in range(k)]
        if k == 1:
            lams.append(pairs[0][0])
            thetas.append(pairs[0][1])
        else:
            pick = [draw(st.integers(0, k - 1), label=f"pick[{l}]") for _ in range(n)]
            lams.append(tuple(pairs[i][0] for i in pick))
            thetas.append(tuple(pairs[i][1] for i in pick))
    return {**kwargs, "lam": tuple(lams), "theta": tuple(thetas)}


def _image(draw: st.DrawFn) -> tuple[int, int, int]:
    return draw(st.integers(1, 2), label="C_in"), draw(st.integers(4, 6), label="H"), draw(st.integers(4, 6), label="W")


def _depth(depth: tuple[int, int], most: int) -> tuple[int, int]:
    lo, hi = depth
    if not 1 <= lo <= hi <= most:
        raise ValueError(f"depth must be (lo, hi) with 1 <= lo <= hi <= {most}, got {depth!r}; larger nets make "
                         f"exact Hessians slow")
    return lo, hi


@st.composite
def dense_nets(draw: st.DrawFn, ranges: Ranges = WIDE, *, depth: tuple[int, int] = (1, 3), max_batch: int = 3,
               neurons: str = "shared") -> NetSpec:
    """1-3 dense spiking layers of width 2-6 on inputs of dimension 2-6, 2-4 classes (at most 154 parameters).

    ``neurons``: one of :data:`NEURONS` (lam and theta shared, per layer or per neuron).
    """
    lo, hi = _depth(depth, 3)
    n_0 = draw(st.integers(2, 6), label="n_0")
    widths = draw(st.lists(st.integers(2, 6), min_size=lo, max_size=hi), label="widths")
    layers = tuple(f"dense:{n}" for n in widths)
    return NetSpec(input_shape=(n_0,), layers=layers,
                   num_classes=draw(st.integers(2, 4), label="num_classes"), batch=draw(st.integers(1, max_batch), label="batch"),
                   **_neuron_values(draw, ranges, _layer_kwargs(draw, ranges, len(widths)), (n_0,), layers, neurons))


@st.composite
def conv_nets(draw: st.DrawFn, ranges: Ranges = WIDE, *, depth: tuple[int, int] = (1, 2), max_batch: int = 2,
              neurons: str = "shared") -> NetSpec:
    """1-2 conv spiking layers (1-2 channels, kernel 2-3, stride 1-2, zero padding (k-1)//2) on (1-2, 4-6, 4-6) images.

    Two classes (the case where cross-entropy's Hessian bound 1/2 is attained, at p = 1/2) keep the
    parameter count at most 222, so that exact Hessians stay cheap.
    """
    lo, hi = _depth(depth, 2)
    shape = _image(draw)
    layers = tuple(f"conv:{draw(st.integers(1, 2), label=f'C[{i}]')}:{draw(st.integers(2, 3), label=f'k[{i}]')}:"
                   f"{draw(st.integers(1, 2), label=f's[{i}]')}"
                   for i in range(draw(st.integers(lo, hi), label="depth")))
    return NetSpec(input_shape=shape, layers=layers, num_classes=2, batch=draw(st.integers(1, max_batch), label="batch"),
                   **_neuron_values(draw, ranges, _layer_kwargs(draw, ranges, len(layers)), shape, layers, neurons))


@st.composite
def mixed_nets(draw: st.DrawFn, ranges: Ranges = WIDE, *, depth: tuple[int, int] = (1, 2), max_batch: int = 2,
               neurons: str = "shared") -> NetSpec:
    """A conv spiking layer (stride 1), optionally 2x2 average pooling, then ``depth`` dense spiking layers of width 2-3.

    Exercises what one-kind nets do not: a dense layer whose W^l has pooling folded in and reads
    spikes (T4's terms for l >= 2), a conv layer that is not last, and m_l > 1 before a dense
    layer. At most 277 parameters.
    """
    lo, hi = _depth(depth, 2)
    shape = _image(draw)
    conv = f"conv:{draw(st.integers(1, 2), label='C')}:{draw(st.integers(2, 3), label='k')}:1"
    pool = ("pool:2",) if draw(st.booleans(), label="pool") else ()
    widths = draw(st.lists(st.integers(2, 3), min_size=lo, max_size=hi), label="widths")
    layers = (conv, *pool, *(f"dense:{n}" for n in widths))
    return NetSpec(input_shape=shape, layers=layers, num_classes=2, batch=draw(st.integers(1, max_batch), label="batch"),
                   **_neuron_values(draw, ranges, _layer_kwargs(draw, ranges, 1 + len(widths)), shape, layers, neurons))


KINDS = ("dense", "conv", "mixed")
_STRATEGIES = {"dense": dense_nets, "conv": conv_nets, "mixed": mixed_nets}


def nets(kind: str, ranges: Ranges = WIDE, neurons: str = "shared") -> st.SearchStrategy[NetSpec]:
    """The strategy of one kind of network ('dense', 'conv' or 'mixed') over ``ranges``, with default depths;
    ``neurons`` as in :func:`dense_nets`."""
    if kind not in _STRATEGIES:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return _STRATEGIES[kind](ranges, neurons=neurons)


@st.composite
def event_batches(draw: st.DrawFn, input_shape: tuple[int, ...], T: int, num_classes: int, ranges: Ranges = WIDE, *,
                  max_batch: int = 3) -> EventSpec:
    """Probe batches for a model of your own: x in [0, x_inf] (ranges.x_inf) with sparse zeros, labels in [0, C)."""
    return EventSpec(input_shape=tuple(input_shape), T=T, num_classes=num_classes,
                     x_inf=draw(st.floats(*ranges.x_inf), label="x_inf"),
                     zero_frac=draw(st.sampled_from(ranges.zero_fracs), label="zero_frac"),
                     batch=draw(st.integers(1, max_batch), label="batch"), seed=draw(st.integers(0, 2**31 - 1), label="seed"))


_F = TypeVar("_F", bound=Callable)


def one_thread(check: _F) -> _F:
    """Run ``check`` with one intra-op torch thread (restored after).

    The tensors here are tiny: a second thread saves nothing, and on a shared, busy CPU every
    parallel region waits for a descheduled thread (measured: exact Hessians of 25-parameter nets
    0.4-2 s with 2 threads on 2 loaded cores, 2-4 ms with 1).
    """
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]
