"""`under: {ablate: {heads, method, at}}`: replace heads' outputs by zero, their mean, another
prompt's output, or make them attend only to BOS."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import prompts as P
from ..fields import Heads, Positions, Strict
from ..names import parse_head, pattern_name, z_name
from .base import Context, Kind, positions, register

Method = Literal["zero", "mean", "resample", "bos"]


class Ablate(Strict):
    heads: Heads
    method: Method = "mean"
    at: Positions = Field(None, description="destination positions; all when absent")


@register
class AblateKind(Kind):
    name = "ablate"
    schema = Ablate

    def heads(self, body, cfg) -> list[str]:
        return list(body.heads)

    def hooks(self, body, ctx: Context):
        return ablate_heads(self.heads(body, ctx.cfg), body.method, getattr(body, "at", None), ctx)

    def clean_needs(self, body, cfg) -> set[str]:
        if body.method not in ("mean", "resample"):
            return set()
        return {z_name(parse_head(h)[0]) for h in self.heads(body, cfg)}

    def check(self, body, prompts) -> None:
        # another row's output at the same padded index is, where that row is shorter, its padding
        if body.method == "resample" and prompts.mask is not None:
            raise P.PromptError("`method: resample` takes another prompt's output at the same index, and these "
                                "prompts are padded to different lengths: a shorter prompt would give its padding",
                                "use `method: mean` (over real tokens) or `zero`, or give prompts of one length",
                                param="method")


def ablate_heads(heads, method, at, ctx: Context):
    at = positions(at, ctx)
    by_layer: dict[int, list[int]] = {}
    for h in heads:
        layer, head = parse_head(h)
        by_layer.setdefault(layer, []).append(head)
    if method == "bos":
        return [(pattern_name(layer), _bos(hs, at)) for layer, hs in by_layer.items()]
    return [(z_name(layer), _replace_z(layer, hs, method, at, ctx)) for layer, hs in by_layer.items()]


def replacement(layer: int, method: str, ctx: Context, like):
    """What an ablated head's z becomes: zeros, its mean over prompts, or another prompt's z."""
    import torch

    if method == "zero":
        return torch.zeros_like(like)
    clean = ctx.clean[z_name(layer)]
    if method == "mean":
        if ctx.prompts.mask is None:
            return clean.mean(0, keepdim=True).expand_as(like)
        return mean_over_real_tokens(clean, ctx.prompts, ctx.rows)
    perm = resample_order(ctx.prompts.n, ctx.seed)
    return clean[torch.as_tensor(perm[ctx.rows])]


def mean_over_real_tokens(clean, prompts, rows: slice):
    """The mean of padded prompts' activations [n, seq, ...] over real tokens only, for `rows`.

    Positions align by token index from each prompt's first real token (BOS with BOS at 0): the
    mean at a prompt's j-th token is over the prompts that have a j-th token, whichever side the
    padding is on, so padding never enters a mean. Padding positions get zeros (the attention
    mask keeps every real token from reading them).
    """
    import torch

    n, seq = prompts.tokens.shape
    start, length = prompts.start, prompts.length
    j = np.arange(seq)
    real = j[None, :] < length[:, None]  # [n, seq]: prompt i has a j-th token
    at = np.where(real, start[:, None] + j[None, :], 0)  # where that token sits in the padded array
    dev = clean.device
    aligned = clean[torch.arange(n, device=dev)[:, None], torch.as_tensor(at, device=dev)]  # [n, seq(j), ...]
    weight = torch.as_tensor(real, dtype=clean.dtype, device=dev).reshape(n, seq, *[1] * (clean.dim() - 2))
    mean = (aligned * weight).sum(0) / weight.sum(0).clamp_min(1)  # [seq(j), ...]
    ri, ji = np.nonzero(real[rows])
    out = torch.zeros((len(range(n)[rows]),) + tuple(clean.shape[1:]), dtype=clean.dtype, device=dev)
    out[torch.as_tensor(ri, device=dev), torch.as_tensor(start[rows][ri] + ji, device=dev)] = \
        mean[torch.as_tensor(ji, device=dev)]
    return out


def resample_order(n: int, seed: int) -> np.ndarray:
    """A seeded derangement-free shuffle: each prompt takes another prompt's activation."""
    rng = np.random.default_rng(seed + 7919)
    return (np.arange(n) + rng.integers(1, n, size=n)) % n


def _replace_z(layer, heads, method, at, ctx):
    import torch

    def hook(z, hook):
        new = replacement(layer, method, ctx, z)
        z = z.clone()
        if at is None:
            z[:, :, heads] = new[:, :, heads]
        else:
            rows = torch.arange(z.shape[0])[:, None]
            for h in heads:
                z[rows, at, h] = new[rows, at, h]
        return z

    return hook


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
