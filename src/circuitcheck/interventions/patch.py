"""`under: {patch: {hook, layer, at, source}}`: activation patching from a run on other prompts."""
from __future__ import annotations

from typing import Union

from pydantic import Field

from ..fields import Positions, Strict
from ..names import hook_name
from .base import Context, Kind, Source, positions, register


class Patch(Strict):
    hook: str = Field(description="`resid_pre`, `resid_post`, `attn_out`, `z` or a full hook name")
    layer: Union[int, str]
    at: Positions = None
    # spec.PromptSpec, resolved when spec builds the vocabulary (spec sits above this package)
    source: "PromptSpec" = Field(description="the prompt set the activation is taken from (same length)")  # noqa: F821


@register
class PatchKind(Kind):
    name = "patch"
    schema = Patch

    def hooks(self, body, ctx: Context):
        return patch(body, ctx)

    def sources(self, body) -> list[Source]:
        name = patch_hook_name(body)
        return [Source(("patch-source", body.source.model_dump_json(), name), body.source, name)]

    def references(self, body):
        yield from super().references(body)
        yield ("hook",), patch_hook_name(body), "hook"


PATCH_SHORT = ("resid_pre", "resid_post", "attn_out", "z")


def patch_hook_name(body) -> str:
    """The full hook name a patch writes to (`resid_pre` at layer 1 -> `blocks.1.hook_resid_pre`)."""
    return hook_name(body.hook, body.layer) if body.hook in PATCH_SHORT else body.hook


def patch(body, ctx: Context):
    """Replace an activation with the same activation from a run on the source prompts."""
    import torch

    source = PatchKind().sources(body)[0]
    src = ctx.sources[source.key][ctx.rows]
    at = positions(body.at, ctx)

    def hook(x, hook):
        if at is None:
            return src.to(x.dtype).clone()
        x = x.clone()
        rows = torch.arange(x.shape[0])[:, None]
        x[rows, at] = src[rows, at].to(x.dtype)
        return x

    return [(source.hook, hook)]
