"""`under: {knock_out: {nodes | circuit, method, mean_over, source}}`: knock out a set of nodes
(heads, MLP layers, neurons, the input) in the full model, each replaced by zero, its mean, another
prompt's value, or its value on a corrupted prompt set; the rest of the model runs as it is."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..circuits import Circuit
from ..circuits.spec import CircuitSpec
from . import knockout as K
from .base import Context, register


class KnockOut(K.Replacement):
    nodes: list[str] | None = Field(None, min_length=1, description="heads L1H0, MLPs L2.mlp, neurons L2N14, input")
    circuit: K.CircuitField | None = Field(None, description="or: every node of a circuit named under `circuits:`")

    _nodes = field_validator("nodes")(CircuitSpec._nodes.__func__)

    @model_validator(mode="after")
    def _one(self):
        if (self.nodes is None) == (self.circuit is None):
            raise ValueError("knock out `nodes: [...]` or the nodes of a `circuit:`, one of them")
        if self.nodes is not None and "logits" in self.nodes:
            raise ValueError("the logits are what a claim reads: they cannot be knocked out")
        return self


def nodes_of(body) -> list:
    c = Circuit.of(nodes=body.nodes) if body.nodes is not None else K.circuit_of(body.circuit)
    return sorted(n for n in c.nodes if n.kind != "logits")


@register
class KnockOutKind(K.ReplacingKind):
    name = "knock_out"
    schema = KnockOut

    def hooks(self, body, ctx: Context):
        return K.node_hooks(K.node_targets(nodes_of(body), ctx.cfg), body, ctx)

    def hooks_read(self, body, cfg) -> set[str]:
        return {t.hook for t in K.node_targets(nodes_of(body), cfg)}

    def references(self, body):
        yield from super().references(body)
        if body.nodes is not None:
            yield from K.circuit_references(Circuit.of(nodes=body.nodes), ("nodes",))
        elif not isinstance(body.circuit, str):
            yield from K.circuit_references(K.circuit_of(body.circuit), ("circuit",))
