"""Claims that compare two measures on the same prompts (`versus`), rank heads (`ranks`, expanded
into paired cases) and correlate a measure with a quantity of the data (`correlates`), on a model
with MLPs and LayerNorm, against hand computations from its state dict (tests/manual.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from circuitcheck import check
from circuitcheck import prompts as P


@pytest.fixture(scope="module")
def ps():
    return P.repeated_tokens(n=120, seed=1)  # the prompt set conftest's header writes


@pytest.fixture(scope="module")
def hand(tiny_mlp_model, ps):
    return manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens))


# ---------------------------------------------------------------- comparisons and rankings
def previous_token_scores(hand, ps, layer) -> np.ndarray:
    """[n, heads]: transformer_lens's previous-token score of each head of a layer, by hand."""
    pat = hand[1][f"pattern{layer}"]
    prev = torch.stack([pat[:, :, q, q - 1] for q in range(1, ps.seq_len)], -1).sum(-1)
    return (prev / pat.sum((-1, -2))).numpy()


def test_versus_judges_the_paired_difference(hyp_mlp, hand, ps):
    pat = hand[1]["pattern0"]
    diff = (pat[:, 0, -1, 0] - pat[:, 1, -1, 0]).numpy()
    tol = float(6 * diff.std(ddof=1) / np.sqrt(diff.size))
    claims = "\n".join(f"""\
        - id: {cid}
          says: L0H0 attends from the last token to the first more than L0H1 does
          measure: {{attention: {{head: L0H0, from: last, to: 0}}}}
          versus: {{attention: {{head: L0H1, from: last, to: 0}}}}
          expect: {{about: {centre!r}, tol: {tol!r}}}
        """ for cid, centre in (("holds", float(diff.mean())), ("twin", float(diff.mean()) + 3 * tol)))
    results = {r.claim_id: r for r in check(hyp_mlp(claims))}
    assert np.isclose(results["holds"].main.estimate.statistic, diff.mean(), atol=1e-6)
    assert "Binomial" not in results["holds"].main.estimate.method  # a paired difference, not a proportion
    assert results["holds"].expected.startswith("difference")
    assert (results["holds"].verdict, results["twin"].verdict) == ("pass", "fail")


def test_ranks_expand_into_paired_cases_that_single_out_the_named_head(hyp_mlp, tiny_mlp_model):
    ps = P.repeated_tokens(n=400, seed=1)  # L1H2 beats L1H3 by 0.04 on average: 120 prompts do not settle it
    scores = previous_token_scores(manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens)), ps, 1)
    path = hyp_mlp(prompts="{generator: repeated_tokens, n: 400, seed: 1}", claims="""\
        - id: holds
          says: L1H2 is the previous-token head of layer 1
          measure: {head_score: {head: $head, pattern: previous_token}}
          ranks: {heads: L1H2, above: layer}
          expect: {at_least: 0}
        - id: twin
          says: L1H1 is
          measure: {head_score: {head: $head, pattern: previous_token}}
          ranks: {heads: [L1H1], above: layer}
          expect: {at_least: 0}
        - id: all-heads
          says: L1H2 beats every other head of the model
          measure: {head_score: {head: $head, pattern: previous_token}}
          ranks: {heads: [L1H2], above: all}
          expect: {at_least: -1}
        """)
    results = {r.claim_id: r for r in check(path)}
    holds = results["holds"]
    assert [c.label for c in holds.cases] == ["L1H2>L1H0", "L1H2>L1H1", "L1H2>L1H3"]
    for case, other in zip(holds.cases, (0, 1, 3)):
        assert np.isclose(case.estimate.statistic, (scores[:, 2] - scores[:, other]).mean(), atol=1e-6)
    assert holds.verdict == "pass" and results["twin"].verdict == "fail"
    assert len(results["all-heads"].cases) == 7


@pytest.mark.parametrize("ranks,says", [
    ("{heads: [L1H2], above: [L1H2, L1H0]}", "both among"),
    ("{heads: [L1H9], above: layer}", "does not exist"),
])
def test_bad_rankings_are_refused_at_load(hyp_mlp, ranks, says):
    from circuitcheck import HypothesisError, load

    path = hyp_mlp(f"""\
        - id: r
          says: s
          measure: {{head_score: {{head: $head, pattern: previous_token}}}}
          ranks: {ranks}
          expect: {{at_least: 0}}
        """)
    with pytest.raises(HypothesisError, match=says) as info:
        load(path)
    assert info.value.line == 8  # the line of `ranks:`


def test_a_ranking_needs_head_in_the_measure(hyp_mlp):
    from circuitcheck import HypothesisError, load

    path = hyp_mlp("""\
        - id: r
          says: s
          measure: {head_score: {head: L1H1, pattern: previous_token}}
          ranks: {heads: [L1H2], above: layer}
          expect: {at_least: 0}
        """)
    with pytest.raises(HypothesisError, match=r"\$head"):
        load(path)


def test_correlation_with_a_quantity_of_the_data(hyp_mlp, hand, ps):
    pat = hand[1]["pattern0"]
    x = pat[:, 0, -1, 0].numpy()  # attention from the last token to BOS
    y = ps.tokens[:, -1].astype(float)  # the last token's id
    r = float(np.corrcoef(x, y)[0, 1])
    claims = "\n".join(f"""\
        - id: {cid}
          says: the pull to BOS follows the last token's id
          measure: {{attention: {{head: L0H0, from: last, to: 0}}}}
          expect: {{correlates: {{with: "tok[last]", about: {centre!r}, tol: 0.3}}}}
        """ for cid, centre in (("holds", r), ("twin", r + 0.9)))
    results = {res.claim_id: res for res in check(hyp_mlp(claims))}
    est = results["holds"].main.estimate
    assert np.isclose(est.statistic, r) and est.low < r < est.high and est.high - est.low < 0.5
    assert "Pearson r with tok[last]" in est.method
    assert (results["holds"].verdict, results["twin"].verdict) == ("pass", "fail")


def test_correlation_with_an_unknown_quantity_is_refused_at_load(hyp_mlp):
    from circuitcheck import HypothesisError, load

    path = hyp_mlp("""\
        - id: r
          says: s
          measure: {attention: {head: L0H0, from: last, to: 0}}
          expect: {correlates: {with: depth, at_least: 0.5}}
        """)
    with pytest.raises(HypothesisError, match="cannot read per-prompt quantity 'depth'") as info:
        load(path)
    assert info.value.line == 8
