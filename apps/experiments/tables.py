"""Plain-text tables and result files of a sweep (results.json, results.csv, paired.csv)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from runfolder import atomic_write_text, write_json

from apps.experiments.stats import TABLE_FIELDS


def _ci(row: dict[str, Any], f: str, fmt: str = "{:.3f}") -> str:
    m, lo, hi = row.get(f"{f}_mean"), row.get(f"{f}_lo"), row.get(f"{f}_hi")
    if m is None:
        return "-"
    if lo is None or hi is None:
        return fmt.format(m)
    return f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def format_table(table: Sequence[dict[str, Any]]) -> str:
    """Mean [95% interval] over seeds of accuracy, gap and the main diagnostics, one line per run group."""
    head = (f"{'setting':<18}{'method':<11}{'rho':>5}{'n':>3}  {'smooth':>21}  {'hard':>21}  {'gap':>23}"
            f"{'corr.hard':>10}{'ECE hard':>9}{'int8':>7}{'time/SF':>8}")
    lines = [head, "-" * len(head)]
    for r in table:
        rel = r.get("seconds_per_epoch_vs_sf")
        m = lambda f: "-" if r.get(f"{f}_mean") is None else f"{r[f'{f}_mean']:.3f}"  # noqa: E731
        lines.append(f"{(r.get('setting') or '-')[:17]:<18}{r['method']:<11}{r['rho']:>5g}{r['seeds']:>3}  "
                     f"{_ci(r, 'smooth_acc'):>21}  {_ci(r, 'hard_acc'):>21}  {_ci(r, 'gap', '{:+.3f}'):>23}"
                     f"{m('corruption_mean_hard'):>10}{m('ece_hard'):>9}{m('int8_hard_acc'):>7}"
                     f"{'-' if rel is None else f'{rel:.2f}x':>8}")
    return "\n".join(lines)


def format_paired(paired: Sequence[dict[str, Any]], fields: Sequence[str] = ("hard_acc", "gap")) -> str:
    """SAST minus SF and minus the compute-matched SF, per setting and rho, with 95% intervals."""
    head = f"{'setting':<18}{'rho':>5}  {'control':<11}{'field':<9}{'n':>3}  {'SAST - control [95% CI]':<30}verdict"
    lines = [head, "-" * len(head)]
    for p in paired:
        if p["field"] not in fields:
            continue
        if p["mean"] is None:
            text = "-"
        elif p["lo"] is None:
            text = f"{p['mean']:+.3f}"
        else:
            text = f"{p['mean']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}]"
        lines.append(f"{(p['setting'] or '-')[:17]:<18}{p['rho']:>5g}  {p['control']:<11}{p['field']:<9}"
                     f"{p['n']:>3}  {text:<30}{p['verdict']}")
    return "\n".join(lines)


def format_correlations(corrs: Sequence[dict[str, Any]], scope: str = "all") -> str:
    lines = [f"{'transfer gap against':<24}{'runs':>5}{'Spearman':>10}{'p':>9}"]
    for c in corrs:
        if c["scope"] != scope:
            continue
        s = "-" if c["spearman"] is None else f"{c['spearman']:+.3f}"
        pv = "-" if c["p"] is None else f"{c['p']:.3g}"
        lines.append(f"{c['x']:<24}{c['n']:>5}{s:>10}{pv:>9}")
    return "\n".join(lines)


def best_rho_sentence(table: Sequence[dict[str, Any]]) -> str:
    """Where the best mean hard-spike accuracy falls in rho (rho = 0 is SF), per setting."""
    out = []
    for setting in dict.fromkeys(r.get("setting", "") for r in table):
        sweep = [r for r in table if r.get("setting", "") == setting and r["method"] in ("sf", "sast")
                 and r.get("hard_acc_mean") is not None]
        if not sweep:
            continue
        best = max(sweep, key=lambda r: r["hard_acc_mean"])
        sf = next((r for r in sweep if r["method"] == "sf"), None)
        text = (f"{setting + ': ' if setting else ''}best hard-spike accuracy {best['hard_acc_mean']:.4f} "
                f"at rho = {best['rho']:g}")
        if sf is not None and best is not sf:
            text += f" (SF, rho = 0: {sf['hard_acc_mean']:.4f}; gap {sf['gap_mean']:+.4f} -> {best['gap_mean']:+.4f})"
        elif sf is not None:
            text += " (SF itself: no rho > 0 improved hard-spike accuracy)"
        out.append(text)
    return "\n".join(out) if out else "no SF/SAST runs to compare"


def _csv(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


def write_tables(out: Path, results: dict[str, Any]) -> None:
    """results.json (everything), results.csv (the table) and paired.csv (the paired comparisons)."""
    table = results["table"]
    write_json(out / "results.json", results)
    axes = [k for k in results.get("axes", {}) if k != "rho"]
    fields = ["setting", *axes, "method", "rho", "seeds"] + \
        [f"{f}_{s}" for f in TABLE_FIELDS for s in ("mean", "std", "lo", "hi")] + \
        ["seconds_per_epoch_vs_sf", "grad_evals_per_epoch_vs_sf"]
    atomic_write_text(out / "results.csv", _csv(table, fields))
    atomic_write_text(out / "paired.csv", _csv(results["paired"], ["setting", "rho", "control", "field", "n", "mean",
                                                                   "lo", "hi", "verdict", "seeds", "diffs"]))
