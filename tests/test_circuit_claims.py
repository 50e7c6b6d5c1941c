"""Claims about a circuit as a whole, and the paired comparisons they are made of, each checked per
prompt against a hand forward pass (tests/manual.py: the state dict's weights, edited by hand), on
a model with MLPs and LayerNorm and on the native attention-only zoo:induction."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import manual
from circuitcheck import check
from circuitcheck.files import loader as H
from circuitcheck.session import Session

PROMPTS = "{generator: repeated_tokens, n: 120, seed: 1, length: 6}"
ZOO_PROMPTS = "{generator: repeated_tokens, n: 150, seed: 3}"


def zoo_file(tmp_path, claims: str, prompts: str = ZOO_PROMPTS, name: str = "zoo"):
    path = tmp_path / f"{name}.hyp.yaml"
    path.write_text(f"model: zoo:induction\nprompts: {prompts}\nclaims:\n" + textwrap.indent(textwrap.dedent(claims), "  "))
    return path


@pytest.fixture(scope="module")
def induction():
    from circuitcheck import load_model

    return load_model("zoo:induction")


def values_of(path) -> tuple[dict, object]:
    """circuitcheck's per-prompt values of each claim's first case, and the prompt set."""
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    out = {lc.claim.id: session.run_values.values(loaded, lc.claim, lc.cases[0])[0] for lc in loaded.claims}
    case = loaded.claims[0].cases[0]
    return out, H.prompt_set(loaded, case.prompts_key, case.prompts)


def logprob(logits, ps) -> np.ndarray:
    """The `logprob` measure by hand: the correct token's log-probability, averaged over targets."""
    rows = torch.arange(ps.n)[:, None]
    lp = torch.log_softmax(logits[rows, torch.as_tensor(ps.target_pos)], -1)
    return lp.gather(-1, torch.as_tensor(ps.target_tok)[..., None])[..., 0].mean(-1).numpy()


def hand_run(model, ps, knocked: dict[int, list[int]] = {}, mlps: tuple[int, ...] = (), method: str = "mean",
             path=None):
    """Logprob per prompt with heads {layer: [head, ...]} and MLP layers knocked out by hand: each
    replaced by its mean at each position over the reference prompts of the file at `path`
    (manual.reference_prompts, what `method: mean` averages over), or by zero."""
    tokens = torch.as_tensor(ps.tokens)
    clean = {} if path is None else manual.forward_mlp(model, torch.as_tensor(manual.reference_prompts(path).tokens))[1]

    def edit(name, x):
        for layer, heads in knocked.items():
            if name == f"z{layer}":
                x = x.clone()
                new = clean[name].mean(0, keepdim=True) if method == "mean" else torch.zeros_like(x[:1])
                x[:, :, heads] = new[:, :, heads].expand(x.shape[0], -1, -1, -1)
        for layer in mlps:
            if name == f"mlp_out{layer}":
                x = clean[name].mean(0, keepdim=True).expand_as(x) if method == "mean" else torch.zeros_like(x)
        return x

    return logprob(manual.forward_mlp(model, tokens, edit)[0], ps)


# ---------------------------------------------------------------- versus with its own run
def test_versus_under_compares_two_interventions_prompt_by_prompt(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp("""\
        - id: one-vs-other
          says: knocking out L1H0 costs more than knocking out MLP 0
          under: {ablate: {heads: [L1H0], method: mean}}
          measure: logprob
          versus: {under: {ablate: {hook: mlp_out, layer: 0, method: mean}}}
          expect: record
        - id: vs-full
          says: the run without L1H0 against the full model
          under: {ablate: {heads: [L1H0], method: mean}}
          measure: logprob
          versus: {under: []}
          expect: record
        """, prompts=PROMPTS)
    got, ps = values_of(path)
    head = hand_run(tiny_mlp_model, ps, {1: [0]}, path=path)
    mlp = hand_run(tiny_mlp_model, ps, mlps=(0,), path=path)
    full = hand_run(tiny_mlp_model, ps)
    assert not np.allclose(head, mlp, atol=1e-3) and not np.allclose(head, full, atol=1e-3)
    np.testing.assert_allclose(got["one-vs-other"], head - mlp, atol=2e-4)
    np.testing.assert_allclose(got["vs-full"], head - full, atol=2e-4)


def test_versus_under_on_an_attention_only_zoo_model(tmp_path, induction):
    path = zoo_file(tmp_path, """\
        - id: holds
          says: pruning the induction heads lowers the log-probability against the full model
          under: {ablate: {heads: [L1H1, L1H3], method: mean}}
          measure: logprob
          versus: {under: []}
          expect: {at_most: -1}
        """)
    got, ps = values_of(path)
    diff = hand_run(induction, ps, {1: [1, 3]}, path=path) - hand_run(induction, ps)
    np.testing.assert_allclose(got["holds"], diff, atol=2e-4)
    twin = zoo_file(tmp_path, f"""\
        - id: holds
          says: pruning the induction heads lowers the log-probability against the full model
          under: {{ablate: {{heads: [L1H1, L1H3], method: mean}}}}
          measure: logprob
          versus: {{under: []}}
          expect: {{at_most: {float(diff.mean() - 6 * diff.std() / np.sqrt(diff.size))!r}}}
        """, name="twin")
    assert [r.verdict for r in check(path)] == ["pass"]
    assert [r.verdict for r in check(twin)] == ["fail"]


def test_versus_under_runs_are_shared_and_planned(hyp_mlp):
    """Two claims comparing with the same run plan it once: one clean pass and one per intervention."""
    path = hyp_mlp("""\
        - id: a
          says: a
          under: {ablate: {heads: [L1H0], method: zero}}
          measure: logprob
          versus: {under: []}
          expect: record
        - id: b
          says: b
          under: {ablate: {heads: [L1H1], method: zero}}
          measure: prob
          versus: {under: [], measure: logprob}
          expect: record
        """, prompts=PROMPTS)
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    for lc in loaded.claims:
        session.result(loaded.path, lc.claim.id)
    assert session.run_values.forward_passes() == 3


@pytest.mark.parametrize("versus,says", [
    ("{under: [], measure: {atention: 1}}", "unknown key 'atention'"),
    ("{under: {ablate: {heads: [L9H0]}}}", "L9H0"),
])
def test_bad_versus_runs_are_refused_at_load(hyp_mlp, versus, says):
    path = hyp_mlp(f"""\
        - id: c
          says: s
          measure: logprob
          versus: {versus}
          expect: {{at_least: 0}}
        """)
    with pytest.raises(H.HypothesisError, match=says) as info:
        H.load(path)
    assert info.value.line == 8  # the line of `versus:`


def test_versus_under_goes_without_drop(hyp_mlp):
    path = hyp_mlp("""\
        - id: c
          says: s
          under: {ablate: {heads: [L1H0]}}
          measure: logprob
          versus: {under: []}
          expect: {drop: {at_least: 0}}
        """)
    with pytest.raises(H.HypothesisError, match="already compares two runs"):
        H.load(path)


# ---------------------------------------------------------------- claims about a circuit
def named_values(path):
    """{claim id: [{run name: per-prompt values} for each case]}, and the prompt set."""
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    out = {lc.claim.id: [session.run_values.named(loaded, c) for c in lc.cases] for lc in loaded.claims}
    case = loaded.claims[0].cases[0]
    return out, H.prompt_set(loaded, case.prompts_key, case.prompts), session, loaded


MLP_CIRCUIT = "{nodes: [L0H1, L1H0, mlp1], ablation: mean}"  # the tiny model: 2 layers of 4 heads and an MLP


def test_faithfulness_runs_and_ratio_by_hand_on_a_model_with_mlps(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp(f"""\
        - id: f
          says: the circuit recovers a share of the log-probability
          circuit: {MLP_CIRCUIT}
          measure: logprob
          expect: {{faithfulness: {{at_least: -100}}}}
        """, prompts=PROMPTS)
    got, ps, session, loaded = named_values(path)
    runs = got["f"][0]
    circuit = hand_run(tiny_mlp_model, ps, {0: [0, 2, 3], 1: [1, 2, 3]}, mlps=(0,), path=path)
    empty = hand_run(tiny_mlp_model, ps, {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}, mlps=(0, 1), path=path)
    full = hand_run(tiny_mlp_model, ps)
    for name, want in (("circuit", circuit), ("empty", empty), ("full", full)):
        np.testing.assert_allclose(runs[name], want, atol=2e-4, err_msg=name)
    assert not np.allclose(circuit, full, atol=1e-3) and not np.allclose(circuit, empty, atol=1e-3)
    result = session.result(loaded.path, "f")
    f = (circuit.mean() - empty.mean()) / (full.mean() - empty.mean())
    assert np.isclose(result.main.estimate.statistic, f, atol=1e-4)
    assert result.main.estimate.low <= f <= result.main.estimate.high


def test_completeness_and_minimality_runs_by_hand_on_attention_only_zoo(tmp_path, induction):
    path = zoo_file(tmp_path, """\
        - id: complete
          says: knocking out each class of the circuit does to it what it does to the model
          circuit: {nodes: [L0H2, L1H1, L1H3], ablation: zero, knock: {classes: {induction: [L1H1, L1H3]}}}
          measure: logprob
          expect: {completeness: {at_most: 10}}
        - id: minimal
          says: every node matters
          circuit: {nodes: [L0H2, L1H1, L1H3], ablation: zero, knock: {classes: {induction: [L1H1, L1H3]}}}
          measure: logprob
          expect: {minimality: {at_least: 0}}
        """)
    got, ps, session, loaded = named_values(path)
    outside = {0: [0, 1, 3], 1: [0, 2]}

    def run(extra: dict):
        heads = {layer: sorted(set(outside[layer]) | set(extra.get(layer, []))) for layer in (0, 1)}
        return hand_run(induction, ps, heads, method="zero")

    (complete,) = got["complete"]
    np.testing.assert_allclose(complete["circuit-K:induction"], run({1: [1, 3]}), atol=2e-4)
    np.testing.assert_allclose(complete["model-K:induction"], hand_run(induction, ps, {1: [1, 3]}, method="zero"),
                               atol=2e-4)
    empty = hand_run(induction, ps, {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}, method="zero")
    full = hand_run(induction, ps)
    np.testing.assert_allclose(complete["empty"], empty, atol=2e-4)
    result = session.result(loaded.path, "complete")
    want = (run({1: [1, 3]}).mean() - hand_run(induction, ps, {1: [1, 3]}, method="zero").mean()) / \
        (full.mean() - empty.mean())
    assert np.isclose(result.main.estimate.statistic, want, atol=1e-4)
    # minimality: L1H1's case tries K = {} and K = {L1H3} (its group without it)
    l1h1 = got["minimal"][[c.label for c in loaded.claims[1].cases].index("L1H1")]
    assert sorted(l1h1) == sorted(["empty", "circuit-K:none", "circuit-Kv:none", "circuit-K:induction-L1H1",
                                   "circuit-Kv:induction-L1H1"])
    np.testing.assert_allclose(l1h1["circuit-Kv:none"], run({1: [1]}), atol=2e-4)
    np.testing.assert_allclose(l1h1["circuit-Kv:induction-L1H1"], run({1: [1, 3]}), atol=2e-4)
    drops = [(run(k).mean() - run(kv).mean()) / (run(k).mean() - empty.mean())
             for k, kv in (({}, {1: [1]}), ({1: [3]}, {1: [1, 3]}))]
    case = session.result(loaded.path, "minimal").cases[1]
    assert case.label == "L1H1" and np.isclose(case.estimate.statistic, max(drops), atol=1e-4)


def test_minimality_of_a_circuit_with_an_mlp_plans_a_case_per_node(hyp_mlp):
    path = hyp_mlp(f"""\
        - id: m
          says: every node matters
          circuit: {{nodes: [L0H1, L1H0, mlp1], knock: {{random: 2, size: 1}}}}
          measure: logprob
          expect: {{minimality: {{at_least: 0.1}}}}
        """, prompts=PROMPTS)
    cases = H.load(path).claims[0].cases
    assert [c.label for c in cases] == ["L0H1", "L1H0", "L1.mlp"]
    mlp = dict(cases[2].runs)
    assert "circuit-Kv:none" in mlp and all(len(u) >= 1 for u in mlp.values())


def test_kl_from_the_model_by_hand(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp(f"""\
        - id: kl
          says: the circuit's predictions stay near the model's
          circuit: {MLP_CIRCUIT}
          measure: {{kl: model}}
          expect: record
        """, prompts=PROMPTS)
    got, ps = values_of(path)
    tokens = torch.as_tensor(ps.tokens)
    _, clean = manual.forward_mlp(tiny_mlp_model, torch.as_tensor(manual.reference_prompts(path).tokens))

    def edit(name, x):
        heads = {"z0": [0, 2, 3], "z1": [1, 2, 3]}.get(name)
        if heads is not None:
            x = x.clone()
            x[:, :, heads] = clean[name].mean(0, keepdim=True)[:, :, heads].expand(x.shape[0], -1, -1, -1)
        return clean[name].mean(0, keepdim=True).expand_as(x) if name == "mlp_out0" else x

    rows, pos = torch.arange(ps.n)[:, None], torch.as_tensor(ps.target_pos)
    p = torch.log_softmax(manual.forward_mlp(tiny_mlp_model, tokens)[0][rows, pos], -1)
    q = torch.log_softmax(manual.forward_mlp(tiny_mlp_model, tokens, edit)[0][rows, pos], -1)
    want = (p.exp() * (p - q)).sum(-1).mean(-1).numpy()
    assert want.min() > 1e-3
    np.testing.assert_allclose(got["kl"], want, rtol=1e-3, atol=1e-5)


def test_random_circuits_keep_the_make_up_and_are_seeded(hyp_mlp):
    path = hyp_mlp(f"""\
        - id: r
          says: beats random circuits
          circuit: {{nodes: [L0H1, L1H0, mlp1], random: {{draws: 6, seed: 3}}}}
          measure: logprob
          expect: {{beats_random: {{at_least: 0.5}}}}
        """, prompts=PROMPTS)
    loaded = H.load(path)
    (case,) = loaded.claims[0].cases
    draws = [under for name, under in case.runs if name.startswith("random:")]
    assert len(draws) == 6 and len({str(d) for d in draws}) > 1
    for (keep,) in draws:  # every draw keeps 2 heads and 1 MLP layer, knocking out the rest
        kept = keep.model_dump(exclude_none=True)["keep_circuit"]["circuit"]["nodes"]
        assert sum(n.startswith("L") and "H" in n for n in kept) == 2
        assert sum(n.endswith(".mlp") for n in kept) == 1
    assert [str(d) for d in draws] == [str(u) for n, u in H.load(path).claims[0].cases[0].runs if n.startswith("random:")]


def test_a_denominator_that_may_be_zero_is_refused_not_passed():
    from circuitcheck.judge.ratio import Ratio

    rng = np.random.default_rng(0)
    b = rng.normal(0.0, 1.0, 400)  # m(M) − m(∅): the knockouts do not move the metric
    a = 0.9 * b + rng.normal(0, 0.1, 400)
    r = Ratio(a, b, 0, what="faithfulness", denominator="m(M) − m(∅)")
    est = r.at(0.05)
    assert (est.low, est.high) == (-np.inf, np.inf) and est.method.startswith("refused")
    from circuitcheck.judge.verdict import judge
    assert judge(est, 0.8, np.inf) == "inconclusive"


def test_ratio_bounds_agree_with_fiellers_closed_form():
    """On normal data, the ratio's bounds are Fieller's interval (the quadratic in m, with the
    bootstrap's quantile in place of the normal one: close, not equal)."""
    from scipy.stats import norm

    from circuitcheck.judge.ratio import Ratio

    rng = np.random.default_rng(1)
    n = 2000
    b = rng.normal(2.0, 1.0, n)
    a = 0.7 * b + rng.normal(0, 0.8, n)
    r = Ratio(a, b, 0)
    z = norm.ppf(0.975)
    ma, mb = a.mean(), b.mean()
    saa, sbb, sab = np.cov(a, b, ddof=1).ravel()[[0, 3, 1]] / n
    # (ma − m mb)² = z² (saa − 2 m sab + m² sbb): a quadratic in m
    qa, qb, qc = mb ** 2 - z ** 2 * sbb, -2 * (ma * mb - z ** 2 * sab), ma ** 2 - z ** 2 * saa
    lo, hi = sorted(np.roots([qa, qb, qc]))
    assert np.isclose(r.lower(0.025), lo, atol=0.1 * (hi - lo))
    assert np.isclose(r.upper(0.025), hi, atol=0.1 * (hi - lo))
    assert r.lower(0.025) < ma / mb < r.upper(0.025)


def test_beaten_is_the_k_of_j_test_by_hand():
    from circuitcheck.judge.ratio import Beaten
    from circuitcheck.judge.stats import Exact

    class P(Exact):  # a comparison with a given p-value against "not beaten"
        def __init__(self, p, mean):
            super().__init__(mean, 100, "given")
            self.p = p

        def p_low(self, m):
            return self.p

        def p_high(self, m):
            return 1.0

    ps = [0.001, 0.002, 0.01, 0.2, 0.5]
    b = Beaten([P(p, 1.0 if p < 0.1 else -1.0) for p in ps], "t")
    assert b.statistic == 3 / 5
    # beats at least 3 of 5: (5 − 3 + 1) × the 3rd smallest p = 3 × 0.01
    assert np.isclose(b.p_low(0.5), 3 * 0.01)  # share > 0.5 means at least 3 beaten
    assert b.lower(0.05) == 3 / 5 and b.lower(0.02) == 2 / 5  # 4 × 0.002 ≤ 0.02 < 3 × 0.01
    assert b.upper(0.05) == 1.0  # nothing is certified not beaten


@pytest.mark.parametrize("scenario", __import__("calibration_ratio").ASSERTED, ids=lambda s: f"{s.name}-n{s.n}-{s.level}")
def test_a_just_false_ratio_claim_passes_at_most_its_level(scenario):
    """The ratio on its threshold passes at most at its level plus Monte Carlo error (a fast subset of
    tests/calibration_ratio.py, whose full table is in docs/calibration.md)."""
    draws = 200
    assert scenario.pass_rate(draws, seed=11) <= scenario.limit(draws)
