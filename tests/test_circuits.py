"""Circuits as values: names parsed, edges checked against the forward order, set operations, top-k
by score, seeded random circuits of the same make-up, and the EAP-IG graph JSON both ways."""
from __future__ import annotations

import json

import pytest

from circuitcheck.circuits import Circuit, CircuitError, Edge, Node, Shape, parse_edge, parse_node
from circuitcheck.circuits import eap

SHAPE = Shape(n_layers=3, n_heads=4, mlps=True, d_mlp=16)


@pytest.mark.parametrize("text, node", [
    ("L1H0", Node("head", 1, 0)), ("L2.mlp", Node("mlp", 2)), ("mlp2", Node("mlp", 2)),
    ("L2N14", Node("neuron", 2, 14)), ("input", Node("input")), ("embed", Node("input")), ("logits", Node("logits"))])
def test_node_names(text, node):
    assert parse_node(text) == node


@pytest.mark.parametrize("bad", ["L1X0", "mlp", "head", "L1.attn", ""])
def test_bad_node_names_say_what_to_write(bad):
    with pytest.raises(CircuitError) as e:
        parse_node(bad)
    assert "L1H0" in e.value.hint


def test_edges_and_their_inputs():
    assert parse_edge("L0H1 -> L2H0.q") == [Edge(Node("head", 0, 1), Node("head", 2, 0), "q")]
    assert [e.input for e in parse_edge("input -> L1H2")] == ["q", "k", "v"]
    assert parse_edge("L1.mlp -> logits") == [Edge(Node("mlp", 1), Node("logits"))]
    assert parse_edge("L1H0 -> L1.mlp")[0].reader == Node("mlp", 1)  # an MLP reads its own layer's heads


@pytest.mark.parametrize("bad", ["L2H0 -> L1H0.q", "L1H0 -> L1H2.k", "L1.mlp -> L1H0.q", "logits -> L1H0.q",
                                 "L0H0 -> input", "L0H0 -> L1.mlp.q", "L0H0 L1H0"])
def test_edges_against_the_forward_order(bad):
    with pytest.raises(CircuitError):
        parse_edge(bad)


def test_a_model_has_every_edge_once():
    # hand count: readers are 12 heads x 3 inputs, 3 MLPs, the logits; a head at layer l reads the input,
    # 4l heads and l MLPs; an MLP at l reads the input, 4(l+1) heads, l MLPs; the logits read all 16 writers
    heads = sum(3 * 4 * (1 + 4 * layer + layer) for layer in range(3))
    mlps = sum(1 + 4 * (layer + 1) + layer for layer in range(3))
    edges = SHAPE.edges()
    assert len(edges) == len(set(edges)) == heads + mlps + 16


def test_set_operations_and_size():
    c = Circuit.of(nodes=["input", "L0H1", "L1H0", "L1.mlp", "logits"])
    assert c.size == 3 and c.level == "nodes"
    assert c.minus(["L1H0"]).nodes == Circuit.of(nodes=["input", "L0H1", "L1.mlp", "logits"]).nodes
    assert c.with_(["L2H3"]).size == 4
    assert set(c.classes()) == {"heads", "mlps", "input", "logits"} and len(c.classes()["heads"]) == 2


def test_an_edge_circuit_loses_the_edges_of_a_removed_node():
    c = Circuit.of(edges=["input -> L0H1.v", "L0H1 -> L1H0.q", "L1H0 -> logits"])
    assert c.size == 3 and c.level == "edges"
    less = c.minus(["L0H1"])
    assert less.names() == ["L1H0 -> logits"]
    assert {str(n) for n in less.nodes} == {"L1H0", "logits"}
    more = c.with_(["L0.mlp"], SHAPE)  # gains input -> L0.mlp, L0H1 -> L0.mlp, L0.mlp -> L1H0.q/k/v, -> logits
    assert more.size == 3 + 2 + 3 + 1


def test_top_by_absolute_score_with_ties_by_name():
    scores = {e: s for e, s in zip([parse_edge(t)[0] for t in ("L0H0 -> L1H0.q", "L0H1 -> L1H0.q", "L0H2 -> L1H0.q",
                                                               "L0H3 -> L1H0.q")], [0.5, -0.9, 0.5, 0.1])}
    c = Circuit.of(edges=scores, scores=scores)
    assert c.top(k=1).names() == ["L0H1 -> L1H0.q"]
    assert c.top(k=2).names() == ["L0H0 -> L1H0.q", "L0H1 -> L1H0.q"]  # 0.5 tie: L0H0 before L0H2
    assert c.top(fraction=0.5).size == 2 and c.top(fraction=0.51).size == 3
    with pytest.raises(CircuitError):
        Circuit.of(nodes=["L0H0"]).top(k=1)


def test_random_circuits_keep_the_make_up_and_the_seed():
    c = Circuit.of(nodes=["input", "L0H1", "L1H0", "L2H2", "L1.mlp", "logits"])
    r = c.random_like(SHAPE, seed=3)
    assert r == c.random_like(SHAPE, seed=3) and r != c.random_like(SHAPE, seed=4)
    assert {k: len(v) for k, v in r.classes().items()} == {k: len(v) for k, v in c.classes().items()}
    assert r.random_like(SHAPE, seed=0, size=8).size == 8
    e = Circuit.of(edges=["L0H1 -> L1H0.q", "L0H2 -> L1.mlp", "L2H0 -> logits"])
    re_ = e.random_like(SHAPE, seed=1)
    assert sorted(x.reader.kind for x in re_.edges) == ["head", "logits", "mlp"]
    r.check(SHAPE)


def test_nodes_outside_the_model():
    with pytest.raises(CircuitError, match="3 layers"):
        Circuit.of(nodes=["L3H0"]).check(SHAPE)
    with pytest.raises(CircuitError, match="4 heads"):
        Circuit.of(nodes=["L0H4"]).check(SHAPE)
    with pytest.raises(CircuitError, match="no MLPs"):
        Circuit.of(nodes=["L0.mlp"]).check(Shape(2, 4, mlps=False))


def mib_graph() -> dict:
    """A graph in the MIB / EAP-IG layout, written out by hand for SHAPE."""
    return {"cfg": {"n_layers": 3, "n_heads": 4, "d_model": 64, "parallel_attn_mlp": False},
            "nodes": {"input": {"in_graph": True, "score": None}, "a0.h1": {"in_graph": True, "score": 0.2},
                      "a2.h0": {"in_graph": True, "score": 0.4}, "m1": {"in_graph": True, "score": 0.1},
                      "logits": {"in_graph": True, "score": None}, "a1.h3": {"in_graph": False, "score": 0.0}},
            "edges": {"input->a0.h1<v>": {"score": 0.3, "in_graph": True},
                      "a0.h1->a2.h0<q>": {"score": -0.8, "in_graph": True},
                      "a0.h1->m1": {"score": 0.05, "in_graph": False},
                      "m1->logits": {"score": 0.6, "in_graph": True},
                      "a2.h0->logits": {"score": 0.7, "in_graph": True},
                      "a1.h3->logits": {"score": 0.01, "in_graph": False}}}


def test_eap_graph_in_graph_and_top():
    cfg, g = eap.loads(mib_graph())
    assert cfg["n_layers"] == 3
    assert g.in_graph().names() == ["input -> L0H1.v", "L0H1 -> L2H0.q", "L1.mlp -> logits", "L2H0 -> logits"]
    assert g.top(k=2).names() == ["L0H1 -> L2H0.q", "L2H0 -> logits"]  # |-0.8|, 0.7
    assert g.top(fraction=0.5).size == 3
    eap.check_cfg(cfg, SHAPE)
    with pytest.raises(CircuitError, match="n_heads=4"):
        eap.check_cfg(cfg, Shape(3, 8))


def test_eap_round_trip():
    _, g = eap.loads(mib_graph())
    c = g.in_graph()
    text = eap.dumps(c, SHAPE)
    cfg, back = eap.loads(json.loads(text))
    assert back.in_graph().edges == c.edges
    assert back.edge_scores() == g.edge_scores()
    assert len(json.loads(text)["edges"]) == len(SHAPE.edges())


@pytest.mark.parametrize("bad", [{"edges": {"a0.h1->a2.h0": {"in_graph": True}}},  # head reader without <q>
                                 {"edges": {"a2.h1->a0.h0<q>": {"in_graph": True}}},  # backwards
                                 {"edges": {"a0.h1->m2": {"in_graph": "yes"}}},
                                 {"edges": {"a0.h1->m2": {"score": "0.3"}}},
                                 {"edges": {"x->m2": {}}}, [1, 2]])
def test_bad_graphs(bad):
    with pytest.raises(CircuitError):
        eap.loads(bad)
