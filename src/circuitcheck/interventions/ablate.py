"""`under: {ablate: {heads | neurons | hook, method, at, mean_over}}`: replace a component's
activation by zero, its mean over prompts (all, or those meeting `mean_over`), or another prompt's
activation; heads may also attend only to BOS. A component is heads (their output), MLP neurons,
or any hook's whole activation (see base.py, "components")."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from .. import prompts as P
from ..language.fields import Heads, Layer, Neurons, Positions, Strict
from ..language.names import parse_head, pattern_name
from . import base as C
from .base import Context, Kind, positions, register

Method = Literal["zero", "mean", "resample", "bos"]


class Ablate(Strict):
    heads: Heads | None = Field(None, description="heads whose output (hook_z) is replaced; with `hook: q|k|v|z`, "
                                                  "their slice of that activation")
    neurons: Neurons | None = Field(None, description="MLP neurons `L<layer>N<index>` (their mlp.hook_post "
                                                        "value; with `hook: mlp_pre`, before the activation function)")
    hook: str | None = Field(None, description="any activation: a short form with `layer` (resid_pre, resid_mid, "
                             "resid_post, attn_out, mlp_out, mlp_pre, mlp_post, q, k, v, z) or a full hook name")
    layer: Layer | None = Field(None, description="the layer of a short `hook:` form")
    method: Method = Field("mean", description="zero, mean (over prompts, per token), resample (another "
                           "prompt's activation), or bos (heads only: attend only to position 0)")
    at: Positions = Field(None, description="destination positions; all when absent")
    mean_over: str | None = Field(None, description="with `method: mean`: average only over the prompts meeting "
                                  "this `where:` condition (default: every prompt)")
    mean_from: "PromptSpec | None" = Field(  # noqa: F821
        None, description="with `method: mean`: a reference prompt set the mean is taken over, apart from the "
        "prompts the claim is judged on; default: the claim's own prompt spec with its seed moved by 1,000,003 "
        "(a JSONL data set or a population: its own prompts)")

    @model_validator(mode="after")
    def _consistent(self):
        C.check_selection(self)
        if self.method == "bos" and (self.heads is None or self.hook is not None):
            raise ValueError("`method: bos` makes heads attend to BOS: it takes `heads` without `hook`")
        if self.mean_over is not None and self.method != "mean":
            raise ValueError("`mean_over` chooses the prompts a mean is taken over: it goes with `method: mean`")
        if self.mean_from is not None and self.method != "mean":
            raise ValueError("`mean_from` names the prompts a mean is taken over: it goes with `method: mean`")
        return self


@register
class AblateKind(Kind):
    name = "ablate"
    schema = Ablate

    def heads(self, body, cfg) -> list[str]:
        return list(body.heads)

    def targets(self, body, cfg) -> list[C.Target]:
        if body.heads is None:
            return C.targets(body)
        return C.grouped([parse_head(h) for h in self.heads(body, cfg)], getattr(body, "hook", None) or "z")

    def hooks(self, body, ctx: Context):
        at = positions(getattr(body, "at", None), ctx)
        if body.method == "bos":
            return [(pattern_name(layer), _bos(hs, at)) for layer, hs in self._by_layer(body, ctx.cfg).items()]
        over = getattr(body, "mean_over", None)
        if getattr(body, "mean_from", None) is not None:  # the reference set's mean, placed by token index
            return [h for t, s in zip(self.targets(body, ctx.cfg), self.sources(body, ctx.cfg))
                    for h in C.edit_hooks(t.hook, _write_mean(t, ctx.sources[s.key], at, ctx))]
        return [h for t in self.targets(body, ctx.cfg)
                for h in C.edit_hooks(t.hook, _replace(t, body.method, at, over, ctx))]

    def sources(self, body, cfg=None) -> list[C.Source]:  # cfg: see Kind.sources
        """With `mean_from:`, the reference prompts whose mean replaces the activation."""
        if getattr(body, "mean_from", None) is None or body.method != "mean":
            return []
        key = ("ablate-mean", body.model_dump_json(by_alias=True))
        over = getattr(body, "mean_over", None)  # keep_only has no mean_over
        return [C.Source(key + (t.hook,), body.mean_from, t.hook, loc=("mean_from",),
                         reduce=lambda act, ps: C.by_token(act, ps, over), match="length", over=over)
                for t in self.targets(body, cfg)]

    def _by_layer(self, body, cfg) -> dict[int, list[int]]:
        return {int(t.hook.split(".")[1]): list(t.units) for t in self.targets(body, cfg)}

    def clean_needs(self, body, cfg) -> set[str]:
        if body.method not in ("mean", "resample") or getattr(body, "mean_from", None) is not None:
            return set()
        return {t.hook for t in self.targets(body, cfg)}

    def references(self, body):
        yield from super().references(body)
        yield from C.references(body)

    def check(self, body, prompts) -> None:
        C.check_over(getattr(body, "mean_over", None), prompts, "prompts")
        C.check_resample(body.method, prompts)
        # another row's output at the same padded index is, where that row is shorter, its padding
        if body.method == "resample" and prompts.mask is not None:
            raise P.PromptError("`method: resample` takes another prompt's output at the same index, and these "
                                "prompts are padded to different lengths: a shorter prompt would give its padding",
                                "use `method: mean` (over real tokens) or `zero`, or give prompts of one length",
                                param="method")


def replacement(hook: str, method: str, ctx: Context, like, over: str | None = None):
    """What an ablated activation becomes: zeros, its mean over prompts, or another prompt's value."""
    import torch

    if method == "zero":
        return torch.zeros_like(like)
    if method == "mean" and ctx.reference is not None:
        return C.reference_mean(hook, ctx, over)
    clean = ctx.clean[hook]
    if method == "mean":
        return C.mean(clean, ctx.prompts, over, ctx.rows)
    perm = resample_order(ctx.prompts.n, ctx.seed)
    return clean[torch.as_tensor(perm[ctx.rows])]


def resample_order(n: int, seed: int) -> np.ndarray:
    """A seeded derangement-free shuffle: each prompt takes another prompt's activation."""
    rng = np.random.default_rng(seed + 7919)
    return (np.arange(n) + rng.integers(1, n, size=n)) % n


def _replace(target: C.Target, method, at, over, ctx):
    def edit(x):
        return C.write(x, replacement(target.hook, method, ctx, x, over), target.units, at)

    return edit


def _write_mean(target: C.Target, mean, at, ctx):
    """Write a reference set's per-token mean ([seq, ...]) into the claim's prompts."""
    def edit(x):
        return C.write(x, C.place(mean, ctx.prompts, ctx.rows), target.units, at)

    return edit


def _bos(heads, at):
    """BOS-ablation (seed 001): the head attends only to position 0 from the chosen rows."""
    import torch

    def hook(pattern, hook):
        pattern = pattern.clone()
        one_hot = torch.zeros_like(pattern[:, 0])
        one_hot[..., 0] = 1
        for h in heads:
            if at is None:
                pattern[:, h] = one_hot
            else:
                rows = torch.arange(pattern.shape[0])[:, None]
                pattern[rows, h, at] = one_hot[rows, at]
        return pattern

    return hook
