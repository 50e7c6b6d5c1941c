"""Forms of issue 24, each against a plain-torch computation on a random model (tests/manual.py):
select within a row (`targets`, query sets `{where: ...}`), the DLA readings of the final LayerNorm,
per-prompt `heads: {any | all}`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from circuitcheck import prompts as P
from circuitcheck.files.spec import Measure
from circuitcheck.measures import attribution as A
from circuitcheck.measures import keysets as K
from circuitcheck.measures import selections as S
from circuitcheck.measures.base import KINDS, Run


@pytest.fixture(scope="module")
def ps():
    return P.repeated_tokens(n=12, seed=5, length=7, vocab=40)


@pytest.fixture(scope="module")
def hand(tiny_mlp_model, ps):
    return manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens))


@pytest.fixture(scope="module")
def run(tiny_mlp_model, ps):
    per_layer = ("attn.hook_z", "attn.hook_v", "attn.hook_pattern", "hook_mlp_out")
    return manual.run_of(tiny_mlp_model, ps, {"hook_embed", "hook_pos_embed", "ln_final.hook_in"}
                         | {f"blocks.{layer}.{n}" for layer in range(2) for n in per_layer})


def measure(spec: dict, run):
    m = Measure.model_validate(spec)
    return KINDS[m.kind].compute(m.body, run), KINDS[m.kind].defined(m.body, run.prompts)


# ---------------------------------------------------------------- 1. select within a row
def test_a_metric_at_one_target_or_at_the_targets_meeting_a_condition(ps, hand, run):
    logp = torch.log_softmax(hand[0], -1)  # [n, seq, vocab], float64 by hand
    per_target = np.array([[logp[i, ps.target_pos[i, j], ps.target_tok[i, j]].item() for j in range(6)]
                           for i in range(ps.n)])
    got, has = measure({"targets": {"metric": "logprob", "index": 2}}, run)
    assert has is not None and has.all() and np.allclose(got, per_target[:, 2], atol=1e-5)
    got, _ = measure({"targets": {"metric": "logprob", "index": -1}}, run)
    assert np.allclose(got, per_target[:, 5], atol=1e-5)
    got, _ = measure({"targets": {"metric": "logprob", "at": "S2+3"}}, run)  # the target read at S2+3 predicts r5
    assert np.allclose(got, per_target[:, 3], atol=1e-5)
    inside = (ps.target_tok >= 10) & (ps.target_tok <= 19)
    got, has = measure({"targets": {"metric": "logprob", "where": "target in 10..19"}}, run)
    assert has.tolist() == inside.any(1).tolist() and 0 < has.sum() < ps.n  # some rows have none: left out
    want = [per_target[i][inside[i]].mean() for i in np.flatnonzero(has)]
    assert np.allclose(got[has], want, atol=1e-5) and np.isnan(got[~has]).all()


def test_query_sets_by_token(ps, hand):
    pattern = hand[1]["pattern1"][:, 2]  # [n, q, k]
    toks = ps.tokens
    repeats = [[q for q in range(ps.seq_len) if toks[i, q] in toks[i, :q]] for i in range(ps.n)]
    queries = K.mask(ps, K.QueryWhere(where="copies_before > 0"))
    assert [np.flatnonzero(queries[i]).tolist() for i in range(ps.n)] == repeats
    keys = K.key_mask(ps, {"where": "tok[k] == tok[q]"})
    want = [np.mean([sum(pattern[i, q, k].item() for k in range(q) if toks[i, k] == toks[i, q]) for q in repeats[i]])
            for i in range(ps.n)]
    assert np.allclose(K.mass(pattern, queries, keys), want)
    # the queries whose target (the next token, in the second copy) is in 10..19
    target_at = {(i, ps.target_pos[i, j]): ps.target_tok[i, j] for i in range(ps.n) for j in range(6)}
    want = [[q for q in range(ps.seq_len) if 10 <= target_at.get((i, q), -1) <= 19] for i in range(ps.n)]
    got = S.select("target in 10..19", S.at_every_position(ps))
    assert [np.flatnonzero(got[i]).tolist() for i in range(ps.n)] == want
    got = S.select("tok[q-1] == tok[S1] and q > 2", S.at_every_position(ps))  # a named position and an offset
    assert [np.flatnonzero(got[i]).tolist() for i in range(ps.n)] == [[9] for _ in range(ps.n)]


@pytest.mark.parametrize("cond,says", [("depth > 2", "names 'depth'"), ("tok[q] == 'a'", "numbers"),
                                       ("pos[q] > 1", "`q`")])
def test_bad_position_conditions(ps, cond, says):
    with pytest.raises(P.PromptError, match=says):
        S.check(cond)
        S.select(cond, S.at_every_position(ps))


# ---------------------------------------------------------------- 2. the DLA readings
def _hand_ln(model, x, scale):
    sd = model.state_dict()
    w, b = sd["ln_final.weight"].double(), sd["ln_final.bias"].double()
    return lambda part, bias: (part - part.mean(-1, keepdim=True)) / scale * w + (b if bias else 0)


def test_the_readings_of_the_final_layernorm_by_hand(tiny_mlp_model, ps, hand, sw, run):
    out = hand[1]
    rows = np.arange(ps.n)[:, None]
    resid = out["final_in"][rows, ps.target_pos]  # [n, k, d]
    centred = resid - resid.mean(-1, keepdim=True)
    own = (centred.pow(2).mean(-1, keepdim=True) + tiny_mlp_model.cfg.eps).sqrt()
    head = out["z1"][rows, ps.target_pos][..., 3, :] @ sw["W_O1"][3]  # L1H3's output [n, k, d]
    toward = sw["W_U"][:, torch.as_tensor(ps.target_tok)].permute(1, 2, 0)  # [n, k, d]
    readings = {"frozen": _hand_ln(tiny_mlp_model, resid, own)(head, False),
                "mean": _hand_ln(tiny_mlp_model, resid, own.mean())(head, False),
                "none": head}
    x = resid.reshape(-1, resid.shape[-1]).numpy()
    y = _hand_ln(tiny_mlp_model, resid, own)(resid, True).reshape(x.shape).numpy()
    coef = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0]
    readings["fit"] = torch.as_tensor(head.numpy() @ coef[:-1])
    for scale, through in readings.items():
        want = (through * toward).sum(-1).mean(-1)
        got = A.attribution(tiny_mlp_model, run.cache, ps, "L1H3", "correct", scale=scale).mean(-1)
        assert np.allclose(got, want.numpy(), atol=1e-5), scale
    # under every reading the parts add up to that reading's total
    parts = [f"L{layer}H{h}" for layer in range(2) for h in range(4)] + ["mlp0", "mlp1", "embed", "bias"]
    for scale in ("mean", "fit"):
        total = A.total(tiny_mlp_model, run.cache, ps, "correct", scale=scale)
        assert np.allclose(sum(A.attribution(tiny_mlp_model, run.cache, ps, c, "correct", scale=scale)
                               for c in parts), total, atol=1e-6), scale


def test_a_fitted_reading_gives_the_same_bits_every_time(tiny_mlp_model, ps, run):
    """Same file, same machine, same numbers: LAPACK's default least-squares driver on the CPU (gelsy)
    moved the fit in its last bits from one call to the next on the same inputs."""
    first = A.attribution(tiny_mlp_model, run.cache, ps, "L1H3", "correct", scale="fit")
    for _ in range(20):
        assert np.array_equal(A.attribution(tiny_mlp_model, run.cache, ps, "L1H3", "correct", scale="fit"), first)


def test_a_fit_with_too_few_read_positions_is_refused(tiny_mlp_model, ps, run):
    few = ps.subset(np.arange(2))
    cache = {k: v[:2] for k, v in run.cache.items()}
    with pytest.raises(P.PromptError, match="does not determine"):
        A.attribution(tiny_mlp_model, cache, few, "L1H3", 4, at="last", scale="fit")


def test_every_report_line_names_the_reading():
    for scale in ("frozen", "mean", "fit", "none"):
        spec = {"component": "L0H1"} if scale == "frozen" else {"component": "L0H1", "scale": scale}
        m = Measure.model_validate({"dla": spec})
        assert f"scale={scale}" in KINDS["dla"].describe(m.body)


# ---------------------------------------------------------------- 3. per-prompt any / all heads
def test_any_and_all_heads_inside_each_prompt(ps, hand, run):
    s2 = ps.positions["S2"][0]
    top = torch.stack([hand[1]["pattern1"][:, h, s2].argmax(-1) for h in range(4)])  # [h, n]
    hits = (top == s2 - 7 + 1).double()  # the token after the first copy of S2's token
    for quantifier, want in (("any", hits.max(0).values), ("all", hits.min(0).values)):
        got, _ = measure({"heads": {quantifier: "layer 1", "of": {"attention_argmax": {"from": "S2", "to": "S1+1"}}}},
                         run)
        assert np.array_equal(got, want.numpy()), quantifier
    weights = torch.stack([hand[1]["pattern1"][:, h, s2, s2 - 6] for h in (0, 2)])  # [h, n]
    got, _ = measure({"heads": {"any": ["L1H0", "L1H2"], "above": 0.2,
                                "of": {"attention": {"from": "S2", "to": "S1+1"}}}}, run)
    assert np.array_equal(got, (weights >= 0.2).any(0).double().numpy())
    got, _ = measure({"heads": {"all": ["L1H0", "L1H2"], "of": {"attention": {"from": "S2", "to": "S1+1"}}}}, run)
    assert np.allclose(got, weights.min(0).values.numpy())


@pytest.mark.parametrize("spec,says", [
    ({"any": "layer 1", "all": "layer 1", "of": {"attention": {"from": 1, "to": 0}}}, "any: HEADS"),
    ({"any": "layers 1", "of": {"attention": {"from": 1, "to": 0}}}, "layer N"),
    ({"any": "layer 1", "of": {"dla": {"component": "L0H1"}}}, "takes a head"),
    ({"any": "layer 1", "of": {"attention": {"head": "L0H1", "from": 1, "to": 0}}}, "without `head:`"),
])
def test_bad_heads_measures(spec, says):
    with pytest.raises(Exception, match=says):
        Measure.model_validate({"heads": spec})


# ---------------------------------------------------------------- 7. variables in `expect:` and `correlates.with`
def test_each_case_is_judged_against_its_own_bound_region(hyp):
    import circuitcheck

    head = "for: {all: {values: {p: [1, 2]%s}, combine: zip}}\n  measure: {attention: {head: L0H0, from: last, to: $p}}\n"
    look = circuitcheck.check(hyp(f"- id: look\n  says: s\n  {head % ''}  expect: record\n"))[0]
    (low1, high1), (low2, high2) = [(c.estimate.low, c.estimate.high) for c in look.cases]
    assert high1 < 0.99 and low2 > 0  # room for a bound above case 1 and one below case 2
    hi = [high1 + 0.01, low2 / 2]  # case 1 lies below its bound, case 2 above its own
    path = hyp(f"- id: bound\n  says: s\n  {head % f', hi: {hi}'}  expect: {{at_most: $hi}}\n"
               "- id: corr\n  says: s\n  for: {all: {values: {p: [1, 2]}}}\n"
               "  measure: {attention: {head: L0H0, from: last, to: 1}}\n"
               "  expect: {correlates: {with: \"tok[$p]\", between: [-1, 1]}}\n", name="b.hyp.yaml")
    bound, corr = circuitcheck.check(path)
    assert [c.bounds[1] for c in bound.cases] == hi
    assert [c.verdict for c in bound.cases] == ["pass", "fail"] and bound.verdict == "fail"
    assert [c.estimate.method.split(" with ")[1].split(",")[0] for c in corr.cases] == ["tok[1]", "tok[2]"]


@pytest.mark.parametrize("claim,says", [
    ("  measure: accuracy\n  expect: {at_least: $v}\n", "no `for:`"),
    ("  sweep: {v: [0.1, 0.2]}\n  measure: accuracy\n  expect: {at_least: $v}\n", "one region"),
    ("  for: {all: {values: {v: [0.1, x]}}}\n  measure: accuracy\n  expect: {at_least: $v}\n", "after binding"),
])
def test_variables_in_expect_errors_say_where_they_are_bound(hyp, claim, says):
    from circuitcheck.files.loader import HypothesisError, load

    with pytest.raises(HypothesisError, match=says):
        load(hyp("- id: c\n  says: s\n" + claim))


# ---------------------------------------------------------------- 8. weights-only files need no prompts
import circuitcheck  # noqa: E402  (registers the measure below for the tests of this section)


@circuitcheck.register_measure("vocab-grad-off", weights_only=True)
def _grad_off(model):
    """1 where autograd is off while the measure runs, and the product it makes tracks no gradient."""
    product = model.W_E[0] @ model.W_U
    return float(not torch.is_grad_enabled() and not product.requires_grad)


def test_a_weights_only_file_needs_no_prompts(tiny_dir, tmp_path):
    from conftest import copy_model

    from circuitcheck.files.loader import HypothesisError, load

    model_dir = copy_model(tiny_dir, tmp_path).relative_to(tmp_path)
    head = f"model: {{native: {{config: {model_dir}/config.json, weights: {model_dir}/model.safetensors}}}}\nclaims:\n"
    path = tmp_path / "w.hyp.yaml"
    path.write_text(head + "  - {id: n, says: s, measure: {norm: {of: \"W_E[3]\"}}, expect: {at_least: 0}}\n"
                           "  - {id: g, says: s, measure: {python: vocab-grad-off}, expect: {at_least: 1}}\n")
    norm, grad = circuitcheck.check(path)
    from safetensors.torch import load_file

    w_e = load_file(str(tmp_path / model_dir / "model.safetensors"))["embed.weight"].double()
    assert np.isclose(norm.cases[0].estimate.statistic, w_e[3].norm().item(), rtol=1e-6)
    assert norm.verdict == grad.verdict == "pass"
    path.write_text(head + "  - {id: n, says: s, measure: {norm: {of: \"W_E[3]\"}}, expect: {at_least: 0}}\n"
                           "  - id: a\n    says: s\n    measure: accuracy\n    expect: {at_least: 0}\n")
    with pytest.raises(HypothesisError, match="no `prompts:`") as info:
        load(path)
    assert info.value.line == 6 and "claims[1].measure" in str(info.value)


# ---------------------------------------------------------------- 6. the prediction equals a second token
def test_the_top_prediction_is_a_named_token(ps, hand, run):
    top = hand[0].argmax(-1).numpy()  # [n, seq] by hand
    last = ps.seq_len - 1
    s1_tok = ps.tokens[:, ps.positions["S1"][0]]
    got, _ = measure({"predicts": {"token": "tok[S1]", "at": "last"}}, run)
    assert np.array_equal(got, (top[:, last] == s1_tok).astype(float))
    counts = {t: np.mean(top[:, last] == t) for t in range(40)}
    common = max(counts, key=counts.get)  # the most frequent top prediction at the last token: a claim that can hold
    got, _ = measure({"predicts": {"token": int(common), "at": "last"}}, run)
    assert got.mean() == counts[common] > 0
    got, _ = measure({"predicts": {"token": "correct"}}, run)  # at the targets: accuracy by another name
    want = [np.mean([top[i, p] == t for p, t in zip(ps.target_pos[i], ps.target_tok[i])]) for i in range(ps.n)]
    assert np.allclose(got, want)


# ---------------------------------------------------------------- 5. reductions in weight expressions
def test_reductions_in_weight_expressions_by_hand(tiny_mlp_model, sw):
    from circuitcheck.measures import weights as W

    def ev(text):
        return W.evaluate(tiny_mlp_model, W.parse(text))

    w_in, w_u = sw["W_in1"], sw["W_U"]
    assert torch.allclose(ev("norm(W_in[1], 0)"), w_in.norm(dim=0))
    cos = (w_in * w_u[:, 3:4]).sum(0) / (w_in.norm(dim=0) * w_u[:, 3].norm())
    assert torch.allclose(ev("cos(W_in[1], W_U[:, 3])"), cos)
    assert np.isclose(ev("mean(sq(cos(W_in[1], W_U[:, 3])))").item(), (cos ** 2).mean().item())
    ln = tiny_mlp_model.state_dict()["blocks.0.ln2.weight"].double()
    assert torch.allclose(ev("ln2_w[0]"), ln) and np.isclose(ev("max(abs(ln_final_w))").item(),
                                                            tiny_mlp_model.state_dict()["ln_final.weight"].abs().max().item())
    assert torch.allclose(ev("sum(W_E, 1)"), sw["W_E"].sum(1))
    m = Measure.model_validate({"weight_value": {"of": "mean(norm(W_in[1], 0))"}})
    got = KINDS["weight_value"].compute(m.body, Run(None, {}, None, tiny_mlp_model))
    assert np.isclose(got, w_in.norm(dim=0).mean().item())


@pytest.mark.parametrize("text,says", [("cos(W_in[0])", "cos\\(X, v\\)"), ("mean(W_E, W_U)", "axis"),
                                       ("sq(W_E, 0)", "sq\\(X\\)")])
def test_bad_reductions(text, says):
    from circuitcheck.measures import weights as W

    with pytest.raises(W.ExpressionError, match=says):
        W.parse(text)


def test_a_weight_value_must_be_one_number(tiny_mlp_model):
    m = Measure.model_validate({"weight_value": {"of": "norm(W_in[1], 0)"}})
    with pytest.raises(ValueError, match="not one number"):
        KINDS["weight_value"].compute(m.body, Run(None, {}, None, tiny_mlp_model))


# ---------------------------------------------------------------- 5. statistics of a run in weight expressions
RUN_EXPR = "cos(act(ln_final.hook_in), W_U[:, 3]) * act(ln_final.hook_scale) / act(blocks.0.ln1.hook_scale, 2)"


def test_means_from_a_run_inside_weight_algebra_by_hand(tiny_mlp_model, ps, hand, sw):
    """Each act(...) is a mean over the prompts (at the targets, or at a position); the value is f of
    those means, and each prompt's value is f's linearisation there, with a gradient taken here by
    central differences (not autograd): their mean is f(means) and their spread the delta method's."""
    hand = hand[1]  # (logits, intermediates)
    rows = np.arange(ps.n)[:, None]
    eps = tiny_mlp_model.cfg.eps

    def scale(x):
        return ((x - x.mean(-1, keepdim=True)).pow(2).mean(-1) + eps).sqrt()

    final = hand["final_in"][rows, ps.target_pos]  # [n, k, d]
    atoms = [final.mean(1), scale(final).mean(1, keepdim=True), scale(hand["resid_pre0"][:, 2])[:, None]]
    atoms = [a.numpy() for a in atoms]
    w = sw["W_U"][:, 3].numpy()

    def f(x, s_final, s0):
        return x @ w / (np.linalg.norm(x) * np.linalg.norm(w)) * s_final[0] / s0[0]

    means = [a.mean(0) for a in atoms]
    want = np.full(ps.n, f(*means))
    for j, m in enumerate(means):
        for c in range(m.size):
            up, down = [x.copy() for x in means], [x.copy() for x in means]
            up[j][c] += 1e-6
            down[j][c] -= 1e-6
            want += (f(*up) - f(*down)) / 2e-6 * (atoms[j][:, c] - m[c])

    run = manual.run_of(tiny_mlp_model, ps, {"ln_final.hook_in", "ln_final.hook_scale", "blocks.0.ln1.hook_scale"})
    got, _ = measure({"weight_value": {"of": RUN_EXPR}}, run)
    assert np.allclose(got, want, atol=1e-7) and np.isclose(got.mean(), f(*means), atol=1e-12)
    assert got.std() > 1e-3  # the prompts differ: a spread to judge, not an exact number


def test_an_expression_reading_a_run_is_planned_as_a_run():
    m = Measure.model_validate({"weight_value": {"of": RUN_EXPR}})
    kind = KINDS["weight_value"]
    assert not kind.is_weights_only(m.body) and not kind.streams_for(m.body)
    assert kind.needs(m.body, None) == {"ln_final.hook_in", "ln_final.hook_scale", "blocks.0.ln1.hook_scale"}
    plain = Measure.model_validate({"weight_value": {"of": "mean(norm(W_in[1], 0))"}})
    assert kind.is_weights_only(plain.body) and kind.needs(plain.body, None) == set()


@pytest.mark.parametrize("spec,says", [
    ({"norm": {"of": "act(ln_final.hook_in)"}}, "only `weight_value` takes it"),
    ({"cosine": {"a": "act(blocks.0.hook_resid_post)", "b": "W_U[:, 3]"}}, "only `weight_value` takes it"),
    ({"weight_value": {"of": "act(blocks.0.attn.hook_pattern)"}}, "cannot read"),
    ({"weight_value": {"of": "act(blocks.0.hook_resid_post) / act(blocks.0.hook_resid_post)"}}, "divided by itself"),
])
def test_bad_run_statistics_are_refused_when_read(spec, says):
    from circuitcheck.measures import weights as W

    with pytest.raises(ValueError, match=says):
        m = Measure.model_validate(spec)
        for _, (tree, dims), what in (r for r in KINDS[m.kind].references(m.body) if r[2] == "expression"):
            W.shape_of(tree, {"d_model": 8}, dims)


# ---------------------------------------------------------------- 4. a head's attribution by source position
def test_a_heads_attribution_split_by_source_position(tiny_mlp_model, ps, hand, sw, run):
    cache = run.cache
    out, rows, last = hand[1], np.arange(ps.n), ps.seq_len - 1
    s1 = ps.positions["S1"][0]
    pattern, v = out["pattern1"][:, 3], out["v1"][:, :, 3]  # by hand: [n, q, k], [n, k, e]
    direction = sw["W_U"][:, 4]
    part = (pattern[rows, last, s1][:, None] * v[rows, s1]) @ sw["W_O1"][3]  # what L1H3 read from S1, at last
    want = (part * direction).sum(-1)
    got = A.attribution(tiny_mlp_model, cache, ps, "L1H3", 4, at="last", scale="none",
                        source=K.mask(ps, "S1")).mean(-1)
    assert np.allclose(got, want.numpy(), atol=1e-6)
    whole = A.attribution(tiny_mlp_model, cache, ps, "L1H3", 4, at="last").mean(-1)
    parts = sum(A.attribution(tiny_mlp_model, cache, ps, "L1H3", 4, at="last", source=K.mask(ps, keys)).mean(-1)
                for keys in ("0..S1", "S1+1..S2-1", "S2..last"))
    assert np.allclose(parts, whole, atol=1e-6)  # a partition of the keys adds up to the head's whole output


@pytest.mark.parametrize("measure,field,says", [
    ('{attention_mass: {head: L0H1, from: {where: "tok[q] == tok[X]"}, to: S1}}', "from.where", "unknown position 'X'"),
    ('{targets: {metric: accuracy, where: "target > 100"}}', "targets.where", "only 0 of 120 prompts"),
    ('{heads: {any: layer 5, of: {attention: {from: last, to: S2}}}}', "heads.any", "layer 5 does not exist"),
])
def test_selections_and_head_sets_are_checked_at_collection(hyp, measure, field, says):
    from circuitcheck.files.loader import HypothesisError, load

    with pytest.raises(HypothesisError, match=says) as info:
        load(hyp(f"- id: c\n  says: s\n  measure: {measure}\n  expect: {{at_least: 0}}\n"))
    assert info.value.line == 7 and field in str(info.value)  # the `measure:` line
