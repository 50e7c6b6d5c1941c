"""Interventions: the hook functions that ablate, keep, rescale and patch heads during a run.

Two TransformerLens 4.3 traps shape this module:
- edits made at `hook_attn_scores` are discarded, so an attention *score* is rescaled at
  `hook_pattern`, from q and k captured earlier in the same forward pass;
- native bridges have no per-head `hook_result`, so a head is ablated at `hook_z` (its output
  is `z @ W_O`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import prompts as P
from .spec import Intervention, parse_head, patch_hook_name


@dataclass
class Context:
    """What a hook needs besides the activation: the prompts, the clean run, the rows in this chunk."""

    cfg: object
    prompts: P.PromptSet
    clean: dict  # hook name -> clean activation over all prompts
    rows: slice
    seed: int
    sources: dict  # patch source key -> activations over all prompts


def z_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def pattern_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def all_heads(cfg) -> list[str]:
    return [f"L{layer}H{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]


def ablated_heads(iv: Intervention, cfg) -> list[str]:
    if iv.ablate is not None:
        return list(iv.ablate.heads)
    keep = set(iv.keep_only.heads)
    return [h for h in all_heads(cfg) if h not in keep]


def clean_needs(under, cfg) -> set[str]:
    """Clean activations the interventions read (means and resamples of z)."""
    need = set()
    for iv in under:
        if iv.kind in ("ablate", "keep_only"):
            if iv.body.method in ("mean", "resample"):
                need |= {z_name(parse_head(h)[0]) for h in ablated_heads(iv, cfg)}
    return need


def hooks(under, ctx: Context) -> list[tuple[str, callable]]:
    out = []
    for iv in under:
        if iv.kind in ("ablate", "keep_only"):
            out += _ablate(ablated_heads(iv, ctx.cfg), iv.body.method, getattr(iv.body, "at", None), ctx)
        elif iv.kind == "scale_attention":
            out += scale_attention(iv.scale_attention, ctx)
        else:
            out += patch(iv.patch, ctx)
    return out


def _positions(at, ctx: Context):
    """Per-row destination positions [rows, k] for `at`, or None for every position."""
    if at is None:
        return None
    at = at if isinstance(at, list) else [at]
    idx = np.stack([P.position(ctx.prompts, a) for a in at], axis=1)[ctx.rows]
    return torch.as_tensor(idx)


def _ablate(heads, method, at, ctx: Context):
    at = _positions(at, ctx)
    by_layer: dict[int, list[int]] = {}
    for h in heads:
        layer, head = parse_head(h)
        by_layer.setdefault(layer, []).append(head)
    if method == "bos":
        return [(pattern_name(layer), _bos(hs, at)) for layer, hs in by_layer.items()]
    return [(z_name(layer), _replace_z(layer, hs, method, at, ctx)) for layer, hs in by_layer.items()]


def replacement(layer: int, method: str, ctx: Context, like: torch.Tensor) -> torch.Tensor:
    """What an ablated head's z becomes: zeros, its mean over prompts, or another prompt's z."""
    if method == "zero":
        return torch.zeros_like(like)
    clean = ctx.clean[z_name(layer)]
    if method == "mean":
        if ctx.prompts.mask is None:
            return clean.mean(0, keepdim=True).expand_as(like)
        return mean_over_real_tokens(clean, ctx.prompts, ctx.rows)
    perm = resample_order(ctx.prompts.n, ctx.seed)
    return clean[torch.as_tensor(perm[ctx.rows])]


def mean_over_real_tokens(clean: torch.Tensor, prompts: P.PromptSet, rows: slice) -> torch.Tensor:
    """The mean of padded prompts' activations [n, seq, ...] over real tokens only, for `rows`.

    Positions align by token index from each prompt's first real token (BOS with BOS at 0): the
    mean at a prompt's j-th token is over the prompts that have a j-th token, whichever side the
    padding is on, so padding never enters a mean. Padding positions get zeros (the attention
    mask keeps every real token from reading them).
    """
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
    layer, head = parse_head(body.head)
    src = torch.as_tensor(P.position(ctx.prompts, body.from_)[ctx.rows])
    dst = torch.as_tensor(P.position(ctx.prompts, body.to)[ctx.rows])
    seen: dict[str, torch.Tensor] = {}
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


def patch_key(body) -> tuple:
    return ("patch-source", body.source.model_dump_json(), patch_hook_name(body))


def patch(body, ctx: Context):
    """Replace an activation with the same activation from a run on the source prompts."""
    name = patch_hook_name(body)
    src = ctx.sources[patch_key(body)][ctx.rows]
    at = _positions(body.at, ctx)

    def hook(x, hook):
        if at is None:
            return src.to(x.dtype).clone()
        x = x.clone()
        rows = torch.arange(x.shape[0])[:, None]
        x[rows, at] = src[rows, at].to(x.dtype)
        return x

    return [(name, hook)]
