"""Ablation and patching of any component (MLP layers, neurons, q/k/v per head, the residual
stream, any hook; means over all prompts, a `where:` subset, or a source prompt set), each checked
per prompt against a hand forward pass of the tiny model with MLPs and LayerNorm (tests/manual.py:
the state dict's nn.Linear weights, not TransformerLens's hooks), edited by hand."""
from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pytest
import torch

import manual
from circuitcheck.files import loader as H
from circuitcheck.interventions.ablate import resample_order
from circuitcheck.session import Session

PROMPTS = "{generator: repeated_tokens, n: 24, seed: 1, length: 6}"
SOURCE = "{generator: repeated_tokens, n: 10, seed: 5, length: 6}"


def measured(path):
    """circuitcheck's per-prompt values of the file's only claim, and its prompt set."""
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    lc = loaded.claims[0]
    case = lc.cases[0]
    value, _ = session.values(loaded, lc.claim, case)
    return value, H.prompt_set(loaded, case.prompts_key, case.prompts)


def logprob(logits, ps) -> np.ndarray:
    """The `logprob` measure by hand: the correct token's log-probability, averaged over targets."""
    rows = torch.arange(ps.n)[:, None]
    lp = torch.log_softmax(logits[rows, torch.as_tensor(ps.target_pos)], -1)
    return lp.gather(-1, torch.as_tensor(ps.target_tok)[..., None])[..., 0].mean(-1).numpy()


def claim(under: str) -> str:
    return f"""\
    - id: c
      says: "an intervention, checked by hand"
      under: {under}
      measure: logprob
      expect: record
    """


def check(hyp_mlp, model, under, edit, prompts=PROMPTS):
    """`edit(name, x, clean, ps, ref)`: `ref.clean` and `ref.ps` are the reference set's clean run and
    prompts, which `method: mean` averages over (manual.reference_prompts)."""
    path = hyp_mlp(claim(under), prompts=prompts)
    value, ps = measured(path)
    tokens = torch.as_tensor(ps.tokens)
    _, clean = manual.forward_mlp(model, tokens)
    ref_ps = manual.reference_prompts(path)
    ref = Reference(manual.forward_mlp(model, torch.as_tensor(ref_ps.tokens))[1], ref_ps)
    logits, _ = manual.forward_mlp(model, tokens, lambda name, x: edit(name, x, clean, ps, ref))
    want = logprob(logits, ps)
    base = logprob(manual.forward_mlp(model, tokens)[0], ps)
    assert not np.allclose(want, base, atol=1e-3), "the edit must change something, or the test shows nothing"
    np.testing.assert_allclose(value, want, atol=2e-4)


class Reference(NamedTuple):
    clean: dict
    ps: object


def at(x, idx, new):
    """x with rows' position idx[row] replaced by new [rows, ...]."""
    x = x.clone()
    x[torch.arange(x.shape[0]), idx] = new
    return x


def test_mlp_layer_mean_ablation(hyp_mlp, tiny_mlp_model):
    def edit(name, x, clean, ps, ref):
        return ref.clean["mlp_out1"].mean(0, keepdim=True).expand_as(x) if name == "mlp_out1" else x

    check(hyp_mlp, tiny_mlp_model, "{ablate: {hook: mlp_out, layer: 1, method: mean}}", edit)


def test_zeroing_neurons_removes_their_rows_of_w_out(hyp_mlp, tiny_mlp_model):
    """Zeroing neurons at hook_post equals subtracting post[n] * W_out[n] from the MLP's output."""
    w_out = manual.state_weights(tiny_mlp_model)["W_out0"]

    def edit(name, x, clean, ps, ref):
        if name != "mlp_out0":
            return x
        return x - EDITED["post"][..., [5, 17]] @ w_out[[5, 17]]

    EDITED = {}

    def keep_post(name, x, clean, ps, ref):
        if name == "post0":
            EDITED["post"] = x
        return edit(name, x, clean, ps, ref)

    check(hyp_mlp, tiny_mlp_model, "{ablate: {neurons: [L0N5, L0N17], method: zero}}", keep_post)


def test_neurons_before_the_activation_mean(hyp_mlp, tiny_mlp_model):
    def edit(name, x, clean, ps, ref):
        if name != "pre1":
            return x
        x = x.clone()
        x[..., [3, 40]] = ref.clean["pre1"][..., [3, 40]].mean(0, keepdim=True)
        return x

    check(hyp_mlp, tiny_mlp_model, "{ablate: {hook: mlp_pre, neurons: [L1N3, L1N40], method: mean}}", edit)


def test_query_of_one_head_zeroed_makes_its_attention_uniform(hyp_mlp, tiny_mlp_model):
    """q = 0 gives every key a score of 0 (LN1 has no effect on q then): the head averages v."""

    def edit(name, x, clean, ps, ref):
        if name != "z1":
            return x
        t = x.shape[1]
        uniform = torch.tril(torch.ones(t, t, dtype=x.dtype))
        uniform = uniform / uniform.sum(-1, keepdim=True)
        x = x.clone()
        x[:, :, 2] = torch.einsum("qk,bke->bqe", uniform, EDITED["v"][:, :, 2])
        return x

    EDITED = {}

    def keep_v(name, x, clean, ps, ref):
        if name == "q1":  # circuitcheck zeroes q (bias included), so the scores are exactly 0
            return x
        if name == "v1":
            EDITED["v"] = x
        return edit(name, x, clean, ps, ref)

    check(hyp_mlp, tiny_mlp_model, "{ablate: {hook: q, heads: [L1H2], method: zero}}", keep_v)


def test_key_resample_and_value_mean_per_head(hyp_mlp, tiny_mlp_model):
    def edit(name, x, clean, ps, ref):
        x = x.clone()
        if name == "k0":
            x[:, :, 1] = clean["k0"][torch.as_tensor(resample_order(ps.n, 0))][:, :, 1]
        if name == "v1":
            x[:, 5, 0] = ref.clean["v1"][:, 5, 0].mean(0)
        return x

    under = "[{ablate: {hook: k, heads: [L0H1], method: resample}}, {ablate: {hook: v, heads: L1H0, at: 5}}]"
    check(hyp_mlp, tiny_mlp_model, under, edit)


def test_residual_stream_resample_at_a_position(hyp_mlp, tiny_mlp_model):
    def edit(name, x, clean, ps, ref):
        if name != "resid_mid0":
            return x
        return at(x, torch.full((ps.n,), 4), clean["resid_mid0"][torch.as_tensor(resample_order(ps.n, 0)), 4])

    check(hyp_mlp, tiny_mlp_model, "{ablate: {hook: blocks.0.hook_resid_mid, method: resample, at: 4}}", edit)


def test_mean_over_a_where_subset(hyp_mlp, tiny_mlp_model):
    def edit(name, x, clean, ps, ref):
        if name != "resid_pre1":
            return x
        subset = torch.as_tensor(ref.ps.tokens[:, 1] < 32)  # the reference prompts meeting the condition
        assert 0 < int(subset.sum()) < ref.ps.n
        return ref.clean["resid_pre1"][subset].mean(0, keepdim=True).expand_as(x)

    check(hyp_mlp, tiny_mlp_model, '{ablate: {hook: resid_pre, layer: 1, mean_over: "tok[1] < 32"}}', edit)


def test_heads_mean_over_a_subset_differs_from_the_mean_over_all(hyp_mlp, tiny_mlp_model):
    def edit(name, x, clean, ps, ref):
        if name != "z0":
            return x
        subset = torch.as_tensor(ref.ps.tokens[:, 2] >= 20)
        x = x.clone()
        x[:, :, 3] = ref.clean["z0"][subset][:, :, 3].mean(0)
        return x

    check(hyp_mlp, tiny_mlp_model, '{ablate: {heads: [L0H3], mean_over: "tok[2] >= 20"}}', edit)
    every, _ = measured(hyp_mlp(claim("{ablate: {heads: [L0H3]}}"), prompts=PROMPTS, name="all.hyp.yaml"))
    some, _ = measured(hyp_mlp(claim('{ablate: {heads: [L0H3], mean_over: "tok[2] >= 20"}}'), prompts=PROMPTS,
                               name="some.hyp.yaml"))
    assert not np.allclose(every, some, atol=1e-4)


def test_patch_from_the_mean_of_another_prompt_set(hyp_mlp, tiny_mlp_model):
    """The source has another number of prompts (10, not 24): each target prompt's position 3 takes
    the source prompts' mean residual at their position 3."""
    from circuitcheck import prompts as P

    src = P.repeated_tokens(n=10, seed=5, length=6)
    _, source = manual.forward_mlp(tiny_mlp_model, torch.as_tensor(src.tokens))

    def edit(name, x, clean, ps, ref):
        if name != "resid_pre1":
            return x
        return at(x, torch.full((ps.n,), 3), source["resid_pre1"][:, 3].mean(0))

    check(hyp_mlp, tiny_mlp_model, f"{{patch: {{hook: resid_pre, layer: 1, at: 3, mean: true, source: {SOURCE}}}}}",
          edit)


def test_patch_one_heads_output_prompt_by_prompt(hyp_mlp, tiny_mlp_model):
    from circuitcheck import prompts as P

    src = P.repeated_tokens(n=24, seed=9, length=6)
    _, source = manual.forward_mlp(tiny_mlp_model, torch.as_tensor(src.tokens))

    def edit(name, x, clean, ps, ref):
        if name != "z0":
            return x
        x = x.clone()
        x[:, :, 2] = source["z0"][:, :, 2]
        return x

    source_spec = "{generator: repeated_tokens, n: 24, seed: 9, length: 6}"
    check(hyp_mlp, tiny_mlp_model, f"{{patch: {{heads: [L0H2], source: {source_spec}}}}}", edit)


def test_existing_head_ablation_is_unchanged(hyp_mlp, tiny_mlp_model):
    """`ablate: {heads}` keeps its meaning: z of those heads replaced by their mean over the reference prompts."""

    def edit(name, x, clean, ps, ref):
        if name != "z1":
            return x
        x = x.clone()
        x[:, :, [0, 3]] = ref.clean["z1"][:, :, [0, 3]].mean(0)
        return x

    check(hyp_mlp, tiny_mlp_model, "{ablate: {heads: [L1H0, L1H3], method: mean}}", edit)


# ---------------------------------------------------------------- padding
def test_mean_ablation_averages_only_real_tokens_of_padded_prompts(tmp_path, tiny_mlp_dir, tiny_mlp_model):
    """Right-padded JSONL rows of different lengths: the mean at a position counts only the rows
    that have a real token there (the hand computation runs each row unpadded)."""
    from conftest import header

    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        length = int(rng.integers(5, 11))
        tokens = [0] + rng.integers(2, 64, size=length - 1).tolist()
        rows.append({"tokens": tokens, "targets": [{"at": length - 2, "token": tokens[-1]}]})
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = header(tiny_mlp_dir, "{generator: jsonl, path: rows.jsonl, padding: right, pad_token: 1}", tmp_path)
    path = tmp_path / "pad.hyp.yaml"
    path.write_text(text + "claims:\n" + "\n".join("  " + line for line in
                                                   claim("{ablate: {hook: mlp_out, layer: 0}}").splitlines()))
    value, ps = measured(path)
    assert ps.mask is not None and ps.mask.sum() < ps.mask.size, "the rows must be padded"

    clean = [manual.forward_mlp(tiny_mlp_model, torch.as_tensor([r["tokens"]]))[1]["mlp_out0"][0] for r in rows]
    t = max(len(r["tokens"]) for r in rows)
    total, count = torch.zeros(t, clean[0].shape[-1], dtype=torch.float64), torch.zeros(t, 1, dtype=torch.float64)
    for c in clean:
        total[:len(c)] += c
        count[:len(c)] += 1
    mean = total / count
    want = []
    for r in rows:
        n = len(r["tokens"])
        logits, _ = manual.forward_mlp(tiny_mlp_model, torch.as_tensor([r["tokens"]]),
                                       lambda name, x: mean[None, :n] if name == "mlp_out0" else x)
        want.append(torch.log_softmax(logits[0, r["targets"][0]["at"]], -1)[r["targets"][0]["token"]].item())
    np.testing.assert_allclose(value, want, atol=2e-4)
