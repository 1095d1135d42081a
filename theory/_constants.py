"""The model constants that the bounds of THEORY.md take (A1-A3 and the T4 conv geometry)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from theory.scalar import RESETS

MODES = ("smooth", "hard")
KINDS = ("dense", "conv")

_PER_LAYER_FLOATS = ("R", "R_inf", "b_inf", "b_norm")
_SCALAR_FLOATS = ("R_o", "A", "X_inf")


def _bad(name: str, expected: str, got: object, fix: str) -> ValueError:
    return ValueError(f"ModelConstants.{name}: expected {expected}, got {got!r}; {fix}")


def _real(name: str, x: object, *, nonneg: bool) -> float:
    if isinstance(x, bool) or not isinstance(x, Real) or not math.isfinite(float(x)) or (nonneg and float(x) < 0):
        raise _bad(name, "a finite real" + (" >= 0" if nonneg else ""), x, "pass a plain number")
    return float(x)


def _count(name: str, x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, Integral) or int(x) < 1:
        raise _bad(name, "an integer >= 1", x, "pass a positive int")
    return int(x)


@dataclass(frozen=True)
class ModelConstants:
    """A1-A3, T4: the constants of one model (D spiking layers), with the symbols of THEORY.md.

    Per-layer fields are tuples of length D (lists are converted). A1 itself
    (0 <= lam < 1, theta > 0, beta > 0) is not enforced here: a violation is
    reported by ``assumption_A1`` and the bounds, not raised.

    lam, theta, beta: leak, threshold, surrogate steepness; lam and theta are one number for
    every layer or one per spiking layer (lam_l, theta_l); neurons: optionally, per layer the
    distinct (lam, theta) pairs of its neurons, where a model has per-neuron values (lam and
    theta must then be the per-layer maxima); the statements take the sup over a layer's pairs
    (``pairs``); reset: 'zero' | 'subtract';
    T: number of time steps; n: neurons per spiking layer (n_1..n_D); n_0: input dim;
    R: ||W^l|| (operator 2-norm); R_inf: ||W^l||_inf (largest absolute row sum; conv:
    largest per-output-channel sum of |kernel|); b_inf: ||b^l||_inf; b_norm: ||b^l|| (r_l);
    R_o: ||W^o||; A: bound on ||x_t||; X_inf: bound on the input entries x_{t,i} in [0, X_inf].
    kinds: 'dense' | 'conv' per layer (default all dense); m: m_l of T4, defined by
    m_l^2 = the largest number of output positions whose receptive field holds one input
    element (so m_l <= ceil(k/s) for a 2-D square kernel k, stride s; 1 for dense);
    P: number of output positions (1 for dense). mode: 'smooth' | 'hard' forward pass;
    max_pool: the model uses max pooling (T3-T5 are then not applicable).
    """

    lam: float | tuple[float, ...]
    theta: float | tuple[float, ...]
    beta: float
    reset: str
    T: int
    n: tuple[int, ...]
    n_0: int
    R: tuple[float, ...]
    R_inf: tuple[float, ...]
    b_inf: tuple[float, ...]
    b_norm: tuple[float, ...]
    R_o: float
    A: float
    X_inf: float
    kinds: tuple[str, ...] | None = None
    m: tuple[float, ...] | None = None
    P: tuple[int, ...] | None = None
    mode: str = "smooth"
    max_pool: bool = False
    neurons: tuple[tuple[tuple[float, float], ...], ...] | None = None

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        put("beta", _real("beta", self.beta, nonneg=False))
        if self.reset not in RESETS:
            raise _bad("reset", "'zero' or 'subtract'", self.reset, "pass reset='zero' (the default of THEORY.md) or 'subtract'")
        if self.mode not in MODES:
            raise _bad("mode", "'smooth' or 'hard'", self.mode, "pass mode='smooth' or 'hard'")
        if not isinstance(self.max_pool, bool):
            raise _bad("max_pool", "a bool", self.max_pool, "pass True or False")
        put("T", _count("T", self.T))
        put("n_0", _count("n_0", self.n_0))
        if isinstance(self.n, (str, bytes)) or not hasattr(self.n, "__len__") or len(self.n) == 0:
            raise _bad("n", "a non-empty sequence of layer widths", self.n, "pass e.g. n=(128,) for one spiking layer")
        D = len(self.n)
        put("n", tuple(_count(f"n[{i}]", x) for i, x in enumerate(self.n)))
        if self.kinds is None:
            put("kinds", ("dense",) * D)
        if self.m is None:
            put("m", (1.0,) * D)
        if self.P is None:
            put("P", (1,) * D)
        for name in (*_PER_LAYER_FLOATS, "kinds", "m", "P"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != D:
                raise _bad(name, f"a sequence of length D = len(n) = {D}", value, "give one entry per spiking layer")
        for name in _PER_LAYER_FLOATS:
            put(name, tuple(_real(f"{name}[{i}]", x, nonneg=True) for i, x in enumerate(getattr(self, name))))
        for name in _SCALAR_FLOATS:
            put(name, _real(name, getattr(self, name), nonneg=True))
        put("kinds", tuple(self.kinds))
        put("m", tuple(_real(f"m[{i}]", x, nonneg=True) for i, x in enumerate(self.m)))
        put("P", tuple(_count(f"P[{i}]", x) for i, x in enumerate(self.P)))
        for i, (kind, m, P) in enumerate(zip(self.kinds, self.m, self.P)):
            if kind not in KINDS:
                raise _bad(f"kinds[{i}]", "'dense' or 'conv'", kind, "pass kinds=('dense', 'conv', ...)")
            if kind == "dense" and (m != 1.0 or P != 1):
                raise _bad(f"m[{i}], P[{i}]", "m = 1 and P = 1 for a dense layer", (m, P), "drop them or mark the layer 'conv'")
            if kind == "conv" and m < 1.0:
                raise _bad(f"m[{i}]", "m >= 1 for a conv layer (m^2 counts output positions)", m, "pass sqrt of that count")
        for name in ("lam", "theta"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                put(name, _real(name, value, nonneg=False))
            elif len(value) != D:
                raise _bad(name, f"a number or a sequence of length D = len(n) = {D}", value, "give one entry per spiking layer")
            else:
                put(name, tuple(_real(f"{name}[{i}]", x, nonneg=False) for i, x in enumerate(value)))
        if self.neurons is None:
            put("neurons", tuple(((self.layer_lam(l), self.layer_theta(l)),) for l in range(D)))
        else:
            if isinstance(self.neurons, (str, bytes)) or not hasattr(self.neurons, "__len__") or len(self.neurons) != D:
                raise _bad("neurons", f"a sequence of length D = len(n) = {D}", self.neurons, "give the (lam, theta) pairs of every spiking layer")
            pairs = []
            for l, layer in enumerate(self.neurons):
                try:
                    layer = tuple((_real(f"neurons[{l}] lam", a, nonneg=False), _real(f"neurons[{l}] theta", b, nonneg=False))
                                  for a, b in layer)
                except (TypeError, ValueError) as e:
                    raise _bad(f"neurons[{l}]", "(lam, theta) pairs", self.neurons[l], "give pairs of numbers") from e
                if not layer:
                    raise _bad(f"neurons[{l}]", "at least one (lam, theta) pair", layer, "give the pairs of the layer's neurons")
                if (max(a for a, _ in layer), max(b for _, b in layer)) != (self.layer_lam(l), self.layer_theta(l)):
                    raise _bad(f"lam[{l}], theta[{l}]", "the largest lam and theta of neurons[l]",
                               (self.layer_lam(l), self.layer_theta(l)), "pass the per-layer maxima of the pairs")
                pairs.append(tuple(sorted(set(layer))))
            put("neurons", tuple(pairs))

    def layer_lam(self, l: int) -> float:
        """lam_l of spiking layer l (0-based): its largest neuron leak."""
        return self.lam if isinstance(self.lam, float) else self.lam[l]

    def layer_theta(self, l: int) -> float:
        """theta_l of spiking layer l (0-based): its largest neuron threshold."""
        return self.theta if isinstance(self.theta, float) else self.theta[l]

    @property
    def D(self) -> int:
        """Number of spiking layers."""
        return len(self.n)
