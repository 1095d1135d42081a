"""Run every check on a checkpoint: a verdict table, and checks.json in its run folder.

    python -m checks.all --model runs/demo/sf/ckpt.pt

The checks, by statement ID: A4 contraction, T2 state bounds, T3 input Lipschitz,
T4 smoothness, T5 SAM first-order error, T6 convergence (from the run's monitor log),
T7 local mechanism, E1/E2 transfer and deployment. Exit codes (:mod:`runfolder.exits`):
0 nothing violated, 1 a bound is violated, 2 bad input or an unusable file (one line
naming it), 70 an internal error.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from checks._cli import add_common_flags, exit_code, format_results, load_from_flags, max_memory, write_results
from checks._budgets import add_local_flag
from checks._common import CheckInputError, declared_needs
from checks._load import Loaded, checkpoint_rho
from checks._result import CheckResult
from checks.constants import model_constants
from checks.local import release_shared, sharing_observations
from checks import _memory, smoothness
from sast import heap, process
from runfolder import CHECKS_FILE, EXIT_CODES_EPILOG, check_writable, guard

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


def from_checkpoint(needs: Sequence[str], loaded: Loaded) -> dict[str, Any]:
    """The keywords that pass a check's declared ``needs`` (``checks._common.KNOWN_NEEDS``) from a checkpoint.

    "rho": the run's rho from the checkpoint's train_config (None, and why, when it is 0
    or absent); "run_dir": the checkpoint's folder.
    """
    out: dict[str, Any] = {}
    for need in needs:
        if need == "rho":
            out["rho"], out["rho_source"] = checkpoint_rho(loaded.ckpt)
        elif need == "run_dir":
            out["run_dir"] = loaded.run_dir
        else:
            raise TypeError(f"checks.all cannot provide {need!r} from a checkpoint")
    return out


def run_all(loaded: Loaded, names: Sequence[str], *, seed: int = 0, progress: bool = True,
            local: bool = True, certificate: dict[str, Any] | None = None) -> list[CheckResult]:
    """Run the named check modules (keys of :data:`CHECKS`) on a loaded checkpoint, in order.

    Each module's ``run(model, probe, seed=..., progress=False, ...)`` gets what its
    ``NEEDS`` declares, from the checkpoint (:func:`from_checkpoint`): T5 the run's rho,
    T6 the run folder; a module whose ``run`` takes ``local`` gets ``local`` (the local
    bounds and looseness budgets of ``checks._budgets``); ``certificate`` (``failure_probability``,
    ``certificate_steps``) goes to a module whose ``run`` takes them (T4's randomized certificate), and
    T6 gets the T4 result computed before it (its local L where the run's log has none), and T5
    T4's Lanczos extremes (the same operator, probe and seed: one Lanczos run, not two). The
    constants of A1-A3 at w are computed once and passed to every check that takes ``constants``, and the
    local bounds of T4 and T5 share one observation of the model (``checks.local.sharing_observations``).
    """
    with sharing_observations():  # T4's and T5's local bounds: one forward pass and one set of Jacobian Grams
        return _run_each(loaded, names, seed=seed, progress=progress, local=local, certificate=certificate)


def _run_each(loaded: Loaded, names: Sequence[str], *, seed: int, progress: bool, local: bool,
              certificate: dict[str, Any] | None) -> list[CheckResult]:
    results: list[CheckResult] = []
    shared: dict[str, Any] = {}  # work done once and handed to every check that takes it
    for i, name in enumerate(tqdm(names, desc="checks", unit="check", disable=not progress, file=sys.stderr)):
        module = importlib.import_module(f"checks.{name}")
        needs = from_checkpoint(declared_needs(module), loaded)
        parameters = inspect.signature(module.run).parameters
        if "local" in parameters:
            needs["local"] = local
        needs.update({k: v for k, v in (certificate or {}).items() if k in parameters})
        if "constants" in parameters:  # A1-A3's constants at w on the probe: the same for every check
            if "constants" not in shared:
                shared["constants"] = model_constants(loaded.model, loaded.probe[0])
            needs["constants"] = shared["constants"]
        if "t4_result" in parameters:  # T4's record: T5 reuses its Lanczos, T6 its local certificate
            needs["t4_result"] = next((r for r in results if r.id == "T4"), None)
        out = module.run(loaded.model, loaded.probe, seed=seed, progress=False, **needs)
        results.extend(out if isinstance(out, list) else [out])
        if not any(n in _memory.CURVATURE_CHECKS for n in names[i + 1:]):
            release_shared()  # no later check observes with Grams: the shared observation is not held under them
        heap.release_freed_memory()  # the next check's peak should not sit on this one's freed temporaries
    return results


@guard
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m checks.all", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    add_common_flags(p)
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(CHECKS)}")
    p.add_argument("--skip", default=None, help="comma-separated checks to leave out")
    p.add_argument("--out", default=None, help="where to write checks.json (default: the checkpoint's run folder)")
    add_local_flag(p)
    smoothness.add_certificate_flags(p)
    args = p.parse_args(argv)
    # bad input, bad output paths included (checked before any check runs), is the boundary's: one line, exit 2
    only, skip = _select(args.only, "--only"), _select(args.skip, "--skip")
    names = [n for n in (only or CHECKS) if n not in skip]
    budget = max_memory(args)
    process.prepare()  # freed memory kept in the heap; SAST_MALLOC, SAST_NATIVE checked (sast.process)
    loaded = load_from_flags(args)
    if any(n in _memory.CURVATURE_CHECKS for n in names):  # before any check runs: one line, not a kill for memory
        _memory.check_fits(loaded.model, len(loaded.probe[1]), budget, "python -m checks.all")
    out = check_writable(Path(args.out) if args.out else loaded.run_dir / CHECKS_FILE)
    if args.json:
        check_writable(args.json)
    certificate = smoothness.certificate_options(args)
    with _memory.memory_budget(budget):
        results = run_all(loaded, names, seed=args.seed, progress=not args.no_progress, local=args.local,
                          certificate=certificate)
    print(format_results(results))
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
