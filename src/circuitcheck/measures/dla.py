"""`measure: {dla: {component: L0H1}}`: direct logit attribution of any component toward a token,
a difference of two tokens, or a direction given by weights, through the final LayerNorm frozen at
the run's scale; at the targets (mean) or at one position; optionally centred on a reference subset.

    {dla: {component: mlp1, toward: {diff: [correct, "tok[S1]"]}, share: false}}
    {dla: {component: L0N12, toward: {direction: "W_U[:, 3] - W_U[:, 5]"}, at: last, share: false}}

Components: heads `L0H1`, neurons `L0N12`, layers `mlp0`/`attn0`, `embed` (token + position),
`tok_embed`, `pos_embed`, and `bias` (every attention output bias b_O, the final LayerNorm's bias
and b_U along the direction). Heads, MLP layers, `embed` and `bias` add up to the logit (or logit
difference) exactly; `share` (the default) divides by that total at each read position.
"""
from __future__ import annotations

from typing import Literal, Union

import numpy as np
from pydantic import Field

from .. import attribution as A
from .. import prompts as P
from ..fields import Position, Strict
from ..weights import Expression
from ..weights import references as expression_references
from .base import Kind, register


class Diff(Strict):
    diff: tuple[A.Token, A.Token] = Field(description="W_U[:, a] - W_U[:, b]: a logit difference")


class Direction(Strict):
    direction: Expression = Field(description="one d_model vector, e.g. `W_U[:, 3] - W_U[:, 5]` or `W_in[1][:, 7]`")


class DLA(Strict):
    component: A.Component
    toward: Union[A.Token, Diff, Direction] = Field(
        "correct", description="a token (`correct`, `counterfactual`, an id, `tok[POS]`), {diff: [a, b]}, "
                               "or {direction: EXPR}")
    at: Position | None = Field(None, description="the position read; the prompt set's targets when absent")
    share: bool = Field(True, description="divide by the total along the direction (the logit, for a token)")
    centre: str | None = Field(
        None, description="subtract the mean over `all` prompts, or over those meeting a condition `tok[1] > tok[2]`")
    scale: Literal["frozen", "none"] = Field(
        "frozen", description="frozen: through the final LayerNorm at the run's scale; none: the raw residual")


@register
class DLAKind(Kind):
    name = "dla"
    schema = DLA

    def needs(self, body, cfg) -> set[str]:
        names = {"ln_final.hook_in"} if body.share or body.scale == "frozen" else set()
        return names | A.component_needs(body.component, cfg)

    def compute(self, body, run) -> np.ndarray:
        toward = body.toward.model_dump() if isinstance(body.toward, Strict) else body.toward
        return dla(run.model, run.cache, run.prompts, body.component, body.share, toward, body.at, body.scale,
                   body.centre)

    def references(self, body):
        yield from A.component_references(body.component, ("component",))
        if isinstance(body.toward, Diff):
            for j, t in enumerate(body.toward.diff):
                yield from A.token_references(t, ("toward", "diff", j))
        elif isinstance(body.toward, Direction):
            yield from expression_references(body.toward.direction, ("toward", "direction"))
        else:
            yield from A.token_references(body.toward, ("toward",))
        if body.at is not None:
            yield ("at",), body.at, "position"
        if body.centre not in (None, "all"):
            yield ("centre",), body.centre, "condition"


def dla_needs(cfg) -> set[str]:
    """Every hook any component of the model reads (all heads, MLP layers, embeddings)."""
    parts = [f"L{layer}H0" for layer in range(cfg.n_layers)] + ["embed"]
    if not getattr(cfg, "attn_only", False):
        parts += [f"mlp{layer}" for layer in range(cfg.n_layers)]
    return {"ln_final.hook_in"}.union(*(A.component_needs(c, cfg) for c in parts))


def dla(model, cache, prompts, component: str, share: bool = True, toward="correct", at=None,
        scale: str = "frozen", centre: str | None = None) -> np.ndarray:
    """Per prompt: the component's attribution (its share of the total with `share`), averaged over
    the read positions, minus its mean over the reference prompts with `centre`."""
    value = A.attribution(model, cache, prompts, component, toward, at, scale)
    if share:  # per read position, then averaged: the shares of all parts still add to 1
        value = value / A.total(model, cache, prompts, toward, at, scale)
    value = A.reads(prompts, at).mean(value)
    if centre is not None:
        value = A.centred(value, np.ones(prompts.n, bool) if centre == "all" else P.condition(centre, prompts))
    return value
