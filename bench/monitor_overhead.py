"""The live monitor's cost: the demo's training runs with --monitor off and with each preset, round-robin.

    python bench/monitor_overhead.py --epochs 30 --rounds 3          (the demo: SF and SAST, default and full)
    python bench/monitor_overhead.py --epochs 3 --rounds 2 --methods sf --presets default   (a quick look)
    python bench/monitor_overhead.py --net conv --methods sf --epochs 1 --rounds 2 --limit 512   (the conv net)

For each method (``--methods``, default SF and SAST rho = 0.3, as ``python -m sast.demo``)
it trains the same run (``python -m sast.train``'s defaults: synth-nmnist, dense:256,
T = 20, batch 64, lr 0.5) once per round without the monitor and once with each preset,
in one process, on data loaded once, rotating the order every round so that slow drift of
a shared machine falls on all of them. Prints each run's wall time and the monitor's own
time (the seconds it spent in its hooks), then per method and preset

    wall overhead = median over rounds of (t_preset / t_off) - 1
    self-timed    = median over rounds of monitor seconds / (t_preset - monitor seconds)

The self-timed share sets the monitor's seconds against the rest of the same run, both
under the same load, so it moves far less than the wall-time ratio of two runs when other
work shares the machine; the load average is printed with the figures. Targets
(checks/monitor.py): default <= 5%, full <= 25%. The first use of ``theory`` in a process
(its sympy derivations, once per process) is timed apart before the rounds and reported
as such. There is no timed assertion in the tests: timings depend on the machine and its load.
``--json`` writes every figure (bench/gpu.sh collects it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sast import heap  # noqa: E402
from checks.monitor import PRESETS, Monitor  # noqa: E402
from sast.train import TrainConfig, load_data, train  # noqa: E402

DEMO_RHO = 0.3  # SAST's rho in python -m sast.demo


def _first_theory_use() -> float:
    """Seconds of the first theory computation in this process (sympy's T1 derivations, then cached)."""
    from theory import ModelConstants, bounds

    t0 = time.perf_counter()
    c = ModelConstants(lam=0.9, theta=1.0, beta=0.5, reset="zero", T=20, n=(4,), n_0=4, R=(1.0,), R_inf=(1.0,),
                       b_inf=(0.1,), b_norm=(0.1,), R_o=1.0, A=1.0, X_inf=1.0)
    bounds.smoothness(c), bounds.input_lipschitz(c), bounds.state_interval(c)
    return time.perf_counter() - t0


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


NETS = {
    "demo": ("synth-nmnist", []),  # python -m sast.train's defaults: dense:256 on synth-nmnist
    "conv": ("synth-gesture", ["conv:32:3:2", "conv:64:3:2", "pool:2", "conv:128:3:1", "pool:2", "dense:256"]),
}
"""``--net``: the demo's network, or the README's 3-conv-layer net on synth-gesture (its data set's defaults)."""


def bench_method(method: str, presets: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    data_name, layers = NETS[args.net]
    settings = {"layers": layers} if layers else {}
    cfg = TrainConfig.for_data(data_name, epochs=args.epochs, method=method, rho=DEMO_RHO if method == "sast" else 0.0,
                               device=args.device, limit=args.limit, **settings)
    t0 = time.perf_counter()
    data = load_data(cfg, progress=False)
    steps = len(data.train) // cfg.batch_size * args.epochs
    print(f"{method}: {len(data.train)} train samples, {steps} steps ({args.epochs} epochs; "
          f"{time.perf_counter() - t0:.1f} s to load); torch threads {torch.get_num_threads()}", file=sys.stderr)
    names = ["off", *presets]
    times: dict[str, list[float]] = {n: [] for n in names}
    own: dict[str, list[float]] = {n: [] for n in presets}
    by_id: dict[str, list[dict]] = {n: [] for n in presets}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            monitor = Monitor(name) if name != "off" else None
            start = time.perf_counter()
            train(cfg, tmp / f"{method}-{name}-{r}", callbacks=[monitor] if monitor else [], progress=False, data=data)
            dt = time.perf_counter() - start
            times[name].append(dt)
            extra = ""
            if monitor is not None:
                own[name].append(monitor.seconds)
                by_id[name].append({k: [round(v, 3), monitor.runs_by_id[k]] for k, v in monitor.seconds_by_id.items()})
                parts = ", ".join(f"{k} {v:.2f}s/{monitor.runs_by_id[k]}" for k, v in monitor.seconds_by_id.items())
                extra = f"  monitor {monitor.seconds:.2f} s ({parts})"
            print(f"{method} round {r + 1} {name:>8}: {dt:7.2f} s{extra}  [load {_load()}]", file=sys.stderr)
    out = {"steps": steps, "times": times, "monitor_seconds": own, "by_id": by_id, "presets": {}}
    for name in presets:
        ratio = statistics.median(m / o for m, o in zip(times[name], times["off"]))
        share = statistics.median(s / (t - s) for s, t in zip(own[name], times[name]))
        out["presets"][name] = {"wall_overhead": ratio - 1, "self_timed": share}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--methods", default="sf,sast", help="comma-separated: sf, sast (rho 0.3), hfsb")
    p.add_argument("--presets", default="default,full", help="comma-separated monitor presets to cost")
    p.add_argument("--preset", default=None, help="one preset (the same as --presets NAME)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds (each trains once per preset and off)")
    p.add_argument("--method", default=None, help="one method (the same as --methods NAME)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--limit", type=int, default=None, help="samples per split (default: all, as the demo)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--net", default="demo", choices=sorted(NETS),
                   help="demo: dense:256 on synth-nmnist (python -m sast.train's defaults); conv: "
                        + ",".join(NETS["conv"][1]) + " on synth-gesture, with that data set's defaults")
    args = p.parse_args(argv)
    heap.retain_freed_memory()  # as the commands run (sast.heap)
    methods = [args.method] if args.method else [m.strip() for m in args.methods.split(",") if m.strip()]
    presets = [args.preset] if args.preset else [s.strip() for s in args.presets.split(",") if s.strip()]
    unknown = [s for s in presets if s not in PRESETS or s == "off"]
    if unknown:
        p.error(f"unknown or empty preset(s) {unknown}: choose from {', '.join(k for k in PRESETS if k != 'off')}")
    if args.threads:
        torch.set_num_threads(args.threads)
    first = _first_theory_use()
    print(f"first use of theory in this process (sympy, once): {first:.2f} s; load average {_load()}", file=sys.stderr)
    given = argv if argv is not None else sys.argv[1:]
    results = {"command": " ".join(["python", "bench/monitor_overhead.py", *given]), "net": args.net,
               "epochs": args.epochs, "rounds": args.rounds, "device": args.device,
               "threads": torch.get_num_threads(), "first_theory_use_seconds": first, "load_before": _load(),
               "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            results["methods"][method] = bench_method(method, presets, args, Path(tmp))
    results["load_after"] = _load()
    print(f"\nmonitor overhead, {args.epochs} epochs, median of {args.rounds} rounds "
          f"(load average before {results['load_before']}, after {results['load_after']}):")
    print(f"{'method':<8}{'preset':<10}{'wall':>9}{'self-timed':>12}")
    for method, res in results["methods"].items():
        for name, fig in res["presets"].items():
            print(f"{method:<8}{name:<10}{100 * fig['wall_overhead']:>+8.1f}%{100 * fig['self_timed']:>11.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
