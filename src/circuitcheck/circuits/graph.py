"""Nodes, edges and circuits: plain frozen values, no torch, so collection can build and check them.

A node is a unit that writes to or reads from the residual stream: the `input` (token and position
embeddings), a head `L1H0`, an MLP layer `L2.mlp` (also written `mlp2`), one MLP neuron `L2N14`, or
the `logits` (the unembedding's input). An edge is a writer feeding a reader through the residual
stream: `L0H1 -> L2H0.q` (a head's query, key or value input), `L1.mlp -> L2.mlp` (an MLP's input),
`L2H0 -> logits`. A writer comes before its reader in the forward pass: the input first, then in each
layer the heads, then the MLP, and the logits last.

A circuit is a set of nodes, or of edges (whose nodes are their ends), with optional scores (from
the discovery tool that found it). Its `size` is its number of edges, or of nodes besides the input
and logits (IOI's "26 heads").
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..language.names import HEAD, NEURON, parse_head, parse_neuron

KINDS = ("input", "head", "mlp", "neuron", "logits")
CLASSES = {"input": "input", "head": "heads", "mlp": "mlps", "neuron": "neurons", "logits": "logits"}
INPUTS = ("q", "k", "v")  # what of a head an edge can feed
MLP = re.compile(r"^(?:L(\d+)\.mlp|mlp(\d+))$")


class CircuitError(ValueError):
    """A node, edge or circuit that cannot be: `hint` says what to write instead."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, order=True)
class Node:
    kind: str  # input, head, mlp, neuron, logits
    layer: int = -1  # -1 for input and logits
    index: int = -1  # the head or neuron; -1 for the others

    @property
    def name(self) -> str:
        if self.kind == "head":
            return f"L{self.layer}H{self.index}"
        if self.kind == "neuron":
            return f"L{self.layer}N{self.index}"
        if self.kind == "mlp":
            return f"L{self.layer}.mlp"
        return self.kind

    def __str__(self) -> str:
        return self.name

    def order(self, n_layers: int) -> int:
        """Where it acts in the forward pass: the input, then each layer's heads and MLP, the logits."""
        if self.kind == "input":
            return -1
        if self.kind == "logits":
            return 2 * n_layers
        return 2 * self.layer + (0 if self.kind == "head" else 1)


@dataclass(frozen=True, order=True)
class Edge:
    writer: Node
    reader: Node
    input: str | None = None  # q, k or v where the reader is a head

    @property
    def name(self) -> str:
        return f"{self.writer} -> {self.reader}" + (f".{self.input}" if self.input else "")

    def __str__(self) -> str:
        return self.name


INPUT, LOGITS = Node("input"), Node("logits")


def parse_node(text: str) -> Node:
    """`L1H0`, `L2.mlp` or `mlp2`, `L2N14`, `input` (or `embed`), `logits` -> Node; else CircuitError."""
    t = text.strip() if isinstance(text, str) else text
    if not isinstance(t, str):
        raise CircuitError(f"a node is a name, not {t!r}", NODE_HINT)
    if t in ("input", "embed", "embeddings"):
        return INPUT
    if t == "logits":
        return LOGITS
    if HEAD.match(t):
        return Node("head", *parse_head(t))
    if NEURON.match(t):
        return Node("neuron", *parse_neuron(t))
    m = MLP.match(t)
    if m:
        return Node("mlp", int(m[1] or m[2]))
    raise CircuitError(f"{t!r} is not a node", NODE_HINT)


NODE_HINT = "write a head L1H0, an MLP L2.mlp (or mlp2), a neuron L2N14, input, or logits"
EDGE_HINT = ("write WRITER -> READER: `L0H1 -> L2H0.q` (a head's q, k or v input), `L1.mlp -> L2.mlp`, "
             "`input -> L1H2.v`, `L2H0 -> logits`")


def parse_edge(text: str) -> list[Edge]:
    """`L0H1 -> L2H0.q` -> [Edge]; a head reader without .q/.k/.v stands for its three inputs."""
    if not isinstance(text, str) or "->" not in text:
        raise CircuitError(f"{text!r} is not an edge", EDGE_HINT)
    left, right = (s.strip() for s in text.split("->", 1))
    writer = parse_node(left)
    base, dot, part = right.rpartition(".")
    if dot and part in INPUTS:
        reader = parse_node(base)
        if reader.kind != "head":
            raise CircuitError(f"{right!r}: only a head has q, k and v inputs", EDGE_HINT)
        inputs = [part]
    else:
        reader = parse_node(right)
        inputs = list(INPUTS) if reader.kind == "head" else [None]
    return [check_edge(Edge(writer, reader, i)) for i in inputs]


def check_edge(e: Edge) -> Edge:
    """An edge whose writer writes and whose reader reads, writer first (CircuitError otherwise)."""
    if e.writer.kind in ("logits", "neuron"):
        raise CircuitError(f"{e}: {e.writer.kind} {'reads' if e.writer.kind == 'logits' else 'is'} no "
                           "writer of an edge here", "edges run from input, heads and MLPs")
    if e.reader.kind in ("input", "neuron"):
        raise CircuitError(f"{e}: {e.reader} does not read the residual stream as an edge's end",
                           "edges end at a head's q/k/v, an MLP, or the logits")
    if e.writer.order(10 ** 6) >= e.reader.order(10 ** 6):
        raise CircuitError(f"{e}: {e.writer} does not come before {e.reader} in the forward pass",
                           "a head reads the heads and MLPs of earlier layers; an MLP also its own layer's heads")
    return e


@dataclass(frozen=True)
class Shape:
    """What a model has room for: its layers and heads, whether it has MLPs, their width."""

    n_layers: int
    n_heads: int
    mlps: bool = True
    d_mlp: int | None = None

    def nodes(self) -> list[Node]:
        """Every node of the model, neurons aside, in forward order."""
        out = [INPUT]
        for layer in range(self.n_layers):
            out += [Node("head", layer, h) for h in range(self.n_heads)]
            out += [Node("mlp", layer)] if self.mlps else []
        return out + [LOGITS]

    def edges(self) -> list[Edge]:
        """Every edge of the model, in forward order of the reader."""
        nodes = self.nodes()
        out = []
        for r in nodes[1:]:
            for w in nodes[:-1]:
                if w.order(self.n_layers) < r.order(self.n_layers):
                    out += [Edge(w, r, i) for i in (INPUTS if r.kind == "head" else (None,))]
        return out

    def check(self, node: Node) -> None:
        """CircuitError if the model has no such node."""
        if node.layer >= self.n_layers:
            raise CircuitError(f"{node} is in layer {node.layer}, but the model has {self.n_layers} layers",
                               f"layers are numbered 0..{self.n_layers - 1}")
        if node.kind == "head" and node.index >= self.n_heads:
            raise CircuitError(f"{node} does not exist: the model has {self.n_heads} heads per layer",
                               f"heads are numbered 0..{self.n_heads - 1}")
        if node.kind in ("mlp", "neuron") and not self.mlps:
            raise CircuitError(f"{node}: the model has no MLPs (attention only)", "name heads, input and logits")
        if node.kind == "neuron" and self.d_mlp is not None and node.index >= self.d_mlp:
            raise CircuitError(f"{node} does not exist: the MLPs have {self.d_mlp} neurons",
                               f"neurons are numbered 0..{self.d_mlp - 1}")


@dataclass(frozen=True)
class Circuit:
    """A set of nodes, or of edges; `scores` maps a node or edge to the score its finder gave it."""

    nodes: frozenset = frozenset()
    edges: frozenset | None = None  # None: a node circuit
    scores: tuple = field(default=(), compare=False)  # ((Node | Edge, float), ...), hashable

    @staticmethod
    def of(nodes: Iterable = (), edges: Iterable | None = None, scores: dict | None = None) -> "Circuit":
        """From names or Node/Edge values; an edge circuit's nodes are its edges' ends."""
        nodes = {parse_node(n) if isinstance(n, str) else n for n in nodes}
        if edges is not None:
            es = set()
            for e in edges:
                es.update(parse_edge(e) if isinstance(e, str) else [e])
            edges = frozenset(es)
            nodes |= {n for e in es for n in (e.writer, e.reader)}
        return Circuit(frozenset(nodes), edges, tuple(sorted((scores or {}).items(), key=lambda kv: str(kv[0]))))

    @property
    def level(self) -> str:
        return "nodes" if self.edges is None else "edges"

    @property
    def size(self) -> int:
        if self.edges is not None:
            return len(self.edges)
        return sum(n.kind not in ("input", "logits") for n in self.nodes)

    def score_of(self) -> dict:
        return dict(self.scores)

    def names(self) -> list[str]:
        """Its nodes (or edges) by name, in forward order."""
        items = self.nodes if self.edges is None else self.edges
        return [str(x) for x in sorted(items, key=_forward)]

    def classes(self) -> dict[str, frozenset]:
        """Its nodes by class (heads, mlps, neurons, input, logits), for completeness families."""
        out: dict[str, set] = {}
        for n in self.nodes:
            out.setdefault(CLASSES[n.kind], set()).add(n)
        return {k: frozenset(v) for k, v in sorted(out.items())}

    def minus(self, nodes: Iterable) -> "Circuit":
        """The circuit without these nodes (an edge circuit also loses every edge touching them)."""
        drop = {parse_node(n) if isinstance(n, str) else n for n in nodes}
        if self.edges is None:
            return Circuit(self.nodes - drop, None, self.scores)
        edges = frozenset(e for e in self.edges if e.writer not in drop and e.reader not in drop)
        return Circuit(frozenset(n for e in edges for n in (e.writer, e.reader)), edges, self.scores)

    def with_(self, nodes: Iterable, shape: Shape | None = None) -> "Circuit":
        """The circuit with these nodes too; an edge circuit gains every edge of `shape` between them
        and the nodes it has."""
        add = {parse_node(n) if isinstance(n, str) else n for n in nodes}
        if self.edges is None:
            return Circuit(self.nodes | add, None, self.scores)
        if shape is None:
            raise CircuitError("adding nodes to an edge circuit needs the model's shape (which edges exist)")
        keep = self.nodes | add
        new = {e for e in shape.edges() if e.writer in keep and e.reader in keep and (e.writer in add or e.reader in add)}
        return Circuit(keep, self.edges | new, self.scores)

    def top(self, k: int | None = None, fraction: float | None = None) -> "Circuit":
        """The `k` (or `fraction` of the) highest-|score| edges (or nodes) of a scored circuit; ties by name."""
        scores = self.score_of()
        if not scores:
            raise CircuitError("`top` needs scores: this circuit has none", "read a scored graph file")
        ranked = sorted(scores, key=lambda x: (-abs(scores[x]), str(x)))
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise CircuitError(f"top_fraction {fraction} is not in (0, 1]")
            k = math.ceil(fraction * len(ranked))
        if k is None or k < 0:
            raise CircuitError("say how many: top(k=...) or top(fraction=...)")
        chosen = ranked[:k]
        if all(isinstance(x, Edge) for x in chosen):
            return Circuit.of(edges=chosen, scores=scores)
        return Circuit.of(nodes=chosen, scores=scores)

    def random_like(self, shape: Shape, seed: int, size: int | None = None) -> "Circuit":
        """A seeded random circuit of the model with as many nodes of each class (or edges into each
        kind of reader) as this one, or `size` in all (drawn like this one's mix); the input and
        logits stay when this circuit has them."""
        rng = np.random.default_rng(seed)
        if self.edges is not None:
            pool = _by(shape.edges(), lambda e: e.reader.kind)
            mine = _by(self.edges, lambda e: e.reader.kind)
            return Circuit.of(edges=_draw(rng, pool, mine, size))
        if any(n.kind == "neuron" for n in self.nodes) and shape.d_mlp is None:
            raise CircuitError("a random circuit with neurons needs the model's MLP width (d_mlp)")
        every = shape.nodes() + [Node("neuron", layer, i) for layer in range(shape.n_layers)
                                 for i in range(shape.d_mlp or 0)]
        fixed = {n for n in self.nodes if n.kind in ("input", "logits")}
        pool = _by([n for n in every if n.kind not in ("input", "logits")], lambda n: n.kind)
        mine = _by([n for n in self.nodes if n not in fixed], lambda n: n.kind)
        return Circuit.of(nodes=fixed | set(_draw(rng, pool, mine, size)))

    def check(self, shape: Shape) -> None:
        """CircuitError for a node the model lacks."""
        for n in sorted(self.nodes, key=_forward):
            shape.check(n)

    def __str__(self) -> str:
        return f"{self.size} {self.level if self.edges is not None else 'nodes'}: " + ", ".join(self.names()[:8]) + \
            (", ..." if len(self.names()) > 8 else "")


def _forward(x) -> tuple:
    if isinstance(x, Edge):
        return (_forward(x.reader), _forward(x.writer), x.input or "")
    return (x.order(10 ** 6), KINDS.index(x.kind), x.index)


def _by(items, key) -> dict:
    out: dict = {}
    for x in sorted(items, key=_forward):
        out.setdefault(key(x), []).append(x)
    return out


def _draw(rng, pool: dict, mine: dict, size: int | None) -> list:
    """As many of each kind from `pool` as `mine` has (scaled to `size` in all), without replacement."""
    counts = {k: len(v) for k, v in mine.items()}
    if size is not None:
        total = sum(counts.values()) or 1
        counts = _apportion(counts, size, total)
    out = []
    for k, c in counts.items():
        if c > len(pool.get(k, [])):
            raise CircuitError(f"a random circuit needs {c} {k} units, the model has {len(pool.get(k, []))}")
        out += [pool[k][i] for i in rng.choice(len(pool[k]), size=c, replace=False)]
    return out


def _apportion(counts: dict, size: int, total: int) -> dict:
    """`size` split over the kinds in proportion to `counts` (largest remainders; ties by kind)."""
    exact = {k: c * size / total for k, c in counts.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:size - sum(out.values())]:
        out[k] += 1
    return out
