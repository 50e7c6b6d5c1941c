"""`prompts: {..., population: true}`: the prompts are the whole population a claim is about (a fixed
data set, or a few given inputs), so its quantities are computed exactly, with no interval, and the
report says so (issue 22, "decide what the data can decide")."""
from __future__ import annotations

import json

import numpy as np
import pytest

import circuitcheck
from circuitcheck.judge import stats as S
from circuitcheck.judge.verdict import INCONCLUSIVE, PASS, judge


@circuitcheck.register_measure("t-field-v", reads=[], range=(0, 1))
def field_v(run):
    """Each row's own number `v` (fields of a JSONL row): a measure whose values the test chooses."""
    return np.array([float(v) for v in run.prompts.fields["v"]])


def rows_file(tmp_path, values) -> str:
    path = tmp_path / "rows.jsonl"
    with path.open("w") as f:
        for i, v in enumerate(values):
            f.write(json.dumps({"tokens": [0, 1 + i % 5, 2, 3], "fields": {"v": float(v)}}) + "\n")
    return str(path)


def claim(expect: str) -> str:
    return f"""\
    - id: share-is-a-twentieth
      says: "every key gets 1/20 of the attention"
      measure: {{python: t-field-v}}
      expect: {expect}
    """


def run(hyp, tmp_path, values, population: bool, expect="{about: 0.05, tol: 0.001}"):
    prompts = f"{{generator: jsonl, path: {rows_file(tmp_path, values)}, population: {str(population).lower()}}}"
    return circuitcheck.check(hyp(claim(expect), prompts=prompts))[0]


def thousand_near_a_twentieth() -> np.ndarray:
    """1000 values within 1.4e-4 of 0.05 (the issue's data set)."""
    return 0.05 + np.random.default_rng(22).uniform(-1.4e-4, 1.4e-4, 1000)


def test_a_declared_population_decides_what_a_sample_cannot(hyp, tmp_path):
    values = thousand_near_a_twentieth()
    whole = run(hyp, tmp_path, values, population=True)
    assert whole.verdict == PASS
    e = whole.main.estimate
    assert e.low == e.high == pytest.approx(values.mean(), abs=1e-12)  # the mean itself: no interval
    assert "whole population" in e.method and "1000 prompts" in e.method
    sample = run(hyp, tmp_path, values, population=False)
    assert sample.verdict == INCONCLUSIVE and "betting" in sample.main.estimate.method


def test_a_claim_about_two_given_inputs_decides(hyp, tmp_path):
    """Two listed inputs with values 0.9 and 0.7: their mean is 0.8, exactly, and `at_least 0.75` holds;
    as a sample of two, nothing could be said."""
    assert run(hyp, tmp_path, [0.9, 0.7], population=True, expect="{at_least: 0.75}").verdict == PASS
    assert run(hyp, tmp_path, [0.9, 0.7], population=True, expect="{at_least: 0.85}").verdict == "fail"
    assert run(hyp, tmp_path, [0.9, 0.7], population=False, expect="{at_least: 0.75}").verdict == INCONCLUSIVE


def test_a_claim_about_one_given_input_decides(hyp, tmp_path):
    """One row, declared the population: its value (0.9) is the claim's value, exactly, and decides
    both ways; the same row as a sample is refused at collection, saying what to write."""
    assert run(hyp, tmp_path, [0.9], population=True, expect="{at_least: 0.85}").verdict == PASS
    one = run(hyp, tmp_path, [0.9], population=True, expect="{at_most: 0.85}")
    assert one.verdict == "fail" and one.main.estimate.low == one.main.estimate.high == pytest.approx(0.9)
    with pytest.raises(circuitcheck.HypothesisError, match="population: true"):
        run(hyp, tmp_path, [0.9], population=False)


def test_n_1_goes_with_population(hyp):
    """`n: 1` of a generator is one input too: refused without `population: true`, exact with it."""
    claims = "- id: one\n  says: \"loss on one sequence\"\n  measure: loss\n  expect: {at_least: 0}\n"
    with pytest.raises(circuitcheck.HypothesisError, match="one prompt is no sample"):
        circuitcheck.load(hyp(claims, prompts="{generator: repeated_tokens, n: 1, seed: 3}"))
    result = circuitcheck.check(hyp(claims, prompts="{generator: repeated_tokens, n: 1, seed: 3, population: true}"))[0]
    e = result.main.estimate
    assert result.verdict == PASS and e.low == e.high and e.n == 1 and "whole population" in e.method


def test_population_bounds_are_points_for_every_method():
    x = np.array([0.2, 0.4, 0.9, 0.1])
    for kind in ({}, {"value_range": (0, 1)}, {"binary": True}):
        values = (x > 0.3).astype(float) if kind.get("binary") else x
        e = S.bound_for(values, 0, population=True, **kind).at(1e-6)
        assert e.low == e.high == pytest.approx(values.mean())
        assert judge(e, values.mean() - 1e-9, values.mean() + 1e-9) == PASS
