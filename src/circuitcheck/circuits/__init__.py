"""Circuits: sets of nodes (heads, MLPs, neurons, the input, the logits) or of edges between them,
named in a hypothesis file or read from a discovery tool's graph file (EAP-IG JSON; auto-circuit,
ACDC and CircuitKit names through `maps`). Plain values, no torch: collection builds and checks them.
"""
from __future__ import annotations

from .graph import (CLASSES, INPUT, INPUTS, KINDS, LOGITS, Circuit, CircuitError, Edge, Node, Shape, check_edge,
                    parse_edge, parse_node)

__all__ = ["CLASSES", "INPUT", "INPUTS", "KINDS", "LOGITS", "Circuit", "CircuitError", "Edge", "Node", "Shape",
           "check_edge", "parse_edge", "parse_node"]
