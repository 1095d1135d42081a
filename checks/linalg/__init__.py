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

One module per part, each importing only the ones above it in this list:

- ``_flat``: the trainable parameters as one flat vector (:func:`flatten`,
  :func:`flat_params`, :func:`flat_grad`), the default loss, the casting of a
  probe batch;
- ``hvp``: :class:`HessianOperator` and :func:`determinism_check`;
- ``lanczos``: :func:`lanczos_extremes` and what any operator must offer
  (:class:`MatVec`);
- ``jacobian``: :func:`jacobian_spectral_norm` and :func:`input_jacobian_norms`;
- ``per_sample``: :func:`per_sample_grads`;
- ``certificate``: :func:`spectral_radius_certificate`, a probabilistic upper bound on
  max |lambda| (Kuczynski-Wozniakowski: Lanczos on H^2 from a random start), and
  :func:`steps_for` / :func:`kw_epsilon`, its steps and accuracy.

Import from ``checks.linalg`` itself: the names below are the interface, the
module layout is not.

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

from checks.linalg._flat import LossFn, flat_grad, flat_params, flatten
from checks.linalg.certificate import (RandomizedBound, certificate_from_lanczos, kw_epsilon,
                                      spectral_radius_certificate, steps_for)
from checks.linalg.hvp import (
    CALIBRATION_PRODUCTS,
    CALIBRATION_SAMPLES,
    DETERMINISM_RTOL,
    DETERMINISM_RTOL_DEFAULT,
    HVP_METHODS,
    HessianOperator,
    HVPMethod,
    NondeterminismError,
    determinism_check,
)
from checks.linalg.jacobian import (
    DEFAULT_JACOBIAN_CHUNK,
    DEFAULT_JACOBIAN_MAX_ITER,
    InputJacobianNorms,
    SpectralNormResult,
    input_jacobian_norms,
    jacobian_spectral_norm,
)
from checks.linalg.lanczos import DEFAULT_LANCZOS_MAX_ITER, DEFAULT_TOL, LanczosResult, MatVec, lanczos_extremes
from checks.linalg.per_sample import per_sample_grads

# The estimators and records; the constants and types imported above (DEFAULT_TOL,
# HVPMethod, HVP_METHODS, ...) are part of the interface too, used as linalg.NAME,
# but were never star-exported.
__all__ = [
    "certificate_from_lanczos",
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
    "RandomizedBound",
    "spectral_radius_certificate",
    "steps_for",
    "kw_epsilon",
    "flatten",
    "flat_params",
    "flat_grad",
]
