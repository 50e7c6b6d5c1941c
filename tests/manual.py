"""An independent forward pass of a 1-layer attention-only model without LayerNorm, written out
from the weights, so interventions and measures can be checked against a hand computation."""
from __future__ import annotations

import math

import torch


def forward(model, tokens, edit_pattern=None, edit_z=None):
    """Logits, pattern [b, h, q, k] and z [b, q, h, d]; `edit_*` functions may change the latter two."""
    W = {k: getattr(model, k).detach().to(torch.float64) for k in ("W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O",
                                                                  "b_Q", "b_K", "b_V", "b_O", "W_U", "b_U")}
    t = tokens.shape[1]
    resid = W["W_E"][tokens] + W["W_pos"][:t]
    q = torch.einsum("bpd,hde->bphe", resid, W["W_Q"][0]) + W["b_Q"][0]
    k = torch.einsum("bpd,hde->bphe", resid, W["W_K"][0]) + W["b_K"][0]
    v = torch.einsum("bpd,hde->bphe", resid, W["W_V"][0]) + W["b_V"][0]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(model.cfg.d_head)
    if edit_pattern is not None and getattr(edit_pattern, "edits_scores", False):
        scores = edit_pattern(scores)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    pattern = torch.softmax(scores.masked_fill(mask, float("-inf")), -1)
    if edit_pattern is not None and not getattr(edit_pattern, "edits_scores", False):
        pattern = edit_pattern(pattern)
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    if edit_z is not None:
        z = edit_z(z)
    out = torch.einsum("bqhe,hed->bqd", z, W["W_O"][0]) + W["b_O"][0]
    logits = (resid + out) @ W["W_U"] + W["b_U"]
    return logits, pattern, z


def scores_edit(fn):
    fn.edits_scores = True
    return fn
