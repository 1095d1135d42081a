"""Write a checkpoint's network as a NIR file for neuromorphic hardware and other SNN libraries.

    python -m sast.export --model runs/demo/sf/ckpt.pt -o net.nir [--dt 1e-4]

The file holds the hard-spike network (:func:`sast.interop.to_nir`: Affine/Conv2d and LIF nodes with per-neuron
arrays, tau = dt / (1 - lam), r = tau / dt, v_threshold = theta, v_reset = 0) and, in the graph's metadata
under "sast", the readout's time-mean decoding (logits = (1/T) sum_t of the readout node's output) with T, dt,
the reset, lam, theta and beta, since NIR's nodes cannot say them. ``--dt`` is the time step the time constants
are written for: 1e-4 (snnTorch's and SpikingJelly's convention) by default, 1e-3 for Norse. The file is written
atomically (a temporary file in the same folder, then os.replace), so a failed write leaves what was there.

Reading it back: ``python -m checks.all --model net.nir --dt DT --reset RESET --data NAME`` (the metadata gives
beta and T), or another library's NIR importer.

Exit codes (:mod:`runfolder.exits`): 0 written, 2 bad input or an unusable file (one line on stderr naming it),
70 an internal error.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, Sequence

from runfolder import (CHECKPOINT_LIBRARY, EXIT_CODES_EPILOG, SOURCE_CHECKPOINT, atomic_write_bytes,
                       check_writable, guard)

DEFAULT_DT = 1e-4
"""Seconds per step the exported time constants assume: snnTorch's and SpikingJelly's convention."""


def write_nir(path: str | Path, graph: Any) -> int:
    """Write a ``nir.NIRGraph`` to ``path`` atomically (serialised in memory, then a temporary file in the same
    folder, fsync, os.replace); return the number of bytes written."""
    from sast.interop._common import require_nir

    nir = require_nir()
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    data = buffer.getvalue()
    atomic_write_bytes(path, lambda f: f.write(data))
    return len(data)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sast.export``."""
    p = argparse.ArgumentParser(prog="python -m sast.export", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    p.add_argument("--model", required=True, help="checkpoint to export (ckpt.pt or best.pt of a run folder)")
    p.add_argument("-o", "--output", required=True, help="the NIR file to write (conventionally NAME.nir)")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help="seconds per time step the exported time constants assume (tau = dt / (1 - lam)): 1e-4 "
                        "for snnTorch and SpikingJelly, 1e-3 for Norse; a reader must step at the same dt")
    p.add_argument("--json", default=None, help="also write a JSON summary here (source, output, sha256, nodes)")
    return p


@guard
def main(argv: Sequence[str] | None = None) -> int:
    from sast import model_file
    from sast.checkpoint import load
    from sast.interop import NIRImportError, to_nir
    from sast.runlog import write_json

    args = build_parser().parse_args(argv)
    out = check_writable(args.output)
    if args.json:
        check_writable(args.json)
    model, _ = load(args.model)  # weights_only; a missing, damaged or non-finite checkpoint: one line, exit 2
    try:
        graph = to_nir(model, dt=args.dt)
        size = write_nir(out, graph)
    except ImportError as e:  # the optional nir package: a setting of this machine (exit 2), not a bug
        raise NIRImportError(f"{out}: {e}") from None
    summary = {
        "source": {"kind": SOURCE_CHECKPOINT, "library": CHECKPOINT_LIBRARY,
                   "path": str(Path(args.model).resolve()), "sha256": model_file.sha256(args.model)},
        "output": str(out.resolve()), "sha256": model_file.sha256(out), "bytes": size, "dt": args.dt,
        "reset": model.config.reset, "T": model.config.T, "beta": model.config.beta,
        "nodes": list(graph.nodes), "decoding": "time mean of the readout node's output (metadata 'sast')",
    }
    if args.json:
        write_json(args.json, summary)
    c = model.config
    print(f"{out}: {len(graph.nodes)} nodes ({' -> '.join(graph.nodes)}), dt {args.dt:g} s, "
          f"{c.neuron_summary()} (tau = dt / (1 - lam)), reset {c.reset}, T {c.T}")
    print(f"read it back with: --model {out} --dt {args.dt:g} --reset {c.reset} --data NAME", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
