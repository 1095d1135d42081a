"""The Hessian of the probe-batch loss as an operator of exact Hessian-vector products (T4).

:class:`HessianOperator` gives H v for the Hessian H = d^2 F / dw^2 of
F(w) = mean_i l(z(w; x_i), y_i) over all trainable parameters w (flattened to
one vector), by double backward or forward-over-reverse, whichever is faster
on the model and device. :func:`determinism_check` (run by default) refuses a
random loss, on which Lanczos would return nonsense. Only the smooth mode is
differentiable, so other modes are refused.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor, nn
from torch.func import functional_call

from checks.linalg._flat import _SMOOTH_ONLY, LossFn, _default_loss, _Layout, _prepare, flatten
from checks.linalg.lanczos import _start_vector
from sast.model import second_order

__all__ = [
    "HVPMethod",
    "HVP_METHODS",
    "CALIBRATION_PRODUCTS",
    "CALIBRATION_SAMPLES",
    "DETERMINISM_RTOL",
    "DETERMINISM_RTOL_DEFAULT",
    "NondeterminismError",
    "HessianOperator",
    "determinism_check",
]

HVPMethod = Literal["auto", "double-backward", "forward-over-reverse"]
HVP_METHODS: tuple[str, ...] = ("auto", "double-backward", "forward-over-reverse")

# "auto" times this many products of each method and keeps the faster by the
# minimum time (the minimum discards one-off start-up costs and scheduler noise).
CALIBRATION_PRODUCTS = 2
# ... on the loss of the probe's first samples only: both methods' cost grows in proportion to the
# samples, so their ratio is the full probe's, at a fraction of its cost (on a conv net of 0.23M
# parameters, 64 samples, a CPU: 2 s instead of 8 s, most of it forward-over-reverse's fixed cost).
CALIBRATION_SAMPLES = 8

# Determinism: the same product computed twice must agree to this relative
# accuracy (in the Euclidean norm). In float64 a deterministic computation
# agrees far below 1e-6; in float32, reordered reductions (GPU atomics, thread
# counts) move results by ~1e-6 relative, so 1e-4 leaves margin while dropout,
# augmentation or batch statistics change the result by O(1e-2) or more.
DETERMINISM_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-6, torch.float32: 1e-4}
DETERMINISM_RTOL_DEFAULT = 1e-2  # half precision and anything else

_NONDETERMINISTIC = (
    "the loss is not deterministic: {what} computed twice differ by {rel:.3g} relative "
    "(tolerance {tol:g} in {dtype}). Possible causes: dropout or other random layers, data "
    "augmentation inside the loss or model, batch-norm in train mode (batch statistics), or "
    "nondeterministic GPU kernels. Fix: call model.eval(), fix the probe batch, or pass a "
    "deterministic loss_fn"
)
_BAD_METHOD = "unknown HVP method {got!r}: expected one of {allowed}"


class NondeterminismError(RuntimeError):
    """The same loss, gradient or product computed twice disagreed (see :func:`determinism_check`)."""


class HessianOperator:
    """The Hessian H = d^2 F / dw^2 of the probe-batch loss, as exact Hessian-vector products (T4).

    F(w) = loss_fn(model(x, mode; w), y) (mean cross-entropy by default), w all
    trainable parameters flattened in ``named_parameters`` order. Two exact
    methods:

    - ``"double-backward"``: g = dF/dw is computed once with ``create_graph=True``
      and kept; each product is one reverse pass through it,
      H v = d<g, v>/dw. Costs one gradient-with-graph up front, then one reverse
      pass per product, and keeps the double graph in memory while the operator lives.
    - ``"forward-over-reverse"``: H v = jvp(grad F, w, v) with torch.func; each
      product recomputes the forward pass (no memory kept between products).

    Measured on CPU (2312-256-10 SNN, T = 20, batch 128, float32), per product
    in units of one gradient: double backward 1.06, forward-over-reverse 3.5
    (forward-mode AD decomposes the LIF recurrence's scalar arithmetic into
    slow primitives). The ratio depends on the device and the model, so
    ``"auto"`` (the default) times :data:`CALIBRATION_PRODUCTS` products of each,
    once, at construction, on the loss of the first :data:`CALIBRATION_SAMPLES`
    probe samples, and keeps the faster per product (the one-off graph
    of double backward is not counted against it: it is paid once per operator).
    The timings are in ``calibration`` (seconds per product on those samples),
    their products in ``overhead_products``.

    With ``check_deterministic=True`` (default) the constructor runs
    :func:`determinism_check` on a random vector (from ``seed``, as is the
    calibration vector) and raises
    :class:`NondeterminismError` if the loss is random (dropout, augmentation,
    train-mode batch statistics).

    ``matvec(v)`` takes any float vector of length ``dim`` and returns H v in the
    operator's ``dtype`` on its ``device``; ``n_products`` counts the calls to
    ``matvec`` (calibration and determinism products are counted apart, in
    ``overhead_products``). The determinism check's vector is Lanczos' random unit start
    from the same seed, and the operator keeps its last product: a ``matvec`` of that
    very vector (bit for bit) returns the kept product instead of computing it again
    (``reused_products`` counts these). ``to_scipy()`` gives a float64 scipy LinearOperator.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn | None,
        x: Tensor,
        y: Tensor,
        *,
        method: HVPMethod = "auto",
        mode: str = "smooth",
        dtype: torch.dtype | None = None,
        check_deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        if method not in HVP_METHODS:
            raise ValueError(_BAD_METHOD.format(got=method, allowed=", ".join(map(repr, HVP_METHODS))))
        if mode != "smooth":
            raise ValueError(_SMOOTH_ONLY.format(what="the Hessian", mode=mode, stmt="T4"))
        params, self._const, self._x, self._y, self.dtype = _prepare(model, x, y, dtype)
        self._model = model
        self._loss_fn = loss_fn or _default_loss
        self.mode = mode
        self._layout = _Layout(params)
        self._w = flatten(params, batched=False)
        self.device = self._w.device
        self.n_products = 0
        self.overhead_products = 0
        self.reused_products = 0
        self.calibration: dict[str, float] = {}
        self._graph: tuple[Tensor, Tensor] | None = None  # (w leaf, g with graph) for double backward
        self._last: tuple[Tensor, Tensor] | None = None  # (v, H v) of the last product
        if method == "auto":
            method = self._calibrate(seed)
        self.method: str = method
        if check_deterministic:
            # Lanczos' own random unit start: the kept product is then its first one
            determinism_check(self, _start_vector(None, self.dim, seed, self.device, self.dtype))

    # -- the loss as a pure function of the flat parameters

    def _loss(self, w: Tensor) -> Tensor:
        logits = functional_call(self._model, (self._layout.unflatten(w), self._const), (self._x,),
                                 {"mode": self.mode})
        return self._loss_fn(logits, self._y)

    @property
    def dim(self) -> int:
        """P, the number of trainable parameters."""
        return self._layout.dim

    def release_graph(self) -> None:
        """Free the graph that double-backward products keep (a later product builds it again)."""
        self._graph = None

    def loss_and_gradient(self) -> tuple[Tensor, Tensor]:
        """F(w) and grad F(w), recomputed from scratch (a fresh forward and backward pass)."""
        with torch.enable_grad():
            w = self._w.clone().requires_grad_(True)
            loss = self._loss(w)
            (g,) = torch.autograd.grad(loss, w, allow_unused=True)
        return loss.detach(), (torch.zeros_like(w) if g is None else g).detach()

    # -- the two product methods

    def _hvp_double_backward(self, v: Tensor) -> Tensor:
        with torch.enable_grad():
            if self._graph is None:
                w = self._w.clone().requires_grad_(True)
                with second_order():  # conv layers with the cheaper double backward (sast.model.second_order)
                    loss = self._loss(w)
                (g,) = torch.autograd.grad(loss, w, create_graph=True, allow_unused=True)
                self._graph = (w, torch.zeros_like(w) if g is None else g)
            w, g = self._graph
            if not g.requires_grad:  # the loss is at most linear in w: H = 0
                return torch.zeros_like(v)
            (hv,) = torch.autograd.grad(g, w, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv.detach()

    def _hvp_forward_over_reverse(self, v: Tensor) -> Tensor:
        _, hv = torch.func.jvp(torch.func.grad(self._loss), (self._w,), (v,))
        return hv.detach()

    def _apply(self, v: Tensor, method: str | None = None) -> Tensor:
        """H v without counting it as an estimator's product."""
        v = v.detach().reshape(-1).to(device=self.device, dtype=self.dtype)
        if v.numel() != self.dim:
            raise ValueError(f"expected a vector of length {self.dim} (the number of parameters), got {v.numel()}")
        if (method or self.method) == "double-backward":
            hv = self._hvp_double_backward(v)
        else:
            hv = self._hvp_forward_over_reverse(v)
        if method is None:
            self._last = (v, hv)
        return hv

    def matvec(self, v: Tensor) -> Tensor:
        """H v, exact (up to floating point), in the operator's dtype and device."""
        self.n_products += 1
        last = self._last
        if last is not None:
            u = v.detach().reshape(-1).to(device=self.device, dtype=self.dtype)
            if u.shape == last[0].shape and torch.equal(u, last[0]):
                self.reused_products += 1
                return last[1].clone()
        return self._apply(v)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def reset_counter(self) -> None:
        """Set ``n_products`` back to 0 (for example between two estimators on one operator)."""
        self.n_products = 0

    def _random_vector(self, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(self.dim, generator=gen, dtype=torch.float64).to(device=self.device, dtype=self.dtype)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _calibrate(self, seed: int) -> str:
        """Time both methods on one vector, on the loss of the first :data:`CALIBRATION_SAMPLES` samples; return the
        faster per product.

        Each method gets up to CALIBRATION_PRODUCTS timed products, the minimum counting; a method
        whose first product already takes twice the best time so far cannot win and is not
        timed again (forward-over-reverse can cost several times double backward on a CPU). The
        double-backward graph of those samples is freed before the other method runs, so that calibration
        never holds both methods' memory at once; the operator's own graph is built by its first product.
        """
        k = min(CALIBRATION_SAMPLES, len(self._x))
        part = HessianOperator(self._model, self._loss_fn, self._x[:k],
                               None if self._y is None else self._y[:k], method="double-backward", mode=self.mode,
                               dtype=self.dtype, check_deterministic=False)
        v = part._random_vector(seed)
        part._apply(v, "double-backward")  # builds the kept graph (a one-off cost, not a product's)
        self.overhead_products += 1
        for method in ("double-backward", "forward-over-reverse"):
            if method != "double-backward":
                part.release_graph()  # never both at once: the peak memory is one method's
            times: list[float] = []
            for _ in range(CALIBRATION_PRODUCTS):
                self._synchronize()
                start = time.perf_counter()
                part._apply(v, method)
                self._synchronize()
                times.append(time.perf_counter() - start)
                self.overhead_products += 1
                if self.calibration and times[0] > 2 * min(self.calibration.values()):
                    break
            self.calibration[method] = min(times)
        part.release_graph()
        return min(self.calibration, key=self.calibration.__getitem__)

    def to_scipy(self) -> LinearOperator:
        """This operator as a scipy LinearOperator on float64 numpy vectors (products are counted)."""

        def mv(v: np.ndarray) -> np.ndarray:
            hv = self.matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1)))
            return hv.detach().to(device="cpu", dtype=torch.float64).numpy()

        return LinearOperator((self.dim, self.dim), matvec=mv, rmatvec=mv, dtype=np.float64)

    def __repr__(self) -> str:
        return (f"HessianOperator(dim={self.dim}, method={self.method!r}, dtype={self.dtype}, "
                f"device={self.device}, n_products={self.n_products})")


def _relative_difference(a: Tensor, b: Tensor) -> float:
    """||a - b|| / max(||a||, ||b||), and 0 when both are zero."""
    scale = max(float(a.norm()), float(b.norm()))
    return 0.0 if scale == 0.0 else float((a - b).norm()) / scale


def determinism_check(op: HessianOperator, v: Tensor, *, rtol: float | None = None) -> None:
    """Raise :class:`NondeterminismError` unless the loss, gradient and H v repeat exactly.

    Computes F and grad F twice from scratch, and H v twice, and compares each
    pair in relative Euclidean norm against ``rtol`` (default
    :data:`DETERMINISM_RTOL` for the operator's dtype: 1e-6 in float64, 1e-4 in
    float32). A random loss makes T4's "Hessian" a different matrix at every
    product, and Lanczos on it returns nonsense, so this runs by default.
    The products used are counted in ``op.overhead_products``.
    """
    tol = rtol if rtol is not None else DETERMINISM_RTOL.get(op.dtype, DETERMINISM_RTOL_DEFAULT)
    loss1, g1 = op.loss_and_gradient()
    loss2, g2 = op.loss_and_gradient()
    hv1 = op._apply(v)
    hv2 = op._apply(v)
    op.overhead_products += 2
    for what, a, b in (("the loss", loss1, loss2), ("the gradient", g1, g2), ("the product H v", hv1, hv2)):
        rel = _relative_difference(a.reshape(-1), b.reshape(-1))
        if not rel <= tol:  # also catches NaN
            raise NondeterminismError(_NONDETERMINISTIC.format(what=what, rel=rel, tol=tol, dtype=op.dtype))
