"""Every intervention against a hand computation (tests/manual.py) on a 1-layer model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from circuitcheck import prompts as P
from circuitcheck.interventions.ablate import resample_order
from circuitcheck.runs.engine import Runs
from circuitcheck.files.spec import Intervention

TOL = 1e-4


@pytest.fixture(scope="module")
def ps():
    return P.repeated_tokens(n=16, seed=3, length=8)


def run(model, ps, *under, seed=0):
    ivs = tuple(Intervention.model_validate(u) for u in under)
    return Runs(model, ps, seed).run(ivs, set()).logits.double()


def close(a, b):
    assert (a - b).abs().max().item() < TOL


def test_clean_run_matches_hand_forward(tiny_no_ln_model, ps):
    tokens = torch.as_tensor(ps.tokens)
    close(run(tiny_no_ln_model, ps), manual.forward(tiny_no_ln_model, tokens)[0])


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_ablate_heads_at_every_position(tiny_no_ln_model, ps, method):
    tokens = torch.as_tensor(ps.tokens)
    _, _, z_clean = manual.forward(tiny_no_ln_model, tokens)
    repl = {"zero": torch.zeros_like(z_clean), "mean": z_clean.mean(0, keepdim=True).expand_as(z_clean),
            "resample": z_clean[torch.as_tensor(resample_order(ps.n, 0))]}[method]

    def edit(z):
        z = z.clone()
        z[:, :, [1, 3]] = repl[:, :, [1, 3]]
        return z

    expected = manual.forward(tiny_no_ln_model, tokens, edit_z=edit)[0]
    got = run(tiny_no_ln_model, ps, {"ablate": {"heads": ["L0H1", "L0H3"], "method": method}})
    close(got, expected)
    assert (got - run(tiny_no_ln_model, ps)).abs().max() > 1e-3  # the ablation did something


def test_ablate_at_named_position_only(tiny_no_ln_model, ps):
    tokens = torch.as_tensor(ps.tokens)
    pos = int(ps.positions["S2"][0]) + 2

    def edit(z):
        z = z.clone()
        z[:, pos, 2] = 0
        return z

    got = run(tiny_no_ln_model, ps, {"ablate": {"heads": ["L0H2"], "method": "zero", "at": "S2+2"}})
    close(got, manual.forward(tiny_no_ln_model, tokens, edit_z=edit)[0])


def test_keep_only_ablates_the_complement(tiny_no_ln_model, ps):
    a = run(tiny_no_ln_model, ps, {"keep_only": {"heads": ["L0H0"], "method": "zero"}})
    b = run(tiny_no_ln_model, ps, {"ablate": {"heads": ["L0H1", "L0H2", "L0H3"], "method": "zero"}})
    close(a, b)


def test_bos_ablation_attends_only_to_position_zero(tiny_no_ln_model, ps):
    tokens = torch.as_tensor(ps.tokens)
    pos = int(ps.positions["S2"][0])

    def edit(p):
        p = p.clone()
        p[:, 1, pos] = 0
        p[:, 1, pos, 0] = 1
        return p

    got = run(tiny_no_ln_model, ps, {"ablate": {"heads": ["L0H1"], "method": "bos", "at": "S2"}})
    close(got, manual.forward(tiny_no_ln_model, tokens, edit_pattern=edit)[0])


@pytest.mark.parametrize("factor", [0.0, 0.08, 0.5, 1.0, 2.0])
def test_scale_attention_rescales_the_pre_softmax_score(tiny_no_ln_model, ps, factor):
    tokens = torch.as_tensor(ps.tokens)
    q, k = int(ps.positions["S2"][0]), int(ps.positions["S1"][0]) + 1

    @manual.scores_edit
    def edit(scores):
        scores = scores.clone()
        scores[:, 2, q, k] *= factor
        return scores

    got = run(tiny_no_ln_model, ps, {"scale_attention": {"head": "L0H2", "from": "S2", "to": "S1+1",
                                                         "factor": factor}})
    close(got, manual.forward(tiny_no_ln_model, tokens, edit_pattern=edit)[0])


def test_scale_attention_on_weight_at_factor_0_removes_the_edge(tiny_no_ln_model, ps):
    """`on: weight` multiplies the post-softmax weight: at factor 0 the edge carries no attention
    (the score form at factor 0 only sets the score to 0, which leaves weight on the edge)."""
    q, k = "S2", "S1+1"
    rows, qi, ki = np.arange(ps.n), P.position(ps, q), P.position(ps, k)
    name = "blocks.0.attn.hook_pattern"

    def edge(on):
        iv = Intervention.model_validate({"scale_attention": {"head": "L0H2", "from": q, "to": k, "factor": 0, "on": on}})
        pattern = Runs(tiny_no_ln_model, ps, 0).run((iv,), {name}).cache[name]
        return pattern[rows, 2, qi, ki]

    assert edge("weight").abs().max().item() <= 1e-6
    assert edge("score").max().item() > 1e-2  # the pre-softmax form at 0 is not a removal


def test_scale_attention_on_weight_rescales_and_renormalises(tiny_no_ln_model, ps):
    tokens = torch.as_tensor(ps.tokens)
    q, k = int(ps.positions["S2"][0]), int(ps.positions["S1"][0]) + 1

    def edit(pattern):
        pattern = pattern.clone()
        pattern[:, 2, q, k] *= 0.3
        pattern[:, 2, q] /= pattern[:, 2, q].sum(-1, keepdim=True)
        return pattern

    got = run(tiny_no_ln_model, ps, {"scale_attention": {"head": "L0H2", "from": "S2", "to": "S1+1",
                                                         "factor": 0.3, "on": "weight"}})
    close(got, manual.forward(tiny_no_ln_model, tokens, edit_pattern=edit)[0])


def test_patch_replaces_the_activation_from_the_source_prompts(tiny_no_ln_model, ps):
    src = {"generator": "repeated_tokens", "n": 16, "seed": 99, "length": 8}
    runs = Runs(tiny_no_ln_model, ps, 0, source_prompts=lambda spec: P.build(**spec.model_dump(exclude={"population"})))
    iv = Intervention.model_validate({"patch": {"hook": "resid_post", "layer": 0, "source": src}})
    got = runs.run((iv,), set()).logits.double()
    source_tokens = torch.as_tensor(P.build(**src).tokens)
    close(got, manual.forward(tiny_no_ln_model, source_tokens)[0])  # patched everywhere: the source's logits


def test_runs_are_chunked_without_changing_numbers(tiny_model, ps):
    iv = (Intervention.model_validate({"ablate": {"heads": ["L1H0"], "method": "mean"}}),)
    whole = Runs(tiny_model, ps, 0).run(iv, set()).logits
    runs = Runs(tiny_model, ps, 0, batch_size=5)
    chunked = runs.run(iv, set()).logits
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert runs.forward_passes == 2 * 4  # clean (for the mean) and ablated, 4 chunks each


def test_resample_order_never_keeps_a_prompt_in_place():
    order = resample_order(50, 0)
    assert not np.any(order == np.arange(50))
    assert np.array_equal(order, resample_order(50, 0))


def test_stacked_interventions_equal_separate_runs_in_fewer_passes(tiny_model, ps, stacking):
    unders = [(Intervention.model_validate(u),) for u in (
        {"ablate": {"heads": ["L1H0"], "method": "mean"}},
        {"ablate": {"heads": ["L0H1"], "method": "resample", "at": "S2"}},
        {"ablate": {"heads": ["L1H2"], "method": "bos"}},
        {"keep_only": {"heads": ["L0H0", "L1H1"], "method": "zero"}},
        {"scale_attention": {"head": "L1H3", "from": "S2", "to": "S1+1", "factor": 0.1}},
        {"patch": {"hook": "z", "layer": 0, "at": "S2+1",
                   "source": {"generator": "repeated_tokens", "n": 16, "seed": 4, "length": 8}}},
    )]
    need = {"blocks.1.attn.hook_pattern"}
    build = lambda spec: P.build(**spec.model_dump(exclude={"population"}))  # noqa: E731
    separate = Runs(tiny_model, ps, 0, source_prompts=build)
    stacked = Runs(tiny_model, ps, 0, batch_size=4 * ps.n, source_prompts=build)
    stacked.run_many([(u, need) for u in unders])
    assert stacked.forward_passes == 1 + 1 + 2  # clean, the patch source, 6 interventions in 2 passes
    for u in unders:
        a, b = separate.run(u, need), stacked.run(u, need)
        assert torch.allclose(a.logits, b.logits, atol=1e-5)
        assert torch.allclose(a.cache["blocks.1.attn.hook_pattern"], b.cache["blocks.1.attn.hook_pattern"], atol=1e-6)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_mean_ablation_of_padded_prompts_averages_real_tokens_only(tiny_no_ln_model, tmp_path, padding):
    """Prompts of lengths 3 to 7, padded: the mean a head's z is replaced by at a prompt's j-th token
    is, by hand, the average of the j-th tokens' z over the prompts that have one (each run alone,
    unpadded); padding never enters it, and left and right padding give the same logits."""
    import json

    rng = np.random.default_rng(5)
    rows = [[0] + rng.integers(1, 64, size=k - 1).tolist() for k in (5, 3, 7, 4, 7, 6)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"tokens": r, "answer": 1}) + "\n" for r in rows))
    padded = P.build("jsonl", None, 0, path="rows.jsonl", base=tmp_path, padding=padding, pad_token=63)
    alone = [manual.forward(tiny_no_ln_model, torch.tensor([r]))[2][0] for r in rows]  # z [q, h, d] per prompt
    mean = [torch.stack([z[j] for z in alone if len(z) > j]).mean(0) for j in range(7)]  # by token index
    got = run(tiny_no_ln_model, padded, {"ablate": {"heads": ["L0H1", "L0H3"], "method": "mean"}})
    for i, r in enumerate(rows):
        def edit(z):
            z = z.clone()
            for j in range(len(r)):
                z[0, j, [1, 3]] = mean[j][[1, 3]]
            return z

        want = manual.forward(tiny_no_ln_model, torch.tensor([r]), edit_z=edit)[0][0]
        real = torch.as_tensor(padded.mask[i] == 1)
        close(got[i][real], want)
    # the old mean over every prompt at each padded index (padding included) is not this
    z_padded = Runs(tiny_no_ln_model, padded, 0).run((), {"blocks.0.attn.hook_z"}).cache["blocks.0.attn.hook_z"]
    assert (z_padded.double().mean(0)[0:7, 1] - torch.stack(mean)[:, 1]).abs().max() > 1e-3
