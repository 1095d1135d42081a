"""Hessian-vector products against a gradient, and the top Hessian eigenvalue against PyHessian's.

    python bench/hessian.py
    python bench/hessian.py --device cuda --batch 1024

On the demo network (smooth mode, mean cross-entropy over one probe batch, all parameters):

1. ``hvp``: one product H v of checks.linalg.HessianOperator by each exact method
   (double backward through the kept gradient graph; forward-over-reverse with torch.func,
   which runs the plain path) against one fresh gradient (forward and backward), round-robin;
   the two methods' products are checked against each other, and the method that ``auto``
   picks on this machine is recorded.
2. ``eigen``: the largest-magnitude Hessian eigenvalue. Reference: Lanczos
   (checks.linalg.lanczos_extremes) run to a residual of 1e-9 relative. Then, round-robin
   with the same seeds: this project's operator (the measured faster method) plus
   lanczos_extremes at its default tolerance, and PyHessian's power iteration (its defaults:
   tol 1e-3 on the change of the estimate, at most 100 products). Each reports its time
   (building the gradient graph included), its number of products and its relative error
   against the reference. ``ours-checked`` adds the operator's default determinism check
   (two more gradients and products), which PyHessian does not do.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sast import heap  # noqa: E402
from bench._common import (  # noqa: E402
    DEMO_BATCH,
    DEMO_DENSITY,
    DEMO_INPUT,
    DEMO_LAYERS,
    DEMO_T,
    demo_model,
    environment,
    event_frames,
    labels,
    print_table,
    relative_error,
    round_robin,
    synchronize,
    write_json,
)
from checks.linalg import HessianOperator, lanczos_extremes  # noqa: E402

# Our Lanczos keeps its basis in the operator's float32 (lanczos_extremes' dtype option): with full
# reorthogonalisation its memory traffic grows with each step, and float64 doubles it; the
# eigenvalue is needed to 1e-3, far above float32 rounding (the reference below is float64).
LANCZOS_DTYPE = torch.float32
REFERENCE_TOL = 1e-9  # Lanczos residual (relative to the spectral radius) of the reference value
REFERENCE_MAX_ITER = 200


def _largest_magnitude(res) -> float:
    return max(res.lambda_max, res.lambda_min, key=abs)


def hvp_vs_gradient(model, x, y, *, rounds: int, device: str) -> dict[str, Any]:
    """Seconds of one H v (each method) and of one gradient, paired by round."""
    ops = {m: HessianOperator(model, None, x, y, method=m, check_deterministic=False)
           for m in ("double-backward", "forward-over-reverse")}
    v = torch.randn(ops["double-backward"].dim, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64).to(device=ops["double-backward"].device, dtype=ops["double-backward"].dtype)
    agree = relative_error(ops["forward-over-reverse"].matvec(v), ops["double-backward"].matvec(v))
    auto = HessianOperator(model, None, x, y)  # the default: timed choice and determinism check
    timing = round_robin({
        "gradient": ops["double-backward"].loss_and_gradient,
        "hvp double-backward": lambda: ops["double-backward"].matvec(v),
        "hvp forward-over-reverse": lambda: ops["forward-over-reverse"].matvec(v),
    }, rounds=rounds, device=device)
    summary = timing.summary("gradient")
    best = min(("double-backward", "forward-over-reverse"), key=lambda m: summary[f"hvp {m}"]["ratio"])
    return {"timing": summary, "methods_rel_diff": agree, "auto_choice": auto.method,
            "auto_calibration_s": auto.calibration, "fastest": best,
            "ratio": summary[f"hvp {best}"]["ratio"]}


def _pyhessian_top(model, x, y, device: str) -> tuple[float, int]:
    """PyHessian's top eigenvalue with its defaults, and the number of products it used."""
    import pyhessian  # noqa: F401  (the package's module is shadowed by its class of the same name)

    module = sys.modules["pyhessian.hessian"]
    count = [0]
    original = module.hessian_vector_product

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    module.hessian_vector_product = counted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # backward(create_graph=True) reference-cycle warning
            h = module.hessian(model, F.cross_entropy, data=(x, y), cuda=torch.device(device).type == "cuda")
            values, _ = h.eigenvalues()
    finally:
        module.hessian_vector_product = original
        for p in model.parameters():  # PyHessian leaves graph-carrying .grad fields
            p.grad = None
    return float(values[0]), count[0]


def top_eigenvalue(model, x, y, *, method: str, rounds: int, device: str) -> dict[str, Any]:
    """The reference, then ours and PyHessian's, timed round-robin with the same seed per round."""
    op = HessianOperator(model, None, x, y, method=method, check_deterministic=False)
    ref = lanczos_extremes(op, tol=REFERENCE_TOL, max_iter=REFERENCE_MAX_ITER)
    reference = _largest_magnitude(ref)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "ours-checked": [], "pyhessian": []}

    def ours(seed: int, checked: bool) -> dict[str, float]:
        o = HessianOperator(model, None, x, y, method=method, check_deterministic=checked, seed=seed)
        res = lanczos_extremes(o, seed=seed, dtype=LANCZOS_DTYPE)
        val = _largest_magnitude(res)
        return {"value": val, "products": res.n_products + o.overhead_products,
                "rel_error": abs(val - reference) / abs(reference), "converged": res.converged}

    def pyh(seed: int) -> dict[str, float]:
        torch.manual_seed(seed)  # PyHessian draws its start vector from the global generator
        val, n = _pyhessian_top(model, x, y, device)
        return {"value": val, "products": n, "rel_error": abs(val - reference) / abs(reference)}

    try:
        import pyhessian  # noqa: F401
    except ImportError:
        print("PyHessian not installed (`make bench` installs it): timing ours alone", file=sys.stderr)
        del runs["pyhessian"]
    times: dict[str, list[float]] = {k: [] for k in runs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "pyhessian" in runs:
            pyh(0)  # warm-up (first-call costs of PyHessian's and our code paths)
        ours(0, False)
    for r in range(rounds):
        order = [name for name in ("ours", "pyhessian", "ours-checked") if name in runs]
        order = order[r % len(order):] + order[:r % len(order)]
        for name in order:
            synchronize(device)
            t0 = time.perf_counter()
            rec = pyh(r) if name == "pyhessian" else ours(r, name == "ours-checked")
            synchronize(device)
            rec["seconds"] = time.perf_counter() - t0
            runs[name].append(rec)
            times[name].append(rec["seconds"])
    out: dict[str, Any] = {"reference": {"value": reference, "products": ref.n_products,
                                         "residual": max(ref.residual_max, ref.residual_min),
                                         "converged": ref.converged, "method": method}}
    for name, recs in runs.items():
        out[name] = {
            "median_s": statistics.median(r["seconds"] for r in recs),
            "products_max": max(r["products"] for r in recs),
            "products_median": statistics.median(r["products"] for r in recs),
            "rel_error_max": max(r["rel_error"] for r in recs),
            "rel_error_median": statistics.median(r["rel_error"] for r in recs),
            "time_ratio_to_pyhessian": statistics.median(
                a / b for a, b in zip(times[name], times["pyhessian"])) if "pyhessian" in times else math.nan,
            "runs": recs,
        }
    return out


def run(*, batch: int = DEMO_BATCH, density: float = DEMO_DENSITY, device: str = "cpu", layers=None,
        input_shape=DEMO_INPUT, T: int = DEMO_T, hvp_rounds: int = 9, eigen_rounds: int = 5) -> dict[str, Any]:
    model = demo_model(layers=layers or DEMO_LAYERS, input_shape=input_shape, T=T, device=device)
    x = event_frames(batch, T, input_shape, density, device=device)
    y = labels(batch, device=device)
    hvp = hvp_vs_gradient(model, x, y, rounds=hvp_rounds, device=device)
    eigen = top_eigenvalue(model, x, y, method=hvp["fastest"], rounds=eigen_rounds, device=device)
    return {"network": {"layers": list(model.config.layers), "batch": batch, "T": T, "density": density,
                        "device": device, "parameters": sum(p.numel() for p in model.parameters())},
            "hvp": hvp, "eigen": eigen}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=DEMO_BATCH)
    p.add_argument("--device", default="cpu")
    p.add_argument("--hvp-rounds", type=int, default=9)
    p.add_argument("--eigen-rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    heap.retain_freed_memory()  # as the commands run (sast.heap)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(batch=args.batch, device=args.device, hvp_rounds=args.hvp_rounds, eigen_rounds=args.eigen_rounds)
    res["environment"] = environment()
    print_table(f"Hessian-vector product vs gradient ({res['network']['parameters']} parameters, batch {args.batch})",
                res["hvp"]["timing"], "gradient")
    print(f"  methods agree to {res['hvp']['methods_rel_diff']:.1e} relative; auto picks {res['hvp']['auto_choice']}")
    e = res["eigen"]
    print(f"\ntop |eigenvalue|: reference {e['reference']['value']:.6g} ({e['reference']['products']} products, "
          f"residual {e['reference']['residual']:.1e})")
    print(f"  {'':<14}{'median s':>10}{'x pyhessian':>13}{'products(max)':>15}{'rel err(max)':>14}")
    for name in ("ours", "ours-checked", "pyhessian"):
        if name not in e:
            continue
        r = e[name]
        print(f"  {name:<14}{r['median_s']:>10.3f}{r['time_ratio_to_pyhessian']:>13.3f}{r['products_max']:>15}"
              f"{r['rel_error_max']:>14.1e}")
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
