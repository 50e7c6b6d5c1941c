"""Weight-space measures, direct attribution of every component, logit differences and aggregated
attention, each against a hand computation from the state dict of a model with MLPs and LayerNorm
(tests/manual.py), not against TransformerLens's own views of the weights or its cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from circuitcheck.measures import attribution as A
from circuitcheck.measures import keysets as K
from circuitcheck import prompts as P
from circuitcheck.measures import weights as W
from circuitcheck.runs.engine import Runs


@pytest.fixture(scope="module")
def ps():
    return P.repeated_tokens(n=10, seed=3, length=7)


@pytest.fixture(scope="module")
def hand(tiny_mlp_model, ps):
    return manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens))


@pytest.fixture(scope="module")
def run(tiny_mlp_model, ps):
    cfg = tiny_mlp_model.cfg
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_in"}
    for layer in range(cfg.n_layers):
        names |= {f"blocks.{layer}.{n}" for n in ("attn.hook_z", "attn.hook_pattern", "mlp.hook_post",
                                                  "hook_mlp_out", "hook_attn_out")}
    return Runs(tiny_mlp_model, ps).clean(names)


def test_the_hand_forward_matches_the_model(run, hand):
    assert torch.allclose(run.logits.double(), hand[0], atol=1e-4)


# ---------------------------------------------------------------- weights
def ev(model, text):
    return W.evaluate(model, W.parse(text))


def test_weight_expressions_equal_products_of_the_state_dict(tiny_mlp_model, sw):
    m = tiny_mlp_model
    ov = sw["W_V0"][1] @ sw["W_O0"][1]
    assert torch.allclose(ev(m, "W_E @ OV[L0H1] @ W_U"), sw["W_E"] @ ov @ sw["W_U"], atol=1e-8)
    assert torch.allclose(ev(m, "QK[L1H2]"), sw["W_Q1"][2] @ sw["W_K1"][2].T, atol=1e-8)
    assert torch.allclose(ev(m, "W_U[:, 3] - W_U[:, 5]"), sw["W_U"][:, 3] - sw["W_U"][:, 5])
    assert torch.allclose(ev(m, "W_in[1][:, 12]"), sw["W_in1"][:, 12])
    assert torch.allclose(ev(m, "W_out[0][7]"), sw["W_out0"][7])
    assert torch.allclose(ev(m, "(W_E[3] - W_E[4]) @ OV[L0H1]"), (sw["W_E"][3] - sw["W_E"][4]) @ ov, atol=1e-8)
    assert torch.allclose(ev(m, "W_Q[L0H1].T"), sw["W_Q0"][1].T)
    assert torch.allclose(ev(m, "-W_E[2:4]"), -sw["W_E"][2:4])


def test_singular_values_cosine_and_norm_by_numpy(tiny_mlp_model, sw):
    full = (sw["W_E"] @ sw["W_V0"][1] @ sw["W_O0"][1] @ sw["W_U"]).numpy()
    s = np.linalg.svd(full, compute_uv=False)
    m = ev(tiny_mlp_model, "W_E @ OV[L0H1] @ W_U")
    assert np.isclose(W.singular_value_statistic(m, 1, "value"), s[0])
    assert np.isclose(W.singular_value_statistic(m, 2, "ratio"), s[1] / s[2])
    assert np.isclose(W.singular_value_statistic(m, 3, "share"), (s[:3] ** 2).sum() / (s ** 2).sum())
    assert np.isclose(W.singular_value_statistic(m, 8, "share"), 1.0)  # OV has rank d_head = 8
    a = (sw["W_E"][3] @ sw["W_V0"][1] @ sw["W_O0"][1]).numpy()
    b = sw["W_in1"][:, 12].numpy()
    got = W.cosine(ev(tiny_mlp_model, "W_E[3] @ OV[L0H1]"), ev(tiny_mlp_model, "W_in[1][:, 12]"))
    assert np.isclose(got, a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert np.isclose(W.norm(ev(tiny_mlp_model, "OV[L0H1]")), np.linalg.norm(sw["W_V0"][1] @ sw["W_O0"][1]))


@pytest.mark.parametrize("text,says", [
    ("W_X", "unknown weight"), ("W_Q[0]", "per head"), ("W_in[L0H1]", "per layer"), ("W_E @", "expected more"),
    ("W_E[3", "expected ']'"), ("W_E ! W_U", "cannot read"), ("W_E W_U", "unexpected"), ("W_E[]", "empty index")])
def test_bad_weight_expressions_say_what_is_wrong(text, says):
    with pytest.raises(W.ExpressionError, match=says) as info:
        W.parse(text)
    assert info.value.hint


def test_shape_errors_name_the_shapes(tiny_mlp_model):
    with pytest.raises(W.ExpressionError, match=r"\(64, 32\) and \(64, 32\)"):
        ev(tiny_mlp_model, "W_E @ W_E")
    with pytest.raises(W.ExpressionError, match="two vectors"):
        W.cosine(ev(tiny_mlp_model, "W_E"), ev(tiny_mlp_model, "W_E[1]"))


# ---------------------------------------------------------------- attribution
@pytest.fixture(scope="module")
def attr(tiny_mlp_model, run, ps):
    """One component's attribution per prompt (mean over the read positions)."""
    return lambda component, toward, **kw: A.attribution(tiny_mlp_model, run.cache, ps, component, toward, **kw).mean(-1)


COMPONENTS = [f"L{layer}H{h}" for layer in range(2) for h in range(4)] + ["mlp0", "mlp1", "embed", "bias"]


def test_components_add_up_to_the_logit_of_each_direction(tiny_mlp_model, ps, run, hand, attr):
    logits = hand[0]
    rows = np.arange(ps.n)[:, None]
    at = logits[rows, ps.target_pos]  # [n, k, vocab]
    tok = torch.as_tensor(ps.target_tok)
    s1 = torch.as_tensor(ps.tokens[:, ps.positions["S1"][0]])[:, None].expand_as(tok)
    cases = {"correct": at.gather(-1, tok[..., None])[..., 0],
             "tok[S1]": at.gather(-1, s1[..., None])[..., 0],
             7: at[..., 7]}
    cases_diff = at.gather(-1, tok[..., None])[..., 0] - at[..., 7]
    for toward, want in [*cases.items(), ({"diff": ["correct", 7]}, cases_diff)]:
        parts = sum(attr(c, toward) for c in COMPONENTS)
        assert np.allclose(parts, want.mean(-1).numpy(), atol=1e-4), toward
        assert np.allclose(A.total(tiny_mlp_model, run.cache, ps, toward), want.numpy(), atol=1e-4), toward


def test_neurons_and_layers_by_hand(tiny_mlp_model, ps, hand, sw, attr):
    """Neuron 5 of layer 1 toward W_U[:,3] - W_U[:,9], through the final LayerNorm frozen at its scale."""
    out = hand[1]
    rows = np.arange(ps.n)[:, None]
    pos = ps.target_pos
    resid = out["final_in"][rows, pos]
    centred = resid - resid.mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
    w_ln = tiny_mlp_model.state_dict()["ln_final.weight"].double()
    neuron = out["post1"][rows, pos][..., 5:6] * sw["W_out1"][5]
    direction = sw["W_U"][:, 3] - sw["W_U"][:, 9]
    want = (((neuron - neuron.mean(-1, keepdim=True)) / scale * w_ln) @ direction).mean(-1)
    got = attr("L1N5", {"direction": "W_U[:, 3] - W_U[:, 9]"})
    assert np.allclose(got, want.numpy(), atol=1e-6)
    neurons = sum(attr(f"L1N{i}", 4) for i in range(48))
    bias_out = tiny_mlp_model.state_dict()["blocks.1.mlp.out.bias"].double()
    b_part = (((bias_out - bias_out.mean()) / scale * w_ln) @ sw["W_U"][:, 4]).mean(-1)
    assert np.allclose(neurons + b_part.numpy(), attr("mlp1", 4), atol=1e-5)
    heads = sum(attr(f"L0H{h}", 4) for h in range(4))
    b_o = tiny_mlp_model.state_dict()["blocks.0.attn.o.bias"].double()
    b_part = (((b_o - b_o.mean()) / scale * w_ln) @ sw["W_U"][:, 4]).mean(-1)
    assert np.allclose(heads + b_part.numpy(), attr("attn0", 4), atol=1e-5)


def test_unscaled_projection_and_a_chosen_position(ps, hand, sw, attr):
    out = hand[1]
    s2 = ps.positions["S2"]
    tok_emb = sw["W_E"][torch.as_tensor(ps.tokens[np.arange(ps.n), s2])]
    got = attr("tok_embed", {"direction": "W_U[:, 2]"}, at="S2", scale="none")
    assert np.allclose(got, (tok_emb @ sw["W_U"][:, 2]).numpy(), atol=1e-6)
    z = out["z1"][np.arange(ps.n), s2, 3]  # [n, e]
    got = attr("L1H3", "correct", at="S2", scale="none")
    want = (z @ sw["W_O1"][3] * sw["W_U"][:, torch.as_tensor(ps.target_tok[:, 0])].T).sum(-1)
    assert np.allclose(got, want.numpy(), atol=1e-6)


def test_correct_at_a_position_that_is_not_a_target_is_refused(attr):
    with pytest.raises(P.PromptError, match="not a target"):
        attr("L0H0", "correct", at="S1")


def test_logit_diff_by_hand(ps, run, hand):
    logits = hand[0]
    rows = np.arange(ps.n)[:, None]
    at = logits[rows, ps.target_pos]
    tok = torch.as_tensor(ps.target_tok)
    s1 = torch.as_tensor(ps.tokens[:, 1])[:, None].expand_as(tok)
    want = (at.gather(-1, tok[..., None]) - at.gather(-1, s1[..., None]))[..., 0].mean(-1)
    assert np.allclose(A.logit_diff(run.logits, ps, "correct", "tok[S1]"), want.numpy(), atol=1e-4)
    last = logits[np.arange(ps.n), -1]
    assert np.allclose(A.logit_diff(run.logits, ps, 5, 6, at="last"), (last[:, 5] - last[:, 6]).numpy(), atol=1e-4)


def test_centring_on_a_reference_subset():
    v = np.array([1.0, 2.0, 3.0, 10.0])
    assert np.allclose(A.centred(v, np.array([True, True, False, False])), v - 1.5)


# ---------------------------------------------------------------- aggregated attention
def test_mass_pairs_and_argmax_by_hand(ps, hand):
    pattern = hand[1]["pattern1"][:, 1]  # [n, q, k]
    toks = ps.tokens
    s1, s2 = ps.positions["S1"][0], ps.positions["S2"][0]
    queries = K.mask(ps, "S2..S2+2")
    keys = K.key_mask(ps, "S1..S1+3")
    want = np.array([np.mean([pattern[i, q, s1:s1 + 4].sum().item() for q in range(s2, s2 + 3)]) for i in range(ps.n)])
    assert np.allclose(K.mass(pattern, queries, keys), want)
    # induction pairs: from each second-copy token to the token after its first copy
    q = K.ordered(ps, "S2..last-1")
    k = K.ordered(ps, "S1+1..S2-1")
    want = np.array([np.mean([pattern[i, s2 + j, s1 + 1 + j].item() for j in range(6)]) for i in range(ps.n)])
    assert np.allclose(K.pairs(pattern, q, k), want)
    # keys whose token equals the query's: for a second-copy query, its first copy (itself only on request)
    last = ps.seq_len - 1
    for include, keys_of in ((False, lambda i: [j for j in range(last) if toks[i, j] == toks[i, last]]),
                             (True, lambda i: [j for j in range(last + 1) if toks[i, j] == toks[i, last]])):
        same = K.key_mask(ps, {"where": "tok[k] == tok[q]", "include_query": include})
        want = np.array([pattern[i, last, keys_of(i)].sum().item() for i in range(ps.n)])
        assert np.allclose(K.mass(pattern, K.mask(ps, "last"), same), want)
    top = pattern.argmax(-1).numpy()
    want = np.array([np.mean([s1 <= top[i, q] <= s1 + 3 for q in range(s2, s2 + 3)]) for i in range(ps.n)])
    assert np.allclose(K.argmax_in(pattern, queries, keys), want)


def test_key_conditions_on_named_positions_and_numbers(ps):
    m = K.key_mask(ps, {"where": "tok[k] > 30"})
    assert (m[:, -1, :-1] == (ps.tokens[:, :-1] > 30)).all() and not m[:, -1, -1].any()  # never the query itself
    assert not m[:, 0, 1:].any()  # keys after the query are never in the set
    m = K.key_mask(ps, {"where": "tok[k] == tok[S1]"})
    assert (m[:, -1, :].sum(1) == 2).all()  # the token at S1 and its repeat


@pytest.mark.parametrize("spec,says", [("S2..S1", "empty"), ({"where": "tok[q] > 3"}, "cannot read key condition")])
def test_bad_key_sets(ps, spec, says):
    with pytest.raises(P.PromptError, match=says):
        K.key_mask(ps, spec)


# ---------------------------------------------------------------- correlation
def test_pearson_from_moments_equals_numpy():
    from circuitcheck.judge import correlation as C

    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.6 * x + rng.normal(size=200)
    assert np.isclose(C.pearson(C.moments(x, y).mean(1))[0], np.corrcoef(x, y)[0, 1])


def test_quantities_from_tokens_and_fields(ps):
    from dataclasses import replace

    assert np.array_equal(P.quantity(ps, "tok[S1+2]"), ps.tokens[:, 3])
    with_fields = replace(ps, fields={"depth": np.arange(ps.n).astype(object), "name": np.full(ps.n, "x", object)})
    assert np.array_equal(P.quantity(with_fields, "depth"), np.arange(ps.n))
    with pytest.raises(P.PromptError, match="not numeric"):
        P.quantity(with_fields, "name")
    with pytest.raises(P.PromptError, match="cannot read") as info:
        P.quantity(with_fields, "width")
    assert "fields: depth, name" in info.value.hint


def test_correlation_bound_brackets_r_and_narrows_with_n():
    from circuitcheck.judge import correlation as C

    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    y = 0.5 * x + rng.normal(size=400)
    r = np.corrcoef(x, y)[0, 1]
    wide, narrow = C.Correlation(x[:100], y[:100], 0, "y"), C.Correlation(x, y, 0, "y")
    assert np.isclose(narrow.statistic, r)
    assert narrow.lower(0.025) < r < narrow.upper(0.025)
    assert narrow.upper(0.025) - narrow.lower(0.025) < wide.upper(0.025) - wide.lower(0.025)
    assert narrow.p_low(0.2) < 0.01 and narrow.p_high(0.2) > 0.5  # r ≈ 0.45: clearly above 0.2
    flat = C.Correlation(np.ones(50), y[:50], 0, "y")
    assert flat.flat and flat.lower(0.05) == -np.inf and "undefined" in flat.method
