"""`measure: {predicts: {token: counterfactual}}`: 1 where the model's top prediction is a named token
that need not be the answer ("the error is a carry flip": the top-1 is the named alternative), else
0; at the targets (the share of a prompt's targets) or at one position `at`. Tokens as for `dla`:
`correct`, `counterfactual`, an id, or `tok[POS]`.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import attribution as A
from ..language.fields import Position, Strict
from .base import Kind, register


class Predicts(Strict):
    token: A.Token = Field(description="the token the top prediction is claimed to be: `counterfactual`, an id, "
                                       "`tok[POS]`, or `correct` (the same as `accuracy`)")
    at: Position | None = Field(None, description="the position read; the prompt set's targets when absent")


@register
class PredictsKind(Kind):
    name = "predicts"
    schema = Predicts

    def compute(self, body, run) -> np.ndarray:
        return predicts(run.logits, run.prompts, body.token, body.at)

    def values(self, body, prompts, d_vocab) -> dict:
        one = body.at is not None or prompts.target_tok.shape[1] == 1
        return {"binary": True} if one else {"value_range": (0.0, 1.0)}

    def references(self, body):
        yield from A.token_references(body.token, ("token",))
        if body.at is not None:
            yield ("at",), body.at, "position"


def predicts(logits, prompts, token, at=None) -> np.ndarray:
    """Per prompt: the share of its read positions where the largest logit is `token`'s."""
    import torch

    where = A.reads(prompts, at)
    rows = torch.arange(prompts.n)[:, None]
    top = logits[rows, torch.as_tensor(where.pos)].argmax(-1).cpu().numpy()  # [n, k]
    return where.mean((top == A.token_ids(prompts, token, where)).astype(np.float64))
