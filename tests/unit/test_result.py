"""CheckResult and make_result (checks/_result.py): the status logic, honesty of holds, JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks._result import SCHEMA_VERSION, STATUSES, CheckResult, make_result


def _result(**overrides):
    kwargs = dict(id="T4", name="smoothness", bound=2.0, estimate=1.0, assumptions={"A1": True, "A4": True})
    kwargs.update(overrides)
    return make_result(**kwargs)


def test_holds_when_estimate_below_bound_and_assumptions_hold():
    r = _result()
    assert r.ratio == 0.5  # exact in binary
    assert r.holds is True
    assert r.status == "holds"
    assert r.schema_version == SCHEMA_VERSION


def test_violated_even_when_an_assumption_fails():
    # The bound is exceeded: that is a violation whatever the assumptions say.
    r = _result(estimate=3.0, assumptions={"A1": True, "A4": False})
    assert r.holds is False
    assert r.status == "violated"
    assert r.ratio == 1.5


def test_assumption_fails_when_bound_holds_but_an_assumption_is_false():
    r = _result(assumptions={"A1": True, "A4": False})
    assert r.holds is True
    assert r.status == "assumption fails"


def test_no_bound_means_holds_and_ratio_none():
    r = _result(bound=None, estimate=0.7)
    assert r.holds is None
    assert r.ratio is None
    assert r.status == "not applicable"
    r = _result(bound=None, estimate=None)
    assert r.holds is None and r.status == "not applicable"


def test_rtol_states_estimator_accuracy_and_is_not_applied_by_default():
    over = 2.0 * (1 + 1e-4)
    assert _result(estimate=over).status == "violated"  # rtol defaults to 0
    assert _result(estimate=over, rtol=1e-3).status == "holds"
    with pytest.raises(ValueError, match="rtol"):
        _result(rtol=-1e-3)


def test_zero_bound_has_no_ratio():
    r = _result(bound=0.0, estimate=0.0)
    assert r.ratio is None and r.holds is True
    assert _result(bound=0.0, estimate=1e-9).status == "violated"


def test_a_ratio_that_overflows_is_none_not_infinite():
    # found by hypothesis: estimate / bound is inf for a subnormal bound, which JSON cannot hold
    r = _result(bound=2.225073858507e-311, estimate=1.0)
    assert r.ratio is None and r.status == "violated"


def test_status_words_and_schema_are_the_run_folders():
    import runfolder

    assert STATUSES == runfolder.STATUSES and SCHEMA_VERSION == runfolder.SCHEMA_VERSION


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_numbers_are_refused(bad):
    with pytest.raises(ValueError, match="not a finite number"):
        _result(estimate=bad)
    with pytest.raises(ValueError, match="not a finite number"):
        _result(bound=bad)


def test_bound_without_estimate_is_refused():
    with pytest.raises(ValueError, match="no estimate"):
        _result(estimate=None)


def test_constructor_rejects_faked_holds():
    good = _result()
    with pytest.raises(ValueError, match="contradicts"):
        dataclasses.replace(good, holds=None)  # holds None needs "not applicable"
    with pytest.raises(ValueError, match="contradicts"):
        dataclasses.replace(good, status="violated")  # holds True with status violated
    with pytest.raises(ValueError, match="status must be one of"):
        dataclasses.replace(good, status="fine")
    with pytest.raises(ValueError, match="must be a bool"):
        dataclasses.replace(good, assumptions={"A4": 1})


def test_json_round_trip_plain_types_and_no_nan():
    r = _result(
        converged=np.bool_(True),
        n_products=np.int64(38),
        seed=np.int64(3),
        dtype="torch.float64",
        device="cpu",
        seconds=np.float64(1.25),
        details={
            "lambda_min": np.float64(-0.25),
            "spectrum": np.array([1.0, np.nan, 2.0]),
            "pair": (1, 2),
            "missing": float("nan"),
            "nested": {"inf": float("inf"), "ok": np.float32(0.5)},
        },
    )
    d = r.to_json()
    text = json.dumps(d, allow_nan=False)  # raises if any NaN or infinity survived
    assert "NaN" not in text and "Infinity" not in text
    assert d["dtype"] == "float64"
    assert d["details"]["spectrum"] == [1.0, None, 2.0]
    assert d["details"]["pair"] == [1, 2]
    assert d["details"]["missing"] is None and d["details"]["nested"]["inf"] is None
    assert type(d["n_products"]) is int and type(d["seconds"]) is float and type(d["converged"]) is bool
    back = CheckResult.from_json(json.loads(text))
    assert back == r
    assert back.to_json() == d


def test_json_keys_are_the_design_fields():
    d = _result().to_json()
    assert set(d) == {
        "id", "name", "bound", "estimate", "ratio", "holds", "status", "assumptions", "converged",
        "n_products", "seed", "dtype", "device", "seconds", "schema_version", "details",
        "local_bound", "looseness", "local_holds", "local_kind", "local_failure_probability",
    }


def test_a_local_bound_below_its_estimate_is_violated_however_loose_the_global_bound():
    """DESIGN.md: a local bound is a certificate; one below the estimate makes the record "violated"."""
    ok = make_result("T4", "smoothness", bound=1e6, estimate=2.0, local_bound=3.0, assumptions={"A4": True})
    assert (ok.status, ok.holds, ok.local_holds, ok.local_kind) == ("holds", True, True, "deterministic")
    broken = make_result("T4", "smoothness", bound=1e6, estimate=2.0, local_bound=1.9, assumptions={"A4": True})
    assert (broken.status, broken.holds, broken.local_holds) == ("violated", False, False)
    assert CheckResult.from_json(json.loads(json.dumps(broken.to_json()))) == broken
    # a probabilistic certificate is held the same way and says its failure probability
    p = make_result("T4", "smoothness", bound=1e6, estimate=2.0, local_bound=1.9, local_kind="probabilistic",
                    local_failure_probability=1e-3)
    assert p.status == "violated" and p.local_failure_probability == 1e-3
    # the local bound is held against what it certifies (T3: the Jacobian, not the adversarial secants)
    t3 = make_result("T3", "input Lipschitz", bound=1e6, estimate=2.5, local_bound=2.2, local_estimate=2.0)
    assert t3.status == "holds" and t3.local_holds is True
    # rtol (the estimator's stated accuracy) applies to both comparisons, and only that
    assert make_result("T3", "x", bound=9.0, estimate=1.00005, local_bound=1.0, rtol=1e-4).status == "holds"
    assert make_result("T3", "x", bound=9.0, estimate=1.0002, local_bound=1.0, rtol=1e-4).status == "violated"
    # a conditional value (T6's local RHS) below the estimate shows a failing premise, not a violation
    c = make_result("T6", "convergence", bound=10.0, estimate=2.0, local_bound=1.0, local_kind="conditional")
    assert (c.status, c.local_holds) == ("holds", False)


def test_inconsistent_local_fields_are_refused():
    good = make_result("T4", "smoothness", bound=10.0, estimate=2.0, local_bound=1.0).to_json()
    with pytest.raises(ValueError, match="broken certificate is a violation"):
        CheckResult.from_json({**good, "status": "holds", "holds": True})
    with pytest.raises(ValueError, match="local_kind"):
        CheckResult.from_json({**good, "local_kind": "hopeful"})
    with pytest.raises(ValueError, match="local_failure_probability"):
        make_result("T4", "smoothness", bound=10.0, estimate=2.0, local_bound=3.0, local_failure_probability=0.1)


def test_records_without_the_local_fields_still_load():
    """local_bound and looseness are optional: a record written before them loads with None and []."""
    d = _result().to_json()
    del d["local_bound"], d["looseness"]
    back = CheckResult.from_json(d)
    assert back.local_bound is None and back.looseness == []
    assert back == _result()


def test_local_fields_round_trip_and_refuse_nonfinite():
    entries = [{"factor": "kappa_l", "worst_case": [0.96], "measured": [0.9], "log10_ratio": 0.5},
               {"factor": "remaining proof slack (local bound / estimate)", "worst_case": 3.0, "measured": 1.0,
                "log10_ratio": 0.477}]
    r = make_result("T4", "smoothness", bound=10.0, estimate=1.0, local_bound=3.0, looseness=entries)
    back = CheckResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and back.local_bound == 3.0 and back.looseness == entries
    assert make_result("T4", "smoothness", bound=10.0, estimate=1.0, local_bound=float("inf")).local_bound is None
    with pytest.raises(ValueError, match="local_bound"):
        CheckResult(**{**r.to_json(), "local_bound": float("nan")})


def test_details_that_cannot_be_json_are_refused():
    with pytest.raises(TypeError, match="cannot write"):
        _result(details={"obj": object()})


def test_from_json_refuses_newer_schema_and_missing_keys():
    d = _result().to_json()
    with pytest.raises(ValueError, match="newer"):
        CheckResult.from_json({**d, "schema_version": SCHEMA_VERSION + 1})
    del d["status"]
    with pytest.raises(ValueError, match="lacks keys"):
        CheckResult.from_json(d)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(
    bound=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e6)),
    estimate=finite,
    rtol=st.floats(min_value=0.0, max_value=0.1),
    assumptions=st.dictionaries(st.sampled_from(["A1", "A2", "A3", "A4", "A5"]), st.booleans(), max_size=5),
)
def test_status_logic_property(bound, estimate, rtol, assumptions):
    r = make_result("T4", "smoothness", bound=bound, estimate=estimate, rtol=rtol, assumptions=assumptions)
    assert r.status in STATUSES
    if bound is None:
        assert (r.holds, r.ratio, r.status) == (None, None, "not applicable")
    else:
        exceeded = estimate > bound * (1 + rtol)
        assert r.holds is (not exceeded)
        assert (r.status == "violated") is exceeded
        if not exceeded:
            assert r.status == ("holds" if all(assumptions.values()) else "assumption fails")
    json.dumps(r.to_json(), allow_nan=False)
