"""Intervened passes start at the first block their hooks touch, fed the clean residual entering it
(runs.Runs.stream): the values are those of full passes, bit for bit, on both zoo models (native,
and GPT-2 through transformers), padded prompts, rotary positions, chunked and stacked passes; the
blocks before are not computed; a start one block too late shows in the numbers; architectures
not checked run full passes."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, save_model

from circuitcheck.files import loader as H
from circuitcheck import models
from circuitcheck import prompts as P
from circuitcheck.runs import engine as R
from circuitcheck.runs.plan import run_key
from circuitcheck.files.spec import Intervention, Measure

HYPOTHESES = Path(__file__).resolve().parents[1] / "hypotheses"


def measures(late: int) -> list:
    """Every measure kind that reads a run, at the model's last layer `late` (dla: after it)."""
    head = lambda h: f"L{late}H{h}"  # noqa: E731
    return ["accuracy", "prob", "loss", "rank", "logprob", "logit_diff",
            {"attention": {"head": head(0), "from": "last", "to": 0}},
            {"attention_mass": {"head": head(1), "from": "last", "to": {"where": "tok[k] == tok[q]"}}},
            {"attention_argmax": {"head": head(2), "from": "last", "to": 0}},
            {"head_score": {"head": head(3), "pattern": "previous_token"}},
            {"row_class": {"head": head(1), "behaviour": "previous", "rows": "all"}},
            {"dla": {"component": head(0), "share": False}}]


def interventions(late: int, vocab: int, padded: bool, clean_reads: bool) -> list:
    """Interventions of every kind, most at the last layer; `clean_reads`: with those that read the
    clean run over every prompt (which keep chunked passes at block 0)."""
    head = lambda h: f"L{late}H{h}"  # noqa: E731
    source = {"generator": "repeated_tokens", "n": 16, "seed": 4, "length": 6, "vocab": vocab}
    unders = [{"ablate": {"heads": [head(0)], "method": "zero"}},
              {"ablate": {"heads": [head(1)], "method": "bos", "at": "last"}},
              {"scale_attention": {"head": head(2), "from": "last", "to": 0, "factor": 0.1}},
              {"ablate": {"hook": "resid_mid", "layer": late, "method": "zero", "at": "last"}},
              {"patch": {"hook": "resid_pre", "layer": late, "at": "last", "mean": True, "source": source}},
              {"ablate": {"heads": ["L0H1"], "method": "zero"}},  # starts at block 0
              {"keep_only": {"heads": [head(3)], "method": "zero"}}]
    if late > 1:
        unders.append({"ablate": {"neurons": ["L1N3", "L1N40"], "method": "zero"}})
    if clean_reads:
        unders.append({"ablate": {"heads": [head(3)], "method": "mean"}})
        if not padded:  # resampling padded prompts is refused at collection
            unders.append({"ablate": {"heads": [head(2)], "method": "resample", "at": "last"}})
    return unders


def planned(unders: list, ms: list) -> dict:
    ms = [Measure.model_validate(m) for m in ms]
    unders = [()] + [(Intervention.model_validate(u),) for u in unders]
    return {run_key(u): (u, {m.model_dump_json(): m for m in ms}) for u in unders}


@functools.cache
def file_prompts(name: str, n: int = 40) -> P.PromptSet:
    """The first `n` prompts of a shipped file's prompt set (padded rows of different lengths)."""
    ps = next(iter(H.load(HYPOTHESES / name).prompt_sets.values())).subset(np.arange(n))
    assert ps.mask is not None and len(set(ps.length)) > 1
    return ps


def rotary_rows(tmp_path) -> P.PromptSet:
    """Left-padded rows of different lengths: rotary positions come from the attention mask."""
    import json

    rng = np.random.default_rng(0)
    rows = []
    for length in rng.integers(4, 14, size=40):
        tokens = [0] + rng.integers(1, 64, size=length).tolist()
        rows.append({"tokens": tokens, "targets": [{"at": "last", "token": tokens[1], "counterfactual": 7}]})
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return P.build("jsonl", None, 0, path="rows.jsonl", base=tmp_path, padding="left", pad_token=3)


@pytest.fixture(scope="module")
def rotary_model(tmp_path_factory):
    d = save_model(tmp_path_factory.mktemp("rotary"), dict(TINY, positional_embedding_type="rotary"))
    model = models.load(models.ModelSource("native", str(d / "config.json"), str(d / "model.safetensors")))
    assert model.cfg.positional_embedding_type == "rotary"
    return model


CASES = {  # name -> (model, prompts), each given what the test has
    "induction-repeated": (lambda r: models.load(models.ModelSource("zoo", "induction")),
                           lambda tmp: P.repeated_tokens(n=40, seed=3, length=8)),
    "induction-left-padded": (lambda r: models.load(models.ModelSource("zoo", "induction")),
                              lambda tmp: file_prompts("induction_jsonl.hyp.yaml")),
    "ioi-hf-right-padded": (lambda r: models.load(models.ModelSource("zoo", "ioi")),
                            lambda tmp: file_prompts("ioi_jsonl.hyp.yaml")),
    "rotary-left-padded": (lambda r: r, rotary_rows),
}
# (batch size from n, with interventions that read the clean run): several chunks, no clean reads;
# one chunk holding every prompt; the prompt set stacked four times a pass
MODES = {"chunked": (lambda n: n // 3 + 1, False), "one-chunk": (lambda n: n + n // 2, True),
         "stacked": (lambda n: 4 * n, True)}


def count_block_rows(model):
    """{"rows": n}: prompts that went through a block's own computation (not a skipped block)."""
    seen = {"rows": 0}

    def pre(module, args, kwargs):
        seen["rows"] += (args[0] if args else kwargs["hidden_states"]).shape[0]

    handles = [b.original_component.register_forward_pre_hook(pre, with_kwargs=True) for b in model.blocks]
    return seen, handles


def stream(model, ps, plan, batch_size, late=True):
    runs = R.Runs(model, ps, 0, batch_size, source_prompts=lambda spec: P.build(**spec.model_dump(exclude={"population"})))
    if not late:
        runs.late_start = None  # every pass from block 0, as before starting late
    seen, handles = count_block_rows(model)
    try:
        values = runs.stream(plan)
    finally:
        for h in handles:
            h.remove()
    assert seen["rows"] == runs.blocks_run  # the counters count what was computed
    return runs, values


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", list(CASES))
def test_late_passes_give_the_values_of_full_passes_exactly(case, mode, rotary_model, tmp_path, stacking):
    """Exact equality, not a tolerance: blocks 0..L-1 of an intervened pass compute what the clean
    pass computed (no hook sits in them), on the same rows; stacked copies of the prompt set run
    the same kernels row by row (checked here, bit for bit, on both model families)."""
    model_of, prompts_of = CASES[case]
    model, ps = model_of(rotary_model), prompts_of(tmp_path)
    late = model.cfg.n_layers - 1
    batch_size, clean_reads = MODES[mode][0](ps.n), MODES[mode][1]
    plan = planned(interventions(late, model.cfg.d_vocab, ps.mask is not None, clean_reads), measures(late))
    fast, got = stream(model, ps, plan, batch_size)
    full, expected = stream(model, ps, plan, batch_size, late=False)
    assert got.keys() == expected.keys()
    for k in expected:
        assert np.array_equal(got[k], expected[k]), k
    assert full.blocks_skipped == 0 and fast.blocks_skipped > 0
    assert fast.blocks_run + fast.blocks_skipped == full.blocks_run


def one_run(model, ps, under, measure, late=True):
    runs, values = stream(model, ps, planned([under], ["loss", measure]), 10 * ps.n, late)
    return runs, values[(run_key((Intervention.model_validate(under),)), Measure.model_validate(measure)
                         .model_dump_json())]


FIRST_BLOCK = [  # (model, intervention, what the run measures, the block its pass starts at)
    ("induction", {"ablate": {"heads": ["L1H0"], "method": "zero"}}, "loss", 1),
    ("induction", {"ablate": {"heads": ["L1H0"], "method": "zero"}},
     {"attention": {"head": "L0H0", "from": "last", "to": 0}}, 0),  # the measure reads block 0
    ("induction", {"ablate": {"heads": ["L0H2"], "method": "zero"}}, "loss", 0),
    ("induction", {"ablate": {"hook": "resid_pre", "layer": 1, "method": "zero", "at": "last"}}, "loss", 1),
    ("induction", {"ablate": {"hook": "hook_embed", "method": "zero", "at": "last"}}, "loss", 0),
    ("induction", {"ablate": {"heads": ["L1H0"], "method": "mean"}}, {"dla": {"component": "L1H1", "share": True}}, 1),
    ("ioi", {"ablate": {"neurons": ["L1N3"], "method": "zero"}}, "loss", 1),
    ("ioi", {"ablate": {"heads": ["L2H0"], "method": "zero"}}, "loss", 2),
    ("ioi", {"ablate": {"heads": ["L2H0"], "method": "zero"}}, {"head_score": {"head": "L1H1", "pattern": "induction"}}, 1),
    ("ioi", {"patch": {"hook": "mlp_out", "layer": 1, "source": {"generator": "repeated_tokens", "n": 20, "seed": 5,
                                                                  "length": 8, "vocab": 87}}}, "loss", 1),
]


@pytest.mark.parametrize("name, under, measure, start", FIRST_BLOCK)
def test_a_pass_starts_at_the_lowest_block_of_its_interventions_and_measures(name, under, measure, start):
    model = models.load(models.ModelSource("zoo", name))
    ps = P.repeated_tokens(n=20, seed=5, length=8, vocab=model.cfg.d_vocab)
    runs, got = one_run(model, ps, under, measure)
    assert runs.blocks_skipped == ps.n * start
    _, expected = one_run(model, ps, under, measure, late=False)
    assert np.array_equal(got, expected)


def test_a_start_one_block_too_late_changes_the_numbers(monkeypatch):
    """The negative control: an ablation at layer 0 started at block 1 never happens, and the
    comparison above sees it (so the equality tests can fail)."""
    model = models.load(models.ModelSource("zoo", "induction"))
    ps = P.repeated_tokens(n=40, seed=6, length=8)
    under = {"ablate": {"heads": ["L0H1"], "method": "zero"}}
    _, full = one_run(model, ps, under, "loss", late=False)
    honest = R.first_block
    monkeypatch.setattr(R, "first_block", lambda names, n: min(honest(names, n) + 1, n - 1))
    runs, late = one_run(model, ps, under, "loss")
    assert runs.blocks_skipped == ps.n
    assert not np.allclose(late, full, atol=1e-3)


def test_an_architecture_not_checked_runs_full_passes(monkeypatch):
    """A bridge whose blocks may hand on more than the residual stream is never started late."""
    model = models.load(models.ModelSource("zoo", "ioi"))
    ps = P.repeated_tokens(n=30, seed=2, length=8, vocab=87)
    under = {"ablate": {"heads": ["L2H0"], "method": "zero"}}
    _, fast = one_run(model, ps, under, "logit_diff")
    monkeypatch.setattr(R, "RESIDUAL_ONLY_BLOCKS", {"NativeBlock"})  # as if GPT2Block were unknown
    runs, full = one_run(model, ps, under, "logit_diff")
    assert runs.late_start is None and runs.blocks_skipped == 0 and runs.blocks_run == 2 * ps.n * 3
    assert np.array_equal(full, fast)


def test_a_block_whose_forward_another_library_wrapped_runs_full_passes():
    """A forward set on the bridge's block itself (as accelerate's hooks would be) is not replaced."""
    model = models.load(models.ModelSource("zoo", "induction"))
    block = model.blocks[1]
    object.__setattr__(block, "forward", block.forward)  # the bridge's setattr would pass it to the wrapped block
    try:
        assert R.block_output(model) is None
    finally:
        object.__delattr__(block, "forward")
    assert R.block_output(model) == "tuple"


def test_skipped_blocks_compute_again_after_a_pass_that_failed():
    """A hook that raises inside a late pass leaves no block skipped for the next pass."""
    model = models.load(models.ModelSource("zoo", "ioi"))
    tokens = P.repeated_tokens(n=4, seed=2, length=8, vocab=87).tokens
    import torch

    clean = model(torch.as_tensor(tokens))

    def fail(x, hook):
        raise RuntimeError("a failing hook")

    runs = R.Runs(model, P.repeated_tokens(n=4, seed=2, length=8, vocab=87))
    with pytest.raises(RuntimeError, match="a failing hook"):
        runs._run(torch.as_tensor(tokens), [("blocks.2.attn.hook_z", fail)], None, 2, torch.zeros(4, 17, 64))
    assert all("forward" not in vars(b) for b in model.blocks)
    assert torch.equal(model(torch.as_tensor(tokens)), clean)
