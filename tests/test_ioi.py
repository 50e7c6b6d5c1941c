"""zoo:ioi, the Hugging Face-format zoo model, and text prompts through its tokenizer."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from circuitcheck import models, prompts
from circuitcheck import text_prompts as T

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
from circuitcheck.text_prompts import encode
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

    from circuitcheck.measures import metric

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
