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
    body = getattr(m, m.kind)
    if m.kind in ("attention", "head_score", "row_class"):
        return {pattern_name(parse_head(body.head)[0])}
    if m.dla is not None:
        return dla_needs(cfg)
    if m.similarity is not None:
        return {similarity_hook(m.similarity)}
    return set()


def measure(m: Measure, logits: torch.Tensor, cache: dict, prompts: P.PromptSet, model) -> np.ndarray:
    """The per-prompt values of `m` on one run (similarity compares runs: see `similarity`)."""
    if m.metric is not None:
        return metric(m.metric, logits, prompts)
    if m.attention is not None:
        return attention(cache, prompts, m.attention.head, m.attention.from_, m.attention.to)
    if m.head_score is not None:
        return head_score(cache, prompts, m.head_score.head, m.head_score.pattern, m.head_score.exclude_bos)
    if m.row_class is not None:
        return row_class(cache, prompts, m.row_class)
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
    elif name == "logit_diff":  # minus the counterfactual's logit where a target names one
        others = at.scatter(-1, tok[..., None], float("-inf")).max(-1).values
        if prompts.target_cf is not None:
            cf = torch.as_tensor(prompts.target_cf).to(logits.device)
            named = at.gather(-1, cf.clamp(min=0)[..., None])[..., 0]
            others = torch.where(cf >= 0, named, others)
        value = correct - others
    else:  # rank: 1 when the correct token is the top prediction
        value = 1 + (at > correct[..., None]).sum(-1).to(torch.float64)
    return _np(over_targets(value, prompts))


def over_targets(value: torch.Tensor, prompts: P.PromptSet) -> torch.Tensor:
    """[n, k] -> [n]: the mean over each prompt's real targets (prompts may have different counts)."""
    if prompts.target_valid is None:
        return value.mean(-1)
    valid = torch.as_tensor(prompts.target_valid, device=value.device).to(value.dtype)
    return (value * valid).sum(-1) / valid.sum(-1)


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
    return _layer_scores(cache[pattern_name(layer)], prompts, kind, exclude_bos)[:, h]


_LAYER_SCORES: dict = {}  # (ids of pattern, prompts), kind, exclude_bos -> (pattern, prompts, [n, heads])


def _layer_scores(pattern, prompts, kind: str, exclude_bos: bool) -> np.ndarray:
    """Every head of a layer at once: a scan of all heads builds the detection pattern and converts
    the layer's attention once per layer, not once per head. The last few layers are remembered
    (with the tensors themselves, so that the ids in the key stay theirs)."""
    key = (id(pattern), id(prompts), kind, exclude_bos)
    if key not in _LAYER_SCORES:
        while len(_LAYER_SCORES) >= 8:
            _LAYER_SCORES.pop(next(iter(_LAYER_SCORES)))
        p = pattern.to(torch.float64)  # [n, heads, q, k]
        det = detection_pattern(torch.as_tensor(prompts.tokens), kind).to(p.device)[:, None]
        if prompts.mask is not None:  # padded prompts: only real queries and real keys count
            real = torch.as_tensor(prompts.mask, device=p.device).to(p.dtype)
            p = p * real[:, None, :, None] * real[:, None, None, :]
        if exclude_bos:
            p = p.clone()
            p[..., 0] = 0
        _LAYER_SCORES[key] = (pattern, prompts, _np((p * det).sum((-1, -2)) / p.sum((-1, -2))))
    return _LAYER_SCORES[key][2]


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
    return _np(over_targets(contrib, prompts))


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


# ---------------------------------------------------------------- similarity across variants
def similarity_hook(s) -> str:
    if s.hook in ("z", "pattern", "head_out"):
        if s.head is None:
            raise ValueError(f"`hook: {s.hook}` needs `head:`")
        layer = parse_head(s.head)[0]
        return pattern_name(layer) if s.hook == "pattern" else z_name(layer)
    return s.hook


def activation(s, cache, prompts, model) -> torch.Tensor:
    """[n, features]: the activation a similarity measure compares, at its position."""
    x = cache[similarity_hook(s)].to(torch.float64)
    rows = torch.arange(prompts.n)
    at = torch.as_tensor(P.position(prompts, s.at))
    h = parse_head(s.head)[1] if s.head else None
    if s.hook == "pattern":
        return x[rows, h, at]
    x = x[rows, at]
    if s.hook in ("z", "head_out") or (h is not None and x.dim() == 3):
        x = x[:, h]
    if s.hook == "head_out":
        x = x @ model.W_O[parse_head(s.head)[0], h].detach().to(torch.float64)
    return x.reshape(prompts.n, -1)


def similarity(acts: list[torch.Tensor]) -> np.ndarray:
    """Per prompt: the mean cosine similarity over every pair of variants."""
    sims = [torch.nn.functional.cosine_similarity(a, b, dim=-1) for i, a in enumerate(acts) for b in acts[i + 1:]]
    return _np(torch.stack(sims).mean(0))


# ---------------------------------------------------------------- attention-row classification
def row_masses(pattern: torch.Tensor, tokens: torch.Tensor, window: int) -> dict[str, torch.Tensor]:
    """For each row [n, q]: attention mass on BOS, on the previous `window` tokens, on induction targets."""
    t = pattern.shape[-1]
    q = torch.arange(t)[:, None]
    k = torch.arange(t)[None, :]
    prev = ((q - k >= 1) & (q - k <= window)).to(pattern)
    ind = detection_pattern(tokens, "induction").to(pattern)
    return {"inactive": pattern[..., 0], "previous": (pattern * prev).sum(-1), "induction": (pattern * ind).sum(-1),
            "previous+induction": (pattern * torch.clamp(prev + ind, max=1)).sum(-1)}


def classify_rows(pattern, tokens, mass: float, window: int) -> list[str]:
    """Label every row [n, q] with the first behaviour carrying at least `mass` of it (seed 001)."""
    masses = row_masses(pattern, tokens, window)
    labels = np.full(tuple(pattern.shape[:2]), "unknown", dtype=object)
    for name in ("previous+induction", "induction", "previous", "inactive"):  # later names win
        labels[_np(masses[name]) >= mass] = name
    return labels


def row_class(cache, prompts, body) -> np.ndarray:
    layer, h = parse_head(body.head)
    pattern = cache[pattern_name(layer)][:, h].to(torch.float64)
    labels = classify_rows(pattern, torch.as_tensor(prompts.tokens), body.mass, body.window)
    rows = _rows(prompts, body.rows)
    picked = labels[np.arange(prompts.n)[:, None], rows]
    return (picked == body.behaviour).mean(-1).astype(np.float64)


def _rows(prompts, rows) -> np.ndarray:
    if rows == "all":
        return np.tile(np.arange(1, prompts.seq_len), (prompts.n, 1))  # row 0 can only attend to itself
    if isinstance(rows, list):
        return np.stack([P.position(prompts, r) for r in rows], axis=1)
    start, end = (P.position(prompts, r.strip()) for r in rows.split(".."))
    width = int((end - start).max()) + 1
    if not np.all(end - start == width - 1):
        raise ValueError(f"row range {rows!r} spans a different number of rows in different prompts")
    return start[:, None] + np.arange(width)[None, :]


# ---------------------------------------------------------------- weight-only
def ov_norm(model, head: str, tokens: list[int]) -> np.ndarray:
    """Per token t: || W_E[t] W_V W_O || for one head: how much the head can write when it reads t."""
    layer, h = parse_head(head)
    w = model.W_E.detach().to(torch.float64)[tokens] @ model.W_V[layer, h].detach().to(torch.float64)
    w = w + model.b_V[layer, h].detach().to(torch.float64)
    return _np((w @ model.W_O[layer, h].detach().to(torch.float64)).norm(dim=-1))
