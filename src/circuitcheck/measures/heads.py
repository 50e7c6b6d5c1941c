"""`measure: {heads: {any: layer 1, of: {attention_argmax: {from: S2, to: S1+1}}}}`: per prompt,
whether some head (`any`) or every head (`all`) of a set does something, before averaging over
prompts: the largest (`any`) or smallest (`all`) of the heads' values in each prompt. With 0/1 values
(`attention_argmax` of one query, or any measure with `above: x`, which counts a head as doing it where
its value is at least x) that is OR and AND inside a prompt. `for: {any: ...}` is another claim: that
one head does it on average over the prompts.

`of:` is a measure that takes a `head` (attention, attention_mass, attention_argmax, head_score,
row_class), written without it; each head of the set goes there in turn.
"""
from __future__ import annotations

import re
from typing import Any, Union

import numpy as np
from pydantic import Field, model_validator

from ..language.fields import Head, Strict
from .base import KINDS, Kind, register

LAYER = re.compile(r"^layer\s+(\d+)$")


class Heads(Strict):
    any: Union[list[Head], str, None] = Field(None, description="a list of heads, or `layer N`: does some head?")
    all: Union[list[Head], str, None] = Field(None, description="a list of heads, or `layer N`: does every head?")
    of: dict[str, Any] = Field(description="a measure taking a head, written without `head:`, e.g. "
                                           "{attention_argmax: {from: S2, to: S1+1}}")
    above: float | None = Field(None, description="count a head where its value is at least this (0/1 per head)")

    @model_validator(mode="after")
    def _readable(self):
        if (self.any is None) == (self.all is None):
            raise ValueError("write `any: HEADS` or `all: HEADS` (a list of heads, or `layer N`)")
        heads = self.set
        if isinstance(heads, str) and not LAYER.match(heads.strip()):
            raise ValueError(f"cannot read heads {heads!r}: write a list of heads or `layer N`")
        if isinstance(heads, list) and not heads:
            raise ValueError("name at least one head")
        if len(self.of) != 1:
            raise ValueError("`of` is one measure: {attention_argmax: {from: S2, to: S1+1}}")
        (kind, body), = self.of.items()
        if kind not in KINDS or "head" not in getattr(KINDS[kind].schema, "model_fields", {}):
            takes = ", ".join(k for k, v in KINDS.items() if "head" in getattr(v.schema, "model_fields", {}))
            raise ValueError(f"`of` is a measure that takes a head ({takes}), not {kind!r}")
        if not isinstance(body, dict) or "head" in body:
            raise ValueError("write the measure in `of` without `head:`: each head of the set goes there")
        self.inner("L0H0")  # its own fields, checked now
        return self

    @property
    def quantifier(self) -> str:
        return "any" if self.any is not None else "all"

    @property
    def set(self):
        return self.any if self.any is not None else self.all

    def inner(self, head: str):
        """The measure of `of` for one head: (kind, body)."""
        (kind, body), = self.of.items()
        return KINDS[kind], KINDS[kind].schema.model_validate({**body, "head": head})

    def members(self, n_heads: int) -> list[str]:
        m = LAYER.match(self.set.strip()) if isinstance(self.set, str) else None
        return [f"L{m[1]}H{h}" for h in range(n_heads)] if m else list(self.set)


@register
class HeadsKind(Kind):
    name = "heads"
    schema = Heads

    def needs(self, body, cfg) -> set[str]:
        return set().union(*(kind.needs(inner, cfg) for kind, inner in map(body.inner, body.members(cfg.n_heads))))

    def compute(self, body, run) -> np.ndarray:
        per_head = np.stack([kind.compute(inner, run) for kind, inner in
                             map(body.inner, body.members(run.model.cfg.n_heads))])  # [heads, n]
        if body.above is not None:
            per_head = np.where(np.isnan(per_head), np.nan, (per_head >= body.above).astype(np.float64))
        return per_head.max(0) if body.quantifier == "any" else per_head.min(0)

    def streams_for(self, body) -> bool:
        kind, inner = body.inner("L0H0")
        return kind.streams_for(inner)

    def values(self, body, prompts, d_vocab) -> dict:
        kind, inner = body.inner("L0H0")
        return {"binary": True} if body.above is not None else kind.values(inner, prompts, d_vocab)

    def check(self, body, prompts) -> None:
        kind, inner = body.inner("L0H0")
        kind.check(inner, prompts)

    def defined(self, body, prompts):
        kind, inner = body.inner("L0H0")  # which prompts have a value depends on positions, not on the head
        return kind.defined(inner, prompts)

    def references(self, body):
        loc = (body.quantifier,)
        m = LAYER.match(body.set.strip()) if isinstance(body.set, str) else None
        if m:
            yield loc, int(m[1]), "layer"
        else:
            yield from ((loc + (j,), head, "head") for j, head in enumerate(body.set))
        kind, inner = body.inner("L0H0")
        (name, _), = body.of.items()
        for where, value, what in kind.references(inner):
            if what != "head":
                yield ("of", name) + where, value, what
