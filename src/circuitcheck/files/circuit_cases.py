"""A claim about a circuit as a whole (`circuit:`), expanded into the runs each judged quantity
reads. Every run keeps a circuit (`keep_circuit`: every node or edge outside it knocked out) or
knocks a node set out of the full model (`knock_out`), built by circuit_files.keep/knock_out with no
name, so that a run two quantities share (the full model, everything knocked out, the circuit alone)
has one key and is computed once however many claims, knocked-out sets K or ablations read it
(runs/plan.py).

Run names say what a run is, for the judge (judge/circuit.py):
    full            the model M (no intervention)        empty        everything knocked out (∅)
    circuit         the circuit C (every node or edge outside it knocked out)
    model-K:NAME    M without K          circuit-K:NAME    C without K
    circuit-Kv:NAME C without K and v (minimality; the case is one node v)
    random:J        the J-th random circuit of C's make-up
"""
from __future__ import annotations

import math

import numpy as np

from ..circuits import Circuit, CircuitError, Edge, Node, Shape
from . import circuit_files

UNIT_KINDS = ("head", "mlp", "neuron")  # what K can knock out; the input and the logits are never in K
KIND_CODE = {"head": 0, "mlp": 1, "neuron": 2}  # seeds minimality's draws per node


def shape_of(n_layers, n_heads, d_mlp, attn_only: bool) -> Shape:
    if n_layers is None or n_heads is None:
        raise CircuitError("a circuit claim needs the model's layers and heads, which are known for zoo, native "
                           "and local hf: models only", "name the model by a zoo name, a native config or a folder")
    return Shape(n_layers, n_heads, mlps=not attn_only, d_mlp=d_mlp)


def circuit_of(spec, circuits: dict, shape: Shape) -> Circuit:
    """The claim's circuit: a `circuits:` entry (read and checked when the file was), or written inline
    and checked here. A CircuitError carries `field`, the key of `circuit:` it is about."""
    try:
        if spec.name is not None:
            if spec.name not in circuits:
                known = ", ".join(circuits) or "none: add a `circuits:` section"
                raise CircuitError(f"no circuit named {spec.name!r}", f"the file's circuits: {known}")
            circuit = circuits[spec.name]
        else:
            circuit = Circuit.of(nodes=spec.nodes or (), edges=spec.edges)
            circuit.check(shape)
        if not inside(circuit) and spec.budgets is None:  # budgets take the top edges of the scores instead
            raise CircuitError("the circuit has no head, MLP layer or neuron", "name the nodes or edges it keeps")
    except CircuitError as exc:
        exc.field = (spec.given,)
        raise
    return circuit


def inside(circuit: Circuit) -> frozenset:
    """The circuit's nodes a knocked-out set K may hold: heads, MLP layers, neurons."""
    return frozenset(n for n in circuit.nodes if n.kind in UNIT_KINDS)


class Runs:
    """The interventions of one ablation: keep a circuit, or knock nodes out of the full model."""

    def __init__(self, spec, circuit: Circuit, method: str):
        self.level = spec.level or circuit.level
        self.scope = (spec.scope or ["heads", "mlps"]) if self.level == "nodes" else None
        self.method, self.source = method, spec.source if method == "patch" else None
        self.empty = Circuit.of(nodes=()) if self.level == "nodes" else Circuit.of(edges=())

    def keep(self, circuit: Circuit) -> tuple:
        return (circuit_files.keep(circuit, self.method, level=self.level, scope=self.scope, source=self.source),)

    def knock(self, nodes) -> tuple:
        return (circuit_files.knock_out(sorted(nodes), self.method, source=self.source),)


def family(spec, inside: frozenset) -> list[tuple[str, frozenset]]:
    """The knocked-out sets K of completeness: each class (or named group), then seeded random subsets."""
    out = groups(spec, inside)
    rng = np.random.default_rng(spec.knock.seed)
    order = sorted(inside)
    size = min(spec.knock.size or max(1, len(order) // 2), len(order))
    for j in range(spec.knock.random):
        out.append((f"random{j + 1}", frozenset(order[i] for i in rng.choice(len(order), size, replace=False))))
    return dedupe(out)


def groups(spec, inside: frozenset) -> list[tuple[str, frozenset]]:
    classes = spec.knock.classes
    if classes is False:
        return []
    if classes is True:
        return [(name, frozenset(ns)) for name, ns in Circuit(inside).classes().items()]
    out = []
    for name, names in classes.items():
        group = Circuit.of(nodes=names).nodes
        stray = sorted(str(n) for n in group - inside)
        if stray:
            raise CircuitError(f"knock.classes.{name}: {', '.join(stray)} is not in the circuit",
                               "a group names nodes of the circuit")
        out.append((name, frozenset(group)))
    return out


def minimality_family(spec, inside: frozenset, v: Node) -> list[tuple[str, frozenset]]:
    """The sets K tried for node v: none, v's group without v, seeded random subsets of the rest."""
    rest = sorted(inside - {v})
    out = [("none", frozenset())]
    out += [(f"{name}-{v}", g - {v}) for name, g in groups(spec, inside) if v in g and g - {v}]
    rng = np.random.default_rng([spec.knock.seed, v.layer, max(v.index, 0), KIND_CODE[v.kind]])  # ≥ 0 each
    size = min(spec.knock.size or max(1, len(inside) // 2), len(rest))
    for j in range(spec.knock.random if rest else 0):
        out.append((f"random{j + 1}", frozenset(rest[i] for i in rng.choice(len(rest), size, replace=False))))
    return dedupe(out)


def dedupe(named: list) -> list:
    seen, out = set(), []
    for name, k in named:
        if k not in seen:
            seen.add(k)
            out.append((name, k))
    return out


def expand(spec, form: str | None, shape: Shape, circuits: dict,
           greedy: dict | None = None) -> list[tuple[str, tuple, tuple]]:
    """(label, the circuit's own run, named runs) of each case of a circuit claim: one per ablation,
    times one per K (completeness) or per node v (minimality). `greedy` (ablation -> the sets K of
    each greedy step, chosen on held-out prompts: files/greedy.py) adds completeness's greedy cases;
    without it (at collection) they are left out."""
    circuit = circuit_of(spec, circuits, shape)
    out = []
    for method in spec.ablations:
        runs = Runs(spec, circuit, method)
        tag = f"{method}:" if len(spec.ablations) > 1 else ""
        keep = runs.keep(circuit)
        steps = (greedy or {}).get(method, [])
        out += [(f"{tag}{label}" if label else tag.rstrip(":"), keep, named)
                for label, named in _cases(spec, form, shape, circuit, runs, keep, steps)]
    return out


def completeness_cases(circuit: Circuit, runs: Runs, named_sets: list) -> list[tuple[str, tuple]]:
    """(label, named runs) of completeness for each (name, K): C∖K and M∖K beside M and ∅."""
    empty, base = ("empty", runs.keep(runs.empty)), (("full", ()),)
    return [(f"K={name}", (empty,) + base + ((f"circuit-K:{name}", runs.keep(circuit.minus(K))),
                                             (f"model-K:{name}", runs.knock(K))))
            for name, K in named_sets]


def _cases(spec, form, shape, circuit: Circuit, runs: Runs, keep: tuple, greedy=()) -> list[tuple[str, tuple]]:
    """(label, named runs) of one ablation's cases."""
    empty, base = ("empty", runs.keep(runs.empty)), (("full", ()),)
    if form is None:
        return [("", ())]
    if form == "faithfulness":
        return [("", (("circuit", keep), empty) + base)]
    if form == "completeness":  # a greedy step's K keeps its own case even where a class has the same nodes
        steps = [(f"greedy{t + 1}", frozenset(K)) for t, K in enumerate(greedy)]
        return completeness_cases(circuit, runs, family(spec, inside(circuit)) + steps)
    if form == "minimality":
        return [(str(v), (empty,) + tuple(r for name, K in minimality_family(spec, inside(circuit), v) for r in (
            (f"circuit-K:{name}", runs.keep(circuit.minus(K))), (f"circuit-Kv:{name}", runs.keep(circuit.minus(K | {v})))
        ))) for v in sorted(inside(circuit))]
    if form in ("cpr", "cmd"):
        total = len(shape.edges())
        return [("", (empty,) + base + tuple((f"budget:{k}:{total}", runs.keep(c))
                                             for k, c in budgeted(spec, circuit, total)))]
    draws = [circuit.random_like(shape, seed=spec.random.seed * 100_003 + j) for j in range(spec.random.draws)]
    return [("", (("circuit", keep),) + tuple((f"random:{j + 1}", runs.keep(r)) for j, r in enumerate(draws)))]


def budgeted(spec, circuit: Circuit, total: int) -> list[tuple[int, Circuit]]:
    """(edges kept, the circuit of the top edges by |score|) at each budget of `spec.budgets`: a count,
    or floor(share × the model's `total` edges) as MIB counts them."""
    scores = circuit.score_of()
    try:
        if not scores or not all(isinstance(x, Edge) for x in scores):
            raise CircuitError("`budgets` keep a circuit's top edges by |score|, and this circuit has no edge scores",
                               "name a scored graph file (EAP-IG JSON with a score per edge) under `circuits:`")
        ks = spec.budgets.top or [math.floor(f * total) for f in spec.budgets.fractions]
        if max(ks) > len(scores):
            raise CircuitError(f"a budget of {max(ks)} edges is more than the {len(scores)} edges the file scores",
                               "budgets go up to the number of scored edges (MIB's files score every edge)")
    except CircuitError as exc:
        exc.field = (spec.given,)
        raise
    return [(k, circuit.top(k)) for k in sorted(set(ks))]
