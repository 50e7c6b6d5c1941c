"""The four bugs of issue 24, each on a small random model, each checked by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY, save_model
from circuitcheck import models
from circuitcheck import prompts as P
from circuitcheck.measures import keysets as K
from circuitcheck.measures.base import KINDS
from manual import run_of


def _constant_prompts(token: int, n: int = 3, seq: int = 6) -> P.PromptSet:
    tokens = np.full((n, seq), token, np.int64)
    empty = np.zeros((n, 0), np.int64)
    return P.PromptSet(tokens, {"last": np.full(n, seq - 1)}, empty, empty)


# ---------------------------------------------------------------- a `where` key set follows the model's direction
@pytest.mark.parametrize("direction", ["causal", "bidirectional"])
def test_a_where_key_set_holds_every_key_the_query_sees(direction):
    torch.manual_seed(0)
    model = models.native(dict(TINY, attention_dir=direction)).eval()
    ps = _constant_prompts(3)
    run = run_of(model, ps, {"blocks.0.attn.hook_pattern"})
    kind = KINDS["attention_mass"]
    # every token is 3, so the keys meeting `tok[k] == 3` are all the keys the query can see: mass 1,
    # whatever the direction (it was the causal share, 0 from the first query onwards on a bidirectional model)
    for query in (0, 2):
        cond = kind.schema.model_validate({"head": "L0H1", "from": query, "to": {"where": "tok[k] == 3",
                                                                                   "include_query": True}})
        assert np.allclose(kind.compute(cond, run), 1.0)
    pattern = run["blocks.0.attn.hook_pattern"][:, 1].double()
    seen = pattern[:, 2, :3] if direction == "causal" else pattern[:, 2, :]
    without_self = seen.sum(-1) - pattern[:, 2, 2]  # the default leaves the query itself out
    body = kind.schema.model_validate({"head": "L0H1", "from": 2, "to": {"where": "tok[k] == 3"}})
    assert np.allclose(kind.compute(body, run), without_self.numpy())


# ---------------------------------------------------------------- `tok[k] == tok[q]` leaves the query out
def test_duplicate_token_mass_is_zero_without_an_earlier_copy():
    ps = P.PromptSet(np.array([[5, 6, 7, 8], [5, 6, 5, 9]]), {}, np.zeros((2, 0), np.int64), np.zeros((2, 0), np.int64))
    keys = K.key_mask(ps, {"where": "tok[k] == tok[q]"})
    assert not keys[0].any()  # no token repeats: no key, not the query itself
    assert keys[1, 2].tolist() == [True, False, False, False]  # the earlier 5 only
    with_self = K.key_mask(ps, {"where": "tok[k] == tok[q]", "include_query": True})
    assert with_self[0].tolist() == np.eye(4, dtype=bool).tolist()
    pattern = torch.softmax(torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0)), -1).tril()
    assert np.allclose(K.mass(pattern, K.mask(ps, "3"), keys), [0.0, 0.0])


# ---------------------------------------------------------------- processing keeps the log-probabilities, or is refused
SQUARE = dict(TINY, n_layers=1, attn_only=False, d_mlp=TINY["d_model"], act_fn="gelu")


def test_weight_processing_on_a_square_mlp_keeps_log_probs_or_is_refused(tmp_path):
    d = save_model(tmp_path / "square", SQUARE)
    source = models.ModelSource("native", str(d / "config.json"), str(d / "model.safetensors"))
    raw = models.load(source)
    tokens = torch.arange(16).reshape(2, 8) % TINY["d_vocab"]
    want = raw(tokens).log_softmax(-1)
    for step in models.PROCESSING_STEPS:
        options = models.LoadOptions(processing=(step,))
        try:
            processed = models.load(source, options)
        except models.ModelError as exc:
            assert "log-probabilities" in str(exc) and step in str(exc)
            continue
        got = processed(tokens).log_softmax(-1)
        assert torch.allclose(got, want, atol=1e-4), step


def test_a_processing_that_changes_the_model_is_refused_with_the_change(monkeypatch):
    torch.manual_seed(0)
    model = models.native(dict(TINY, n_layers=1))

    def broken(**steps):  # a processing step that changes what the model computes
        with torch.no_grad():
            model.unembed.W_U.mul_(2.0)

    monkeypatch.setattr(model, "process_weights", broken, raising=False)
    with pytest.raises(models.ModelError, match="log-probabilities"):
        models.loading.prepare(model, models.LoadOptions(processing=("fold_ln",)))


# ---------------------------------------------------------------- load_model reads only the model
def test_load_model_from_a_file_ignores_its_claims(tiny_dir, tmp_path):
    import shutil

    import circuitcheck

    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_dir / name, tmp_path / name)
    path = tmp_path / "t.hyp.yaml"
    path.write_text("model: {native: {config: config.json, weights: model.safetensors}}\n"
                    "prompts: {generator: repeated_tokens, n: 10, length: 4}\n"
                    "claims:\n  - {id: c, says: s, measure: {python: not_registered_anywhere}, expect: {at_least: 0}}\n")
    model = circuitcheck.load_model(path)
    tokens = torch.arange(6)[None]
    d = tiny_dir
    same = models.load(models.ModelSource("native", str(d / "config.json"), str(d / "model.safetensors")))
    assert torch.equal(model(tokens), same(tokens))
