"""Asserting a certificate against its exact value, and the log of how close each came (exact / certificate)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

RTOL = 1e-9  # relative slack on a bound: float64 rounding of sums of O(100) terms, with a wide margin
ATOL = 1e-12  # absolute slack: rounding of O(1) losses and logits


def ratio(exact: float, bound: float) -> float:
    """exact / bound, with 0 / 0 = 0 and x / 0 = inf for x > 0."""
    exact, bound = float(exact), float(bound)
    return exact / bound if bound > 0 else (0.0 if exact <= 0 else math.inf)


def within(exact: float, bound: float, *, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """exact <= bound up to float64 rounding: exact <= bound (1 + rtol) + atol (False if either is NaN)."""
    return float(exact) <= float(bound) * (1 + rtol) + atol


def assert_certificate(bound: float, exact: float, *, rtol: float = RTOL, atol: float = ATOL, what: str = "certificate") -> float:
    """Assert that ``bound`` (an upper bound) is >= ``exact`` up to float64 rounding; return exact / bound.

    Passes when exact <= bound (1 + rtol) + atol. rtol and atol absorb rounding only: state why
    yours are what they are beside the call. A NaN on either side fails. The message is one line
    naming ``what`` (the statement: "T3 local, sample 0"), both numbers in full and their ratio.
    """
    if not within(exact, bound, rtol=rtol, atol=atol):
        raise AssertionError(f"{what}: certificate {float(bound)!r} < exact {float(exact)!r} "
                             f"(exact / certificate = {ratio(exact, bound):.6g}; rtol={rtol:g}, atol={atol:g})")
    return ratio(exact, bound)


@dataclass
class RatioLog:
    """The largest exact / certificate ratio per key over a session, with the network that reached it, and counts.

    A test suite keeps one (``LOG = RatioLog()`` in a module of its own) and prints
    :meth:`lines` at the end, e.g. from ``pytest_terminal_summary``; :meth:`to_json` is
    what it writes to a file. :meth:`paused` keeps runs against a deliberately wrong
    bound (planted-bug tests) out of it.
    """

    ratios: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    active: bool = True

    def record(self, key: str, estimate: float, bound: float, spec: Any = None) -> float:
        """Log estimate / bound under ``key`` (keeping the largest and its ``repr(spec)``); returns the ratio."""
        r = ratio(estimate, bound)
        if not self.active:
            return r
        entry = self.ratios.setdefault(key, {"max": -math.inf, "n": 0, "estimate": None, "bound": None, "spec": None})
        entry["n"] += 1
        if r > entry["max"]:
            entry.update(max=r, estimate=float(estimate), bound=float(bound), spec=repr(spec))
        return r

    def count(self, key: str) -> None:
        """Count one event under ``key`` (an assumption that failed, a bound that overflowed, ...)."""
        if self.active:
            self.counts[key] = self.counts.get(key, 0) + 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        before, self.active = self.active, False
        try:
            yield
        finally:
            self.active = before

    def __bool__(self) -> bool:
        return bool(self.ratios or self.counts)

    def lines(self) -> list[str]:
        """One line per key: the largest ratio and how many values it is the max of; then the counts."""
        width = max(map(len, [*self.ratios, *self.counts, ""])) + 1
        out = [f"{key:<{width}} max {e['max']:.4g}  over {e['n']} values" for key, e in sorted(self.ratios.items())]
        return out + [f"{key:<{width}} {n} examples" for key, n in sorted(self.counts.items())]

    def to_json(self) -> dict[str, Any]:
        return {"ratios": self.ratios, "counts": self.counts}
