"""`measure: {ov_norm: {head, tokens}}`, weight-only: the norm of each token's path through a
head's OV circuit, judged with `expect: {order: ...}`."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ..language.fields import Head, Strict
from ..language.names import parse_head
from .base import Kind, f64, register, to_numpy


class OVNorm(Strict):
    """Weight-only: the norm of each token's path through a head's OV circuit, W_E[t] W_V W_O."""

    head: Head
    tokens: list[int] = Field(min_length=2)


@register
class OVNormKind(Kind):
    name = "ov_norm"
    schema = OVNorm
    weights_only = True
    vector = True
    unit = "token"

    def compute(self, body, run) -> np.ndarray:
        return ov_norm(run.model, body.head, body.tokens)

    def units(self, body) -> list:
        return list(body.tokens)

    def references(self, body):
        yield from super().references(body)
        for j, t in enumerate(body.tokens):  # rows of W_E: checked against the input vocabulary at collection
            yield ("tokens", j), ("d_vocab", t, "token"), "index"


def ov_norm(model, head: str, tokens: list[int]) -> np.ndarray:
    """Per token t: || W_E[t] W_V W_O || for one head: how much the head can write when it reads t."""
    layer, h = parse_head(head)
    w = f64(model.W_E)[tokens] @ f64(model.W_V[layer, h]) + f64(model.b_V[layer, h])
    return to_numpy((w @ f64(model.W_O[layer, h])).norm(dim=-1))
