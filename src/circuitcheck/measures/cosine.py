"""`measure: {cosine: {a: "W_E[3] @ OV[L0H1]", b: "W_E[5] @ OV[L0H1]"}}`, weight-only: the cosine
similarity of two named weight vectors (OV images of two tokens, a head's output for a token
against an MLP neuron's input weights `W_in[1][:, 12]`, two unembedding columns `W_U[:, 3]`)."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import weights as W
from ..language.fields import Strict
from .weights import Expression
from .base import Kind, register


class Cosine(Strict):
    a: Expression = Field(description="a weight vector, e.g. `W_E[3] @ OV[L0H1]`")
    b: Expression = Field(description="a weight vector of the same length, e.g. `W_in[1][:, 12]`")


@register
class CosineKind(Kind):
    name = "cosine"
    schema = Cosine
    weights_only = True
    value_range = (-1.0, 1.0)

    def compute(self, body, run) -> np.ndarray:
        a, b = (W.evaluate(run.model, W.parse(x)) for x in (body.a, body.b))
        return np.float64(W.cosine(a, b))

    def references(self, body):
        yield from W.references(body.a, ("a",), dims=1)
        yield from W.references(body.b, ("b",), dims=1)
