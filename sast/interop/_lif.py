"""A NIR LIF node at a time step dt, as the toolkit's neuron: lambda, theta, an input gain and a leak bias.

NIR's LIF is continuous: tau dv/dt = (v_leak - v) + r I, a spike when v > v_threshold, then v <- v_reset.
One forward-Euler step of length dt, as snnTorch, Norse and SpikingJelly take it, gives

    v_t = (1 - dt/tau) v_{t-1} + (r dt/tau) I_t + (dt/tau) v_leak,

the toolkit's recurrence (THEORY.md, "The model") u_t = lam u_{t-1} + W' a_t + b' with

    lam = 1 - dt/tau,   g = r dt/tau,   W' = g W,   b' = g b + (dt/tau) v_leak,   theta = v_threshold.

So the gain and the leak are folded into the weight layer before the LIF, exactly (per output neuron, or per
channel for a convolution, where they must then be the same over the channel's positions). lambda and theta are
the layer's own (THEORY.md's lam_l, theta_l): one number where every neuron has the same to float32 rounding,
else one per neuron. The reset is not in the file (NIR's v_reset is a value, and snnTorch writes 0 whatever its
reset mechanism): the caller names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sast.interop._common import FLOAT32_TOL, NIRImportError

FIELDS = ("tau", "r", "v_leak", "v_threshold", "v_reset")


@dataclass(frozen=True)
class LIFMap:
    """One LIF node in the toolkit's terms; ``gain`` and ``leak_bias`` have the layer's neuron shape; ``lam`` and
    ``theta`` are one number, or a list of one per neuron in row-major order (as ``SNNConfig`` takes them)."""

    lam: float | list[float]
    theta: float | list[float]
    gain: np.ndarray  # g = r dt / tau, exactly 1.0 where it is 1 up to float32 rounding
    leak_bias: np.ndarray  # (dt / tau) v_leak


def param(node: Any, field: str, shape: tuple[int, ...], label: str) -> np.ndarray:
    """``node.field`` as a float64 array of the layer's neuron ``shape`` (a scalar or a broadcastable array counts)."""
    value = getattr(node, field, None)
    if value is None:
        raise NIRImportError(f"{label}: has no {field}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NIRImportError(f"{label}: {field} is not an array of numbers") from None
    if not np.isfinite(arr).all():
        raise NIRImportError(f"{label}: {field} holds non-finite values (NaN or infinity)")
    if arr.size == np.prod(shape) and arr.shape != shape:
        arr = arr.reshape(shape)  # (N,) stored for a (C, H, W) layer, or (N, 1): the same neurons in order
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise NIRImportError(f"{label}: {field} has shape {arr.shape}, but the layer before it has "
                             f"{shape} neurons") from None


def spread(values: np.ndarray) -> float:
    """max |v - v_0| / max(1, |v_0|): how far an array is from one value, relative."""
    flat = values.reshape(-1)
    return float(np.max(np.abs(flat - flat[0])) / max(1.0, abs(flat[0])))


def _one_or_each(values: np.ndarray) -> float | list[float]:
    """One number where all neurons share it to float32 rounding, else the per-neuron list."""
    flat = values.reshape(-1)
    return float(flat[0]) if spread(values) <= FLOAT32_TOL else [float(v) for v in flat]


def map_lif(node: Any, shape: tuple[int, ...], dt: float, label: str) -> LIFMap:
    """The toolkit's lambda, theta, gain and leak bias of a LIF ``node`` over neurons of ``shape`` at ``dt``.

    Refused (NIRImportError): non-finite or mis-shaped parameters, tau <= 0, a non-zero v_reset, and lambda
    outside [0, 1) or theta <= 0 in any neuron (assumption A1).
    """
    p = {f: param(node, f, shape, label) for f in FIELDS}
    tau = p["tau"]
    if (tau <= 0).any():
        raise NIRImportError(f"{label}: tau must be > 0, got min {tau.min():g}")
    if (p["v_reset"] != 0).any():
        bad = p["v_reset"][p["v_reset"] != 0].reshape(-1)[0]
        raise NIRImportError(f"{label}: v_reset = {bad:g}; the toolkit's neurons reset to 0 (or subtract theta)")
    lam = 1.0 - dt / tau
    outside = (lam < 0.0) | (lam >= 1.0)
    if outside.any():
        i = int(np.argmax(outside.reshape(-1)))
        where = "" if lam.size == 1 else f" in neuron {i}"
        raise NIRImportError(f"{label}: lambda = 1 - dt/tau = {lam.reshape(-1)[i]:.6g} (tau = {tau.reshape(-1)[i]:g}, "
                             f"dt = {dt:g}){where} lies outside [0, 1) (assumption A1); is dt right for this file?")
    theta = p["v_threshold"]
    if (theta <= 0).any():
        raise NIRImportError(f"{label}: v_threshold = {theta.min():g}; theta must be > 0 (assumption A1)")
    gain = p["r"] * dt / tau
    if np.all(np.abs(gain - 1.0) <= FLOAT32_TOL):
        gain = np.ones(shape)
    return LIFMap(lam=_one_or_each(lam), theta=_one_or_each(theta), gain=np.array(gain),
                  leak_bias=np.array(dt / tau * p["v_leak"]))
