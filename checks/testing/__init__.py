"""Property-based tests of bounds: random tiny SNNs, exact float64 references, and a certificate assertion.

A bound of your own, property-tested in ten lines (README, "Property-testing a bound of
your own", holds the full example)::

    from hypothesis import given, settings
    from checks.testing import SOFT_BAND, assert_certificate, dense_nets, input_jacobian

    @settings(deadline=None)                     # torch code
    @given(dense_nets(SOFT_BAND))
    def test_my_bound(spec):
        net = spec.build()                       # float64 model, probe x in [0, x_inf], labels y
        for b in range(spec.batch):
            exact = torch.linalg.matrix_norm(input_jacobian(net, b), ord=2).item()
            assert_certificate(my_bound(net), exact, what=f"my bound, sample {b}")

What it holds:

- strategies (hypothesis) over :class:`Ranges`: :func:`dense_nets` (1-3 dense layers),
  :func:`conv_nets` (1-2 conv layers), :func:`mixed_nets` (conv, optional average pooling,
  1-2 dense layers), :func:`nets` (one of them by name), both resets; each draws a
  :class:`NetSpec`, whose printout rebuilds the same float64 model, probe batch and labels
  (``spec.build() -> Net``); :func:`event_batches` draws probe batches for a model of your
  own (:class:`EventSpec`). :data:`WIDE` reaches far outside the usual regime (A4 failing,
  saturated neurons); :data:`SOFT_BAND` stays where trained networks live (weights 0.5-3x
  the init, beta 0.5-3, lam 0.3-0.9), where states crowd the soft band |u - theta| < 4/beta:
  test a bound on both (:data:`FAMILIES`);
- exact references: :func:`input_jacobian` (dz/dx), :func:`logit_jacobian` (dz/dw),
  :func:`exact_hessian` and :func:`hessian_eigenvalues` (of the mean cross-entropy),
  :func:`sam_errors` (T5's quantities at a rho);
- :func:`assert_certificate` (an upper bound >= its exact value up to float64 rounding, a
  one-line message otherwise) and :class:`RatioLog` (the largest exact / bound per key).

Needs hypothesis (``pip install 'sast-toolkit[test]'``). Run the checks of a test under
:func:`one_thread` on a CPU: the tensors are tiny. Torch randomness comes from the drawn
seed, so hypothesis can replay and shrink every example.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError:
    raise ImportError("checks.testing needs hypothesis, which is not installed: pip install 'sast-toolkit[test]'",
                      name="hypothesis") from None

from checks.testing._certificate import ATOL, RTOL, RatioLog, assert_certificate, ratio, within
from checks.testing._exact import (
    SamErrors,
    exact_hessian,
    hessian_eigenvalues,
    inner_max,
    input_jacobian,
    logit_jacobian,
    sam_errors,
    sphere_point,
    value_and_grad,
)
from checks.testing._nets import (
    FAMILIES,
    GRIDS,
    KINDS,
    NEURONS,
    SOFT_BAND,
    WIDE,
    EventSpec,
    Net,
    NetSpec,
    Ranges,
    conv_nets,
    dense_nets,
    event_batches,
    mixed_nets,
    nets,
    one_thread,
)

__all__ = [
    "ATOL", "FAMILIES", "GRIDS", "KINDS", "NEURONS", "RTOL", "SOFT_BAND", "WIDE",
    "EventSpec", "Net", "NetSpec", "Ranges", "RatioLog", "SamErrors",
    "assert_certificate", "conv_nets", "dense_nets", "event_batches", "exact_hessian", "hessian_eigenvalues",
    "inner_max", "input_jacobian", "logit_jacobian", "mixed_nets", "nets", "one_thread", "ratio", "sam_errors",
    "sphere_point", "value_and_grad", "within",
]
