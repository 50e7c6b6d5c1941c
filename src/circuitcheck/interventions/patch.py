"""`under: {patch: {hook | heads | neurons, layer, at, source, mean, mean_over}}`: activation
patching, prompt by prompt from a run on other prompts, or from the mean of a prompt set."""
from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from .. import prompts as P
from ..language.fields import Heads, Layer, Neurons, Positions, Strict
from . import base as C
from .base import Context, Kind, Source, positions, register


class Patch(Strict):
    hook: str | None = Field(None, description="a short form with `layer` (resid_pre, resid_mid, resid_post, "
                             "attn_out, mlp_out, mlp_pre, mlp_post, q, k, v, z) or a full hook name")
    layer: Layer | None = Field(None, description="the layer of a short `hook:` form")
    heads: Heads | None = Field(None, description="only these heads' slice (of hook_z, or of `hook: q|k|v|z`)")
    neurons: Neurons | None = Field(None, description="only these MLP neurons `L<layer>N<index>` (of mlp.hook_post, "
                                                        "or of `hook: mlp_pre`)")
    at: Positions = None
    # spec.PromptSpec, resolved when spec builds the vocabulary (spec sits above this package)
    source: "PromptSpec" = Field(description="the prompt set the activation is taken from")  # noqa: F821
    mean: bool = Field(False, description="patch the mean over the source prompts (any number of them; per "
                       "position, or at each `at` position as the source's own prompts place it) instead of "
                       "each source prompt into the claim's prompt of the same index")
    mean_over: str | None = Field(None, description="with `mean: true`: only the source prompts meeting this "
                                  "`where:` condition")

    @model_validator(mode="after")
    def _consistent(self):
        C.check_selection(self)
        if self.mean_over is not None and not self.mean:
            raise ValueError("`mean_over` chooses the source prompts a mean is taken over: add `mean: true`")
        return self


@register
class PatchKind(Kind):
    name = "patch"
    schema = Patch

    def hooks(self, body, ctx: Context):
        at = positions(body.at, ctx)
        return [h for t, s in zip(C.targets(body), self.sources(body))
                for h in C.edit_hooks(t.hook, _patch(ctx.sources[s.key], t.units, at, body.mean, ctx))]

    def sources(self, body, cfg=None) -> list[Source]:
        if not body.mean:  # the source run's whole activation, shared by every patch of that hook
            return [Source(("patch-source", body.source.model_dump_json(), t.hook), body.source, t.hook)
                    for t in C.targets(body)]
        key = ("patch-mean", body.model_dump_json(by_alias=True))
        return [Source(key + (t.hook,), body.source, t.hook, reduce=_mean_of(body),
                       match="any" if body.at else "length", over=body.mean_over)
                for t in C.targets(body)]

    def references(self, body):
        yield from super().references(body)
        yield from C.references(body)



def patch_hook_name(body) -> str:
    """The full hook name a patch writes to (`resid_pre` at layer 1 -> `blocks.1.hook_resid_pre`)."""
    return C.targets(body)[0].hook


def _mean_of(body):
    """(activation over the source prompts, source PromptSet) -> the mean a patch writes: [1, seq, ...]
    over every position, or [1, k, ...] at each of the `at` positions, placed in each source prompt."""

    def reduce(act, ps: P.PromptSet):
        if body.at is None:
            return C.by_token(act, ps, body.mean_over)  # [seq, ...]: placed by token index in each claim prompt
        import torch

        keep = np.ones(ps.n, bool) if body.mean_over is None else C.where_mask(body.mean_over, ps)
        rows = torch.as_tensor(np.flatnonzero(keep))
        at = body.at if isinstance(body.at, list) else [body.at]
        picked = [act[rows, torch.as_tensor(P.position(ps, a))[rows]].mean(0) for a in at]
        return torch.stack(picked)[None]

    return reduce


def _patch(src, units, at, mean: bool, ctx: Context):
    import torch

    src = src if mean else src[ctx.rows]

    def edit(x):
        if not mean:
            return C.write(x, src, units, at)
        if at is None:
            return C.write(x, C.place(src, ctx.prompts, ctx.rows), units, None)
        x, mean_at = x.clone(), src.to(x.device, x.dtype)
        rows = torch.arange(x.shape[0])
        for j in range(at.shape[1]):  # each named position takes the source's mean at that position
            if units is None:
                x[rows, at[:, j]] = mean_at[0, j]
            else:
                for u in units:
                    x[rows, at[:, j], u] = mean_at[0, j, u]
        return x

    return edit
