"""`measure: {attention_mass: {head: L1H1, from: S2..last, to: {where: "tok[k] == tok[q]"}}}`: a
head's attention from a set of queries to a set of keys, per prompt: the mass on the keys,
averaged over the queries; with `paired: true`, the mean of the single weights from the i-th
query to the i-th key (induction: `from: S2..last-1, to: S1+1..S2-1`).

A set is a position, a list of positions, an inclusive range `A..B`, or (keys) `{where: ...}`:
the keys up to each query whose token meets `tok[k] OP X`, X being `tok[q]`, `tok[POS]` or a number.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import keysets as K
from .. import prompts as P
from ..language.fields import Head, Strict
from ..language.names import parse_head, pattern_name
from .base import Kind, enough, register


class AttentionMass(Strict):
    head: Head
    from_: K.Queries = Field(alias="from", description="query positions: a position, a list, `A..B`, or "
                                                       "{where: \"copies_before > 0\"}")
    to: K.Keys = Field(description="key positions: a position, a list, `A..B`, or {where: \"tok[k] == tok[q]\"}")
    paired: bool = Field(False, description="pair the i-th query with the i-th key instead of summing over keys")


@register
class AttentionMassKind(Kind):
    name = "attention_mass"
    schema = AttentionMass
    value_range = (0.0, 1.0)  # a share of a row's attention, or a mean of single weights

    def needs(self, body, cfg) -> set[str]:
        return {pattern_name(parse_head(body.head)[0])}

    def compute(self, body, run) -> np.ndarray:
        layer, h = parse_head(body.head)
        pattern = run[pattern_name(layer)][:, h]
        if body.paired:
            if isinstance(body.from_, K.QueryWhere):
                raise P.PromptError("`paired` takes the i-th query with the i-th key, so `from` is a list or range",
                                    "write `from` as positions, or drop `paired`")
            queries, keys = K.ordered(run.prompts, body.from_), K.ordered(run.prompts, body.to)
            if queries.shape != keys.shape:
                raise P.PromptError(f"`paired` needs as many queries as keys: {queries.shape[1]} and {keys.shape[1]}",
                                    "give `from` and `to` as many positions each, the i-th query with the i-th key")
            return K.pairs(pattern, queries, keys)
        return K.mass(pattern, K.mask(run.prompts, body.from_), K.key_mask(run.prompts, body.to, K.is_causal(run.model)))

    def defined(self, body, prompts):
        return K.defined(prompts, body.from_)

    def check(self, body, prompts) -> None:
        try:
            has = self.defined(body, prompts)
        except P.PromptError as exc:  # a position the condition names: the error stands at the condition
            exc.param = exc.param or ("from", "where")
            raise
        enough(has, f"the query set {{where: {getattr(body.from_, 'where', '')!r}}}", ("from", "where"))

    def references(self, body):
        yield ("head",), body.head, "head"
        yield from K.references(body.from_, ("from",))
        yield from K.references(body.to, ("to",))
