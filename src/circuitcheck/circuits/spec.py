"""How a hypothesis file writes circuits: once at the top level, by name, and how an intervention
refers to one (by that name, or inline). Pydantic models only; reading a graph file is the loader's."""
from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, field_validator, model_validator

from ..language.fields import Strict
from .graph import CircuitError, parse_edge, parse_node

FORMATS = ("eap", "auto-circuit", "acdc", "circuitkit")


class Top(Strict):
    top: int | None = Field(None, ge=1, description="the K edges of highest |score|")
    top_fraction: float | None = Field(None, gt=0, le=1, description="that fraction of the scored edges, rounded up")

    @model_validator(mode="after")
    def _one(self):
        if (self.top is None) == (self.top_fraction is None):
            raise ValueError("write `take: {top: K}` or `take: {top_fraction: F}`")
        return self


def _names(v, parse, what):
    for i, name in enumerate(v or []):
        try:
            parse(name)
        except CircuitError as exc:
            raise ValueError(f"{what} {i}: {exc} ({exc.hint})") from None
    return v


class CircuitSpec(Strict):
    """A circuit: its nodes, its edges, or a graph file a discovery tool wrote."""

    nodes: list[str] | None = Field(None, min_length=1, description="heads L1H0, MLPs L2.mlp, neurons L2N14, input, "
                                                                     "logits")
    edges: list[str] | None = Field(None, min_length=1, description="WRITER -> READER: `L0H1 -> L2H0.q`, "
                                                                     "`L1.mlp -> logits`, `input -> L1H2.v`")
    file: str | None = Field(None, description="a graph file, relative to this file: EAP-IG JSON (.json) or the "
                             "same dict saved by torch (.pt, read with weights_only=True)")
    format: Literal[FORMATS] = Field("eap", description="the graph file's names: eap (EAP-IG, MIB), or a file of "
                                     "auto-circuit, acdc or circuitkit edge names (docs/reference.md)")
    take: Union[Literal["in_graph"], Top] = Field("in_graph", description="in_graph: the edges the file marks; "
                                                  "{top: K} or {top_fraction: F}: the edges of highest |score|")

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v):
        return _names(v, parse_node, "node")

    @field_validator("edges")
    @classmethod
    def _edges(cls, v):
        return _names(v, parse_edge, "edge")

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.nodes, self.edges, self.file)) != 1:
            raise ValueError("a circuit is one of: `nodes: [...]`, `edges: [...]`, `file: PATH`")
        if self.file is None and (self.take != "in_graph" or self.format != "eap"):
            raise ValueError("`take` and `format` go with `file:`")
        return self


class CircuitRef(Strict):
    """A circuit as an intervention carries it: its nodes or edges written out (the loader puts a
    named circuit's here), and its name for reports."""

    name: str | None = Field(None, description="the name under the file's `circuits:`")
    nodes: list[str] | None = Field(None, description="heads, MLPs, neurons, input, logits")
    edges: list[str] | None = Field(None, description="WRITER -> READER edges")

    _nodes = field_validator("nodes")(CircuitSpec._nodes.__func__)
    _edges = field_validator("edges")(CircuitSpec._edges.__func__)

    @model_validator(mode="after")
    def _one(self):
        if (self.nodes is None) == (self.edges is None):
            raise ValueError("a circuit has `nodes: [...]` or `edges: [...]`")
        return self

    def circuit(self):
        from .graph import Circuit

        return Circuit.of(nodes=self.nodes or (), edges=self.edges)


NAME = r"^[A-Za-z_][\w-]*$"
