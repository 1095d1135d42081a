"""checks.testing itself: the README's example runs and fails on a planted bound, assert_certificate's rule and
message, the strategies stay in their ranges and rebuild bit for bit, the exact references against loops of
autograd, and the import without hypothesis."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import checks
from checks.testing import (
    FAMILIES,
    KINDS,
    EventSpec,
    Ranges,
    RatioLog,
    assert_certificate,
    event_batches,
    exact_hessian,
    logit_jacobian,
    nets,
    one_thread,
)

ROOT = Path(__file__).resolve().parents[2]
README_SECTION = "## Property-testing a bound of your own"
MAX_PARAMS = {"dense": 154, "conv": 222, "mixed": 277}  # what the strategies' docstrings promise
# two exact computations of one derivative, equal in every draw: a few nets per kind show it, and the
# default suite's time stays within twice what it was before the soft-band family
REFERENCE_EXAMPLES = 10


def _readme_example() -> dict:
    """The first python block of the README's section, executed: its names (my_bound, test_my_bound, ...)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(README_SECTION):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md (Property-testing a bound of your own)", "exec"), namespace)
    return namespace


def test_the_readme_example_runs() -> None:
    _readme_example()["test_my_bound"]()


def test_the_readme_example_fails_on_a_halved_bound() -> None:
    example = _readme_example()
    true_bound = example["my_bound"]
    example["my_bound"] = lambda net: true_bound(net) / 2  # test_my_bound looks my_bound up in this namespace
    with pytest.raises(AssertionError, match=r"^my T3 bound \(subtract\), sample \d+: certificate .* < exact "):
        example["test_my_bound"]()


# --------------------------------------------------------------------------- assert_certificate


def test_assert_certificate_passes_within_rounding_and_returns_the_ratio() -> None:
    assert assert_certificate(2.0, 1.0) == 0.5
    assert_certificate(1.0, 1.0 + 5e-10)  # rtol 1e-9: rounding
    assert_certificate(0.0, 5e-13)  # atol 1e-12
    assert_certificate(math.inf, 1e300)
    assert assert_certificate(0.0, 0.0) == 0.0


@pytest.mark.parametrize("bound, exact", [(1.0, 1.0 + 2e-9), (0.0, 2e-12), (0.9, 1.0), (math.nan, 1.0), (1.0, math.nan)])
def test_assert_certificate_fails_on_a_bound_below_its_exact_value(bound: float, exact: float) -> None:
    with pytest.raises(AssertionError) as info:
        assert_certificate(bound, exact, what="T3 local, sample 0")
    message = str(info.value)
    assert "\n" not in message and message.startswith("T3 local, sample 0: ")
    assert repr(float(bound)) in message and repr(float(exact)) in message and "exact / certificate = " in message


def test_assert_certificate_takes_tensors_and_its_own_tolerances() -> None:
    assert_certificate(torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0 + 1e-10, dtype=torch.float64))
    with pytest.raises(AssertionError, match=r"rtol=1e-12"):
        assert_certificate(1.0, 1.0 + 1e-10, rtol=1e-12)


def test_the_ratio_log_keeps_the_largest_and_pauses() -> None:
    log = RatioLog()
    assert not log
    log.record("T3", 1.0, 4.0, spec="a")
    log.record("T3", 3.0, 4.0, spec="b")
    log.record("T3", 2.0, 4.0, spec="c")
    with log.paused():
        log.record("T3", 4.0, 4.0, spec="planted")
        log.count("skipped")
    log.count("assumption fails")
    assert log.ratios["T3"] == {"max": 0.75, "n": 3, "estimate": 3.0, "bound": 4.0, "spec": "'b'"}
    assert log.counts == {"assumption fails": 1} and log.active
    assert [line.split() for line in log.lines()] == [["T3", "max", "0.75", "over", "3", "values"],
                                                      ["assumption", "fails", "1", "examples"]]


# --------------------------------------------------------------------------- strategies


def _inside(value: float, interval: tuple[float, float]) -> bool:
    return interval[0] <= value <= interval[1]


@pytest.mark.parametrize("ranges, kind", [(r, k) for r in FAMILIES for k in KINDS],
                         ids=[f"{r.name}-{k}" for r in FAMILIES for k in KINDS])
@given(data=st.data())
@one_thread
def test_drawn_nets_stay_in_their_ranges_and_rebuild_bit_for_bit(ranges: Ranges, kind: str, data: st.DataObject) -> None:
    spec = data.draw(nets(kind, ranges), label="net")
    assert spec.kind == kind
    assert _inside(spec.lam, ranges.lam) and spec.lam < ranges.lam[1] and _inside(spec.theta, ranges.theta)
    assert _inside(spec.beta, ranges.beta) and _inside(spec.bias_log10, ranges.bias_log10) and _inside(spec.T, ranges.T)
    assert all(_inside(s, ranges.weight_log10) for s in spec.weight_log10) and spec.reset in ranges.resets
    net, again = spec.build(), spec.build()
    assert sum(p.numel() for p in net.model.parameters()) <= MAX_PARAMS[kind]
    assert net.x.dtype == torch.float64 and float(net.x.min()) >= 0 and float(net.x.max()) <= spec.x_inf
    assert torch.equal(net.x, again.x) and torch.equal(net.y, again.y)
    assert torch.equal(net.flat_params(), again.flat_params())


@given(spec=event_batches((2, 4, 4), 3, 5))
def test_event_batches_lie_in_the_box_with_their_labels(spec: EventSpec) -> None:
    x, y = spec.build()
    assert x.shape == (spec.batch, 3, 2, 4, 4) and float(x.min()) >= 0 and float(x.max()) <= spec.x_inf
    assert y.shape == (spec.batch,) and int(y.min()) >= 0 and int(y.max()) < 5
    assert torch.equal(spec.build()[0], x)


def test_ranges_refuse_an_impossible_region_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^Ranges 'wide': lam must be .*A1.*\)$"):
        FAMILIES[0].replace(lam=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"resets"):
        FAMILIES[1].replace(resets=("soft",))


# --------------------------------------------------------------------------- exact references


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=REFERENCE_EXAMPLES)
@given(data=st.data())
@one_thread
def test_exact_references_equal_loops_of_autograd(kind: str, data: st.DataObject) -> None:
    """logit_jacobian row k = grad_w z_k (one backward pass per class); exact_hessian v = grad_w <grad_w F, v>."""
    net = data.draw(nets(kind, FAMILIES[1]), label="net").build()
    params = list(net.model.parameters())
    J = logit_jacobian(net, 0)
    z = net.model(net.x[:1], mode="smooth")[0]
    for k in range(z.numel()):
        row = torch.cat([g.flatten() for g in torch.autograd.grad(z[k], params, retain_graph=True)])
        # float64, the same products in another order
        torch.testing.assert_close(J[k], row, rtol=1e-10, atol=1e-12)
    w = net.flat_params().requires_grad_(True)
    v = torch.randn(w.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (g,) = torch.autograd.grad(net.loss_fn()(w), w, create_graph=True)
    (Hv,) = torch.autograd.grad(g @ v, w)
    torch.testing.assert_close(exact_hessian(net) @ v, Hv, rtol=1e-9, atol=1e-11)


# --------------------------------------------------------------------------- packaging


def test_without_hypothesis_the_import_fails_in_one_line_that_names_the_extra() -> None:
    code = "import sys; sys.modules['hypothesis'] = None; import checks.testing"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and "pip install 'sast-toolkit[test]'" in last


def test_checks_testing_resolves_lazily_and_stays_out_of_star_imports(monkeypatch) -> None:
    monkeypatch.delattr(checks, "testing")  # as after a bare `import checks`: the name goes through checks.__getattr__
    assert checks.testing is sys.modules["checks.testing"] and checks.testing.assert_certificate is assert_certificate
    assert "testing" in dir(checks) and "testing" not in checks.__all__
    code = "import sys, checks; assert 'hypothesis' not in sys.modules and 'checks.testing' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
