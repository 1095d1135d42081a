"""A broken certificate reads "violated": plant a halved measured constant, and hypothesis finds a net whose
check record says so (status "violated", ``local_holds`` False, exit code 1), though its global bound holds.

The property is the checks' own status rule (DESIGN.md: a local bound below its estimate is a violation), run
through ``checks.state_bounds.run`` and ``checks.smoothness.run`` as a user runs them; ``hypothesis.find``
searches the soft-band family of ``checks.testing`` for a record the planted bug breaks. On the true code the
same nets read "holds" or "assumption fails" (checked on the example found).
"""

from __future__ import annotations

from unittest import mock

from hypothesis import Phase, find, settings

from checks import _budgets, smoothness, state_bounds
from checks._cli import exit_code
from checks.testing import SOFT_BAND, dense_nets, one_thread

PLANTED_EXAMPLES = 200  # find stops at the first counterexample
_SETTINGS = settings(max_examples=PLANTED_EXAMPLES, database=None, deadline=None,
                     phases=[Phase.generate, Phase.target, Phase.shrink])


def _broken(record) -> bool:
    return record.status == "violated" and record.local_holds is False and record.holds is False \
        and record.estimate <= record.bound and exit_code([record]) == 1


_true_currents = _budgets._currents


def _halved_currents(obs, model, reset):
    """T2's measured input currents, halved: the local interval shrinks below the observed states."""
    return [(lo / 2, hi / 2) for lo, hi in _true_currents(obs, model, reset)]


@one_thread
def _t2_record(spec):
    net = spec.build()
    return state_bounds.run(net.model, (net.x, net.y))


def test_a_halved_t2_current_reads_violated() -> None:
    with mock.patch.object(_budgets, "_currents", _halved_currents):
        found = find(dense_nets(SOFT_BAND), lambda spec: _broken(_t2_record(spec)), settings=_SETTINGS)
    assert _t2_record(found).status in ("holds", "assumption fails")  # the true certificate holds there


_true_loss_constants = _budgets.loss_constants


def _halved_gauss_newton(obs):
    out = _true_loss_constants(obs)
    if "GN" in out:
        out["GN"] = out["GN"] / 2
    return out


@one_thread
def _t4_record(spec):
    net = spec.build()
    # the deterministic proof alone: the randomized certificate would otherwise take over the local bound
    return smoothness.run(net.model, (net.x, net.y), failure_probability=None)


def test_a_halved_gauss_newton_norm_reads_violated() -> None:
    """A net whose Hessian is mostly Gauss-Newton makes T4's proof tight enough for the halving to show."""
    with mock.patch.object(_budgets, "loss_constants", _halved_gauss_newton):
        found = find(dense_nets(SOFT_BAND), lambda spec: _broken(_t4_record(spec)), settings=_SETTINGS)
    assert _t4_record(found).status in ("holds", "assumption fails")


def test_a_halved_randomized_certificate_reads_violated() -> None:
    """The probabilistic local bound is held by the same rule: halve it and the record breaks."""
    from checks import linalg

    true = linalg.spectral_radius_certificate

    def halved(*args, **kwargs):
        import dataclasses

        cert = true(*args, **kwargs)
        return dataclasses.replace(cert, value=None if cert.value is None else cert.value / 2)

    with mock.patch.object(linalg, "spectral_radius_certificate", halved):
        found = find(dense_nets(SOFT_BAND), lambda spec: _broken(_t4_record_randomized(spec)), settings=_SETTINGS)
    good = _t4_record_randomized(found)
    assert good.status in ("holds", "assumption fails") and good.local_kind == "probabilistic"


@one_thread
def _t4_record_randomized(spec):
    net = spec.build()
    return smoothness.run(net.model, (net.x, net.y), failure_probability=1e-9)
