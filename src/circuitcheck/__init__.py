"""circuitcheck: check interpretability circuit claims like code.

    from circuitcheck import check
    results = check("hypotheses/max_of_list.hyp.yaml")   # one Result per claim

The pytest plugin (`pytest hypotheses/`) is a thin layer over the same functions.
"""
from .hypothesis_file import HypothesisError, load
from .measures.base import Run
from .registry import register_measure, register_model
from .session import Options, Session, check, load_model

__all__ = ["check", "load", "load_model", "HypothesisError", "Options", "Session", "register_model", "register_measure",
           "Run"]
