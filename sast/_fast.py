"""The fast path of the model: the same numbers as the plain path, with less work.

Custom autograd Functions replace the plain ops where profiling showed the time goes:

- :func:`sparse_input_linear`: the first dense layer on event frames, I = x W^T + b, where x is
  mostly zeros (binned events: a few percent nonzero). The forward product and the weight
  gradient grad_W = G^T x both run over the nonzero entries of x only (``F.embedding_bag`` with
  per-sample weights: row r of the output sums v * W^T[c] over the nonzeros (r, c, v) of x; the
  weight gradient is the same operation over the nonzeros sorted by column, applied to G). The
  input gradient is never formed: the fast path is used only when x does not require grad.
- :func:`lif`: the LIF recurrence of THEORY.md over all T in one Function. The forward runs the
  same elementwise ops in the same order as ``sast.neuron``'s plain loop (so u and s are equal bit
  for bit), writing into two preallocated (B, T, ...) buffers instead of stacking T lists. The
  backward uses that the adjoint of the recurrence is linear in the adjoint: with sig'_t the spike
  derivative (beta s (1 - s) smooth, sig_beta'(u - theta) for HFSB, 0 hard),

      dI_t = d_t = G_t + M_t d_{t+1},   d_{T+1} = 0,
      G_t = gu_t + sig'_t gs_t,
      M_t = lam (1 - s_t) - lam u_t sig'_t   (zero)   or   lam - theta sig'_t   (subtract),

  where G and M are computed for all t at once (a few whole-tensor ops), so the loop over T is one
  multiply-add a step, in place, with no zero-filled buffer per step (see _adjoint_coefficients).
- :func:`avg_pool`: a conv net's pooling of the spikes, with its adjoint, as compiled loops.
- :func:`conv2d`: on a CPU, inside :func:`second_order`, a conv layer as one Function whose double backward
  (Hessian-vector products through the convolution) is convolutions and convolution gradients only
  (:class:`_Conv2dGradients`).
- :func:`conv_input`: on a CPU, a conv layer's input frames in channels-last order. Torch's CPU convolutions
  are faster in that order (measured on the conv step's second layer, 640 frames of 16 x 16 x 16 in float32:
  forward 1.56 against 2.03 ms, forward and backward 5.4 against 7.9 ms; in float64 on 160 frames, 1.75
  against 2.75 ms and 4.0 against 6.1 ms), their outputs come out channels-last, and the recurrence and the
  pooling run in the same order (:mod:`sast.native` takes any dense layout), so no layer reorders its state.
  The layout moves values in memory, not the operations on them (tests/unit/test_fast_path.py compares with
  the plain path in float64 and float32).

On a CPU, for float32 and float64, :mod:`sast.native` runs the recurrence's forward, its backward and the
adjoint's backward as compiled loops (one pass over the state each, on torch's OpenMP threads), and the
average pooling of conv layers with its adjoint; the formulas are the ones written here, and the torch ops
below run wherever the loops do not (a GPU, another dtype, batched gradients, no C compiler,
``SAST_NATIVE=off``). The loops' sigmoid has its own exp, so in smooth mode they agree with these ops to a
few units in the last place rather than bit for bit (tests/unit/test_native.py; tests/unit/test_fast_path.py
runs every test on both).

Exactness everywhere (the design choice): under ``create_graph=True`` both backwards are
differentiable functions of the Function's inputs, its outputs and the incoming gradients only
(never of intermediates that autograd cannot see): the sparse product's backward is the adjoint
product, itself a Function; the smooth LIF's is :class:`_LIFAdjoint`, one node whose own backward
(the second-order adjoint, what double-backward Hessian-vector products run) is written out; the
other modes' are out-of-place torch ops. So double-backward Hessian-vector products are exact
(gradcheck and gradgradcheck in tests/unit/test_fast_path.py). Without create_graph the LIF
backward runs the same formulas in place (fewer fresh buffers).
Under torch.func transforms (grad, jvp, vmap, forward-over-reverse HVPs), forward-mode AD and
torch.compile tracing, :func:`usable` is False and the caller runs the plain path, which those
transforms already handle (and which inductor fuses by itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C import _functorch
from torch.autograd import forward_ad

from sast import native

# The sparse first layer pays one pass over x to find its nonzeros; above this fraction of
# nonzeros a dense GEMM is cheaper on a CPU (measured on the 2312-256 layer: the sparse products
# cost about density x 10 of the dense ones, and the nonzero search about 0.1 of them).
SPARSE_MAX_DENSITY = 0.25


# Intra-op threads of the fast path's ops on a CPU (None: leave torch's setting). Its small ops
# (index bookkeeping over ~1e5 nonzeros; the per-step elementwise ops over B x N) run with
# CPU_THREADS: a parallel region saves microseconds on an idle CPU, but on a shared one it waits
# for a descheduled thread (measured on 2 busy cores: a stable sort of 1.2e5 indices took 185 ms
# with 2 threads, 1.3 ms with 1). Its heavy ops (the nonzero search over x, the sparse products,
# whole-tensor ops) run with HEAVY_THREADS: on 2 idle cores that took the demo step from 0.49 to
# 0.37 of the GEMM floor, where capping everything at 1 thread did not.
CPU_THREADS: int | None = 1
HEAVY_THREADS: int | None = None
# Ops on at most this many elements (a time step's slice, the nonzeros' indices) count as small:
# the demo's B x N = 32768 does; a batch of 1024 (262144 a step) gets every thread.
SMALL_OP_NUMEL = 1 << 17


@contextmanager
def _cpu_threads(device: torch.device, kind: str = "small") -> Iterator[None]:
    """Run the enclosed ops with :data:`CPU_THREADS` ("small") or :data:`HEAVY_THREADS` ("heavy")
    intra-op threads on a CPU; torch's setting is restored after."""
    before = torch.get_num_threads()
    n = CPU_THREADS if kind == "small" else HEAVY_THREADS
    if device.type != "cpu" or n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _functorch_active() -> bool:
    """Whether a torch.func transform (grad, vjp, jvp, vmap, ...) is running (private torch APIs)."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if active is not None:
        return bool(active())
    return _functorch.maybe_current_level() is not None


def _kind(numel: int) -> str:
    return "small" if numel <= SMALL_OP_NUMEL else "heavy"


def usable() -> bool:
    """True when the custom Functions may run: no torch.func transform, forward-mode AD or compile.

    torch.func's transforms and forward-mode AD need rules (vmap, jvp) that these Functions do
    not define; under torch.compile the plain ops are traced and fused instead.
    """
    if _functorch_active():
        return False
    if forward_ad._current_level >= 0:  # inside forward_ad.dual_level()
        return False
    return not torch.compiler.is_compiling()


def sparse_default(device: torch.device) -> bool:
    """Whether the first dense layer uses sparse products by default on ``device``.

    On a CPU the dense GEMM dominates a training step and the event frames are a few percent
    nonzero, so the sparse products win by ~5x. On a GPU the dense GEMM is fast and finding the
    nonzeros forces a device-host synchronisation, so the dense product is the default there
    (bench/gpu.sh measures both).
    """
    return device.type == "cpu"


# --------------------------------------------------------------------------- sparse first layer


class SparseRows:
    """The nonzeros (r, c, v) of a constant matrix x (M, K), in row order and (on demand) column order.

    Row order (as ``nonzero`` gives them): ``cols``, ``vals`` and ``rows_ptr`` (M,), the start of
    each row's run. Column order, for products with x^T: the same triples stably sorted by
    column (rows stay sorted within a column), made at the first :meth:`by_columns` and kept.
    """

    def __init__(self, idx: Tensor, vals: Tensor, shape: tuple[int, int]) -> None:
        m, k = shape
        self.shape = shape
        self.rows = torch.div(idx, k, rounding_mode="floor")
        self.cols = idx - self.rows * k
        self.vals = vals
        self.rows_ptr = torch.searchsorted(self.rows, torch.arange(m, device=idx.device))
        self._by_columns: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def nnz(self) -> int:
        return self.vals.numel()

    def by_columns(self) -> tuple[Tensor, Tensor, Tensor]:
        """(cols_ptr (K,), rows, vals) with the triples in column order."""
        if self._by_columns is None:
            cols, perm = torch.sort(self.cols, stable=True)
            ptr = torch.searchsorted(cols, torch.arange(self.shape[1], device=cols.device))
            self._by_columns = (ptr, self.rows.index_select(0, perm), self.vals.index_select(0, perm))
        return self._by_columns


class _SparseMatmul(torch.autograd.Function):
    """x @ w (w: (K, N)) or, with ``transpose``, x^T @ w (w: (M, N)), for a constant sparse x.

    Linear in w, and the two products are each other's adjoint, so the backward of one is the
    other: differentiable to any order (double backward records it like any op).
    Row i of x @ w is sum over x's nonzeros (i, c, v) of v w[c]: ``F.embedding_bag`` with
    per-sample weights computes exactly that, reading only the nonzeros.
    """

    @staticmethod
    def forward(w: Tensor, sp: SparseRows, transpose: bool) -> Tensor:  # type: ignore[override]
        with _cpu_threads(w.device, _kind(sp.nnz)):
            if transpose:
                ptr, idx, vals = sp.by_columns()
            else:
                ptr, idx, vals = sp.rows_ptr, sp.cols, sp.vals
        with _cpu_threads(w.device, "heavy"):
            return F.embedding_bag(idx, w.contiguous(), ptr, mode="sum", per_sample_weights=vals)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        _, ctx.sp, ctx.transpose = inputs
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad: Tensor | None):  # type: ignore[override]
        if grad is None:
            return None, None, None
        return _SparseMatmul.apply(grad, ctx.sp, not ctx.transpose), None, None


# Integer types of the same width: nonzero() on the bits runs ~2x faster than on floats on a CPU.
# Only -0.0 differs (nonzero bits); it is kept with the value -0.0, which adds nothing.
_SAME_WIDTH_INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                   torch.bfloat16: torch.int16}


def sparse_rows(x: Tensor) -> SparseRows | None:
    """x (..., K) as :class:`SparseRows` of its (M, K) reshape; None above :data:`SPARSE_MAX_DENSITY`."""
    k = x.shape[-1]
    flat = x.detach().reshape(-1)
    bits = flat.view(_SAME_WIDTH_INT[flat.dtype]) if flat.dtype in _SAME_WIDTH_INT else flat
    with _cpu_threads(x.device, "heavy"):
        idx = bits.nonzero().squeeze(1)
    with _cpu_threads(x.device, _kind(idx.numel())):
        if idx.numel() > SPARSE_MAX_DENSITY * flat.numel():
            return None
        return SparseRows(idx, flat.index_select(0, idx), (flat.numel() // k if k else 0, k))


def sparse_input_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """F.linear(x, weight, bias) for x (..., K) without grad, by products over x's nonzeros.

    I = x W^T + b with x W^T = :class:`_SparseMatmul` (x, W^T): its weight gradient is
    (x^T G)^T, the other product, and no input gradient is formed. Falls back to
    ``F.linear`` when x requires grad or has more than :data:`SPARSE_MAX_DENSITY` nonzeros.
    """
    if x.requires_grad:
        return F.linear(x, weight, bias)
    sp = sparse_rows(x)
    if sp is None:
        return F.linear(x, weight, bias)
    out = _SparseMatmul.apply(weight.t(), sp, False)
    if bias is not None:
        with _cpu_threads(out.device, "heavy"):
            out.add_(bias)  # in place: a fresh output, which the backward does not read
    return out.reshape(*x.shape[:-1], weight.shape[0])


# --------------------------------------------------------------------------- LIF recurrence


def _spike_derivative(u: Tensor, s: Tensor, theta: float | Tensor, beta: float, mode: str) -> Tensor | None:
    """sig'_t for all t: what the spike contributes to the gradient (None in hard mode)."""
    if mode == "smooth":  # s = sig(beta (u - theta)): sig' = beta s (1 - s), from the output
        return beta * s * (1 - s)
    if mode == "hfsb":  # H forward, sig_beta' backward: recomputed from u
        sig = torch.sigmoid(beta * (u - theta))
        return beta * sig * (1 - sig)
    return None


def _adjoint_coefficients(u: Tensor, s: Tensor, gu: Tensor | None, gs: Tensor | None, *, lam: float | Tensor,
                          theta: float | Tensor, beta: float, reset: str, mode: str) -> tuple[Tensor | None, Tensor]:
    """G_t and M_t of the adjoint recurrence d_t = G_t + M_t d_{t+1} (all t at once).

    With total adjoints du_t, ds_t: ds_t = gs_t + (du_{t+1}/ds_t) d_{t+1} and
    d_t = du_t = gu_t + sig'_t ds_t + (du_{t+1}/du_t|_s) d_{t+1}, where
    zero:      du_{t+1}/du_t|_s = lam (1 - s_t),  du_{t+1}/ds_t = -lam u_t
    subtract:  du_{t+1}/du_t|_s = lam,            du_{t+1}/ds_t = -theta
    so G_t = gu_t + sig'_t gs_t and M_t = lam (1 - s_t) - lam u_t sig'_t (zero) or
    lam - theta sig'_t (subtract). In hard mode s carries no gradient (sig' = 0).
    """
    dsig = _spike_derivative(u, s, theta, beta, mode)
    g = gu
    if gs is not None and dsig is not None:
        g = gs * dsig if g is None else g + gs * dsig
    if reset == "zero":
        m = lam * (1 - s)
        if dsig is not None:
            m = m - lam * u * dsig
    elif dsig is not None:
        m = lam - theta * dsig
    else:
        m = lam.expand_as(u) if isinstance(lam, Tensor) else torch.full_like(u, lam)
    return g, m





def _adjoint_coefficients_inplace(u: Tensor, s: Tensor, gu: Tensor | None, gs: Tensor | None, *, lam: float | Tensor,
                                  theta: float | Tensor, beta: float, reset: str,
                                  mode: str) -> tuple[Tensor | None, Tensor | float]:
    """:func:`_adjoint_coefficients` without autograd, in three fresh buffers instead of ~8.

    For the plain backward (no create_graph): each fresh (B, T, ...) temporary costs page faults
    on a CPU, which measured more than the arithmetic. M is returned as the float lam when it is
    that constant (subtract reset, hard mode; per-neuron lam: that tensor, expanded).
    tests/unit/test_fast_path.py checks both versions.
    """
    one_minus_s = torch.sub(1, s) if (reset == "zero" or mode == "smooth") else None
    dsig: Tensor | None = None
    if mode == "smooth":
        dsig = torch.mul(s, one_minus_s).mul_(beta)
    elif mode == "hfsb":
        dsig = torch.sub(u, theta).mul_(beta).sigmoid_()
        dsig.addcmul_(dsig, dsig, value=-1).mul_(beta)  # beta sig (1 - sig)
    g: Tensor | None = None
    if gs is not None and dsig is not None:
        g = torch.mul(gs, dsig)
        if gu is not None:
            g.add_(gu)
    elif gu is not None:
        g = gu.clone(memory_format=torch.contiguous_format)
    m: Tensor | float
    if reset == "zero":  # lam ((1 - s) - u sig')
        if dsig is not None:
            one_minus_s.sub_(dsig.mul_(u))
        m = one_minus_s.mul_(lam)
    else:  # lam - theta sig'
        if dsig is not None:
            m = dsig.mul_(-theta).add_(lam)
        else:
            m = lam.expand_as(u) if isinstance(lam, Tensor) else float(lam)
    return g, m


def _adjoint_inplace(u: Tensor, s: Tensor, gu: Tensor | None, gs: Tensor | None, kw: dict) -> Tensor | None:
    """dI of the LIF recurrence without autograd: G and M, then d_t = G_t + M_t d_{t+1} in place in G (or the
    compiled loop, one pass, where :mod:`sast.native` takes the tensors)."""
    if gu is None and (gs is None or kw["mode"] == "hard"):
        return None
    if native.supports(u, s, gu, gs):
        return native.adjoint(u, s, gu, gs, **kw)
    with _cpu_threads(u.device, "heavy"):
        g, m = _adjoint_coefficients_inplace(u, s, gu, gs, **kw)
    assert g is not None  # gu, or gs with a spike derivative (the early return above)
    with _cpu_threads(u.device, _kind(u[:, 0].numel())):
        for t in range(u.shape[1] - 2, -1, -1):
            if isinstance(m, float):
                g[:, t].add_(g[:, t + 1], alpha=m)
            else:
                g[:, t].addcmul_(m[:, t], g[:, t + 1])
    return g


class _LIF(torch.autograd.Function):
    """(u, s) = LIF(I) over all T: the recurrence of ``sast.neuron.lif`` as one autograd node."""

    @staticmethod
    def forward(currents: Tensor, lam: float | Tensor, theta: float | Tensor, beta: float, reset: str,  # type: ignore[override]
                mode: str) -> tuple[Tensor, Tensor]:
        if native.supports(currents):
            return native.forward(currents, lam, theta, beta, reset, mode)
        with _cpu_threads(currents.device, _kind(currents[:, 0].numel())):
            return _LIF._forward(currents, lam, theta, beta, reset, mode)

    @staticmethod
    def _forward(currents: Tensor, lam: float | Tensor, theta: float | Tensor, beta: float, reset: str,
                 mode: str) -> tuple[Tensor, Tensor]:
        # The same ops, in the same order, as the plain loop (bit-equal u and s), into buffers.
        u = torch.empty_like(currents, memory_format=torch.contiguous_format)
        s = torch.empty_like(u)
        tmp = torch.empty_like(u[:, 0])
        dec = torch.empty_like(tmp)
        for t in range(currents.shape[1]):
            i_t, u_t, s_t = currents[:, t], u[:, t], s[:, t]
            if t == 0:
                u_t.copy_(i_t)
            elif reset == "zero":  # lam * u * (1 - s) + i_t
                torch.mul(u[:, t - 1], lam, out=tmp)
                torch.sub(1, s[:, t - 1], out=dec)
                tmp.mul_(dec)
                torch.add(tmp, i_t, out=u_t)
            else:  # lam * u - theta * s + i_t
                torch.mul(u[:, t - 1], lam, out=tmp)
                torch.mul(s[:, t - 1], theta, out=dec)
                tmp.sub_(dec)
                torch.add(tmp, i_t, out=u_t)
            torch.sub(u_t, theta, out=tmp)  # v = u - theta
            if mode == "smooth":
                tmp.mul_(beta)
                torch.sigmoid(tmp, out=s_t)
            else:  # hard and hfsb fire H(v), strictly
                torch.gt(tmp, 0, out=s_t)
        return u, s

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        _, ctx.lam, ctx.theta, ctx.beta, ctx.reset, ctx.mode = inputs
        u, s = output
        ctx.save_for_backward(u, s)
        if ctx.mode == "hard":
            ctx.mark_non_differentiable(s)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, gu: Tensor | None, gs: Tensor | None):  # type: ignore[override]
        if ctx.mode == "hard":
            gs = None
        given = gu if gu is not None else gs
        if given is None:
            return None, None, None, None, None, None
        grad = _LIF._backward(ctx, gu, gs)
        return grad, None, None, None, None, None

    @staticmethod
    def _backward(ctx, gu: Tensor | None, gs: Tensor | None) -> Tensor | None:
        u, s = ctx.saved_tensors
        kw = dict(lam=ctx.lam, theta=ctx.theta, beta=ctx.beta, reset=ctx.reset, mode=ctx.mode)
        if torch.is_grad_enabled():  # create_graph=True: out-of-place ops, so autograd records them
            return _LIF._backward_differentiable(u, s, gu, gs, kw)
        return _adjoint_inplace(u, s, gu, gs, kw)

    @staticmethod
    def _backward_differentiable(u: Tensor, s: Tensor, gu: Tensor | None, gs: Tensor | None,
                                 kw: dict) -> Tensor | None:
        if kw["mode"] == "smooth":  # one node with its own backward (what double-backward HVPs go through)
            return _LIFAdjoint.apply(u, s, gu, gs, kw["lam"], kw["theta"], kw["beta"], kw["reset"])
        T = u.shape[1]
        with _cpu_threads(u.device, "heavy"):
            g, m = _adjoint_coefficients(u, s, gu, gs, **kw)
        if g is None:
            return None
        with _cpu_threads(u.device, _kind(u[:, 0].numel())):
            # unbind, not g[:, t]: the backward of T selects would fill T zero tensors of g's size
            g_t, m_t = g.unbind(1), m.unbind(1)
            d = g_t[T - 1]
            ds = [d]
            for t in range(T - 2, -1, -1):
                d = g_t[t] + m_t[t] * d
                ds.append(d)
        with _cpu_threads(u.device, "heavy"):
            return torch.stack(ds[::-1], dim=1)


class _LIFAdjoint(torch.autograd.Function):
    """dI = the smooth-mode adjoint of the LIF recurrence, as a function of (u, s, gu, gs): one autograd node.

    Forward: d_t = G_t + M_t d_{t+1} (d_T = 0) with G = gu + sig' gs, M = lam (1 - s) - lam u sig' (zero)
    or lam - theta sig' (subtract), sig' = beta s (1 - s): the in-place first-order backward, bit for bit.
    Backward, for an incoming e = dL/dd: the adjoint of that recurrence runs forward in time,
    a_0 = e_0, a_t = e_t + M_{t-1} a_{t-1}, so dL/dG = a and dL/dM_t = a_t d_{t+1} (0 at the last step);
    then the chain rule through G and M:

        dL/dgu = a,   dL/dgs = a sig',   dL/dsig' = a gs - lam u dL/dM (zero) or - theta dL/dM (subtract)
        dL/du  = -lam sig' dL/dM (zero; 0 for subtract),   dL/ds = -lam dL/dM (zero) + dL/dsig' beta (1 - 2 s)

    In place, about twenty passes over (B, T, ...) and one multiply-add a step, and the node keeps u, s,
    gs and d only, where autograd through the out-of-place formulas kept every operand of two dozen
    products: on the 3-conv-layer net of the README (64 samples, T 20) T4's double-backward graph holds
    0.5 GB instead of 1.1 GB (peak while it is built: 0.8 GB instead of 1.35 GB over the loaded process),
    at about the same time a product (0.8-1.0 s either way on 2 busy cores). Under create_graph (a third
    derivative) the backward runs the same formulas out of place, so autograd records them. gradcheck
    and gradgradcheck in tests/unit/test_fast_path.py.
    """

    @staticmethod
    def forward(u: Tensor, s: Tensor, gu: Tensor | None, gs: Tensor | None, lam: float | Tensor,  # type: ignore[override]
                theta: float | Tensor, beta: float, reset: str) -> Tensor:
        g = _adjoint_inplace(u, s, gu, gs, dict(lam=lam, theta=theta, beta=beta, reset=reset, mode="smooth"))
        assert g is not None  # the caller passes gu or gs
        return g

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        u, s, gu, gs, ctx.lam, ctx.theta, ctx.beta, ctx.reset = inputs
        ctx.has_gu, ctx.has_gs = gu is not None, gs is not None
        ctx.save_for_backward(u, s, gs, output)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, e: Tensor | None):  # type: ignore[override]
        if e is None:
            return None, None, None, None, None, None, None, None
        u, s, gs, d = ctx.saved_tensors
        lam, theta, beta, zero = ctx.lam, ctx.theta, ctx.beta, ctx.reset == "zero"
        batched = _functorch_active() or _functorch.is_batchedtensor(e) or _functorch.is_legacy_batchedtensor(e)
        if torch.is_grad_enabled() or batched:  # create_graph (a third derivative), or batched grad_outputs
            return _LIFAdjoint._backward_recorded(u, s, gs, d, e, ctx)  # (vmap): out of place
        if native.supports(u, s, gs, d, e):  # the formulas below, one compiled pass
            g_u, g_s, a, g_gs = native.adjoint_backward(u, s, gs, d, e, lam, theta, beta, ctx.reset, ctx.has_gs)
            return g_u, g_s, a if ctx.has_gu else None, g_gs, None, None, None, None
        T = u.shape[1]
        with _cpu_threads(u.device, "heavy"):  # in place: every pass over (B, T, ...) counts
            oms = torch.sub(1, s)
            dsig = torch.mul(s, oms).mul_(beta)
            if zero:  # M = lam (1 - s - u sig')
                m = torch.addcmul(oms, u, dsig, value=-1).mul_(lam)
            else:  # M = lam - theta sig'
                m = torch.mul(dsig, -theta).add_(lam)
            a = e.clone(memory_format=torch.contiguous_format)
            with _cpu_threads(u.device, _kind(u[:, 0].numel())):
                for t in range(1, T):
                    a[:, t].addcmul_(m[:, t - 1], a[:, t - 1])
            del m
            gm = torch.empty_like(a)
            torch.mul(a[:, :-1], d[:, 1:], out=gm[:, :-1])
            gm[:, -1].zero_()
            g_u = torch.mul(dsig, gm).mul_(-lam) if zero else None
            # dL/dsig' = a gs - lam u dL/dM (zero) or - theta dL/dM (subtract)
            g_sig = torch.mul(u, gm).mul_(-lam) if zero else torch.mul(gm, -theta)
            if gs is not None:
                g_sig.addcmul_(a, gs)
            g_s = g_sig.mul_(oms.sub_(s)).mul_(beta)  # dL/dsig' beta (1 - 2 s), in place
            if zero:
                g_s.sub_(gm.mul_(lam))
            g_gs = torch.mul(a, dsig) if ctx.has_gs else None
            g_gu = a if ctx.has_gu else None
        return g_u, g_s, g_gu, g_gs, None, None, None, None

    @staticmethod
    def _backward_recorded(u: Tensor, s: Tensor, gs: Tensor | None, d: Tensor, e: Tensor, ctx) -> tuple:
        """:meth:`backward`'s formulas out of place: for autograd to record (create_graph), and for vmap over
        batched grad_outputs (``is_grads_batched``, torch.func), which in-place and out= ops do not take."""
        lam, theta, beta, zero = ctx.lam, ctx.theta, ctx.beta, ctx.reset == "zero"
        T = u.shape[1]
        dsig = _spike_derivative(u, s, theta, beta, "smooth")
        _, m = _adjoint_coefficients(u, s, None, None, lam=lam, theta=theta, beta=beta, reset=ctx.reset, mode="smooth")
        m_t, e_t = m.unbind(1), e.unbind(1)  # m has u's shape (sig' enters it)
        rows = [e_t[0]]
        for t in range(1, T):
            rows.append(e_t[t] + m_t[t - 1] * rows[-1])
        a = torch.stack(rows, dim=1)
        a_t, d_t = a.unbind(1), d.unbind(1)  # per step, as vmap takes it (no empty slice when T = 1)
        gm = torch.stack([a_t[t] * d_t[t + 1] for t in range(T - 1)] + [torch.zeros_like(a_t[-1])], dim=1)
        g_sig = (a * gs if gs is not None else torch.zeros_like(a)) - (lam * u * gm if zero else theta * gm)
        g_u = -lam * dsig * gm if zero else None
        g_s = g_sig * (beta * (1 - 2 * s))
        if zero:
            g_s = g_s - lam * gm
        g_gu = a if ctx.has_gu else None
        g_gs = a * dsig if ctx.has_gs else None
        return g_u, g_s, g_gu, g_gs, None, None, None, None


# --------------------------------------------------------------------------- convolution


CONV_CHANNELS_LAST = True
"""Whether :func:`conv_input` hands conv layers channels-last frames where the loops run (False: as given; the
benchmarks time both)."""


def conv_input(frames: Tensor) -> Tensor:
    """A conv layer's input frames (M, C, H, W), channels-last where the compiled loops run (the convolutions, the
    recurrence and the pooling then all work in that order; see the module docstring), else as given."""
    if not CONV_CHANNELS_LAST or not native.supports(frames):
        return frames
    return frames.contiguous(memory_format=torch.channels_last)


def _conv_backward(g_out: Tensor, x: Tensor, w: Tensor, stride: list[int], padding: list[int],
                   mask: list[bool], bias: bool = False) -> tuple:
    """torch's convolution_backward of a conv2d (dilation 1, one group): (grad input, grad weight, grad bias) where
    ``mask`` asks for them; what autograd's ConvolutionBackward0 node runs."""
    return torch.ops.aten.convolution_backward(g_out, x, w, [w.shape[0]] if bias else None, stride, padding, [1, 1],
                                               False, [0, 0], 1, mask)


class _Conv2d(torch.autograd.Function):
    """conv2d(x, w, b) whose backward is :class:`_Conv2dGradients` under ``create_graph``: a first-order backward
    with the numbers of torch's own, and a double backward (what Hessian-vector products run) made of
    convolutions and convolution gradients only (see :class:`_Conv2dGradients`)."""

    @staticmethod
    def forward(x: Tensor, w: Tensor, b: Tensor | None, stride: list[int], padding: list[int]) -> Tensor:  # type: ignore[override]
        return F.conv2d(x, w, b, stride=stride, padding=padding)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, w, b, ctx.stride, ctx.padding = inputs
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        batched = _functorch_active() or _functorch.is_batchedtensor(g) or _functorch.is_legacy_batchedtensor(g)
        if torch.is_grad_enabled() and not batched:  # create_graph: one node with its own backward
            gx, gw, gb = _Conv2dGradients.apply(g, x, w, ctx.stride, ctx.padding, ctx.has_bias, want_x)
        else:  # torch's op (vmap has a rule for it; under create_graph autograd records it)
            gx, gw, gb = _conv_backward(g, x, w, ctx.stride, ctx.padding, [want_x, want_w, want_b and ctx.has_bias],
                                        ctx.has_bias)
        return gx, gw, gb if ctx.has_bias else None, None, None


class _Conv2dGradients(torch.autograd.Function):
    """(gx, gw, gb) = the gradients of conv2d(x, w) + b for an incoming g, as a function of (g, x, w): one node.

    Forward: torch's convolution_backward. Backward, for incoming (ggx, ggw, ggb), by the bilinearity of the
    convolution:

        dL/dg = conv2d(ggx, w) + conv2d(x, ggw) + ggb,
        dL/dx = the input gradient of conv2d(., ggw) at g,   dL/dw = the weight gradient of conv2d(ggx, .) at g.

    torch's own double backward (``_convolution_double_backward``) computes dL/dw as a convolution of the
    transposed ggx with the transposed g, the frames as channels: copies of both and a convolution of an odd
    shape. Here it is one weight-gradient call. On the README's 3-conv-layer net (16 samples, T 20, float32, 2 CPU
    cores) a double-backward Hessian-vector product took 247 ms against 368 ms. The formulas use torch ops that
    autograd differentiates, so a third derivative is exact too; gradcheck and gradgradcheck in
    tests/unit/test_fast_path.py.
    """

    @staticmethod
    def forward(g: Tensor, x: Tensor, w: Tensor, stride: list[int], padding: list[int], bias: bool,  # type: ignore[override]
                want_x: bool) -> tuple[Tensor | None, Tensor, Tensor | None]:
        return _conv_backward(g, x, w, stride, padding, [want_x, True, bias], bias)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        g, x, w, ctx.stride, ctx.padding, _, _ = inputs
        ctx.save_for_backward(g, x, w)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, ggx: Tensor | None, ggw: Tensor | None, ggb: Tensor | None):  # type: ignore[override]
        g, x, w = ctx.saved_tensors
        d_g = d_x = d_w = None
        if ctx.needs_input_grad[0]:
            terms = []
            if ggx is not None:
                terms.append(F.conv2d(ggx, w, stride=ctx.stride, padding=ctx.padding))
            if ggw is not None:
                terms.append(F.conv2d(x, ggw, stride=ctx.stride, padding=ctx.padding))
            if ggb is not None:
                terms.append(ggb.reshape(1, -1, 1, 1).expand(g.shape))
            for term in terms:
                d_g = term if d_g is None else d_g + term
        if ctx.needs_input_grad[1] and ggw is not None:
            d_x = _conv_backward(g, x, ggw, ctx.stride, ctx.padding, [True, False, False])[0]
        if ctx.needs_input_grad[2] and ggx is not None:
            d_w = _conv_backward(g, ggx, w, ctx.stride, ctx.padding, [False, True, False])[1]
        return d_g, d_x, d_w, None, None, None, None


_SECOND_ORDER: ContextVar[bool] = ContextVar("sast_fast_second_order", default=False)


@contextmanager
def second_order() -> Iterator[None]:
    """Within this block the fast path's conv layers record :class:`_Conv2d`, whose double backward is the cheaper
    one (for a graph that will be differentiated twice: Hessian-vector products). Outside it they record torch's
    own node, which a first-order step runs a few percent faster (measured on the conv step: 1.33x against 1.41x
    its floor+stream); both give the same first derivatives."""
    token = _SECOND_ORDER.set(True)
    try:
        yield
    finally:
        _SECOND_ORDER.reset(token)


def conv2d(layer: torch.nn.Conv2d, frames: Tensor) -> Tensor:
    """The forward of a conv layer of the model (``sast.model.Conv2d``), its input channels-last where the loops run
    (:func:`conv_input`); inside :func:`second_order`, on a CPU (dilation 1, one group), through :class:`_Conv2d`."""
    frames = conv_input(frames)
    if not _SECOND_ORDER.get() or frames.device.type != "cpu" or layer.groups != 1 \
            or tuple(layer.dilation) != (1, 1) or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        return torch.nn.Conv2d.forward(layer, frames)
    return _Conv2d.apply(frames, layer.weight, layer.bias, list(layer.stride), list(layer.padding))


# --------------------------------------------------------------------------- average pooling


class _AvgPool(torch.autograd.Function):
    """avg_pool2d(x, k) through sast.native's loop; its backward is the adjoint (:class:`_AvgUnpool`), itself a
    Function whose backward is this one: the map is linear, so every derivative order is exact."""

    @staticmethod
    def forward(x: Tensor, k: int) -> Tensor:  # type: ignore[override]
        return native.avg_pool(x, k)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, ctx.k = inputs
        ctx.size = tuple(x.shape[-2:])
        ctx.channels_last = native.channels_last(x)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        return _avg_unpool(g, ctx.k, ctx.size, ctx.channels_last), None


def _avg_unpool(g: Tensor, k: int, size: tuple[int, int], channels_last: bool = False) -> Tensor:
    """The adjoint of avg_pool2d(., k) onto (..., H, W) = ``size``, in the pooled tensor's layout (``channels_last``):
    the loop, or torch ops for batched gradients."""
    if native.supports(g):
        return _AvgUnpool.apply(g, k, size, channels_last)
    spread = g.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1) / (k * k)
    return F.pad(spread, (0, size[1] - spread.shape[-1], 0, size[0] - spread.shape[-2]))


class _AvgUnpool(torch.autograd.Function):
    @staticmethod
    def forward(g: Tensor, k: int, size: tuple[int, int], channels_last: bool) -> Tensor:  # type: ignore[override]
        return native.avg_unpool(g, k, size, channels_last)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.k = inputs[1]

    @staticmethod
    def backward(ctx, gg: Tensor):  # type: ignore[override]
        return (_AvgPool.apply(gg, ctx.k) if native.supports(gg) else F.avg_pool2d(gg, ctx.k)), None, None, None


def avg_pool(x: Tensor, k: int) -> Tensor:
    """``F.avg_pool2d(x, k)`` of x (M, C, H, W): the compiled loop where :mod:`sast.native` takes x (a CPU float
    tensor), else torch's. On a CPU, torch's kernel took 3.4 ms on the conv step's (640, 32, 8, 8) spikes, and as
    long again for its backward; tests/unit/test_native.py checks the two against each other."""
    if native.supports(x):
        return _AvgPool.apply(x, k)
    return F.avg_pool2d(x, k)


def lif(currents: Tensor, *, lam: float | Tensor, theta: float | Tensor, beta: float, reset: str,
        mode: str) -> tuple[Tensor, Tensor]:
    """``sast.neuron.lif`` as one autograd node (see the module docstring); same arguments."""
    return _LIF.apply(currents, lam, theta, beta, reset, mode)
