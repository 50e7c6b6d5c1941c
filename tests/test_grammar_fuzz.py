"""The small grammars inside a hypothesis file, fuzzed as tests/test_loader_fuzz.py fuzzes the YAML:
`where:` conditions (also `mean_over`), weight expressions and JSONL rows. Whatever the text, the
parser (and, for `where:`, the evaluation on a prompt set; for weights, the shape check) either
answers or raises the project's own error (WhereError / PromptError, ExpressionError), so that a file
is refused with its file, line and field, never a RecursionError, OverflowError or IndexError.

Examples are derandomized, as in the loader fuzzer: CI sees the same texts every run.
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitcheck import prompts as P
from circuitcheck.measures import weights as W
from circuitcheck.prompts import jsonl
from circuitcheck.prompts import where as WH

# Hypothesis warns "slow code in plugin" when a strategy is first drawn while it believes a plugin is
# still importing: this project turns its pytest plugin off (pyproject addopts), and the in-process
# pytest sessions of other test files (pytester) load it again, so its counter never returns to 0.
# The warning is about the library's import time, not about these tests: filtered by name.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisSideeffectWarning")

FUZZ = settings(max_examples=int(os.environ.get("CC_FUZZ_EXAMPLES", 300)), deadline=None, derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.function_scoped_fixture])


def pieces(tokens, min_size=0, max_size=60):
    """Texts made of the grammar's own tokens (and a few it lacks), joined by nothing or spaces."""
    return st.lists(st.sampled_from(tokens), min_size=min_size, max_size=max_size).map("".join)


def nested(text: str, opener: str, closer: str = ""):
    return st.integers(0, 3000).map(lambda k: opener * k + text + closer * k)


# ---------------------------------------------------------------- where:
WHERE_TOKENS = ["(", ")", " not ", " and ", " or ", " in ", "==", "!=", "<", ">=", " ", "[", "]", ",", "..",
                "depth", "category", "tok[S]", "pos[IO]", "tok[", "target", "counterfactual", "length", "'pos'",
                "\"neg\"", "'", "0", "1", "-", "+", "3", "9" * 40, "1.5", "$x", "true", "false", "#", "\u2028", "é"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("rows")
    data = [{"tokens": [0, 4, 2, 9], "answer": 5, "positions": {"S": 1, "IO": 2},
             "fields": {"category": ["neg", "pos"][i % 2], "depth": i % 3}} for i in range(6)]
    (d / "r.jsonl").write_text("\n".join(json.dumps(r) for r in data))
    return P.build("jsonl", None, 0, path="r.jsonl", base=d)


def _where_escapes(text: str, ps) -> None:
    try:
        WH.evaluate(text, ps)
    except P.PromptError:  # WhereError, or a position the prompts lack: the project's own errors
        pass


@FUZZ
@given(text=st.deferred(lambda: st.one_of(
    pieces(WHERE_TOKENS), nested("depth == 1", "(", ")"), nested("depth == 1", "not "),
    st.integers(0, 3000).map(lambda k: " or ".join(["depth == 1"] * k)))))
def test_where_conditions_raise_only_where_errors(rows, text):
    _where_escapes(text, rows)


@pytest.mark.parametrize("text, words", [
    ("(" * 60 + "depth == 1" + ")" * 60, "nests `not` and parentheses more than 50 deep"),
    ("not " * 60 + "depth == 1", "nests `not` and parentheses more than 50 deep"),
    (" or ".join(["depth == 1"] * 300), "characters long, more than 2,000"),
    ("depth == " + "9" * 5000, "characters long, more than 2,000"),
    ("depth == " + "9" * 40, "more than 30 digits"),
])
def test_deep_or_huge_conditions_are_refused_with_the_limit(rows, text, words):
    with pytest.raises(WH.WhereError, match=words):
        WH.evaluate(text, rows)


# ---------------------------------------------------------------- weight expressions
WEIGHT_TOKENS = ["W_E", "W_U", "W_pos", "b_U", "OV[L0H1]", "QK[L1H3]", "W_in[0]", "W_out[1]", "b_O[0]", "W_Q[L0H0]",
                 "W_O[L9H9]", "ln1_w[0]", "ln_final_b", "norm(", "mean(", "cos(", "sq(", "abs(", "max(", ", 0)", ", 1)",
                 "[", "]", "[3]", "[:, 3]", "[2:5]", "[5:5]", ":", ",", ".T", ".", "T", " @ ", " + ",
                 " - ", "-", "(", ")", "0", "63", "9" * 30, "L0H1", " ", "$x", "W_X"]
SIZES = dict(d_vocab=64, d_vocab_out=64, n_ctx=32, d_model=32, d_head=8, d_mlp=48)


def _weights_escape(text: str) -> None:
    try:
        W.shape_of(W.parse(text), SIZES)
    except W.ExpressionError:
        pass


@FUZZ
@given(text=st.deferred(lambda: st.one_of(
    pieces(WEIGHT_TOKENS), nested("W_E", "(", ")"), nested("W_E", "-"), st.integers(0, 3000).map(lambda k: "W_E" + ".T" * k),
    st.integers(0, 3000).map(lambda k: "W_E" + "[:]" * k))))
def test_weight_expressions_raise_only_expression_errors(text):
    _weights_escape(text)


@pytest.mark.parametrize("text, words", [
    ("(" * 60 + "W_E" + ")" * 60, "more than 40 deep"),
    ("-" * 60 + "W_E", "more than 40 deep"),
    ("W_E" + ".T" * 60, "more than 40 deep"),
    ("W_E[" + "9" * 5000 + "]", "characters long, more than 1,000"),
    ("W_E[" + "9" * 30 + "]", "more than 12 digits"),
])
def test_deep_or_huge_expressions_are_refused_with_the_limit(text, words):
    with pytest.raises(W.ExpressionError, match=words):
        W.parse(text)


@pytest.mark.parametrize("text, words", [
    ("W_E @ W_E", "shapes (64, 32) and (64, 32) do not fit `@`: 32 ≠ 64"),
    ("W_E[1, 2, 3]", "3 indices into a value of shape (64, 32)"),
    ("W_E[5:5]", "the slice [5:5] selects nothing"),
    ("W_U[:, 3] - W_U[:, 3]", "zero by construction"),
    ("W_E + W_U", "shapes (64, 32) and (32, 64) do not fit `+`"),
    ("W_E[64]", "index 64 is out of range for an axis of 64"),
])
def test_expressions_that_cannot_be_evaluated_are_refused_from_the_shapes(text, words):
    with pytest.raises(W.ExpressionError) as err:
        W.shape_of(W.parse(text), SIZES)
    assert words in str(err.value)


def test_the_shapes_agree_with_evaluation(tiny_mlp_model):
    """Shapes from the config are the shapes evaluation gives (TINY_MLP: d_vocab 64, d_model 32)."""
    cfg = tiny_mlp_model.cfg
    sizes = dict(d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out, n_ctx=cfg.n_ctx, d_model=cfg.d_model,
                 d_head=cfg.d_head, d_mlp=cfg.d_mlp)
    for text in ("W_E @ OV[L0H1] @ W_U", "W_U[:, 3] - W_U[:, 5]", "W_in[0][:, 12]", "W_out[1][12]", "QK[L1H1].T",
                 "W_E[3] @ OV[L0H1]", "W_pos[2:5] + b_O[0]", "-(W_E[3:10] @ W_Q[L0H2]).T", "norm(W_in[0], 0)",
                 "cos(W_in[0], W_U[:, 3])", "mean(sq(W_E), 1)", "max(abs(OV[L1H2]))", "ln1_w[1] + b_O[0]"):
        tree = W.parse(text)
        assert W.shape_of(tree, sizes) == tuple(W.evaluate(tiny_mlp_model, tree).shape), text


# ---------------------------------------------------------------- JSONL rows
ROW_TOKENS = ['{"tokens": [', "]", "}", "[", "{", '"answer": ', '"counterfactual": ', '"fields": {"a": ', ", ", "1",
              "7", "-3", "9" * 5000, "1e400", "NaN", "Infinity", '"x"', "\u2028", "true", "null", '"positions": {"S": ',
              '"targets": [', '"at": ', '"token": ', ":", '"', "\\", "\\u2028"]


def _row_escapes(text: str, path) -> None:
    try:
        jsonl._row(path, 3, text, "last", None)
    except P.PromptError as exc:
        assert exc.line == 3 and str(exc).startswith("line 3:")


@FUZZ
@given(text=st.deferred(lambda: st.one_of(
    pieces(ROW_TOKENS, 1), nested('{"tokens": [1, 2]}', '{"fields": {"a": [', "]}}"),
    nested("1", "[", "]").map(lambda t: '{"tokens": ' + t + "}"))))
def test_jsonl_rows_raise_only_row_errors(tmp_path_factory, text):
    _row_escapes(text, tmp_path_factory.getbasetemp() / "rows.jsonl")


@pytest.mark.parametrize("text, field, words", [
    ('{"tokens": ' + "[" * 3000 + "]" * 3000 + "}", "", "nests lists and objects more than 20 deep"),
    ('{"tokens": [' + "9" * 5000 + "]}", "", "cannot read the row"),
    ('{"tokens": [1, 2], "fields": {"a": NaN}}', "", "NaN is not a value a row holds"),
    ('{"tokens": [1, 2], "fields": {"a": "x\u2028y"}}', "", "raw U+2028 at column 38"),
    ('{"tokens": [1, 2], "answer": 3, "counterfactual": 3}', "counterfactual", "the counterfactual is the answer (3)"),
])
def test_bad_rows_name_their_line_and_field(tmp_path, text, field, words):
    with pytest.raises(P.PromptError) as err:
        jsonl._row(tmp_path / "r.jsonl", 3, text, "last", None)
    assert err.value.line == 3 and err.value.field == field and words in str(err.value), str(err.value)


def test_an_escaped_line_separator_reads_and_a_raw_one_never_splits_a_row(tmp_path):
    rows = ['{"tokens": [1, 2], "fields": {"a": "x\\u2028y"}}', '{"tokens": [1, 3], "fields": {"a": "z"}}']
    (tmp_path / "r.jsonl").write_text("\n".join(rows))
    ps = P.build("jsonl", None, 0, path="r.jsonl", base=tmp_path)
    assert ps.fields["a"].tolist() == ["x\u2028y", "z"]
    (tmp_path / "r.jsonl").write_text("\n".join([rows[0].replace("\\u2028", "\u2028"), rows[1]]))
    with pytest.raises(P.PromptError, match="line 1: the row holds a raw U\\+2028"):
        P.build("jsonl", None, 0, path="r.jsonl", base=tmp_path)


def test_a_field_of_mixed_types_across_rows_names_the_row(tmp_path):
    rows = [{"tokens": [1, 2], "fields": {"depth": 1}}, {"tokens": [1, 3], "fields": {"depth": 2}},
            {"tokens": [1, 4], "fields": {"depth": "3"}}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(P.PromptError) as err:
        P.build("jsonl", None, 0, path="r.jsonl", base=tmp_path)
    assert err.value.line == 3 and err.value.field == "fields.depth"
    assert "this row's depth is text, and line 1's is a number" in str(err.value)


# ---------------------------------------------------------------- in a hypothesis file: file, line and field
@pytest.mark.parametrize("claim, field, words", [
    ("  where: \"" + "(" * 60 + "length > 1" + ")" * 60 + "\"\n", "claims[0].where", "more than 50 deep"),
    ("  under: {ablate: {heads: [L0H1], method: mean, mean_over: \"" + "not " * 60 + "length > 1\"}}\n",
     "claims[0].under[0].ablate", "more than 50 deep"),
])
def test_a_deep_condition_is_a_collection_error_at_its_line(hyp, claim, field, words):
    from circuitcheck.files.loader import HypothesisError, load

    path = hyp("- id: c\n  says: s\n  measure: accuracy\n  expect: {at_least: 0}\n" + claim)
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert err.value.line == 9 and words in str(err.value), str(err.value)  # the claim's 5th line
    assert err.value.field == field, err.value.field


@pytest.mark.parametrize("measure, field, words", [
    ("{singular_values: {of: \"W_E @ W_E\", top: 1}}", "of", "do not fit `@`: 32 ≠ 64"),
    ("{singular_values: {of: \"W_U[:, 3]\", top: 1}}", "of", "this measure needs a matrix, and the expression has shape (32,)"),
    ("{cosine: {a: \"W_E[3]\", b: \"W_U[:, 3] - W_U[:, 3]\"}}", "b", "zero by construction"),
    ("{cosine: {a: \"W_E[3:3].T\", b: \"W_E[4]\"}}", "a", "selects nothing"),
    ("{norm: {of: \"" + "(" * 45 + "W_E" + ")" * 45 + "\"}}", "of", "more than 40 deep"),
])
def test_a_weight_expression_that_cannot_be_evaluated_is_a_collection_error(hyp, measure, field, words):
    from circuitcheck.files.loader import HypothesisError, load

    path = hyp(f"- id: c\n  says: s\n  measure: {measure}\n  expect: {{at_least: 0}}\n")
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert err.value.line == 7 and words in str(err.value), str(err.value)  # the claim's `measure:` line
    assert err.value.field.endswith(field), err.value.field
