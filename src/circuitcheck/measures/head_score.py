"""`measure: {head_score: {head, pattern, exclude_bos}}`: the share of a head's attention on a
detection pattern, as `transformer_lens.head_detector` scores it."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ..fields import Head, Strict
from ..names import parse_head, pattern_name
from .base import Kind, register, to_numpy


class HeadScore(Strict):
    head: Head
    pattern: str = Field(
        description="induction, previous_token, duplicate_token, or `offset:K` (attends K tokens back)",
        pattern=r"^(induction|previous_token|duplicate_token|offset:\d+)$",
    )
    exclude_bos: bool = False


@register
class HeadScoreKind(Kind):
    name = "head_score"
    schema = HeadScore
    value_range = (0.0, 1.0)  # a share of attention

    def needs(self, body, cfg) -> set[str]:
        return {pattern_name(parse_head(body.head)[0])}

    def compute(self, body, run) -> np.ndarray:
        return head_score(run.cache, run.prompts, body.head, body.pattern, body.exclude_bos)


def detection_pattern(tokens, kind: str):
    """[n, q, k] 0/1 patterns, as `transformer_lens.head_detector` defines them per sequence."""
    import torch

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
    import torch

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
        _LAYER_SCORES[key] = (pattern, prompts, to_numpy((p * det).sum((-1, -2)) / p.sum((-1, -2))))
    return _LAYER_SCORES[key][2]
