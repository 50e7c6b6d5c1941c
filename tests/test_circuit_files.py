"""Circuits named in a hypothesis file: read from inline lists or graph files (EAP-IG JSON in the
MIB layout, a .pt of it, other tools' names), checked against the model at collection, with the
file, line and field of every mistake, before any model runs."""
from __future__ import annotations

import json

import pytest

from circuitcheck.files import loader as H

CLAIM = """\
- id: c
  says: keep the circuit
  under: {keep_circuit: {circuit: CIRCUIT, method: mean}}
  measure: logprob
  expect: record
"""
PROMPTS = "{generator: repeated_tokens, n: 12, seed: 1, length: 6}"


def graph(n_layers=2, n_heads=4, edges=None) -> dict:
    edges = edges or {"input->a0.h1<v>": {"score": 0.3, "in_graph": True},
                      "a0.h1->a1.h2<q>": {"score": -0.8, "in_graph": True},
                      "a1.h2->logits": {"score": 0.7, "in_graph": True},
                      "a0.h3->logits": {"score": 0.1, "in_graph": False}}
    return {"cfg": {"n_layers": n_layers, "n_heads": n_heads}, "nodes": {}, "edges": edges}


def write(hyp, tmp_path, circuits: str, name="c", data=None, file="g.json"):
    if data is not None:
        (tmp_path / file).write_text(json.dumps(data, indent=1))
    return hyp(CLAIM.replace("CIRCUIT", name), prompts=PROMPTS, extra="circuits:\n" + circuits)


def test_an_eap_graph_is_read_in_graph_and_by_top(hyp, tmp_path):
    loaded = H.load(write(hyp, tmp_path, "  c: {file: g.json}\n  t: {file: g.json, take: {top: 2}}\n", data=graph()))
    assert loaded.circuits["c"].names() == ["input -> L0H1.v", "L0H1 -> L1H2.q", "L1H2 -> logits"]
    assert loaded.circuits["t"].names() == ["L0H1 -> L1H2.q", "L1H2 -> logits"]
    body = loaded.claims[0].cases[0].under[0].body
    assert body.circuit.name == "c" and body.circuit.edges == loaded.circuits["c"].names()


def test_a_pt_graph_is_read_with_weights_only(hyp, tmp_path):
    import torch

    torch.save(graph(), tmp_path / "g.pt")
    loaded = H.load(write(hyp, tmp_path, "  c: {file: g.pt}\n"))
    assert loaded.circuits["c"].size == 3


@pytest.mark.parametrize("circuits, data, line, words", [
    ("  c: {nodes: [L0H1, L2H0]}\n", None, 5, "2 layers"),
    ("  c: {nodes: [L0H1, L0H9]}\n", None, 5, "4 heads"),
    ("  c: {nodes: [L0H1, L1.mlp]}\n", None, 5, "no MLPs"),
    ("  c: {nodes: [L0H1, L0X1]}\n", None, 5, "not a node"),
    ("  c: {edges: ['L1H0 -> L0H1.q']}\n", None, 5, "does not come before"),
    ("  c: {file: ../g.json}\n", None, 5, "outside"),
    ("  c: {file: missing.json}\n", None, 5, "does not exist"),
    ("  c: {nodes: [L0H1]}\n", None, 9, "no circuit named 'd'"),
])
def test_mistakes_are_collection_errors_with_the_line(hyp, tmp_path, circuits, data, line, words):
    path = write(hyp, tmp_path, circuits, name="d" if "'d'" in words else "c", data=data)
    with pytest.raises(H.HypothesisError) as e:
        H.load(path)
    assert words in str(e.value) and e.value.line == line and e.value.path == path, str(e.value)


def test_a_bad_edge_in_the_graph_file_points_at_its_line(hyp, tmp_path):
    data = graph(edges={"input->a0.h1<v>": {"in_graph": True}, "a1.h1->a0.h2<q>": {"in_graph": True}})
    path = write(hyp, tmp_path, "  c: {file: g.json}\n", data=data)
    with pytest.raises(H.HypothesisError) as e:
        H.load(path)
    text = (tmp_path / "g.json").read_text().splitlines()
    assert e.value.path == tmp_path / "g.json" and "a1.h1->a0.h2<q>" in text[e.value.line - 1]
    assert f"{path.name}, line 5" in str(e.value)


def test_a_graph_of_another_model_points_at_its_cfg(hyp, tmp_path):
    path = write(hyp, tmp_path, "  c: {file: g.json}\n", data=graph(n_heads=8))
    with pytest.raises(H.HypothesisError) as e:
        H.load(path)
    text = (tmp_path / "g.json").read_text().splitlines()
    assert e.value.path == tmp_path / "g.json" and '"n_heads": 8' in text[e.value.line - 1]
    assert "n_heads=8, the model 4" in str(e.value) and f"{path.name}, line 5" in str(e.value)


def test_a_close_name_is_suggested(hyp, tmp_path):
    with pytest.raises(H.HypothesisError, match="did you mean 'ioi'"):
        H.load(hyp(CLAIM.replace("CIRCUIT", "iio"), prompts=PROMPTS, extra="circuits:\n  ioi: {nodes: [L0H1]}\n"))


@pytest.mark.parametrize("under, words", [
    ("{keep_circuit: {circuit: c, method: patch}}", "`method: patch` takes its values from `source:`"),
    ("{keep_circuit: {circuit: c, method: zero, mean_over: 'tok[1] == 3'}}", "goes with `method: mean`"),
    ("{knock_out: {nodes: [L0H1], circuit: c}}", "one of them"),
    ("{path_patch: {senders: [L1H0], receivers: [L0H2.q], source: {generator: repeated_tokens}}}",
     "does not come before"),
    ("{path_patch: {senders: [L0H0], receivers: [L1H2.x], source: {generator: repeated_tokens}}}", "receiver 0"),
    ("{path_patch: {senders: [L0H0], receivers: [L1.mlp], source: {generator: repeated_tokens}}}", "no MLPs"),
    ("{knock_out: {nodes: [L0H0, L3H1]}}", "2 layers"),
])
def test_bad_intervention_bodies(hyp, under, words):
    text = CLAIM.replace("{keep_circuit: {circuit: CIRCUIT, method: mean}}", under)
    with pytest.raises(H.HypothesisError, match=words.replace("[", r"\[").replace("`", "`")):
        H.load(hyp(text, prompts=PROMPTS, extra="circuits:\n  c: {nodes: [L0H1]}\n"))
