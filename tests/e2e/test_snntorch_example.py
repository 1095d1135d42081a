"""examples/snntorch_nmnist.py on real N-MNIST recordings, fast: snnTorch trains, exports NIR, the toolkit checks it.

Reads the folder named by ``SAST_REAL_DATA`` (the one holding ``NMNIST/``; ``.ci/run`` extracts the subset there)
and skips, saying why, when it is unset or snnTorch, nir or tonic is missing. One epoch on 100 recordings, a
hidden layer of 16 and an 8-sample probe: the example's whole path (training, ``export_to_nir``,
``sast.evaluate``, ``checks.all``, ``reports.build`` as processes of their own) in about half a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REAL = os.environ.get("SAST_REAL_DATA")
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not REAL, reason="SAST_REAL_DATA is unset: extract nmnist-small.tar.xz and point it at the folder "
                     "holding NMNIST/ (.ci/run does this)")


def test_the_example_trains_exports_and_checks_an_snntorch_network(tmp_path, cache_dir):
    for module in ("snntorch", "nir", "tonic"):
        pytest.importorskip(module, reason=f"the example needs {module} (make test installs it)")
    if not (Path(REAL) / "NMNIST" / "Test").is_dir():
        pytest.fail(f"SAST_REAL_DATA={REAL} does not hold NMNIST/Test (tonic's layout)")
    out = tmp_path / "out"
    env = {**os.environ, "SAST_CACHE": cache_dir}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "snntorch_nmnist.py"), "--root", REAL, "--out",
                           str(out), "--epochs", "1", "--limit", "100", "--hidden", "16", "--probe", "8"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: a violated bound, a finding the summary prints
    text = proc.stdout
    for line in ("snnTorch's own test accuracy", "the toolkit on net.nir", "per-layer attribution", "layer 1:",
                 "layer 2:", "T4  smoothness"):
        assert line in text, text
    run_dir = out / "net.sast"
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    checks = {c["id"]: c for c in json.loads((run_dir / "checks.json").read_text())}
    assert evaluation["source"]["kind"] == "nir" and evaluation["source"]["reset"] == "subtract"
    assert evaluation["n"] == 100 and len(evaluation["attribution"]["layers"]) == 2
    assert {"A4", "T2", "T3", "T4", "T5", "T6", "T7", "E1", "E2"} == set(checks)
    assert checks["T2"]["status"] != "violated", "T2 holds in any mode: a violation is a bug"
    own = float(text.split("snnTorch's own test accuracy (hard spikes, most spikes wins): ")[1].split()[0])
    assert own == pytest.approx(evaluation["hard_acc"]), "the imported network spikes as snnTorch's does"
    assert evaluation["source"]["sha256"] in (out / "report.html").read_text()
