"""`under: {scale_attention: {head, from, to, factor, on}}`: rescale one attention edge."""
from __future__ import annotations

import math

from typing import Literal

from pydantic import Field

from .. import prompts as P
from ..language.fields import Head, Number, Position, Strict
from ..language.names import parse_head, pattern_name
from .base import Context, Kind, register


class ScaleAttention(Strict):
    head: Head
    from_: Position = Field(alias="from")
    to: Position
    factor: Number = Field(description="the multiplier; 1 is clean")
    on: Literal["score", "weight"] = Field(
        "score", description="score: multiply the pre-softmax score (seed 000's scaling; factor 0 sets the score to "
        "0, which does NOT remove the edge); weight: multiply the post-softmax weight and renormalise the row "
        "(factor 0 removes the edge)")


@register
class ScaleAttentionKind(Kind):
    name = "scale_attention"
    schema = ScaleAttention

    def hooks(self, body, ctx: Context):
        return scale_attention(body, ctx)

    def check(self, body, prompts) -> None:
        """A scaled edge the causal mask hides (key after query) would scale nothing: refuse it."""
        later = int((P.position(prompts, body.to) > P.position(prompts, body.from_)).sum())
        if later:
            raise P.PromptError(
                f"`to: {body.to}` comes after `from: {body.from_}` in {later} of {prompts.n} prompts: the causal mask "
                "already hides that edge, so scaling it would change nothing",
                "attention runs from a query to itself or earlier keys: swap `from` and `to`, or pick an earlier key",
                param="to")


def attn_scale(cfg) -> float:
    scale = getattr(cfg, "attn_scale", -1)
    return float(scale) if scale and scale > 0 else math.sqrt(cfg.d_head)


def scale_attention(body, ctx: Context):
    """Rescale one attention edge (head, from → to) and renormalise the row.

    `on: score` multiplies the pre-softmax score: softmax(s with s_k → f·s_k) equals the clean row
    with p_k multiplied by exp((f-1)·s_k) and renormalised, so the edit is exact at `hook_pattern`
    given s_k = q·k / scale. Factor 0 sets the score to 0, which leaves the edge with weight.
    `on: weight` multiplies the post-softmax weight p_k by f and renormalises: factor 0 removes the
    edge (a row whose whole weight was on it keeps none).
    """
    import torch

    layer, head = parse_head(body.head)
    src = torch.as_tensor(P.position(ctx.prompts, body.from_)[ctx.rows])
    dst = torch.as_tensor(P.position(ctx.prompts, body.to)[ctx.rows])
    seen: dict = {}
    factor = float(body.factor)

    def keep(name):
        def hook(x, hook):
            seen[name] = x
            return x

        return hook

    def edit(pattern, hook):
        rows = torch.arange(pattern.shape[0])
        q = seen["q"][rows, src, head]
        k = seen["k"][rows, dst, head]
        score = (q * k).sum(-1) / attn_scale(ctx.cfg)
        pattern = pattern.clone()
        row = pattern[rows, head, src]
        boost = torch.exp((factor - 1.0) * score) if body.on == "score" else torch.full_like(score, factor)
        row[rows, dst] = row[rows, dst] * boost
        pattern[rows, head, src] = row / row.sum(-1, keepdim=True).clamp_min(1e-30)
        return pattern

    base = f"blocks.{layer}.attn"
    return [(f"{base}.hook_q", keep("q")), (f"{base}.hook_k", keep("k")), (pattern_name(layer), edit)]
