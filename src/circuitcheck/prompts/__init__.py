"""Prompts: what a model is run on, built and checked while pytest collects (numpy only).

- `base.py`        the prompt set, its named positions, and per-prompt quantities
- `generators.py`  seeded generators for the seed tasks, and `build` (the one a file names)
- `jsonl.py`       rows of a JSONL dataset, every row checked
- `text.py`        text templates through a model's own tokenizer
- `where.py`       `where:` conditions on prompts, parsed by a small grammar

The names below are the stage's interface; the rest of the package imports them from here.
"""
from __future__ import annotations

from .base import PromptError, PromptSet, check_fit, parse_position, position, quantity, row_error
from .generators import GENERATORS, build, max_of_list, repeated_tokens, template
from .where import condition

__all__ = ["PromptError", "PromptSet", "check_fit", "parse_position", "position", "quantity", "row_error",
           "GENERATORS", "build", "max_of_list", "repeated_tokens", "template", "condition"]
