"""Run every check on a checkpoint: a verdict table, and checks.json in its run folder.

    python -m checks.all --model runs/demo/sf/ckpt.pt

The checks, by statement ID: A4 contraction, T2 state bounds, T3 input Lipschitz,
T4 smoothness, T5 SAM first-order error, T6 convergence (from the run's monitor log),
T7 local mechanism, E1/E2 transfer and deployment. Exit codes: 0 nothing violated,
1 a bound is violated, 2 bad input.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from checks._cli import CheckInputError, add_common_flags, exit_code, format_results, load, write_results
from checks._result import CheckResult, make_result
from sast import checkpoint

# module name -> statement IDs it reports, in the order of THEORY.md's table
CHECKS: dict[str, tuple[str, ...]] = {
    "contraction": ("A4",),
    "state_bounds": ("T2",),
    "lipschitz": ("T3",),
    "smoothness": ("T4",),
    "sam_error": ("T5",),
    "convergence": ("T6",),
    "mechanism": ("T7",),
    "transfer": ("E1", "E2"),
}


def _select(names: str | None, flag: str) -> list[str]:
    if not names:
        return []
    out = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in CHECKS:
            close = difflib.get_close_matches(name, CHECKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CheckInputError(f"{flag}: unknown check {name!r}{hint}; known: {', '.join(CHECKS)}")
        out.append(name)
    return out


def run_all(loaded, names: Sequence[str], *, seed: int = 0, progress: bool = True) -> list[CheckResult]:
    """Run the named check modules on a loaded model and probe; T6 reads the run folder."""
    results: list[CheckResult] = []
    for name in tqdm(names, desc="checks", unit="check", disable=not progress, file=sys.stderr):
        module = importlib.import_module(f"checks.{name}")
        if name == "convergence":
            try:
                out = module.run_folder(loaded.run_dir, seed=seed)
            except CheckInputError as e:  # no monitor log: T6 cannot be assessed, say why
                out = make_result("T6", "convergence", bound=None, estimate=None, seed=seed,
                                  details={"reason": str(e)})
        elif name == "sam_error":  # at the run's own rho
            rho, source = module.rho_from_checkpoint(loaded.ckpt)
            out = module.run(loaded.model, loaded.probe, seed=seed, progress=False, rho=rho, rho_source=source)
        else:
            out = module.run(loaded.model, loaded.probe, seed=seed, progress=False)
        results.extend(out if isinstance(out, list) else [out])
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m checks.all", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                epilog="Exit codes: 0 nothing violated, 1 a bound is violated, 2 bad input.")
    add_common_flags(p)
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(CHECKS)}")
    p.add_argument("--skip", default=None, help="comma-separated checks to leave out")
    p.add_argument("--out", default=None, help="where to write checks.json (default: the checkpoint's run folder)")
    args = p.parse_args(argv)
    try:
        only, skip = _select(args.only, "--only"), _select(args.skip, "--skip")
        names = [n for n in (only or CHECKS) if n not in skip]
        loaded = load(args)
        results = run_all(loaded, names, seed=args.seed, progress=not args.no_progress)
    except (CheckInputError, ValueError, checkpoint.CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_results(results))
    out = Path(args.out) if args.out else loaded.run_dir / "checks.json"
    write_results(out, results)
    if args.json:
        write_results(args.json, results)
    print(f"checks.json: {out}", file=sys.stderr)
    violated = [r.id for r in results if r.status == "violated"]
    if violated:
        print(f"VIOLATED: {', '.join(violated)}", file=sys.stderr)
    return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
