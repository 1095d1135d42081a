"""The record every check returns: :class:`CheckResult` (DESIGN.md, "The run folder").

A check holds one empirical estimate against one upper bound of THEORY.md
(statement IDs A1-A5, T1-T7, E1, E2) and reports, in plain JSON types:

    ratio  = estimate / bound                          (None without a bound)
    holds  = estimate <= bound * (1 + rtol)             (None without a bound; never faked)
    status = "violated"          if a bound applies and the estimate exceeds it,
                                 whatever the assumptions say, or if the record's
                                 local bound (a certificate at w on the probe) lies
                                 below what it bounds (``local_holds`` False);
             "assumption fails"  if the bound holds but some assumption is False
                                 (the finite-T forms of THEORY.md still apply, so the
                                 comparison is meaningful, but the guarantee is weaker);
             "holds"             if the bound holds and every assumption holds;
             "not applicable"    if no bound applies (for example T3 in hard mode,
                                 or the empirical statements E1, E2).

The JSON key of a result is its stable ``id`` (a statement ID), never a class
name, so renaming code does not break old logs. The status words, the rule that
derives them and the schema version are the run folder's contract
(:mod:`runfolder`); this module adds the record around them and imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runfolder import NOT_APPLICABLE, SCHEMA_VERSION, STATUSES, VIOLATED, derive_status, plain

# What a local bound is (``CheckResult.local_kind``): a deterministic certificate at (w, probe); a
# probabilistic one, which fails with at most ``local_failure_probability`` over the estimator's random
# start; or a conditional value, valid only under a premise the toolkit does not verify (T6's local RHS
# assumes F is L_local-smooth between the logged points). A certificate below what it bounds makes the
# record "violated"; a conditional value below it only shows that its premise fails (``local_holds``).
DETERMINISTIC = "deterministic"
PROBABILISTIC = "probabilistic"
CONDITIONAL = "conditional"
LOCAL_KINDS: tuple[str, ...] = (DETERMINISTIC, PROBABILISTIC, CONDITIONAL)

_BAD_STATUS = "status must be one of {allowed}, got {got!r}"
_NONFINITE = (
    "{what} of check {id!r} is {value!r}, not a finite number; pass None where nothing "
    "was measured or no bound applies, and record why in details"
)
_BAD_ASSUMPTION = "assumption {name!r} of check {id!r} must be a bool, got {value!r}; use True or False"
_NEWER_SCHEMA = (
    "check result has schema_version {got}, newer than this code understands ({ours}); "
    "update the toolkit to read it"
)
_MISSING_KEYS = "check result JSON lacks keys {missing}; expected the fields of CheckResult: {expected}"


@dataclass(frozen=True)
class CheckResult:
    """One check of one THEORY.md statement: the bound, the estimate, and how they compare.

    Build it with :func:`make_result`, which derives ``ratio``, ``holds`` and
    ``status`` from ``bound``, ``estimate`` and ``assumptions``; the constructor
    itself only checks that the fields are consistent, so a record read back
    from JSON is the record that was written.

    Fields: ``id`` the statement ID ("T4"); ``name`` a short readable name
    ("smoothness"); ``bound`` and ``estimate`` (floats or None); ``ratio`` and
    ``holds`` as in the module docstring; ``status`` one of :data:`STATUSES`;
    ``assumptions`` maps assumption IDs ("A1", "A4", ...) to whether they hold;
    ``converged`` whether the iterative estimator converged (None when it is not
    iterative); ``n_products`` the matrix-vector products it used; ``seed``,
    ``dtype``, ``device`` and ``seconds`` make the number reproducible and
    costed; ``details`` holds check-specific plain data.

    Optional (absent from records written before them, which still load): ``local_bound``,
    the statement's bound with its worst-case constants replaced by values measured at this
    w on this probe (``theory.local``; a certificate for that point and data only, what it
    covers in ``details["local"]["scope"]``; None where not computed, the reason in
    ``details["local"]["reason"]``); ``looseness``, the budget from the global bound to the
    estimate, one ``{factor, worst_case, measured, log10_ratio}`` per substituted factor in
    the order of substitution, then the remaining proof slack (the log10 ratios sum to
    log10(bound / estimate)); ``local_holds``, whether the local bound lies at or above what it
    bounds (the estimate, or ``details["local"]["local_estimate"]`` where the estimate covers more;
    None without a local bound). A broken certificate (``local_holds`` False) makes the record
    "violated", like a violated global bound.
    """

    id: str
    name: str
    bound: float | None
    estimate: float | None
    ratio: float | None
    holds: bool | None
    status: str
    assumptions: dict[str, bool]
    converged: bool | None
    n_products: int
    seed: int | None
    dtype: str
    device: str
    seconds: float
    schema_version: int = SCHEMA_VERSION
    details: dict[str, Any] = field(default_factory=dict)
    local_bound: float | None = None
    looseness: list[dict[str, Any]] = field(default_factory=list)
    local_holds: bool | None = None
    local_kind: str | None = None
    local_failure_probability: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(_BAD_STATUS.format(allowed=", ".join(map(repr, STATUSES)), got=self.status))
        for what in ("bound", "estimate", "ratio", "local_bound"):
            value = getattr(self, what)
            if value is not None and not math.isfinite(value):
                raise ValueError(_NONFINITE.format(what=what, id=self.id, value=value))
        for name, value in self.assumptions.items():
            if not isinstance(value, bool):
                raise ValueError(_BAD_ASSUMPTION.format(name=name, id=self.id, value=value))
        if (self.holds is None) != (self.status == NOT_APPLICABLE):
            raise ValueError(
                f"check {self.id!r}: holds={self.holds!r} contradicts status {self.status!r}; "
                "holds is None exactly when no bound applies (status 'not applicable')"
            )
        if self.holds is not None and self.holds != (self.status != VIOLATED):
            raise ValueError(f"check {self.id!r}: holds={self.holds!r} contradicts status {self.status!r}")
        if self.local_kind is not None and self.local_kind not in LOCAL_KINDS:
            raise ValueError(f"check {self.id!r}: local_kind must be one of {', '.join(LOCAL_KINDS)}, "
                             f"got {self.local_kind!r}")
        if self.local_holds is not None and (self.local_bound is None or (
                self.local_holds is False and self.holds and self.local_kind != CONDITIONAL)):
            raise ValueError(f"check {self.id!r}: local_holds={self.local_holds!r} contradicts local_bound="
                             f"{self.local_bound!r} and holds={self.holds!r} (a broken certificate is a violation)")
        p = self.local_failure_probability
        if p is not None and not (self.local_kind == PROBABILISTIC and 0.0 < p < 1.0):
            raise ValueError(f"check {self.id!r}: local_failure_probability={p!r} needs local_kind "
                             f"{PROBABILISTIC!r} and a value in (0, 1)")

    def to_json(self) -> dict[str, Any]:
        """This record as plain JSON types (dict, list, str, int, float, bool, None).

        Goes through :func:`dataclasses.asdict`; numpy or torch scalars and arrays
        in ``details`` become Python numbers and lists, tuples become lists, and
        non-finite floats become None (JSON has no NaN or infinity).
        """
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CheckResult":
        """Rebuild a record written by :meth:`to_json` (validated by the constructor)."""
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(_MISSING_KEYS.format(missing=missing, expected=names))
        version = int(d.get("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise ValueError(_NEWER_SCHEMA.format(got=version, ours=SCHEMA_VERSION))
        kwargs = {k: d[k] for k in names if k in d}
        kwargs["assumptions"] = dict(kwargs["assumptions"])
        kwargs["details"] = dict(kwargs.get("details") or {})
        kwargs["looseness"] = [dict(e) for e in kwargs.get("looseness") or [] if isinstance(e, Mapping)]
        return cls(**kwargs)


def _finite_or_none(value: float | None, what: str, id: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(_NONFINITE.format(what=what, id=id, value=value))
    return value


def make_result(
    id: str,
    name: str,
    *,
    bound: float | None,
    estimate: float | None,
    assumptions: Mapping[str, bool] | None = None,
    rtol: float = 0.0,
    converged: bool | None = None,
    n_products: int = 0,
    seed: int | None = None,
    dtype: Any = "float32",
    device: Any = "cpu",
    seconds: float = 0.0,
    details: Mapping[str, Any] | None = None,
    local_bound: float | None = None,
    looseness: list[Mapping[str, Any]] | None = None,
    local_estimate: float | None = None,
    local_kind: str | None = None,
    local_failure_probability: float | None = None,
) -> CheckResult:
    """Build a :class:`CheckResult`, deriving ratio, holds and status by :func:`runfolder.derive_status`.

    The bound is an upper bound: ``holds = estimate <= bound * (1 + rtol)``,
    where ``rtol`` (default 0) is the stated relative accuracy of the estimator,
    to be set only where the estimate is known to carry that error (it never
    loosens the bound itself). ``ratio = estimate / bound`` (None when the bound
    is 0, or so small that the ratio overflows). Without a bound (``bound=None``), ``holds`` and ``ratio`` are None and
    the status is "not applicable". An estimate above the bound is "violated"
    even when an assumption fails; a bound that holds with a failing assumption
    is "assumption fails". ``dtype`` and ``device`` may be torch objects or
    strings ("torch.float32" is stored as "float32"). ``local_bound`` and ``looseness``:
    see :class:`CheckResult` (a non-finite local bound is stored as None); the local bound is held
    against ``local_estimate`` (default ``estimate``: what the certificate bounds) with the same
    ``rtol``, and a local bound below it makes the record "violated" where it is a certificate
    (``local_kind`` "deterministic", the default, or "probabilistic" with its
    ``local_failure_probability``); a "conditional" local value is compared (``local_holds``)
    without changing the status.

    Raises ValueError for a NaN or infinite bound or estimate (pass None and say
    why in ``details``), for a bound given without an estimate, and for a
    negative ``rtol``.
    """
    bound = _finite_or_none(bound, "bound", id)
    estimate = _finite_or_none(estimate, "estimate", id)
    local_bound = None if local_bound is None or not math.isfinite(float(local_bound)) else float(local_bound)
    local_estimate = _finite_or_none(local_estimate, "local_estimate", id)
    if local_bound is not None and local_kind is None:
        local_kind = DETERMINISTIC
    certificate = local_bound if local_kind != CONDITIONAL else None
    verdict = derive_status(bound, estimate, assumptions, rtol=rtol, local_bound=certificate,
                            local_estimate=local_estimate)  # refuses a negative rtol first
    local_holds = verdict.local_holds
    if local_kind == CONDITIONAL and local_bound is not None and estimate is not None:
        local_holds = derive_status(local_bound, estimate if local_estimate is None else local_estimate,
                                    rtol=rtol).holds
    if bound is not None and estimate is None:
        raise ValueError(
            f"check {id!r} has bound {bound} but no estimate; pass the estimate, or bound=None "
            "if nothing was measured"
        )
    assumptions = {str(k): bool(v) for k, v in (assumptions or {}).items()}
    # estimate / bound overflows for a subnormal bound (1 / 2e-311): JSON has no infinity, so no ratio
    ratio = verdict.ratio if verdict.ratio is None or math.isfinite(verdict.ratio) else None
    return CheckResult(
        id=str(id),
        name=str(name),
        bound=bound,
        estimate=estimate,
        ratio=ratio,
        holds=verdict.holds,
        status=verdict.status,
        assumptions=assumptions,
        converged=None if converged is None else bool(converged),
        n_products=int(n_products),
        seed=None if seed is None else int(seed),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        seconds=float(seconds),
        schema_version=SCHEMA_VERSION,
        details=plain(dict(details or {})),
        local_bound=local_bound,
        looseness=plain([dict(e) for e in (looseness or [])]),
        local_holds=local_holds,
        local_kind=local_kind if local_bound is not None else None,
        local_failure_probability=(None if local_bound is None or local_failure_probability is None
                                   else float(local_failure_probability)),
    )
