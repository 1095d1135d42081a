"""Hypothesis strategies for tiny float64 SNNs, exact-derivative helpers, and the ratio log of the bound tests.

A drawn network is a plain :class:`NetSpec` (configuration, weight scales, input
range, seed): hypothesis prints it on failure, and ``spec.build()`` rebuilds the
same model, probe batch and labels bit for bit, so every counterexample is
reproducible from its printout alone.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from checks.constants import model_constants
from sast.model import SNN, SNNConfig
from theory import ModelConstants, state_interval_at

# Drawn ranges. Beta reaches 10 and theta 5 so that A4 fails in many draws (subtract:
# A4 <=> theta beta < 4(1 + lam)), and weight scales span 10^-1..10^1.3 around the
# 1/sqrt(fan_in) init, so that states reach far outside the soft band too.
LAM = (0.0, 0.99)
THETA = (0.05, 5.0)
BETA = (0.1, 10.0)
WEIGHT_LOG10 = (-1.0, 1.3)
BIAS_LOG10 = (-3.0, 0.5)
X_INF = (0.05, 4.0)
T_RANGE = (1, 8)

# A4's zero-reset kappa_l / gam_l are grid maxima plus a correction (theory.bounds._grid_sup).
# "default" is the production grid (h=None: up to 2^20 + 1 points per layer, ~0.3 s each);
# "fine" and "coarse" put 2^16 and 2^8 intervals on the widest I_l, which keeps the suite
# fast and, for "coarse", makes the correction term carry the bound (testing its rigour).
GRIDS = {"default": None, "fine": 2**16, "coarse": 2**8}


@dataclass(frozen=True)
class NetSpec:
    """One drawn network: everything needed to rebuild model, probe batch x and labels y."""

    input_shape: tuple[int, ...]
    layers: tuple[str, ...]
    T: int
    lam: float
    theta: float
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
        shape = (self.batch, self.T, *self.input_shape)
        x = torch.rand(shape, generator=gen, dtype=torch.float64) * self.x_inf
        x = x * (torch.rand(shape, generator=gen, dtype=torch.float64) >= self.zero_frac)
        y = torch.randint(self.num_classes, (self.batch,), generator=gen)
        return Net(self, model, x, y)


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
        return torch.cat([p.detach().flatten() for p in self.model.parameters()])

    def loss_fn(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """w -> mean cross-entropy of the smooth model with parameters w (flat) on (x, y)."""
        x = self.x if x is None else x
        y = self.y if y is None else y
        named = [(n, p.shape) for n, p in self.model.named_parameters()]

        def f(w: torch.Tensor) -> torch.Tensor:
            params, i = {}, 0
            for name, shape in named:
                k = math.prod(shape)
                params[name] = w[i:i + k].view(shape)
                i += k
            z = torch.func.functional_call(self.model, params, (x,), {"mode": "smooth"})
            return F.cross_entropy(z, y)

        return f


def _layer_kwargs(draw: st.DrawFn, n_spiking: int, reset: str | None = None) -> dict:
    return dict(
        T=draw(st.integers(*T_RANGE), label="T"),
        lam=draw(st.floats(LAM[0], LAM[1], exclude_max=True), label="lam"),
        theta=draw(st.floats(*THETA), label="theta"),
        beta=draw(st.floats(*BETA), label="beta"),
        reset=reset or draw(st.sampled_from(["zero", "subtract"]), label="reset"),
        weight_log10=tuple(draw(st.floats(*WEIGHT_LOG10), label=f"weight_log10[{i}]") for i in range(n_spiking + 1)),
        bias_log10=draw(st.floats(*BIAS_LOG10), label="bias_log10"),
        x_inf=draw(st.floats(*X_INF), label="x_inf"),
        zero_frac=draw(st.sampled_from([0.0, 0.5, 0.9]), label="zero_frac"),
        grid=draw(st.sampled_from(["fine", "coarse", "fine", "default"]), label="grid"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )


@st.composite
def dense_nets(draw: st.DrawFn, max_batch: int = 3) -> NetSpec:
    """1-3 dense spiking layers of width 2-6 on inputs of dimension 2-6, both resets."""
    n_0 = draw(st.integers(2, 6), label="n_0")
    widths = draw(st.lists(st.integers(2, 6), min_size=1, max_size=3), label="widths")
    return NetSpec(input_shape=(n_0,), layers=tuple(f"dense:{n}" for n in widths),
                   num_classes=draw(st.integers(2, 4), label="num_classes"), batch=draw(st.integers(1, max_batch), label="batch"),
                   **_layer_kwargs(draw, len(widths)))


@st.composite
def conv_nets(draw: st.DrawFn, max_batch: int = 2) -> NetSpec:
    """One conv spiking layer (1-2 channels, kernel 2-3, stride 1-2, zero padding (k-1)//2) on (1-2, 4-6, 4-6) images.

    Two classes (the case where cross-entropy's Hessian bound 1/2 is attained, at p = 1/2) keep the
    parameter count below 200, so that exact Hessians stay cheap.
    """
    shape = (draw(st.integers(1, 2), label="C_in"), draw(st.integers(4, 6), label="H"), draw(st.integers(4, 6), label="W"))
    layer = f"conv:{draw(st.integers(1, 2), label='C')}:{draw(st.integers(2, 3), label='k')}:{draw(st.integers(1, 2), label='s')}"
    return NetSpec(input_shape=shape, layers=(layer,), num_classes=2,
                   batch=draw(st.integers(1, max_batch), label="batch"), **_layer_kwargs(draw, 1))


@st.composite
def mixed_nets(draw: st.DrawFn, max_batch: int = 2) -> NetSpec:
    """A conv spiking layer, optionally average pooling, then a dense spiking layer (2-4 neurons), both resets.

    Exercises what one-kind nets do not: a dense layer whose W^l has pooling folded in and reads
    spikes (T4's J_l terms, l >= 2), a conv layer that is not last, and m_l > 1 before a dense layer.
    """
    shape = (draw(st.integers(1, 2), label="C_in"), draw(st.integers(4, 6), label="H"), draw(st.integers(4, 6), label="W"))
    conv = f"conv:{draw(st.integers(1, 2), label='C')}:{draw(st.integers(2, 3), label='k')}:1"
    pool = draw(st.booleans(), label="pool")
    layers = (conv, "pool:2", f"dense:{draw(st.integers(2, 4), label='n')}") if pool else \
        (conv, f"dense:{draw(st.integers(2, 4), label='n')}")
    return NetSpec(input_shape=shape, layers=layers, num_classes=2,
                   batch=draw(st.integers(1, max_batch), label="batch"), **_layer_kwargs(draw, 2))


NETS = {"dense": dense_nets(), "conv": conv_nets(), "mixed": mixed_nets()}


def one_thread(check: Callable) -> Callable:
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

    return wrapper


# ---------------------------------------------------------------------------
# The ratio log: the largest estimate / bound per statement over the session
# (printed and written to test-artifacts/ by tests/property/conftest.py).

RATIOS: dict[str, dict] = {}
COUNTS: dict[str, int] = {}
_LOGGING = [True]


@contextlib.contextmanager
def log_paused() -> Iterator[None]:
    """Keep runs against a deliberately wrong bound (tests/property/test_planted_bug.py) out of the log."""
    _LOGGING[0] = False
    try:
        yield
    finally:
        _LOGGING[0] = True


def record(key: str, estimate: float, bound: float, spec: NetSpec) -> float:
    """Log estimate / bound under ``key`` (keeping the largest and its network); returns the ratio."""
    ratio = float(estimate) / float(bound) if bound > 0 else (0.0 if estimate <= 0 else math.inf)
    if not _LOGGING[0]:
        return ratio
    entry = RATIOS.setdefault(key, {"max": -math.inf, "n": 0, "estimate": None, "bound": None, "spec": None})
    entry["n"] += 1
    if ratio > entry["max"]:
        entry.update(max=ratio, estimate=float(estimate), bound=float(bound), spec=repr(spec))
    return ratio


def count(key: str) -> None:
    if _LOGGING[0]:
        COUNTS[key] = COUNTS.get(key, 0) + 1
