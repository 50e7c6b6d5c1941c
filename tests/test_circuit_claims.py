"""Claims about a circuit as a whole, and the paired comparisons they are made of, each checked per
prompt against a hand forward pass (tests/manual.py: the state dict's weights, edited by hand), on
a model with MLPs and LayerNorm and on the native attention-only zoo:induction."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import manual
from circuitcheck import check
from circuitcheck.files import loader as H
from circuitcheck.session import Session

PROMPTS = "{generator: repeated_tokens, n: 120, seed: 1, length: 6}"
ZOO_PROMPTS = "{generator: repeated_tokens, n: 150, seed: 3}"


def zoo_file(tmp_path, claims: str, prompts: str = ZOO_PROMPTS, name: str = "zoo"):
    path = tmp_path / f"{name}.hyp.yaml"
    path.write_text(f"model: zoo:induction\nprompts: {prompts}\nclaims:\n" + textwrap.indent(textwrap.dedent(claims), "  "))
    return path


@pytest.fixture(scope="module")
def induction():
    from circuitcheck import load_model

    return load_model("zoo:induction")


def values_of(path) -> tuple[dict, object]:
    """circuitcheck's per-prompt values of each claim's first case, and the prompt set."""
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    out = {lc.claim.id: session.run_values.values(loaded, lc.claim, lc.cases[0])[0] for lc in loaded.claims}
    case = loaded.claims[0].cases[0]
    return out, H.prompt_set(loaded, case.prompts_key, case.prompts)


def logprob(logits, ps) -> np.ndarray:
    """The `logprob` measure by hand: the correct token's log-probability, averaged over targets."""
    rows = torch.arange(ps.n)[:, None]
    lp = torch.log_softmax(logits[rows, torch.as_tensor(ps.target_pos)], -1)
    return lp.gather(-1, torch.as_tensor(ps.target_tok)[..., None])[..., 0].mean(-1).numpy()


def hand_run(model, ps, knocked: dict[int, list[int]] = {}, mlps: tuple[int, ...] = (), method: str = "mean"):
    """Logprob per prompt with heads {layer: [head, ...]} and MLP layers knocked out by hand: each
    replaced by its mean over the prompts at each position (or zero)."""
    tokens = torch.as_tensor(ps.tokens)
    _, clean = manual.forward_mlp(model, tokens)

    def edit(name, x):
        for layer, heads in knocked.items():
            if name == f"z{layer}":
                x = x.clone()
                new = clean[name].mean(0, keepdim=True) if method == "mean" else torch.zeros_like(clean[name][:1])
                x[:, :, heads] = new[:, :, heads].expand(x.shape[0], -1, -1, -1)
        for layer in mlps:
            if name == f"mlp_out{layer}":
                x = clean[name].mean(0, keepdim=True).expand_as(x) if method == "mean" else torch.zeros_like(x)
        return x

    return logprob(manual.forward_mlp(model, tokens, edit)[0], ps)


# ---------------------------------------------------------------- versus with its own run
def test_versus_under_compares_two_interventions_prompt_by_prompt(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp("""\
        - id: one-vs-other
          says: knocking out L1H0 costs more than knocking out MLP 0
          under: {ablate: {heads: [L1H0], method: mean}}
          measure: logprob
          versus: {under: {ablate: {hook: mlp_out, layer: 0, method: mean}}}
          expect: record
        - id: vs-full
          says: the run without L1H0 against the full model
          under: {ablate: {heads: [L1H0], method: mean}}
          measure: logprob
          versus: {under: []}
          expect: record
        """, prompts=PROMPTS)
    got, ps = values_of(path)
    head = hand_run(tiny_mlp_model, ps, {1: [0]})
    mlp = hand_run(tiny_mlp_model, ps, mlps=(0,))
    full = hand_run(tiny_mlp_model, ps)
    assert not np.allclose(head, mlp, atol=1e-3) and not np.allclose(head, full, atol=1e-3)
    np.testing.assert_allclose(got["one-vs-other"], head - mlp, atol=2e-4)
    np.testing.assert_allclose(got["vs-full"], head - full, atol=2e-4)


def test_versus_under_on_an_attention_only_zoo_model(tmp_path, induction):
    path = zoo_file(tmp_path, """\
        - id: holds
          says: pruning the induction heads lowers the log-probability against the full model
          under: {ablate: {heads: [L1H1, L1H3], method: mean}}
          measure: logprob
          versus: {under: []}
          expect: {at_most: -1}
        """)
    got, ps = values_of(path)
    diff = hand_run(induction, ps, {1: [1, 3]}) - hand_run(induction, ps)
    np.testing.assert_allclose(got["holds"], diff, atol=2e-4)
    twin = zoo_file(tmp_path, f"""\
        - id: holds
          says: pruning the induction heads lowers the log-probability against the full model
          under: {{ablate: {{heads: [L1H1, L1H3], method: mean}}}}
          measure: logprob
          versus: {{under: []}}
          expect: {{at_most: {float(diff.mean() - 6 * diff.std() / np.sqrt(diff.size))!r}}}
        """, name="twin")
    assert [r.verdict for r in check(path)] == ["pass"]
    assert [r.verdict for r in check(twin)] == ["fail"]


def test_versus_under_runs_are_shared_and_planned(hyp_mlp):
    """Two claims comparing with the same run plan it once: one clean pass and one per intervention."""
    path = hyp_mlp("""\
        - id: a
          says: a
          under: {ablate: {heads: [L1H0], method: zero}}
          measure: logprob
          versus: {under: []}
          expect: record
        - id: b
          says: b
          under: {ablate: {heads: [L1H1], method: zero}}
          measure: prob
          versus: {under: [], measure: logprob}
          expect: record
        """, prompts=PROMPTS)
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    for lc in loaded.claims:
        session.result(loaded.path, lc.claim.id)
    assert session.run_values.forward_passes() == 3


@pytest.mark.parametrize("versus,says", [
    ("{under: [], measure: {atention: 1}}", "unknown key 'atention'"),
    ("{under: {ablate: {heads: [L9H0]}}}", "L9H0"),
])
def test_bad_versus_runs_are_refused_at_load(hyp_mlp, versus, says):
    path = hyp_mlp(f"""\
        - id: c
          says: s
          measure: logprob
          versus: {versus}
          expect: {{at_least: 0}}
        """)
    with pytest.raises(H.HypothesisError, match=says) as info:
        H.load(path)
    assert info.value.line == 8  # the line of `versus:`


def test_versus_under_goes_without_drop(hyp_mlp):
    path = hyp_mlp("""\
        - id: c
          says: s
          under: {ablate: {heads: [L1H0]}}
          measure: logprob
          versus: {under: []}
          expect: {drop: {at_least: 0}}
        """)
    with pytest.raises(H.HypothesisError, match="already compares two runs"):
        H.load(path)
