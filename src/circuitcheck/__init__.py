"""circuitcheck: check interpretability circuit claims like code.

    from circuitcheck import check
    results = check("hypotheses/max_of_list.hyp.yaml")   # one Result per claim

The pytest plugin (`pytest hypotheses/`) is a thin layer over the same functions.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Each public name and the module it lives in, imported when first used: importing the package (as
# pytest does for the plugin) loads nothing else, so the plugin decides how the rest is imported.
_PUBLIC = {
    "check": "session", "load_model": "session", "Options": "session", "Session": "session",
    "load": "hypothesis_file", "HypothesisError": "hypothesis_file",
    "register_model": "registry", "register_measure": "registry",
    "Run": "measures.base",
}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from .hypothesis_file import HypothesisError, load
    from .measures.base import Run
    from .registry import register_measure, register_model
    from .session import Options, Session, check, load_model


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'circuitcheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
