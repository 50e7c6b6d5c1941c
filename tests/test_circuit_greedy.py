"""Completeness's greedy worst-case K (`knock: {greedy: N}`), checked against the greedy search done by
hand (tests/manual.py forward passes, heads and MLPs zeroed by hand): chosen on the held-out prompts
(the claim's generator with its seed + 2,000,003), then judged on the claim's own prompts. On the
native attention-only zoo:induction and on the tiny model with MLPs and LayerNorm."""
from __future__ import annotations

import numpy as np
import pytest

from circuitcheck.files import loader as H
from circuitcheck.session import Session
from test_circuit_claims import PROMPTS, hand_run, zoo_file


@pytest.fixture(scope="module")
def induction():
    from circuitcheck import load_model

    return load_model("zoo:induction")


def held_out(loaded):
    """The held-out prompts by their documented recipe, built apart from circuitcheck's choice."""
    spec = loaded.spec.prompts
    spec = spec.model_copy(update={"seed": spec.seed + 2_000_003})
    return H.prompt_set(loaded, H.prompts_key(loaded.path, spec), spec)


def by_hand(run, nodes: list, steps: int, ps_held, ps_claim):
    """The greedy search by hand: `run(ps, knocked, circuit)` is the measure per prompt with the nodes
    `knocked` zeroed, in the circuit (everything outside it zeroed too) or in the full model. Each step
    adds the node whose K gives the largest |F(C∖K) − F(M∖K)| on the held-out prompts (ties: the
    first listed); returns each step's K and its F(C∖K) − F(M∖K) on the claim's prompts."""
    def gap(ps, K):
        den = run(ps, [], False).mean() - run(ps, nodes, True).mean()  # m(M) − m(∅): ∅ knocks out every node
        return (run(ps, K, True).mean() - run(ps, K, False).mean()) / den

    K, out = [], []
    for _ in range(steps):
        scores = [abs(gap(ps_held, K + [v])) for v in nodes if v not in K]
        K = K + [[v for v in nodes if v not in K][int(np.argmax(scores))]]
        out.append((sorted(K), gap(ps_claim, K)))
    return out


def judged(path):
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    result = session.result(loaded.path, loaded.claims[0].claim.id)
    return session.files[loaded.path], result


def test_greedy_k_by_hand_on_attention_only_zoo(tmp_path, induction):
    path = zoo_file(tmp_path, """\
        - id: complete
          says: the greedy worst case does to the circuit what it does to the model
          circuit: {nodes: [L0H2, L1H1, L1H3], ablation: zero, knock: {classes: false, greedy: 2}}
          measure: logprob
          expect: {completeness: {at_most: 10}}
        """)
    loaded, result = judged(path)
    outside = {"L0H0", "L0H1", "L0H3", "L1H0", "L1H2"}

    def run(ps, knocked, in_circuit):
        heads = set(knocked) | (outside if in_circuit else set())
        layers = {layer: sorted(int(h[3]) for h in heads if h[1] == str(layer)) for layer in (0, 1)}
        return hand_run(induction, ps, {k: v for k, v in layers.items() if v}, method="zero")

    held, claim_ps = held_out(loaded), H.prompt_set(loaded, loaded.claims[0].cases[0].prompts_key,
                                                     loaded.claims[0].cases[0].prompts)
    assert not np.array_equal(held.tokens, claim_ps.tokens)
    want = by_hand(run, ["L0H2", "L1H1", "L1H3"], 2, held, claim_ps)
    assert [c.label for c in result.cases] == ["K=greedy1", "K=greedy2"]
    assert {k: sorted(v.split("+")) for k, v in result.roles.items()} == {"greedy1": want[0][0], "greedy2": want[1][0]}
    for case, (_, value) in zip(result.cases, want):
        assert np.isclose(case.estimate.statistic, value, atol=1e-4)


def test_greedy_k_by_hand_on_a_model_with_mlps(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp("""\
        - id: complete
          says: the greedy worst case, with the class sets beside it
          circuit: {nodes: [L0H1, L1H0, mlp0, mlp1], ablation: zero, knock: {greedy: 3}}
          measure: logprob
          expect: {completeness: {at_most: 10}}
        """, prompts=PROMPTS)
    loaded, result = judged(path)
    nodes = ["L0H1", "L1H0", "L0.mlp", "L1.mlp"]

    def run(ps, knocked, in_circuit):
        heads = {0: [0, 2, 3], 1: [1, 2, 3]} if in_circuit else {0: [], 1: []}
        for h in (k for k in knocked if "H" in k):
            heads[int(h[1])] = sorted(set(heads[int(h[1])]) | {int(h[3])})
        mlps = tuple(int(k[1]) for k in knocked if k.endswith("mlp"))
        return hand_run(tiny_mlp_model, ps, {k: v for k, v in heads.items() if v}, mlps=mlps, method="zero")

    claim_ps = H.prompt_set(loaded, loaded.claims[0].cases[0].prompts_key, loaded.claims[0].cases[0].prompts)
    want = by_hand(run, nodes, 3, held_out(loaded), claim_ps)
    labels = [c.label for c in result.cases]
    assert not result.error, result.error
    assert labels == ["K=heads", "K=mlps", "K=greedy1", "K=greedy2", "K=greedy3"]
    assert [sorted(result.roles[f"greedy{t}"].split("+")) for t in (1, 2, 3)] == [k for k, _ in want]
    for case, (_, value) in zip(result.cases[2:], want):
        assert np.isclose(case.estimate.statistic, value, atol=1e-4)


BAD = [
    ("{nodes: [L0H1, L1H0], knock: {greedy: 2}}", "{faithfulness: {at_least: 0.5}}", "claims[0]",
     "`knock.greedy` chooses the worst-case K of completeness"),
    ("{nodes: [L0H1, L1H0], knock: {prompts: {generator: repeated_tokens, n: 10, seed: 4}}}",
     "{completeness: {at_most: 0.2}}", "claims[0].circuit.knock", "add `greedy: N`"),
]


@pytest.mark.parametrize("circuit, expect, field, message", BAD, ids=["not-completeness", "prompts-without-greedy"])
def test_bad_greedy_claims_are_collection_errors(hyp_mlp, circuit, expect, field, message):
    path = hyp_mlp(f"""\
        - id: bad
          says: a greedy K where it does not go
          circuit: {circuit}
          measure: logprob
          expect: {expect}
        """, prompts=PROMPTS)
    with pytest.raises(H.HypothesisError) as err:
        H.load(path)
    assert err.value.field.startswith(field) and message in err.value.message


def test_a_jsonl_set_must_name_its_held_out_prompts(hyp_mlp, tmp_path):
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"tokens": [1, 2, 3, {i}], "target": 1}}\n' for i in range(4)))
    path = hyp_mlp("""\
        - id: bad
          says: a greedy K with no held-out draw
          circuit: {nodes: [L0H1, L1H0], knock: {greedy: 1}}
          measure: logprob
          expect: {completeness: {at_most: 0.2}}
        """, prompts="{generator: jsonl, path: rows.jsonl}")
    with pytest.raises(H.HypothesisError) as err:
        H.load(path)
    assert err.value.field == "claims[0].circuit.knock.greedy" and "held-out" in err.value.message
    assert "prompts:" in err.value.hint
