"""Numbers over seeds: means with 95% intervals, paired differences, rank correlations over runs.

With a handful of seeds the interval of a mean is Student's t interval
(``scipy.stats.t.interval``): mean +- t_{0.975, n-1} s / sqrt(n). Comparisons between
methods are **paired**: SAST and its controls train on the same seeds (the same
initialisation and minibatch order) and setting, so the difference is taken seed by seed
and its mean gets the t interval of the n differences. A difference is *resolved* when its
interval excludes 0. With one seed there is no interval (None), never a made-up one.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Sequence

from apps.experiments.plan import METHOD_ORDER

CONFIDENCE = 0.95

TABLE_FIELDS = ("smooth_acc", "hard_acc", "gap", "agreement", "logit_discrepancy", "int8_hard_acc",
                "synops_smooth", "synops_hard", "corruption_mean_smooth", "corruption_mean_hard",
                "ece_smooth", "ece_smooth_ts", "ece_hard", "ece_hard_ts", "seconds_per_epoch",
                "grad_evals_per_epoch", "input_grad_norm_mean", "lambda_max", "lambda_min", "grad_norm",
                "sharpness", "soft_band_mean", "mechanism_spearman")
PAIRED_FIELDS = ("hard_acc", "gap", "smooth_acc")
CONTROLS = ("sf", "sf-matched")


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)]


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``{"mean", "std", "lo", "hi", "n"}`` of finite ``values``: the t interval of the mean (None for n < 2)."""
    from scipy import stats

    vals = _finite(values)
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "lo": None, "hi": None, "n": 0}
    mean = statistics.fmean(vals)
    if n == 1:
        return {"mean": mean, "std": 0.0, "lo": None, "hi": None, "n": 1}
    std = statistics.stdev(vals)
    if std == 0:
        return {"mean": mean, "std": 0.0, "lo": mean, "hi": mean, "n": n}
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return {"mean": mean, "std": std, "lo": float(lo), "hi": float(hi), "n": n}


def _group_key(row: dict[str, Any]) -> tuple[str, str, float]:
    return (row.get("setting", ""), row["method"], float(row["rho"]))


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per (setting, method, rho): mean, std and 95% interval over seeds of every field.

    Keys ``F_mean``, ``F_std``, ``F_lo``, ``F_hi`` per field F of :data:`TABLE_FIELDS`, plus
    ``seeds``, ``violated_checks`` and the overhead relative to SF of the same setting.
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_group_key(r), []).append(r)
    order = sorted(groups, key=lambda k: (k[0], METHOD_ORDER.get(k[1], 9), k[2]))
    table = []
    for key in order:
        rs = groups[key]
        setting, method, rho = key
        row: dict[str, Any] = {"setting": setting, "method": method, "rho": rho, "seeds": len(rs)}
        row.update({k: v for k, v in rs[0].get("setting_values", {}).items()})
        for f in TABLE_FIELDS:
            s = mean_interval([r.get(f) for r in rs])
            for part in ("mean", "std", "lo", "hi"):
                row[f"{f}_{part}"] = s[part]
        row["violated_checks"] = sorted({v for r in rs for v in r.get("violated", [])})
        table.append(row)
    for row in table:
        sf = next((r for r in table if r["setting"] == row["setting"] and r["method"] == "sf"), None)
        for f in ("seconds_per_epoch", "grad_evals_per_epoch"):
            base = sf and sf.get(f"{f}_mean")
            row[f"{f}_vs_sf"] = row[f"{f}_mean"] / base if base and row.get(f"{f}_mean") is not None else None
    return table


def verdict(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return "no interval (one seed)"
    if lo > 0:
        return "higher"
    if hi < 0:
        return "lower"
    return "not resolved"


def paired(rows: Sequence[dict[str, Any]], fields: Sequence[str] = PAIRED_FIELDS) -> list[dict[str, Any]]:
    """SAST minus each control (SF, compute-matched SF), seed by seed, at every setting and rho > 0.

    One record per (setting, rho, control, field): ``diffs`` (per seed, the seeds both
    runs have), ``mean``, ``lo``, ``hi`` (the t interval of the mean difference) and
    ``verdict`` ("higher", "lower", "not resolved": SAST's value against the control's).
    """
    by_key: dict[tuple[str, str, float, int], dict[str, Any]] = {}
    for r in rows:
        by_key[(r.get("setting", ""), r["method"], float(r["rho"]), int(r["seed"]))] = r
    out = []
    sast_keys = sorted({(k[0], k[2]) for k in by_key if k[1] == "sast"})
    for setting, rho in sast_keys:
        seeds = sorted(k[3] for k in by_key if k[:3] == (setting, "sast", rho))
        for control in CONTROLS:
            common = [s for s in seeds if (setting, control, 0.0, s) in by_key]
            for f in fields:
                diffs, used = [], []
                for s in common:
                    a, b = by_key[(setting, "sast", rho, s)].get(f), by_key[(setting, control, 0.0, s)].get(f)
                    if _finite([a]) and _finite([b]):
                        diffs.append(float(a) - float(b))
                        used.append(s)
                st = mean_interval(diffs)
                out.append({"setting": setting, "rho": rho, "control": control, "field": f, "seeds": used,
                            "diffs": diffs, "mean": st["mean"], "lo": st["lo"], "hi": st["hi"], "n": st["n"],
                            "verdict": verdict(st["lo"], st["hi"])})
    return out


MECHANISM_X = ("input_grad_norm_mean", "lambda_max", "sharpness", "grad_norm", "soft_band_mean")
"""What the transfer gap is set against across runs (THEORY.md T7 as the paper uses it; sharpness)."""


def rank_correlations(rows: Sequence[dict[str, Any]], y: str = "gap",
                      xs: Sequence[str] = MECHANISM_X) -> list[dict[str, Any]]:
    """Spearman's rank correlation over the smooth-trained runs (SF, compute-matched SF, SAST) between
    ``y`` and each of ``xs``: ``{"x", "y", "n", "spearman", "p"}``, over all runs and per setting.

    The runs of one seed share data and initialisation, so they are not independent draws:
    the p-value is a guide, not a test at its nominal level.
    """
    from scipy import stats

    smooth = [r for r in rows if r["method"] in ("sf", "sf-matched", "sast")]
    scopes: dict[str, list[dict[str, Any]]] = {"all": smooth}
    for r in smooth:
        if r.get("setting"):
            scopes.setdefault(r["setting"], []).append(r)
    out = []
    for scope, rs in scopes.items():
        for x in xs:
            pairs = [(r.get(x), r.get(y)) for r in rs]
            pairs = [(float(a), float(b)) for a, b in pairs if _finite([a]) and _finite([b])]
            rec: dict[str, Any] = {"scope": scope, "x": x, "y": y, "n": len(pairs), "spearman": None, "p": None}
            if len(pairs) >= 3 and len({a for a, _ in pairs}) > 1 and len({b for _, b in pairs}) > 1:
                res = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
                rec["spearman"], rec["p"] = float(res.statistic), float(res.pvalue)
            out.append(rec)
    return out
