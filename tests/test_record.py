"""Look before judging: `expect: record`, `circuitcheck measure`, `--cc-dump-values`, `load_model`;
and the model-side options every result records (weight processing, attention direction)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import circuitcheck
from circuitcheck import check, load
from circuitcheck.files.loader import HypothesisError
from circuitcheck.session import Options, Session

RECORDED = """\
- id: judged
  says: "a random model is wrong most of the time"
  measure: accuracy
  expect: {at_most: 0.5}
- id: look
  says: "what is the log-probability of the maximum, per position of the maximum?"
  for: {all: {values: {at: [0, 2, 4]}}}
  where: "pos[argmax] == $at"
  measure: logprob
  expect: record
- id: look-sweep
  says: "attention from ANS to the maximum as its score is scaled"
  sweep: {factor: [0, 1]}
  under: {scale_attention: {head: L0H1, from: ANS, to: argmax, factor: $factor}}
  measure: {attention: {head: L0H1, from: ANS, to: argmax}}
  expect: {record: value}
"""


def test_record_gives_value_interval_and_every_case_without_a_verdict(hyp):
    path = hyp(RECORDED, prompts="{generator: max_of_list, n: 150, seed: 2}")
    results = {r.claim_id: r for r in check(path)}
    look = results["look"]
    assert look.verdict == "recorded" and [c.label for c in look.cases] == ["at=0", "at=2", "at=4"]
    for c in look.cases:
        assert c.verdict == "recorded" and c.estimate.low <= c.estimate.statistic <= c.estimate.high
        assert c.estimate.level == pytest.approx(0.95)  # the file's alpha, not a Holm level
    assert [c.label for c in results["look-sweep"].cases] == ["factor=0", "factor=1"]
    assert results["judged"].verdict in ("pass", "fail", "inconclusive")


def test_recorded_claims_stay_out_of_holms_family(hyp):
    alone = hyp(RECORDED.split("- id: look\n")[0], prompts="{generator: max_of_list, n: 150, seed: 2}", name="a.hyp.yaml")
    both = hyp(RECORDED, prompts="{generator: max_of_list, n: 150, seed: 2}", name="b.hyp.yaml")
    a = {r.claim_id: r for r in check(alone)}["judged"].main
    b = {r.claim_id: r for r in check(both)}["judged"].main
    assert a.alpha == b.alpha and a.estimate.low == b.estimate.low


def test_pytest_passes_recorded_claims_and_prints_their_numbers(pytester, hyp):
    path = hyp(RECORDED, prompts="{generator: max_of_list, n: 150, seed: 2}")
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider")
    out = res.stdout.str()
    assert res.ret in (0, 1)
    outcomes = res.parseoutcomes()
    assert outcomes.get("passed", 0) >= 2  # `look` and `look-sweep` pass whatever their numbers
    assert "circuitcheck recorded values" in out and "claim 'look' RECORDED" in out
    for label in ("[at=0]", "[at=2]", "[at=4]", "[factor=0]", "[factor=1]"):
        assert f"measured  {label}" in out or f"measured{label}" in out.replace(" [", "[")
    assert "RECORDED  t.hyp.yaml::look" in out


def test_circuitcheck_measure_and_dump_values(hyp, tmp_path):
    path = hyp(RECORDED, prompts="{generator: max_of_list, n: 150, seed: 2}")
    dump = tmp_path / "values"
    res = subprocess.run([sys.executable, "-m", "circuitcheck.cli", "measure", str(path), "--cc-cache", "off",
                          "--cc-dump-values", str(dump)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "claim 'judged' RECORDED" in res.stdout and "claim 'look' RECORDED" in res.stdout
    assert "FAIL" not in res.stdout and "PASS" not in res.stdout
    files = sorted(p.name for p in (dump / "t").iterdir())
    assert files == ["judged.json", "look-sweep.factor=0.json", "look-sweep.factor=1.json", "look.at=0.json",
                     "look.at=2.json", "look.at=4.json"]
    # the dumped values are the ones the interval is computed from: the filtered prompts only
    loaded = load(path)
    ps = next(iter(loaded.prompt_sets.values()))
    record = json.loads((dump / "t" / "look.at=2.json").read_text())
    assert record["prompts"] == np.flatnonzero(ps.positions["argmax"] == 2).tolist()
    (look,) = [r for r in check(path) if r.claim_id == "look"]
    assert np.mean(record["values"]) == pytest.approx(look.cases[1].estimate.statistic)


def test_load_model_returns_the_model_a_file_names(hyp):
    path = hyp(RECORDED, prompts="{generator: max_of_list, n: 150, seed: 2}")
    model = circuitcheck.load_model(path)
    session = Session()
    loaded = load(path)
    session.add(loaded)
    assert model is session.model(loaded)  # the same cached model the claims run on
    zoo = circuitcheck.load_model("zoo:induction")
    assert zoo.cfg.n_layers == 2 and circuitcheck.load_model({"zoo": "induction"}) is zoo
    with pytest.raises(HypothesisError, match="zoo:NAME"):
        circuitcheck.load_model("induction")


@pytest.fixture
def mlp_dir(tmp_path, tiny_mlp_dir):
    from conftest import copy_model

    return copy_model(tiny_mlp_dir, tmp_path).relative_to(tmp_path)  # files read only their own folder tree


def mlp_file(tmp_path, mlp_dir, model_extra: str, claim_extra: str = "", name="m.hyp.yaml"):
    path = tmp_path / name
    path.write_text(f"""\
model: {{native: {{config: {mlp_dir / 'config.json'}, weights: {mlp_dir / 'model.safetensors'}}}{model_extra}}}
prompts: {{generator: repeated_tokens, n: 60, seed: 4, length: 6}}
claims:
  - id: lp
    says: "log-probabilities of the repeated tokens"
    measure: logprob
    expect: record
{claim_extra}""")
    return path


@pytest.mark.parametrize("processing, applied", [
    ("default", "fold_ln, center_writing_weights, center_unembed, fold_value_biases"),
    ("{fold_ln: true, center_unembed: true}", "fold_ln, center_unembed"),
])
def test_weight_processing_is_applied_recorded_and_keeps_log_probabilities(tmp_path, mlp_dir, processing, applied):
    (plain,) = check(mlp_file(tmp_path, mlp_dir, "", name="plain.hyp.yaml"))
    (processed,) = check(mlp_file(tmp_path, mlp_dir, f", weight_processing: {processing}"))
    assert plain.load["weight_processing"] == "none" and processed.load["weight_processing"] == applied
    assert processed.main.estimate.statistic == pytest.approx(plain.main.estimate.statistic, abs=1e-4)
    model = circuitcheck.load_model(mlp_file(tmp_path, mlp_dir, f", weight_processing: {processing}"))
    raw = circuitcheck.load_model(mlp_file(tmp_path, mlp_dir, "", name="plain.hyp.yaml"))
    assert model is not raw
    if "fold_ln" in applied:  # folding moved the LayerNorm scale into the next weights
        assert not torch.allclose(model.blocks[0].attn.W_Q, raw.blocks[0].attn.W_Q)


def test_bidirectional_attention_is_applied_and_recorded(tmp_path, mlp_dir):
    (causal,) = check(mlp_file(tmp_path, mlp_dir, ", attention: causal", name="c.hyp.yaml"))
    (bidir,) = check(mlp_file(tmp_path, mlp_dir, ", attention: bidirectional"))
    assert bidir.load["attention"] == "bidirectional"
    model = circuitcheck.load_model(mlp_file(tmp_path, mlp_dir, ", attention: bidirectional"))
    tokens = torch.randint(0, 64, (2, 8))
    later = tokens.clone()
    later[:, -1] = (later[:, -1] + 1) % 64
    with torch.inference_mode():  # position 0 sees the last token only without the causal mask
        assert not torch.allclose(model(tokens)[:, 0], model(later)[:, 0])
    assert causal.main.estimate.statistic != bidir.main.estimate.statistic


def test_attention_direction_of_a_hub_model_is_refused(tmp_path):
    path = tmp_path / "h.hyp.yaml"
    path.write_text("""\
model: {hf: gpt2, attention: bidirectional}
prompts: {generator: repeated_tokens, n: 20}
claims:
  - id: c
    says: "x"
    measure: logprob
    expect: record
""")
    with pytest.raises(HypothesisError, match="attention_dir of a zoo or native config") as info:
        load(path)
    assert info.value.line == 1


def test_session_option_records_every_claim(hyp):
    path = hyp(RECORDED.split("- id: look\n")[0])
    session = Session(Options(record=True))
    loaded = load(path)
    session.add(loaded)
    result = session.result(loaded.path, "judged")
    assert result.verdict == "recorded" and result.expected == "recorded"
