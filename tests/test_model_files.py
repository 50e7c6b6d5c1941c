"""Model files read at collection without torch: configs, safetensors headers, pickles that would run code."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitcheck.models import model_files
from circuitcheck import models

BAD_MODELS = Path(__file__).resolve().parent / "bad" / "models"


def test_a_config_with_a_utf8_byte_order_mark_is_read():
    assert model_files.read_config(BAD_MODELS / "with_bom.json")["d_model"] == 32
    assert models.read_config(BAD_MODELS / "with_bom.json")["d_model"] == 32


def test_the_zoo_configs_agree_with_their_weights():
    native = [n for n in models.zoo_names() if "config" in model_files.read_json(models.ZOO_DIR / n / "config.json")]
    assert native, "no TransformerLens-native zoo model found"
    for name in native:  # the others are Hugging Face checkpoints, read by transformers
        shapes = model_files.weight_shapes(models.ZOO_DIR / name / "model.safetensors")
        cfg = model_files.read_config(models.ZOO_DIR / name / "config.json")
        model_files.check_dims(cfg, shapes)
        assert shapes["embed.weight"] == [cfg["d_vocab"], cfg["d_model"]]


def test_a_state_dict_of_tensors_passes_the_pickle_scan(tmp_path):
    import torch

    torch.save({"embed.W_E": torch.zeros(3, 2), "blocks.0.attn.W_Q": torch.zeros(4, 2, 5)}, tmp_path / "ok.pt")
    assert model_files.weight_shapes(tmp_path / "ok.pt") == {"embed.W_E": [3, 2], "blocks.0.attn.W_Q": [4, 2, 5]}


def test_loading_a_pickle_that_runs_code_says_why_in_circuitcheck_words():
    """At load time too (a file swapped after collection): our sentence, not torch's advice to retry
    with weights_only=False."""
    with pytest.raises(model_files.ModelFileError) as info:
        models.read_weights(BAD_MODELS / "runs_code.pt")
    assert "refused because loading them would run code" in str(info.value)
    assert "Weights only load failed" not in str(info.value) and "convert it to safetensors" in info.value.hint


@pytest.mark.parametrize("cfg", [[1, 2], {"n_layers": 2}, {"n_layers": 2, "d_model": 8.5, "n_ctx": 4, "d_head": 2},
                                 {"n_layers": True, "d_model": 8, "n_ctx": 4, "d_head": 2}])
def test_configs_that_cannot_build_a_model_are_refused(cfg):
    with pytest.raises(model_files.ModelFileError):
        model_files.check_config(json.loads(json.dumps(cfg)))
