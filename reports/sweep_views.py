"""The sweep report's view models: a sweep's ``results.json`` turned into sentences, tables and figures.

:class:`Sweep` reads the parts of ``results.json`` (``apps.experiments.cli.analyse``)
leniently: any part may be missing, null or of the wrong type in a partial or older
file, and then reads as "not measured". Means come from the file's ``table`` (mean and
95% t interval over seeds); without one, from the runs themselves (means only, no
interval). Differences are judged from their interval as ``apps.experiments.stats``
does: *resolved* when the 95% interval of the paired difference excludes 0.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reports import _format as fmt
from reports.runs import NOT_MEASURED, number, numbers
from reports.sweep_figures import METHOD_NAMES, Cell, Series, p_text

METHOD_ORDER = ("hfsb", "sf", "sf-matched", "sast")
CONTROLS = ("sf", "sf-matched")
"""What SAST is compared with, seed by seed (``apps.experiments.stats.CONTROLS``)."""
CONTROL_NAMES = {"sf": "SF", "sf-matched": "the compute-matched SF (SF-matched)"}
ALPHA = 0.05
"""The significance level the findings name for a rank correlation (a guide: runs share seeds)."""
MECHANISM_FINDINGS = (("input_grad_norm_mean", "the mean input-gradient norm"),
                      ("lambda_max", "the largest Hessian eigenvalue λ_max"),
                      ("sharpness", "the first-order sharpness"))
"""Quantities the mechanism predicts the transfer gap rises with (THEORY.md T7 and SAM's penalty)."""
CORRELATE_PANELS = (("input_grad_norm_mean", "input-gradient norm (mean)"), ("lambda_max", "λ_max (T4 probe)"),
                    ("sharpness", "first-order sharpness"), ("soft_band_mean", "soft-band fraction (mean)"))
SMOOTH_TRAINED = ("sf", "sf-matched", "sast")
PERCENT_FIELDS = ("smooth_acc", "hard_acc", "corruption_mean_hard", "corruption_mean_smooth", "int8_hard_acc")
POINT_FIELDS = ("gap",)
FIELD_NAMES = {"hard_acc": "hard-spike accuracy", "gap": "transfer gap", "smooth_acc": "smooth accuracy"}
HIGHER_IS_BETTER = {"hard_acc": True, "smooth_acc": True, "gap": False}
RESULT_COLUMNS = (("smooth_acc", "smooth acc. (%)"), ("hard_acc", "hard acc. (%)"), ("gap", "gap (pp)"),
                  ("corruption_mean_hard", "corrupted, hard (%)"), ("ece_hard", "ECE, hard"))
_RHO_DIGITS = 9
"""rho is matched between the runs, the table and the paired records after rounding (JSON floats)."""


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else {} (a missing or malformed part of results.json)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else []."""
    return value if isinstance(value, list) else []


def rho_key(value: Any) -> float:
    """rho as a float rounded for matching (0.0 where it is not a number)."""
    v = number(value)
    return round(v, _RHO_DIGITS) if v is not None else 0.0


@dataclass(frozen=True)
class RunRow:
    """One run of the sweep, with its identifying fields made safe to compare."""

    method: str
    rho: float
    seed: int | None
    setting: str
    values: dict[str, str]
    data: dict[str, Any]

    @property
    def series(self) -> Series:
        return Series(self.method, self.rho)

    @property
    def name(self) -> str:
        seed = "?" if self.seed is None else self.seed
        return f"{self.setting + ' ' if self.setting else ''}{self.series.label}, seed {seed}"

    def get(self, field: str) -> float | None:
        return number(self.data.get(field))


def _run_row(raw: Any) -> RunRow | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("method"), str):
        return None
    seed = number(raw.get("seed"))
    values = {str(k): str(v) for k, v in as_dict(raw.get("setting_values")).items()}
    setting = raw.get("setting") if isinstance(raw.get("setting"), str) else ""
    return RunRow(raw["method"], rho_key(raw.get("rho")), None if seed is None else int(seed), setting, values, raw)


def interval_text(cell: Cell, *, scale: float = 100.0, signed: bool = False, digits: int = 1) -> str:
    """'9.8 [6.6, 12.9]' (scaled), '9.8' without an interval, 'not measured' without a mean."""
    if cell.mean is None:
        return NOT_MEASURED
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    head = f.format(cell.mean * scale)
    if cell.lo is None or cell.hi is None:
        return head
    return f"{head} [{cell.lo * scale:.{digits}f}, {cell.hi * scale:.{digits}f}]"


def field_text(field: str, cell: Cell) -> str:
    if field in PERCENT_FIELDS:
        return interval_text(cell)
    if field in POINT_FIELDS:
        return interval_text(cell, signed=True)
    return interval_text(cell, scale=1.0, digits=3)


def judge(lo: float | None, hi: float | None) -> str:
    """'higher', 'lower', 'not resolved' (the interval contains 0), or 'no interval' (one seed)."""
    if lo is None or hi is None:
        return "no interval"
    if lo > 0:
        return "higher"
    if hi < 0:
        return "lower"
    return "not resolved"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NOT_MEASURED
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


class Sweep:
    """Lenient access to a sweep's results: runs, settings, axes, the table, paired records, correlations."""

    def __init__(self, results: dict[str, Any]):
        self.results = results
        self.runs = [r for r in (_run_row(x) for x in as_list(results.get("rows"))) if r is not None]
        table = [t for t in as_list(results.get("table")) if isinstance(t, dict) and isinstance(t.get("method"), str)]
        self.table = {(t.get("setting") if isinstance(t.get("setting"), str) else "", t["method"],
                       rho_key(t.get("rho"))): t for t in table}
        axes = {str(k): [str(v) for v in as_list(vs)] for k, vs in as_dict(results.get("axes")).items()}
        self.rho_axis = axes.pop("rho", None)
        self.axes = axes  # the non-rho axes, in the order given
        for run in self.runs:
            for k, v in run.values.items():
                if v not in self.axes.setdefault(k, []):
                    self.axes[k].append(v)
        seen = list(dict.fromkeys([r.setting for r in self.runs] + [k[0] for k in self.table]))
        self.values = {s: next((r.values for r in self.runs if r.setting == s), {}) for s in seen}
        for (s, _, _), t in self.table.items():
            if not self.values.get(s):
                self.values[s] = {a: str(t[a]) for a in self.axes if a in t}
        order = {a: {v: i for i, v in enumerate(vs)} for a, vs in self.axes.items()}
        self.settings = sorted(seen, key=lambda s: tuple(order[a].get(self.values[s].get(a, ""), len(order[a]))
                                                         for a in self.axes))
        present = {(k[1], k[2]) for k in self.table} | {(r.method, r.rho) for r in self.runs}
        self.sast_rhos = sorted({rho for m, rho in present if m == "sast"})
        self.columns = [Series(m, 0.0) for m in METHOD_ORDER[:3] if any(p[0] == m for p in present)]
        self.columns += [Series("sast", rho) for rho in self.sast_rhos]
        paired = results.get("paired")
        self.paired = None if not isinstance(paired, list) else [p for p in paired if isinstance(p, dict)]
        corr = results.get("correlations")
        self.correlations = None if not isinstance(corr, list) else [c for c in corr if isinstance(c, dict)]

    def runs_of(self, setting: str, series: Series | None = None) -> list[RunRow]:
        return [r for r in self.runs if r.setting == setting and (series is None or r.series == series)]

    def groups(self) -> list[tuple[str, Series]]:
        """Every (setting, series) with a table row or a run, settings in axis order, methods in sweep order."""
        keys = {(k[0], Series(k[1], k[2])) for k in self.table} | {(r.setting, r.series) for r in self.runs}
        rank = {s: i for i, s in enumerate(self.settings)}
        return sorted(keys, key=lambda g: (rank.get(g[0], len(rank)), _method_rank(g[1].method), g[1].rho))

    def cell(self, setting: str, series: Series, field: str) -> Cell:
        """Mean and 95% interval of ``field`` over seeds: from the table, else the runs' mean (no interval)."""
        row = self.table.get((setting, series.method, series.rho))
        if row is not None and number(row.get(f"{field}_mean")) is not None:
            return Cell(number(row.get(f"{field}_mean")), number(row.get(f"{field}_lo")),
                        number(row.get(f"{field}_hi")))
        vals = [v for v in (r.get(field) for r in self.runs_of(setting, series)) if v is not None]
        return Cell(sum(vals) / len(vals) if vals else None)

    def seeds(self, setting: str, series: Series) -> int | None:
        row = self.table.get((setting, series.method, series.rho))
        n = number(row.get("seeds")) if row is not None else None
        return int(n) if n is not None else (len(self.runs_of(setting, series)) or None)

    def paired_record(self, setting: str, rho: float, control: str, field: str) -> dict[str, Any] | None:
        for p in self.paired or []:
            if (p.get("setting", "") == setting and rho_key(p.get("rho")) == rho and p.get("control") == control
                    and p.get("field") == field):
                return p
        return None

    def correlation(self, x: str, scope: str = "all") -> dict[str, Any] | None:
        return next((c for c in self.correlations or [] if c.get("scope") == scope and c.get("x") == x
                     and c.get("y", "gap") == "gap"), None)


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def setting_label(setting: str) -> str:
    return setting or "all runs (no axes)"


# --- header ---------------------------------------------------------------------------------------

def _plain(value: Any) -> str:
    return NOT_MEASURED if value is None else fmt.plain(value)


def facts(sw: Sweep) -> list[tuple[str, str]]:
    """The header's key facts, as text."""
    r = sw.results
    experiment = _plain(r.get("experiment"))
    if isinstance(r.get("preset"), str):
        experiment += f" (preset {r['preset']})"
    axes = [f"{k} = {', '.join(v)}" for k, v in sw.axes.items()]
    rhos = sw.rho_axis or [f"{v:g}" for v in numbers(r.get("rhos")) if v is not None]
    if rhos:
        axes.append(f"rho = {', '.join(rhos)}")
    severities = numbers(r.get("severities"))
    out = [("dataset", _plain(r.get("dataset"))), ("experiment", experiment),
           ("axes", "; ".join(axes) or "none"), ("seeds", _plain(r.get("seeds"))),
           ("epochs per run", _plain(r.get("epochs"))
            + " (SF-matched: twice as many, the gradient evaluations of SAST)"),
           ("runs", str(len(sw.runs))),
           ("corruption severities", ", ".join(f"{v:g}" for v in severities if v is not None) or "none"),
           ("theory checks", _plain(r.get("checks"))),
           ("live monitor", _plain(r.get("monitor"))),
           ("wall time", duration(number(r.get("seconds"))))]
    return out


def command(sw: Sweep) -> str:
    argv = sw.results.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        return shlex.join(argv)
    return NOT_MEASURED


PER_RUN_FIELDS = ("method", "rho", "seed", "epochs")
"""Base fields every run replaces with its own (``apps.experiments.plan.train_config``)."""


def base_config(sw: Sweep) -> list[tuple[str, str]]:
    """The base TrainConfig as text; fields each run sets itself (its method, an axis) say so."""
    per_run = set(PER_RUN_FIELDS) | set(sw.axes)
    return [(str(k), "set per run" if k in per_run else fmt.plain(v))
            for k, v in as_dict(sw.results.get("base")).items()]


# --- findings -------------------------------------------------------------------------------------

def _pp(value: float) -> str:
    return f"{value * 100:+.1f} pp"


def paired_sentence(sw: Sweep, setting: str, rho: float, control: str) -> str:
    """Whether SAST at ``rho`` beats ``control`` on hard-spike accuracy by more than the 95% interval."""
    who = f"SAST ρ={rho:g} against {CONTROL_NAMES[control]}"
    rec = sw.paired_record(setting, rho, control, "hard_acc")
    mean = number(rec.get("mean")) if rec else None
    if mean is None:
        return f"{who}: hard-spike accuracy difference not measured."
    lo, hi = number(rec.get("lo")), number(rec.get("hi"))
    n = number(rec.get("n"))
    seeds = f"{int(n)} seed{'s' if n != 1 else ''}" if n is not None else "seeds not recorded"
    verdict = judge(lo, hi)
    if mean == 0 and lo == 0 and hi == 0:
        return f"{who}: not resolved; the same hard-spike accuracy on every seed ({seeds})."
    if verdict == "no interval":
        return (f"{who}: hard-spike accuracy {_pp(mean)} with no interval ({seeds}): not resolved; "
                f"more seeds are needed to tell.")
    span = f"95% interval [{lo * 100:+.1f}, {hi * 100:+.1f}] pp over {seeds}"
    if verdict == "not resolved":
        return f"{who}: not resolved; hard-spike accuracy {_pp(mean)}, {span}, which contains 0."
    return f"{who}: hard-spike accuracy {verdict} by {abs(mean) * 100:.1f} pp ({span})."


def layer_sentence(sw: Sweep, setting: str) -> str:
    """The layer whose hard spikes alone cost SF the most accuracy, and its share of SF's transfer gap."""
    drops: dict[str, list[float]] = {}
    gaps = []
    for run in sw.runs_of(setting, Series("sf", 0.0)):
        attribution = as_dict(run.data.get("attribution"))
        gap = number(attribution.get("gap"))
        gaps += [gap] if gap is not None else []
        for layer in as_list(attribution.get("layers")):
            d = number(as_dict(layer).get("drop"))
            if d is not None:
                drops.setdefault(f"layer {fmt.plain(as_dict(layer).get('layer', '?'))}", []).append(d)
    if not drops:
        return "Which layer carries the gap: not measured (no per-layer attribution of SF runs)."
    means = {k: sum(v) / len(v) for k, v in drops.items()}
    layer, drop = max(means.items(), key=lambda kv: kv[1])
    n = max(len(v) for v in drops.values())
    over = f"mean over {n} seed{'s' if n != 1 else ''}"
    if drop <= 0:
        return f"No single layer's hard spikes cost SF accuracy (largest drop {_pp(drop)}, {layer}; {over})."
    gap = sum(gaps) / len(gaps) if gaps else None
    share = (f", {drop / gap:.0%} of SF's full transfer gap ({_pp(gap)})" if gap is not None and gap > 0
             else f"; SF's full transfer gap is {_pp(gap)}, so no share is given" if gap is not None else "")
    return (f"The gap sits mostly in {layer}: for SF, hard spikes in {layer} alone cost {drop * 100:.1f} pp of "
            f"accuracy ({over}), the most of any layer{share}.")


def mechanism_sentences(sw: Sweep) -> list[str]:
    """Whether the transfer gap rises with the mechanism's quantities across runs (sign and p of Spearman),
    over all runs and, since a setting such as beta moves the gap and the gradients together, per setting."""
    if sw.correlations is None:
        return ["Mechanism correlations across runs: not measured."]
    scopes = ["all"] + sorted({str(c.get("scope")) for c in sw.correlations if c.get("scope") not in (None, "all")})
    out = []
    for scope in scopes:
        where = "all runs" if scope == "all" else setting_label(scope)
        for x, name in MECHANISM_FINDINGS:
            rec = sw.correlation(x, scope)
            rho = number(rec.get("spearman")) if rec else None
            n = number(rec.get("n")) if rec else None
            if rho is None:
                if scope == "all":
                    why = "no run measured it" if not n else f"{int(n)} run(s), too few or without variation"
                    out.append(f"{where}: gap against {name}: not measured ({why}).")
                continue
            p = number(rec.get("p"))
            stat = f"Spearman {rho:+.2f}, {p_text(p)}, n = {int(n or 0)}"
            if rho > 0 and p is not None and p < ALPHA:
                out.append(f"{where}: gap against {name}: holds; the gap rises with it ({stat}).")
            elif rho > 0:
                out.append(f"{where}: gap against {name}: positive as predicted, but not significant at {ALPHA:g} "
                           f"({stat}).")
            else:
                sig = "significantly " if p is not None and p < ALPHA else ""
                out.append(f"{where}: gap against {name}: does not hold; the correlation is {sig}"
                           f"{'negative' if rho < 0 else 'zero'} ({stat}).")
    return out


def violated_checks(sw: Sweep) -> list[tuple[str, list[str]]]:
    """(run, the IDs of the checks it violated) for every run that violated one."""
    bad = [(run.name, [str(v) for v in as_list(run.data.get("violated"))]) for run in sw.runs]
    return [(name, ids) for name, ids in bad if ids]


def check_lines(sw: Sweep) -> list[str]:
    """The violated theory checks, run by run, plainly; or why there are none."""
    bad = violated_checks(sw)
    if bad:
        return [f"{name}: {', '.join(ids)} violated" for name, ids in bad]
    if sw.results.get("checks") == "none":
        return ["No theory checks were run in this sweep (--checks none)."]
    if not any(isinstance(run.data.get("checks"), dict) for run in sw.runs):
        return [f"Theory checks: {NOT_MEASURED}."]
    return ["No theory check reported a violated bound."]


@dataclass(frozen=True)
class Findings:
    per_setting: list[tuple[str, list[str]]]
    mechanism: list[str]
    checks: list[str]
    violated: bool


def findings(sw: Sweep) -> Findings:
    per_setting = []
    for setting in sw.settings:
        lines = []
        rhos = sorted({r.rho for r in sw.runs_of(setting) if r.method == "sast"}
                      | {k[2] for k in sw.table if k[0] == setting and k[1] == "sast"})
        if sw.paired is None:
            lines.append("Paired differences of SAST against its controls: not measured.")
        elif not rhos:
            lines.append("No SAST run (rho > 0) in this setting: nothing to compare.")
        for rho in rhos if sw.paired is not None else []:
            lines += [paired_sentence(sw, setting, rho, c) for c in CONTROLS]
        lines.append(layer_sentence(sw, setting))
        per_setting.append((setting_label(setting), lines))
    return Findings(per_setting, mechanism_sentences(sw), check_lines(sw), bool(violated_checks(sw)))


# --- tables ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultRow:
    setting: str
    method: str
    seeds: str
    cells: list[str]
    violated: str


def result_rows(sw: Sweep) -> list[ResultRow]:
    out = []
    for setting, series in sw.groups():
        row = sw.table.get((setting, series.method, series.rho), {})
        violated = sorted({str(v) for v in as_list(row.get("violated_checks"))}
                          | {str(v) for r in sw.runs_of(setting, series) for v in as_list(r.data.get("violated"))})
        seeds = sw.seeds(setting, series)
        out.append(ResultRow(setting_label(setting), series.label, NOT_MEASURED if seeds is None else str(seeds),
                             [field_text(f, sw.cell(setting, series, f)) for f, _ in RESULT_COLUMNS],
                             ", ".join(violated)))
    return out


@dataclass(frozen=True)
class PairedRow:
    setting: str
    rho: str
    control: str
    field: str
    n: str
    difference: str
    verdict: str
    css: str


def paired_rows(sw: Sweep) -> list[PairedRow]:
    out = []
    rank = {s: i for i, s in enumerate(sw.settings)}
    fields = list(HIGHER_IS_BETTER)
    records = sorted(sw.paired or [], key=lambda p: (
        rank.get(p.get("setting", ""), len(rank)), rho_key(p.get("rho")), str(p.get("control")),
        fields.index(p["field"]) if p.get("field") in fields else len(fields)))
    for p in records:
        field = str(p.get("field", "?"))
        cell = Cell(number(p.get("mean")), number(p.get("lo")), number(p.get("hi")))
        verdict = judge(cell.lo, cell.hi) if cell.mean is not None else NOT_MEASURED
        css = "v-none"
        if verdict in ("higher", "lower") and field in HIGHER_IS_BETTER:
            css = "v-better" if (verdict == "higher") == HIGHER_IS_BETTER[field] else "v-worse"
        elif verdict in ("higher", "lower"):
            css = "v-resolved"
        n = number(p.get("n"))
        out.append(PairedRow(setting_label(str(p.get("setting", ""))), f"{rho_key(p.get('rho')):g}",
                             METHOD_NAMES.get(str(p.get("control")), str(p.get("control"))),
                             FIELD_NAMES.get(field, field), NOT_MEASURED if n is None else str(int(n)),
                             interval_text(cell, signed=True), verdict, css))
    return out


def mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


# --- the summary at the top: SAST minus its controls, setting x rho -------------------------------

SUMMARY_FIELD = "hard_acc"
"""The summary table's quantity: hard-spike accuracy, the deployed model's."""
VERDICT_SYMBOLS = {"higher": "▲", "lower": "▼", "not resolved": "●", "no interval": "○", NOT_MEASURED: "–"}
"""One symbol per verdict word of :func:`judge` (and "not measured"); the page writes the word beside it."""
VERDICT_LEGEND = (("higher", "higher: SAST's hard-spike accuracy is above the control's, the 95% interval lies "
                             "above 0"),
                  ("lower", "lower: below the control's, the interval lies below 0"),
                  ("not resolved", "not resolved: no difference at this interval, it contains 0"),
                  ("no interval", "no interval: one seed, the difference cannot be judged"),
                  (NOT_MEASURED, f"{NOT_MEASURED}: no paired record for this setting, rho and control"))
SUMMARY_CONTROL_NAMES = {"sf": "SF", "sf-matched": "SF-matched"}
SUMMARY_ALL = "all"
"""The one row of the summary table (and of the transfer-gap map) of a sweep with no axis but rho."""


@dataclass(frozen=True)
class Difference:
    """SAST minus one control at one setting and rho: the text of the cell, its verdict word and symbol."""

    control: str
    name: str
    text: str
    verdict: str
    symbol: str
    css: str
    title: str


@dataclass(frozen=True)
class SummaryRow:
    setting: str
    label: str
    cells: list[list[Difference]]


@dataclass(frozen=True)
class SummaryTable:
    """Rows: the settings of the axes other than rho ("all" without one); columns: SAST's rhos.

    ``empty`` is the sentence the table shows in its one cell when there is nothing to compare.
    """

    axis: str
    rhos: list[str]
    rows: list[SummaryRow]
    empty: str = ""


def _has_method(sw: Sweep, method: str) -> bool:
    return (any(r.method == method for r in sw.runs) or any(k[1] == method for k in sw.table)
            or any(p.get("control") == method for p in sw.paired or []))


def _difference(sw: Sweep, setting: str, rho: float, control: str) -> Difference:
    name = SUMMARY_CONTROL_NAMES[control]
    rec = sw.paired_record(setting, rho, control, SUMMARY_FIELD)
    mean = number(rec.get("mean")) if rec else None
    if mean is None:
        if not _has_method(sw, control):
            text = f"no {name} run in this sweep"
            title = f"SAST ρ={rho:g} against {CONTROL_NAMES[control]}: {text}."
        else:
            text = NOT_MEASURED
            title = paired_sentence(sw, setting, rho, control)
        return Difference(control, name, text, NOT_MEASURED, VERDICT_SYMBOLS[NOT_MEASURED], "v-none", title)
    cell = Cell(mean, number(rec.get("lo")), number(rec.get("hi")))
    verdict = judge(cell.lo, cell.hi)
    css = "v-none"
    if verdict in ("higher", "lower"):
        css = "v-better" if (verdict == "higher") == HIGHER_IS_BETTER[SUMMARY_FIELD] else "v-worse"
    return Difference(control, name, interval_text(cell, signed=True), verdict, VERDICT_SYMBOLS[verdict], css,
                      paired_sentence(sw, setting, rho, control))


def _row_label(sw: Sweep, setting: str) -> str:
    if not sw.axes:
        return SUMMARY_ALL
    values = sw.values.get(setting) or {}
    if all(a in values for a in sw.axes):
        return ", ".join(values[a] for a in sw.axes)
    return setting_label(setting)


def summary_table(sw: Sweep) -> SummaryTable:
    """SAST minus SF and minus the compute-matched SF in hard-spike accuracy, per setting and rho.

    Each cell holds the paired records' mean and 95% interval (``results.json``'s ``paired``)
    with the verdict :func:`judge` gives them, as in the paired-differences table.
    """
    axis = ", ".join(sw.axes) if sw.axes else "setting"
    rhos = [f"{rho:g}" for rho in sw.sast_rhos]
    table = SummaryTable(axis, rhos, [])
    if not sw.settings:
        return replace(table, empty=f"SAST against its controls: {NOT_MEASURED} (results.json has no runs).")
    if sw.paired is None:
        return replace(table, empty=f"SAST against its controls: {NOT_MEASURED} (results.json has no paired "
                                    "comparisons).")
    if not sw.sast_rhos:
        return replace(table, empty="No SAST run (rho > 0) in this sweep: nothing to compare.")
    if not sw.paired:
        return replace(table, empty="SAST against its controls: none (no SAST run with a control on the same "
                                    "seed).")
    rows = [SummaryRow(setting_label(s), _row_label(sw, s),
                       [[_difference(sw, s, rho, c) for c in CONTROLS] for rho in sw.sast_rhos])
            for s in sw.settings]
    return replace(table, rows=rows)
