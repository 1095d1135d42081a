"""A checkpoint exported to NIR and read back by every command: the same numbers, a run folder, a report naming it.

``python -m sast.export`` writes the tiny run's checkpoint as ``net.nir``; ``sast.evaluate`` on the file must
give the checkpoint's accuracies, gap, per-layer attribution and margins exactly (the file holds the same
network; beta and T come from its metadata), ``checks.all`` writes checks.json into ``net.sast`` beside it, and
``reports.build net.sast`` names the file and its sha256 and shows the attribution.
"""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("nir", reason="NIR support is optional: pip install 'sast-toolkit[nir]'")

NIR_FLAGS = ["--dt", "1e-4", "--reset", "zero", "--data", "synth-nmnist"]


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    from sast.export import main

    path = tmp_path_factory.mktemp("nir") / "net.nir"
    assert main(["--model", str(tiny_run / "ckpt.pt"), "-o", str(path)]) == 0
    return path


def test_evaluate_on_the_nir_file_equals_evaluate_on_its_checkpoint(tiny_run, exported, tmp_path, cache_dir,
                                                                   capsys):
    from sast.evaluate import main

    ref = tmp_path / "ckpt.json"
    assert main(["--model", str(tiny_run / "ckpt.pt"), "--json", str(ref), "--no-progress"]) == 0
    assert main(["--model", str(exported), *NIR_FLAGS, "--limit", "200", "--cache-dir", cache_dir,
                 "--no-progress"]) == 0  # the tiny run's data: its first 200 test samples
    out = capsys.readouterr().out
    assert "per-layer attribution of the gap" in out and "sast.export" in out
    a = json.loads(ref.read_text())
    b = json.loads((exported.parent / "net.sast" / "evaluation.json").read_text())
    for key in ("n", "smooth_acc", "hard_acc", "gap", "agreement", "int8_hard_acc"):
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), key
    for la, lb in zip(a["attribution"]["layers"], b["attribution"]["layers"], strict=True):
        assert lb == pytest.approx(la, rel=1e-5, abs=1e-5)  # float32 logits of the same network, read back
    for mode in ("smooth", "hard"):
        assert b["margins"][mode]["counts"] == a["margins"][mode]["counts"]
    assert len(a["attribution"]["layers"]) == 1 and {"drop", "recovered"} <= set(a["attribution"]["layers"][0])
    assert a["source"]["library"] == "sast-toolkit checkpoint"
    assert a["source"]["sha256"] == hashlib.sha256((tiny_run / "ckpt.pt").read_bytes()).hexdigest()
    assert b["source"]["kind"] == "nir" and b["source"]["sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest()
    assert b["source"]["beta_from"] == "file metadata (sast.export)"
    config = json.loads((exported.parent / "net.sast" / "config.json").read_text())
    assert config["source"] == b["source"] and config["data"]["data"] == "synth-nmnist"


def test_checks_all_and_the_report_on_the_nir_file(exported, cache_dir, tmp_path, capsys):
    from checks.all import main as checks_main
    from reports.build import main as report_main

    code = checks_main(["--model", str(exported), *NIR_FLAGS, "--batch", "8", "--only",
                        "contraction,state_bounds,convergence,transfer", "--cache-dir", cache_dir, "--no-progress"])
    assert code == 0, capsys.readouterr()
    run_dir = exported.parent / "net.sast"
    ids = [c["id"] for c in json.loads((run_dir / "checks.json").read_text())]
    assert ids == ["A4", "T2", "T6", "E1", "E2"]
    out = tmp_path / "report.html"
    assert report_main([str(run_dir), "-o", str(out)]) == 0
    html = out.read_text()
    digest = hashlib.sha256(exported.read_bytes()).hexdigest()
    assert digest in html and str(exported.resolve()) in html and "sast.export" in html
    assert "Incomplete run folder" not in html  # no metrics.jsonl is expected of a network trained elsewhere


def test_a_single_check_on_the_nir_file_writes_only_its_json(exported, cache_dir, tmp_path):
    from checks.contraction import main

    folder = exported.parent / "net.sast"
    before = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    out = tmp_path / "a4.json"
    assert main(["--model", str(exported), *NIR_FLAGS, "--batch", "4", "--cache-dir", cache_dir, "--json", str(out),
                 "--no-progress"]) == 0
    assert json.loads(out.read_text())[0]["id"] == "A4"
    assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else []) == before
