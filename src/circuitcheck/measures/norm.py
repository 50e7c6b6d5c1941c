"""`measure: {norm: {of: "W_E[3] @ OV[L0H1]"}}`, weight-only: the Euclidean norm of a named weight
vector, or the Frobenius norm of a matrix."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import weights as W
from ..language.fields import Strict
from .weights import Expression
from .base import Kind, register


class Norm(Strict):
    of: Expression = Field(description="a weight vector or matrix, e.g. `W_E[3] @ OV[L0H1]` or `QK[L1H1]`")


@register
class NormKind(Kind):
    name = "norm"
    schema = Norm
    weights_only = True

    def compute(self, body, run) -> np.ndarray:
        return np.float64(W.norm(W.evaluate(run.model, W.parse(body.of))))

    def references(self, body):
        yield from W.references(body.of, ("of",))
