"""The EAP-IG graph JSON, as EAP-IG, MIB circuit-track submissions and CircuitKit write it:

    {"cfg": {"n_layers": 3, "n_heads": 4, ...},
     "nodes": {"input": {"in_graph": true, "score": null}, "a1.h0": {...}, "m2": {...}, "logits": {...}},
     "edges": {"a0.h1->a2.h0<q>": {"score": 0.31, "in_graph": true}, "m1->logits": {...},
               "input->a1.h2<v>": {...}}}

Nodes are `input`, `a{layer}.h{head}`, `m{layer}`, `logits`; an edge is `WRITER->READER`, a head
reader with `<q>`, `<k>` or `<v>`. A circuit is taken as the edges marked `in_graph` (or, where the
file marks none, the nodes), or as the top edges by |score| (`take: {top: K}` / `{top_fraction: F}`).
Reading parses text and never runs code; a `.pt` file is unpickled with `weights_only=True`.
"""
from __future__ import annotations

import json
import math
import re

from .graph import INPUT, LOGITS, Circuit, CircuitError, Edge, Node, Shape, check_edge

EAP_NODE = re.compile(r"^(?:a(\d+)\.h(\d+)|m(\d+)|input|logits)$")
EAP_EDGE = re.compile(r"^([^<>-]+)->([^<>-]+?)(?:<([qkv])>)?$")


def node(text: str) -> Node:
    m = EAP_NODE.match(text.strip())
    if m is None:
        raise CircuitError(f"{text!r} is not an EAP-IG node", "nodes are input, a<layer>.h<head>, m<layer>, logits")
    if m[1] is not None:
        return Node("head", int(m[1]), int(m[2]))
    if m[3] is not None:
        return Node("mlp", int(m[3]))
    return INPUT if text.strip() == "input" else LOGITS


def node_name(n: Node) -> str:
    if n.kind == "head":
        return f"a{n.layer}.h{n.index}"
    if n.kind == "mlp":
        return f"m{n.layer}"
    if n.kind == "neuron":
        raise CircuitError(f"{n}: the EAP-IG graph has no neurons", "export a circuit of heads and MLPs")
    return n.kind


def edge(text: str) -> Edge:
    m = EAP_EDGE.match(text.replace(" ", ""))
    if m is None:
        raise CircuitError(f"{text!r} is not an EAP-IG edge", "edges are WRITER->READER, e.g. a0.h1->a2.h0<q>")
    reader = node(m[2])
    if (reader.kind == "head") != (m[3] is not None):
        raise CircuitError(f"{text!r}: a head reader takes <q>, <k> or <v>, and only a head does")
    try:
        return check_edge(Edge(node(m[1]), reader, m[3]))
    except CircuitError as exc:  # name the edge as the file writes it, so its line can be found
        raise CircuitError(f"{text!r}: {exc}", exc.hint) from None


def edge_name(e: Edge) -> str:
    return f"{node_name(e.writer)}->{node_name(e.reader)}" + (f"<{e.input}>" if e.input else "")


def loads(data) -> tuple[dict, Circuit]:
    """(cfg, the whole scored graph as a Circuit with `in_graph` edges or nodes marked) from parsed JSON.

    The returned circuit holds every edge of the file, with its score; `in_graph(graph)` is the set
    the file marks."""
    if not isinstance(data, dict) or not isinstance(data.get("edges", {}), dict) or "nodes" not in data \
            and "edges" not in data:
        raise CircuitError("an EAP-IG graph is a mapping with cfg, nodes and edges",
                           'write {"cfg": {"n_layers": .., "n_heads": ..}, "nodes": {..}, "edges": {..}}')
    cfg = data.get("cfg") or {}
    if not isinstance(cfg, dict):
        raise CircuitError("`cfg` of the graph is not a mapping")
    return cfg, Graph.parse(data)


class Graph:
    """Every node and edge of a graph file, each with its score and whether it is in the graph."""

    def __init__(self, nodes: dict, edges: dict):
        self.nodes, self.edges = nodes, edges  # Node/Edge -> (score or None, in_graph)

    @staticmethod
    def parse(data: dict) -> "Graph":
        nodes = {node(k): _entry(k, v) for k, v in (data.get("nodes") or {}).items()}
        edges = {edge(k): _entry(k, v) for k, v in (data.get("edges") or {}).items()}
        return Graph(nodes, edges)

    def in_graph(self) -> Circuit:
        """The edges marked in_graph; a file that marks no edge gives its in_graph nodes."""
        chosen = [e for e, (_, inside) in self.edges.items() if inside]
        if chosen or not self.nodes:
            return Circuit.of(edges=chosen, scores=self.edge_scores())
        return Circuit.of(nodes=[n for n, (_, inside) in self.nodes.items() if inside],
                          scores={n: s for n, (s, _) in self.nodes.items() if s is not None})

    def edge_scores(self) -> dict:
        return {e: s for e, (s, _) in self.edges.items() if s is not None}

    def top(self, k: int | None = None, fraction: float | None = None) -> Circuit:
        scores = self.edge_scores()
        if not scores:
            raise CircuitError("`top` ranks edges by score, and no edge of this graph has a score",
                               "take: in_graph")
        return Circuit(frozenset(), frozenset(), tuple(scores.items())).top(k, fraction)


def _entry(name: str, v) -> tuple:
    if isinstance(v, bool):
        return None, v
    if not isinstance(v, dict):
        raise CircuitError(f"{name!r}: expected {{\"score\": .., \"in_graph\": ..}}, got {v!r}")
    score = v.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)):
        raise CircuitError(f"{name!r}: score {score!r} is not a finite number")
    inside = v.get("in_graph", False)
    if not isinstance(inside, bool):
        raise CircuitError(f"{name!r}: in_graph {inside!r} is not true or false")
    return (None if score is None else float(score)), inside


def check_cfg(cfg: dict, shape: Shape) -> None:
    """CircuitError if the graph's config names other layers or heads than the model's."""
    for key, have in (("n_layers", shape.n_layers), ("n_heads", shape.n_heads)):
        if key in cfg and cfg[key] != have:
            raise CircuitError(f"the graph's cfg has {key}={cfg[key]!r}, the model {have}",
                               "this graph was found on another model: check the file and the model")


def dumps(circuit: Circuit, shape: Shape, scores: dict | None = None) -> str:
    """The EAP-IG JSON of `circuit` over every node and edge of `shape` (in_graph where the circuit has
    it; scores where known, else null)."""
    scores = {**circuit.score_of(), **(scores or {})}
    edges = circuit.edges if circuit.edges is not None else \
        frozenset(e for e in shape.edges() if e.writer in circuit.nodes and e.reader in circuit.nodes)
    nodes = {node_name(n): {"score": scores.get(n), "in_graph": n in circuit.nodes} for n in shape.nodes()}
    out = {"cfg": {"n_layers": shape.n_layers, "n_heads": shape.n_heads, "parallel_attn_mlp": False},
           "nodes": nodes,
           "edges": {edge_name(e): {"score": scores.get(e), "in_graph": e in edges} for e in shape.edges()}}
    return json.dumps(out, indent=1)


def read_pt(path) -> dict:
    """A graph saved with torch.save (a dict of the same layout), unpickled with weights_only=True."""
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    return _plain(data)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and getattr(x, "numel", lambda: 0)() == 1:
        return x.item()
    return x
