"""How numbers and statuses read in the report: short, honest, never a fake infinity."""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

from reports.runs import ASSUMPTION_FAILS, HOLDS, NOT_APPLICABLE, NOT_MEASURED, VIOLATED

SIGNIFICANT_DIGITS = 3
"""Digits shown for bounds, estimates and slacks: enough to compare, not more than estimators give."""

_EXPONENT = re.compile(r"e([+-])0*(\d+)")
_SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


class StatusStyle(NamedTuple):
    """How a status is shown: a CSS class, a symbol, and its words (the symbol and words read without colour)."""

    css: str
    symbol: str
    words: str


STATUS_STYLES: dict[str, StatusStyle] = {
    HOLDS: StatusStyle("st-holds", "✓", HOLDS),                           # check mark
    VIOLATED: StatusStyle("st-violated", "✗", VIOLATED),                  # ballot x
    ASSUMPTION_FAILS: StatusStyle("st-assumption", "⚠", ASSUMPTION_FAILS),  # warning sign
    NOT_APPLICABLE: StatusStyle("st-na", "○", NOT_APPLICABLE),            # white circle
    NOT_MEASURED: StatusStyle("st-missing", "?", NOT_MEASURED),
}


def status_style(status: str) -> StatusStyle:
    """The :class:`StatusStyle` of ``status`` (unknown statuses read as not measured)."""
    return STATUS_STYLES.get(status, STATUS_STYLES[NOT_MEASURED])


def num(value: float | None, missing: str = NOT_MEASURED) -> str:
    """``value`` to :data:`SIGNIFICANT_DIGITS` significant digits ('1.23e5', '0.0421'); ``missing`` for None."""
    if value is None:
        return missing
    text = f"{value:.{SIGNIFICANT_DIGITS}g}"
    return _EXPONENT.sub(lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", text)


def slack_text(bound: float | None, estimate: float | None) -> str:
    """The slack bound / estimate as text: '12.3x', or why it is undefined (never 'inf')."""
    if bound is None:
        return "— (no bound)"
    if estimate is None:
        return "— (no estimate)"
    if estimate == 0:
        return "undefined (estimate is 0)"
    if estimate < 0:
        return "— (estimate < 0)"
    ratio = bound / estimate
    if not math.isfinite(ratio):
        return "too large to show (bound / estimate overflows)"
    return f"{num(ratio)}×"


def pct(value: float | None, missing: str = NOT_MEASURED) -> str:
    """A fraction in [0, 1] as a percentage with one decimal ('96.9%')."""
    return missing if value is None else f"{value * 100:.1f}%"


def points(value: float | None, missing: str = NOT_MEASURED) -> str:
    """A difference of two fractions in percentage points ('+8.0 pp')."""
    return missing if value is None else f"{value * 100:+.1f} pp"


def si(value: float | None, missing: str = NOT_MEASURED) -> str:
    """A large count with an SI prefix ('4.30 M')."""
    if value is None:
        return missing
    for scale, prefix in _SI_PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{SIGNIFICANT_DIGITS}g} {prefix}"
    return num(value)


LONG_LIST = 16
"""A list of more numbers than this (per-neuron lam or theta) is shown as its count and range."""


def _shorten(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) > LONG_LIST and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return f"{len(value)} values in [{min(value):g}, {max(value):g}]"
        return [_shorten(v) for v in value]
    return value


def plain(value: Any) -> str:
    """A config value as text: strings as they are, anything else as compact JSON (a long list of
    numbers, such as per-neuron values, as its count and range)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(_shorten(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
