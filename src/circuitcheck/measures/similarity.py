"""`measure: {similarity: {hook, at, head, variants}}`: cosine similarity of one activation across
prompt variants (seed 000's invariance tests)."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from .. import prompts as P
from ..language.fields import Head, Position, Strict
from ..language.names import parse_head, pattern_name, z_name
from .base import Kind, f64, register, to_numpy

SHORT = ("z", "pattern", "head_out")


class Similarity(Strict):
    """Cosine similarity of one activation across prompt variants (seed 000's invariance tests)."""

    hook: str = Field(description="a hook name (`blocks.0.hook_resid_post`), or `z`, `pattern`, `head_out` with `head`")
    at: Position = Field(description="the position whose activation is compared")
    head: Head | None = Field(None, description="for `z`, `pattern` and `head_out`: the head")
    variants: list[dict[str, Any]] = Field(min_length=2, description="prompt parameters that make each variant")


@register
class SimilarityKind(Kind):
    name = "similarity"
    schema = Similarity
    value_range = (-1.0, 1.0)  # a cosine

    def needs(self, body, cfg) -> set[str]:
        return {similarity_hook(body)}

    def compute(self, body, run) -> np.ndarray:
        return similarity([activation(body, v.cache, v.prompts, v.model) for v in run.variants])

    def references(self, body):
        yield from super().references(body)
        if body.hook not in SHORT:
            yield ("hook",), body.hook, "hook"

    per_prompt = False  # one value per prompt across variants, not of the claim's own prompts

    def variants(self, body) -> list[dict]:
        return list(body.variants)


def similarity_hook(s) -> str:
    if s.hook in SHORT:
        if s.head is None:
            raise ValueError(f"`hook: {s.hook}` needs `head:`")
        layer = parse_head(s.head)[0]
        return pattern_name(layer) if s.hook == "pattern" else z_name(layer)
    return s.hook


def activation(s, cache, prompts, model):
    """[n, features]: the activation a similarity measure compares, at its position."""
    import torch

    x = f64(cache[similarity_hook(s)])
    rows = torch.arange(prompts.n)
    at = torch.as_tensor(P.position(prompts, s.at))
    h = parse_head(s.head)[1] if s.head else None
    if s.hook == "pattern":
        return x[rows, h, at]
    x = x[rows, at]
    if s.hook in ("z", "head_out") or (h is not None and x.dim() == 3):
        x = x[:, h]
    if s.hook == "head_out":
        x = x @ f64(model.W_O[parse_head(s.head)[0], h])
    return x.reshape(prompts.n, -1)


def similarity(acts: list) -> np.ndarray:
    """Per prompt: the mean cosine similarity over every pair of variants."""
    import torch

    sims = [torch.nn.functional.cosine_similarity(a, b, dim=-1) for i, a in enumerate(acts) for b in acts[i + 1:]]
    return to_numpy(torch.stack(sims).mean(0))
