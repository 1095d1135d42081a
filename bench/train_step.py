"""One SGD training step of the same SNN in this project (plain and fast path), snnTorch and SpikingJelly.

    python bench/train_step.py                      (the demo network, batch 128, CPU)
    python bench/train_step.py --conv               (the conv network)
    python bench/train_step.py --device cuda --batch 1024 --compile

Every contender computes the same function: the LIF SNN of THEORY.md in smooth mode
(sig_beta spikes in the forward pass), zero reset, time-mean readout, mean cross-entropy,
then one plain SGD step. Before timing, the script checks on a float64 copy that the forward
outputs agree and says how far each library's gradient is from the exact one (snnTorch's
Leaky detaches its reset signal, so its gradient drops the d(reset)/du term; SpikingJelly's
LIFNode with detach_reset=False is exact). The GEMM floor is the dense products alone:
each layer's forward product and weight gradient, the input gradient of every layer after
the first, and the readout's products, on tensors made beforehand; a conv layer's two
gradients in one call (as autograd runs them) and in the layout the fast path convolves in
(channels-last on a CPU: the faster one there; ``gemm_floor(layout="contiguous")`` gives
torch's default layout). Ratios are to the floor,
paired by round (bench/_common.py). The recurrence between the products is memory-bound: a
second table gives ratios to ``floor+stream``, the GEMM floor plus ``STREAM_PASSES`` passes over
every layer's (B, T, n) state, the traffic no implementation of the step avoids.

Contenders: ``sast-plain`` (layer by layer, one matmul for all T, the plain recurrence),
``sast-fast`` (the default: sparse first-layer products, one autograd node for the
recurrence, run by sast.native's compiled loops where they build), ``sast-fast-torch-ops``
(the same with the recurrence and pooling in torch ops, ``SAST_NATIVE=off``),
``sast-fast-contiguous`` (the same with the conv layers in torch's default layout instead of
channels-last), ``sast-fast-dense`` (the fast recurrence with a dense first layer),
``snntorch`` (Leaky, a loop over time steps as in its tutorials), ``spikingjelly``
(LIFNode, multi-step mode, T-first input prepared beforehand), and with ``--compile``
``sast-compiled`` (torch.compile of the plain path).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sast import _fast, heap, native  # noqa: E402
from bench._common import (  # noqa: E402
    CONV_BATCH,
    CONV_INPUT,
    CONV_LAYERS,
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
    write_json,
)
from sast.model import SNN  # noqa: E402

LR = 1e-4  # small, so that the networks stay alike over the timed steps (all share parameters)


# --------------------------------------------------------------------------- the same network elsewhere


def _library_layers(model: SNN, a: torch.Tensor, spec) -> torch.Tensor:
    """The linear map of one spiking layer on one time step's input a (B, ...) (shared parameters)."""
    layer = model.layers[spec.index]
    return layer(a.flatten(1)) if spec.kind == "dense" else layer(a)


class SnnTorchNet(nn.Module):
    """The SNN as snnTorch users write it: ``snn.Leaky`` per layer, a Python loop over time steps.

    Leaky(beta=lam, threshold=theta, reset_mechanism="zero", spike_grad=sig_beta) computes
    mem_t = lam (1 - r_t) mem_{t-1} + I_t, spk_t = sig_beta(mem_t - theta), with the reset
    r_t = sig_beta(mem_{t-1} - theta) = spk_{t-1} *detached* (snnTorch's mem_reset): the forward is
    THEORY.md's zero reset, the gradient omits the reset's dependence on mem.
    """

    def __init__(self, model: SNN) -> None:
        import snntorch as snn

        super().__init__()
        cfg = model.config
        self.model = model  # holds the shared parameters
        beta = cfg.beta
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=cfg.lam, threshold=cfg.theta, reset_mechanism=cfg.reset,
                      spike_grad=lambda v: torch.sigmoid(beta * v))
            for _ in model.spiking_specs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model, T = self.model, x.shape[1]
        mems: list[torch.Tensor | None] = [None] * len(self.lifs)
        total = 0
        for t in range(T):
            a = x[:, t]
            for spec in model.plan:
                if spec.kind == "pool":
                    a = F.avg_pool2d(a, spec.kernel)
                elif spec.kind == "flatten":
                    a = a.flatten(1)
                else:
                    cur = _library_layers(model, a, spec)
                    mem = mems[spec.index]
                    a, mems[spec.index] = self.lifs[spec.index](cur, torch.zeros_like(cur) if mem is None else mem)
            total = total + a.flatten(1)
        return model.readout(total / T)


class SpikingJellyNet(nn.Module):
    """The SNN in SpikingJelly: multi-step LIFNode layers on T-first input (T, B, ...).

    LIFNode(tau=1/(1 - lam), decay_input=False, v_reset=0, detach_reset=False) with
    surrogate.Sigmoid(alpha=beta, spiking=False) charges H_t = V_{t-1} - V_{t-1}/tau + X_t,
    fires S_t = sig_beta(H_t - theta) and resets V_t = H_t (1 - S_t): THEORY.md's zero reset with
    u_t = H_t, gradient through the reset included. Its soft reset (v_reset=None) subtracts theta
    before the leak, lam theta s, which is not THEORY.md's subtract reset: zero reset only.
    """

    def __init__(self, model: SNN) -> None:
        from spikingjelly.activation_based import neuron, surrogate

        super().__init__()
        cfg = model.config
        if cfg.reset != "zero":
            raise ValueError("SpikingJelly's soft reset differs from THEORY.md's subtract reset; use reset='zero'")
        self.model = model
        self.nodes = nn.ModuleList(
            neuron.LIFNode(tau=1.0 / (1.0 - cfg.lam), decay_input=False, v_threshold=cfg.theta, v_reset=0.0,
                           surrogate_function=surrogate.Sigmoid(alpha=cfg.beta, spiking=False), detach_reset=False,
                           step_mode="m")
            for _ in model.spiking_specs
        )

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """x_seq: (T, B, ...) frames."""
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        model = self.model
        T, B = x_seq.shape[:2]
        a = x_seq
        for spec in model.plan:
            if spec.kind == "pool":
                a = F.avg_pool2d(a.flatten(0, 1), spec.kernel).unflatten(0, (T, B))
            elif spec.kind == "flatten":
                a = a.flatten(2)
            else:
                layer = model.layers[spec.index]
                cur = layer(a.flatten(2)) if spec.kind == "dense" else layer(a.flatten(0, 1)).unflatten(0, (T, B))
                a = self.nodes[spec.index](cur)
        return model.readout(a.flatten(2).mean(0))


# --------------------------------------------------------------------------- the GEMM floor


def gemm_floor(model: SNN, x: torch.Tensor, layout: str = "fast") -> Callable[[], None]:
    """The dense products of one training step alone, on tensors made here (see the module docstring).

    ``layout``: "fast", the conv layers' tensors in the layout the fast path convolves in (channels-last on a CPU
    where the compiled loops run: the faster products there, so the stricter floor); "contiguous", torch's
    default layout."""
    with torch.no_grad():
        _, trace = model(x, return_trace=True, fast=False)
    B, T = x.shape[:2]
    inputs = [x.to(model.readout.weight.dtype)] + [tr.s for tr in trace[:-1]]
    ops: list[Callable[[], Any]] = []
    for spec, a_in in zip(model.spiking_specs, inputs):
        layer = model.layers[spec.index]
        w = layer.weight.detach()
        # the input this layer sees (pooling folded in by running the plan's pools on the spikes)
        a = a_in
        for k in spec.pools_before:
            a = F.avg_pool2d(a.flatten(0, 1), k).unflatten(0, (B, T))
        first = spec.index == 0
        if spec.kind == "dense":
            a2 = a.reshape(B * T, -1).contiguous()
            g = torch.randn(B * T, w.shape[0], dtype=w.dtype, device=w.device)
            ops.append(lambda a2=a2, w=w: a2 @ w.t())
            ops.append(lambda a2=a2, g=g: g.t() @ a2)
            if not first:
                ops.append(lambda g=g, w=w: g @ w)
        else:
            a4 = a.flatten(0, 1).contiguous()
            if layout == "fast":  # the layout the fast path convolves in (channels-last on a CPU, sast._fast)
                a4 = _fast.conv_input(a4)
            out = F.conv2d(a4, w, stride=spec.stride, padding=spec.padding)
            g = torch.randn_like(out)  # in out's layout
            ops.append(lambda a4=a4, w=w, s=spec: F.conv2d(a4, w, stride=s.stride, padding=s.padding))
            # both gradients in one call, as autograd's ConvolutionBackward runs them (two calls would pass over
            # the input twice: a looser floor)
            mask = [not first, True, False]
            ops.append(lambda a4=a4, g=g, w=w, s=spec, mask=mask: torch.ops.aten.convolution_backward(
                g, a4, w, None, [s.stride] * 2, [s.padding] * 2, [1, 1], False, [0, 0], 1, mask))
    wo = model.readout.weight.detach()
    feats = trace[-1].s.flatten(2).mean(1)
    gz = torch.randn(B, wo.shape[0], dtype=wo.dtype, device=wo.device)
    ops += [lambda: feats @ wo.t(), lambda: gz.t() @ feats, lambda: gz @ wo]

    def floor() -> None:
        for op in ops:
            op()

    return floor


STREAM_PASSES = 7
"""Passes over each spiking layer's (B, T, n) state that a training step cannot avoid: the forward reads
the currents I and writes u and s (saved for the backward); the backward reads u, s and the incoming
gradient of s and writes the gradient of I. A fused recurrence still streams these 7 x 4 bytes per
neuron and step through memory, at the machine's bandwidth, besides the GEMMs."""


def stream_floor(model: SNN, x: torch.Tensor) -> Callable[[], None]:
    """The LIF recurrence's unavoidable memory traffic alone: per spiking layer, 3 copies and 1 sum of a
    (B, T, n) tensor (STREAM_PASSES passes), on tensors made here."""
    B, T = x.shape[:2]
    pairs = [(torch.rand(B, T, spec.width, dtype=model.readout.weight.dtype, device=x.device),
              torch.empty(B, T, spec.width, dtype=model.readout.weight.dtype, device=x.device))
             for spec in model.spiking_specs]

    def stream() -> None:
        for src, dst in pairs:
            for _ in range(3):
                dst.copy_(src)
            dst.sum()

    return stream


def bandwidth_floor(model: SNN, x: torch.Tensor) -> Callable[[], None]:
    """The GEMM floor and the stream floor, one after the other: what a step that fuses the recurrence
    into the fewest passes over memory would still cost (the reference for the memory-bound part)."""
    gemm, stream = gemm_floor(model, x), stream_floor(model, x)

    def both() -> None:
        gemm()
        stream()

    return both


# --------------------------------------------------------------------------- steps and checks


def sgd_step_fn(forward: Callable[[torch.Tensor], torch.Tensor], params: list[nn.Parameter], x: torch.Tensor,
                y: torch.Tensor) -> Callable[[], float]:
    """One plain SGD step (forward, mean cross-entropy, backward, update), the same for every contender."""
    opt = torch.optim.SGD(params, lr=LR)

    def step() -> float:
        loss = F.cross_entropy(forward(x), y)
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        return float(loss.detach())

    return step


def _with_setting(choice: str, step: Callable[[], float]) -> Callable[[], float]:
    """``step`` under SAST_NATIVE=choice (forward and backward: the setting is read at every op of the fast path)."""
    def run() -> float:
        with native.setting(choice):
            return step()

    return run


def _without_channels_last(step: Callable[[], float]) -> Callable[[], float]:
    """``step`` with the fast path's conv layers in torch's default layout (``sast._fast.CONV_CHANNELS_LAST``)."""
    def run() -> float:
        _fast.CONV_CHANNELS_LAST = False
        try:
            return step()
        finally:
            _fast.CONV_CHANNELS_LAST = True

    return run


def contenders(model: SNN, x: torch.Tensor, *, libraries: bool = True, compile: bool = False
               ) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> forward function taking the (B, T, ...) frames."""
    out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "sast-plain": lambda x: model(x, fast=False),
        "sast-fast": lambda x: model(x),
        "sast-fast-dense": lambda x: model(x, sparse_input=False),
    }
    if x.device.type != "cpu":  # the default there is the dense first layer: time the sparse one too
        out["sast-fast-sparse"] = lambda x: model(x, sparse_input=True)
    if libraries:
        try:
            snt = SnnTorchNet(model)
            out["snntorch"] = snt
        except ImportError as e:
            print(f"snntorch not installed ({e}); `make bench` installs it", file=sys.stderr)
        if model.config.reset == "zero":
            try:
                sj = SpikingJellyNet(model)
                x_tb = x.transpose(0, 1).contiguous()  # SpikingJelly's layout, made before timing
                out["spikingjelly"] = lambda a, x=x: sj(x_tb if a is x else a.transpose(0, 1))
            except ImportError as e:
                print(f"spikingjelly not installed ({e}); `make bench` installs it", file=sys.stderr)
    if compile:
        compiled = torch.compile(model)
        out["sast-compiled"] = lambda x: compiled(x)
    return out


def check_same_function(model: SNN, x: torch.Tensor, y: torch.Tensor, names: list[str]) -> dict[str, dict[str, float]]:
    """On a float64 copy: max |logits - sast-plain logits| and ||grad - exact grad|| / ||exact grad||."""
    import copy

    m64 = copy.deepcopy(model).double()
    x64 = x.double()
    fns = contenders(m64, x64, libraries=any(n in names for n in ("snntorch", "spikingjelly")))
    params = list(m64.parameters())
    ref_logits = m64(x64, fast=False)
    ref_grads = torch.autograd.grad(F.cross_entropy(ref_logits, y), params)
    out = {}
    for name in names:
        if name not in fns or name == "sast-compiled":
            continue
        try:
            logits = fns[name](x64)
            grads = torch.autograd.grad(F.cross_entropy(logits, y), params)
        except Exception as e:  # a library that fails here (e.g. on a device it lacks kernels for) is left out
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        out[name] = {
            "forward_max_abs_diff": float((logits - ref_logits).detach().abs().max()),
            "grad_rel_error": relative_error(torch.cat([g.reshape(-1) for g in grads]),
                                             torch.cat([g.reshape(-1) for g in ref_grads])),
        }
    return out


def run(*, layers: list[str] | None = None, input_shape: tuple[int, ...] = DEMO_INPUT, batch: int = DEMO_BATCH,
        T: int = DEMO_T, density: float = DEMO_DENSITY, device: str = "cpu", rounds: int = 15,
        libraries: bool = True, compile: bool = False, check_batch: int = 8, budget_s: float | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Check that the contenders compute the same function, then time their SGD steps round-robin."""
    model = demo_model(layers=layers, input_shape=input_shape, T=T, device=device)
    x = event_frames(batch, T, input_shape, density, device=device)
    y = labels(batch, device=device)
    forwards = contenders(model, x, libraries=libraries, compile=compile)
    checks = check_same_function(model, x[:check_batch], y[:check_batch], list(forwards))
    for name, c in checks.items():
        if "error" in c:
            print(f"{name} left out: {c['error']}", file=sys.stderr)
            del forwards[name]
    params = list(model.parameters())
    fns: dict[str, Callable[[], Any]] = {"floor": gemm_floor(model, x), "floor+stream": bandwidth_floor(model, x)}
    fns.update({name: sgd_step_fn(f, params, x, y) for name, f in forwards.items()})
    if x.device.type == "cpu" and native.available():  # the default path with its torch ops instead of the loops
        fns["sast-fast-torch-ops"] = _with_setting("off", sgd_step_fn(forwards["sast-fast"], params, x, y))
        if any(spec.kind == "conv" for spec in model.plan):  # and with the conv layers in torch's default layout
            fns["sast-fast-contiguous"] = _without_channels_last(sgd_step_fn(forwards["sast-fast"], params, x, y))
    if progress:
        print(f"timing {', '.join(fns)} ({rounds} rounds)", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timing = round_robin(fns, rounds=rounds, warmup=2 if compile else 1, device=device, budget_s=budget_s)
    summary = timing.summary("floor")
    return {
        "vs_bandwidth_floor": timing.summary("floor+stream"),
        "network": {"layers": list(model.config.layers), "input_shape": list(input_shape), "T": T, "batch": batch,
                    "density": density, "reset": model.config.reset, "beta": model.config.beta,
                    "device": device, "measured_density": float((x != 0).float().mean())},
        "checks": checks,
        "timing": summary,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--conv", action="store_true", help=f"the conv network {CONV_LAYERS} on {CONV_INPUT}")
    p.add_argument("--batch", type=int, default=None, help=f"default {DEMO_BATCH} (dense), {CONV_BATCH} (conv)")
    p.add_argument("--density", type=float, default=DEMO_DENSITY, help="fraction of nonzero input entries")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the plain path")
    p.add_argument("--no-libraries", action="store_true", help="skip snnTorch and SpikingJelly")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    heap.retain_freed_memory()  # as the commands run (sast.heap)
    if args.threads:
        torch.set_num_threads(args.threads)
    kw: dict[str, Any] = dict(device=args.device, rounds=args.rounds, density=args.density, compile=args.compile,
                              libraries=not args.no_libraries)
    if args.conv:
        kw.update(layers=CONV_LAYERS, input_shape=CONV_INPUT, batch=args.batch or CONV_BATCH)
    else:
        kw.update(layers=DEMO_LAYERS, input_shape=DEMO_INPUT, batch=args.batch or DEMO_BATCH)
    res = run(**kw)
    res["environment"] = environment()
    net = res["network"]
    print_table(f"SGD step, {net['layers']} on {net['input_shape']}, T={net['T']}, batch {net['batch']}, "
                f"density {net['measured_density']:.3f}, {net['device']}", res["timing"], "floor")
    print_table("the same, as ratios to the GEMM floor plus the recurrence's unavoidable memory traffic "
                f"({STREAM_PASSES} passes over each layer's (B, T, n) state)", res["vs_bandwidth_floor"], "floor+stream")
    print("\nsame function (float64, vs sast-plain): max |logit diff|, gradient relative error")
    for name, c in res["checks"].items():
        if "error" in c:
            print(f"  {name:<20}failed: {c['error']}")
        else:
            print(f"  {name:<20}{c['forward_max_abs_diff']:>12.2e}{c['grad_rel_error']:>12.2e}")
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
