"""Names other circuit-discovery tools give nodes and edges, mapped to circuitcheck's.

    circuitcheck       EAP-IG / MIB    auto-circuit          ACDC (TransformerLens 1 hooks)          CircuitKit
    input              input           Resid Start           blocks.0.hook_resid_pre                 input
    L1H0 (writer)      a1.h0           A1.0                  blocks.1.attn.hook_result[:, :, 0]      A1.0
    L1H0.q (reader)    a1.h0<q>        A1.0.Q                blocks.1.hook_q_input[:, :, 0]          A1.0<q>
    L2.mlp (writer)    m2              MLP 2                 blocks.2.hook_mlp_out                   MLP 2
    L2.mlp (reader)    m2              MLP 2                 blocks.2.hook_mlp_in                    MLP 2
    logits             logits          Resid End             blocks.<last>.hook_resid_post           logits

An edge is `WRITER->READER` in every form but ACDC's, which also takes ACDC's own 4-tuples
`[child hook, child index, parent hook, parent index]` (its correspondence's edge keys) and
`PARENT -> CHILD` strings. A file of another tool's edges is a JSON list of edge names (all in the
circuit) or a mapping name -> score, or name -> {"score": s, "in_graph": b}.
"""
from __future__ import annotations

import re

from .eap import Graph
from .eap import edge as eap_edge
from .eap import edge_name as eap_edge_name
from .graph import INPUT, LOGITS, CircuitError, Edge, Node, check_edge

FORMATS = ("eap", "auto-circuit", "acdc", "circuitkit")

_AC = re.compile(r"^A(\d+)\.(\d+)(?:\.([QKV]))?$")
_MLP = re.compile(r"^MLP (\d+)$")
_CK = re.compile(r"^A(\d+)\.(\d+)(?:<([qkv])>)?$")
_TL1 = re.compile(r"^blocks\.(\d+)\.(attn\.hook_result|hook_([qkv])_input|hook_mlp_out|hook_mlp_in|hook_resid_pre|"
                  r"hook_resid_post)\s*(\[[^\]]*\])?$")
_INDEX = re.compile(r"^\[\s*(?::|None|COL)\s*,\s*(?::|None|COL)\s*,\s*(\d+)\s*\]$")


def _ac_node(text: str, reader: bool):
    t = text.strip()
    if t == "Resid Start":
        return INPUT, None
    if t == "Resid End":
        return LOGITS, None
    m = _MLP.match(t)
    if m:
        return Node("mlp", int(m[1])), None
    m = _AC.match(t)
    if m and (m[3] is not None) == reader:
        return Node("head", int(m[1]), int(m[2])), (m[3] or "").lower() or None
    raise CircuitError(f"{text!r} is not an auto-circuit {'reader' if reader else 'writer'}",
                       "auto-circuit writes Resid Start, A<layer>.<head>, MLP <layer>; readers A<l>.<h>.Q|K|V, "
                       "MLP <layer>, Resid End")


def _ck_node(text: str, reader: bool):
    t = text.strip()
    if t in ("input", "Resid Start"):
        return INPUT, None
    if t in ("logits", "Resid End"):
        return LOGITS, None
    m = _MLP.match(t)
    if m:
        return Node("mlp", int(m[1])), None
    t2 = re.sub(r"\.([qkvQKV])$", lambda x: f"<{x[1].lower()}>", t)
    m = _CK.match(t2)
    if m and (m[3] is not None) == reader:
        return Node("head", int(m[1]), int(m[2])), m[3]
    raise CircuitError(f"{text!r} is not a CircuitKit {'reader' if reader else 'writer'}",
                       "CircuitKit writes input, A<layer>.<head>, MLP <layer>, logits; a head reader A<l>.<h><q>")


def _tl1_node(hook: str, index, reader: bool):
    m = _TL1.match(hook.strip() + ("" if index in (None, "") else str(index)))
    if m is None:
        raise CircuitError(f"{hook!r}{'' if index is None else index} is not an ACDC node",
                           "ACDC nodes are TransformerLens 1 hooks: blocks.L.attn.hook_result[:, :, H], "
                           "blocks.L.hook_q_input[:, :, H] (k, v), blocks.L.hook_mlp_out, blocks.L.hook_mlp_in, "
                           "blocks.0.hook_resid_pre, blocks.<last>.hook_resid_post")
    layer, what, qkv, idx = int(m[1]), m[2], m[3], m[4]
    wants = {"attn.hook_result": False, "hook_mlp_out": False, "hook_resid_pre": False}.get(what, True)
    if wants != reader:
        raise CircuitError(f"{hook}: an ACDC {'writer' if wants is False else 'reader'} hook stands where a "
                           f"{'reader' if reader else 'writer'} goes")
    if what == "hook_resid_pre":
        return INPUT, None
    if what == "hook_resid_post":
        return LOGITS, None
    if what.startswith("hook_mlp"):
        return Node("mlp", layer), None
    head = _INDEX.match(idx or "")
    if head is None:
        raise CircuitError(f"{hook}{idx or ''}: a head's hook needs its index, e.g. [:, :, 0]")
    return Node("head", layer, int(head[1])), qkv


def edge(text, form: str) -> Edge:
    """One edge written in `form`'s names."""
    if form == "eap":
        return eap_edge(text)
    if form == "acdc":
        if isinstance(text, (list, tuple)) and len(text) == 4:
            child, child_i, parent, parent_i = text
            writer, _ = _tl1_node(parent, parent_i, False)
            reader, inp = _tl1_node(child, child_i, True)
            return check_edge(Edge(writer, reader, inp))
        if isinstance(text, str) and "->" in text:
            left, right = text.split("->", 1)
            writer, _ = _tl1_node(left, None, False)
            reader, inp = _tl1_node(right, None, True)
            return check_edge(Edge(writer, reader, inp))
        raise CircuitError(f"{text!r} is not an ACDC edge", "write [child hook, child index, parent hook, parent "
                           "index] or 'PARENT -> CHILD'")
    parse = {"auto-circuit": _ac_node, "circuitkit": _ck_node}.get(form)
    if parse is None:
        raise CircuitError(f"unknown format {form!r}", "one of: " + ", ".join(FORMATS))
    if not isinstance(text, str) or "->" not in text:
        raise CircuitError(f"{text!r} is not a {form} edge", "write WRITER->READER")
    left, right = text.split("->", 1)
    writer, _ = parse(left, False)
    reader, inp = parse(right, True)
    return check_edge(Edge(writer, reader, inp))


def node_name(n: Node, form: str, reader_input: str | None = None, writer: bool = True, n_layers: int = 0) -> str:
    """A node's name in `form` (as a writer, or as a reader of `reader_input`)."""
    if form == "auto-circuit":
        if n.kind in ("input", "logits"):
            return "Resid Start" if n.kind == "input" else "Resid End"
        if n.kind == "mlp":
            return f"MLP {n.layer}"
        return f"A{n.layer}.{n.index}" + (f".{reader_input.upper()}" if reader_input else "")
    if form == "circuitkit":
        if n.kind in ("input", "logits"):
            return n.kind
        if n.kind == "mlp":
            return f"MLP {n.layer}"
        return f"A{n.layer}.{n.index}" + (f"<{reader_input}>" if reader_input else "")
    if form == "acdc":
        if n.kind == "input":
            return "blocks.0.hook_resid_pre"
        if n.kind == "logits":
            return f"blocks.{n_layers - 1}.hook_resid_post"
        if n.kind == "mlp":
            return f"blocks.{n.layer}.hook_mlp_{'out' if writer else 'in'}"
        if writer:
            return f"blocks.{n.layer}.attn.hook_result[:, :, {n.index}]"
        return f"blocks.{n.layer}.hook_{reader_input}_input[:, :, {n.index}]"
    raise CircuitError(f"unknown format {form!r}", "one of: " + ", ".join(FORMATS))


def edge_name(e: Edge, form: str, n_layers: int = 0) -> str:
    if form == "eap":
        return eap_edge_name(e)
    if form == "acdc":
        return f"{node_name(e.writer, form, n_layers=n_layers)} -> " \
               f"{node_name(e.reader, form, e.input, writer=False, n_layers=n_layers)}"
    return f"{node_name(e.writer, form)}->{node_name(e.reader, form, e.input, writer=False)}"


def graph(data, form: str) -> Graph:
    """A Graph of every edge a file of `form` lists (a list: all in the circuit; a mapping: scores,
    and in_graph where given, else every listed edge)."""
    if isinstance(data, list):
        return Graph({}, {edge(x, form): (None, True) for x in data})
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if isinstance(v, dict):
                score, inside = v.get("score"), v.get("in_graph", True)
            else:
                score, inside = v, True
            if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
                raise CircuitError(f"{k!r}: score {score!r} is not a number")
            if not isinstance(inside, bool):
                raise CircuitError(f"{k!r}: in_graph {inside!r} is not true or false")
            out[edge(k, form)] = (None if score is None else float(score), inside)
        return Graph({}, out)
    raise CircuitError(f"a {form} circuit file is a JSON list of edges or a mapping edge -> score")
