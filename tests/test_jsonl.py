"""JSONL prompt files: rows with several targets, metadata, named positions and padding; `n`;
and every defect of a row reported at collection with the JSONL file's own line."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from circuitcheck import prompts as P
from circuitcheck.files.loader import HypothesisError, load

ROWS = [  # different lengths, several targets, a counterfactual, metadata, a named position
    {"tokens": [0, 5, 6, 7, 5, 6], "targets": [{"at": 4, "token": 6, "counterfactual": 3}, {"at": "last", "token": 7}],
     "positions": {"S": 1}, "fields": {"category": "a", "depth": 3}},
    {"tokens": [0, 9, 8, 9], "targets": [{"at": "S", "token": 8}], "positions": {"S": 1},
     "fields": {"category": "b", "depth": 1}},
    {"tokens": [0, 11, 12, 13, 14, 11, 12, 13], "answer": 14, "counterfactual": 2, "positions": {"S": 2},
     "fields": {"category": "a", "depth": 2}},
]


def write_rows(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def read(tmp_path, rows=ROWS, **params):
    write_rows(tmp_path / "p.jsonl", rows)
    return P.build("jsonl", params.pop("n", None), 0, path="p.jsonl", base=tmp_path, **params)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_rows_of_different_lengths_are_padded_and_positions_resolve_per_prompt(tmp_path, padding):
    ps = read(tmp_path, padding=padding, pad_token=63)
    assert ps.tokens.shape == (3, 8) and ps.mask.sum(1).tolist() == [6, 4, 8]
    start = [2, 4, 0] if padding == "left" else [0, 0, 0]
    assert ps.start.tolist() == start
    for i, r in enumerate(ROWS):  # the real tokens sit where the mask says, padding is pad_token
        real = ps.tokens[i][ps.mask[i] == 1]
        assert real.tolist() == r["tokens"] and (ps.tokens[i][ps.mask[i] == 0] == 63).all()
    assert (P.position(ps, "last") - ps.start).tolist() == [5, 3, 7]
    assert (P.position(ps, 0) - ps.start).tolist() == [0, 0, 0]
    assert (P.position(ps, "-2") - ps.start).tolist() == [4, 2, 6]
    assert (P.position(ps, "S + 1") - ps.start).tolist() == [2, 2, 3]
    # targets: two, one, one (the answer form, read at `last`); counterfactuals where given
    assert ps.target_valid.tolist() == [[True, True], [True, False], [True, False]]
    assert (ps.target_pos[:, 0] - ps.start).tolist() == [4, 1, 7]
    assert ps.target_tok[:, 0].tolist() == [6, 8, 14] and ps.target_cf[:, 0].tolist() == [3, -1, 2]
    assert ps.fields["category"].tolist() == ["a", "b", "a"] and ps.extra["lines"] == [1, 2, 3]


def test_equal_rows_need_no_mask(tmp_path):
    ps = read(tmp_path, [{"tokens": [1, 2, 3], "answer": 4}, {"tokens": [3, 2, 1], "answer": 5, "at": 0}])
    assert ps.mask is None and ps.target_valid is None
    assert ps.target_pos[:, 0].tolist() == [2, 0]  # `at: 0`: read at BOS, for BOS-read classifiers


@pytest.mark.parametrize("padding", ["right", "left"])
def test_padded_rows_give_the_values_of_unpadded_runs(tmp_path, tiny_model, padding):
    """The attention mask reaches the model: every metric of a padded row equals the same row run
    alone, unpadded (left padding also needs positions derived from the mask)."""
    from circuitcheck.measures.metric import metric as measure_metric
    from circuitcheck.runs.engine import Runs

    rng = np.random.default_rng(0)
    rows = []
    for length in (4, 9, 6, 12, 9, 5):
        tokens = rng.integers(1, 64, size=length).tolist()
        rows.append({"tokens": [0] + tokens, "targets": [{"at": 1, "token": tokens[1], "counterfactual": 7},
                                                         {"at": "last", "token": tokens[0]}]})
    padded = read(tmp_path, rows, padding=padding, pad_token=3)
    assert padded.mask is not None
    runs = Runs(tiny_model, padded)
    run = runs.clean(set())
    for metric in ("logprob", "logit_diff", "rank"):
        got = measure_metric(metric, run.logits, padded)
        for i, r in enumerate(rows):
            (tmp_path / str(i)).mkdir(exist_ok=True)
            alone = read(tmp_path / str(i), [r, r])
            want = measure_metric(metric, Runs(tiny_model, alone).clean(set()).logits, alone)[0]
            assert got[i] == pytest.approx(want, abs=1e-4), (metric, i)


def test_n_defaults_to_every_row_and_a_smaller_n_takes_the_first_rows(tmp_path):
    assert read(tmp_path).n == 3
    two = read(tmp_path, n=2)
    assert two.n == 2 and two.extra["lines"] == [1, 2]


def test_n_larger_than_the_file_is_an_error(tmp_path):
    with pytest.raises(P.PromptError, match=r"`n: 500` asks for more prompts than p.jsonl has \(3 rows\)"):
        read(tmp_path, n=500)


# (file text, expected message, JSONL line)
DEFECTS = {
    "trailing_comma": ('{"tokens": [1, 2], "answer": 3}\n{"tokens": [1, 2,], "answer": 3}\n', "trailing comma", 2),
    "not_json": ('{"tokens": [1, 2], "answer": 3}\n\n{tokens: [1]}\n', "not valid JSON", 3),
    "list_row": ('{"tokens": [1, 2], "answer": 3}\n[1, 2, 3]\n', "a row is a JSON object", 2),
    "missing_tokens": ('{"tokens": [1, 2], "answer": 3}\n{"answer": 3}\n', "missing required key 'tokens'", 2),
    "typo_key": ('{"tokens": [1, 2], "answer": 3}\n{"tokens": [1, 2], "answre": 3}\n', "did you mean 'answer'", 2),
    "string_token": ('{"tokens": [1, 2], "answer": 3}\n{"tokens": ["1", 2], "answer": 3}\n', "write the number 1", 2),
    "string_answer": ('{"tokens": [1, 2], "answer": "3"}\n{"tokens": [1, 2], "answer": 3}\n', "answer", 1),
    "bool_token": ('{"tokens": [1, true], "answer": 3}\n{"tokens": [1, 2], "answer": 3}\n', "tokens[1]", 1),
    "float_token": ('{"tokens": [1, 2.5], "answer": 3}\n{"tokens": [1, 2], "answer": 3}\n', "not a number", 1),
    "negative_token": ('{"tokens": [1, 2], "answer": 3}\n{"tokens": [-1, 2], "answer": 3}\n', "non-negative", 2),
    "empty_tokens": ('{"tokens": [], "answer": 3}\n{"tokens": [1, 2], "answer": 3}\n', "non-empty list", 1),
    "fields_list": ('{"tokens": [1, 2], "answer": 3, "fields": [1]}\n{"tokens": [1, 2], "answer": 3}\n',
                    "fields: an object", 1),
    "target_past_end": ('{"tokens": [1, 2], "answer": 3}\n{"tokens": [1, 2], "answer": 3, "at": 5}\n',
                        "outside this row's 0..1", 2),
    "target_unknown_position": ('{"tokens": [1, 2], "targets": [{"at": "IO", "token": 1}]}\n'
                                '{"tokens": [1, 2], "answer": 3}\n', "unknown position 'IO'", 1),
    "position_missing_in_a_row": ('{"tokens": [1, 2], "answer": 3, "positions": {"S": 0}}\n'
                                  '{"tokens": [1, 2], "answer": 3, "positions": {"S": 1}}\n'
                                  '{"tokens": [1, 2], "answer": 3}\n', "this row lacks S, which line 1 has", 3),
    "field_missing_in_a_row": ('{"tokens": [1, 2], "answer": 3, "fields": {"c": "a"}}\n'
                               '{"tokens": [1, 2], "answer": 3}\n', "lacks c", 2),
    "targets_in_some_rows": ('{"tokens": [1, 2], "answer": 3}\n{"tokens": [1, 2]}\n', "lacks targets", 2),
    "answer_and_targets": ('{"tokens": [1, 2], "answer": 3, "targets": [{"at": 0, "token": 1}]}\n'
                           '{"tokens": [1, 2], "answer": 3}\n', "not both", 1),
    "position_out_of_row": ('{"tokens": [1, 2], "answer": 3, "positions": {"S": 2}}\n'
                            '{"tokens": [1, 2], "answer": 3, "positions": {"S": 1}}\n', "an index 0..1", 1),
    "one_row": ('{"tokens": [1, 2], "answer": 3}\n', "`population: true`", None),
    "no_row": ('\n', "0 rows", None),
    "latin1": (b'{"tokens": [1, 2], "answer": 3}\n{"tokens": [1, 2], "answer": 3, "fields": {"c": "\xe9"}}\n',
               "not UTF-8", 2),
}


@pytest.mark.parametrize("name", list(DEFECTS))
def test_every_row_defect_is_a_collection_error_naming_the_jsonl_line(tmp_path, tiny_dir, name):
    text, expected, line = DEFECTS[name]
    data = tmp_path / "rows.jsonl"
    data.write_bytes(text if isinstance(text, bytes) else text.encode())
    path = write_hyp(tmp_path, tiny_dir, "{generator: jsonl, path: rows.jsonl}")
    with pytest.raises(HypothesisError) as info:
        load(path)
    err = info.value
    assert expected in str(err), str(err)
    if line is not None:  # the error is located in the data file, and the hint names the hypothesis file
        assert err.path == data and err.line == line and str(err).startswith(f"{data}:{line}: "), str(err)
        assert "t.hyp.yaml" in err.hint
    assert "Traceback" not in str(err)


def test_a_bom_is_read_as_the_start_of_the_file(tmp_path, tiny_dir):
    (tmp_path / "rows.jsonl").write_bytes(b'\xef\xbb\xbf{"tokens": [1, 2], "answer": 3}\n{"tokens": [1, 2], "answer": 4}\n')
    loaded = load(write_hyp(tmp_path, tiny_dir, "{generator: jsonl, path: rows.jsonl}"))
    assert next(iter(loaded.prompt_sets.values())).target_tok[:, 0].tolist() == [3, 4]


@pytest.mark.parametrize("row, expected", [
    ({"tokens": [1, 64], "answer": 3}, "token id 64 is outside the model's vocabulary (0..63)"),
    ({"tokens": [1, 2], "answer": 70}, "target token 70 is outside the model's output vocabulary"),
    ({"tokens": [1, 2], "answer": 3, "counterfactual": 99}, "counterfactual token 99"),
    ({"tokens": list(range(40)), "answer": 3}, "40 tokens, longer than the model's context of 32"),
])
def test_rows_must_fit_the_model(tmp_path, tiny_dir, row, expected):
    write_rows(tmp_path / "rows.jsonl", [{"tokens": [1, 2], "answer": 3}, row])
    with pytest.raises(HypothesisError) as info:
        load(write_hyp(tmp_path, tiny_dir, "{generator: jsonl, path: rows.jsonl}"))
    assert expected in str(info.value) and info.value.line == 2, str(info.value)


def test_the_pad_token_must_be_in_the_vocabulary(tmp_path, tiny_dir):
    write_rows(tmp_path / "rows.jsonl", [{"tokens": [1, 2], "answer": 3}, {"tokens": [1, 2, 3], "answer": 3}])
    with pytest.raises(HypothesisError, match="pad_token 9999 is outside the model's vocabulary"):
        load(write_hyp(tmp_path, tiny_dir, "{generator: jsonl, path: rows.jsonl, pad_token: 9999}"))
    load(write_hyp(tmp_path, tiny_dir, "{generator: jsonl, path: rows.jsonl, pad_token: 63}"))


def write_hyp(tmp_path, model_dir, prompts, claims=None):
    from conftest import header

    claims = claims or """\
        - id: c
          says: "something"
          measure: logprob
          expect: {at_most: 0}
        """
    path = tmp_path / "t.hyp.yaml"
    path.write_text(header(model_dir, prompts, tmp_path) + "claims:\n" + textwrap.indent(textwrap.dedent(claims), "  "))
    return path


def test_row_class_over_every_row_of_padded_prompts_is_refused(tmp_path, tiny_dir):
    write_rows(tmp_path / "rows.jsonl", [{"tokens": [1, 2], "answer": 3}, {"tokens": [1, 2, 3], "answer": 3}])
    claims = """\
        - id: c
          says: "rows"
          measure: {row_class: {head: L0H1, behaviour: previous}}
          expect: {at_least: 0}
        """
    with pytest.raises(HypothesisError, match="`rows: all` reads every query position") as info:
        load(write_hyp(tmp_path, tiny_dir, "{generator: jsonl, path: rows.jsonl}", claims))
    assert info.value.line == 7
