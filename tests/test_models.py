"""Every model source: shipped zoo, native config + weights (safetensors, .pt, legacy TL), Hugging
Face (skips offline, fails under --cc-require-models), and a registered factory."""
from __future__ import annotations

import json
import shutil
import textwrap
import warnings

import pytest
import torch

from circuitcheck import check, models
from circuitcheck.cli import SCHEMA, schema_text

from conftest import SHARED

PALINDROME = SHARED / "models" / "palindrome_classifier.pt"
PALINDROME_CONFIG = dict(n_layers=2, n_heads=2, d_model=28, d_head=14, attn_only=True, act_fn="relu",
                         normalization_type="LN", n_ctx=22, d_vocab=33, d_vocab_out=2)


@pytest.mark.skipif(not PALINDROME.exists(), reason="../shared/models/palindrome_classifier.pt is absent")
def test_legacy_hookedtransformer_checkpoint_loads_and_classifies_palindromes(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(PALINDROME_CONFIG))
    model = models.load(models.ModelSource("native", str(tmp_path / "config.json"), str(PALINDROME)))
    g = torch.Generator().manual_seed(0)
    half = torch.randint(0, 31, (200, 10), generator=g)
    pal = torch.cat([half, half.flip(1)], 1)
    noisy = pal.clone()
    flip = torch.rand(200, 10, generator=g) < 0.5
    noisy[:, 10:][flip] = torch.randint(0, 31, (int(flip.sum()),), generator=g)
    is_pal = (noisy[:, 10:] == noisy[:, :10].flip(1)).all(1)
    seqs = torch.cat([torch.cat([pal, noisy]), torch.zeros(400, 0, dtype=torch.long)], 1)
    tokens = torch.cat([torch.full((400, 1), 31), seqs, torch.full((400, 1), 32)], 1)
    labels = torch.cat([torch.ones(200, dtype=torch.bool), is_pal])
    with torch.inference_mode():
        pred = model(tokens)[:, -1].argmax(-1).bool()
    assert (pred == labels).float().mean() > 0.9  # a real trained classifier, not random weights


def test_legacy_checkpoint_runs_claims_from_a_hypothesis_file(tmp_path):
    if not PALINDROME.exists():
        pytest.skip("../shared/models/palindrome_classifier.pt is absent")
    (tmp_path / "config.json").write_text(json.dumps(PALINDROME_CONFIG))
    shutil.copy(PALINDROME, tmp_path / "model.pt")
    rows = [{"tokens": [31] + list(range(10)) + list(range(9, -1, -1)) + [32], "answer": 1}] * 5
    (tmp_path / "pal.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    path = tmp_path / "pal.hyp.yaml"
    path.write_text(textwrap.dedent("""\
        model: {native: {config: config.json, weights: model.pt}}
        prompts: {generator: jsonl, path: pal.jsonl, n: 5}
        claims:
          - id: palindrome-detected
            says: "the classifier calls a palindrome a palindrome"
            measure: prob
            expect: {at_least: 0.5}
        """))
    (result,) = check(path)
    assert result.verdict == "pass", result


def test_pt_state_dict_and_safetensors_load_the_same_model(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    torch.save(load_file(str(tiny_dir / "model.safetensors")), tmp_path / "model.pt")
    a = models.load(models.ModelSource("native", str(tiny_dir / "config.json"), str(tiny_dir / "model.safetensors")))
    b = models.load(models.ModelSource("native", str(tiny_dir / "config.json"), str(tmp_path / "model.pt")))
    tokens = torch.randint(0, 64, (2, 8))
    assert torch.equal(a(tokens), b(tokens))


def test_weights_are_never_unpickled(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused in our words before torch reads it (and warns about protocol 4)
        with pytest.raises(models.model_files.ModelFileError, match="circuitcheck never unpickles a model file"):
            models.read_weights(tmp_path / "evil.pt")


def test_models_load_once_per_source_and_options(tiny_dir):
    src = models.ModelSource("native", str(tiny_dir / "config.json"), str(tiny_dir / "model.safetensors"))
    assert models.load(src) is models.load(src)
    assert models.load(src, models.LoadOptions(dtype="float64")) is not models.load(src)


FACTORY = """\
- id: factory-model-runs
  says: "a model built by a registered factory"
  measure: accuracy
  expect: {at_most: 0.5}
"""


def test_a_registered_factory_builds_the_model_only_when_a_claim_runs(tmp_path):
    from circuitcheck import load, register_model

    calls = []

    @register_model("test-models-random-1l")
    def build():
        calls.append(1)
        return models.native(dict(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=16,
                                  attn_only=True, act_fn="relu", normalization_type=None, seed=0))

    path = tmp_path / "f.hyp.yaml"
    path.write_text("model: factory:test-models-random-1l\nprompts: {generator: max_of_list, n: 50}\nclaims:\n"
                    + textwrap.indent(FACTORY, "  "))
    load(path)
    assert calls == []  # collection looks the name up, and calls nothing
    (result,) = check(path)
    assert result.verdict == "pass" and calls == [1]


def test_hugging_face_model_skips_offline_and_fails_when_required(pytester, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(pytester.path / "hf-home"))
    pytester.makefile(".hyp.yaml", hf=textwrap.dedent("""\
        model: hf:circuitcheck-no-such-org/no-such-model
        prompts: {generator: max_of_list, n: 20}
        claims:
          - id: hub-model
            says: "a hub model that is not on this machine"
            measure: accuracy
            expect: {at_least: 0.5}
        """))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")  # fresh HF_HUB_OFFLINE
    res.assert_outcomes(skipped=1)
    assert "is not in the local cache" in res.stdout.str() and "HF_HUB_OFFLINE is set" in res.stdout.str()
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cc-require-models")
    res.assert_outcomes(failed=1)
    assert "--cc-require-models" in res.stdout.str()


def test_a_hub_model_without_network_skips_at_once_and_says_to_set_hf_hub_offline(monkeypatch):
    """Without a cached copy and without network, the claim skips before transformers is asked
    (it would retry for half a minute); with HF_HUB_OFFLINE set, not even the network is tried."""
    import socket

    from huggingface_hub import constants
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcheck.models import hub

    probes = []

    def no_network(address, timeout=None):
        probes.append(address)
        raise OSError("Name or service not known")

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *hub.PROXIES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(TransformerBridge, "boot_transformers", lambda *a, **k: pytest.fail("asked transformers"))
    with pytest.raises(models.ModelUnavailable, match="set HF_HUB_OFFLINE=1 on machines without network"):
        models.load(models.ModelSource("hf", "circuitcheck-no-such-org/no-such-model"))
    assert len(probes) == 1 and probes[0][0] == constants.ENDPOINT.split("//")[1].split("/")[0].split(":")[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailable, match="HF_HUB_OFFLINE is set"):
        models.load(models.ModelSource("hf", "circuitcheck-no-such-org/another"))
    assert len(probes) == 1


def test_the_shipped_json_schema_is_current():
    assert SCHEMA.read_text() == schema_text(), "run `circuitcheck schema src/circuitcheck/schema/hypothesis.schema.json` and commit it"
