"""Run by tests/test_nnsight_runner.py in a process of its own (nnsight gives every Python object a
`.save` method when imported). The nnsight runner (runs/nnsight_runner.py) gives the TransformerLens runner's per-prompt values:
every measure and intervention kind the engine tests use, on zoo:ioi (GPT-2 through transformers,
padded rows) and on a GPT-2-small-architecture model with random weights; every shipped zoo:ioi
claim through both runners; the same through NDIF's serialisation (`remote='local'`); what it cannot
reach is an error at collection that names the hook and the runner."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_start_layer import file_prompts, interventions, measures, planned

from circuitcheck import models
from circuitcheck import prompts as P
from circuitcheck.runs import engine as R

nnsight = pytest.importorskip("nnsight", reason="the nnsight runner needs nnsight (pip install -e '.[test]')")
from circuitcheck.models.module_map import RunnerError, point, unsupported  # noqa: E402
from circuitcheck.runs.nnsight_runner import NNsightRuns  # noqa: E402

HYPOTHESES = Path(__file__).resolve().parents[1] / "hypotheses"
IOI_FILES = sorted(p.name for p in HYPOTHESES.glob("ioi*.hyp.yaml"))


def both(source, ps, plan, remote=None):
    model = models.load(source)
    build = lambda spec: P.build(**spec.model_dump(exclude={"population"}))  # noqa: E731
    tl = R.Runs(model, ps, 0, 1024, source_prompts=build).stream(plan)
    hf = models.hf_module(source, models.LoadOptions())
    nn = NNsightRuns(model, ps, 0, 1024, source_prompts=build, hf=hf, remote=remote).stream(plan)
    return tl, nn


def assert_same(tl: dict, nn: dict) -> None:
    assert tl.keys() == nn.keys()
    for k in tl:
        np.testing.assert_allclose(nn[k], tl[k], rtol=1e-4, atol=1e-5, err_msg=str(k))


@pytest.fixture(scope="module")
def gpt2_small(tmp_path_factory) -> models.ModelSource:
    """GPT-2 small's architecture (12 layers x 12 heads, d_model 768) with random weights, saved the
    Hugging Face way and loaded through `hf:` as any checkpoint would be."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("gpt2-small")
    GPT2LMHeadModel(GPT2Config(vocab_size=512, n_positions=64)).save_pretrained(d)
    return models.ModelSource("hf", str(d))


def test_every_kind_on_padded_ioi_rows_matches_transformer_lens():
    ps = file_prompts("ioi_jsonl.hyp.yaml", 24)  # right-padded rows of different lengths
    plan = planned(interventions(2, 87, padded=True, clean_reads=True), measures(2))
    tl, nn = both(models.ModelSource("zoo", "ioi"), ps, plan)
    assert_same(tl, nn)


def test_every_kind_on_a_gpt2_small_architecture_matches_transformer_lens(gpt2_small):
    ps = P.repeated_tokens(n=8, seed=3, length=6, vocab=512)
    plan = planned(interventions(11, 512, padded=False, clean_reads=True), measures(11))
    tl, nn = both(gpt2_small, ps, plan)
    assert_same(tl, nn)


def test_an_edit_changes_the_values_through_nnsight():
    """Negative control: the comparison can fail. A head ablation that the nnsight runner applied at
    the wrong head (L2H1 for L2H0) gives other values than the TransformerLens runner's L2H0."""
    ps = file_prompts("ioi_jsonl.hyp.yaml", 24)
    plan = planned([{"ablate": {"heads": ["L2H0"], "method": "zero"}}], ["logit_diff"])
    wrong = planned([{"ablate": {"heads": ["L2H1"], "method": "zero"}}], ["logit_diff"])
    tl, _ = both(models.ModelSource("zoo", "ioi"), ps, plan)
    _, nn = both(models.ModelSource("zoo", "ioi"), ps, wrong)
    ablated_tl = [v for k, v in tl.items() if k[0]]
    ablated_nn = [v for k, v in nn.items() if k[0]]
    assert not np.allclose(ablated_tl[0], ablated_nn[0], rtol=1e-3)


def test_remote_local_round_trips_through_ndif_serialisation():
    ps = file_prompts("ioi_jsonl.hyp.yaml", 12)
    plan = planned([{"ablate": {"heads": ["L2H0"], "method": "zero"}},
                    {"ablate": {"neurons": ["L1N3"], "method": "zero"}}], ["logit_diff", "accuracy"])
    tl, nn = both(models.ModelSource("zoo", "ioi"), ps, plan, remote="local")
    assert_same(tl, nn)


def dumps_through_both_runners(path: Path, tmp_path: Path) -> dict:
    """Each runner's per-prompt dumps of every case of the file, run end to end by pytest."""
    dumps = {}
    for runner in ("transformer_lens", "nnsight"):
        out = tmp_path / runner
        rc = pytest.main([str(path), "-q", "-p", "no:cacheprovider", "-p", "no:anyio", "--cc-cache", "off", "--cc-runner", runner,
                          "--cc-dump-values", str(out), "--cc-inconclusive", "skip", "-W", "ignore"])
        assert rc in (0, 1), rc
        dumps[runner] = {p.relative_to(out): json.loads(p.read_text()) for p in out.rglob("*.json")}
    assert dumps["transformer_lens"] and dumps["transformer_lens"].keys() == dumps["nnsight"].keys()
    for key, tl in dumps["transformer_lens"].items():
        nn = dumps["nnsight"][key]
        np.testing.assert_allclose(np.asarray(nn["values"], float), np.asarray(tl["values"], float),
                                   rtol=1e-4, atol=1e-5, err_msg=str(key))
    return dumps["transformer_lens"]


@pytest.mark.parametrize("name", IOI_FILES)
def test_shipped_ioi_claims_give_the_same_values_through_both_runners(name, tmp_path):
    """Every claim of the shipped zoo:ioi files, run end to end by pytest with each runner: the
    per-prompt values each case dumps are equal (ioi_interventions has a `python:` measure and
    ioi_components `act(...)` statistics of a run)."""
    dumps_through_both_runners(HYPOTHESES / name, tmp_path)


SIMILARITY_AND_PYTHON = """\
model: {zoo: ioi}
prompts: {generator: text, template: "When {IO} and {S} went to the store, {S} gave a drink to",
          slots: {IO: [Mary, John, Alice, Bob, Tom], S: [Anna, Kate, James, Sarah, David]},
          answer: IO, counterfactual: S, n: 12, seed: 0}
claims:
  - id: resid-alike
    says: "the residual after layer 1 at the second S is alike across two seeds of names"
    measure: {similarity: {hook: blocks.1.hook_resid_post, at: "S#2", variants: [{seed: 1}, {seed: 2}]}}
    expect: record
  - id: head-out-alike
    says: "L2H0's output at the end is alike across seeds"
    measure: {similarity: {hook: head_out, head: L2H0, at: end, variants: [{seed: 1}, {seed: 2}, {seed: 3}]}}
    expect: record
  - id: python-measure
    says: "a registered Python measure reading hook_z"
    measure: {python: {name: copied-head-writes-io-minus-s, args: {head: L2H0}}}
    expect: record
"""


def test_similarity_and_python_measures_give_the_same_values_through_both_runners(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    # the shipped measure under a name of its own: a name registered from two folders in one process
    # (the shipped files' runs above) is a collection error
    shipped = (HYPOTHESES / "conftest.py").read_text()
    assert shipped.count('"head-writes-io-minus-s"') == 1
    (folder / "conftest.py").write_text(shipped.replace('"head-writes-io-minus-s"', '"copied-head-writes-io-minus-s"'))
    (folder / "t.hyp.yaml").write_text(SIMILARITY_AND_PYTHON)
    dumped = dumps_through_both_runners(folder / "t.hyp.yaml", tmp_path)
    assert {d["claim"] for d in dumped.values()} == {"resid-alike", "head-out-alike", "python-measure"}


def test_what_the_runner_cannot_reach_is_named():
    assert unsupported(["blocks.0.attn.hook_z", "blocks.1.attn.hook_pattern"], "GPT2LMHeadModel") is None
    why = unsupported(["blocks.0.attn.hook_attn_scores"], "GPT2LMHeadModel")
    assert "hook_attn_scores" in why and "nnsight runner" in why and "transformer_lens" in why
    assert "cannot edit" in unsupported([], "GPT2LMHeadModel", edited=["ln_final.hook_scale"])
    assert "LlamaForCausalLM" in unsupported(["blocks.0.attn.hook_z"], "LlamaForCausalLM")
    with pytest.raises(RunnerError):
        point("blocks.0.hook_nonsense", "GPT2LMHeadModel")


@pytest.mark.parametrize("model, under, field, says", [
    ("{zoo: induction, runner: nnsight}", "", "model.runner", "TransformerLens-native"),
    ("{zoo: ioi, runner: nnsight, weight_processing: default}", "", "model.runner", "weight processing"),
    ("{zoo: ioi, runner: nnsight}", "    measure: {similarity: {hook: blocks.1.hook_mlp_in, at: S2, variants: "
     "[{seed: 1}, {seed: 2}]}}\n", "claims[0].measure.similarity.hook", "hook_mlp_in"),
])
def test_what_the_runner_cannot_run_is_a_collection_error(tmp_path, model, under, field, says):
    from circuitcheck.files import loader as H

    prompts = "prompts: {generator: repeated_tokens, n: 8, seed: 0, vocab: 80}\n"
    path = tmp_path / "t.hyp.yaml"
    measure = under.rstrip() or "    measure: loss"
    path.write_text(f"model: {model}\n{prompts}claims:\n  - id: a\n    says: x\n{measure}\n"
                    "    expect: {at_most: 100}\n")
    with pytest.raises(H.HypothesisError) as exc:
        H.load(path)
    assert exc.value.field == field and says in str(exc.value) and exc.value.line is not None


def test_the_same_files_without_runner_collect(tmp_path):
    """Control: the files above collect once `runner:` goes (the error is the runner's)."""
    from circuitcheck.files import loader as H

    path = tmp_path / "t.hyp.yaml"
    path.write_text("model: {zoo: ioi}\nprompts: {generator: repeated_tokens, n: 8, seed: 0, vocab: 80}\n"
                    "claims:\n  - id: a\n    says: x\n    measure: {similarity: {hook: blocks.1.hook_mlp_in, at: S2, "
                    "variants: [{seed: 1}, {seed: 2}]}}\n    expect: {at_most: 100}\n")
    assert H.load(path).claims
