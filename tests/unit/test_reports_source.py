"""The report names each model's source and shows the transfer gap per layer; a NIR file's run folder reads as one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import runfolder
from reports.build import build_report, load_runs
from reports.testing import write_fake_run

SHA = "ab" * 32
NIR_SOURCE = {"kind": "nir", "library": "NIR file (the library that wrote it is not recorded in NIR)",
              "path": "/data/net.nir", "sha256": SHA, "bytes": 1234, "dt": 1e-4, "reset": "subtract", "beta": 4.0,
              "beta_from": "flag", "T": 20, "T_from": "the default binning of nmnist", "data": "nmnist"}
ATTRIBUTION = {"smooth_acc": 0.8, "hard_acc": 0.7, "gap": 0.1, "layers": [
    {"layer": 1, "hard_only_acc": 0.71, "hard_only_discrepancy": 1.0, "drop": 0.09, "smooth_only_acc": 0.79,
     "smooth_only_discrepancy": 1.0, "recovered": 0.09},
    {"layer": 2, "hard_only_acc": 0.78, "hard_only_discrepancy": 0.2, "drop": 0.02, "smooth_only_acc": 0.72,
     "smooth_only_discrepancy": 0.2, "recovered": 0.02}]}
MARGINS = {mode: {"soft_band_fraction": [0.31, 0.49], "mean_abs_margin": [14.8, 5.45]} for mode in ("smooth", "hard")}


def _nir_run_folder(path: Path) -> Path:
    """What checks.all and sast.evaluate leave in NAME.sast: config.json with the source, checks, evaluation."""
    path.mkdir()
    runfolder.write_json(path / runfolder.CONFIG_FILE, {"source": NIR_SOURCE, "model": {"T": 20},
                                                        "data": {"data": "nmnist", "T": 20, "clip": 1},
                                                        "environment": {"argv": ["-m", "checks.all"]}})
    runfolder.write_json(path / runfolder.EVALUATION_FILE, {"source": NIR_SOURCE, "smooth_acc": 0.8, "hard_acc": 0.7,
                                                            "gap": 0.1, "attribution": ATTRIBUTION,
                                                            "margins": MARGINS})
    runfolder.write_json(path / runfolder.CHECKS_FILE, [{"id": "A4", "name": "contraction", "bound": 0.9,
                                                         "estimate": 0.9, "status": "holds", "assumptions": {}}])
    return path


def test_a_nir_files_run_folder_names_its_source_and_shows_the_gap_per_layer(tmp_path):
    folder = _nir_run_folder(tmp_path / "net.sast")
    (run,) = load_runs([folder])
    assert run.problems == [] and any("NIR file" in n for n in run.notes)  # no metrics.jsonl is expected
    html = build_report([folder], tmp_path / "r.html").read_text()
    assert SHA in html and "/data/net.nir" in html and "beta_from" in html
    assert "The transfer gap per layer" in html and "+9.0 pp" in html and "14.8" in html
    assert "Incomplete run folder" not in html and "data nmnist" in html


def test_a_checkpoint_run_without_a_recorded_source_is_hashed_when_the_report_is_built(tmp_path):
    folder = write_fake_run(tmp_path / "run")
    (folder / runfolder.CHECKPOINT_FILE).write_bytes(b"checkpoint bytes")
    html = build_report([folder], tmp_path / "r.html").read_text()
    assert hashlib.sha256(b"checkpoint bytes").hexdigest() in html and "sast-toolkit checkpoint" in html
    assert "hashed when this report was built" in html
    assert "Per-layer attribution not measured" in html  # the fake evaluation.json has none


def test_without_a_checkpoint_or_a_source_the_report_says_so(tmp_path):
    folder = write_fake_run(tmp_path / "run")
    html = build_report([folder], tmp_path / "r.html").read_text()
    assert "model source not recorded" in html


def test_the_comparison_names_each_runs_source_and_data(tmp_path):
    nir_run = _nir_run_folder(tmp_path / "net.sast")
    ckpt_run = write_fake_run(tmp_path / "run")
    html = build_report([ckpt_run, nir_run], tmp_path / "r.html").read_text()
    comparison = html[html.index('id="comparison"'):]
    assert "model source" in comparison and SHA[:16] in comparison and "nmnist" in comparison
