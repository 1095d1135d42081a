"""How the checks' cost grows: time and peak memory of each check against parameters, T and probe size.

    python bench/checks_scale.py --threads 1 --timeout 900 --max-memory 14000   (the README's table)
    python bench/checks_scale.py --only T --checks smoothness,sam_error
    python bench/checks_scale.py --quick                          (tiny nets and T: a smoke run, not a measurement)

The base configuration is a conv net (conv 32, conv 64, pool, conv 128, pool, dense 256) on
synth-gesture frames (2 x 32 x 32, 11 classes; about 0.23M parameters), T = 20, a probe of 64 test
samples, with the gesture defaults of ``sast.train`` (beta 2, init_scale 3; TrainConfig.for_data).
The weights are untrained (drawn with seed 0): the checks' cost depends on the shapes, not on what
the weights learned. One factor varies at a time around the base: parameters (~0.2M, 1M, 5M: every
channel and dense width scaled by one factor, chosen so the count comes closest to the target), T
(10, 20, 40: the frames binned at each T) and probe size (16, 32, 64).

Each configuration runs in a fresh subprocess, which writes the untrained model as a checkpoint
(with the run's train_config), loads it as ``python -m checks.all --model ckpt.pt`` does
(checks._load.load_checkpoint: the probe is real test frames) and runs the checks through
``checks.all.run_all`` (local bounds on, T5 reusing T4's Lanczos run) under the memory budget
``--max-memory``, as ``python -m checks.all --max-memory`` runs them. T6 has no training log to
read here and reports "not applicable" at no cost. Per check it reports CheckResult.seconds, the
process's CPU seconds over the check (with one thread, the work itself: less moved by other work
on a shared machine than wall time) and the peak resident memory (RSS) while the check ran: the
kernel's high-water mark (VmHWM, Linux), reset before each check once the memory freed by the
previous check is handed back to the system. The configuration's peak RSS is the largest mark of
the whole process. A configuration that runs past ``--timeout``, or past ``--max-memory`` (a limit
on the child's data segment, so that an allocation fails in the child instead of the machine
running out), or whose probe checks.all refuses for that budget, is reported as such, with the
checks it finished; the rest of the table still runs.

Per factor, the growth exponent of each check is the least-squares slope of log(seconds) (and of
log(CPU seconds)) on log(factor) over the configurations that finished it (1 = linear; none for a
check that takes under 0.1 s), and that of memory the slope of log(peak RSS - RSS before the
check): the check's own working memory, without the fixed cost of Python, torch and the loaded
data, which would flatten the slope towards 0. Timings depend on the machine and its load: nothing
here asserts a time. ``--out`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = "synth-gesture"
DEFAULT_OUT = Path("runs/bench/checks_scale.json")
EVENT = "CHECKS_SCALE "  # prefix of the child's report lines on stdout
FACTORS = ("params", "T", "probe")
DETAILS = ("hvp_method", "iterations", "curvature_source")  # what a check's details say of its own work
MIN_SECONDS = 0.1  # times below this are too short to fit a growth exponent on (T6 here: nothing to read)
MIN_WORKING_MB = 20.0  # likewise for working memory


@dataclass(frozen=True)
class Plan:
    """The base configuration and the values each factor takes around it (``params``: targets, None: the base)."""

    layers: tuple[str, ...]
    T: int
    probe: int
    params: tuple[float | None, ...]
    Ts: tuple[int, ...]
    probes: tuple[int, ...]
    limit: int | None = None  # samples per split (quick runs: fewer recordings to generate)


FULL = Plan(layers=("conv:32:3:2", "conv:64:3:2", "pool:2", "conv:128:3:1", "pool:2", "dense:256"), T=20, probe=64,
            params=(None, 1e6, 5e6), Ts=(10, 20, 40), probes=(16, 32, 64))
QUICK = Plan(layers=("conv:4:3:2", "pool:2", "dense:16"), T=3, probe=4, params=(None, 2e4), Ts=(2, 3),
             probes=(2, 4), limit=16)


@dataclass
class Config:
    """One measured configuration: a model, a T and a probe size, and the factor values it stands for."""

    name: str
    layers: list[str]
    n_params: int
    T: int
    probe: int
    factors: list[str] = field(default_factory=list)  # the factors whose series it belongs to


# --- the configurations ---------------------------------------------------------------------------

def count_params(layers: Sequence[str], input_shape: tuple[int, ...], num_classes: int) -> int:
    """The SNN's parameter count (weights and biases of every layer and the readout), from the layer plan."""
    from sast.model import parse_layers

    plan = parse_layers(list(layers), tuple(input_shape))
    n = 0
    for spec in plan:
        if spec.kind == "conv":
            n += spec.size * (spec.in_shape[0] * spec.kernel ** 2 + 1)
        elif spec.kind == "dense":
            n += spec.size * (math.prod(spec.in_shape) + 1)
    return n + num_classes * (math.prod(plan[-1].out_shape) + 1)


def scale_widths(layers: Sequence[str], k: float) -> list[str]:
    """The layers with every conv channel count and dense width multiplied by ``k`` (rounded, at least 1)."""
    out = []
    for spec in layers:
        kind, *nums = spec.split(":")
        if kind in ("conv", "dense"):
            nums[0] = str(max(1, round(int(nums[0]) * k)))
        out.append(":".join([kind, *nums]))
    return out


def layers_for(target: float, layers: Sequence[str], input_shape: tuple[int, ...], num_classes: int) -> list[str]:
    """The width scaling of ``layers`` whose parameter count is closest (in ratio) to ``target``."""
    candidates = (scale_widths(layers, k / 100) for k in range(25, 2001))
    return min(candidates, key=lambda ls: abs(math.log(count_params(ls, input_shape, num_classes) / target)))


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def configurations(plan: Plan, factors: Sequence[str], input_shape: tuple[int, ...], num_classes: int) -> list[Config]:
    """The base and every one-factor variation of it that ``factors`` asks for, each configuration once."""
    base_layers = list(plan.layers)
    n_base = count_params(base_layers, input_shape, num_classes)
    wanted: list[tuple[str, list[str], int, int]] = []  # (factor, layers, T, probe)
    for factor in factors:
        if factor == "params":
            for target in plan.params:
                ls = base_layers if target is None else layers_for(target, base_layers, input_shape, num_classes)
                wanted.append((factor, ls, plan.T, plan.probe))
        elif factor == "T":
            wanted += [(factor, base_layers, T, plan.probe) for T in plan.Ts]
        else:
            wanted += [(factor, base_layers, plan.T, b) for b in plan.probes]
    configs: dict[tuple, Config] = {}
    for factor, ls, T, probe in wanted:
        key = (tuple(ls), T, probe)
        if key not in configs:
            n = count_params(ls, input_shape, num_classes)
            if ls != base_layers:
                name = f"params {_count(n)}"
            elif T != plan.T:
                name = f"T {T}"
            elif probe != plan.probe:
                name = f"probe {probe}"
            else:
                name = f"base ({_count(n_base)}, T {plan.T}, probe {plan.probe})"
            configs[key] = Config(name, list(ls), n, T, probe)
        if factor not in configs[key].factors:
            configs[key].factors.append(factor)
    # the base (in every series) first where several factors vary, then the cheaper configurations before the dearer
    return sorted(configs.values(), key=lambda c: (len(c.factors) < len(factors), c.n_params * c.T * c.probe))


# --- the child: one configuration, in a fresh process -------------------------------------------

def _status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


_PEAK_BEFORE_RESETS_MB = [0.0]  # the largest high-water mark read before it was reset (a reset also lowers ru_maxrss)


def maxrss_mb() -> float:
    """This process's peak RSS so far, in MiB, across the resets of :func:`_release_and_reset_peak`."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    hwm = _status_kb("VmHWM")
    return max(r / 2 ** 20 if sys.platform == "darwin" else r / 1024, (hwm or 0) / 1024, _PEAK_BEFORE_RESETS_MB[0])


def cpu_seconds() -> float:
    """User and system CPU seconds of this process so far (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def _release_and_reset_peak() -> bool:
    """Hand freed memory back to the system, then reset the kernel's peak-RSS mark (Linux); False where it cannot."""
    from sast import heap

    _PEAK_BEFORE_RESETS_MB[0] = maxrss_mb()
    heap.release_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _emit(event: str, **data: Any) -> None:
    print(EVENT + json.dumps({"event": event, **data}), flush=True)


@contextmanager
def _metered(names: Sequence[str]) -> Iterator[None]:
    """Wrap each check module's ``run`` so that every call reports its seconds and peak RSS (one line each).

    ``functools.wraps`` keeps the signature that ``checks.all.run_all`` reads to pass each check what it takes.
    """
    originals: dict[Any, Callable] = {}

    def metered(module: Any, run: Callable) -> Callable:
        @functools.wraps(run)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            resettable = _release_and_reset_peak()
            before = rss_mb()
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            out = run(*args, **kwargs)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            results = out if isinstance(out, list) else [out]
            peak_kb = _status_kb("VmHWM") if resettable else None
            details = {k: r.details[k] for r in results for k in DETAILS if k in (r.details or {})}
            _emit("check", check=module.__name__.rsplit(".", 1)[-1], ids=[r.id for r in results], details=details,
                  seconds=max(r.seconds for r in results), wall_seconds=wall, cpu_seconds=cpu,
                  n_products=sum(r.n_products for r in results), statuses=[r.status for r in results],
                  rss_before_mb=before, peak_mb=None if peak_kb is None else peak_kb / 1024, maxrss_mb=maxrss_mb())
            return out

        return wrapper

    try:
        for name in names:
            module = importlib.import_module(f"checks.{name}")
            originals[module] = module.run
            module.run = metered(module, module.run)
        yield
    finally:
        for module, run in originals.items():
            module.run = run


def child(spec: dict[str, Any]) -> int:
    """Measure one configuration (``spec``: layers, T, probe, checks, threads, limit, cache_dir, max_memory_mb).

    Reports on stdout, one line per event (loaded, each check, done or error).
    """
    try:
        import torch

        from checks import _memory
        from checks._load import load_checkpoint
        from checks.all import run_all
        from sast import checkpoint, heap
        from sast.data.registry import get_spec
        from sast.model import SNN
        from sast.train.config import TrainConfig
        from sast.train.splits import load_split, model_config

        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        heap.retain_freed_memory()  # as python -m checks.all runs (sast.heap)
        t0 = time.perf_counter()
        cfg = TrainConfig.for_data(DATA, layers=spec["layers"], T=spec["T"], limit=spec["limit"],
                                   cache_dir=spec["cache_dir"])
        test = load_split(cfg, "test", progress=False)
        data = SimpleNamespace(input_shape=tuple(test.frames.shape[2:]), num_classes=get_spec(DATA).num_classes)
        torch.manual_seed(0)
        model = SNN(model_config(cfg, data))  # the model sast.train would build (it reads those two fields)
        del test
        with tempfile.TemporaryDirectory(prefix="checks-scale-") as tmp:
            path = Path(tmp) / "ckpt.pt"
            checkpoint.save(path, model, train_config=cfg.to_dict())
            device = spec.get("device", "cpu")
            loaded = load_checkpoint(path, batch=spec["probe"], seed=0, device=device)
            _emit("loaded", n_params=sum(p.numel() for p in loaded.model.parameters()),
                  probe_shape=list(loaded.probe[0].shape), input_density=float(loaded.probe[0].mean()),
                  threads=torch.get_num_threads(), seconds=time.perf_counter() - t0, rss_mb=rss_mb())
            # as python -m checks.all --max-memory does: the checks' memory budget, and its one refusal up front
            budget = spec["max_memory_mb"] * 2 ** 20 if spec["max_memory_mb"] else _memory.default_max_memory()
            if any(n in _memory.CURVATURE_CHECKS for n in spec["checks"]):
                _memory.check_fits(loaded.model, spec["probe"], budget, "checks.all")
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            with _memory.memory_budget(budget), _metered(spec["checks"]):
                run_all(loaded, spec["checks"], progress=False)
            gpu = ({"gpu_peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20} if device.startswith("cuda") else {})
            _emit("done", seconds=time.perf_counter() - t0, cpu_seconds=cpu_seconds() - cpu0, maxrss_mb=maxrss_mb(),
                  **gpu)
        return 0
    except BaseException as e:  # noqa: BLE001 (out of memory among them: say what happened, then stop)
        text = f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]
        oom = isinstance(e, MemoryError) or "allocate memory" in str(e)
        refused = type(e).__name__ == "CheckInputError"  # checks.all's refusal of a probe that would not fit
        _emit("error", kind="out of memory" if oom else "refused" if refused else "error", message=text,
              maxrss_mb=maxrss_mb())
        return 3


# --- the parent: run each configuration, collect, fit, print ------------------------------------

def _limit_data(mb: int | None) -> Callable[[], None] | None:
    if not mb:
        return None
    limit = mb * 2 ** 20

    def apply() -> None:  # in the child, before it starts: an allocation past the limit fails there
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


def measure(config: Config, *, checks: Sequence[str], threads: int, timeout: float, max_memory_mb: int | None,
            limit: int | None, cache_dir: str | None, device: str = "cpu", log=sys.stderr) -> dict[str, Any]:
    """Run one configuration in a fresh subprocess; its report, with ``status`` ok, timeout, out of memory or error."""
    spec = {"layers": config.layers, "T": config.T, "probe": config.probe, "checks": list(checks),
            "threads": threads, "limit": limit, "cache_dir": cache_dir, "max_memory_mb": max_memory_mb,
            "device": device}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    events: list[dict[str, Any]] = []

    def read(stream) -> None:
        for line in stream:
            if line.startswith(EVENT):
                ev = json.loads(line[len(EVENT):])
                events.append(ev)
                if ev["event"] == "check":
                    print(f"   {'/'.join(ev['ids']):<6} {ev['seconds']:8.1f} s  {ev['cpu_seconds']:8.1f} s CPU  "
                          f"peak {ev['peak_mb'] or 0:7.0f} MB",
                          file=log, flush=True)

    print(f"== {config.name}: {config.n_params} parameters, T {config.T}, probe {config.probe}", file=log, flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                preexec_fn=_limit_data(max_memory_mb))
        reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            timed_out = True
        reader.join(timeout=10)
        err.seek(0)
        stderr_tail = err.read()[-2000:]
    out: dict[str, Any] = {**asdict(config), "wall_seconds": time.perf_counter() - t0, "returncode": proc.returncode,
                           "checks": {ev["check"]: ev for ev in events if ev["event"] == "check"}}
    for ev in events:
        if ev["event"] == "loaded":
            out.update(load_seconds=ev["seconds"], rss_loaded_mb=ev["rss_mb"], threads=ev["threads"],
                       input_density=ev["input_density"])
        elif ev["event"] == "done":
            out.update(total_seconds=ev["seconds"], total_cpu_seconds=ev["cpu_seconds"], peak_rss_mb=ev["maxrss_mb"])
            if "gpu_peak_mb" in ev:
                out["gpu_peak_mb"] = ev["gpu_peak_mb"]
        elif ev["event"] == "error":
            out.update(status=ev["kind"], error=ev["message"], peak_rss_mb=ev["maxrss_mb"])
    if timed_out:
        out["status"] = f"timeout ({timeout:g} s)"
    elif "status" not in out:
        rc = proc.returncode
        out["status"] = ("ok" if rc == 0 else f"killed (signal {-rc}{'; out of memory?' if rc == -9 else ''})"
                         if rc < 0 else f"error (exit {rc})")
    if out["status"] != "ok":
        out.setdefault("peak_rss_mb", max((c["maxrss_mb"] for c in out["checks"].values()), default=None))
        out["stderr_tail"] = stderr_tail
        print(f"   {out['status']}" + (f": {out['error']}" if "error" in out else ""), file=log, flush=True)
    return out


def slope(xs: Sequence[float], ys: Sequence[float | None], floor: float = 0.0) -> float | None:
    """The least-squares slope of log y on log x over the points with y > ``floor`` (None: fewer than two x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y is not None and y > max(floor, 0)]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((a - mx) * (b - my) for a, b in pts) / sum((a - mx) ** 2 for a, _ in pts)


FACTOR_VALUE = {"params": lambda r: r["n_params"], "T": lambda r: r["T"], "probe": lambda r: r["probe"]}


def _working_mb(c: dict[str, Any]) -> float | None:
    if c.get("peak_mb") is None or c.get("rss_before_mb") is None:
        return None
    return c["peak_mb"] - c["rss_before_mb"]


def exponents(rows: Sequence[dict[str, Any]], factors: Sequence[str], checks: Sequence[str]) -> dict[str, Any]:
    """Per factor, per check and for the total: the growth exponents of time, CPU time and working memory."""
    out: dict[str, Any] = {}
    for factor in factors:
        series = [r for r in rows if factor in r["factors"]]
        value = FACTOR_VALUE[factor]
        fits: dict[str, Any] = {}
        for name in checks:
            done = [r for r in series if name in r["checks"]]
            xs = [value(r) for r in done]
            fits[name] = {"time": slope(xs, [r["checks"][name]["seconds"] for r in done], MIN_SECONDS),
                          "cpu": slope(xs, [r["checks"][name]["cpu_seconds"] for r in done], MIN_SECONDS),
                          "memory": slope(xs, [_working_mb(r["checks"][name]) for r in done], MIN_WORKING_MB),
                          "points": len(done)}
        done = [r for r in series if r["status"] == "ok"]
        xs = [value(r) for r in done]
        fits["total"] = {"time": slope(xs, [r["total_seconds"] for r in done]),
                         "cpu": slope(xs, [r["total_cpu_seconds"] for r in done]),
                         "memory": slope(xs, [r["peak_rss_mb"] for r in done]), "points": len(done)}
        out[factor] = fits
    return out


def _label(check: str) -> str:
    from checks.all import CHECKS

    return "/".join(CHECKS[check])


def format_tables(rows: Sequence[dict[str, Any]], fits: dict[str, Any], checks: Sequence[str]) -> str:
    """The time table, the memory table and the exponents, as plain text."""
    lines: list[str] = []

    def unfinished(r: dict[str, Any], check: str) -> str:
        """"-" for a check that never started; for the one running when the configuration stopped, why it stopped."""
        running = next((c for c in checks if c not in r["checks"]), None)
        if check != running:
            return "-"
        return {"timeout": "t/o", "out of memory": "oom", "refused": "refused"}.get(r["status"].split(" (")[0], "err")

    def seconds(r: dict[str, Any], check: str) -> str:
        c = r["checks"].get(check)
        return f"{c['seconds']:.1f}" if c else unfinished(r, check)

    def peak(r: dict[str, Any], check: str) -> str:
        c = r["checks"].get(check)
        return (f"{c['peak_mb']:.0f}" if c.get("peak_mb") is not None else "?") if c else unfinished(r, check)

    def total(r: dict[str, Any]) -> str:
        return f"{r['total_seconds']:.1f}" if r["status"] == "ok" else "-"

    def peak_rss(r: dict[str, Any]) -> str:
        if r.get("peak_rss_mb") is None:
            return "-"
        return f"{r['peak_rss_mb']:.0f}" if r["status"] == "ok" else f">={r['peak_rss_mb']:.0f}"

    def table(title: str, cell: Callable[[dict[str, Any], str], str],
              tail: Sequence[tuple[str, Callable[[dict[str, Any]], str]]]) -> None:
        lines.append(f"\n{title}")
        lines.append(f"  {'config':<28}{'n_params':>10}{'T':>4}{'probe':>6}" + "".join(f"{_label(c):>8}" for c in checks)
                     + "".join(f"{head:>10}" for head, _ in tail) + "  status")
        for r in rows:
            lines.append(f"  {r['name']:<28}{r['n_params']:>10}{r['T']:>4}{r['probe']:>6}"
                         + "".join(f"{cell(r, c):>8}" for c in checks)
                         + "".join(f"{fn(r):>10}" for _, fn in tail) + f"  {r['status']}")

    table("seconds per check (CheckResult.seconds), total (checks.all.run_all) and the process's peak RSS (MB)",
          seconds, [("total s", total), ("peak MB", peak_rss)])
    table("peak RSS while each check ran (MB; the RSS before it, the loaded model and probe included)",
          peak, [("process", peak_rss)])
    lines.append("\ngrowth exponents: slope of log(seconds), of log(CPU seconds) and of log(working memory = peak RSS "
                 "- RSS before the check) on log(factor); 1 = linear; total: run_all's and the process's peak RSS")
    lines.append(f"  {'check':<8}" + "".join(f"{f + ' time':>13}{'cpu':>6}{'mem':>6}" for f in fits))

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for name in [*checks, "total"]:
        label = "total" if name == "total" else _label(name)
        lines.append(f"  {label:<8}" + "".join(f"{fmt(fit[name]['time']):>13}{fmt(fit[name]['cpu']):>6}"
                                                f"{fmt(fit[name]['memory']):>6}" for fit in fits.values()))
    return "\n".join(lines)


def _mem_available_mb() -> int | None:
    try:
        m = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) // 1024 if m else None


def _prepare_frames(plan: Plan, Ts: Sequence[int], cache_dir: str | None) -> tuple[tuple[int, ...], int]:
    """Bin (and cache) the test frames at every T first, so no configuration's timeout pays for it;
    the frames' input shape and the number of classes."""
    from sast.data import frame_dataset

    ds = None
    for T in sorted(set(Ts) | {plan.T}):
        t0 = time.perf_counter()
        ds = frame_dataset(DATA, "test", T, cache_dir=cache_dir, limit=plan.limit, progress=False)
        print(f"frames at T {T}: {tuple(ds.frames.shape)} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return tuple(ds.input_shape), int(ds.num_classes)


def main(argv: list[str] | None = None) -> int:
    from checks.all import CHECKS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny nets, T and probes: a smoke run, not a measurement")
    p.add_argument("--only", default=",".join(FACTORS), help=f"comma-separated factors to vary: {', '.join(FACTORS)}")
    p.add_argument("--checks", default=",".join(CHECKS), help="comma-separated check modules (keys of checks.all.CHECKS)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per configuration (its subprocess)")
    p.add_argument("--max-memory", type=int, default=None,
                   help="MB per configuration: the checks' budget (python -m checks.all --max-memory) and a limit on "
                        "its data segment (default: 80%% of the memory available at start; 0: no limit, and the "
                        "checks' default budget)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each configuration (0: torch's default)")
    p.add_argument("--cache-dir", default=None, help="frame cache (default: sast's)")
    p.add_argument("--device", default="cpu", help="where the checks run: cpu, cuda or cuda:N (the figures then also "
                                                   "give the GPU's peak allocated memory)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="the JSON of every figure")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(json.loads(args.child))
    factors = [f.strip() for f in args.only.split(",") if f.strip()]
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    bad = [f for f in factors if f not in FACTORS] + [c for c in checks if c not in CHECKS]
    if bad or not factors or not checks:
        p.error(f"unknown or missing factor or check: {', '.join(bad) or '(none given)'}; "
                f"factors: {', '.join(FACTORS)}; checks: {', '.join(CHECKS)}")
    checks = [c for c in CHECKS if c in checks]  # run_all's order (T5 after T4, whose Lanczos it reuses)
    max_memory = args.max_memory
    if max_memory is None:
        available = _mem_available_mb()
        max_memory = int(0.8 * available) if available else 0
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    input_shape, num_classes = _prepare_frames(plan, plan.Ts if "T" in factors else [], args.cache_dir)
    configs = configurations(plan, factors, input_shape, num_classes)
    rows = [measure(c, checks=checks, threads=args.threads, timeout=args.timeout, max_memory_mb=max_memory,
                    limit=plan.limit, cache_dir=args.cache_dir, device=args.device) for c in configs]
    fits = exponents(rows, factors, checks)
    print(format_tables(rows, fits, checks))
    from bench._common import environment, write_json

    env = environment()
    env.update(threads=args.threads or None, max_memory_mb=max_memory or None, load_average_start=load0,
               device=args.device)
    write_json(args.out, {"quick": args.quick, "plan": asdict(plan), "data": DATA, "checks": checks,
                          "factors": factors, "timeout_s": args.timeout, "environment": env, "configs": rows,
                          "exponents": fits, "seconds": time.perf_counter() - started})
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
