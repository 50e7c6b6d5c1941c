"""A hypothesis file's `circuits:`: each read once (inline nodes or edges, or a graph file), checked
against the model, and written out into the interventions that name it, before anything runs.

    circuits:
      ioi: {file: ioi_circuit.json, take: in_graph}          # EAP-IG JSON, relative to this file
      budget: {file: ioi_circuit.json, take: {top: 20}}
      movers: {nodes: [L2H0, L2H1]}
    claims:
      - under: {keep_circuit: {circuit: ioi, method: mean}}
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..circuits import Circuit, CircuitError, Shape, eap, maps
from ..circuits.spec import CircuitRef
from . import paths

MAX_GRAPH_BYTES = 200_000_000  # GPT-2 small's full EAP-IG graph is about 4 MB; a 7B model's some 100 MB
CIRCUIT_KINDS = ("keep_circuit", "knock_out")  # interventions with a `circuit:` field


class CircuitFileError(ValueError):
    """`loc`: where in the hypothesis file; `file`/`line`: where in the graph file, when there."""

    def __init__(self, loc: tuple, message: str, hint: str = "", file: Path | None = None, line: int | None = None):
        super().__init__(message)
        self.loc, self.hint, self.file, self.line = loc, hint, file, line


def shape_of(cfg: dict) -> Shape | None:
    """The model's Shape from its config, or None when the config does not say (a factory model)."""
    if cfg.get("n_layers") is None or cfg.get("n_heads") is None:
        return None
    attn_only = bool(cfg.get("attn_only"))
    return Shape(cfg["n_layers"], cfg["n_heads"], not attn_only, None if attn_only else cfg.get("d_mlp"))


def read_all(hyp: Path, specs: dict, shape: Shape | None) -> dict[str, Circuit]:
    return {name: read_one(hyp, name, spec, shape) for name, spec in specs.items()}


def read_one(hyp: Path, name: str, spec, shape: Shape | None) -> Circuit:
    loc = ("circuits", name)
    if spec.file is None:
        circuit = Circuit.of(nodes=spec.nodes or (), edges=spec.edges)
    else:
        circuit = _from_file(hyp, loc, spec, shape)
    if shape is not None:
        try:
            circuit.check(shape)
        except CircuitError as exc:
            raise CircuitFileError(loc + (("file",) if spec.file else ("nodes" if spec.nodes else "edges",)),
                                   f"circuit {name!r}: {exc}", exc.hint) from None
    return circuit


def _from_file(hyp: Path, loc: tuple, spec, shape: Shape | None) -> Circuit:
    try:
        path = paths.resolve(hyp, spec.file, "circuit file")
    except paths.PathRefused as exc:
        raise CircuitFileError(loc + ("file",), str(exc), exc.hint) from None
    if path.stat().st_size > MAX_GRAPH_BYTES:
        raise CircuitFileError(loc + ("file",), f"the circuit file {spec.file!r} is {path.stat().st_size:,} bytes, "
                               f"more than {MAX_GRAPH_BYTES:,}", "keep the in-graph edges only")
    text = None
    try:
        if path.suffix == ".pt":
            data = eap.read_pt(path)
        else:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CircuitFileError(loc + ("file",), f"{spec.file}: not JSON: {exc.msg}", "write the graph as JSON",
                               path, exc.lineno) from None
    except (OSError, UnicodeDecodeError, RuntimeError, ValueError) as exc:  # torch's unpickler refuses with these
        raise CircuitFileError(loc + ("file",), f"{spec.file} cannot be read: {exc}",
                               "a .pt graph is a dict of plain values (weights_only=True)") from None
    try:
        if spec.format == "eap":
            cfg, graph = eap.loads(data)
            if shape is not None:
                eap.check_cfg(cfg, shape)
        else:
            graph = maps.graph(data, spec.format)
        return graph.in_graph() if spec.take == "in_graph" else graph.top(spec.take.top, spec.take.top_fraction)
    except CircuitError as exc:
        line = _line(text, str(exc))
        raise CircuitFileError(loc + ("file",), f"{spec.file}: {exc}", exc.hint, path if line else None, line) from None


def _line(text: str | None, message: str) -> int | None:
    """The line of the graph file that the message quotes ('a0.h1->m2', or cfg's `n_heads`)."""
    if text is None:
        return None
    m = re.search(r"'([^']+)'", message) or re.search(r"(n_layers|n_heads)=", message)
    if m is None:
        return None
    at = text.find(f'"{m[1]}"')
    return None if at < 0 else text.count("\n", 0, at) + 1


def ref(name: str, circuit: Circuit) -> CircuitRef:
    """How interventions carry a named circuit."""
    if circuit.edges is not None:
        return CircuitRef(name=name, edges=circuit.names())
    return CircuitRef(name=name, nodes=circuit.names())


def resolve_under(under: tuple, circuits: dict[str, Circuit]) -> tuple:
    """`under` with each `circuit: NAME` written out (KeyError(index, name) for an unknown name)."""
    out = []
    for j, iv in enumerate(under):
        body = iv.body
        if iv.kind in CIRCUIT_KINDS and isinstance(getattr(body, "circuit", None), str):
            name = body.circuit
            if name not in circuits:
                raise KeyError(j, name)
            body = body.model_copy(update={"circuit": ref(name, circuits[name])})
            iv = iv.model_copy(update={iv.kind: body})
        out.append(iv)
    return tuple(out)


def check_inline(under: tuple, shape: Shape | None):
    """CircuitFileError(loc inside the claim) for an inline circuit with a node the model lacks."""
    if shape is None:
        return
    for j, iv in enumerate(under):
        body = iv.body
        c = getattr(body, "circuit", None) if iv.kind in CIRCUIT_KINDS else None
        nodes = getattr(body, "nodes", None) if iv.kind == "knock_out" else None
        senders = getattr(body, "senders", None) if iv.kind == "path_patch" else None
        receivers = [r.split(".")[0] if re.match(r"^L\d+H\d+\.[qkv]$", r) else r
                     for r in getattr(body, "receivers", None) or []] if iv.kind == "path_patch" else None
        for field, circuit in (("circuit", c if isinstance(c, CircuitRef) and c.name is None else None),
                               ("nodes", Circuit.of(nodes=nodes) if nodes else None),
                               ("senders", Circuit.of(nodes=senders) if senders else None),
                               ("receivers", Circuit.of(nodes=receivers) if receivers else None)):
            if circuit is None:
                continue
            try:
                (circuit.circuit() if isinstance(circuit, CircuitRef) else circuit).check(shape)
            except CircuitError as exc:
                raise CircuitFileError(("under", j, iv.kind, field), str(exc), exc.hint) from None


# ---------------------------------------------------------------- for code that builds claims about circuits
def keep(circuit, method: str = "mean", level: str | None = None, scope=None, source=None, mean_over=None,
         circuits: dict | None = None):
    """The intervention "keep `circuit`, knock out the rest of the model under `method`" (a
    `spec.Intervention`, ready for a Case's `under`). `circuit`: a Circuit, or a name in `circuits`
    (a LoadedFile's `circuits`); `level`: nodes or edges (default the circuit's own); `scope`: which
    nodes are knocked out at node level (heads, mlps, input); `source`: the corrupted PromptSpec (or
    dict) for `method: patch`."""
    body = {"circuit": _ref(circuit, circuits).model_dump(exclude_none=True), "method": method}
    body.update({k: v for k, v in (("level", level), ("scope", scope), ("mean_over", mean_over),
                                   ("source", _plain_source(source))) if v is not None})
    return _intervention("keep_circuit", body)


def knock_out(nodes, method: str = "mean", source=None, mean_over=None):
    """The intervention "knock out these nodes in the full model under `method`": `nodes` are Node
    values or names (a Circuit gives its nodes; its logits are never knocked out)."""
    names = [str(n) for n in (nodes.nodes if isinstance(nodes, Circuit) else nodes) if str(n) != "logits"]
    body = {"nodes": sorted(names), "method": method}
    body.update({k: v for k, v in (("mean_over", mean_over), ("source", _plain_source(source))) if v is not None})
    return _intervention("knock_out", body)


def _ref(circuit, circuits: dict | None) -> CircuitRef:
    if isinstance(circuit, str):
        if circuits is None or circuit not in circuits:
            raise KeyError(f"no circuit named {circuit!r}" + (f"; known: {', '.join(circuits)}" if circuits else ""))
        return ref(circuit, circuits[circuit])
    if isinstance(circuit, CircuitRef):
        return circuit
    return ref(None, circuit)


def _plain_source(source):
    return source.model_dump() if hasattr(source, "model_dump") else source


def _intervention(kind: str, body: dict):
    from .spec import Intervention

    return Intervention.model_validate({kind: body})


# ---------------------------------------------------------------- `circuitcheck circuit convert | export`
def convert(src: Path, form: str, shape: Shape | None) -> str:
    """The EAP-IG JSON of a circuit file written in `form`'s names (every edge of the model; in_graph
    for the file's). An EAP-IG file gives its own shape; another tool's needs `shape`."""
    data = eap.read_pt(src) if src.suffix == ".pt" else json.loads(src.read_text(encoding="utf-8"))
    if form == "eap":
        cfg, graph = eap.loads(data)
        file_shape = Shape(cfg["n_layers"], cfg["n_heads"]) if {"n_layers", "n_heads"} <= set(cfg) else None
        shape = shape or file_shape
        if shape is None:
            raise CircuitError("the graph's cfg does not give n_layers and n_heads", "pass --layers and --heads")
        eap.check_cfg(cfg, shape)
    else:
        if shape is None:
            raise CircuitError(f"a {form} file does not say the model's size", "pass --layers and --heads")
        graph = maps.graph(data, form)
    circuit = graph.in_graph()
    _fits(circuit, shape, graph)
    return eap.dumps(circuit, shape, graph.edge_scores())


def _fits(circuit: Circuit, shape: Shape, graph) -> None:
    circuit.check(shape)
    for e in graph.edges:
        shape.check(e.writer)
        shape.check(e.reader)
    if not shape.mlps and any(n.kind == "mlp" for e in graph.edges for n in (e.writer, e.reader)):
        raise CircuitError("the file names MLPs, and --attn-only says the model has none")

