"""The tracr zoo models: they load without jax, compute their program on every input, carry the
weights tracr compiled, and their circuit files say what the weights and the programs say."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitcheck import models
from circuitcheck.prompts import build
from circuitcheck.zoo import tracr_models

ROOT = Path(__file__).parents[1]
NAMES = ["tracr-hist", "tracr-reverse", "tracr-sort"]

# The tasks written out again, by hand, so that rows are not checked against the code that wrote them.
TASKS = {"tracr-reverse": lambda xs: list(reversed(xs)),
         "tracr-sort": lambda xs: sorted(xs),
         "tracr-hist": lambda xs: [sum(1 for y in xs if y == x) for x in xs]}
# Every input of length 1..5: 3 + 9 + 27 + 81 + 243 over {1,2,3}; 5 + 20 + 60 + 120 + 120 distinct of 5.
ROW_COUNTS = {"tracr-reverse": 363, "tracr-sort": 325, "tracr-hist": 363}

# The program circuits read off the RASP programs by hand (the card's source): which variable each
# step reads, where the compiled model computes it (a SelectorWidth is an attention head, then an
# MLP), leaving out what is the same for every input at a position (indices, BOS, `one`).
PROGRAM_EDGES = {
    "tracr-reverse": {  # length = SelectorWidth(Select(tokens, tokens, TRUE)); opp_idx = length - indices - 1
        "input->a0.h0<q>", "input->a0.h0<k>", "a0.h0->m0",  # length
        "m0->m1", "m1->m2",  # opp_idx, then opp_idx - 1 (indices come from input, constant per position)
        "m2->a3.h0<q>", "input->a3.h0<v>",  # Aggregate(Select(indices, opp_idx, EQ), tokens)
        "a3.h0->logits"},
    "tracr-sort": {  # target_pos = SelectorWidth(Select(tokens, tokens, LT)); Aggregate(Select(target_pos, indices, EQ), tokens)
        "input->a0.h0<q>", "input->a0.h0<k>", "a0.h0->m0", "m0->a1.h0<k>", "input->a1.h0<v>", "a1.h0->logits"},
    "tracr-hist": {"input->a0.h0<q>", "input->a0.h0<k>", "a0.h0->m0", "m0->logits"},
}


def meta(name: str) -> dict:
    return json.loads((models.ZOO_DIR / name / "config.json").read_text())["tracr"]


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "hypotheses" / "data" / f"{name}.jsonl").read_text().splitlines()]


def circuit(name: str, suffix: str = "") -> dict:
    return json.loads((ROOT / "hypotheses" / "circuits" / f"{name}{suffix}.json").read_text())


def in_graph(graph: dict, key: str) -> set[str]:
    return {k for k, v in graph[key].items() if v["in_graph"]}


def test_every_program_is_shipped():
    assert sorted(tracr_models.PROGRAMS) == NAMES
    assert set(NAMES) <= set(models.zoo_names())


@pytest.mark.parametrize("name", NAMES)
def test_rows_are_every_input_with_the_task_s_answer(name):
    m = meta(name)
    words = {v: k for k, v in m["input_ids"].items()}
    outputs = {v: k for k, v in m["output_ids"].items()}
    seen = set()
    for row in rows(name):
        assert row["tokens"][0] == m["input_ids"]["BOS"]
        xs = [int(words[t]) for t in row["tokens"][1:]]
        assert [t["at"] for t in row["targets"]] == list(range(1, len(xs) + 1))
        assert [int(outputs[t["token"]]) for t in row["targets"]] == TASKS[name](xs)
        seen.add(tuple(xs))
    assert len(seen) == len(rows(name)) == ROW_COUNTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_loads_without_jax_and_computes_the_program(name, monkeypatch):
    for module in ("jax", "tracr", "haiku"):
        monkeypatch.setitem(sys.modules, module, None)  # any import of them now fails
    models.load.__globals__["_CACHE"].clear()
    model = models.load(models.ModelSource("zoo", name))
    ps = build("jsonl", None, 0, path=f"data/{name}.jsonl", base=ROOT / "hypotheses",
               pad_token=meta(name)["input_ids"]["compiler_pad"])
    with torch.inference_mode():
        logits = model(torch.as_tensor(ps.tokens), attention_mask=torch.as_tensor(ps.mask))
    pred = logits.argmax(-1).numpy()[np.arange(ps.n)[:, None], ps.target_pos]
    valid = ps.target_valid if ps.target_valid is not None else np.ones_like(pred, bool)
    assert valid.sum() == sum(len(r["targets"]) for r in rows(name))
    assert (pred == ps.target_tok)[valid].all()  # accuracy 1.0 on every input


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_the_recorded_ones_and_small(name):
    path = models.ZOO_DIR / name / "model.safetensors"
    assert path.stat().st_size < 200_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta(name)["sha256"]
    assert f"`model.safetensors` has sha256 `{meta(name)['sha256']}`" in (path.parent / "card.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_what_tracr_compiles(name):
    pytest.importorskip("tracr")  # the optional `tracr` extra; CI has no jax
    from safetensors.torch import load_file

    _, state = tracr_models.convert(tracr_models.compile_program(name))
    shipped = load_file(str(models.ZOO_DIR / name / "model.safetensors"))
    assert state.keys() == shipped.keys()
    assert all(torch.equal(state[k], shipped[k]) for k in state)


@pytest.mark.parametrize("name", NAMES)
def test_program_circuit_is_the_one_read_off_the_program(name):
    assert in_graph(circuit(name), "edges") == PROGRAM_EDGES[name]


@pytest.mark.parametrize("name", NAMES)
def test_full_circuit_is_what_the_weights_connect(name):
    from safetensors.torch import load_file

    d = models.ZOO_DIR / name
    state = load_file(str(d / "model.safetensors"))
    labels = json.loads((d / "residual_labels.json").read_text())
    config = models.zoo_config(name)
    full = circuit(name, "-full")
    # an edge is in the graph exactly when the writer's output weights and the reader's input
    # weights share a residual direction: the product of the two is non-zero
    for edge, value in full["edges"].items():
        writer, reader = edge.split("->")
        product = _read(state, config, reader) @ _write(state, config, writer)
        assert value["in_graph"] == bool(np.abs(product).sum() > 0), edge
    assert PROGRAM_EDGES[name] <= in_graph(full, "edges")
    assert full["cfg"]["n_layers"] == config["n_layers"] and full["cfg"]["n_heads"] == config["n_heads"]
    assert len(labels) == config["d_model"]


def _write(state, config, node) -> np.ndarray:
    """[d_model, k]: the residual directions the node writes."""
    if node == "input":
        return np.concatenate([state["embed.weight"].numpy().T, state["pos_embed.weight"].numpy().T], 1)
    if node.startswith("m"):
        return np.concatenate([state[f"blocks.{node[1:]}.mlp.out.weight"].numpy(),
                               state[f"blocks.{node[1:]}.mlp.out.bias"].numpy()[:, None]], 1)
    layer, head = (int(x) for x in node[1:].split(".h"))
    d = config["d_head"]
    return state[f"blocks.{layer}.attn.o.weight"].numpy()[:, head * d:(head + 1) * d]


def _read(state, config, node) -> np.ndarray:
    """[k, d_model]: what the node reads from the residual stream."""
    if node == "logits":
        w = state["unembed.weight"].numpy()
        return w if w.shape[1] == config["d_model"] else w.T
    if node.startswith("m"):
        return state[f"blocks.{node[1:]}.mlp.in.weight"].numpy()
    head, qkv = node[:-3], node[-2]
    layer, h = (int(x) for x in head[1:].split(".h"))
    d = config["d_head"]
    return state[f"blocks.{layer}.attn.{qkv}.weight"].numpy()[h * d:(h + 1) * d]


@pytest.mark.parametrize("name", NAMES)
def test_the_twins_read_the_same_rows(name):
    """tests/twins/ holds copies of the rows and circuits (a file may read only its own folder): the same bytes."""
    twin = Path(__file__).parent / "twins" / "data" / f"{name}.jsonl"
    assert twin.read_bytes() == (ROOT / "hypotheses" / "data" / f"{name}.jsonl").read_bytes()
    for twin in (Path(__file__).parent / "twins" / "circuits").glob(f"{name}*.json"):
        assert twin.read_bytes() == (ROOT / "hypotheses" / "circuits" / twin.name).read_bytes()


@pytest.mark.parametrize("name", [*NAMES, *(n + "-full" for n in NAMES), "ioi"])
def test_circuit_files_read_as_eap_ig_graphs_of_their_model(name):
    from circuitcheck.circuits import eap

    cfg, graph = eap.loads(json.loads((ROOT / "hypotheses" / "circuits" / f"{name}.json").read_text()))
    model = cfg["model"].removeprefix("zoo:")
    dims = models.zoo_config(model)
    assert (cfg["n_layers"], cfg["n_heads"]) == (dims["n_layers"], dims["n_heads"])
    assert graph.in_graph().size > 0


def test_ioi_circuit_file_names_the_heads_its_claims_keep():
    """circuits/ioi.json and hypotheses/ioi_circuit.hyp.yaml state the same circuit."""
    import yaml

    graph = circuit("ioi")
    heads = {f"L{n[1]}H{n[4]}" for n, v in graph["nodes"].items() if v["in_graph"] and n.startswith("a")}
    claims = yaml.safe_load((ROOT / "hypotheses" / "ioi_circuit.hyp.yaml").read_text())["claims"]
    kept = {c["id"]: set(c["under"]["keep_only"]["heads"]) for c in claims if "keep_only" in c.get("under", {})}
    assert heads == {"L1H0", "L1H1", "L1H2", "L1H3", "L2H0"}
    assert kept == {"circuit-keeps-the-logit-difference": heads, "circuit-keeps-the-answer-on-top": heads,
                    "circuit-needs-l2h0": heads - {"L2H0"}}
    assert not any(v["in_graph"] for v in graph["edges"].values())  # a node circuit: no edge marked
