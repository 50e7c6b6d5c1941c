"""What several measures of one run share through `Run.memo`, computed once per run: a metric's
target logits and log-softmax (every metric of a run reads them) and a layer's head scores.

head_score computes each layer's scores once per run (every head, kind and `exclude_bos` of one
run share them through `Run.memo`) and a block of prompts at a time, in float64: bit for bit the
scores of the whole chunk at once, and small temporaries only (big ones fragmented the heap of a
1,000-claim suite: benchmarks/README section 7)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from circuitcheck import measures as M
from circuitcheck import prompts as P
from circuitcheck.measures import head_score as HS
from circuitcheck.files.spec import Measure


def whole_chunk(pattern, prompts, kind, exclude_bos):
    """The scores as computed before blocks: the whole chunk converted to float64 at once."""
    p = pattern.to(torch.float64)
    det = HS.detection_pattern(torch.as_tensor(prompts.tokens), kind)[:, None]
    if prompts.mask is not None:
        real = torch.as_tensor(prompts.mask).to(p.dtype)
        p = p * real[:, None, :, None] * real[:, None, None, :]
    if exclude_bos:
        p = p.clone()
        p[..., 0] = 0
    return ((p * det).sum((-1, -2)) / p.sum((-1, -2))).numpy()


def padded(n, seed):
    ps = P.repeated_tokens(n, seed, length=6, vocab=40)
    mask = np.ones_like(ps.tokens)
    mask[::3, -4:] = 0  # every third prompt ends in padding
    return P.PromptSet(ps.tokens, ps.positions, ps.target_pos, ps.target_tok, mask=mask)


@pytest.mark.parametrize("block", [1, 7, 2 ** 17])
@pytest.mark.parametrize("kind", ["induction", "previous_token", "duplicate_token", "offset:2"])
@pytest.mark.parametrize("exclude_bos", [False, True])
@pytest.mark.parametrize("make", [lambda: P.repeated_tokens(50, 3, length=6, vocab=40), lambda: padded(50, 3)])
def test_blocks_give_the_whole_chunk_bit_for_bit(monkeypatch, block, kind, exclude_bos, make):
    prompts = make()
    seq = prompts.tokens.shape[1]
    pattern = torch.softmax(torch.randn(prompts.n, 3, seq, seq, generator=torch.Generator().manual_seed(1)), -1)
    monkeypatch.setattr(HS, "BLOCK", block * 3 * seq * seq)  # `block` prompts a block
    got = HS._layer_scores(pattern, prompts, kind, exclude_bos, {})
    assert np.array_equal(got, whole_chunk(pattern, prompts, kind, exclude_bos))


def test_a_float64_pattern_is_not_written_to():
    prompts = P.repeated_tokens(20, 0, length=5, vocab=30)
    seq = prompts.tokens.shape[1]
    pattern = torch.softmax(torch.randn(20, 2, seq, seq, dtype=torch.float64), -1)
    before = pattern.clone()
    HS._layer_scores(pattern, prompts, "induction", True, {})
    assert torch.equal(pattern, before)


def test_one_run_computes_each_layer_once(monkeypatch):
    prompts = P.repeated_tokens(30, 0, length=5, vocab=30)
    seq = prompts.tokens.shape[1]
    cache = {f"blocks.{layer}.attn.hook_pattern": torch.softmax(torch.randn(30, 4, seq, seq), -1) for layer in (0, 1)}
    run = M.Run(None, cache, prompts, None)
    calls = []
    real = HS._layer_scores
    monkeypatch.setattr(HS, "_layer_scores", lambda *a: calls.append(a[2:4]) or real(*a))
    kinds = ["induction", "previous_token"]
    values = {}
    for layer in (0, 1):
        for head in range(4):
            for kind in kinds:
                body = {"head_score": {"head": f"L{layer}H{head}", "pattern": kind}}
                values[(layer, head, kind)] = M.compute(Measure.model_validate(body), run)
    assert len(calls) == 2 * len(kinds)  # once per layer and kind, not once per head
    for (layer, head, kind), v in values.items():  # and each head reads its own column
        alone = HS.head_score(cache, prompts, f"L{layer}H{head}", kind)
        assert np.array_equal(v, alone)
    calls.clear()
    other = M.Run(None, cache, prompts, None)  # a run of its own recomputes: nothing outlives a run
    M.compute(Measure.model_validate({"head_score": {"head": "L0H0", "pattern": "induction"}}), other)
    assert len(calls) == 1


METRICS = ["accuracy", "prob", "loss", "logprob", "logit_diff", "rank"]


def test_every_metric_of_a_run_reads_one_log_softmax(monkeypatch):
    from circuitcheck.measures import metric as MT

    prompts = P.repeated_tokens(30, 0, length=5, vocab=30)
    logits = torch.randn(30, prompts.tokens.shape[1], 30, generator=torch.Generator().manual_seed(2))
    alone = {m: MT.metric(m, logits, prompts) for m in METRICS}  # no memo: each computes its own
    calls = []
    real = MT._targets
    monkeypatch.setattr(MT, "_targets", lambda *a: calls.append(1) or real(*a))
    run = M.Run(logits, {}, prompts, None)
    shared = {m: M.compute(Measure.model_validate(m), run) for m in METRICS}
    assert len(calls) == 1
    for m in METRICS:
        assert np.array_equal(shared[m], alone[m]), m
    other = M.Run(logits.clone(), {}, prompts, None)  # other logits: computed anew
    M.compute(Measure.model_validate("loss"), other)
    assert len(calls) == 2
