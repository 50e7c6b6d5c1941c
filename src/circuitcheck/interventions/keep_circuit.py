"""`under: {keep_circuit: {circuit, level, scope, method, mean_over, source}}`: keep a circuit and
knock out the rest of the model: every node outside it (`level: nodes`), or every edge outside it
(`level: edges`: each reader's input is the residual stream minus what the knocked-out writers put
there, plus their replacement), replaced by zero, the mean, another prompt's value, or the value on a
corrupted prompt set (`method: patch`, ACDC and EAP style)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..circuits import Circuit
from . import knockout as K
from . import residual as R
from .base import Context, register

Scope = Literal["heads", "mlps", "input"]


class KeepCircuit(K.Replacement):
    circuit: K.CircuitField = Field(description="a circuit named under the file's `circuits:`, or "
                                                "{nodes: [...]} / {edges: [...]} written here")
    level: Literal["nodes", "edges"] | None = Field(
        None, description="nodes: knock out every node outside the circuit; edges: every edge outside it (a node "
        "circuit's edges are those between its nodes). Default: the circuit's own level")
    scope: list[Scope] = Field(["heads", "mlps", "input"], min_length=1, description="with `level: nodes`: which "
                               "nodes outside the circuit are knocked out (IOI's circuit of heads: [heads])")

    @model_validator(mode="after")
    def _scope(self):
        if self.level == "edges" and self.scope != ["heads", "mlps", "input"]:
            raise ValueError("`scope` chooses which nodes are knocked out at `level: nodes`; at `level: edges` "
                             "every edge outside the circuit is")
        return self


def level_of(body, circuit: Circuit) -> str:
    return body.level or circuit.level


@register
class KeepCircuitKind(K.ReplacingKind):
    name = "keep_circuit"
    schema = KeepCircuit

    def hooks(self, body, ctx: Context):
        circuit = K.circuit_of(body.circuit)
        if level_of(body, circuit) == "nodes":
            return K.node_hooks(K.node_targets(K.outside(circuit, ctx.cfg, body.scope), ctx.cfg), body, ctx)
        return edge_hooks(knocked(circuit, ctx.cfg), body, ctx)

    def hooks_read(self, body, cfg) -> set[str]:
        circuit = K.circuit_of(body.circuit)
        if level_of(body, circuit) == "nodes":
            return {t.hook for t in K.node_targets(K.outside(circuit, cfg, body.scope), cfg)}
        return {h for writers in knocked(circuit, cfg).values() for w in writers for h in R.writer_hooks(w, cfg)}

    def references(self, body):
        yield from super().references(body)
        if not isinstance(body.circuit, str):
            yield from K.circuit_references(K.circuit_of(body.circuit), ("circuit",))

    def describe(self, body):
        name = body.circuit if isinstance(body.circuit, str) else (body.circuit.name or "circuit")
        level = f", {body.level}" if body.level else ""
        return f"keep_circuit({name}{level}, {body.method})"


def knocked(circuit: Circuit, cfg) -> dict:
    """(reader, input) -> the writers whose edges into it the circuit lacks, for every reader of the model."""
    shape = R.shape_of(cfg)
    edges = circuit.edges if circuit.edges is not None else \
        {e for e in shape.edges() if e.writer in circuit.nodes and e.reader in circuit.nodes}
    out: dict = {}
    for e in shape.edges():
        if e not in edges:
            out.setdefault((e.reader, e.input), []).append(e.writer)
    return out


def edge_hooks(knocked_by_reader: dict, body, ctx: Context) -> list[tuple[str, object]]:
    """Captures of every knocked-out writer's hooks, then each reader's input rebuilt without them."""
    cfg, model = ctx.cfg, ctx.model
    seen: dict = {}
    writers = {w for ws in knocked_by_reader.values() for w in ws}
    hooks = {h for w in writers for h in R.writer_hooks(w, cfg)} | R.head_resids(knocked_by_reader)
    replaced: dict = {}

    def replacement_part(w):
        if w not in replaced:
            acts = {h: K.replaced(h, body, ctx, seen[h]) for h in R.writer_hooks(w, cfg)}
            replaced[w] = R.part(w, acts, model)
        return replaced[w]

    def new_input(ws):
        def new(resid, seen):
            return R.swapped(resid, [R.part(w, seen, model) for w in ws], [replacement_part(w) for w in ws])

        return new

    readers = {r: new_input(ws) for r, ws in knocked_by_reader.items() if ws}
    return R.captures(hooks, seen) + R.edits(readers, model, seen)
