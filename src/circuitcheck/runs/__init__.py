"""Runs: the planned forward passes over each prompt set, and the per-prompt values they give.

- `plan.py`    every case grouped by model and prompt set: each intervention runs once
- `engine.py`  forward passes with interventions' hooks, clean once, streamed chunk by chunk (torch)
- `values.py`  a case's per-prompt values: from the value cache, a streamed pass, or a whole run
- `cache.py`   the value cache for reruns, keyed by everything the values depend on

Importing this package imports no torch; `engine.py` does.
"""
from __future__ import annotations

from ..language.moved import forward

# `circuitcheck.runs` was one module until 0.2: its names still resolve, with a warning, for one release.
__getattr__ = forward(__name__, "engine")
