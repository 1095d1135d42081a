"""The bound properties can fail: with a planted bug in theory, hypothesis finds a counterexample.

(Second test: the local T4 bound, with a planted bug in its measured Gauss-Newton norm.)

The planted bug: sup sig_beta' taken as beta/8 instead of beta/4 (T1) in theory.bounds,
which halves every (beta/4) factor of T3's L_in = R_o T^{-1/2} prod_l (beta/4) R_l K_l.
A1-A4 (kappa via theory.scalar) are left untouched, so only the slope factor is wrong.
The same property as the suite (``check_input_lipschitz``) is run under ``hypothesis.find``.
"""

from __future__ import annotations

from unittest import mock

from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

import numpy as np

import checks.local
import theory.bounds
from _log import LOG
from checks import _budgets
from checks.testing import SOFT_BAND, dense_nets
from test_bounds_exact import check_input_lipschitz
from test_local_bounds import check_t3, check_t4

PLANTED_EXAMPLES = 200  # find stops at the first counterexample (a handful of examples in practice)
_true_sup = theory.bounds.sigmoid_derivative_sup


def _sup_with_beta_over_8(order: int, beta: float) -> float:
    """T1 with the planted bug: sup |sig_beta'| = beta/8 (the true value is beta/4); other orders exact."""
    value = _true_sup(order, beta)
    return value / 2 if order == 1 else value


def _violates(spec) -> bool:
    try:
        check_input_lipschitz(spec)
    except AssertionError:
        return True
    return False


def test_T3_property_finds_the_planted_beta_over_8() -> None:
    with LOG.paused(), mock.patch.object(theory.bounds, "sigmoid_derivative_sup", _sup_with_beta_over_8):
        assert theory.bounds.input_lipschitz.__globals__["sigmoid_derivative_sup"] is _sup_with_beta_over_8
        # raises hypothesis.errors.NoSuchExample (the test fails) if no counterexample is found
        found = find(dense_nets(), _violates, settings=settings(max_examples=PLANTED_EXAMPLES, database=None,
                                                                phases=[Phase.generate, Phase.target, Phase.shrink]))
    # the counterexample is the planted bug's, not a real one: the true bound holds on it
    given(st.just(found))(settings(max_examples=1, database=None)(check_input_lipschitz))()


def _halved_gauss_newton(obs):
    """checks.local.loss_constants with the planted bug: the Gauss-Newton norm ||J^T H J|| halved."""
    out = _true_loss_constants(obs)
    if "GN" in out:
        out["GN"] = out["GN"] / 2
    return out


def _t4_local_violates(spec) -> bool:
    try:
        check_t4(spec)
    except AssertionError:
        return True
    return False


_true_loss_constants = _budgets.loss_constants


def test_T4_local_property_finds_a_halved_gauss_newton_norm() -> None:
    """The local T4 property can fail: halve the measured Gauss-Newton term, and hypothesis finds a net where the
    exact Hessian exceeds the local bound (a net whose Hessian is Gauss-Newton only, all sig' ~ 0, suffices)."""
    with LOG.paused(), mock.patch.object(_budgets, "loss_constants", _halved_gauss_newton):
        found = find(dense_nets(), _t4_local_violates,
                     settings=settings(max_examples=PLANTED_EXAMPLES, database=None, deadline=None,
                                       phases=[Phase.generate, Phase.target, Phase.shrink]))
    given(st.just(found))(settings(max_examples=1, database=None)(lambda spec: check_t4(spec)))()


_true_second_order = _budgets.one_layer_second_order


def _halved_one_layer_z2(model, obs):
    """checks.local.one_layer_second_order with the planted bug: its Z2 halved."""
    out = _true_second_order(model, obs)
    if out is not None:
        out["Z2"] = out["Z2"] / 2
    return out


def test_T4_local_property_finds_a_halved_one_layer_z2() -> None:
    """The per-neuron Z2 of a one-dense-layer net is tight enough that halving it is caught."""
    with LOG.paused(), mock.patch.object(_budgets, "one_layer_second_order", _halved_one_layer_z2):
        found = find(dense_nets(), _t4_local_violates,
                     settings=settings(max_examples=PLANTED_EXAMPLES, database=None, deadline=None,
                                       phases=[Phase.generate, Phase.target, Phase.shrink]))
    given(st.just(found))(settings(max_examples=1, database=None)(lambda spec: check_t4(spec)))()


def _unsigned_g_derivative(u, order, lam, theta, beta, reset):
    """checks.local's g' with the bug this round fixed planted back: |g'| in T3's readout composite."""
    return np.abs(_true_g_derivative(u, order, lam, theta, beta, reset))


_true_g_derivative = checks.local.g_derivative


def _t3_proof_violates(spec) -> bool:
    try:
        check_t3(spec, "soft-band")
    except AssertionError:
        return True
    return False


def test_T3_local_property_finds_the_unsigned_readout_composite() -> None:
    """The zero reset's g' changes sign in the soft band; with |g'| in the readout composite the proof's local bound
    fell below the exact Jacobian norm. The soft-band family finds such a net."""
    with LOG.paused(), mock.patch.object(checks.local, "g_derivative", _unsigned_g_derivative):
        # one spiking layer: the readout composite is then the whole proof, exact when signed (derandomized: the
        # same examples every run, so the test cannot pass or fail by the draw)
        found = find(dense_nets(SOFT_BAND, depth=(1, 1)), _t3_proof_violates,
                     settings=settings(max_examples=PLANTED_EXAMPLES, database=None, deadline=None, derandomize=True,
                                       phases=[Phase.generate, Phase.target, Phase.shrink]))
    assert found.reset == "zero"
    given(st.just(found))(settings(max_examples=1, database=None)(lambda spec: check_t3(spec, "soft-band")))()
