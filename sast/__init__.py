"""Sharpness-aware surrogate training (SAST) of spiking networks: the model, data, SAM, training, evaluation.

The public API, importable from ``sast`` directly:

- the model: :class:`SNN`, :class:`SNNConfig` (``sast.model``);
- data: :func:`frame_dataset`, :func:`event_dataset` (``sast.data``);
- training: :class:`TrainConfig`, :func:`load_data`, :func:`load_split`, :class:`Run`
  (what a :class:`Callback` sees) (``sast.train``; the training function itself is
  ``sast.train.train``, since ``sast.train`` names the package), :func:`sam_step` (``sast.sam``);
- evaluation: :func:`predict_logits` (``sast.inference``), :func:`diagnostics` (E1, E2 and
  ECE, ``sast.transfer``);
- checkpoints: the module :mod:`sast.checkpoint` (``checkpoint.save``, ``checkpoint.load``).

Everything is imported lazily (PEP 562), so ``import sast`` or ``import sast.runlog`` does
not import torch through this file; the submodules hold the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SNN": "sast.model",
    "SNNConfig": "sast.model",
    "event_dataset": "sast.data",
    "frame_dataset": "sast.data",
    "Callback": "sast.callbacks",
    "Run": "sast.train",
    "TrainConfig": "sast.train",
    "load_data": "sast.train",
    "load_split": "sast.train",
    "sam_step": "sast.sam",
    "predict_logits": "sast.inference",
    "diagnostics": "sast.transfer",
}
_MODULES = ("checkpoint",)  # exported as modules: sast.checkpoint.load would clash with other loads
__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"sast.{name}")
    raise AttributeError(f"module 'sast' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
