"""The report's view models: each run folder turned into plain text and figures, so the template only lays them out.

:func:`run_view` builds everything the template shows for one run: the verdict
table (:func:`verdict_rows`, one row per statement of THEORY.md), the violated
bounds for the banner (:func:`violations`), the sections (live checks over
training, T6, T7, training curves, E1/E2) and the provenance from
:mod:`reports.provenance`; :func:`comparison` sets several runs side by side.
Figures come from :mod:`reports.figures` as inline SVG, the only markup passed
to the template unescaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from reports import _format as fmt
from reports import budget_figures, figures, monitor_views, provenance
from reports.runs import (
    NOT_APPLICABLE,
    NOT_MEASURED,
    PLAIN_SGD,
    STATEMENT_NAMES,
    VERDICT_IDS,
    VIOLATED,
    Check,
    Run,
    flag,
    number,
    numbers,
    statement_sort_key,
)

_CONTRACTION = "A4"
"""The contraction assumption: where it fails, the finite-T forms still hold but grow with T."""


# --- view models: plain strings and figures, so the template only lays them out -------------------

@dataclass(frozen=True)
class FigureView:
    """One figure: a heading, the inline SVG (trusted markup from :mod:`reports.figures`), a caption."""

    title: str
    svg: Markup
    caption: str = ""


@dataclass(frozen=True)
class VerdictRow:
    """One row of the verdict table, every cell already text."""

    id: str
    name: str
    assumptions: list[tuple[str, bool]]
    bound: str
    estimate: str
    slack: str
    status: str
    css: str
    symbol: str
    notes: list[str]
    local_bound: str = "—"
    local_slack: str = "—"


@dataclass(frozen=True)
class Section:
    """A report section of one run: figures, lines of text, and a message when there is nothing."""

    figures: list[FigureView] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    empty: str = ""


@dataclass(frozen=True)
class TableRow:
    """A labelled row of cells; ``css`` (status classes) and ``sub`` (a second line) per cell, or empty."""

    label: str
    cells: list[str]
    css: list[str] = field(default_factory=list)
    sub: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunView:
    """Everything the template shows for one run."""

    anchor: str
    name: str
    path: str
    summary: str
    device: str
    problems: list[str]
    notes: list[str]
    violations: list[str]
    violated_ids: list[str]
    verdicts: list[VerdictRow]
    timelines: Section
    budgets: Section
    t6: Section
    t7: Section
    training: Section
    errors: list[str]
    transfer: list[TableRow]
    attribution: Section
    attribution_rows: list[TableRow]
    source: str
    source_pairs: list[tuple[str, str]]
    command: str
    environment: list[tuple[str, str]]
    key_config: list[tuple[str, str]]
    config_sections: list[tuple[str, list[tuple[str, str]]]]


@dataclass(frozen=True)
class ComparisonView:
    """The multi-run section: runs side by side, and the rho sweep when rho varies."""

    headers: list[tuple[str, str]]
    rows: list[TableRow]
    sweep: FigureView | None


# --- verdicts ---------------------------------------------------------------------------------------

def _statement_notes(check: Check, run: Run) -> list[str]:
    """What a reader should know beside a verdict: source, convergence, the statement's key numbers."""
    notes = [check.source if check.step is None else f"{check.source}, step {check.step}"]
    if check.converged is False:
        notes.append("the estimator did not converge: the estimate may be too low")
    if check.status_derived:
        notes.append("status not recorded; derived from holds and assumptions")
    if check.broken_certificate:
        notes.append(f"broken certificate: the local bound {fmt.num(check.local_bound)} lies below what it bounds")
    elif check.local_holds is False:
        notes.append("the conditional local value lies below the estimate: its premise fails")
    if check.local_kind == "probabilistic" and check.local_failure_probability is not None:
        notes.append(f"local bound probabilistic: fails with probability ≤ {check.local_failure_probability:.2g}")
    if _CONTRACTION in check.failed_assumptions:
        notes.append("A4 fails: the finite-T forms still hold but grow with T")
    d = check.details
    if check.id == "T6":
        base = run.base_optimizer
        if base is not None and base != PLAIN_SGD:
            notes.append(f"T6 does not apply (base step: {base})")
    elif check.id == "T7":
        frac = _t7_fraction_condition(d)
        if frac is not None:
            notes.append(f"condition holds for {fmt.pct(frac)} of samples")
    elif check.id == "E1":
        notes.append(f"gap {fmt.points(number(d.get('gap')))}, agreement {fmt.pct(number(d.get('agreement')))}")
    elif check.id == "E2":
        notes.append(f"INT8 hard-spike accuracy {fmt.pct(number(d.get('int8_hard_acc')))}")
    return notes


def verdict_rows(run: Run) -> list[VerdictRow]:
    """One row per statement of :data:`VERDICT_IDS`, plus any other statement the run checked."""
    final = run.final_checks()
    ids = sorted(set(VERDICT_IDS) | set(final), key=statement_sort_key)
    rows = []
    for sid in ids:
        check = final.get(sid)
        if check is None:
            status, note = NOT_MEASURED, "no check record in checks.json or metrics.jsonl"
            base = run.base_optimizer
            if sid == "T6" and base is not None and base != PLAIN_SGD:
                status, note = NOT_APPLICABLE, f"T6 does not apply (base step: {base})"
            style = fmt.status_style(status)
            rows.append(VerdictRow(sid, STATEMENT_NAMES.get(sid, ""), [], "—", NOT_MEASURED, "—",
                                   style.words, style.css, style.symbol, [note]))
            continue
        local = check.details.get("local") if isinstance(check.details.get("local"), dict) else {}
        style = fmt.status_style(check.status)
        rows.append(VerdictRow(
            id=sid,
            name=check.name,
            assumptions=sorted(check.assumptions.items(), key=lambda kv: statement_sort_key(kv[0])),
            bound=fmt.num(check.bound, "— (no bound)"),
            estimate=fmt.num(check.estimate),
            slack=fmt.slack_text(check.bound, check.estimate),
            status=style.words,
            css=style.css,
            symbol=style.symbol,
            notes=_statement_notes(check, run),
            local_bound=fmt.num(check.local_bound, "—" if not local.get("reason") else "not computed"),
            local_slack=fmt.slack_text(check.local_bound, check.estimate) if check.local_bound is not None else "—",
        ))
    return rows


def violations(run: Run) -> list[tuple[str, str]]:
    """(statement ID, one sentence) per violated bound: the final result, then the live monitor's."""
    found = []
    for check in run.final_checks().values():
        if check.status == VIOLATED:
            where = check.source if check.step is None else f"{check.source}, step {check.step}"
            if check.broken_certificate and (check.holds is False) and not (
                    check.estimate is not None and check.bound is not None and check.estimate > check.bound):
                found.append((check.id, f"{check.id} ({check.name}): broken certificate: the local bound "
                                        f"{fmt.num(check.local_bound)} lies below the estimate "
                                        f"{fmt.num(check.estimate)} ({where})."))
            else:
                found.append((check.id, f"{check.id} ({check.name}): estimate {fmt.num(check.estimate)} exceeds "
                                        f"the bound {fmt.num(check.bound)} ({where})."))
    for sid, series in run.live_series().items():
        bad = [c for c in series if c.status == VIOLATED]
        if bad:
            first = bad[0].step
            found.append((sid, f"{sid} ({bad[0].name}): violated at {len(bad)} of {len(series)} monitored steps"
                               + (f", first at step {first}." if first is not None else ".")))
    return found


# --- sections ---------------------------------------------------------------------------------------

def timeline_section(run: Run, key: str) -> Section:
    """One figure per check the live monitor logged: estimate and bound over steps."""
    series = run.live_series()
    if not series:
        return Section(empty="The live monitor logged no checks during training (no \"check\" records "
                             "in metrics.jsonl).")
    figs = []
    for index, (sid, checks) in enumerate(series.items()):
        steps = [c.step if c.step is not None else i for i, c in enumerate(checks)]
        failed = [bool(c.failed_assumptions) for c in checks]
        bad = [c.status == VIOLATED for c in checks]
        svg = figures.check_timeline_svg(
            steps, [c.estimate for c in checks], [c.bound for c in checks], failed, bad,
            title=f"{sid}: {checks[-1].name}", key=f"{key}-check{index}",
        )
        failing = sorted({a for c in checks for a in c.failed_assumptions}, key=statement_sort_key)
        has_bound = any(c.bound is not None for c in checks)
        verdict = ("" if not has_bound else
                   f"; the bound is violated at {sum(bad)} of them" if any(bad) else "; the bound holds at all")
        caption = (f"{len(checks)} monitored step(s){verdict}; "
                   + (f"an assumption failed at {sum(failed)} ({', '.join(failing)})." if failing
                      else "every recorded assumption held."))
        if not has_bound:
            caption += " No bound applies to this statement: only the estimate is drawn."
        figs.append(FigureView(f"{sid} {checks[-1].name}", Markup(svg), caption))
    return Section(figures=figs)


ALL_LAYERS = "all layers at once (composition)"
"""The by-layer group of a budget step that no single layer owns (T4: the proof composed over all layers against the
randomized certificate)."""


def _layer_group(entry: dict) -> str:
    layer = entry.get("layer")
    if entry["factor"].startswith(budget_figures.REMAINING_PREFIX):
        return entry["factor"]
    return f"layer {layer}" if isinstance(layer, int) else "readout and loss" if layer == "readout" else ALL_LAYERS


def _grouped(entries: list[dict], key) -> list[tuple[str, float | None]]:
    """Budget entries summed by ``key`` (a factor over its layers, or a layer over its factors), in first-seen order;
    a group with an entry that has no log ratio has none."""
    groups: dict[str, float | None] = {}
    for e in entries:
        k, r = key(e), e.get("log10_ratio")
        prev = groups.get(k, 0.0)
        groups[k] = None if r is None or prev is None else prev + r
    return list(groups.items())


def budget_section(run: Run, key: str) -> Section:
    """Per statement with a looseness budget: its bars (log10 ratio per substituted factor), and what it certifies."""
    final = run.final_checks()
    figs, lines = [], []
    for index, sid in enumerate(sorted(final, key=statement_sort_key)):
        check = final[sid]
        if not check.looseness:
            continue
        local = check.details.get("local") if isinstance(check.details.get("local"), dict) else {}
        factors = _grouped(check.looseness, lambda e: e["factor"])
        svg = budget_figures.looseness_svg([g for g, _ in factors], [v for _, v in factors],
                                           title=f"{sid}: {check.name}", key=f"{key}-budget{index}")
        scope = local.get("scope") if isinstance(local.get("scope"), str) else "scope not recorded"
        caption = (f"Global bound {fmt.num(check.bound)} → local bound {fmt.num(check.local_bound)} → estimate "
                   f"{fmt.num(check.estimate)} (slack {fmt.slack_text(check.bound, check.estimate)} global, "
                   f"{fmt.slack_text(check.local_bound, check.estimate)} local). Factors replaced in this order, "
                   f"each by its value measured at w. What the local bound certifies: {scope}.")
        figs.append(FigureView(f"{sid} looseness budget", Markup(svg), caption))
        if any(isinstance(e.get("layer"), int) for e in check.looseness):
            rank = lambda g: (0, int(g[0][6:])) if g[0].startswith("layer ") else (1 if g[0] == "readout and loss"  # noqa: E731
                                                                                  else 2 if g[0] == ALL_LAYERS else 3, 0)
            layers = sorted(_grouped(check.looseness, _layer_group), key=rank)
            svg = budget_figures.looseness_svg([g for g, _ in layers], [v for _, v in layers],
                                               title=f"{sid}: {check.name}, by layer", key=f"{key}-layers{index}")
            top = max((lv for lv in layers if lv[1] is not None and lv[0].startswith("layer")),
                      key=lambda lv: lv[1], default=None)
            depth = sum(1 for g, _ in layers if g.startswith("layer"))
            figs.append(FigureView(f"{sid} looseness budget by layer", Markup(svg), (
                f"The same budget summed over factors, per layer ({depth} spiking layers; the readout's and the "
                f"loss's constants apart)" + (f": layer {top[0][6:]} holds the most, 10^{top[1]:.2g}." if top else ".")
            )))
    if not figs:
        return Section(empty="No looseness budget recorded (checks run with --no-local, or records older than "
                             "the local bounds).")
    lines.append("Each bar replaces one worst-case factor of the proof by its measured value (log10 of the bound "
                 "before over the bound after); the last bar is the proof slack that remains at the local bound. "
                 "The bars of a statement sum to log10(global bound / estimate).")
    return Section(figures=figs, lines=lines)


def _running_mean(values: Sequence[float | None]) -> list[float | None]:
    """(1/k) sum_{i<k} values_i for each k, skipping missing values."""
    out: list[float | None] = []
    total, count = 0.0, 0
    for v in values:
        if v is not None:
            total, count = total + v, count + 1
        out.append(total / count if count else None)
    return out


def t6_section(run: Run, key: str) -> Section:
    """T6: running mean of ||grad F||^2 against the right-hand side, or why T6 does not apply."""
    base = run.base_optimizer
    check = run.final_checks().get("T6")
    if base is not None and base != PLAIN_SGD:
        return Section(empty=f"T6 does not apply (base step: {base}). Its guarantee needs plain SGD as "
                             "SAST's base step (THEORY.md, T6).")
    details = check.details if check else {}
    if flag(details.get("applies")) is False:
        return Section(empty="T6 does not apply (recorded by the T6 check).")
    steps = numbers(details.get("steps"))
    if steps and any(s is not None for s in steps):
        mean = numbers(details.get("running_mean"))
        rhs, rhs_local = numbers(details.get("rhs")), numbers(details.get("rhs_local"))
        lines = []
        last = len(steps) - 1
        if mean and mean[-1] is not None:
            lines.append(f"At the last monitored step ({fmt.num(steps[last])}): running mean "
                         f"{fmt.num(mean[-1])}; right-hand side {fmt.num(rhs[last] if last < len(rhs) else None)} "
                         f"with L from T4, {fmt.num(rhs_local[last] if last < len(rhs_local) else None)} "
                         "with the local curvature.")
        premise = [p for p in details.get("premise_local") or [] if isinstance(p, dict)]
        if premise:
            ok = sum(1 for p in premise if p.get("holds") is True)
            lines.append(f"With T4's local bound L_local (a certificate at each logged w_k): η ≤ 1/L_local holds at "
                         f"{ok} of {len(premise)} logged step(s).")
        rhs_cert = numbers(details.get("rhs_local_bound"))
        if rhs_cert and rhs_cert[-1] is not None:
            lines.append(f"Right-hand side with L_local at the last monitored step: {fmt.num(rhs_cert[-1])}.")
        if not rhs:
            lines.append("The right-hand side with L from T4 was not measured.")
        if not rhs_local:
            lines.append("The right-hand side with the local curvature was not measured.")
        if base is None:
            lines.append("The base step is not recorded; T6 applies only to plain SGD.")
        svg = figures.convergence_t6_svg([s if s is not None else i for i, s in enumerate(steps)],
                                         mean, rhs, rhs_local, key=f"{key}-t6")
        caption = ("Left-hand side: (1/K) ∑_{k<K} ‖∇F(w_k)‖² on the fixed probe set. "
                   "Right-hand side: 2(F(w₀) − F_inf)/(ηK) + L²ρ² + "
                   "Lησ²/b, with L from T4 and with the local curvature.")
        return Section(figures=[FigureView("T6 nonconvex convergence", Markup(svg), caption)], lines=lines)
    probes = [p for p in run.probes if number(p.get("grad_norm_sq")) is not None]
    if probes:
        probe_steps = [number(p.get("step")) for p in probes]
        mean = _running_mean([number(p.get("grad_norm_sq")) for p in probes])
        svg = figures.convergence_t6_svg([s if s is not None else i for i, s in enumerate(probe_steps)],
                                         mean, [], [], key=f"{key}-t6")
        return Section(
            figures=[FigureView("T6 nonconvex convergence", Markup(svg),
                                "Running mean of the probe records' ‖∇F(w_k)‖².")],
            lines=["The right-hand side was not measured (no T6 check record with details); only the "
                   "left-hand side from the probe records is drawn."],
        )
    return Section(empty="T6 not measured: no T6 check record and no probe records.")


def _t7_fraction_condition(details: dict[str, Any]) -> float | None:
    """The fraction of samples whose first-layer data matrix has full row rank (T7's condition)."""
    frac = number(details.get("fraction_condition"))
    if frac is not None:
        return frac
    conds = [c for c in details.get("condition_holds", []) or [] if isinstance(c, bool)]
    return sum(conds) / len(conds) if conds else None


def t7_section(run: Run, key: str) -> Section:
    """T7: per-sample scatter of the two gradient norms with the bound, and the condition's fraction."""
    check = run.final_checks().get("T7")
    if check is None:
        return Section(empty="T7 not measured: no T7 check record.")
    d = check.details
    w1g, xg = numbers(d.get("w1_grad_norm")), numbers(d.get("input_grad_norm"))
    cond = [flag(c) for c in d.get("condition_holds", []) or []] if isinstance(d.get("condition_holds"), list) else []
    s_T = numbers(d.get("s_T"))
    w1_norm = number(d.get("w1_norm"))
    if not w1g or not xg:
        return Section(empty="T7 per-sample norms not measured (the T7 record has no input_grad_norm and "
                             "w1_grad_norm).")
    lines = []
    frac = _t7_fraction_condition(d)
    lines.append(f"The conditioning condition (X of full row rank, s_T(X) > 0) holds for {fmt.pct(frac)} of "
                 f"{min(len(w1g), len(xg))} samples; where it fails the check reports no bound.")
    within = [
        y <= w1_norm / s * x
        for x, y, c, s in zip(w1g, xg, cond, s_T)
        if c and None not in (x, y, s) and w1_norm is not None and s > 0
    ]
    if within:
        lines.append("Among those samples, ‖∇ₓℓ‖ ≤ (‖W¹‖ / s_T(X)) "
                     f"‖∇_W¹ ℓ‖ holds for "
                     f"{fmt.pct(sum(within) / len(within))}.")
    if w1_norm is None:
        lines.append("‖W¹‖ was not recorded: the bound's line is not drawn.")
    svg = figures.mechanism_t7_svg(w1g, xg, cond, w1_norm, s_T, key=f"{key}-t7")
    caption = ("Each point is one probe sample. The dashed line is the bound with the smallest s_T(X) among "
               "samples where the condition holds; each sample's own bound is at least as tight.")
    return Section(figures=[FigureView("T7 local mechanism", Markup(svg), caption)], lines=lines)


def training_section(run: Run, key: str) -> Section:
    """Loss per logged step and smooth/hard test accuracy per epoch."""
    if not run.train and not run.evals:
        return Section(empty="No training records (no \"train\" or \"eval\" lines in metrics.jsonl).")
    train = [r for r in run.train if number(r.get("step")) is not None]
    evals = [r for r in run.evals if number(r.get("epoch")) is not None]
    svg = figures.training_curves_svg(
        [number(r["step"]) for r in train],
        [number(r.get("loss")) for r in train],
        [number(r.get("perturbed_loss")) for r in train],
        [number(r["epoch"]) for r in evals],
        [number(r.get("test_smooth_acc")) for r in evals],
        [number(r.get("test_hard_acc")) for r in evals],
        key=f"{key}-training",
    )
    smooth, hard, gap, source = run.final_accuracy()
    lines = [f"Final test accuracy ({source}): smooth {fmt.pct(smooth)}, hard {fmt.pct(hard)}, "
             f"transfer gap {fmt.points(gap)}."]
    last = run.evals[-1] if run.evals else {}
    if number(last.get("grad_evals")) is not None:
        lines.append(f"Gradient evaluations: {fmt.si(number(last.get('grad_evals')))}; "
                     f"wall time {fmt.num(number(last.get('seconds')))} s.")
    caption = "The perturbed loss F(w + eps) is logged by SAST only."
    return Section(figures=[FigureView("Training curves", Markup(svg), caption)], lines=lines)


_TRANSFER_QUANTITIES: tuple[tuple[str, str, Callable[[float | None], str], str], ...] = (
    ("smooth_acc", "smooth-mode accuracy", fmt.pct, "E1"),
    ("hard_acc", "hard-spike accuracy", fmt.pct, "E1"),
    ("gap", "transfer gap (smooth − hard)", fmt.points, "E1"),
    ("agreement", "hard/smooth prediction agreement", fmt.pct, "E1"),
    ("logit_discrepancy", "logit discrepancy ‖z_hard − z_smooth‖", fmt.num, "E1"),
    ("soft_band_fraction", "soft-band fraction |u − θ| < 4/β, per layer", fmt.pct, "E1"),
    ("int8_hard_acc", "INT8 hard-spike accuracy", fmt.pct, "E2"),
    ("synops_smooth", "SynOps per sample, smooth", fmt.si, "E2"),
    ("synops_hard", "SynOps per sample, hard", fmt.si, "E2"),
    ("ece_smooth", "expected calibration error, smooth", fmt.num, ""),
    ("ece_hard", "expected calibration error, hard", fmt.num, ""),
)


def _transfer_cell(record: dict[str, Any] | None, key: str, show: Callable[[float | None], str]) -> str:
    """One E1/E2 quantity of a record as text (a per-layer list joined), or 'not measured'."""
    if record is None or key not in record:
        return NOT_MEASURED
    value = record[key]
    if isinstance(value, list):
        return ", ".join(show(number(v)) for v in value) if value else NOT_MEASURED
    return show(number(value))


def transfer_rows(run: Run) -> list[TableRow]:
    """E1/E2 quantities from the E1/E2 checks and from evaluation.json, side by side."""
    final = run.final_checks()
    rows = []
    for key, label, show, sid in _TRANSFER_QUANTITIES:
        check = final.get(sid) if sid else None
        from_check = _transfer_cell(check.details if check else None, key, show) if sid else "—"
        rows.append(TableRow(f"{sid} {label}".strip(), [from_check, _transfer_cell(run.evaluation, key, show)]))
    return rows


ATTRIBUTION_HEADERS = ("hard in this layer only", "drop", "smooth in this layer only", "recovered",
                       "soft band, smooth", "soft band, hard", "mean |β(u − θ)|, smooth", "mean |β(u − θ)|, hard")
"""Columns of the per-layer attribution table (evaluation.json's ``attribution`` and ``margins``)."""


def attribution_table(run: Run) -> tuple[Section, list[TableRow]]:
    """The transfer gap per spiking layer from evaluation.json: hard spikes in one layer only (the rest smooth),
    smooth in one layer only (the rest hard), and that layer's margins in both modes (``sast.gap``)."""
    ev = run.evaluation or {}
    att = ev.get("attribution")
    layers = att.get("layers") if isinstance(att, dict) else None
    if not isinstance(layers, list) or not layers:
        return Section(empty="Per-layer attribution not measured (evaluation.json has no attribution: run "
                             "python -m sast.evaluate on the model)."), []
    margins = ev.get("margins") if isinstance(ev.get("margins"), dict) else {}

    def margin(mode: str, key: str, i: int) -> float | None:
        rec = margins.get(mode)
        values = numbers(rec.get(key)) if isinstance(rec, dict) else []
        return values[i] if i < len(values) else None

    rows = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            continue
        rows.append(TableRow(f"layer {fmt.plain(layer.get('layer', i + 1))}", [
            fmt.pct(number(layer.get("hard_only_acc"))), fmt.points(number(layer.get("drop"))),
            fmt.pct(number(layer.get("smooth_only_acc"))), fmt.points(number(layer.get("recovered"))),
            fmt.pct(margin("smooth", "soft_band_fraction", i)), fmt.pct(margin("hard", "soft_band_fraction", i)),
            fmt.num(margin("smooth", "mean_abs_margin", i)), fmt.num(margin("hard", "mean_abs_margin", i))]))
    line = (f"All smooth {fmt.pct(number(att.get('smooth_acc')))}, all hard {fmt.pct(number(att.get('hard_acc')))} "
            f"(gap {fmt.points(number(att.get('gap')))}). Drop: smooth accuracy minus accuracy with hard spikes in "
            "that layer only; recovered: accuracy with smooth spikes in that layer only minus hard accuracy. The "
            "layer that carries the gap has a large drop and a large recovery. Soft band: |β(u − θ)| < 4.")
    return Section(lines=[line]), rows


def _monitor_section(run: Run, key: str) -> Section:
    """The live monitor's section (:mod:`reports.monitor_views`: statements over training, changes, cost, errors)."""
    figs, lines, empty = monitor_views.monitor_section(run, key)
    return Section(figures=[FigureView(title, svg, caption) for title, svg, caption in figs], lines=lines, empty=empty)


def run_view(run: Run, index: int) -> RunView:
    """The view of one run (``index`` makes its anchors and figure ids unique on the page)."""
    key = run_anchor(index)
    found = violations(run)
    attribution = attribution_table(run)
    return RunView(
        anchor=key,
        name=run.name,
        path=str(run.path),
        summary=provenance.run_summary(run),
        device=run.device or NOT_MEASURED,
        problems=run.problems,
        notes=run.notes,
        violations=[text for _, text in found],
        violated_ids=sorted({sid for sid, _ in found}, key=statement_sort_key),
        verdicts=verdict_rows(run),
        timelines=_monitor_section(run, key),
        budgets=budget_section(run, key),
        t6=t6_section(run, key),
        t7=t7_section(run, key),
        training=training_section(run, key),
        errors=[f"step {fmt.plain(e.get('step'))}: {fmt.plain(e.get('error', 'error'))}" for e in run.errors],
        transfer=transfer_rows(run),
        attribution=attribution[0],
        attribution_rows=attribution[1],
        source=provenance.source_line(run),
        source_pairs=provenance.source_pairs(run),
        command=provenance.reproduce_command(run),
        environment=provenance.environment_pairs(run),
        key_config=provenance.key_config(run),
        config_sections=provenance.config_sections(run),
    )


# --- several runs -----------------------------------------------------------------------------------

def run_anchor(index: int) -> str:
    """The HTML id of the ``index``-th run's section (never built from a run's name)."""
    return f"run{index}"


def comparison(runs: Sequence[Run]) -> ComparisonView | None:
    """Runs side by side (None for a single run); the rho-sweep figure when the runs differ in rho."""
    if len(runs) < 2:
        return None
    finals = [r.final_accuracy() for r in runs]
    rows = []
    for label, field_name in (("data", "data"), ("method", "method"), ("rho", "rho"),
                              ("base step", "optimizer"), ("learning rate", "lr"),
                              ("epochs", "epochs"), ("seed", "seed")):
        rows.append(TableRow(label, [fmt.plain(r.train_config[field_name]) if field_name in r.train_config
                                     else (r.data_name or NOT_MEASURED) if field_name == "data"
                                     else NOT_MEASURED for r in runs]))
    rows.append(TableRow("model source", [provenance.source_line(r) for r in runs]))
    rows.append(TableRow("device", [r.device or NOT_MEASURED for r in runs]))
    rows.append(TableRow("smooth test accuracy", [fmt.pct(f[0]) for f in finals]))
    rows.append(TableRow("hard test accuracy", [fmt.pct(f[1]) for f in finals]))
    rows.append(TableRow("transfer gap", [fmt.points(f[2]) for f in finals]))
    rows.append(TableRow("accuracy source", [f[3] for f in finals]))
    rows.append(TableRow("E2 INT8 hard accuracy", [
        _transfer_cell(r.final_checks()["E2"].details if "E2" in r.final_checks() else r.evaluation,
                       "int8_hard_acc", fmt.pct) for r in runs]))
    by_run = [{row.id: row for row in verdict_rows(r)} for r in runs]
    ids = sorted({sid for rows_ in by_run for sid in rows_}, key=statement_sort_key)
    for sid in ids:
        cells, css, sub = [], [], []
        for rows_ in by_run:
            row = rows_.get(sid)
            style = fmt.status_style(row.status if row else NOT_MEASURED)
            cells.append(f"{style.symbol} {style.words}")
            css.append(style.css)
            sub.append(f"slack {row.slack}" if row and row.slack.endswith("×") else "")
        rows.append(TableRow(f"{sid} {STATEMENT_NAMES.get(sid, '')}".strip(), cells, css, sub))

    sweep = None
    rhos = {r.rho for r in runs if r.rho is not None}
    if len(rhos) > 1:
        points = [figures.SweepPoint(r.method or "unknown method", r.rho, f[0], f[1], f[2])
                  for r, f in zip(runs, finals) if r.rho is not None]
        svg = figures.rho_sweep_svg(points, key="comparison-rho-sweep")
        sweep = FigureView("Rho sweep", Markup(svg),
                           "Final test accuracy in smooth and hard mode, and the transfer gap (smooth minus "
                           "hard), against the SAM radius rho; the mean over seeds where a rho has several runs.")
    headers = [(run_anchor(i), r.name) for i, r in enumerate(runs)]
    return ComparisonView(headers, rows, sweep)
