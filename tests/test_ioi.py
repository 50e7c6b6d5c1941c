"""zoo:ioi, the Hugging Face-format zoo model, and text prompts through its tokenizer."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from circuitcheck import models, prompts
from circuitcheck.prompts import text as T

IOI = models.ZOO_DIR / "ioi"
TEMPLATE = "When {IO} and {S} went to the {PLACE} , {S} gave a {OBJECT} to"
SLOTS = {"IO": ["Mary", "John", "Alice", "Bob"], "S": ["Mary", "John", "Alice", "Bob"], "PLACE": ["store", "park"],
         "OBJECT": ["drink", "ball"]}


def test_shipped_as_a_hugging_face_directory_under_a_few_mb():
    files = {p.name for p in IOI.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "card.md"} <= files
    assert json.loads((IOI / "config.json").read_text())["model_type"] == "gpt2"
    assert sum(p.stat().st_size for p in IOI.iterdir()) < 2_000_000
    assert models.is_hf_dir(IOI) and models.zoo_config("ioi")["n_layers"] == 3


def test_loads_through_hf_offline_in_a_fresh_process():
    """`zoo:ioi` and `hf:DIR` give the logits transformers itself gives, with the hub unreachable."""
    code = f"""
import torch
from transformers import GPT2LMHeadModel
from circuitcheck import models
from circuitcheck.prompts.text import encode
ids = torch.tensor([encode({str(IOI)!r}, "When Mary and John went to the store , John gave a drink to")])
ref = GPT2LMHeadModel.from_pretrained({str(IOI)!r}, local_files_only=True).eval()(ids).logits
for source in (models.ModelSource("zoo", "ioi"), models.ModelSource("hf", {str(IOI)!r})):
    with torch.no_grad():
        out = models.load(source)(ids)
    assert (out - ref).abs().max() < 1e-4, (source, (out - ref).abs().max())
mary = encode({str(IOI)!r}, "Mary", prepend_bos=False)[0]
print("answer", int(ref[0, -1].argmax()) == mary)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "answer True" in res.stdout  # the model names the indirect object


def test_tokenizer_round_trip():
    tok = T.load_tokenizer(str(IOI))
    text = "When Mary and John went to the store , John gave a drink to"
    ids = T.encode(IOI, text)
    assert ids[0] == T.bos_id(str(IOI)) == 0 and len(ids) == len(text.split()) + 1
    assert tok.decode(ids[1:]) == text
    assert T.encode(IOI, text, prepend_bos=False) == ids[1:]
    for word in ("Mary", "store", ",", "gave"):
        assert tok.decode([T.one_token(str(IOI), word, "X")]) == word


def test_text_prompts_name_each_slot_occurrence():
    ps = prompts.build("text", 40, 3, template=TEMPLATE, slots=SLOTS, answer="IO", counterfactual="S",
                       tokenizer=str(IOI))
    rows = np.arange(ps.n)
    tok = T.load_tokenizer(str(IOI))
    assert (ps.tokens[:, 0] == 0).all()  # BOS
    assert ps.seq_len == len(TEMPLATE.split()) + 1
    s, s2, io, end = (prompts.position(ps, p) for p in ("S", "S#2", "IO", "end"))
    assert (s == 4).all() and (s2 == 10).all() and (io == 2).all() and (end == ps.seq_len - 1).all()
    assert (ps.tokens[rows, s] == ps.tokens[rows, s2]).all()
    assert (ps.tokens[rows, s] != ps.tokens[rows, io]).all()  # distinct slots draw distinct names
    assert (ps.target_tok[:, 0] == ps.tokens[rows, io]).all() and (ps.target_pos[:, 0] == end).all()
    assert (ps.target_cf[:, 0] == ps.tokens[rows, s]).all()
    first = tok.decode(ps.tokens[0, 1:].tolist()).split()
    assert first[1] in SLOTS["IO"] and first[7] in SLOTS["PLACE"] and first[-1] == "to"
    again = prompts.build("text", 40, 3, template=TEMPLATE, slots=SLOTS, answer="IO", tokenizer=str(IOI))
    assert (again.tokens == ps.tokens).all()  # seeded


def test_several_templates_of_one_length_mix_per_prompt():
    abba = TEMPLATE.replace("{IO} and {S}", "{S} and {IO}")
    ps = T.text(60, 0, [TEMPLATE, abba], SLOTS, "IO", "S", str(IOI))
    io = ps.positions["IO"]
    assert set(io) == {2, 4} and (ps.positions["S#2"] == 10).all()
    with pytest.raises(prompts.PromptError, match="different lengths"):
        T.text(10, 0, [TEMPLATE, "Then , " + TEMPLATE], SLOTS, "IO", "S", str(IOI))


@pytest.mark.parametrize("value, shown", [("Mary Jane", "['Mary', 'Jane']"), ("Zebedee", "['<unk>']")])
def test_a_slot_value_that_is_not_one_known_token_is_an_error(value, shown):
    with pytest.raises(prompts.PromptError) as info:
        T.text(10, 0, TEMPLATE, {**SLOTS, "S": [value, "Bob"]}, "IO", "S", str(IOI))
    assert f"slot S value {value!r}" in str(info.value) and shown in str(info.value)
    assert "one token" in info.value.hint


def test_a_template_glued_to_a_slot_is_an_error():
    with pytest.raises(prompts.PromptError, match="slot by slot"):
        T.text(5, 0, "When {IO}and {S} went", SLOTS, "IO", tokenizer=str(IOI))


def test_logit_diff_uses_the_counterfactual():
    import torch

    from circuitcheck.measures.metric import metric

    ps = T.text(4, 0, TEMPLATE, SLOTS, "IO", "S", str(IOI))
    logits = torch.zeros(ps.n, ps.seq_len, 90)
    rows = np.arange(ps.n)
    logits[rows, -1, ps.target_tok[:, 0]] = 3.0
    logits[rows, -1, ps.target_cf[:, 0]] = 1.0
    logits[rows, -1, 50] = 5.0  # a third token, larger than both: not part of IO - S
    assert np.allclose(metric("logit_diff", logits, ps), 2.0)
    assert np.allclose(metric("logit_diff", logits[[1, 3]], ps.subset(np.array([1, 3]))), 2.0)


def test_training_smoke_writes_a_loadable_hugging_face_directory(tmp_path):
    from circuitcheck.zoo import ioi

    metrics = ioi.train(steps=3, out=tmp_path, measure=False)
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json", "card.md"} <= \
        {p.name for p in tmp_path.iterdir()}
    assert metrics["reload_max_abs_diff"] < 1e-4 and metrics["steps"] == 3
    assert (tmp_path / "tokenizer.json").read_text() == (IOI / "tokenizer.json").read_text()  # same vocabulary
    with pytest.raises(ValueError, match="--out"):
        ioi.train(steps=3)  # a short run never overwrites the shipped model


# ---------------------------------------------------------------- JSONL rows with text
def _jsonl(tmp_path, rows, tokenizer=IOI, **params):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return prompts.build("jsonl", None, 0, path="rows.jsonl", base=tmp_path, tokenizer=str(tokenizer), **params)


def test_text_rows_tokenise_as_the_text_generator_does(tmp_path):
    """The same sentences as JSONL text rows and from the `text` generator: the same tokens (BOS
    first), the same named positions, the same answer and counterfactual."""
    gen = T.text(12, 5, TEMPLATE, SLOTS, "IO", "S", str(IOI))
    tok = T.load_tokenizer(str(IOI))
    rows = []
    for i in range(gen.n):
        words = {k: tok.id_to_token(int(gen.tokens[i, gen.positions[k][i]])) for k in ("IO", "S", "PLACE", "OBJECT")}
        rows.append({"text": TEMPLATE, "slots": words, "answer": "{IO}", "counterfactual": words["S"]})
    ps = _jsonl(tmp_path, rows)
    assert ps.mask is None and (ps.tokens == gen.tokens).all() and ps.tokens[0, 0] == T.bos_id(str(IOI)) == 0
    for name in ("IO", "S", "S#2", "PLACE", "OBJECT", "end"):
        assert (ps.positions[name] == gen.positions[name]).all(), name
    assert (ps.target_pos == gen.target_pos).all() and (ps.target_tok == gen.target_tok).all()
    assert (ps.target_cf == gen.target_cf).all()
    no_bos = _jsonl(tmp_path, rows, prepend_bos=False)
    assert (no_bos.tokens == gen.tokens[:, 1:]).all() and (no_bos.positions["IO"] == 1).all()


def test_text_rows_of_different_sentences_pad_and_resolve_per_row(tmp_path):
    """Plain text (no slots) and text with slots; several targets as words; a BOS read-out; fields."""
    rows = [{"text": "When Mary and John went to the store , John gave a drink to", "answer": "Mary",
             "counterfactual": "John", "positions": {"IO": 2, "S": 4}, "fields": {"order": "BABA"}},
            {"text": "Then , {S} and {IO} had a long day at the park . {S} handed a book to",
             "slots": {"IO": "Bob", "S": "Alice"}, "positions": {"IO": 5, "S": 3}, "fields": {"order": "ABBA"},
             "targets": [{"token": "{IO}", "counterfactual": "{S}"}, {"at": 0, "token": 35}]}]
    with pytest.raises(prompts.PromptError, match="already names a position of this text row"):
        _jsonl(tmp_path, rows)
    rows[1]["positions"] = {"IO": 5, "S": 3}
    del rows[1]["slots"]
    rows[1]["text"] = "Then , Alice and Bob had a long day at the park . Alice handed a book to"
    rows[1]["targets"][0] = {"token": "Bob", "counterfactual": "Alice"}
    for padding in ("right", "left"):
        ps = _jsonl(tmp_path, rows, padding=padding)
        assert ps.mask.sum(1).tolist() == [15, 19] and ps.seq_len == 19
        tok = T.load_tokenizer(str(IOI))
        for i, r in enumerate(rows):
            real = ps.tokens[i][ps.mask[i] == 1].tolist()
            assert real == T.encode(IOI, r["text"]) and tok.decode(real[1:]) == r["text"]
            assert tok.id_to_token(int(ps.tokens[i, ps.positions["IO"][i]])) == ["Mary", "Bob"][i]
            assert ps.positions["end"][i] == ps.positions["last"][i] == ps.start[i] + len(real) - 1
        assert [tok.id_to_token(int(t)) for t in ps.target_tok[:, 0]] == ["Mary", "Bob"]
        assert [tok.id_to_token(int(t)) for t in ps.target_cf[:, 0]] == ["John", "Alice"]
        assert (ps.target_pos[1] - ps.start[1]).tolist() == [18, 0]  # the second target reads BOS
        assert ps.target_valid.tolist() == [[True, False], [True, True]]
        assert ps.fields["order"].tolist() == ["BABA", "ABBA"]


def test_text_rows_through_a_bpe_tokenizer_prepend_bos_and_give_answers_their_space(tmp_path):
    """A GPT-2-style byte-level BPE tokenizer (as hf: models have): BOS from tokenizer_config.json,
    answers tokenised with their leading space, as they follow the text."""
    from tokenizers import Tokenizer, decoders, models as tm, pre_tokenizers, trainers

    tok = Tokenizer(tm.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    sentences = ["When Mary and John went to the store, John gave a drink to Mary"] * 20
    tok.train_from_iterator(sentences, trainers.BpeTrainer(special_tokens=["<|endoftext|>"], vocab_size=300,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|endoftext|>"}))
    rows = [{"text": "When {IO} and {S} went to the store, {S} gave a drink to", "slots": {"IO": "Mary", "S": "John"},
             "answer": "Mary", "counterfactual": "{S}"}] * 2
    ps = _jsonl(tmp_path, rows, tokenizer=tmp_path)
    want = [tok.token_to_id("<|endoftext|>")] + tok.encode(rows[0]["text"].format(IO="Mary", S="John")).ids
    assert ps.tokens[0].tolist() == want
    assert ps.target_tok[0, 0] == tok.token_to_id("ĠMary") and ps.target_cf[0, 0] == tok.token_to_id("ĠJohn")
    assert tok.id_to_token(int(ps.tokens[0, ps.positions["S#2"][0]])) == "ĠJohn"


def test_text_row_claims_run_on_zoo_ioi(tmp_path):
    """End to end: a hypothesis file on zoo:ioi (and on the same directory named `hf:DIR`) reads text
    rows of two lengths; the logit difference of each row equals the one its sentence gets from the
    `text` generator."""
    from circuitcheck.files.loader import load
    from circuitcheck.session import Session

    gen = T.text(6, 1, TEMPLATE, SLOTS, "IO", "S", str(IOI))
    tok = T.load_tokenizer(str(IOI))
    words = [{k: tok.id_to_token(int(gen.tokens[i, gen.positions[k][i]])) for k in SLOTS} for i in range(gen.n)]
    rows = [{"text": TEMPLATE, "slots": w, "answer": w["IO"], "counterfactual": w["S"]} for w in words]
    rows.append({"text": "Then , " + TEMPLATE, "slots": words[0], "answer": words[0]["IO"],
                 "counterfactual": words[0]["S"]})  # a longer row: the others are padded
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "gen.hyp.yaml").write_text(f"""model: zoo:ioi
prompts: {{generator: text, template: "{TEMPLATE}", slots: {json.dumps(SLOTS)}, answer: IO, counterfactual: S, n: 6, seed: 1}}
claims:
  - {{id: ld, says: "x", measure: logit_diff, expect: record}}
""")
    (tmp_path / "rows.hyp.yaml").write_text("""model: zoo:ioi
prompts: {generator: jsonl, path: rows.jsonl}
claims:
  - {id: ld, says: "x", measure: logit_diff, expect: record}
""")
    (tmp_path / "hf_rows.hyp.yaml").write_text((tmp_path / "rows.hyp.yaml").read_text().replace(
        "model: zoo:ioi", "model: {hf: ./ioi}"))  # the hf: route, its tokenizer found there
    shutil.copytree(IOI, tmp_path / "ioi")  # an hf: folder is read from the file's own folder tree
    session = Session()
    values = {}
    for name in ("gen", "rows", "hf_rows"):
        loaded = load(tmp_path / f"{name}.hyp.yaml")
        session.add(loaded)
        lc = loaded.claims[0]
        values[name] = session.values(loaded, lc.claim, lc.cases[0])[0]
    assert len(values["rows"]) == 7 and np.allclose(values["rows"][:6], values["gen"], atol=1e-4)
    assert np.allclose(values["hf_rows"], values["rows"], atol=1e-4)
    assert values["rows"][6] > 5  # the longer sentence, right after the padded ones, still names IO
