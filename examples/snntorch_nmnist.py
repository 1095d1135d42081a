"""Bring your own network: an snnTorch network trained on real N-MNIST, exported to NIR, checked by this toolkit.

    python examples/snntorch_nmnist.py --root data --out runs/snntorch-nmnist --epochs 5

``--root`` is the folder holding ``NMNIST/`` in tonic's layout (``NMNIST/{Train,Test}/<digit>/<id>.bin``). What it
does, in order:

1. reads the recordings with this toolkit's reader at its default binning for nmnist
   (``sast.data.frame_dataset("nmnist", split, root=...)``: T = 20 bins over the 315 ms recording, binary
   2x34x34 frames), so the frames snnTorch trains on are the frames the checks and the evaluation load;
2. trains ``Flatten -> Linear(2312, H) -> Leaky -> Linear(H, 10) -> Leaky`` in snnTorch with snnTorch's own
   surrogate gradient, Leaky's default ``surrogate.atan(alpha)`` (slope alpha/2 at the threshold), its default
   subtract reset and its spike-count cross-entropy (``ce_count_loss``). The checks' smooth mode uses the
   sigmoid sig(beta (u - theta)) with beta = 2 alpha, whose slope at the threshold, beta/4, is the same.
   (snnTorch's ``surrogate.sigmoid`` would match the sigmoid exactly, but its backward pass computes
   exp(-slope U) in float32, which overflows to inf/inf = NaN once slope U < -88, and the NaN reaches the
   weights: the toolkit then refuses the exported file, naming the node with non-finite weights);
3. exports it with snnTorch's ``export_to_nir`` (``ignore_dims=[0]``; beta and threshold as per-neuron tensors,
   which NIR's type inference needs) to ``OUT/net.nir``; the graph ends in a LIF, so the toolkit decodes it by
   the output neurons' spike rates, as snnTorch's accuracy does;
4. runs ``python -m sast.evaluate``, ``python -m checks.all`` and ``python -m reports.build`` on the file, each a
   process of its own, with the settings a NIR file cannot carry (``--dt 1e-4 --reset subtract --beta 2ALPHA
   --data nmnist --root ROOT``); their results go to ``OUT/net.sast/`` (the run folder of ``net.nir``) and the
   report to ``OUT/report.html``;
5. prints snnTorch's own test accuracy beside the toolkit's hard accuracy on the file (equal when the import is
   exact), smooth and hard accuracy, the gap, its per-layer attribution, and every check's verdict with its
   global and local slack.

Needs snnTorch, nir and tonic (``pip install snntorch nir tonic``; see the README). Exit code: 0 done, 1 a bound
is violated, 2 bad input (a command below refused it), 70 a command failed otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

DT = 1e-4  # snnTorch's export convention: tau = dt / (1 - beta)
RESET = "subtract"  # snnTorch Leaky's default reset_mechanism (with reset_delay=True): the toolkit's "subtract"
LAM = 0.9  # snnTorch's beta, the membrane decay: the toolkit's lambda
REPO = Path(__file__).resolve().parents[1]


def leaky(n: int, alpha: float, *, output: bool = False):
    """An snnTorch Leaky layer of ``n`` neurons with per-neuron decay and threshold (NIR needs arrays)."""
    import snntorch as snn
    from snntorch import surrogate

    return snn.Leaky(beta=torch.full((n,), LAM), threshold=torch.ones(n), spike_grad=surrogate.atan(alpha=alpha),
                     init_hidden=True, output=output)


class Net(nn.Module):
    """Flatten -> Linear -> Leaky -> Linear -> Leaky; one time step per call (snnTorch keeps the state)."""

    def __init__(self, hidden: int, alpha: float, inputs: int = 2 * 34 * 34, classes: int = 10) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc1, self.lif1 = nn.Linear(inputs, hidden), leaky(hidden, alpha)
        self.fc2, self.lif2 = nn.Linear(hidden, classes), leaky(classes, alpha, output=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lif2(self.fc2(self.lif1(self.fc1(self.flat(x)))))


def run_steps(net: Net, frames: torch.Tensor) -> torch.Tensor:
    """The output spikes (T, B, classes) of ``net`` over frames (B, T, P, H, W), from a fresh state."""
    from snntorch import utils

    utils.reset(net)
    return torch.stack([net(frames[:, t])[0] for t in range(frames.shape[1])])


def accuracy(net: Net, frames: torch.Tensor, labels: torch.Tensor, batch: int = 100) -> float:
    """snnTorch's own test accuracy: the output neuron with the most spikes."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            counts = run_steps(net, frames[i:i + batch].float()).sum(0)
            correct += int((counts.argmax(1) == labels[i:i + batch]).sum())
    return correct / len(labels)


def train(net: Net, frames: torch.Tensor, labels: torch.Tensor, *, epochs: int, seed: int, lr: float,
          batch: int) -> None:
    import snntorch.functional as SF

    loss_fn = SF.ce_count_loss()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        t0, total = time.perf_counter(), 0.0
        order = torch.randperm(len(labels), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = loss_fn(run_steps(net, frames[idx].float()), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f} ({time.perf_counter() - t0:.1f} s)",
              flush=True)


def export(net: Net, path: Path) -> None:
    """``net`` as a NIR file, through snnTorch's exporter (the batch dimension ignored: NIR.md)."""
    import nir
    from snntorch.export_nir import export_to_nir

    graph = export_to_nir(net.eval(), torch.zeros(1, 2, 34, 34), ignore_dims=[0])
    nir.write(path, graph)


def toolkit(module: str, *args: Any) -> subprocess.CompletedProcess:
    """``python -m module args`` in a process of its own, its output captured.

    It runs in the current folder, so relative paths mean what they meant here; the repository goes on
    PYTHONPATH in case the toolkit is not installed.
    """
    cmd = [sys.executable, "-m", module, *[str(a) for a in args]]
    print("$ " + " ".join(["python", "-m", module, *[str(a) for a in args]]), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(proc.returncode)
    return proc


def fmt_slack(bound: Any, estimate: Any) -> str:
    if not isinstance(bound, (int, float)) or not isinstance(estimate, (int, float)):
        return "-"
    if estimate <= 0:
        return "est. <= 0"
    ratio = bound / estimate
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.3g}x"


def summary(evaluation: dict[str, Any], checks: list[dict[str, Any]], own_acc: float) -> str:
    """What the example reports: accuracies, the gap and its attribution, every check with both slacks."""
    lines = [f"snnTorch's own test accuracy (hard spikes, most spikes wins): {own_acc:.4f}",
             f"the toolkit on net.nir ({evaluation['n']} test recordings): smooth {evaluation['smooth_acc']:.4f}, "
             f"hard {evaluation['hard_acc']:.4f}, gap (smooth - hard) {evaluation['gap']:+.4f}",
             "per-layer attribution (hard spikes in layer l only / smooth in layer l only):"]
    margins = evaluation.get("margins", {})
    for i, row in enumerate(evaluation["attribution"]["layers"]):
        band = [margins.get(m, {}).get("soft_band_fraction", [None] * (i + 1))[i] for m in ("smooth", "hard")]
        lines.append(f"  layer {row['layer']}: hard-only acc {row['hard_only_acc']:.4f} (drop {row['drop']:+.4f}), "
                     f"smooth-only acc {row['smooth_only_acc']:.4f} (recovered {row['recovered']:+.4f}), soft band "
                     f"{band[0]:.3f} smooth / {band[1]:.3f} hard")
    lines.append("checks (slack = bound / estimate):")
    for c in checks:
        glob, local = fmt_slack(c.get("bound"), c.get("estimate")), fmt_slack(c.get("local_bound"), c.get("estimate"))
        lines.append(f"  {c['id']:<3} {c['name']:<22} {c['status']:<17} global {glob:>10}  local {local:>8}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", required=True, help="data folder holding NMNIST/ (tonic's layout)")
    p.add_argument("--out", required=True, help="folder for net.nir, its run folder net.sast/ and report.html")
    p.add_argument("--epochs", type=int, default=5, help="training epochs")
    p.add_argument("--limit", type=int, default=None, help="use the first N recordings of each split only")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")
    p.add_argument("--hidden", type=int, default=128, help="hidden Leaky neurons")
    p.add_argument("--alpha", type=float, default=2.0,
                   help="alpha of snnTorch's surrogate.atan (its default); the checks get --beta 2*alpha")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--probe", type=int, default=64, help="probe samples of the checks (checks.all --batch)")
    args = p.parse_args(argv)
    if str(REPO) not in sys.path:  # run from a checkout without installing the toolkit
        sys.path.insert(0, str(REPO))
    from sast.data import frame_dataset
    from sast.model_file import nir_run_dir

    start = time.perf_counter()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    train_set = frame_dataset("nmnist", "train", root=args.root, limit=args.limit, progress=False)
    test_set = frame_dataset("nmnist", "test", root=args.root, limit=args.limit, progress=False)
    print(f"N-MNIST: {len(train_set)} training and {len(test_set)} test recordings, frames "
          f"{tuple(train_set.frames.shape[1:])} (T, P, H, W)", flush=True)
    net = Net(args.hidden, args.alpha)
    train(net, train_set.frames, train_set.labels, epochs=args.epochs, seed=args.seed, lr=args.lr,
          batch=args.batch_size)
    own_acc = accuracy(net, test_set.frames, test_set.labels)
    path = out / "net.nir"
    export(net, path)
    print(f"exported {path}", flush=True)

    settings = ["--dt", DT, "--reset", RESET, "--beta", 2 * args.alpha, "--data", "nmnist", "--root", args.root,
                "--no-progress"]
    limit = ["--limit", args.limit] if args.limit else []
    toolkit("sast.evaluate", "--model", path, *settings, *limit)
    checks = toolkit("checks.all", "--model", path, *settings, "--batch", args.probe)
    run_dir = nir_run_dir(path)
    toolkit("reports.build", run_dir, "-o", out / "report.html")
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    results = json.loads((run_dir / "checks.json").read_text())
    print(summary(evaluation, results, own_acc))
    print(f"report: {out / 'report.html'} ({time.perf_counter() - start:.0f} s in all)")
    return checks.returncode


if __name__ == "__main__":
    raise SystemExit(main())
