"""The SAST step (sast.sam.sam_step) against the plain SF step (sast.sam.sgd_step), round-robin.

    python bench/sam_step.py
    python bench/sam_step.py --device cuda

Both on the demo network in smooth mode, as sast.train runs them (the model's default path):
the SF step is one gradient and the base step; the SAST step is the perturbation gradient on
B_k, the perturbed gradient on an independent batch B'_k, the exact restore and the base step.
Its floor is two gradients, so the ratio is at least ~2; what it adds beyond that is the SAM
bookkeeping (gradient norm, perturbation, saved copies, restore).
"""

from __future__ import annotations

import argparse
import sys
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
    round_robin,
    write_json,
)
from sast.sam import make_optimizer, sam_step, sgd_step  # noqa: E402

LR = 1e-4  # small: the timed steps should not change the network much
RHO = 0.3  # the demo's SAST radius


def _loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def run(*, batch: int = DEMO_BATCH, density: float = DEMO_DENSITY, device: str = "cpu", layers=None,
        input_shape=DEMO_INPUT, T: int = DEMO_T, rounds: int = 15) -> dict[str, Any]:
    model = demo_model(layers=layers or DEMO_LAYERS, input_shape=input_shape, T=T, device=device)
    update = (event_frames(batch, T, input_shape, density, seed=1, device=device), labels(batch, seed=1, device=device))
    perturb = (event_frames(batch, T, input_shape, density, seed=2, device=device), labels(batch, seed=2, device=device))
    opt = make_optimizer("sgd", model.parameters(), LR)
    timing = round_robin({
        "sf step (sgd_step)": lambda: sgd_step(model, opt, _loss, update),
        "sast step (sam_step)": lambda: sam_step(model, opt, _loss, perturb, update, RHO),
    }, rounds=rounds, device=device)
    summary = timing.summary("sf step (sgd_step)")
    return {"network": {"layers": list(model.config.layers), "batch": batch, "T": T, "density": density,
                        "device": device, "rho": RHO},
            "timing": summary, "ratio": summary["sast step (sam_step)"]["ratio"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=DEMO_BATCH)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    heap.retain_freed_memory()  # as the commands run (sast.heap)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(batch=args.batch, device=args.device, rounds=args.rounds)
    res["environment"] = environment()
    print_table(f"SAST step vs SF step (demo network, batch {args.batch}, rho {RHO})", res["timing"],
                "sf step (sgd_step)")
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
