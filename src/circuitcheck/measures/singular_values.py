"""`measure: {singular_values: {of: "W_E @ OV[L0H1] @ W_U", top: 1, take: share}}`, weight-only:
a statistic of the singular values of a named weight matrix or product (see `weights.py`).

`take: value` is the `top`-th largest singular value, `ratio` the `top`-th over the next, `share`
the part of the squared spectrum in the `top` largest (how close to rank `top` the map is).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from . import weights as W
from ..language.fields import Strict
from .weights import Expression
from .base import Kind, register


class SingularValues(Strict):
    of: Expression = Field(description="a weight matrix or product, e.g. `OV[L0H1]` or `W_E @ OV[L0H1] @ W_U`")
    top: int = Field(1, ge=1, description="which singular value (1 = the largest), or how many for `share`")
    take: Literal["value", "ratio", "share"] = Field(
        "share", description="value: s[top]; ratio: s[top] / s[top+1]; share: squared spectrum in the top `top`")


@register
class SingularValuesKind(Kind):
    name = "singular_values"
    schema = SingularValues
    weights_only = True

    def compute(self, body, run) -> np.ndarray:
        matrix = W.evaluate(run.model, W.parse(body.of))
        return np.float64(W.singular_value_statistic(matrix, body.top, body.take))

    def references(self, body):
        yield from W.references(body.of, ("of",), dims=2)
