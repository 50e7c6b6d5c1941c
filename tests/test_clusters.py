"""`clusters: FIELD`: a claim that generalises over templates or sentences is bounded over group
means, not over prompts as if they were independent (issue 22, item 11)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from circuitcheck import HypothesisError, load
from circuitcheck.judge import stats as S
from circuitcheck.judge.claims import cluster_means
from circuitcheck.judge.verdict import PASS, judge


def test_prompts_of_a_few_templates_pass_a_false_claim_unless_clustered():
    """8 templates drawn from a population of templates (effect sd 0.1 around 0.5), prompts around
    their template (sd 0.05); `at_least 0.5` over templates is false by nothing. Bounded over 400 prompts as if independent it
    passes often; over the 8 template means at most at its level (2 of 40 allows MC error)."""
    rng = np.random.default_rng(0)
    flat = clustered = 0
    for _ in range(40):
        effects = 0.5 + rng.normal(0, 0.1, 8)  # 8 templates drawn from a population whose mean is 0.5
        labels = rng.integers(0, 8, 400)
        values = np.clip(effects[labels] + rng.normal(0, 0.05, 400), 0, 1)
        flat += judge(S.bound_for(values, 0, value_range=(0, 1)).at(0.05), 0.5, np.inf) == PASS
        means, _, kind = cluster_means(labels, values, None, {"value_range": (0, 1)})
        clustered += judge(S.bound_for(means, 0, **kind).at(0.05), 0.5, np.inf) == PASS
    assert clustered <= 2, clustered
    assert flat >= 10, flat  # the defect: prompts of a few templates treated as independent


def test_group_means_in_first_appearance_order_and_their_kind():
    means, clean, kind = cluster_means(np.array(["b", "a", "b", "a", "c"]), np.array([1.0, 0, 1, 1, 0]),
                                       np.array([1.0, 1, 1, 1, 1]), {"binary": True})
    assert means.tolist() == [1.0, 0.5, 0.0] and clean.tolist() == [1.0, 1.0, 1.0]
    assert kind == {"value_range": (0.0, 1.0)}  # a mean of 0/1 outcomes is no longer 0/1


ROWS = [{"tokens": [0, 1 + (i % 7), 9, 1 + (i % 7)], "answer": 9, "fields": {"sentence": i % 5}} for i in range(60)]


def test_a_file_says_clusters_and_the_bound_is_over_group_means(hyp, tmp_path):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    path = hyp("""\
- id: per-prompt
  says: "probability of the answer"
  measure: prob
  expect: record
- id: per-sentence
  says: "probability of the answer, generalising over sentences"
  measure: prob
  clusters: sentence
  expect: record
""", prompts="{generator: jsonl, path: rows.jsonl}")
    from circuitcheck.session import Session

    loaded = load(path)
    session = Session()
    session.add(loaded)
    lc = loaded.claims[0]
    per_prompt = session.values(loaded, lc.claim, lc.cases[0])[0]
    group = np.arange(60) % 5
    by_hand = np.array([per_prompt[group == g].mean() for g in range(5)])
    result = session.result(loaded.path, "per-sentence")
    assert result.main.estimate.n == 5 and result.main.estimate.statistic == pytest.approx(by_hand.mean())
    assert np.allclose(result.main.values, by_hand)


def test_clusters_names_a_field_the_prompts_have(hyp):
    path = hyp("""\
- id: c
  says: "x"
  measure: prob
  clusters: template
  expect: record
""", prompts="{generator: repeated_tokens, n: 20, seed: 1}")
    with pytest.raises(HypothesisError, match="no field 'template'") as err:
        load(path)
    assert err.value.field.endswith("clusters")
