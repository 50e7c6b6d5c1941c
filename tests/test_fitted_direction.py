"""`dla: {toward: {fitted: {hook, at, between: [A, B]}}}` on zoo:ioi (GPT-2 with MLPs and LayerNorm):
the per-prompt values equal a hand computation from the bridge's own run_with_cache (mean of the
hook's activation over subset A minus over subset B on the other half of the prompts (cross-fitted),
at unit length, then a component's output
through the final LayerNorm at the run's scale, projected on it); bad subsets and hooks are errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import circuitcheck
from circuitcheck import HypothesisError, load, models
from circuitcheck import prompts as P
from circuitcheck.session import Session

HOOK = "blocks.1.hook_resid_post"
A, B = "tok[IO] < tok[S]", "tok[IO] > tok[S]"
FITTED = f'{{fitted: {{hook: {HOOK}, at: end, between: ["{A}", "{B}"]}}}}'
HEADER = """\
model: zoo:ioi
prompts:
  generator: text
  template: "When {IO} and {S} went to the store, {S} gave a drink to"
  slots: {IO: &names [Mary, John, Alice, Bob, Tom, Anna, Kate, James], S: *names}
  answer: IO
  counterfactual: S
  n: 40
  seed: 3
claims:
"""


def write(tmp_path, claims: str, name="fit.hyp.yaml"):
    path = tmp_path / name
    path.write_text(HEADER + claims)
    return path


def values(path, i=0) -> np.ndarray:
    loaded = load(path)
    session = Session()
    session.add(loaded)
    lc = loaded.claims[i]
    return session.values(loaded, lc.claim, lc.cases[0])[0]


def by_hand(ps: P.PromptSet, component, share: bool, scale: str = "frozen") -> np.ndarray:
    """The same quantity from run_with_cache, written without circuitcheck's attribution code."""
    model = models.load(models.ModelSource("zoo", "ioi"))
    with torch.inference_mode():
        logits, cache = model.run_with_cache(torch.as_tensor(ps.tokens))
    rows = np.arange(ps.n)
    end = ps.positions["end"]
    resid = cache[HOOK][rows, end].double()  # [n, d]
    ioi, s = ps.tokens[rows, ps.positions["IO"]], ps.tokens[rows, ps.positions["S"]]
    a, b = torch.as_tensor(ioi < s), torch.as_tensor(ioi > s)
    assert a.sum() >= 5 and b.sum() >= 5  # both means are over real subsets
    half = torch.as_tensor(rows % 2)  # cross-fitted: odd prompts along the even prompts' direction, and back
    v = torch.empty_like(resid)
    for f in (0, 1):
        other = half != f
        d = resid[a & other].mean(0) - resid[b & other].mean(0)
        v[half == f] = d / torch.linalg.norm(d)
    layer, head = component
    part = cache[f"blocks.{layer}.attn.hook_z"][rows, end, head].double() @ model.W_O[layer, head].double()
    final = cache["ln_final.hook_in"][rows, end].double()
    sd = model.state_dict()
    w, bias = sd["ln_final.weight"].double(), sd["ln_final.bias"].double()
    centred = final - final.mean(-1, keepdim=True)
    sigma = (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    if scale == "frozen":
        out = (((part - part.mean(-1, keepdim=True)) / sigma * w) * v).sum(-1)
    else:
        out = (part * v).sum(-1)
    if share:  # the whole residual stream through the same LayerNorm, its bias included
        return ((centred / sigma * w + bias) * v).sum(-1).detach().numpy()  # the total: a share is a ratio of its mean
    return out.detach().numpy()


@pytest.mark.parametrize("share,scale", [(False, "frozen"), (False, "none")])
def test_fitted_direction_equals_the_hand_computation(tmp_path, share, scale):
    path = write(tmp_path, f"""\
  - id: fit
    says: "L2H0 along a direction fitted from layer 1's residual stream"
    measure: {{dla: {{component: L2H0, toward: {FITTED}, at: end, share: {str(share).lower()}, scale: {scale}}}}}
    expect: record
""")
    got = values(path)
    from circuitcheck.files.loader import prompt_set, prompts_key

    loaded = load(path)
    ps = prompt_set(loaded, prompts_key(loaded.path, loaded.claims[0].cases[0].prompts),
                    loaded.claims[0].cases[0].prompts)
    want = by_hand(ps, (2, 0), share, scale)
    assert got.shape == (ps.n,) and np.allclose(got, want, rtol=1e-6, atol=1e-8), np.abs(got - want).max()
    assert np.abs(want).max() > 1e-3  # not a vanishing quantity that any code would match
    assert np.array_equal(values(path), got)  # deterministic: the same bits again


def test_a_share_of_a_fitted_direction_whose_total_crosses_0_is_refused(tmp_path):
    """The residual stream along a contrast direction takes both signs over these prompts (by hand),
    so no share of it exists: the claim's error says so and what to write instead (issue 22, item 12)."""
    path = write(tmp_path, f"""\
  - id: fit
    says: "L2H0's share along a direction fitted from layer 1's residual stream"
    measure: {{dla: {{component: L2H0, toward: {FITTED}, at: end}}}}
    expect: record
""")
    from circuitcheck.files.loader import prompt_set, prompts_key

    loaded = load(path)
    ps = prompt_set(loaded, prompts_key(loaded.path, loaded.claims[0].cases[0].prompts),
                    loaded.claims[0].cases[0].prompts)
    total = by_hand(ps, (2, 0), share=True)
    assert (total > 0).any() and (total <= 0).any()
    result = circuitcheck.check(path)[0]
    assert result.verdict == "error" and "crosses 0" in result.error and "share: false" in result.error


def test_the_direction_is_the_difference_of_means_at_unit_length():
    from circuitcheck.measures import attribution

    # a small set: only positions and fields are read
    ps = P.PromptSet(np.arange(12).reshape(4, 3), {"last": np.full(4, 2)}, np.full((4, 1), 2),
                     np.zeros((4, 1), np.int64), "t", {}, fields={"cat": np.array(["a", "a", "b", "b"])})
    act = torch.zeros(4, 3, 2, dtype=torch.float32)
    act[:, 2] = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    v = attribution.fitted_direction({"h": act}, ps, "h", "last", ("cat == 'a'", "cat == 'b'"))
    # prompts 0 and 2 read along the direction of 1 and 3: ([3, 0] - [0, 3]) / |.|; 1 and 3 along 0 and 2's
    assert v.shape == (4, 2) and torch.allclose(v, torch.tensor([[1.0, -1.0]] * 4, dtype=torch.float64) / np.sqrt(2))
    with pytest.raises(ValueError, match="is zero"):
        attribution.fitted_direction({"h": act}, ps, "h", "last", ("cat == 'a'", "cat == 'a'"))


def test_the_fitted_hook_is_planned(tmp_path):
    from circuitcheck import measures

    loaded = load(write(tmp_path, f"""\
  - {{id: fit, says: "x", measure: {{dla: {{component: mlp2, toward: {FITTED}}}}}, expect: record}}
"""))
    m = loaded.claims[0].cases[0].measure
    needs = measures.needs(m, models.load(models.ModelSource("zoo", "ioi")).cfg)
    assert HOOK in needs and "blocks.2.hook_mlp_out" in needs


@pytest.mark.parametrize("toward,field,says", [
    (f'{{fitted: {{hook: {HOOK}, at: end, between: ["{A}", "length > 1000"]}}}}', "between", "selects none"),
    (f'{{fitted: {{hook: {HOOK}, at: end, between: ["{A}", "colour == 1"]}}}}', "between", "no field"),
    ('{fitted: {hook: blocks.7.hook_resid_post, at: end, between: ["length > 0", "length > 0"]}}', "hook", "3 layers"),
    ('{fitted: {hook: blocks.1.resid, at: end, between: ["length > 0", "length > 0"]}}', "hook", "unknown hook"),
    (f'{{fitted: {{hook: {HOOK}, at: NOWHERE, between: ["{A}", "{B}"]}}}}', "at", "NOWHERE"),
])
def test_bad_subsets_hooks_and_positions_are_collection_errors(tmp_path, toward, field, says):
    path = write(tmp_path, f"""\
  - id: fit
    says: "x"
    measure: {{dla: {{component: L2H0, toward: {toward}}}}}
    expect: record
""")
    with pytest.raises(HypothesisError, match=says) as info:
        load(path)
    assert field in info.value.field and info.value.line == HEADER.count("\n") + 3


def test_a_hook_without_one_vector_per_position_is_a_collection_error(tmp_path):
    from circuitcheck.measures import attribution

    for hook in ("blocks.1.attn.hook_z", "blocks.2.mlp.hook_post", "blocks.0.attn.hook_pattern"):
        path = write(tmp_path, f"""\
  - id: fit
    says: "x"
    measure: {{dla: {{component: L2H0, toward: {{fitted: {{hook: {hook}, at: end, between: ["{A}", "{B}"]}}}}}}}}
    expect: record
""")
        with pytest.raises(HypothesisError, match="one d_model vector per position") as info:
            load(path)
        assert info.value.field.endswith("fitted.hook")
    act = torch.zeros(2, 3, 4, 5)
    small = P.PromptSet(np.zeros((2, 3), np.int64), {"last": np.full(2, 2)}, np.full((2, 1), 2),
                        np.zeros((2, 1), np.int64), "t", {}, fields={"c": np.array([1, 2])})
    with pytest.raises(ValueError, match="one vector per position"):
        attribution.fitted_direction({"h": act}, small, "h", "last", ("c == 1", "c == 2"))


def test_fitted_and_centred_values_do_not_depend_on_the_batch_size(tmp_path):
    """Both average over every prompt: a run measured in chunks of 16 of the 40 prompts gave each
    chunk its own mean before dla kept whole runs."""
    from circuitcheck.session import Options

    path = write(tmp_path, f"""\
  - {{id: fit, says: "x", measure: {{dla: {{component: L2H0, toward: {FITTED}, at: end, share: false}}}}, expect: record}}
  - {{id: cen, says: "x", measure: {{dla: {{component: L2H0, at: end, share: false, centre: all}}}}, expect: record}}
""")
    for i in (0, 1):
        got = []
        for batch_size in (1024, 16):
            loaded = load(path)
            session = Session(Options(batch_size=batch_size))
            session.add(loaded)
            lc = loaded.claims[i]
            got.append(session.values(loaded, lc.claim, lc.cases[0])[0])
        assert np.allclose(got[0], got[1], rtol=0, atol=1e-9), (i, np.abs(got[0] - got[1]).max())


def test_a_fitted_contrast_between_halves_of_a_fair_coin_does_not_pass():
    """Issue 22, item 9: activations with no signal, prompts split by a coin. Fitted and judged on the
    same prompts, the contrast along the fitted direction is the norm of the noise's mean difference,
    positive every time (it passed 11 of 25); cross-fitted it is centred on 0 and `contrast at_least
    0` passes at most at its level (0.05; at most 5 of 60 runs allows 3 Monte Carlo se)."""
    from circuitcheck.judge import stats as S
    from circuitcheck.judge.verdict import PASS, judge
    from circuitcheck.measures import attribution

    rng = np.random.default_rng(0)
    n, runs, passed = 200, 60, 0
    for _ in range(runs):
        coin = rng.random(n) < 0.5
        ps = P.PromptSet(np.zeros((n, 2), np.int64), {"last": np.ones(n, np.int64)}, np.ones((n, 1), np.int64),
                         np.zeros((n, 1), np.int64), "t", {}, fields={"coin": coin.astype(np.int64)})
        act = torch.as_tensor(rng.normal(0, 1, (n, 2, 16)), dtype=torch.float32)
        v = attribution.fitted_direction({"h": act}, ps, "h", "last", ("coin == 1", "coin == 0"))
        value = (act[:, 1].double() * v).sum(-1).numpy()  # the activation read along its direction
        est = S.Difference(S.bound_for(value[coin], 0), S.bound_for(value[~coin], 0)).at(0.05)
        passed += judge(est, 0.0, np.inf) == PASS
    assert passed <= 5, passed
