"""Compiled loops for the fast path (``kernels.c``): the LIF recurrence in one pass over a layer's (B, T, N)
state instead of several small torch ops per time step, and the average pooling of the spikes.

On a CPU the recurrence of a conv SNN costs more in per-step dispatch than in arithmetic: each step of
each layer runs about seven elementwise torch ops forward, and the backward several passes more, each
over a (B, N) slice. The loops make one pass, on torch's own OpenMP threads (:mod:`sast.native._build`).
``sast._fast`` calls them for plain float32 and float64 CPU tensors where the library is available, and
its torch ops otherwise (a GPU, another dtype, batched gradients, no C compiler, ``SAST_NATIVE=off``);
tests/unit/test_native.py checks both against each other and tests/unit/test_fast_path.py runs on both.

In smooth mode the results equal the torch ops' to within a few units in the last place, not bit for
bit (the sigmoid's exp is kernels.c's own); the hard and HFSB forwards and the pooling are bit-equal. The
results are the same bit for bit however a batch is split over threads and on every machine (no fused
multiply-adds, no fast-math). ``SAST_NATIVE``: ``auto`` (or unset; use the loops where the library
builds), ``off`` (torch ops only), ``require`` (fail where the library does not build: for tests and
benchmarks that must time it); another value is refused (ValueError: exit 2 from a command line).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch._C import _functorch

from sast.native._build import BuildError, build
from sast._env import env_choice

__all__ = ["ENV", "adjoint", "adjoint_backward", "available", "avg_pool", "avg_unpool", "channels_last", "check_setting",
           "forward", "setting", "status", "supports"]

ENV = "SAST_NATIVE"
_CHOICES = ("auto", "off", "require")
MIN_PER_THREAD = 1 << 16
"""Elements of state per thread below which a call runs on one thread (a thread's start costs ~20 us)."""

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, Any] = {}
_pool: ThreadPoolExecutor | None = None

_F = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}


def _choice() -> str:
    return env_choice(ENV, _CHOICES)


def check_setting() -> str:
    """The value of ``SAST_NATIVE`` (auto where unset); ValueError for any other value. The command lines call it
    before their work, so a mistyped value is refused (exit 2) before a run folder is made."""
    return _choice()


def _library() -> ctypes.CDLL | None:
    """The loaded library (built at the first call of the process), or None where it is off or cannot be built."""
    choice = _choice()
    if choice == "off":
        return None
    with _lock:
        if "lib" not in _state:
            try:
                lib, path = build()
                _declare(lib)
                openmp = bool(lib.sast_openmp())
                _state.update(lib=lib, openmp=openmp, status=f"built ({path}; {'OpenMP' if openmp else 'no OpenMP'})")
            except BuildError as e:
                _state.update(lib=None, status=f"unavailable: {e}")
                _log.info("sast.native: %s; the torch ops run instead", e)
    if choice == "require" and _state["lib"] is None:
        raise RuntimeError(f"{ENV}=require, but the compiled LIF loops are {_state['status']}")
    return _state["lib"]


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.sast_openmp.argtypes, lib.sast_openmp.restype = [], cint
    for suffix, real in _F.values():
        getattr(lib, f"sast_exp_{suffix}").argtypes = [p, p, i64]
        getattr(lib, f"sast_lif_forward_{suffix}").argtypes = [p, p, p, i64, i64, i64, i64, p, p, real, cint, cint,
                                                               cint]
        getattr(lib, f"sast_lif_adjoint_{suffix}").argtypes = [p, p, p, p, p, i64, i64, i64, i64, p, p, real, cint,
                                                               cint, cint]
        getattr(lib, f"sast_lif_adjoint_backward_{suffix}").argtypes = [p, p, p, p, p, p, p, p, p, i64, i64, i64, i64,
                                                                        p, p, real, cint, cint]
        for name in ("sast_avg_pool", "sast_avg_unpool"):
            getattr(lib, f"{name}_{suffix}").argtypes = [p, p, i64, i64, i64, i64, i64, cint]
            getattr(lib, f"{name}_nhwc_{suffix}").argtypes = [p, p, i64, i64, i64, i64, i64, i64, cint]
        for name in ("sast_exp", "sast_lif_forward", "sast_lif_adjoint", "sast_lif_adjoint_backward", "sast_avg_pool",
                     "sast_avg_unpool", "sast_avg_pool_nhwc", "sast_avg_unpool_nhwc"):
            getattr(lib, f"{name}_{suffix}").restype = None


@contextmanager
def setting(choice: str) -> Iterator[None]:
    """``SAST_NATIVE=choice`` inside the block (the environment variable itself, so for the whole process), for
    benchmarks and tests that time or check both paths in one process."""
    if choice not in _CHOICES:
        raise ValueError(f"{ENV}={choice!r}: expected one of {', '.join(_CHOICES)}")
    before = os.environ.get(ENV)
    os.environ[ENV] = choice
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def status() -> str:
    """One line: whether the compiled loops are in use here, and where the library lies or why not."""
    try:
        if _choice() == "off":
            return f"off ({ENV}=off)"
        _library()
    except (ValueError, RuntimeError) as e:
        return str(e)
    return _state["status"]


def available() -> bool:
    """Whether the compiled loops run here (building them at the first call)."""
    return _library() is not None


def _plain(t: Tensor) -> bool:
    """A strided CPU tensor with storage of its own: not batched by vmap (legacy or torch.func), not a subclass."""
    return (type(t) is torch.Tensor or isinstance(t, torch.nn.Parameter)) and t.layout == torch.strided \
        and not _functorch.is_batchedtensor(t) and not _functorch.is_legacy_batchedtensor(t)


def supports(*tensors: Tensor | None) -> bool:
    """Whether the loops take these tensors (plain CPU tensors, float32 or float64, one dtype, not empty) and the
    library is available. Batched gradients (``autograd.grad(..., is_grads_batched=True)``, the vectorised
    Jacobians of torch.autograd.functional) reach the fast path's backward as batched tensors: torch ops."""
    given = [t for t in tensors if t is not None]
    if not given or any(t.device.type != "cpu" or t.dtype not in _F or t.dtype != given[0].dtype or t.numel() == 0
                        or not _plain(t) for t in given):
        return False
    return _library() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _per_neuron(value: float | Tensor, layout: "_Layout", like: Tensor) -> Tensor:
    """lam or theta, one entry per neuron in the memory order of the state (``layout``)."""
    n = layout.n
    if isinstance(value, Tensor):
        flat = value.detach().to(dtype=like.dtype, device=like.device).reshape(-1)
        if flat.numel() != n:
            raise ValueError(f"per-neuron value of {flat.numel()} entries for a layer of {n} neurons")
        return layout.neurons(flat)
    return torch.full((n,), float(value), dtype=like.dtype, device=like.device)


class _Layout:
    """The memory order of a layer's (B, T, ...) state: the loops run over its storage as (B, T, N), whatever order
    the neuron dimensions lie in (a conv layer's channels-last currents: (B, T, C, H, W) stored as (B, T, H, W, C)).

    ``perm`` orders the dimensions by their strides, B and T first; a tensor that is not dense in that order is
    copied into it. Every tensor of one call is brought into the order of the first (a copy only where its layout
    differs), and results are made in it and returned with the given shape (so with the first one's strides)."""

    def __init__(self, ref: Tensor) -> None:
        dims = sorted(range(2, ref.dim()), key=lambda d: -ref.stride(d))  # stable: ties (size-1 dims) keep order
        perm = (0, 1, *dims)
        if not ref.permute(perm).is_contiguous():
            perm = tuple(range(ref.dim()))
        self.perm = perm
        self.inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
        self.shape = tuple(ref.shape)
        self.n = ref[0, 0].numel()

    def take(self, t: Tensor | None) -> Tensor | None:
        """t (of the reference's shape) in this order, contiguous: a view where its layout is the reference's."""
        return None if t is None else t.permute(self.perm).contiguous()

    def empty(self, like: Tensor) -> Tensor:
        """A new state tensor in this order (``like``: a tensor returned by :meth:`take`)."""
        return torch.empty_like(like, memory_format=torch.contiguous_format)

    def give(self, t: Tensor | None) -> Tensor | None:
        """A tensor made in this order, as the reference's shape (a view)."""
        return None if t is None else t.permute(self.inverse)

    def neurons(self, flat: Tensor) -> Tensor:
        """Per-neuron values in the logical (C order) of the neuron shape, rearranged into this order."""
        neuron_shape = self.shape[2:]
        order = tuple(d - 2 for d in self.perm[2:])
        return flat.reshape(neuron_shape).permute(order).contiguous().reshape(-1)


def _split(fn: Any, batch: int, numel: int, before: tuple, after: tuple) -> None:
    """fn(*before, b0, b1, *after, nth) over [0, batch) on k = up to torch.get_num_threads() threads: OpenMP's inside
    the library (nth = k), or where it has none, k calls on a pool of Python threads (ctypes drops the GIL)."""
    global _pool
    k = max(1, min(torch.get_num_threads(), batch, numel // MIN_PER_THREAD))
    if k == 1 or _state["openmp"]:
        fn(*before, 0, batch, *after, k)
        return
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sast-native")
    cuts = [batch * i // k for i in range(k + 1)]
    futures = [_pool.submit(fn, *before, b0, b1, *after, 1) for b0, b1 in zip(cuts, cuts[1:]) if b1 > b0]
    for f in futures:
        f.result()


def _shape(x: Tensor) -> tuple[int, int, int]:
    return x.shape[0], x.shape[1], x[0, 0].numel()


def forward(currents: Tensor, lam: float | Tensor, theta: float | Tensor, beta: float, reset: str,
            mode: str) -> tuple[Tensor, Tensor]:
    """(u, s) of the LIF recurrence over all T (``sast.neuron.lif``'s arguments), in the layout of ``currents``
    (:class:`_Layout`); call where :func:`supports`."""
    lib = _library()
    layout = _Layout(currents)
    cur = layout.take(currents.detach())
    B, T, N = _shape(cur)
    u, s = layout.empty(cur), layout.empty(cur)
    lam_n, theta_n = _per_neuron(lam, layout, cur), _per_neuron(theta, layout, cur)
    suffix, real = _F[cur.dtype]
    _split(getattr(lib, f"sast_lif_forward_{suffix}"), B, cur.numel(), (_ptr(cur), _ptr(u), _ptr(s)),
           (T, N, _ptr(lam_n), _ptr(theta_n), real(beta), int(reset != "zero"), _MODES[mode]))
    return layout.give(u), layout.give(s)


_MODES = {"smooth": 0, "hard": 1, "hfsb": 2}


def adjoint(u: Tensor, s: Tensor, gu: Tensor | None, gs: Tensor | None, lam: float | Tensor, theta: float | Tensor,
            beta: float, reset: str, mode: str) -> Tensor:
    """dI of the recurrence for incoming gu = dL/du, gs = dL/ds (either may be None, not both; gs is ignored in
    hard mode, where the caller passes gu)."""
    lib = _library()
    layout = _Layout(u)
    u, s, gu = layout.take(u), layout.take(s), layout.take(gu)
    gs = None if mode == "hard" else layout.take(gs)
    B, T, N = _shape(u)
    d = layout.empty(u)
    lam_n, theta_n = _per_neuron(lam, layout, u), _per_neuron(theta, layout, u)  # held here: the loops read them
    suffix, real = _F[u.dtype]
    _split(getattr(lib, f"sast_lif_adjoint_{suffix}"), B, u.numel(), (_ptr(u), _ptr(s), _ptr(gu), _ptr(gs), _ptr(d)),
           (T, N, _ptr(lam_n), _ptr(theta_n), real(beta), int(reset != "zero"), _MODES[mode]))
    return layout.give(d)


def adjoint_backward(u: Tensor, s: Tensor, gs: Tensor | None, d: Tensor, e: Tensor, lam: float | Tensor,
                     theta: float | Tensor, beta: float, reset: str, want_gs: bool
                     ) -> tuple[Tensor | None, Tensor, Tensor, Tensor | None]:
    """The smooth adjoint's backward for an incoming e = dL/dd: (dL/du or None for subtract, dL/ds, dL/dgu,
    dL/dgs or None unless ``want_gs``); see ``sast._fast._LIFAdjoint``."""
    lib = _library()
    layout = _Layout(u)
    u, s, d, e, gs = (layout.take(t) for t in (u, s, d, e, gs))
    B, T, N = _shape(u)
    zero = reset == "zero"
    g_u = layout.empty(u) if zero else None
    g_s, a = layout.empty(u), layout.empty(u)
    g_gs = layout.empty(u) if want_gs else None
    lam_n, theta_n = _per_neuron(lam, layout, u), _per_neuron(theta, layout, u)
    suffix, real = _F[u.dtype]
    _split(getattr(lib, f"sast_lif_adjoint_backward_{suffix}"), B, u.numel(),
           (_ptr(u), _ptr(s), _ptr(gs), _ptr(d), _ptr(e), _ptr(g_u), _ptr(g_s), _ptr(a), _ptr(g_gs)),
           (T, N, _ptr(lam_n), _ptr(theta_n), real(beta), int(not zero)))
    return layout.give(g_u), layout.give(g_s), layout.give(a), layout.give(g_gs)


def channels_last(x: Tensor) -> bool:
    """Whether x (M, C, H, W) lies in channels-last order and not also in the plain one (then the plain loops run)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def avg_pool(x: Tensor, k: int) -> Tensor:
    """torch's ``avg_pool2d(x, k)`` of x (M, C, H, W): k x k windows, stride k, remainders dropped. A channels-last
    x gives a channels-last result (as torch's); any other layout, a contiguous one."""
    lib = _library()
    M, C, H, W = x.shape
    if channels_last(x):
        y = torch.empty(M, C, H // k, W // k, dtype=x.dtype, memory_format=torch.channels_last)
        _split(getattr(lib, f"sast_avg_pool_nhwc_{_F[x.dtype][0]}"), M, x.numel(), (_ptr(x), _ptr(y)), (H, W, C, k))
        return y
    x = x.contiguous()
    y = x.new_empty(M, C, H // k, W // k)
    _split(getattr(lib, f"sast_avg_pool_{_F[x.dtype][0]}"), M * C, x.numel(), (_ptr(x), _ptr(y)), (H, W, k))
    return y


def avg_unpool(g: Tensor, k: int, size: tuple[int, int], channels_last: bool = False) -> Tensor:
    """The adjoint of :func:`avg_pool`: g (M, C, H // k, W // k) spread as g / k^2 over each window of an
    (M, C, H, W) tensor, ``size`` = (H, W); 0 in the dropped rows and columns. ``channels_last``: the result in
    that order (as the pooled tensor lay), else contiguous."""
    lib = _library()
    M, C = g.shape[:2]
    H, W = size
    if channels_last:
        g = g.contiguous(memory_format=torch.channels_last)
        x = torch.empty(M, C, H, W, dtype=g.dtype, memory_format=torch.channels_last)
        _split(getattr(lib, f"sast_avg_unpool_nhwc_{_F[g.dtype][0]}"), M, x.numel(), (_ptr(g), _ptr(x)),
               (H, W, C, k))
        return x
    g = g.contiguous()
    x = g.new_empty(M, C, H, W)
    _split(getattr(lib, f"sast_avg_unpool_{_F[g.dtype][0]}"), M * C, x.numel(), (_ptr(g), _ptr(x)), (H, W, k))
    return x


def exp(x: Tensor) -> Tensor:
    """lif.c's exp, elementwise (for the accuracy test): x a contiguous float32 or float64 CPU tensor."""
    lib = _library()
    x = x.contiguous()
    y = torch.empty_like(x)
    getattr(lib, f"sast_exp_{_F[x.dtype][0]}")(_ptr(x), _ptr(y), x.numel())
    return y
