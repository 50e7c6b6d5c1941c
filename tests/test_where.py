"""`where:` filters (parsed, never evaluated as Python) and quantifiers over several variables."""
from __future__ import annotations

import json

import numpy as np
import pytest

from circuitcheck import check, load
from circuitcheck import prompts as P
from circuitcheck.prompts import where as W
from circuitcheck.files.loader import HypothesisError
from circuitcheck.session import Session


@pytest.fixture(scope="module")
def rows_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("rows")
    rows = [{"tokens": [0, 4, 2, 9, 4][: 3 + i % 3], "answer": 5 + i % 4, "positions": {"S": 1, "IO": 2},
             "fields": {"category": ["neg_only", "pos", "mixed"][i % 3], "depth": i % 5, "flag": i % 2 == 0}}
            for i in range(12)]
    (d / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return P.build("jsonl", None, 0, path="r.jsonl", base=d), rows


@pytest.mark.parametrize("text, expected", [
    ("category == 'neg_only'", lambda r: r["fields"]["category"] == "neg_only"),
    ('category != "pos" and depth >= 2', lambda r: r["fields"]["category"] != "pos" and r["fields"]["depth"] >= 2),
    ("not (depth in 1..3) or flag == true", lambda r: not 1 <= r["fields"]["depth"] <= 3 or r["fields"]["flag"]),
    ("category in ['pos', 'mixed'] and depth not in [0, 4]",
     lambda r: r["fields"]["category"] in ("pos", "mixed") and r["fields"]["depth"] not in (0, 4)),
    ("tok[S] == tok[last] or target > 6", lambda r: r["tokens"][1] == r["tokens"][-1] or r["answer"] > 6),
    ("pos[last] == 4 - 1 and length == 4", lambda r: len(r["tokens"]) == 4),
    ("tok[-1] < 5 and pos[IO] == 2", lambda r: r["tokens"][-1] < 5),
])
def test_conditions_on_fields_tokens_positions_and_targets(rows_set, text, expected):
    ps, rows = rows_set
    assert W.evaluate(text, ps).tolist() == [expected(r) for r in rows]


def test_and_binds_tighter_than_or_and_not_tighter_than_and(rows_set):
    ps, rows = rows_set
    got = W.evaluate("depth == 0 or depth == 1 and flag == true", ps)
    assert got.tolist() == [r["fields"]["depth"] == 0 or (r["fields"]["depth"] == 1 and r["fields"]["flag"]) for r in rows]
    got = W.evaluate("not depth == 0 and flag == true", ps)
    assert got.tolist() == [r["fields"]["depth"] != 0 and r["fields"]["flag"] for r in rows]


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "cannot read"),
    ("depth >= 3 and", "expected 'a value'"),
    ("(depth == 1", "expected ')'"),
    ("depht == 1", "did you mean 'depth'"),
    ("tok[S] == 'neg_only'", "compares tok[S] (number) with 'neg_only' (text)"),
    ("category == neg_only", "no field"),
    ("depth in 5..1", "range 5..1 is empty"),
    ("depth == 1; x", "cannot read"),
    ("tok[Q] == 1", "unknown position 'Q'"),
    ("depth == $q", "$q is not bound"),
])
def test_bad_conditions_are_errors_never_python(rows_set, text, message):
    ps, _ = rows_set
    with pytest.raises(P.PromptError, match=None) as info:
        W.evaluate(text, ps)
    assert message in str(info.value) + info.value.hint


def test_a_filtered_claim_is_judged_on_the_matching_prompts_only(hyp):
    path = hyp("""\
        - id: filtered
          says: "accuracy on prompts whose first list item is large"
          where: "tok[0] >= 5 and tok[ANS] == 10"
          measure: logprob
          expect: {at_most: 0}
        """, prompts="{generator: max_of_list, n: 200, seed: 3}")
    session = Session()
    loaded = load(path)
    session.add(loaded)
    result = session.result(loaded.path, "filtered")
    (case,) = loaded.claims[0].cases
    ps = next(iter(loaded.prompt_sets.values()))
    values, _ = session.values(loaded, loaded.claims[0].claim, case)
    keep = ps.tokens[:, 0] >= 5
    assert 0 < keep.sum() < ps.n and result.main.estimate.n == keep.sum()
    assert result.main.estimate.statistic == pytest.approx(values[keep].mean())


@pytest.mark.parametrize("where, message", [
    ("tok[0] > 99", "matches 0 of 200 prompts"),
    ("tok[0] == 3 and tok[1] == 3 and tok[2] == 3 and tok[3] == 3", "a claim needs at least 2"),
])
def test_a_filter_that_keeps_fewer_than_two_prompts_is_a_collection_error(hyp, where, message):
    path = hyp(f"""\
        - id: none
          says: "nothing"
          where: "{where}"
          measure: logprob
          expect: {{at_most: 0}}
        """, prompts="{generator: max_of_list, n: 200, seed: 3}")
    with pytest.raises(HypothesisError, match=message) as info:
        load(path)
    assert info.value.line == 7 and info.value.field == "claims[0].where"


def test_a_where_syntax_error_points_at_the_line(hyp):
    path = hyp("""\
        - id: bad
          says: "bad"
          where: "tok[0] >"
          measure: logprob
          expect: {at_most: 0}
        """)
    with pytest.raises(HypothesisError, match="expected 'a value'") as info:
        load(path)
    assert info.value.line == 7


TWO_VARIABLES = """\
    - id: quantified
      says: "attention from the q-th last position, filtered by k"
      for: {{all: {{values: {{q: [0, 1, 2], k: [1, 3, 5]}}, combine: {combine}}}}}
      prompts: {{generator: max_of_list, n: 100, seed: 1, max_at: $q}}
      where: "tok[0] != $k"
      under: {{ablate: {{heads: [L0H1], method: zero, at: ["last - $q"]}}}}
      measure: {{attention: {{head: L1H0, from: "last - $q", to: "$k - 1"}}}}
      expect: {{at_least: 0}}
    """


@pytest.mark.parametrize("combine, labels", [
    ("zip", ["q=0,k=1", "q=1,k=3", "q=2,k=5"]),
    ("product", [f"q={q},k={k}" for q in (0, 1, 2) for k in (1, 3, 5)]),
])
def test_two_variables_bind_everywhere_with_zip_or_product(hyp, combine, labels):
    path = hyp(TWO_VARIABLES.format(combine=combine), prompts="{generator: max_of_list, n: 100, seed: 1}")
    loaded = load(path)
    cases = loaded.claims[0].cases
    assert [c.label for c in cases] == labels
    for c in cases:
        q, k = (int(part.split("=")[1]) for part in c.label.split(","))
        assert c.where == f"tok[0] != {k}" and c.prompts.model_extra["max_at"] == q  # the claim's prompts too
        assert c.measure.attention.from_ == f"last - {q}" and c.measure.attention.to == f"{k} - 1"
        assert c.under[0].ablate.at == [f"last - {q}"]
        ps = next(iter(loaded.prompt_sets.values()))
        assert (P.position(ps, c.measure.attention.from_) == ps.seq_len - 1 - q).all()
    results = check(path)
    assert [c.label for c in results[0].cases] == labels and results[0].verdict == "pass"


@pytest.mark.parametrize("values, message", [
    ("{q: [0, 1], k: [1, 3, 5]}, combine: zip", "different lengths: q: 2, k: 3"),
    ("{q: [0, 1], k: [1, 3]}", "need `combine: zip`"),
    ("{q: [], k: [1]}, combine: product", "binds q to an empty list"),
])
def test_bad_quantifiers_over_several_variables(hyp, values, message):
    path = hyp(f"""\
        - id: q
          says: "bad quantifier"
          for: {{all: {{values: {values}}}}}
          measure: {{attention: {{head: L1H0, from: "last - $q", to: $k}}}}
          expect: {{at_least: 0}}
        """, prompts="{generator: max_of_list, n: 100, seed: 1}")
    with pytest.raises(HypothesisError, match=message):
        load(path)


def test_position_arithmetic_outside_the_prompt_is_a_collection_error(hyp):
    path = hyp("""\
        - id: q
          says: "mirror positions"
          for: {all: {values: {q: [0, 3, 9]}}}
          measure: {attention: {head: L1H0, from: "5 - $q", to: 0}}
          expect: {at_least: 0}
        """, prompts="{generator: max_of_list, n: 100, seed: 1}")
    with pytest.raises(HypothesisError, match=r"position '5 - 9' is -4"):
        load(path)


def test_where_filters_the_shipped_jsonl_claims():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "hypotheses" / "induction_jsonl.hyp.yaml"
    loaded = load(path)
    ps = next(iter(loaded.prompt_sets.values()))
    assert ps.mask is not None and ps.target_valid is None and ps.target_tok.shape[1] == 3
    mask = W.evaluate("category == 'shuffled' and length >= 6", ps)
    assert 0 < mask.sum() < (ps.fields["category"] == "shuffled").sum()
    assert np.all(ps.fields["length"][mask] >= 6)
