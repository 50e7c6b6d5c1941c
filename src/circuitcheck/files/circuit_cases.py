"""A claim about a circuit as a whole (`circuit:`), expanded into the runs each judged quantity
reads. Every run knocks out a set of nodes with the existing `ablate` intervention (heads at their
output `hook_z`, an MLP layer at `mlp_out`), written in one canonical order, so that a run two
quantities share (the full model, everything knocked out, the circuit alone) has one key and is
computed once however many claims, knocked-out sets K or ablations read it (runs/plan.py).

Run names say what a run is, for the judge (judge/circuit.py):
    full            the model M (no intervention)        empty        every head and MLP knocked out (∅)
    circuit         the circuit C (every node outside it knocked out)
    model-K:NAME    M without K          circuit-K:NAME    C without K
    circuit-Kv:NAME C without K and v (minimality; the case is one node v)
    random:J        the J-th random circuit of C's make-up
"""
from __future__ import annotations

import numpy as np

from ..circuits import Circuit, CircuitError, Node, Shape
from .spec import Intervention

UNIT_KINDS = ("head", "mlp")  # what a run here can knock out; the input and the logits always stay


def shape_of(n_layers, n_heads, d_mlp, attn_only: bool) -> Shape:
    if n_layers is None or n_heads is None:
        raise CircuitError("a circuit claim needs the model's layers and heads, which are known for zoo, native "
                           "and local hf: models only", "name the model by a zoo name, a native config or a folder")
    return Shape(n_layers, n_heads, mlps=not attn_only, d_mlp=d_mlp)


def units(shape: Shape) -> frozenset:
    """Every node a run can knock out: each head and each MLP layer."""
    return frozenset(n for n in shape.nodes() if n.kind in UNIT_KINDS)


def circuit_nodes(spec, shape: Shape) -> frozenset:
    """The circuit's heads and MLP layers, checked against the model (CircuitError otherwise)."""
    circuit = Circuit.of(nodes=spec.nodes)
    circuit.check(shape)
    neurons = sorted(str(n) for n in circuit.nodes if n.kind == "neuron")
    if neurons:
        raise CircuitError(f"{neurons[0]}: a circuit claim here keeps or knocks out heads and whole MLP layers",
                           "name the MLP layer (mlp2) instead of its neurons")
    inside = frozenset(n for n in circuit.nodes if n.kind in UNIT_KINDS)
    if not inside:
        raise CircuitError("the circuit has no head and no MLP layer", "name the heads and MLPs it keeps")
    return inside


def knock_out(nodes, method: str) -> tuple:
    """The interventions that knock out `nodes`: one `ablate` of all the heads, one per MLP layer."""
    heads = sorted(n for n in nodes if n.kind == "head")
    out = [{"ablate": {"heads": [h.name for h in heads], "method": method}}] if heads else []
    out += [{"ablate": {"hook": "mlp_out", "layer": layer, "method": method}}
            for layer in sorted(n.layer for n in nodes if n.kind == "mlp")]
    return tuple(Intervention.model_validate(iv) for iv in out)


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
    rng = np.random.default_rng([spec.knock.seed, v.layer, max(v.index, 0), v.kind == "mlp"])  # ≥ 0 each
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


def expand(spec, form: str | None, shape: Shape) -> list[tuple[str, tuple, tuple]]:
    """(label, the circuit's own run, named runs) of each case of a circuit claim: one per ablation,
    times one per K (completeness) or per node v (minimality)."""
    inside = circuit_nodes(spec, shape)
    every = units(shape)
    outside = every - inside
    out = []
    for method in spec.ablations:
        def k(nodes):
            return knock_out(nodes, method)

        tag = f"{method}:" if len(spec.ablations) > 1 else ""
        keep, base = k(outside), (("empty", k(every)), ("full", ()))
        if form is None:
            out.append((tag.rstrip(":"), keep, ()))
        elif form == "faithfulness":
            out.append((tag.rstrip(":"), keep, (("circuit", keep),) + base))
        elif form == "completeness":
            for name, K in family(spec, inside):
                out.append((f"{tag}K={name}", keep, base + ((f"circuit-K:{name}", k(outside | K)),
                                                           (f"model-K:{name}", k(K)))))
        elif form == "minimality":
            for v in sorted(inside):
                runs = [("empty", k(every))]
                for name, K in minimality_family(spec, inside, v):
                    runs += [(f"circuit-K:{name}", k(outside | K)), (f"circuit-Kv:{name}", k(outside | K | {v}))]
                out.append((f"{tag}{v}", keep, tuple(runs)))
        else:  # beats_random
            draws = [Circuit(inside).random_like(shape, seed=spec.random.seed * 100_003 + j)
                     for j in range(spec.random.draws)]
            runs = (("circuit", keep),) + tuple((f"random:{j + 1}", k(every - r.nodes)) for j, r in enumerate(draws))
            out.append((tag.rstrip(":"), keep, runs))
    return out
