"""Interventions: the hook functions that ablate, keep, rescale and patch during a run.

Each kind is one module of this package (the shape they share is in `base.py`); every module
here is imported, and so registered, when the package is. Adding an intervention kind is adding
one file.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import KINDS, Context, Kind, Reference, Source, kind_of, register

HELPERS: tuple[str, ...] = ("knockout", "residual")  # modules here that are no kind

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["KINDS", "Context", "Kind", "Reference", "Source", "kind_of", "register", "hooks", "clean_needs", "sources", "run_key"]


def run_key(under) -> tuple:
    """Identifies a run by its interventions (torch-free, so cached values are found without it)."""
    return tuple(iv.model_dump_json(by_alias=True) for iv in under)


def hooks(under, ctx: Context) -> list[tuple[str, object]]:
    """Every (hook name, function) the interventions of one run install, in order."""
    return [h for iv in under for h in kind_of(iv).hooks(iv.body, ctx)]


def clean_needs(under, cfg) -> set[str]:
    """Clean activations the interventions read (means and resamples)."""
    return set().union(*(kind_of(iv).clean_needs(iv.body, cfg) for iv in under))


def sources(under, cfg=None) -> list[Source]:
    """Other prompt sets whose activations the interventions read (patch sources); `cfg`: see Kind.sources."""
    return [s for iv in under for s in kind_of(iv).sources(iv.body, cfg)]
