"""`measure: {targets: {metric: logit_diff, at: S2+3}}`: a metric at some targets of each row only:
one named by where it is read (`at: POS`), by its place among the row's targets (`index: 0`, `-1` the
last), or every target meeting a condition (`where: "target in 28..37"`, `where: "copies_before > 0"`;
the grammar of `measures/selections.py`). A row with no such target has no value and is left out
of the claim, as `where:` leaves prompts out; fewer than 2 rows with one is a collection error.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator, model_validator

from . import selections as S
from .. import prompts as P
from ..language.fields import Position, Strict
from .base import Kind, enough, register
from .metric import Metric, metric, metric_values

WAYS = ("index", "at", "where")


class Targets(Strict):
    metric: Metric = Field(description="the metric read at the chosen targets (their mean, where several)")
    index: int | None = Field(None, description="the target's place among the row's targets: 0 the first, -1 the last")
    at: Position | None = Field(None, description="the target read at this position (`S2+3`, `last`)")
    where: str | None = Field(None, description="every target meeting a condition: \"target in 28..37\", "
                                                "\"copies_before > 0\" (tok[q], q, target, copies_before)")

    @model_validator(mode="after")
    def _one_way(self):
        given = [w for w in WAYS if getattr(self, w) is not None]
        if len(given) != 1:
            raise ValueError("choose the targets one way: `index: 0`, `at: POS` or `where: \"target in 28..37\"`")
        return self

    @field_validator("where")
    @classmethod
    def _reads(cls, v):
        if v is not None:
            try:
                S.check(v)
            except P.PromptError as exc:
                raise ValueError(f"{exc} ({exc.hint})") from None
        return v


def chosen(body: Targets, prompts: P.PromptSet) -> np.ndarray:
    """[n, k] boolean: the real targets of each row that `body` picks."""
    real = np.ones(prompts.target_tok.shape, bool) if prompts.target_valid is None else prompts.target_valid
    if body.where is not None:
        return S.select(body.where, S.at_targets(prompts)) & real
    if body.at is not None:
        return (prompts.target_pos == P.position(prompts, body.at)[:, None]) & real
    count = real.sum(1)
    place = body.index if body.index >= 0 else count + body.index  # among the row's real targets
    rank = np.cumsum(real, 1) - 1
    return real & (rank == place[:, None] if np.ndim(place) else rank == place)


@register
class TargetsKind(Kind):
    name = "targets"
    schema = Targets

    def compute(self, body, run) -> np.ndarray:
        return metric(body.metric, run.logits, run.prompts, run.memo, chosen(body, run.prompts))

    def defined(self, body, prompts):
        return chosen(body, prompts).any(1)

    def check(self, body, prompts) -> None:
        if prompts.target_tok.shape[1] == 0:
            raise P.PromptError("these prompts have no targets to choose from", "use prompts with targets",
                                param=("metric",))
        way = next(w for w in WAYS if getattr(body, w) is not None)
        enough(self.defined(body, prompts), f"`{way}: {getattr(body, way)}`", (way,))

    def values(self, body, prompts, d_vocab) -> dict:
        one = body.where is None or prompts.target_tok.shape[1] == 1  # `index` and `at` pick one target per row
        return metric_values(body.metric, one, d_vocab)

    def references(self, body):
        if body.at is not None:
            yield ("at",), body.at, "position"
        if body.where is not None:
            yield from S.references(body.where, ("where",))
