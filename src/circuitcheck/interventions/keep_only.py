"""`under: {keep_only: {heads, method}}`: ablate every head of the model except these."""
from __future__ import annotations

from ..language.fields import Heads, Strict
from ..language.names import all_heads
from .ablate import AblateKind, Method
from .base import register


class KeepOnly(Strict):
    heads: Heads
    method: Method = "mean"


@register
class KeepOnlyKind(AblateKind):
    name = "keep_only"
    schema = KeepOnly

    def heads(self, body, cfg) -> list[str]:
        keep = set(body.heads)
        return [h for h in all_heads(cfg) if h not in keep]
