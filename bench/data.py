"""Data costs: synth-nmnist generation into a fresh cache, and frame binning against tonic's ToFrame.

    python bench/data.py
    python bench/data.py --skip-generation --recordings 200

1. ``generation``: ``sast.data.frame_dataset('synth-nmnist', split, T=20, ...)`` for both splits
   into a fresh temporary cache folder: the seconds to simulate every recording's events and
   bin them (what a first ``make demo`` waits for), wall and process CPU time.
2. ``binning``: ``sast.data.to_frames`` against ``tonic.transforms.ToFrame`` on the same
   synth-nmnist recordings, both over the dataset's fixed 300 ms window in T = 20 bins
   (ToFrame(time_window=15 ms, start_time=0, end_time=300 ms)), which the frames of both match
   exactly (checked; with ``n_time_bins`` tonic drops each recording's last event, see
   sast.data.events). Each contender bins all recordings once per round, round-robin.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sast import heap  # noqa: E402
from bench._common import environment, print_table, round_robin, write_json  # noqa: E402
from sast.data import event_dataset, frame_dataset, get_spec, to_frames  # noqa: E402

NAME = "synth-nmnist"
T = 20


def generation(*, limit: int | None = None) -> dict[str, Any]:
    """Seconds to generate and cache both splits of synth-nmnist from nothing."""
    with tempfile.TemporaryDirectory() as cache:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        sizes = {}
        for split in ("train", "test"):
            ds = frame_dataset(NAME, split, T, cache_dir=cache, limit=limit, progress=False)
            sizes[split] = len(ds)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"seconds": wall, "cpu_seconds": cpu, "samples": sizes, "limit": limit}


def binning(*, recordings: int = 300, rounds: int = 7) -> dict[str, Any]:
    """to_frames against tonic's ToFrame on the same recordings (same frames, checked)."""
    import tonic.transforms

    spec = get_spec(NAME)
    events = event_dataset(NAME, "test", limit=recordings, progress=False).events
    window = spec.duration_us // T
    tonic_frame = tonic.transforms.ToFrame(sensor_size=spec.sensor_size, time_window=window, start_time=0,
                                           end_time=spec.duration_us)

    def ours() -> list[np.ndarray]:
        return [to_frames(e, spec.sensor_size, T, clip=None, duration=spec.duration_us) for e in events]

    def theirs() -> list[np.ndarray]:
        return [tonic_frame(e) for e in events]

    same = all(np.array_equal(a, b) for a, b in zip(ours(), theirs()))
    timing = round_robin({"tonic ToFrame": theirs, "sast to_frames": ours}, rounds=rounds)
    summary = timing.summary("sast to_frames")
    return {"recordings": len(events), "events": int(sum(len(e) for e in events)), "same_frames": same,
            "timing": summary, "speedup": timing.ratio("tonic ToFrame", "sast to_frames")}


def run(*, generate: bool = True, limit: int | None = None, recordings: int = 300, rounds: int = 7) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if generate:
        out["generation"] = generation(limit=limit)
    out["binning"] = binning(recordings=recordings, rounds=rounds)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="generate only the first N samples of each split")
    p.add_argument("--recordings", type=int, default=300, help="recordings binned per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    heap.retain_freed_memory()  # as the commands run (sast.heap)
    res = run(generate=not args.skip_generation, limit=args.limit, recordings=args.recordings, rounds=args.rounds)
    res["environment"] = environment()
    if "generation" in res:
        g = res["generation"]
        print(f"synth-nmnist generated and cached ({g['samples']}): {g['seconds']:.1f} s wall, "
              f"{g['cpu_seconds']:.1f} s CPU")
    b = res["binning"]
    print_table(f"binning {b['recordings']} recordings ({b['events']} events), same frames: {b['same_frames']}",
                b["timing"], "sast to_frames")
    print(f"  to_frames is {b['speedup']:.1f}x faster than tonic's ToFrame")
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
