"""The shape of every intervention kind, and what its hooks are given at run time.

An intervention kind is one `Kind` subclass in one file of this package, registered with `@register`:

    name          the key a file writes (`under: {ablate: {...}}`)
    schema        the pydantic model of what follows the key; `spec.Intervention` is built from these
    hooks         (hook name, function) pairs that edit the run, given a `Context`
    clean_needs   clean-run activations its hooks read (means, resamples)
    sources       other prompt sets whose activations its hooks read (patching)
    references    the heads, positions and hooks it names, checked at collection
    check         collection-time checks that need the prompt set (positions the mask hides, ...)
    describe      how it names itself in reports and errors

Kind files import torch inside functions only: collection imports this package (through spec).

Two TransformerLens 4.3 traps shape the kinds:
- edits made at `hook_attn_scores` are discarded, so an attention *score* is rescaled at
  `hook_pattern`, from q and k captured earlier in the same forward pass;
- native bridges have no per-head `hook_result`, so a head is ablated at `hook_z` (its output
  is `z @ W_O`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import fields
from .. import prompts as P

KINDS: dict[str, "Kind"] = {}
register = fields.registrar(KINDS)  # class decorator: `@register class AblateKind(Kind): name = "ablate"`


@dataclass
class Context:
    """What a hook needs besides the activation: the prompts, the clean run, the rows in this chunk."""

    cfg: object
    prompts: P.PromptSet
    clean: dict  # hook name -> clean activation over all prompts
    rows: slice
    seed: int
    sources: dict  # Source.key -> activations over all prompts of that source


@dataclass(frozen=True)
class Source:
    """A prompt set (other than the claim's) whose activation at `hook` an intervention reads."""

    key: tuple
    prompts: Any  # spec.PromptSpec
    hook: str
    loc: tuple = ("source",)  # where the file names it, inside the intervention


class Kind(fields.KindBase):

    def hooks(self, body, ctx: Context) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def clean_needs(self, body, cfg) -> set[str]:
        return set()

    def sources(self, body) -> list[Source]:
        return []

    def check(self, body, prompts: P.PromptSet) -> None:
        """Raise `prompts.PromptError` for what the prompt set makes impossible."""


def kind_of(iv) -> Kind:
    return KINDS[iv.kind]


def positions(at, ctx: Context):
    """Per-row destination positions [rows, k] for `at`, or None for every position."""
    import torch

    if at is None:
        return None
    at = at if isinstance(at, list) else [at]
    idx = np.stack([P.position(ctx.prompts, a) for a in at], axis=1)[ctx.rows]
    return torch.as_tensor(idx)
