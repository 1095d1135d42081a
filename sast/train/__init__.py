"""Train one SNN with HFSB, SF or SAST and write a run folder (DESIGN.md).

    python -m sast.train --method sast --rho 0.3

Methods (THEORY.md "The model"):
  hfsb  hard forward, surrogate backward (the conventional, biased gradient)
  sf    smooth forward: the exact gradient of the smooth (sigmoid-spike) model
  sast  SF trained with SAM (T6); the perturbation uses an independent minibatch

The run folder holds config.json, metrics.jsonl (one JSON record a line), ckpt.pt
(the latest epoch) and best.pt (the best validation accuracy). Training resumes
from ckpt.pt with --resume and then continues exactly as an uninterrupted run;
--resume --epochs N extends a run of fewer epochs to N, equal to an N-epoch run.
Exit codes: 0 done, 2 bad input, 3 the loss became NaN or infinite (the last good
checkpoint is kept). Data-parallel training runs under ``torchrun`` (see
:mod:`sast.train.loop`).

The package, from the bottom up:

- :mod:`sast.train.config`: :class:`TrainConfig` (every setting of a run), the methods,
  the per-dataset defaults, the validation fraction and seed;
- :mod:`sast.train.splits`: the data a run sees (:func:`load_data`, :func:`load_split`:
  the training split less a fixed validation part, that part, the test split);
- :mod:`sast.train.loop`: :func:`train` (the loop, resume, torchrun), :class:`Run`
  (what callbacks see), :class:`TrainingDiverged`; :class:`StopTraining` (a callback ends training).

The command line (its flags, ``main``, the live monitor wired in as callbacks) is a composition
root and lives in :mod:`apps.train` (``build_parser``, ``config_from_args``, ``default_run_dir``,
``main``); ``sast/train/__main__.py`` is the entry point of ``python -m sast.train``.
"""

from sast.callbacks import Callback, StopTraining
from sast.train.config import (DATASET_DEFAULTS, METHODS, SAM_BATCHES, VALIDATION_FRACTION, VALIDATION_SEED,
                               TrainConfig)
from sast.train.loop import Run, TrainingDiverged, evaluate_split, train
from sast.train.splits import SPLITS, Data, Split, load_data, load_split, model_config

__all__ = [
    "Callback", "DATASET_DEFAULTS", "Data", "METHODS", "Run", "SAM_BATCHES", "SPLITS", "Split", "StopTraining",
    "TrainConfig", "TrainingDiverged", "VALIDATION_FRACTION", "VALIDATION_SEED", "evaluate_split", "load_data",
    "load_split", "model_config", "train",
]
