"""The public surface of ``sast``: lazy, complete, and the names that ``sast.train`` kept (its command line: apps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_importing_sast_or_its_run_log_does_not_import_torch():
    code = "import sys, sast, sast.runlog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_every_exported_name_resolves():
    import sast

    for name in sast.__all__:
        assert getattr(sast, name) is not None, name
    assert sast.checkpoint.load is __import__("sast.checkpoint", fromlist=["load"]).load
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sast.nope  # noqa: B018


@pytest.mark.parametrize("name", [
    "Callback", "DATASET_DEFAULTS", "Data", "METHODS", "Run", "SAM_BATCHES", "SPLITS", "Split", "StopTraining",
    "TrainConfig", "TrainingDiverged", "VALIDATION_FRACTION", "VALIDATION_SEED", "evaluate_split", "load_data",
    "load_split", "model_config", "train",
])
def test_sast_train_keeps_its_names(name):
    import sast.train

    assert name in sast.train.__all__ and getattr(sast.train, name) is not None


@pytest.mark.parametrize("name", ["build_parser", "config_from_args", "default_run_dir", "main", "monitor_callbacks"])
def test_the_training_command_line_is_in_apps(name):
    """The command line wires the monitor in (a composition root): apps.train, no longer sast.train (DESIGN.md)."""
    import apps.train
    import sast.train

    assert name in apps.train.__all__ and getattr(apps.train, name) is not None
    assert name not in sast.train.__all__ and not hasattr(sast.train, name)


def test_importing_sast_train_does_not_import_apps_or_checks():
    code = "import sys, sast.train; print(sorted({m.split('.')[0] for m in sys.modules} & {'apps', 'checks'}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_inference_names_stay_importable_from_evaluate():
    import sast.evaluate
    import sast.inference

    for name in ("EVAL_BATCH", "predict_logits", "accuracy_and_loss"):
        assert getattr(sast.evaluate, name) is getattr(sast.inference, name)


def test_run_folder_helpers_stay_importable_from_runlog_and_checkpoint():
    import runfolder
    import sast.checkpoint
    import sast.runlog

    assert sast.runlog.read_jsonl is runfolder.read_jsonl and sast.runlog.dumps is runfolder.dumps
    assert sast.checkpoint.atomic_write_bytes is runfolder.atomic_write_bytes
    assert sast.checkpoint.atomic_write_text is runfolder.atomic_write_text
