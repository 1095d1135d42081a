"""The live monitor's cost: the demo's training run with --monitor off and with a preset, round-robin.

    python bench/monitor_overhead.py                       (the demo: 8 epochs, default preset, 3 rounds)
    python bench/monitor_overhead.py --epochs 2 --rounds 2 --preset full

Trains the same run (``python -m sast.train``'s defaults: synth-nmnist, dense:256, T = 20,
batch 64, SF, lr 0.5) once per round without the monitor and once with it, in one
process, on data loaded once, alternating which goes first (ABBA) so that slow drift
of a shared machine falls on both. Prints each run's wall time and the monitor's own
time (the seconds it spent in its hooks; set against the rest of the same run, it is far
less sensitive to other load than two runs' wall times), then

    overhead = median over rounds of (t_monitor / t_off) - 1, and self-timed:
               median over rounds of monitor seconds / (t_monitor - monitor seconds)

The design target (checks/monitor.py, preset ``default``) is at most 5%. There is no
timed assertion in the tests: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from checks.monitor import Monitor  # noqa: E402
from sast.train import TrainConfig, load_data, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="default", help="monitor preset to cost (default, full)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds (each trains twice)")
    p.add_argument("--method", default=TrainConfig.method)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--limit", type=int, default=None, help="samples per split (default: all, as the demo)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(epochs=args.epochs, method=args.method, rho=0.3 if args.method == "sast" else 0.0,
                      device=args.device, limit=args.limit)
    t0 = time.perf_counter()
    data = load_data(cfg, progress=False)
    print(f"data: {len(data.train)} train samples, {len(data.train) // cfg.batch_size} steps/epoch, "
          f"{args.epochs} epochs ({time.perf_counter() - t0:.1f} s to load); torch threads {torch.get_num_threads()}",
          file=sys.stderr)
    times: dict[str, list[float]] = {"off": [], args.preset: []}
    monitor_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["off", args.preset] if r % 2 == 0 else [args.preset, "off"]
            for name in order:
                monitor = Monitor(args.preset) if name != "off" else None
                start = time.perf_counter()
                train(cfg, Path(tmp) / f"{name}-{r}", callbacks=[monitor] if monitor else [], progress=False, data=data)
                dt = time.perf_counter() - start
                times[name].append(dt)
                extra = ""
                if monitor is not None:
                    monitor_seconds.append(monitor.seconds)
                    by_id = ", ".join(f"{k} {v:.2f}s/{monitor.runs_by_id[k]}" for k, v in monitor.seconds_by_id.items())
                    extra = f"  monitor {monitor.seconds:.2f} s ({by_id})"
                print(f"round {r + 1} {name:>8}: {dt:7.2f} s{extra}", file=sys.stderr)
    ratio = statistics.median(m / o for m, o in zip(times[args.preset], times["off"]))
    # the monitor's seconds over the rest of the same run: both under the same load, so this
    # moves far less than the wall-time ratio of two runs on a shared machine
    own = statistics.median(s / (t - s) for s, t in zip(monitor_seconds, times[args.preset]))
    print(f"monitor preset {args.preset!r}: wall-time ratio (with / without, median of {args.rounds} rounds) = "
          f"{ratio:.3f} -> overhead {100 * (ratio - 1):+.1f}%; self-timed: monitor seconds / the rest of the "
          f"run = {100 * own:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
