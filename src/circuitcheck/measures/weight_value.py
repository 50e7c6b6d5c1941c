"""`measure: {weight_value: {of: "mean(sq(cos(W_in[0], W_U[:, 3])))"}}`, weight-only: the one number a
weight expression gives once reduced (`norm`, `mean`, `sum`, `max`, `min` over every entry or one
axis; `cos(X, v)` per column; `sq`, `abs` per entry; LayerNorm weights `ln1_w[L]`, `ln2_w[L]`,
`ln_final_w`). Exact, like `norm`."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import weights as W
from ..language.fields import Strict
from .weights import Expression
from .base import Kind, register


class WeightValue(Strict):
    of: Expression = Field(description="a weight expression reduced to one number, e.g. `mean(norm(W_in[0], 0))` or "
                                       "`mean(sq(cos(W_in[0], W_U[:, 3])))`")


@register
class WeightValueKind(Kind):
    name = "weight_value"
    schema = WeightValue
    weights_only = True

    def compute(self, body, run) -> np.ndarray:
        value = W.evaluate(run.model, W.parse(body.of))
        if value.numel() != 1:
            raise W.ExpressionError(f"{body.of!r} has shape {tuple(value.shape)}, not one number: reduce it with "
                                    "mean(...), sum(...), max(...), min(...) or norm(...)")
        return np.float64(value.item())

    def references(self, body):
        yield from W.references(body.of, ("of",))
