"""`measure: {logit_diff: {of: correct, vs: "tok[S1]"}}`: the logit of one named token minus
another's, per prompt: the answer against a counterfactual fixed (`vs: 7`) or taken from each
prompt (`tok[POS]`, the token at a named position). At the targets (mean), or at `at: POS`.
(The bare metric `measure: logit_diff` is the correct token against the best other token.)"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import attribution as A
from ..language.fields import Position, Strict
from .base import Kind, register


class LogitDiff(Strict):
    of: A.Token = Field("correct", description="`correct`, a token id, or `tok[POS]`")
    vs: A.Token = Field(description="the token it is compared with: an id, `tok[POS]` or `correct`")
    at: Position | None = Field(None, description="the position read; the prompt set's targets when absent")


@register
class LogitDiffKind(Kind):
    name = "logit_diff"
    schema = LogitDiff

    def compute(self, body, run) -> np.ndarray:
        return A.logit_diff(run.logits, run.prompts, body.of, body.vs, body.at)

    def references(self, body):
        yield from super().references(body)
        yield from A.token_references(body.of, ("of",))
        yield from A.token_references(body.vs, ("vs",))
