"""Spike functions and the LIF recurrence of THEORY.md ("The model").

Three spike modes share one recurrence:

- ``smooth``: spike(v) = sig_beta(v) = 1 / (1 + exp(-beta v)); the gradient is exact.
- ``hard``: spike(v) = H(v), strict (v = 0 does not fire); no useful gradient.
- ``hfsb``: hard forward, surrogate backward: H(v) in the forward pass and
  sig_beta'(v) = beta sig_beta(v) (1 - sig_beta(v)) in the backward pass.

The recurrence over time, for one layer with input currents I_t = W a_t + b:

    zero:      u_t = lam u_{t-1} (1 - s_{t-1}) + I_t
    subtract:  u_t = lam u_{t-1} - theta s_{t-1} + I_t
    s_t = spike(u_t - theta),  u_0 = s_0 = 0.

Everything here is pure (no in-place updates of tensors that autograd saved, no
Python branching on tensor values), so it works under torch.func transforms in
smooth mode.

``lif`` has two implementations that compute the same thing: the plain loop below
(the reference, used under torch.func transforms, forward-mode AD and
torch.compile) and the fast path of ``sast._fast`` (one autograd node for the
whole recurrence, bit-equal forward, exact gradients and double backward), used
otherwise. ``fast=False`` forces the plain loop.
"""

from __future__ import annotations

from typing import Literal

import torch

from sast import _fast

Mode = Literal["smooth", "hard", "hfsb"]
Reset = Literal["zero", "subtract"]
MODES: tuple[str, ...] = ("smooth", "hard", "hfsb")
RESETS: tuple[str, ...] = ("zero", "subtract")


def sigmoid_spike(v: torch.Tensor, beta: float) -> torch.Tensor:
    """sig_beta(v) = 1 / (1 + exp(-beta v)), the smooth spike."""
    return torch.sigmoid(beta * v)


def heaviside_spike(v: torch.Tensor) -> torch.Tensor:
    """H(v) = 1 if v > 0 else 0 (strict: v = 0 does not fire), in v's dtype."""
    return (v > 0).to(v.dtype)


class _HFSBSpike(torch.autograd.Function):
    """Heaviside forward, sig_beta' backward (the conventional surrogate gradient)."""

    @staticmethod
    def forward(v: torch.Tensor, beta: float) -> torch.Tensor:  # type: ignore[override]
        return heaviside_spike(v)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        v, beta = inputs
        ctx.save_for_backward(v)
        ctx.beta = beta

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.beta * v)
        return grad_out * ctx.beta * sig * (1 - sig), None


def hfsb_spike(v: torch.Tensor, beta: float) -> torch.Tensor:
    """H(v) in the forward pass, sig_beta'(v) in the backward pass."""
    return _HFSBSpike.apply(v, beta)


def spike(v: torch.Tensor, mode: str, beta: float) -> torch.Tensor:
    """The spike of ``mode`` applied to v = u - theta."""
    if mode == "smooth":
        return sigmoid_spike(v, beta)
    if mode == "hard":
        return heaviside_spike(v)
    if mode == "hfsb":
        return hfsb_spike(v, beta)
    raise ValueError(f"unknown spike mode {mode!r}: expected one of {', '.join(MODES)}")


_BUILTIN_SPIKE = spike  # what the fast path implements; tests may swap ``spike`` for another


def lif(
    currents: torch.Tensor,
    *,
    lam: float | torch.Tensor,
    theta: float | torch.Tensor,
    beta: float,
    reset: str,
    mode: str,
    fast: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the LIF recurrence over time for one layer.

    ``currents`` has shape (B, T, ...) and holds I_t = W a_t + b for all t. ``lam`` and ``theta``
    are numbers, or tensors of the neuron shape ``currents.shape[2:]`` (per-neuron values).
    Returns the membrane trace u and the spikes s, both of shape (B, T, ...).
    With ``fast`` (default) the fast path runs where it can (see the module
    docstring); it knows the built-in spike functions only, so a replaced
    ``spike`` (as tests do) always runs through the plain loop.
    """
    if reset not in RESETS:
        raise ValueError(f"unknown reset {reset!r}: expected one of {', '.join(RESETS)}")
    if mode not in MODES:
        raise ValueError(f"unknown spike mode {mode!r}: expected one of {', '.join(MODES)}")
    if fast and spike is _BUILTIN_SPIKE and _fast.usable():
        return _fast.lif(currents, lam=lam, theta=theta, beta=beta, reset=reset, mode=mode)
    return plain_lif(currents, lam=lam, theta=theta, beta=beta, reset=reset, mode=mode)


def plain_lif(
    currents: torch.Tensor, *, lam: float | torch.Tensor, theta: float | torch.Tensor, beta: float, reset: str,
    mode: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference LIF loop: one step at a time with autograd through every op (see ``lif``)."""
    us: list[torch.Tensor] = []
    ss: list[torch.Tensor] = []
    u = s = None
    for t in range(currents.shape[1]):
        i_t = currents[:, t]
        if u is None:  # u_0 = s_0 = 0: the first step is the current alone
            u = i_t
        elif reset == "zero":
            u = lam * u * (1 - s) + i_t
        else:
            u = lam * u - theta * s + i_t
        s = spike(u - theta, mode, beta)
        us.append(u)
        ss.append(s)
    return torch.stack(us, dim=1), torch.stack(ss, dim=1)
