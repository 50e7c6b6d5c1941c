"""`measure: {head_score: {head, pattern, exclude_bos}}`: the share of a head's attention on a
detection pattern, as `transformer_lens.head_detector` scores it."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ..language.fields import Head, Strict
from ..language.names import parse_head, pattern_name
from .base import Kind, register, shared, to_numpy


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
        return head_score(run.cache, run.prompts, body.head, body.pattern, body.exclude_bos, run.memo)


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


def head_score(cache, prompts, head: str, kind: str, exclude_bos: bool = False, memo: dict | None = None) -> np.ndarray:
    """Per sequence: the share of the head's attention on the detection pattern ("mul" measure).
    `memo` (a run's own, `Run.memo`) keeps each layer's scores for the other heads of that run."""
    layer, h = parse_head(head)
    pattern = cache[pattern_name(layer)]
    key = ("head_score", pattern_name(layer), kind, exclude_bos)
    return shared(memo, key, pattern, lambda: _layer_scores(pattern, prompts, kind, exclude_bos, memo))[:, h]


def _layer_scores(pattern, prompts, kind: str, exclude_bos: bool, memo: dict | None) -> np.ndarray:
    """Every head of a layer at once: a scan of all heads builds the detection pattern and converts
    the layer's attention once per layer, not once per head. In float64, a block of prompts at a
    time: big temporaries in a chunked run fragment the heap (benchmarks/README section 7); each
    prompt's score is bit for bit the same as over the whole chunk at once."""
    import torch

    tokens = prompts.tokens
    det = shared(memo, ("detection", kind), tokens, lambda: detection_pattern(torch.as_tensor(tokens), kind))
    det = det.to(pattern.device)[:, None]
    real = None if prompts.mask is None else torch.as_tensor(prompts.mask, device=pattern.device)
    n, rows = pattern.shape[0], max(1, BLOCK // max(1, pattern[0].numel()))
    out = torch.empty(pattern.shape[:2], dtype=torch.float64, device=pattern.device)
    for start in range(0, n, rows):
        b = slice(start, start + rows)
        p = pattern[b].to(torch.float64, copy=exclude_bos)  # [rows, heads, q, k]; a copy where written to
        if real is not None:  # padded prompts: only real queries and real keys count
            m = real[b].to(p.dtype)
            p = p * m[:, None, :, None] * m[:, None, None, :]
        if exclude_bos:
            p[..., 0] = 0
        out[b] = (p * det[b]).sum((-1, -2)) / p.sum((-1, -2))
    return to_numpy(out)


BLOCK = 2 ** 17  # float64 numbers of one block (1 MB)
