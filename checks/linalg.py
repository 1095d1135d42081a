"""Matrix-free linear algebra for the checks: Hessian-vector products, Lanczos, Jacobian norms.

What serves which statement of THEORY.md ("What each check measures"):

- T4 (smoothness): :class:`HessianOperator` gives exact products H v with the
  Hessian of the probe-batch loss F(w) = mean_i l(z(w; x_i), y_i) over all
  trainable parameters w (flattened to one vector), and
  :func:`lanczos_extremes` finds both ends of its spectrum, lambda_min and
  lambda_max, to compare abs(lambda) with L.
- T3 (input Lipschitz): :func:`jacobian_spectral_norm` and
  :func:`input_jacobian_norms` estimate ||dz/dx||_2 per probe sample by a
  Krylov (Lanczos) iteration on J^T J with reverse-mode products (the Jacobian
  is never formed).
- T5, T6, T7: :func:`flat_grad` (grad F as one vector) and
  :func:`per_sample_grads` (grad_w l(z(w; x_i), y_i) for every i).

Estimators are plain functions that take a dense matrix (torch or numpy) or an
operator with ``matvec``, so tests hand them small exact matrices (the
curvlinops model, STYLE.md). Non-convergence is recorded in the returned
record (``converged=False``), never raised.

Precision: every function that takes a model takes ``dtype``; None means the
dtype of the model's parameters (float32 for a freshly built SNN). A different
dtype casts copies of the parameters and inputs: the caller's model is never
modified. (``lanczos_extremes``'s ``dtype`` is that of its Krylov basis.)

Only the smooth mode is differentiable: T3 and T4 are smooth-mode statements
(hard mode is piecewise constant; HFSB's backward is a surrogate, not a
derivative), so the Hessian and input-Jacobian tools refuse other modes.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, cast, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch import Tensor, nn
from torch.func import functional_call
from tqdm import tqdm

__all__ = [
    "HessianOperator",
    "NondeterminismError",
    "determinism_check",
    "LanczosResult",
    "lanczos_extremes",
    "SpectralNormResult",
    "jacobian_spectral_norm",
    "InputJacobianNorms",
    "input_jacobian_norms",
    "per_sample_grads",
    "flatten",
    "flat_params",
    "flat_grad",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
HVPMethod = Literal["auto", "double-backward", "forward-over-reverse"]
HVP_METHODS: tuple[str, ...] = ("auto", "double-backward", "forward-over-reverse")

# "auto" times this many products of each method and keeps the faster by the
# minimum time (the minimum discards one-off start-up costs and scheduler noise).
CALIBRATION_PRODUCTS = 2

# Determinism: the same product computed twice must agree to this relative
# accuracy (in the Euclidean norm). In float64 a deterministic computation
# agrees far below 1e-6; in float32, reordered reductions (GPU atomics, thread
# counts) move results by ~1e-6 relative, so 1e-4 leaves margin while dropout,
# augmentation or batch statistics change the result by O(1e-2) or more.
DETERMINISM_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-6, torch.float32: 1e-4}
DETERMINISM_RTOL_DEFAULT = 1e-2  # half precision and anything else

# Relative Ritz residual at which the iterations count as converged by default:
# the largest estimate / bound ratios THEORY.md reports are 0.87 (T3) and 0.23
# (T4), so a 1e-3 relative error can only change a verdict within 0.1% of a bound.
DEFAULT_TOL = 1e-3
# Lanczos steps at most (each one product); its basis holds this many vectors of
# the parameter dimension, so the memory is DEFAULT_LANCZOS_MAX_ITER * P * 8 bytes
# in float64. On a 2312-256-10 SNN (T = 20, batch 128) the stopping rule needed 38
# steps at tol 1e-3 and 51 at 1e-4.
DEFAULT_LANCZOS_MAX_ITER = 150
# The Lanczos basis starts with room for this many vectors and doubles when full.
_BASIS_START = 32
# Lanczos steps at most on J^T J (each one product): J^T J has rank <= k for k
# outputs, so classes + 2 steps suffice (see _jacobian_steps); the cap binds only
# for k >= 63 outputs.
DEFAULT_JACOBIAN_MAX_ITER = 64
# Lanczos steps on J^T J beyond the k + 1 that exact arithmetic needs (see _jacobian_steps).
_ROUNDING_STEPS = 1
# Samples per vmap call in input_jacobian_norms: bounds the memory of the batched
# graphs and Krylov bases (32 samples of a 20 x 2312 input, 12 steps: ~71 MB in float32).
DEFAULT_JACOBIAN_CHUNK = 32

_SMOOTH_ONLY = (
    "{what} needs mode='smooth', got mode={mode!r}: hard spikes are piecewise constant and "
    "HFSB's backward is a surrogate, not a derivative, so {stmt} is a smooth-mode statement"
)
_NONDETERMINISTIC = (
    "the loss is not deterministic: {what} computed twice differ by {rel:.3g} relative "
    "(tolerance {tol:g} in {dtype}). Possible causes: dropout or other random layers, data "
    "augmentation inside the loss or model, batch-norm in train mode (batch statistics), or "
    "nondeterministic GPU kernels. Fix: call model.eval(), fix the probe batch, or pass a "
    "deterministic loss_fn"
)
_BAD_METHOD = "unknown HVP method {got!r}: expected one of {allowed}"
_NONFINITE_PRODUCT = (
    "the operator returned NaN or infinite values at Lanczos step {step}; the loss or the model "
    "diverged at these parameters (check the probe loss is finite before estimating curvature)"
)
_NOT_SQUARE = "expected a square matrix, got shape {shape}"
_NEED_DIM = "pass dim= with a plain callable matvec (it cannot be inferred); got dim={dim!r}"
_DIM_MISMATCH = "dim={dim} contradicts the operator's size {size}"


# --------------------------------------------------------------------------- parameters


def _trainable(model: nn.Module, dtype: torch.dtype | None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The trainable parameters, detached and cast to dtype, and everything else.

    "Everything else" is frozen parameters and buffers: functional_call needs
    them, the Hessian does not differentiate through them. Tensors are detached
    (and copied where the dtype changes) and never written to, so the caller's
    model is untouched.
    """
    params: dict[str, Tensor] = {}
    const: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        target = params if p.requires_grad else const
        target[name] = p.detach().to(dtype or p.dtype)
    for name, b in model.named_buffers():
        const[name] = b.detach().to(dtype) if dtype is not None and b.is_floating_point() else b.detach()
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True); nothing to differentiate")
    return params, const


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _Layout:
    """How a dict of named tensors maps to one flat vector (in insertion order)."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        self.names = list(tensors)
        self.shapes = [tuple(t.shape) for t in tensors.values()]
        self.numels = [t.numel() for t in tensors.values()]
        self.dim = sum(self.numels)

    def unflatten(self, w: Tensor) -> dict[str, Tensor]:
        """Views of the flat vector w shaped like the parameters (pure: works under torch.func)."""
        return {n: c.view(s) for n, c, s in zip(self.names, w.split(self.numels), self.shapes)}


def flatten(tensors: Mapping[str, Tensor], *, batched: bool = True) -> Tensor:
    """Concatenate named tensors into one vector per sample, in the mapping's order.

    With ``batched=True`` every tensor has a leading batch dimension B and the
    result is (B, P); with ``batched=False`` the result is (P,). The order is the
    mapping's (``named_parameters`` order for the dicts made here), the same as
    :func:`flat_params`.
    """
    if not tensors:
        raise ValueError("nothing to flatten: the mapping is empty")
    if batched:
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors.values()], dim=1)
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def flat_params(model: nn.Module, *, dtype: torch.dtype | None = None) -> Tensor:
    """The trainable parameters w of the model as one detached vector (a copy), cast to dtype."""
    params, _ = _trainable(model, dtype)
    return flatten(params, batched=False)


def _default_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy, the loss l(z, y) of THEORY.md."""
    return F.cross_entropy(logits, y)


def _prepare(
    model: nn.Module, x: Tensor, y: Tensor | None, dtype: torch.dtype | None
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor | None, torch.dtype]:
    dtype = dtype or _model_dtype(model)
    params, const = _trainable(model, dtype)
    device = _model_device(model)
    x = x.detach().to(device=device, dtype=dtype)
    if y is not None:
        y = y.detach().to(device)
    return params, const, x, y, dtype


def flat_grad(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    mode: str = "smooth",
    loss_fn: LossFn | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """grad F(w) as one vector: the gradient of loss_fn(model(x, mode), y) over the trainable parameters.

    F is the probe-batch loss of T5 and T6 (mean cross-entropy by default). In
    ``hfsb`` mode this is the surrogate gradient that HFSB trains with. The
    order of entries is that of :func:`flat_params`.
    """
    params, const, x, y, _ = _prepare(model, x, y, dtype)
    loss_fn = loss_fn or _default_loss
    layout = _Layout(params)
    with torch.enable_grad():
        w = flatten(params, batched=False).requires_grad_(True)
        logits = functional_call(model, (layout.unflatten(w), const), (x,), {"mode": mode})
        (g,) = torch.autograd.grad(loss_fn(logits, y), w, allow_unused=True)
    return torch.zeros_like(w).detach() if g is None else g.detach()


# --------------------------------------------------------------------------- Hessian operator


@runtime_checkable
class MatVec(Protocol):
    """Anything with a size and a torch matrix-vector product: what the estimators accept."""

    @property
    def dim(self) -> int: ...

    def matvec(self, v: Tensor) -> Tensor: ...


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
    once, at construction, and keeps the faster per product (the one-off graph
    of double backward is not counted against it: it is paid once per operator).
    The timings are in ``calibration`` (seconds per product), their products in
    ``overhead_products``.

    With ``check_deterministic=True`` (default) the constructor runs
    :func:`determinism_check` on a random vector (from ``seed``, as is the
    calibration vector) and raises
    :class:`NondeterminismError` if the loss is random (dropout, augmentation,
    train-mode batch statistics).

    ``matvec(v)`` takes any float vector of length ``dim`` and returns H v in the
    operator's ``dtype`` on its ``device``; ``n_products`` counts the calls to
    ``matvec`` (calibration and determinism products are counted apart, in
    ``overhead_products``). ``to_scipy()`` gives a float64 scipy LinearOperator.
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
        self.calibration: dict[str, float] = {}
        self._graph: tuple[Tensor, Tensor] | None = None  # (w leaf, g with graph) for double backward
        if method == "auto":
            method = self._calibrate(seed)
        self.method: str = method
        if method != "double-backward":
            self._graph = None  # free the double graph if calibration built it
        if check_deterministic:
            determinism_check(self, self._random_vector(seed))

    # -- the loss as a pure function of the flat parameters

    def _loss(self, w: Tensor) -> Tensor:
        logits = functional_call(self._model, (self._layout.unflatten(w), self._const), (self._x,),
                                 {"mode": self.mode})
        return self._loss_fn(logits, self._y)

    @property
    def dim(self) -> int:
        """P, the number of trainable parameters."""
        return self._layout.dim

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
                (g,) = torch.autograd.grad(self._loss(w), w, create_graph=True, allow_unused=True)
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
            return self._hvp_double_backward(v)
        return self._hvp_forward_over_reverse(v)

    def matvec(self, v: Tensor) -> Tensor:
        """H v, exact (up to floating point), in the operator's dtype and device."""
        self.n_products += 1
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
        """Time both methods on one vector; return the faster per product."""
        v = self._random_vector(seed)
        self._apply(v, "double-backward")  # builds the kept graph (a one-off cost, not a product's)
        self.overhead_products += 1
        for method in ("double-backward", "forward-over-reverse"):
            times = []
            for _ in range(CALIBRATION_PRODUCTS):
                self._synchronize()
                start = time.perf_counter()
                self._apply(v, method)
                self._synchronize()
                times.append(time.perf_counter() - start)
            self.overhead_products += CALIBRATION_PRODUCTS
            self.calibration[method] = min(times)
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


# --------------------------------------------------------------------------- Lanczos


@dataclass(frozen=True)
class LanczosResult:
    """Both extreme eigenvalues of a symmetric operator, as found by :func:`lanczos_extremes`.

    ``lambda_min`` and ``lambda_max`` are the extreme Ritz values (always inside
    the true spectrum's range: lambda_min >= true min, lambda_max <= true max);
    ``residual_min`` and ``residual_max`` bound the distance from each to an
    eigenvalue; ``converged`` says both residuals reached the tolerance;
    ``n_products`` counts matrix-vector products (one per Lanczos step, so it
    equals ``iterations``).
    """

    lambda_min: float
    lambda_max: float
    converged: bool
    n_products: int
    iterations: int
    residual_min: float
    residual_max: float


def _as_matvec(
    a: Tensor | np.ndarray | MatVec | LinearOperator | Callable[[Tensor], Tensor], dim: int | None
) -> tuple[Callable[[Tensor], Tensor], int, torch.device]:
    """A torch matvec, its size and its device, from a matrix, an operator or a callable."""
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(a)
    if isinstance(a, Tensor):
        if a.dim() != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(_NOT_SQUARE.format(shape=tuple(a.shape)))
        size, matrix = a.shape[0], a.detach()
        fn: Callable[[Tensor], Tensor] = lambda v: matrix @ v.to(matrix.dtype)  # noqa: E731
        device = matrix.device
    elif isinstance(a, LinearOperator):
        if a.shape[0] != a.shape[1]:
            raise ValueError(_NOT_SQUARE.format(shape=a.shape))
        size, lin = a.shape[0], a

        def fn(v: Tensor) -> Tensor:
            return torch.from_numpy(np.asarray(lin.matvec(v.detach().cpu().numpy()), dtype=np.float64).reshape(-1))

        device = torch.device("cpu")
    elif isinstance(a, MatVec):
        size, fn, device = a.dim, a.matvec, getattr(a, "device", torch.device("cpu"))
    elif callable(a):
        if dim is None:
            raise ValueError(_NEED_DIM.format(dim=dim))
        size, fn, device = dim, a, torch.device("cpu")
    else:
        raise TypeError(
            f"expected a square matrix, an operator with .matvec and .dim, or a callable; got {type(a).__name__}"
        )
    if dim is not None and dim != size:
        raise ValueError(_DIM_MISMATCH.format(dim=dim, size=size))
    return fn, int(size), torch.device(device)


def lanczos_extremes(
    a: Tensor | np.ndarray | MatVec | LinearOperator | Callable[[Tensor], Tensor],
    dim: int | None = None,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> LanczosResult:
    """lambda_min and lambda_max of a symmetric operator by Lanczos with full reorthogonalisation (T4).

    ``a`` is a dense symmetric matrix (torch or numpy), an operator with
    ``matvec`` and ``dim`` (such as :class:`HessianOperator`), a scipy
    LinearOperator, or a callable torch matvec together with ``dim``. Each step
    is one product; the Krylov basis is kept in ``dtype`` (float64 by default,
    so P * 8 bytes per step) and reorthogonalised twice against all previous
    vectors ("twice is enough"), so no spurious copies of converged Ritz values
    appear.

    Stopping rule: after step j the extreme Ritz pairs (theta, y) of the
    tridiagonal T_j have residuals ||A y - theta y|| = beta_j |e_j^T s|, and each
    theta is within its residual of an eigenvalue of A. The run stops when both
    residuals are <= tol * max(|theta_min|, |theta_max|), i.e. relative to the
    spectral radius, the scale on which T4 compares abs(lambda) with L (a
    relative rule on each end alone would never stop for a lambda_min near 0).
    A Krylov space that becomes invariant (beta_j = 0, at the latest at
    j = dim) gives exact Ritz values and stops too. Without convergence after
    ``max_iter`` steps (default min(dim, :data:`DEFAULT_LANCZOS_MAX_ITER`)) the
    last Ritz values are returned with ``converged=False``. A NaN or infinite
    product raises FloatingPointError (a diverged model is not non-convergence).

    Why this and not scipy's eigsh(which='BE'): ARPACK restarts its Lanczos
    basis every ncv (20 by default for two eigenvalues) steps and discards
    Krylov information. On the Hessian of a 2312-256-10 SNN (T = 20, batch 128,
    float32, P = 594698) eigsh needed 55 products at tol 1e-3 and 73 at 1e-4,
    this function 38 and 51, to the same accuracy (the top eigenvalue alone was
    within 1e-3 after 15 steps; lambda_min converges last). Here all the heavy
    work (products, reorthogonalisation) stays in torch on the operator's
    device, so scipy's and torch's thread pools never run side by side; only
    the small tridiagonal eigenproblem is scipy.
    """
    fn, n, device = _as_matvec(a, dim)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    steps = min(n, DEFAULT_LANCZOS_MAX_ITER) if max_iter is None else min(int(max_iter), n)
    if steps < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    q = q / q.norm()
    # The basis grows by doubling, so a run that converges early never holds max_iter vectors.
    basis = torch.empty((min(steps, _BASIS_START), n), dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    theta_min = theta_max = 0.0
    res_min = res_max = math.inf
    converged = False
    j = 0
    for j in range(1, steps + 1):
        if j > basis.shape[0]:
            basis = torch.cat([basis, torch.empty((min(steps, 2 * basis.shape[0]) - basis.shape[0], n),
                                                  dtype=dtype, device=device)])
        basis[j - 1] = q
        w = fn(q).to(device=device, dtype=dtype).reshape(-1)
        alpha = float(torch.dot(q, w))
        alphas.append(alpha)
        # Full reorthogonalisation against q_1..q_j; this also removes the alpha q_j and
        # beta q_{j-1} components of the three-term recurrence.
        w = _orthogonalise(basis[:j], w)
        beta = float(w.norm())
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            raise FloatingPointError(_NONFINITE_PRODUCT.format(step=j))
        theta, s = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas))
        theta_min, theta_max = float(theta[0]), float(theta[-1])
        res_min, res_max = beta * abs(float(s[-1, 0])), beta * abs(float(s[-1, -1]))
        scale = max(abs(theta_min), abs(theta_max))
        if max(res_min, res_max) <= tol * scale or beta <= np.finfo(np.float64).eps * scale or beta == 0.0:
            converged = True
            break
        betas.append(beta)
        q = w / beta
    return LanczosResult(theta_min, theta_max, converged, j, j, res_min, res_max)


# --------------------------------------------------------------------------- Jacobian norms


@dataclass(frozen=True)
class SpectralNormResult:
    """sigma_max(J) as found by :func:`jacobian_spectral_norm`.

    ``value`` = sqrt(theta) for the top Ritz value theta of J^T J: a lower bound
    on ||J||_2 (a Rayleigh quotient), exact once the Krylov space is exhausted.
    ``residual`` = ||J^T J y - theta y|| for its Ritz vector y; ``n_products``
    counts products with J^T J (each one J v and one J^T u, by reverse passes).
    """

    value: float
    converged: bool
    n_products: int
    iterations: int
    residual: float


def _orthogonalise(basis: Tensor, w: Tensor) -> Tensor:
    """w minus its projection on the rows of ``basis`` (orthonormal), done twice.

    Twice is enough (Kahan-Parlett): one classical Gram-Schmidt pass loses
    orthogonality in proportion to the condition number; a second restores it
    to working precision, so no spurious copies of converged Ritz values appear.
    """
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _jtj_lanczos(f: Callable[[Tensor], Tensor], x: Tensor, v0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """``steps`` Lanczos steps on J^T J, J = df/dx at x, from v0: returns (alphas, betas), each (steps,).

    Pure tensor code without branching on values, so ``torch.func.vmap`` can
    batch it over samples. The graphs are built once and reused by every step:
    u -> J^T u is a vjp, and v -> J v is the vjp of that linear map (its
    transpose), i.e. reverse-over-reverse. That replaces ``torch.func.jvp``,
    which on one sample of the SNN cost 9-30 ms a product against 2 ms here (forward-mode AD
    decomposes the LIF recurrence's scalar arithmetic into slow primitives).
    """
    out, jt = torch.func.vjp(f, x)  # jt(u) = (J^T u,)
    _, j = torch.func.vjp(lambda u: jt(u)[0], torch.zeros_like(out))  # j(v) = (J v,)
    q = v0.reshape(-1) / torch.linalg.vector_norm(v0)
    # Preallocated (zeros_like keeps vmap's batching), so no step copies the basis.
    basis = torch.zeros_like(q).unsqueeze(0).repeat(steps, 1)
    alphas, betas = [], []
    for i in range(steps):
        basis[i] = q
        w = jt(j(q.view_as(x))[0])[0].reshape(-1)
        alphas.append(torch.dot(q, w))
        w = _orthogonalise(basis[: i + 1], w)  # also removes the alpha q_i and beta q_{i-1} terms
        beta = torch.linalg.vector_norm(w)
        betas.append(beta)
        # beta = 0: the Krylov space is invariant and the Ritz values exact; continue with q = 0
        # (zero rows in T add a Ritz value 0, harmless for the top of a PSD operator).
        q = torch.where(beta > 0, w / torch.where(beta > 0, beta, torch.ones_like(beta)), torch.zeros_like(w))
    return torch.stack(alphas), torch.stack(betas)


def _top_ritz(alphas: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Top Ritz value theta of the Lanczos tridiagonal T and its residual |beta_m e_m^T s|.

    Batched over leading dimensions; computed in float64 (T is tiny).
    """
    alphas, betas = alphas.double(), betas.double()
    t = torch.diag_embed(alphas) + torch.diag_embed(betas[..., :-1], 1) + torch.diag_embed(betas[..., :-1], -1)
    theta, s = torch.linalg.eigh(t)
    return theta[..., -1], (betas[..., -1] * s[..., -1, -1]).abs()


def _jacobian_steps(k: int, n: int, max_iter: int) -> int:
    """Lanczos steps for J^T J with J of shape (k, n): rank <= k, so k + 1 steps exhaust the Krylov space.

    In floating point J^T J maps null-space vectors to rounding noise of size
    eps ||J||^2 rather than to 0, so the space is not exactly invariant after
    k + 1 steps; :data:`_ROUNDING_STEPS` more take the relative Ritz residual
    from up to 3e-3 to below 1e-8 in float32 (measured on a 2312-256-10 SNN).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    return min(k + 1 + _ROUNDING_STEPS, n, max_iter)


def jacobian_spectral_norm(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_JACOBIAN_MAX_ITER,
    seed: int = 0,
    v0: Tensor | None = None,
) -> SpectralNormResult:
    """sigma_max(J) = ||df/dx||_2 at x, f: R^{shape x} -> R^k, matrix-free (T3).

    Lanczos on J^T J with products J^T (J v) by reverse passes (the Jacobian is
    never formed). J^T J has rank <= k, so k + 1 steps exhaust the Krylov space
    and make the top Ritz value theta equal to sigma_max^2 up to rounding;
    min(k + 2, max_iter) steps are run (one more against rounding, see
    :func:`_jacobian_steps`). Lanczos rather than plain power iteration: its
    Krylov space contains the power iterate, so it is never worse per product,
    and on a 2312-256-10 SNN (T = 20) power iteration needed 40 products per
    sample on average, up to 78, to a relative Ritz residual of 1e-3, where
    this needs 12 and ends near 1e-8. ``converged``: the Ritz
    residual is <= tol * theta (theta is within it of an eigenvalue, so value
    is within about tol / 2 relative). The start is ``v0`` or random from ``seed``.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    x = x.detach()
    if v0 is None:
        v0 = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v0 = v0.to(device=x.device, dtype=x.dtype).reshape(x.shape)
    with torch.no_grad():  # torch.func builds its own graphs; nothing outside needs one
        steps = _jacobian_steps(f(x).numel(), x.numel(), max_iter)
        alphas, betas = _jtj_lanczos(f, x, v0, steps)
    theta, res = _top_ritz(alphas, betas)
    theta_f, res_f = max(float(theta), 0.0), float(res)
    return SpectralNormResult(math.sqrt(theta_f), res_f <= tol * theta_f, steps, steps, res_f)


@dataclass(frozen=True)
class InputJacobianNorms:
    """Per probe sample i, sigma_max(dz/dx_i) as found by :func:`input_jacobian_norms` (T3).

    ``values[i]`` is a lower bound on ||J_i||_2 (exact once the Krylov space is
    exhausted, see :func:`jacobian_spectral_norm`); ``converged[i]`` per sample;
    ``iterations`` the Lanczos steps run for every sample; ``n_products`` the
    total number of J^T J products (iterations times samples).
    """

    values: tuple[float, ...]
    converged: tuple[bool, ...]
    iterations: int
    n_products: int

    @property
    def max(self) -> float:
        """The largest per-sample norm: T3's empirical estimate of L_in (from below)."""
        return max(self.values)


def input_jacobian_norms(
    model: nn.Module,
    x: Tensor,
    *,
    mode: str = "smooth",
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_JACOBIAN_MAX_ITER,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    vectorize: bool = True,
    chunk_size: int | None = DEFAULT_JACOBIAN_CHUNK,
    progress: bool = True,
) -> InputJacobianNorms:
    """||dz/dx_i||_2 for each sample x_i of x (B, T, *input_shape), z the logits in R^classes (T3).

    x_i is a whole input sequence (T, *input_shape) under the Euclidean norm,
    which is ||.||_{2,2} of THEORY.md, so max_i of these estimates L_in from
    below. Each sample runs :func:`jacobian_spectral_norm`'s Lanczos (classes + 2
    steps by default: exact up to rounding) and is seen by the model as a batch
    of one, so nothing couples samples. The samples are batched by ``torch.func.vmap``,
    ``chunk_size`` at a time (the Krylov bases take chunk * steps * |x_i|
    numbers); with ``vectorize=False``, or if vmap fails for the model (a
    warning says why), a loop over samples runs with a progress bar on stderr.
    Both use the same start vectors (drawn for the whole batch from ``seed``).
    """
    if mode != "smooth":
        raise ValueError(_SMOOTH_ONLY.format(what="the input Jacobian", mode=mode, stmt="T3"))
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    params, const, x, _, _ = _prepare(model, x, None, dtype)
    B = x.shape[0]
    v0 = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x)

    def f(xi: Tensor) -> Tensor:
        return functional_call(model, (params, const), (xi.unsqueeze(0),), {"mode": mode}).squeeze(0)

    with torch.no_grad():
        k = f(x[0]).numel()
    steps = _jacobian_steps(k, x[0].numel(), max_iter)

    def run(xi: Tensor, vi: Tensor) -> tuple[Tensor, Tensor]:
        return _jtj_lanczos(f, xi, vi, steps)

    alphas = betas = None
    if vectorize:
        try:
            with torch.no_grad():
                alphas, betas = torch.func.vmap(run, chunk_size=chunk_size)(x, v0)
        except (RuntimeError, NotImplementedError) as err:
            warnings.warn(f"vmap failed for this model ({err}); using a loop over samples", stacklevel=2)
    if alphas is None or betas is None:
        rows = []
        for i in tqdm(range(B), desc="input Jacobian norms", file=sys.stderr, disable=not progress):
            with torch.no_grad():
                rows.append(run(x[i], v0[i]))
        alphas, betas = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
    theta, res = _top_ritz(alphas, betas)
    theta = theta.clamp_min(0)
    return InputJacobianNorms(
        values=tuple(float(t) for t in theta.sqrt()),
        converged=tuple(bool(c) for c in res <= tol * theta),
        iterations=steps,
        n_products=steps * B,
    )


# --------------------------------------------------------------------------- per-sample gradients


def per_sample_grads(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    mode: str = "smooth",
    loss_fn: LossFn | None = None,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """grad_w l(z(w; x_i), y_i) for every sample i: name -> (B, *param_shape) (T6's sigma^2, T7).

    Computed by ``torch.func.vmap`` over ``torch.func.grad`` with
    ``functional_call``, each sample a batch of one (so ``loss_fn`` sees logits
    of shape (1, classes)). ``chunk_size`` bounds vmap's memory. In ``hfsb``
    mode (whose custom autograd.Function has no vmap rule) a loop over samples
    gives the same result. Use :func:`flatten` for a (B, P) tensor.
    """
    params, const, x, y_, _ = _prepare(model, x, y, dtype)
    y = cast(Tensor, y_)  # given, so _prepare returned it
    loss_fn = loss_fn or _default_loss

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (p, const), (xi.unsqueeze(0),), {"mode": mode})
        return loss_fn(logits, yi.unsqueeze(0))

    if mode != "hfsb":
        batched = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)
        return dict(batched(params, x, y))
    rows: list[dict[str, Tensor]] = []
    for i in range(x.shape[0]):
        with torch.enable_grad():
            p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
            grads = torch.autograd.grad(loss_one(p, x[i], y[i]), list(p.values()), allow_unused=True)
        rows.append({n: torch.zeros_like(p[n]) if g is None else g.detach() for n, g in zip(p, grads)})
    return {n: torch.stack([r[n] for r in rows]) for n in params}
