"""Measures: one number per prompt, from the logits and activations of a run.

Every measure returns a float array of length n (prompts), so every claim has a distribution.
Each kind is one module of this package (the shape they share is in `base.py`; what several kinds
read is in the `HELPERS`); every kind module is imported, and so registered, when the package is.
Adding a measure kind is adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil

import numpy as np

from .base import KINDS, Kind, MeasureFailed, Run, kind_of, register

# Modules here that are no kind: what several kinds read (direct attribution, key sets, weight algebra).
HELPERS = ("attribution", "keysets", "selections", "weights")

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", *HELPERS):
        importlib.import_module(f"{__name__}.{_module.name}")

from .python import HandedChanged  # noqa: E402

__all__ = ["KINDS", "HandedChanged", "Kind", "MeasureFailed", "Run", "kind_of", "register", "needs", "compute"]


def needs(measure, cfg) -> set[str]:
    """Hook names whose activations this measure reads (beyond the logits)."""
    return kind_of(measure).needs(measure.body, cfg)


def compute(measure, run: Run) -> np.ndarray:
    """The per-prompt values of `measure` on a run (a weights-only measure: from `run.model`);
    `MeasureFailed` where it raises."""
    try:
        return kind_of(measure).compute(measure.body, run)
    except Exception as exc:
        raise MeasureFailed(measure, exc) from exc
