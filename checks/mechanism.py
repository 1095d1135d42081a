"""T7 (local mechanism): per sample, ||grad_x l||_F against (||W^1|| / s_T(X)) ||grad_{W^1} l||_F.

    python -m checks.mechanism --model ckpt.pt

For one sample with frames X = [x_1 .. x_T]^T (T x n_0) and delta_t = dl/d(W^1 x_t),
D = [delta_1 .. delta_T] (n_1 x T): grad_{W^1} l = D X and grad_{x_t} l = W^1^T delta_t,
so, where X has full row rank (the local conditioning condition; it needs T <= n_0),

    ||grad_x l||_F <= ||W^1|| ||D||_F <= (||W^1|| / s_T(X)) ||grad_{W^1} l||_F

(``theory.bounds.local_mechanism``). Per probe sample the check measures ||grad_x l||_F
and ||grad_{W^1} l||_F (per-sample gradients of the first layer's weight only, in smooth
mode), s_T(X) and s_1(X) (SVD in float64), and ||W^1|| (exact SVD). The condition fails
where s_T(X) <= rtol s_1(X) (rtol of ``local_mechanism``): frames with all-zero time bins
make X rank deficient, a finding that the details report. The result holds the sample
with the largest ratio estimate / bound among those where the condition holds; where it
holds for no sample, or the first spiking layer is conv or has pooling before it, the
result is "not applicable" with reason "condition fails" and no number. The input-gradient
norms (mean, median, max in details) are also the data for comparing SAST with its baseline.

With ``--local`` (the default) the record also holds T7's LOCAL bound at the worst sample,
||W^1|| ||D||_F with D = grad_{W^1} l X^+ measured (the conditioning step replaced), and its
``looseness`` budget (``checks._budgets.t7``).
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from checks import _budgets
from checks._cli import Loaded, run_cli
from checks._common import Stopwatch, check_probe, describe
from checks._result import CheckResult, make_result
from checks.constants import spectral_norm
from sast.model import SNN, LayerSpec
from theory import bounds

# Samples per vmap call: a per-sample W^1 gradient of a 2312 x 256 layer is 2.4 MB in
# float32, so 16 samples keep the batched gradients (and their graphs) near 100 MB.
GRAD_CHUNK = 16
# Relative accuracy of the comparison (make_result's rtol; it never loosens the bound):
# estimate and bound come from the same autograd gradients, whose rounding is about
# sqrt(T n_0) eps relative, ~1e-5 in float32 for a 20 x 2312 input; float64 ~1e-12.
NUMERIC_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
NUMERIC_RTOL_DEFAULT = 1e-2  # half precision

_CONDITION_FAILS = "condition fails"

NEEDS: tuple[str, ...] = ()
"""Nothing beyond the model and the probe (``checks._common.KNOWN_NEEDS``)."""


def first_layer_obstacle(model: SNN) -> str | None:
    """Why T7 cannot apply to the model's first spiking layer (None when it is dense with nothing but flatten before it)."""
    plan = model.plan
    first = model.spiking_specs[0]
    if first.kind != "dense":
        return (f"{_CONDITION_FAILS}: the first spiking layer is {first.kind} (T7 needs a dense first layer; "
                "a conv's patch map need not be injective)")
    if any(s.kind == "pool" for s in plan[: plan.index(first)]):
        return f"{_CONDITION_FAILS}: average pooling before the first spiking layer (X is not W^1's input)"
    return None


def per_sample_grad_norms(model: SNN, x: torch.Tensor, y: torch.Tensor, *,
                          chunk: int = GRAD_CHUNK) -> tuple[list[float], list[float]]:
    """Per sample i: (||grad_{x_i} l||_F, ||grad_{W^1} l(z(x_i), y_i)||_F), smooth mode, cross-entropy.

    One ``torch.func.vmap`` over ``torch.func.grad`` with respect to (W^1, x_i), each sample
    a batch of one; only W^1 is differentiated among the parameters, and only the norms
    are kept (``chunk`` samples at a time bound the memory).
    """
    first = model.spiking_specs[0]
    w1_name = f"layers.{first.index}.weight"
    dtype = next(model.parameters()).dtype
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    w1 = params.pop(w1_name)

    def loss_one(w: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, ({**params, w1_name: w}, buffers), (xi.unsqueeze(0),), {"mode": "smooth"})
        return F.cross_entropy(logits, yi.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(loss_one, argnums=(0, 1)), in_dims=(None, 0, 0))
    gx_norms: list[float] = []
    gw_norms: list[float] = []
    x = x.detach().to(dtype)
    for i in range(0, len(x), chunk):
        gw, gx = grads(w1, x[i : i + chunk], y[i : i + chunk])
        gx_norms += [float(v) for v in gx.flatten(1).norm(dim=1)]
        gw_norms += [float(v) for v in gw.flatten(1).norm(dim=1)]
    return gx_norms, gw_norms


def frame_singular_values(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per sample: (s_T(X), s_1(X)) of X = [x_1 .. x_T]^T (T x n_0), in float64; s_T = 0 when T > n_0."""
    X = x.detach().double().cpu().flatten(2)
    T, n0 = X.shape[1], X.shape[2]
    sv = torch.linalg.svdvals(X)  # (B, min(T, n_0)), descending
    s_1 = [float(s) for s in sv[:, 0]]
    s_T = [float(s) for s in sv[:, T - 1]] if T <= n0 else [0.0] * len(X)
    return s_T, s_1


def _ratio(estimate: float, bound: float) -> float:
    if bound > 0:
        return estimate / bound
    return 0.0 if estimate == 0 else math.inf


def _stats(values: list[float], name: str) -> dict[str, float]:
    return {f"{name}_mean": statistics.fmean(values), f"{name}_median": statistics.median(values),
            f"{name}_max": max(values)}


def run(model: SNN, probe: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0, progress: bool = False,
        chunk: int = GRAD_CHUNK, local: bool = True) -> CheckResult:
    """T7: the per-sample inequality ||grad_x l||_F <= (||W^1|| / s_T(X)) ||grad_{W^1} l||_F, worst sample.

    ``seed`` is recorded only (nothing here is random). See the module docstring for
    the details' keys. ``local``: also T7's local bound at the worst sample and its budget.
    """
    check_probe(model, probe)
    sw = Stopwatch()
    x, y = probe
    cfg = model.config
    T, n0 = cfg.T, math.prod(cfg.input_shape)
    obstacle = first_layer_obstacle(model)
    gx, gw = per_sample_grad_norms(model, x, y, chunk=chunk)
    s_T, s_1 = frame_singular_values(x)
    zero_bins = [int(v) for v in (x.detach().flatten(2).abs().sum(dim=2) == 0).sum(dim=1)]
    details: dict[str, Any] = {
        "T": T, "n_0": n0, "input_grad_norm": gx, "w1_grad_norm": gw, "s_T": s_T, "s_1": s_1,
        "zero_time_bins": zero_bins, **_stats(gx, "input_grad_norm"), **_stats(gw, "w1_grad_norm"),
    }
    common = dict(seed=seed, **describe(model, x))
    first: LayerSpec = model.spiking_specs[0]
    if obstacle is not None:
        details.update(condition_holds=[False] * len(x), bound_per_sample=[None] * len(x), w1_norm=None,
                       fraction_condition=0.0, reason=obstacle, first_layer=first.kind)
        return make_result("T7", "local mechanism", bound=None, estimate=None, assumptions={"T7 condition": False},
                           seconds=sw.seconds, details=details, **common)
    w1_norm = spectral_norm(model.layers[first.index].weight)  # exact; ~20x faster than an SVD (checks.constants)
    records = [bounds.local_mechanism(w1_norm, st, g, s_1=s1) for st, g, s1 in zip(s_T, gw, s_1)]
    holds = [r.status == bounds.OK for r in records]
    per_sample = [r.value if h else None for r, h in zip(records, holds)]
    deficient = len(x) - sum(holds)
    details.update(condition_holds=holds, bound_per_sample=per_sample, w1_norm=w1_norm,
                   fraction_condition=sum(holds) / len(x), rtol_rank=records[0].details["rtol"],
                   latex=bounds.LATEX["T7"])
    if deficient:
        with_zero = sum(1 for h, z in zip(holds, zero_bins) if not h and z > 0)
        why = (f"T = {T} > n_0 = {n0}: X has more rows than columns" if T > n0
               else f"{with_zero} of them have all-zero time bins")
        details["finding"] = f"X is rank deficient for {deficient} of {len(x)} samples ({why})"
    if not any(holds):
        details["reason"] = f"{_CONDITION_FAILS}: X = [x_1 .. x_T]^T is rank deficient for every probe sample"
        return make_result("T7", "local mechanism", bound=None, estimate=None, assumptions={"T7 condition": False},
                           seconds=sw.seconds, details=details, **common)
    ratios = {i: _ratio(gx[i], per_sample[i]) for i in range(len(x)) if holds[i]}
    i = max(ratios, key=lambda k: ratios[k])
    details["sample"] = i
    loc = (_budgets.t7(model, x, y, i, w1_norm, per_sample[i], gx[i], gw[i], s_T[i]) if local
           else _budgets.not_computed("not requested (local=False)"))
    details["local"] = loc.details
    return make_result("T7", "local mechanism", bound=per_sample[i], estimate=gx[i], **loc.fields(),
                       assumptions={"T7 condition": True},
                       rtol=NUMERIC_RTOL.get(next(model.parameters()).dtype, NUMERIC_RTOL_DEFAULT),
                       seconds=sw.seconds, details=details, **common)


def _options(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    return {"local": args.local}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("python -m checks.mechanism", __doc__.splitlines()[0], run, argv,
                   add_flags=_budgets.add_local_flag, options=_options)


if __name__ == "__main__":
    raise SystemExit(main())
