"""`measure: {dla: {component: L0H1}}`: direct logit attribution of any component toward a token,
a difference of two tokens, or a direction given by weights, through the final LayerNorm frozen at
the run's scale; at the targets (mean) or at one position; optionally centred on a reference subset.

    {dla: {component: mlp1, toward: {diff: [correct, "tok[S1]"]}, share: false}}
    {dla: {component: L0N12, toward: {direction: "W_U[:, 3] - W_U[:, 5]"}, at: last, share: false}}
    {dla: {component: L1H0, toward: {fitted: {hook: blocks.1.hook_resid_post, at: end,
                                              between: ["tok[IO] < tok[S]", "tok[IO] > tok[S]"]}}}}

Components: heads `L0H1`, neurons `L0N12`, layers `mlp0`/`attn0`, `embed` (token + position),
`tok_embed`, `pos_embed`, and `bias` (every attention output bias b_O, the final LayerNorm's bias
and b_U along the direction). Heads, MLP layers, `embed` and `bias` add up to the logit (or logit
difference) exactly; `share` (the default) is the component's part of that total, a ratio of means
over the prompts (`shares`).
"""
from __future__ import annotations

import re
from typing import Literal, Union

import numpy as np
from pydantic import Field

from . import attribution as A
from . import keysets as K
from .. import prompts as P
from ..language.fields import Position, Strict
from ..language.names import HOOK
from .weights import Expression
from .weights import references as expression_references
from .base import Kind, register

# The hooks holding one d_model vector per position: what a direction can be fitted from.
VECTOR_HOOK = re.compile(r"^(hook_embed|hook_pos_embed|ln_final\.hook_(in|normalized)"
                         r"|blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out|mlp_in))$")


class Diff(Strict):
    diff: tuple[A.Token, A.Token] = Field(description="W_U[:, a] - W_U[:, b]: a logit difference")


class Direction(Strict):
    direction: Expression = Field(description="one d_model vector, e.g. `W_U[:, 3] - W_U[:, 5]` or `W_in[1][:, 7]`")


class Fit(Strict):
    hook: str = Field(description="the activation fitted from, a d_model hook such as `blocks.1.hook_resid_post`")
    at: Position = Field(description="the position it is read at in every prompt")
    between: tuple[str, str] = Field(
        description="two `where:` conditions selecting the prompts of each mean: mean(first) - mean(second)")


class Fitted(Strict):
    fitted: Fit = Field(description="the difference of the mean activation over two subsets of the claim's "
                                    "prompts, at unit length")


class DLA(Strict):
    component: A.Component
    toward: Union[A.Token, Diff, Direction, Fitted] = Field(
        "correct", description="a token (`correct`, `counterfactual`, an id, `tok[POS]`), {diff: [a, b]}, "
                               "{direction: EXPR}, or {fitted: {hook, at, between: [A, B]}}")
    at: Position | None = Field(None, description="the position read; the prompt set's targets when absent")
    share: bool = Field(True, description="the part of the total along the direction (the logit, for a token): "
                                          "mean attribution over mean total")
    centre: str | None = Field(
        None, description="subtract the mean over `all` prompts, or over those meeting a condition `tok[1] > tok[2]`")
    source: K.Queries | None = Field(
        None, description="a head only: the part of its output read from these key positions (a position, a list, "
                          "`A..B`, or {where: ...})")
    scale: Literal["frozen", "mean", "fit", "none"] = Field(
        "frozen", description="how the final LayerNorm is read: frozen (each prompt's own scale), mean (the mean "
                              "scale over the prompts), fit (a least-squares affine fit over the prompts), none "
                              "(the raw residual)")


@register
class DLAKind(Kind):
    name = "dla"
    schema = DLA
    def needs(self, body, cfg) -> set[str]:
        names = {"ln_final.hook_in"} if body.share or body.scale != "none" else set()
        if isinstance(body.toward, Fitted):  # the activation the direction is fitted from
            names.add(body.toward.fitted.hook)
        if body.source is not None:
            names |= A.source_needs(body.component)
        return names | A.component_needs(body.component, cfg)

    def streams_for(self, body) -> bool:
        """`centre`, `share`, a fitted direction and the `mean` and `fit` readings of the final LayerNorm
        average over every prompt of the run: measured chunk by chunk (more prompts than the batch size)
        each chunk would use its own mean. Whole runs, then; every other dla reads each prompt's own rows
        (the final LayerNorm's scale at its positions)."""
        return (body.centre is None and not isinstance(body.toward, Fitted) and body.scale in ("frozen", "none")
                and not body.share)

    def zero_mean_why(self, body) -> str | None:
        if body.centre == "all":  # dla(): value - value[every prompt].mean()
            return "`centre: all` subtracts the mean over every prompt"
        return None

    def compute(self, body, run) -> np.ndarray:
        toward = body.toward.model_dump() if isinstance(body.toward, Strict) else body.toward
        return dla(run.model, run.cache, run.prompts, body.component, body.share, toward, body.at, body.scale,
                   body.centre, body.source)

    def references(self, body):
        yield from A.component_references(body.component, ("component",))
        if isinstance(body.toward, Diff):
            for j, t in enumerate(body.toward.diff):
                yield from A.token_references(t, ("toward", "diff", j))
        elif isinstance(body.toward, Direction):
            yield from expression_references(body.toward.direction, ("toward", "direction"))
        elif isinstance(body.toward, Fitted):
            fit = body.toward.fitted
            yield ("toward", "fitted", "hook"), fit.hook, "hook"
            yield ("toward", "fitted", "at"), fit.at, "position"
            for j, condition in enumerate(fit.between):
                yield ("toward", "fitted", "between", j), condition, "condition"
        else:
            yield from A.token_references(body.toward, ("toward",))
        if body.at is not None:
            yield ("at",), body.at, "position"
        if body.source is not None:
            yield from K.references(body.source, ("source",))
        if body.centre not in (None, "all"):
            yield ("centre",), body.centre, "condition"

    def check(self, body, prompts) -> None:
        if body.source is not None and not re.fullmatch(r"L\d+H\d+|\$\w+", body.component):
            raise P.PromptError(f"`source` splits a head's output by the key it read from; {body.component!r} is no "
                                "head", "name a head (`L1H1`), or drop `source`", param=("source",))
        if not isinstance(body.toward, Fitted):
            return
        hook = body.toward.fitted.hook
        if HOOK.match(hook) and not VECTOR_HOOK.match(hook):  # unknown names: the references check says so
            raise P.PromptError(f"a fitted direction reads one d_model vector per position, which {hook!r} is not",
                                "fit from blocks.<layer>.hook_resid_pre / hook_resid_mid / hook_resid_post / "
                                "hook_attn_out / hook_mlp_out, hook_embed, hook_pos_embed or ln_final.hook_in",
                                param=("toward", "fitted", "hook"))
        A.fit_subsets(prompts, body.toward.fitted.between, ("toward", "fitted", "between"))  # each mean has prompts


def shares(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The share of the total is a ratio of means, R = mean(part) / mean(total): a mean of per-prompt
    ratios need not exist where totals come near 0 (one prompt's 0.01 total made a share of 3.67).
    Per prompt it returns R + (part - R·total) / mean(total), the ratio's linearised contributions:
    their mean is R exactly, their spread is the ratio's delta-method spread, and the parts' values
    still add to 1 on every prompt. Totals of both signs are refused: a share of them means nothing."""
    total = np.asarray(total, np.float64)
    if (total > 0).any() and (total <= 0).any() or not total.any():
        raise P.PromptError(f"`share`: the total along the direction crosses 0 ({int((total <= 0).sum())} of "
                            f"{total.size} prompts at or below 0, mean {total.mean():.3g}), so a share of it is "
                            "undefined", "judge the attribution itself with `share: false`")
    ratio = part.mean() / total.mean()
    return ratio + (part - ratio * total) / total.mean()


def dla_needs(cfg) -> set[str]:
    """Every hook any component of the model reads (all heads, MLP layers, embeddings)."""
    parts = [f"L{layer}H0" for layer in range(cfg.n_layers)] + ["embed"]
    if not getattr(cfg, "attn_only", False):
        parts += [f"mlp{layer}" for layer in range(cfg.n_layers)]
    return {"ln_final.hook_in"}.union(*(A.component_needs(c, cfg) for c in parts))


def dla(model, cache, prompts, component: str, share: bool = True, toward="correct", at=None,
        scale: str = "frozen", centre: str | None = None, source=None) -> np.ndarray:
    """Per prompt: the component's attribution averaged over the read positions (with `share`, its
    contribution to the share of the total, `shares`), minus its mean over the reference prompts with
    `centre`; with `source`, only the part of a head's output it read from those key positions."""
    keys = None if source is None else K.mask(prompts, source)
    where = A.reads(prompts, at)
    value = where.mean(A.attribution(model, cache, prompts, component, toward, at, scale, keys))
    if share:
        value = shares(value, where.mean(A.total(model, cache, prompts, toward, at, scale)))
    if centre is not None:
        value = A.centred(value, np.ones(prompts.n, bool) if centre == "all" else P.condition(centre, prompts))
    return value
