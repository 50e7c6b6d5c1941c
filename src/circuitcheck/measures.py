"""Measures: one number per prompt, from the logits and activations of a run.

Every measure returns a float array of length n (prompts), so every claim has a distribution.
"""
from __future__ import annotations

import numpy as np
import torch

from . import prompts as P
from .interventions import pattern_name, z_name
from .spec import Measure, parse_head


def needs(m: Measure, cfg) -> set[str]:
    """Hook names whose activations this measure reads (beyond the logits)."""
    if m.attention is not None:
        return {pattern_name(parse_head(m.attention.head)[0])}
    if m.head_score is not None:
        return {pattern_name(parse_head(m.head_score.head)[0])}
    if m.dla is not None:
        return dla_needs(cfg)
    return set()


def measure(m: Measure, logits: torch.Tensor, cache: dict, prompts: P.PromptSet, model) -> np.ndarray:
    if m.metric is not None:
        return metric(m.metric, logits, prompts)
    if m.attention is not None:
        return attention(cache, prompts, m.attention.head, m.attention.from_, m.attention.to)
    if m.head_score is not None:
        return head_score(cache, prompts, m.head_score.head, m.head_score.pattern, m.head_score.exclude_bos)
    return dla(model, cache, prompts, m.dla.component, m.dla.share)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).cpu().numpy()


# ---------------------------------------------------------------- metrics at the targets
def metric(name: str, logits: torch.Tensor, prompts: P.PromptSet) -> np.ndarray:
    """Mean over each prompt's targets of: accuracy, prob, loss, logprob, logit_diff or rank."""
    rows = torch.arange(prompts.n)[:, None]
    pos = torch.as_tensor(prompts.target_pos)
    tok = torch.as_tensor(prompts.target_tok).to(logits.device)
    at = logits[rows, pos].to(torch.float64)  # [n, k, vocab]
    correct = at.gather(-1, tok[..., None])[..., 0]
    logp = torch.log_softmax(at, -1).gather(-1, tok[..., None])[..., 0]
    if name == "accuracy":
        value = (at.argmax(-1) == tok).to(torch.float64)
    elif name == "prob":
        value = logp.exp()
    elif name == "loss":
        value = -logp
    elif name == "logprob":
        value = logp
    elif name == "logit_diff":
        others = at.scatter(-1, tok[..., None], float("-inf"))
        value = correct - others.max(-1).values
    else:  # rank: 1 when the correct token is the top prediction
        value = 1 + (at > correct[..., None]).sum(-1).to(torch.float64)
    return _np(value.mean(-1))


# ---------------------------------------------------------------- attention
def attention(cache, prompts, head: str, src, dst) -> np.ndarray:
    layer, h = parse_head(head)
    pattern = cache[pattern_name(layer)]
    q = torch.as_tensor(P.position(prompts, src))
    k = torch.as_tensor(P.position(prompts, dst))
    return _np(pattern[torch.arange(prompts.n), h, q, k])


def detection_pattern(tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """[n, q, k] 0/1 patterns, as `transformer_lens.head_detector` defines them per sequence."""
    n, t = tokens.shape
    q = torch.arange(t)[:, None]
    k = torch.arange(t)[None, :]
    if kind == "previous_token":
        kind = "offset:1"
    if kind.startswith("offset:"):
        return ((q - k) == int(kind.split(":")[1])).expand(n, t, t).to(torch.float64)
    same = tokens[:, :, None] == tokens[:, None, :]  # [n, q, k]
    if kind == "duplicate_token":
        return (same & (k < q)).to(torch.float64)
    # induction: attend to the token after an earlier copy of the current token
    shifted = torch.zeros_like(same)
    shifted[:, :, 1:] = same[:, :, :-1]
    return (shifted & (k <= q) & (k >= 1)).to(torch.float64)


def head_score(cache, prompts, head: str, kind: str, exclude_bos: bool = False) -> np.ndarray:
    """Per sequence: the share of the head's attention on the detection pattern ("mul" measure)."""
    layer, h = parse_head(head)
    pattern = cache[pattern_name(layer)][:, h].to(torch.float64)
    det = detection_pattern(torch.as_tensor(prompts.tokens), kind).to(pattern.device)
    if exclude_bos:
        pattern = pattern.clone()
        pattern[:, :, 0] = 0
    return _np((pattern * det).sum((-1, -2)) / pattern.sum((-1, -2)))


# ---------------------------------------------------------------- direct logit attribution
def dla_needs(cfg) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_in"}
    return names | {z_name(layer) for layer in range(cfg.n_layers)}


def dla(model, cache, prompts, component: str, share: bool) -> np.ndarray:
    """The correct-token logit carried by one component, through the final LayerNorm's scale.

    The parts (every head, `embed`, `bias`) add up to the logit exactly in attention-only
    models; `share` divides by the logit. Averaged over each prompt's targets.
    """
    rows = torch.arange(prompts.n)[:, None]
    pos = torch.as_tensor(prompts.target_pos)
    tok = torch.as_tensor(prompts.target_tok)
    w_u = model.W_U.detach().to(torch.float64)[:, tok]  # [d, n, k]
    ln = _final_ln(model, cache, rows, pos)
    part = component_output(model, cache, component, rows, pos)  # [n, k, d]
    contrib = torch.einsum("nkd,dnk->nk", ln(part, component == "bias"), w_u)
    if component == "bias":
        contrib = contrib + model.b_U.detach().to(torch.float64)[tok]
    if share:
        total = torch.einsum("nkd,dnk->nk", ln(cache["ln_final.hook_in"][rows, pos].to(torch.float64), True), w_u)
        contrib = contrib / (total + model.b_U.detach().to(torch.float64)[tok])
    return _np(contrib.mean(-1))


def component_output(model, cache, component, rows, pos) -> torch.Tensor:
    if component == "embed":
        return (cache["hook_embed"] + cache["hook_pos_embed"])[rows, pos].to(torch.float64)
    if component == "bias":
        return model.b_O.detach().to(torch.float64).sum(0).expand(*pos.shape, -1)
    layer, h = parse_head(component)
    z = cache[z_name(layer)][rows, pos, h].to(torch.float64)
    return z @ model.W_O[layer, h].detach().to(torch.float64)


def _final_ln(model, cache, rows, pos):
    """A linear map applying the final LayerNorm with the scale the clean residual had."""
    norm = getattr(model.cfg, "normalization_type", None)
    if norm is None:
        return lambda x, with_bias: x
    if norm not in ("LN", "LNPre"):
        raise ValueError(f"dla supports LayerNorm or no normalization, not {norm!r}")
    resid = cache["ln_final.hook_in"][rows, pos].to(torch.float64)
    centred = resid - resid.mean(-1, keepdim=True)
    eps = getattr(model.cfg, "eps", 1e-5)
    scale = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    sd = model.state_dict()
    w = sd.get("ln_final.weight", torch.ones(resid.shape[-1])).to(torch.float64)
    b = sd.get("ln_final.bias", torch.zeros(resid.shape[-1])).to(torch.float64)

    def apply(x, with_bias):
        y = (x - x.mean(-1, keepdim=True)) / scale * w
        return y + b if with_bias else y

    return apply
