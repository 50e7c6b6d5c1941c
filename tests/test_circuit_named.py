"""`circuit:` claims that name a `circuits:` entry: an edge circuit read from an EAP-IG file (the MIB
layout, written here), a node circuit with neurons and the input, patching from a corrupted prompt
set, and `versus` runs that name circuits. Each run is checked per prompt against a hand forward
pass from the state dict (test_circuit_interventions.hand, manual.forward_mlp), on a model with
MLPs and LayerNorm and on a native attention-only one; bad names and edges are collection errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import manual
from circuitcheck import prompts as P
from circuitcheck.files import loader as H
from circuitcheck.session import Session
from test_circuit_claims import named_values
from test_circuit_interventions import PROMPTS, SOURCE, hand, knocked_edge_reader, logprob, means, reference_tokens

# the MIB circuit-track layout: every edge of the graph with a score, the circuit's marked in_graph
IN_GRAPH = ["input->a0.h1<v>", "input->a0.h1<k>", "a0.h1->a1.h2<q>", "a0.h1->a1.h2<k>", "input->a1.h2<v>",
            "a1.h2->logits", "input->logits"]
OUT_OF_GRAPH = ["a0.h3->a1.h0<v>", "a0.h0->logits"]


def eap_file(folder, cfg: dict) -> None:
    edges = {e: {"score": 1.0 + i, "in_graph": True} for i, e in enumerate(IN_GRAPH)}
    edges.update({e: {"score": -0.1, "in_graph": False} for e in OUT_OF_GRAPH})
    graph = {"cfg": {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model},
             "nodes": {"input": {"score": None, "in_graph": True}, "logits": {"score": None, "in_graph": True}},
             "edges": edges}
    (folder / "circuit.json").write_text(json.dumps(graph, indent=1))


@pytest.fixture(params=["mlp", "attn_only"])
def setup(request, tmp_path, tiny_mlp_dir, tiny_dir, tiny_mlp_model, tiny_model):
    from conftest import writer

    d, m = (tiny_mlp_dir, tiny_mlp_model) if request.param == "mlp" else (tiny_dir, tiny_model)
    write = writer(tmp_path, d)
    eap_file(tmp_path, m.cfg)
    return (lambda text, extra="": write(text, prompts=PROMPTS, extra=extra)), m


def named_runs(path):
    """{claim id: [each case's {run name: per-prompt values}]}, and the prompt set."""
    return named_values(path)[:2]


def reader_names(model) -> list[str]:
    """Every reader of the hand forward: each head's q, k and v, each MLP, the logits."""
    cfg = model.cfg
    heads = [f"L{layer}H{h}.{n}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads) for n in "qkv"]
    return heads + ([] if cfg.attn_only else [f"L{layer}.mlp" for layer in range(cfg.n_layers)]) + ["logits"]


def writers_before(model, reader: str) -> list[str]:
    cfg = model.cfg
    layer = cfg.n_layers if reader == "logits" else int(reader[1:].split("H")[0].split(".")[0])
    out = ["input"]
    for x in range(layer + (reader.endswith(".mlp"))):
        out += [f"L{x}H{h}" for h in range(cfg.n_heads)]
        out += [] if cfg.attn_only or (x == layer and reader.endswith(".mlp")) else [f"L{x}.mlp"]
    return out


def eap_name(node: str) -> str:
    """The hand forward's node name (`L1H2`, `L1.mlp`) as EAP-IG writes it (`a1.h2`, `m1`)."""
    if node in ("input", "logits"):
        return node
    if node.endswith(".mlp"):
        return f"m{node[1:-4]}"
    layer, head = node[1:].split("H")
    return f"a{layer}.h{head}"


def knocked_outside(model, kept: list[str]) -> dict:
    """reader -> the writers whose edges into it the circuit `kept` (EAP-IG names) lacks."""
    nodes = {w for r in reader_names(model) for w in writers_before(model, r)} | {"logits"}
    name = {eap_name(n): n for n in nodes}.__getitem__

    pairs = set()
    for e in kept:
        w, r = e.split("->")
        r, _, inp = r.partition("<")
        pairs.add((name(w), name(r) + (f".{inp[0]}" if inp else "")))
    return {r: [w for w in writers_before(model, r) if (w, r) not in pairs] for r in reader_names(model)}


def test_a_named_edge_circuit_from_an_eap_file_gives_the_hand_runs(setup):
    """faithfulness of an EAP-IG file's in-graph edges, under mean ablation and patching: C keeps the 7
    edges, ∅ knocks out every edge (each reader reads every writer's replacement), M is the model."""
    write, model = setup
    path = write(f"""\
        - id: f
          says: the file's circuit recovers the log-probability
          circuit: {{name: eap, ablation: [mean, patch], source: {SOURCE}}}
          measure: logprob
          expect: {{faithfulness: {{at_least: -100}}}}
        """, extra="circuits:\n  eap: {file: circuit.json}\n")
    got, ps = named_runs(path)
    tokens = torch.as_tensor(ps.tokens)
    _, corrupt = hand(model, torch.as_tensor(P.repeated_tokens(n=24, seed=9, length=6).tokens))
    clean = logprob(hand(model, tokens)[0], ps)
    everything = {r: writers_before(model, r) for r in reader_names(model)}
    for case, replace in zip(got["f"], (means(model, reference_tokens(path), tokens), corrupt)):
        want = {"circuit": logprob(hand(model, tokens, knocked_edge_reader(knocked_outside(model, IN_GRAPH),
                                                                           replace))[0], ps),
                "empty": logprob(hand(model, tokens, knocked_edge_reader(everything, replace))[0], ps),
                "full": clean}
        assert not np.allclose(want["circuit"], want["empty"], atol=1e-3)
        assert not np.allclose(want["circuit"], clean, atol=1e-3)
        for name, w in want.items():
            np.testing.assert_allclose(case[name], w, atol=2e-4, err_msg=name)


def test_a_named_node_circuit_with_neurons_and_the_input(hyp_mlp, tiny_mlp_model, tmp_path):
    """Node level, `scope: [heads, mlps, input]`: outside the circuit every head, MLP 0, the other
    neurons of MLP 1 and the embeddings read their mean; ∅ knocks out all of them; completeness's
    C∖K drops the named neurons."""
    path = hyp_mlp("""\
        - id: c
          says: the heads and neurons are complete
          circuit: {name: mine, scope: [heads, mlps, input], knock: {classes: {neurons: [L1N3, L1N7]}}}
          measure: logprob
          expect: {completeness: {at_most: 100}}
        """, prompts=PROMPTS, extra="circuits:\n  mine: {nodes: [L0H1, L1H0, L1N3, L1N7]}\n")
    got, ps = named_runs(path)
    (runs,) = got["c"]
    tokens = torch.as_tensor(ps.tokens)
    _, clean = manual.forward_mlp(tiny_mlp_model, tokens)
    _, reference = manual.forward_mlp(tiny_mlp_model, reference_tokens(path))
    mean = {k: v.mean(0, keepdim=True) for k, v in reference.items()}

    def run(heads: dict, mlp0: bool, neurons: list[int] | None, embed_too: bool, knock_model=False):
        """heads {layer: [knocked]}, MLP 0 knocked or not, MLP 1's knocked neurons (None: all)."""
        def edit(name, x):
            if name == "resid_pre0" and embed_too:  # the input is the whole residual before layer 0
                return mean[name].expand_as(x)
            if name[0] == "z" and int(name[1:]) in heads:
                x = x.clone()
                x[:, :, heads[int(name[1:])]] = mean[name][:, :, heads[int(name[1:])]].expand(x.shape[0], -1, -1, -1)
            if name == "mlp_out0" and mlp0:
                return mean[name].expand_as(x)
            if name == "post1" and neurons:
                x = x.clone()
                x[:, :, neurons] = mean[name][:, :, neurons].expand(x.shape[0], -1, -1)
            return x

        return logprob(manual.forward_mlp(tiny_mlp_model, tokens, edit)[0], ps)

    others = [i for i in range(48) if i not in (3, 7)]
    want = {"empty": run({0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}, True, list(range(48)), True),
            "circuit-K:neurons": run({0: [0, 2, 3], 1: [1, 2, 3]}, True, list(range(48)), True),
            "model-K:neurons": run({}, False, [3, 7], False),
            "full": logprob(manual.forward_mlp(tiny_mlp_model, tokens)[0], ps)}
    circuit = run({0: [0, 2, 3], 1: [1, 2, 3]}, True, others, True)
    assert not np.allclose(circuit, want["circuit-K:neurons"], atol=1e-3)  # the neurons matter here
    assert sorted(runs) == sorted(want)
    for name, w in want.items():
        np.testing.assert_allclose(runs[name], w, atol=2e-4, err_msg=name)
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    np.testing.assert_allclose(session.run_values.values(loaded, loaded.claims[0].claim, loaded.claims[0].cases[0])[0],
                               circuit, atol=2e-4)


def test_versus_names_a_circuit_of_the_file(setup):
    write, model = setup
    path = write("""\
        - id: v
          says: the file's circuit against the full model
          under: {keep_circuit: {circuit: eap, method: zero}}
          measure: logprob
          versus: {under: {keep_circuit: {circuit: eap, method: mean}}}
          expect: record
        """, extra="circuits:\n  eap: {file: circuit.json}\n")
    loaded = H.load(path)
    case = loaded.claims[0].cases[0]
    (iv,) = case.versus_under
    assert sorted(iv.body.circuit.edges) == sorted(e for e in iv.body.circuit.edges)  # written out, not a name
    assert iv.body.circuit.name == "eap" and len(iv.body.circuit.edges) == len(IN_GRAPH)


BAD = [
    ("circuit: {name: ioi}", "circuits:\n  eap: {file: circuit.json}\n", "claims[0].circuit.name",
     "no circuit named 'ioi'", "the file's circuits: eap"),
    ("circuit: {edges: ['L0H1 -> L5H0.q']}", "", "claims[0].circuit.edges", "layer 5", "numbered 0..1"),
    ("circuit: {nodes: [L1N99]}", "", "claims[0].circuit.nodes", "L1N99", "0..47"),
    ("circuit: {nodes: [logits]}", "", "claims[0].circuit.nodes", "no head, MLP layer or neuron", "name the nodes"),
    ("circuit: {name: eap, ablation: patch}", "circuits:\n  eap: {file: circuit.json}\n", "claims[0].circuit",
     "`source:`", ""),
    ("circuit: {edges: ['L0H1 -> L1H2.q'], scope: [heads]}", "", "claims[0].circuit", "at edge level", ""),
    ("under: {keep_circuit: {circuit: eap, method: zero}}\n  versus: {under: {keep_circuit: {circuit: epa}}}",
     "circuits:\n  eap: {file: circuit.json}\n", "claims[0].versus.under[0].keep_circuit.circuit",
     "no circuit named 'epa'", "did you mean 'eap'"),
]


@pytest.mark.parametrize("circuit, extra, field, message, hint", BAD, ids=[b[2] + ":" + b[3][:12] for b in BAD])
def test_bad_circuit_claims_are_collection_errors(hyp_mlp, tiny_mlp_model, tmp_path, circuit, extra, field, message,
                                                  hint):
    eap_file(tmp_path, tiny_mlp_model.cfg)
    path = hyp_mlp(f"- id: bad\n  says: x\n  {circuit}\n  measure: logprob\n  expect: record\n", prompts=PROMPTS,
                   extra=extra)
    with pytest.raises(H.HypothesisError) as info:
        H.load(path)
    err = info.value
    assert err.field == field and message in err.message and hint in err.hint, (err.field, err.message, err.hint)
    assert err.line is not None and field.rsplit(".", 1)[-1] in path.read_text().splitlines()[err.line - 1]


def test_a_text_source_of_patching_tokenises_in_every_run_of_a_circuit_claim(tmp_path):
    """`ablation: patch` with a `text` source: each of the claim's runs (C, ∅, ...) patches from prompts
    tokenised as the claim's are (the runs besides C were left without a tokenizer: a collection error)."""
    template = "When {IO} and {S} went to the store, {S} gave a drink to"
    path = tmp_path / "p.hyp.yaml"
    path.write_text(f"""\
model: zoo:ioi
prompts: {{generator: text, template: "{template}", slots: {{IO: [Mary, Tom], S: [John, Anna]}},
          answer: IO, counterfactual: S, n: 4, seed: 0}}
claims:
  - id: p
    says: L2H0 alone recovers IO - S with the rest patched from ABC prompts
    circuit: {{nodes: [L2H0], ablation: patch,
              source: {{generator: text, template: "{template.replace('{S} gave', '{C} gave')}",
                       slots: {{IO: [Mary, Tom], S: [John, Anna], C: [Kate, Paul]}}, answer: IO, n: 4, seed: 1}}}}
    measure: logit_diff
    expect: {{faithfulness: {{at_least: 0.5}}}}
""")
    case = H.load(path).claims[0].cases[0]
    names = [name for name, _ in case.runs]
    assert {"circuit", "empty"} <= set(names)
    for name, under in case.runs:
        for iv in under:
            assert iv.body.source.model_extra.get("tokenizer"), name
