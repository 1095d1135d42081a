"""Shared machinery of the check command lines: flags, loading, the verdict table, exit codes.

Every ``python -m checks.NAME`` takes ``--model ckpt.pt`` and needs nothing else: the
checkpoint's configuration names the data set and binning, from which a fixed probe
set is drawn (``--batch`` samples of ``--split``, chosen by ``--seed``; see
:func:`checks.load_checkpoint`). ``--model net.nir`` takes another library's network with
the settings a NIR file cannot carry (``--dt``, ``--reset``, ``--data``; ``--beta`` and
``--T`` have defaults: :mod:`sast.model_file`); its run folder is ``net.sast`` beside it.
Exit codes (:mod:`runfolder.exits`, whose boundary :func:`runfolder.guard` wraps every
check's command line):
0 nothing violated (all hold, or assumptions fail, or not applicable), 1 a bound is
violated, 2 bad input or an unusable file (one line on stderr naming it), 70 an
internal error (a bug; traceback), never 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from checks._common import CheckInputError, check_probe  # noqa: F401 (importable from here, as before)
from checks._load import (DEFAULT_PROBE, DTYPES, Loaded, load_checkpoint,  # noqa: F401 (as before)
                          probe_from_split)
from checks._result import CheckResult
from runfolder import EXIT_CODES_EPILOG, INPUT_ERRORS, check_writable, guard  # noqa: F401 (INPUT_ERRORS as before)
from checks import _memory
from sast import model_file, process


def add_common_flags(p: argparse.ArgumentParser, *, batch: int = DEFAULT_PROBE) -> None:
    """The shared flags: --model --data --root --split --batch --seed --device --dtype --json, and a NIR file's
    --dt --reset --beta --T (:func:`sast.model_file.add_model_flags`)."""
    p.add_argument("--model", required=True, help=model_file.MODEL_HELP)
    p.add_argument("--data", default=None,
                   help="data set for the probe (default: the model's training data; required for a .nir)")
    p.add_argument("--root", default=None, help="folder of a real data set (nmnist, dvsgesture)")
    p.add_argument("--split", default="test",
                   help="split the probe set is drawn from (train: the training split less validation; val; test)")
    p.add_argument("--batch", type=int, default=batch, help="probe set size")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe draw and of random starts")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="precision of the estimates")
    p.add_argument("--cache-dir", default=None, help="frame cache folder")
    p.add_argument("--json", default=None, help="also write the result(s) as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory the checks may use, e.g. 4G or 512M (default: half of this machine's, "
                        f"{_memory.format_size(_memory.default_max_memory())}): their per-sample work runs in "
                        f"chunks of at most 1/{_memory.CHUNK_SHARE} of it, and T4 and T5 refuse in one line (exit 2) a probe "
                        "whose Hessian-product graph would not fit (an estimate), naming the --batch that does")
    model_file.add_model_flags(p)


def max_memory(args: argparse.Namespace) -> int:
    """``--max-memory`` in bytes (its default where not given)."""
    return _memory.default_max_memory() if args.max_memory is None else _memory.parse_size(args.max_memory)


def load_from_flags(args: argparse.Namespace, *, record: bool = True) -> Loaded:
    """:func:`checks.load_checkpoint` with the shared flags of :func:`add_common_flags`.

    With ``record`` (what ``checks.all`` gets, which writes checks.json into the run folder), a NIR file's run
    folder ``NAME.sast`` is made a run folder first: config.json with the source, the model and the data
    settings (:func:`sast.model_file.record_source`). A single check writes only its ``--json``, and passes
    ``record=False``.
    """
    loaded = load_checkpoint(args.model, split=args.split, batch=args.batch, seed=args.seed, device=args.device,
                             dtype=args.dtype, data=args.data, root=args.root, cache_dir=args.cache_dir,
                             progress=not args.no_progress, **model_file.model_flags(args))
    if record and loaded.source is not None:
        model_file.record_source(loaded.run_dir, loaded.source, loaded.model.config.to_dict(),
                                 model_file.data_settings(loaded.config), device=str(loaded.device))
    return loaded


def _slack(bound: float | None, estimate: float | None) -> str:
    if bound is None or estimate is None:
        return "-"
    if estimate == 0:
        return "est. = 0"
    ratio = bound / estimate
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.3g}x"


def local_line(r: CheckResult) -> str | None:
    """One line on the local bound: global and local bound, estimate, both slacks, the budget's top factor.

    None where the record has neither a local bound nor a budget (an old record, or --no-local).
    """
    if r.local_bound is None and not r.looseness:
        local = r.details.get("local") if isinstance(r.details, dict) else None
        why = local.get("reason") if isinstance(local, dict) else None
        return f"local bound: - ({why})" if why else None
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    line = (f"global {fmt(r.bound)}, local {fmt(r.local_bound)}, estimate {fmt(r.estimate)}; "
            f"slack {_slack(r.bound, r.estimate)} global, {_slack(r.local_bound, r.estimate)} local")
    if r.local_kind:
        line += f"; {r.local_kind}"
        if r.local_failure_probability is not None:
            line += f" (fails with probability <= {r.local_failure_probability:.2g})"
    steps = [e for e in r.looseness[:-1] if isinstance(e.get("log10_ratio"), (int, float))]
    if steps:
        top = max(steps, key=lambda e: e["log10_ratio"])
        line += f"; top factor: {top['factor']} ({10 ** top['log10_ratio']:.3g}x)"
    local = r.details.get("local") if isinstance(r.details, dict) else None
    premise = local.get("premise_holds_everywhere") if isinstance(local, dict) else None
    if premise is not None:
        line += f"; premise eta <= 1/L_local {'holds' if premise else 'FAILS'} at every logged step"
    if r.local_holds is False:
        line += ("; its premise fails (local value below the estimate)" if r.local_kind == "conditional"
                 else "; BROKEN CERTIFICATE: the local bound lies below what it bounds")
    return line


def format_results(results: Sequence[CheckResult]) -> str:
    """A verdict table: ID, name, status, bound, estimate, slack (bound / estimate); per check a local-bound line."""
    head = f"{'ID':<4} {'check':<22} {'status':<17} {'bound':>11} {'estimate':>11} {'slack':>10}"
    lines = [head, "-" * len(head)]
    for r in results:
        bound = "-" if r.bound is None else f"{r.bound:.4g}"
        est = "-" if r.estimate is None else f"{r.estimate:.4g}"
        slack = _slack(r.bound, r.estimate)
        status = r.status.upper() if r.status == "violated" else r.status
        lines.append(f"{r.id:<4} {r.name[:22]:<22} {status:<17} {bound:>11} {est:>11} {slack:>10}")
        why = r.details.get("reason") if isinstance(r.details, dict) else None
        if why:
            lines.append(f"     {why}")
        if r.converged is False:
            lines.append("     (the estimator did not converge; the estimate is a lower estimate)")
        local = local_line(r)
        if local:
            lines.append(f"     {local}")
    return "\n".join(lines)


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when nothing is violated (all hold, assumptions fail, or not applicable), 1 otherwise."""
    return 1 if any(r.status == "violated" for r in results) else 0


def write_results(path: str | Path, results: Sequence[CheckResult]) -> None:
    from sast.runlog import write_json

    write_json(path, [r.to_json() for r in results])


@guard
def run_cli(
    prog: str,
    description: str,
    run: Callable[..., CheckResult | list[CheckResult]],
    argv: Sequence[str] | None,
    *,
    add_flags: Callable[[argparse.ArgumentParser], None] | None = None,
    options: Callable[[argparse.Namespace, Loaded], dict[str, Any]] | None = None,
    batch: int = DEFAULT_PROBE,
) -> int:
    """The body of every check module's ``main``: parse, load, run, print, write JSON, exit code.

    ``run`` returns one CheckResult, or a list of them (``checks.transfer``: E1 and E2);
    every result is printed in the table and written to ``--json`` (always as a list). Bad
    input, a bad ``--json`` path included (checked before the check runs), is the boundary's
    (:func:`runfolder.guard`): one line, exit 2.
    """
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES_EPILOG)
    add_common_flags(p, batch=batch)
    if add_flags:
        add_flags(p)
    args = p.parse_args(argv)
    budget = max_memory(args)
    process.prepare()  # freed memory kept in the heap; SAST_MALLOC, SAST_NATIVE checked (sast.process)
    loaded = load_from_flags(args, record=False)
    if args.json:
        check_writable(args.json)
    if run.__module__.rsplit(".", 1)[-1] in _memory.CURVATURE_CHECKS:
        _memory.check_fits(loaded.model, len(loaded.probe[1]), budget, prog)
    kwargs = options(args, loaded) if options else {}
    t0 = time.perf_counter()
    with _memory.memory_budget(budget):
        result = run(loaded.model, loaded.probe, seed=args.seed, progress=not args.no_progress, **kwargs)
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    print(f"{args.model}: {len(loaded.probe[1])} probe samples, {args.dtype}, {args.device}, "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(format_results(results))
    if args.json:
        write_results(args.json, results)
    return exit_code(results)
