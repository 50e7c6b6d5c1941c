"""`measure: {attention: {head, from, to}}`: the attention weight from one position to another."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from .. import prompts as P
from ..language.fields import Head, Position, Strict
from ..language.names import parse_head, pattern_name
from .base import Kind, register, to_numpy


class Attention(Strict):
    head: Head
    from_: Position = Field(alias="from")
    to: Position


@register
class AttentionKind(Kind):
    name = "attention"
    schema = Attention
    value_range = (0.0, 1.0)  # a share of attention

    def needs(self, body, cfg) -> set[str]:
        return {pattern_name(parse_head(body.head)[0])}

    def compute(self, body, run) -> np.ndarray:
        return attention(run.cache, run.prompts, body.head, body.from_, body.to)


def attention(cache, prompts, head: str, src, dst) -> np.ndarray:
    import torch

    layer, h = parse_head(head)
    pattern = cache[pattern_name(layer)]
    q = torch.as_tensor(P.position(prompts, src))
    k = torch.as_tensor(P.position(prompts, dst))
    return to_numpy(pattern[torch.arange(prompts.n), h, q, k])
