"""Measures against independent computations: head_detector, the cache, a hand forward."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from circuitcheck.measures import attention, dla, head_score, metric, ov_norm, row_class, similarity
from circuitcheck import prompts as P
from circuitcheck.runs.engine import Runs

HEADS = [f"L{layer}H{h}" for layer in range(2) for h in range(4)]


@pytest.fixture(scope="module")
def ps():
    return P.repeated_tokens(n=12, seed=5, length=8)


@pytest.fixture(scope="module")
def clean(tiny_model, ps):
    names = {f"blocks.{layer}.attn.hook_pattern" for layer in range(2)} | dla.dla_needs(tiny_model.cfg)
    return Runs(tiny_model, ps).clean(names)


@pytest.mark.parametrize("kind,tl_name", [("induction", "induction_head"), ("previous_token", "previous_token_head"),
                                          ("duplicate_token", "duplicate_token_head")])
@pytest.mark.parametrize("exclude_bos", [False, True])
def test_head_scores_equal_transformer_lens_head_detector(tiny_model, ps, clean, kind, tl_name, exclude_bos):
    from transformer_lens.head_detector import detect_head

    for i in range(3):  # detect_head scores one sequence at a time
        tokens = torch.as_tensor(ps.tokens[i : i + 1])
        tiny_model.to_tokens = lambda seq, **kw: tokens  # our zoo vocabularies have no tokenizer
        tl = detect_head(tiny_model, "unused", tl_name, exclude_bos=exclude_bos)
        ours = [head_score.head_score(clean.cache, ps, h, kind, exclude_bos)[i] for h in HEADS]
        assert np.allclose(ours, tl.flatten().numpy(), atol=1e-5)


def test_offset_pattern_generalises_previous_token(clean, ps):
    assert np.allclose(head_score.head_score(clean.cache, ps, "L0H1", "offset:1"),
                       head_score.head_score(clean.cache, ps, "L0H1", "previous_token"))
    det = head_score.detection_pattern(torch.as_tensor(ps.tokens[:1]), "offset:3")[0]
    assert det[5, 2] == 1 and det.sum() == ps.seq_len - 3


def test_attention_reads_the_pattern_at_named_positions(clean, ps):
    got = attention.attention(clean.cache, ps, "L1H2", "S2", "S1+1")
    pat = clean.cache["blocks.1.attn.hook_pattern"]
    assert np.allclose(got, pat[:, 2, ps.positions["S2"][0], ps.positions["S1"][0] + 1].double().numpy())


def test_metrics_by_hand(tiny_no_ln_model, ps):
    logits = manual.forward(tiny_no_ln_model, torch.as_tensor(ps.tokens))[0]
    rows = np.arange(ps.n)[:, None]
    at = logits[rows, ps.target_pos]  # [n, k, vocab]
    tok = torch.as_tensor(ps.target_tok)
    logp = torch.log_softmax(at, -1).gather(-1, tok[..., None])[..., 0]
    run = Runs(tiny_no_ln_model, ps).clean(set())
    got = {m: metric.metric(m, run.logits, ps) for m in ("accuracy", "prob", "loss", "logprob", "rank", "logit_diff")}
    assert np.allclose(got["accuracy"], (at.argmax(-1) == tok).double().mean(-1).numpy())
    assert np.allclose(got["loss"], -logp.mean(-1).numpy(), atol=1e-4)
    assert np.allclose(got["prob"], logp.exp().mean(-1).numpy(), atol=1e-5)
    correct = at.gather(-1, tok[..., None])
    assert np.allclose(got["rank"], (1 + (at > correct).sum(-1)).double().mean(-1).numpy())
    others = at.scatter(-1, tok[..., None], float("-inf")).max(-1).values
    assert np.allclose(got["logit_diff"], (correct[..., 0] - others).mean(-1).numpy(), atol=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_no_ln_model"])
def test_dla_parts_add_up_to_the_correct_logit(request, ps, fixture):
    model = request.getfixturevalue(fixture)
    run = Runs(model, ps).clean(dla.dla_needs(model.cfg))
    heads = [f"L{layer}H{h}" for layer in range(model.cfg.n_layers) for h in range(4)]
    parts = sum(dla.dla(model, run.cache, ps, c, share=False) for c in heads + ["embed", "bias"])
    logit = run.logits[np.arange(ps.n)[:, None], ps.target_pos].gather(-1, torch.as_tensor(ps.target_tok)[..., None])
    assert np.allclose(parts, logit[..., 0].double().mean(-1).numpy(), atol=1e-3)
    total = logit[..., 0].double().mean(-1).numpy()
    if (total > 0).all() or (total <= 0).all():
        shares = [dla.dla(model, run.cache, ps, c, share=True) for c in heads + ["embed", "bias"]]
        assert np.allclose(sum(shares), 1, atol=1e-4)  # a ratio of means per part: still adding to 1 per prompt
    else:  # an untrained model's correct logit takes both signs: no share of it exists
        with pytest.raises(ValueError, match="crosses 0"):
            dla.dla(model, run.cache, ps, heads[0], share=True)


def test_dla_of_one_head_by_hand(tiny_no_ln_model, ps):
    _, _, z = manual.forward(tiny_no_ln_model, torch.as_tensor(ps.tokens))
    run = Runs(tiny_no_ln_model, ps).clean(dla.dla_needs(tiny_no_ln_model.cfg))
    w_o = tiny_no_ln_model.W_O[0, 2].detach().double()
    w_u = tiny_no_ln_model.W_U.detach().double()
    rows = np.arange(ps.n)[:, None]
    expected = torch.einsum("nkd,nkd->nk", z[rows, ps.target_pos, 2] @ w_o, w_u.T[ps.target_tok]).mean(-1)
    assert np.allclose(dla.dla(tiny_no_ln_model, run.cache, ps, "L0H2", share=False), expected.numpy(), atol=1e-4)


# ---------------------------------------------------------------- the issue-4 measures, by hand
def test_similarity_is_the_mean_pairwise_cosine(tiny_model):
    from circuitcheck.measures.similarity import Similarity

    variants = [P.max_of_list(20, seed=3, max_at=k) for k in range(3)]
    runs = [Runs(tiny_model, ps).clean({"blocks.1.hook_resid_post", "blocks.1.attn.hook_z"}) for ps in variants]
    spec = Similarity(hook="blocks.1.hook_resid_post", at="ANS", variants=[{}, {}])
    acts = [similarity.activation(spec, r.cache, ps, tiny_model) for r, ps in zip(runs, variants)]
    got = similarity.similarity(acts)
    with torch.inference_mode():
        rows = [tiny_model.run_with_cache(torch.as_tensor(ps.tokens))[1]["blocks.1.hook_resid_post"][:, 5].double()
                for ps in variants]
    cos = lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))  # noqa: E731
    expected = (cos(rows[0], rows[1]) + cos(rows[0], rows[2]) + cos(rows[1], rows[2])) / 3
    assert np.allclose(got, expected.numpy(), atol=1e-6)
    head_out = Similarity(hook="head_out", head="L1H2", at="ANS", variants=[{}, {}])
    z = runs[0].cache["blocks.1.attn.hook_z"][:, 5, 2].double()
    assert torch.allclose(similarity.activation(head_out, runs[0].cache, variants[0], tiny_model),
                          z @ tiny_model.W_O[1, 2].detach().double())


def test_row_classes_by_hand(tiny_model, ps, clean):
    pattern = clean.cache["blocks.1.attn.hook_pattern"][:, 3].double()
    labels = row_class.classify_rows(pattern, torch.as_tensor(ps.tokens), mass=0.5, window=2)
    for i in range(3):
        for q in range(ps.seq_len):
            row, tok = pattern[i, q], ps.tokens[i]
            prev = row[max(0, q - 2):q].sum().item()
            ind = sum(row[k].item() for k in range(1, q + 1) if tok[q] == tok[k - 1])
            union = sum(row[k].item() for k in range(q + 1) if (1 <= q - k <= 2) or (k >= 1 and tok[q] == tok[k - 1]))
            expected = ("inactive" if row[0] >= 0.5 else "previous" if prev >= 0.5 else "induction" if ind >= 0.5
                        else "previous+induction" if union >= 0.5 else "unknown")
            assert labels[i, q] == expected, (i, q)


def test_ov_norm_from_the_weights(tiny_no_ln_model):
    m = tiny_no_ln_model
    got = ov_norm.ov_norm(m, "L0H1", [3, 7])
    for value, t in zip(got, [3, 7]):
        v = (m.W_E[t] @ m.W_V[0, 1] + m.b_V[0, 1]) @ m.W_O[0, 1]
        assert value == pytest.approx(v.norm().item(), rel=1e-5)


def test_condition_selects_prompts_by_tokens():
    ps = P.max_of_list(50, seed=1)
    assert np.array_equal(P.condition("tok[1] > tok[2]", ps), ps.tokens[:, 1] > ps.tokens[:, 2])
    assert np.array_equal(P.condition("tok[argmax] == 9", ps), ps.target_tok[:, 0] == 9)
