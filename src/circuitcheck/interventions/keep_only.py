"""`under: {keep_only: {heads, method}}`: ablate every head of the model except these."""
from __future__ import annotations

from pydantic import Field

from ..language.fields import Heads, Strict
from ..language.names import all_heads
from .ablate import AblateKind, Method
from . import base as C
from .base import register


class KeepOnly(Strict):
    heads: Heads
    method: Method = "mean"
    mean_from: "PromptSpec | None" = Field(  # noqa: F821 (spec.PromptSpec, resolved by spec's vocabulary)
        None, description="with `method: mean`: the reference prompt set the means are taken over (as ablate's)")


@register
class KeepOnlyKind(AblateKind):
    name = "keep_only"
    schema = KeepOnly

    def heads(self, body, cfg) -> list[str]:
        keep = set(body.heads)
        return [h for h in all_heads(cfg) if h not in keep]

    def sources(self, body, cfg=None):
        """Without the model (collection) every head is unknown: layer 0's z stands for all (same prompts)."""
        if cfg is None and getattr(body, "mean_from", None) is not None and body.method == "mean":
            return [C.Source(("ablate-mean", body.model_dump_json(by_alias=True), "blocks.0.attn.hook_z"),
                             body.mean_from, "blocks.0.attn.hook_z", loc=("mean_from",), match="length")]
        return super().sources(body, cfg)
