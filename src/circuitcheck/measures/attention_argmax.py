"""`measure: {attention_argmax: {head: L0H1, from: ANS, to: argmax}}`: whether the largest weight of
a head's attention row lands on a key set (1 or 0 per prompt; with several queries, the share of
them whose row does). Sets are written as for `attention_mass`."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import keysets as K
from ..language.fields import Head, Strict
from ..language.names import parse_head, pattern_name
from .attention_mass import AttentionMassKind
from .base import register


class AttentionArgmax(Strict):
    head: Head
    from_: K.Queries = Field(alias="from", description="query positions: a position, a list, `A..B`, or "
                                                       "{where: \"copies_before > 0\"}")
    to: K.Keys = Field(description="key positions: a position, a list, `A..B`, or {where: \"tok[k] == tok[q]\"}")


@register
class AttentionArgmaxKind(AttentionMassKind):  # the same head, sets and checks; another statistic of the row
    name = "attention_argmax"
    schema = AttentionArgmax

    def compute(self, body, run) -> np.ndarray:
        layer, h = parse_head(body.head)
        queries = K.mask(run.prompts, body.from_)
        return K.argmax_in(run[pattern_name(layer)][:, h], queries, K.key_mask(run.prompts, body.to, K.is_causal(run.model)))

    def values(self, body, prompts, d_vocab) -> dict:
        one_query = isinstance(body.from_, (str, int)) and ".." not in str(body.from_)
        return {"binary": True} if one_query else {"value_range": (0.0, 1.0)}  # one query: 0 or 1
