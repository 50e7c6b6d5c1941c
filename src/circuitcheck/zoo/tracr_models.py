"""Ground truth: RASP programs compiled by tracr into zoo models whose circuits are known exactly.

    pip install -e ".[tracr]"                         # tracr-pypi (brings jax); only to regenerate
    circuitcheck zoo compile tracr-reverse --out DIR  # DIR/{model.safetensors,config.json,card.md}
    circuitcheck zoo compile all --out DIR --hypotheses hypotheses   # also the rows and circuit files

Compiling needs tracr and jax; loading the result does not: each model ships as a TransformerLens-
native `config.json` + `model.safetensors` (the `TransformerBridge` state dict, like every native
zoo model) and loads as `zoo:tracr-reverse` with neither jax nor network.

tracr writes every RASP variable into its own residual directions (`model.residual_labels`, one
label per direction, e.g. `opp_idx:3`), so which component talks to which is in the weights: an
edge writer -> reader exists exactly when the directions the writer writes (non-zero rows of its
output weights) meet the directions the reader reads (non-zero columns of its q, k, v or MLP input
weights, or of the unembedding). `circuit_edges` reads that from the weights alone (no jax), and
the directions each edge carries name the program's variables. Two circuits follow:

- `full`: every edge the weights connect. Knocking out anything else changes nothing under any
  ablation (what lies outside it has zero weight), so it is true under zero ablation too.
- `program`: the edges that carry a variable whose value differs between inputs at some position
  (over all inputs of the task: the rows are exhaustive). The dropped edges carry constants: `one`,
  `tokens:BOS`, and per-position values such as `indices`. Mean and resample ablation (per
  position) put those constants back; zero ablation does not, so this circuit is true under mean
  and resample ablation and not under zero ablation.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from itertools import permutations, product
from pathlib import Path
from typing import Callable

import numpy as np

BOS, PAD = "BOS", "compiler_pad"


@dataclass(frozen=True)
class Program:
    task: str
    vocab: tuple
    max_seq_len: int
    unique: bool  # inputs have distinct tokens (sort_unique's precondition)
    expected: Callable[[list], list]  # the task in plain Python: what the rows are checked against
    build: str  # name of the function below that builds the RASP program


def _reverse(xs):
    return xs[::-1]


def _sort(xs):
    return sorted(xs)


def _hist(xs):
    return [xs.count(x) for x in xs]


PROGRAMS: dict[str, Program] = {
    "tracr-reverse": Program("reverse the input sequence", (1, 2, 3), 5, False, _reverse, "reverse_program"),
    "tracr-sort": Program("sort distinct tokens ascending", (1, 2, 3, 4, 5), 5, True, _sort, "sort_program"),
    "tracr-hist": Program("for each token, how many times it occurs in the input", (1, 2, 3), 5, False, _hist,
                          "hist_program"),
}


# The RASP programs, written out (tracr's lib versions, with every variable named here so that the
# residual labels, and so the layout of the weights, do not depend on what was compiled before).
def reverse_program(rasp):
    all_true = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true")
    length = rasp.SelectorWidth(all_true).named("length")
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx_1")
    flip = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("flip")
    return rasp.Aggregate(flip, rasp.tokens).named("reverse")


def sort_program(rasp):
    smaller = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    move = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ).named("move")
    return rasp.Aggregate(move, rasp.tokens).named("sort")


def hist_program(rasp):
    same_tok = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_tok")
    return rasp.SelectorWidth(same_tok).named("hist")


def inputs(program: Program) -> list[list]:
    """Every input of length 1..max_seq_len over the vocabulary (distinct tokens where the program
    needs them): the rows are exhaustive, so accuracy 1.0 on them is the program, not a sample."""
    make = permutations if program.unique else (lambda v, n: product(v, repeat=n))
    return [list(xs) for n in range(1, program.max_seq_len + 1) for xs in make(program.vocab, n)]


# ---------------------------------------------------------------------------------------------
# Compiling (needs tracr and jax)


def compile_program(name: str):
    """The tracr `AssembledTransformerModel` of a program (BOS first, bidirectional attention)."""
    try:
        from tracr.compiler import compiling
        from tracr.rasp import rasp
    except ImportError as exc:
        raise SystemExit(f"compiling tracr models needs tracr-pypi: pip install -e \".[tracr]\" ({exc})") from None
    import itertools

    program = PROGRAMS[name]
    rasp.RASPExpr._ids = itertools.count(1)  # labels end in a global counter: the same labels whatever compiled before
    sop = globals()[program.build](rasp)
    return compiling.compile_rasp_to_model(sop, vocab=set(program.vocab), max_seq_len=program.max_seq_len,
                                           compiler_bos=BOS, compiler_pad=PAD)


# TransformerLens 4.3's converter names the weights for another native layout than `boot_native`
# builds here (`layers.N.mlp.fc_in`, `tok_embed`, `head`); these are the bridge's own names.
_RENAME = [(r"^tok_embed\.", "embed."), (r"^pos\.", "pos_embed."), (r"^head\.", "unembed."),
           (r"^layers\.", "blocks."), (r"\.mlp\.fc_in\.", ".mlp.in."), (r"\.mlp\.fc_out\.", ".mlp.out.")]
CONFIG_KEYS = ("n_layers", "d_model", "d_head", "n_heads", "n_ctx", "d_vocab", "d_vocab_out", "d_mlp",
               "act_fn", "attention_dir", "normalization_type")


def convert(assembled) -> tuple[dict, dict]:
    """(TransformerBridge config kwargs, state dict) through TransformerLens's tracr converter."""
    import torch
    from transformer_lens.utilities import tracr as tl_tracr

    cfg = tl_tracr.make_tracr_transformer_bridge_config(assembled)
    config = {k: getattr(cfg, k) for k in CONFIG_KEYS}
    state = {}
    for key, value in tl_tracr.make_tracr_transformer_bridge_state_dict(assembled).items():
        for pattern, new in _RENAME:
            key = re.sub(pattern, new, key)
        state[key] = value.contiguous()
    state["unembed.bias"] = torch.zeros(config["d_vocab_out"])  # tracr's unembedding has no bias
    return config, state


def rows(name: str, assembled) -> tuple[list[dict], list[np.ndarray]]:
    """One JSONL row per input: token ids (BOS first), and at each real position the token id of
    tracr's own output there, checked against the plain-Python task before it is written; and
    tracr's final residual stream on each row."""
    program = PROGRAMS[name]
    enc, dec = assembled.input_encoder.encoding_map, assembled.output_encoder.encoding_map
    out, residuals = [], []
    for xs in inputs(program):
        result = assembled.apply([BOS, *xs])
        residuals.append(np.asarray(result.residuals[-1][0]))
        decoded = result.decoded[1:]
        if list(decoded) != program.expected(xs):
            raise AssertionError(f"{name}: tracr's model gives {decoded} on {xs}, the task {program.expected(xs)}")
        out.append({"tokens": [enc[BOS], *(enc[x] for x in xs)],
                    "targets": [{"at": i + 1, "token": dec[y]} for i, y in enumerate(decoded)],
                    "fields": {"length": len(xs), "input": " ".join(map(str, xs))}})
    return out, residuals


def residual_check(config: dict, state: dict, data: list[dict], residuals: list[np.ndarray]) -> float:
    """Largest difference between tracr's final residual stream and the bridge's, over every row:
    the converted weights compute what tracr compiled (not only the same argmax)."""
    import torch

    from ..models.loading import native

    bridge = native(config, state).eval()
    worst = 0.0
    with torch.inference_mode():
        for row, theirs in zip(data, residuals):
            _, cache = bridge.run_with_cache(torch.tensor([row["tokens"]]))
            ours = cache[f"blocks.{config['n_layers'] - 1}.hook_resid_post"][0].numpy()
            worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def write(name: str, out: Path, hypotheses: Path | None = None) -> dict:
    """Compile `name` and write the model and its card to `out`; with `hypotheses`, also its rows
    (`data/NAME.jsonl`) and circuits (`circuits/NAME.json`, `circuits/NAME-full.json`) there."""
    from safetensors.torch import save_file

    assembled = compile_program(name)
    config, state = convert(assembled)
    data, residuals = rows(name, assembled)
    diff = residual_check(config, state, data, residuals)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    labels = list(assembled.residual_labels)
    (out / "residual_labels.json").write_text(json.dumps(labels) + "\n")
    meta = {"program": name, "task": PROGRAMS[name].task, "vocab": list(PROGRAMS[name].vocab),
            "max_seq_len": PROGRAMS[name].max_seq_len,
            "input_ids": {str(k): v for k, v in assembled.input_encoder.encoding_map.items()},
            "output_ids": {str(k): v for k, v in assembled.output_encoder.encoding_map.items()},
            "rows": f"{name}.jsonl", "residual_max_abs_diff": diff,
            "sha256": hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()}
    (out / "config.json").write_text(json.dumps({"config": config, "tracr": meta}, indent=2) + "\n")
    varying = varying_labels(residuals, labels)
    graph = circuit_edges(state, config, labels)
    (out / "card.md").write_text(card(name, meta, graph, varying))
    if hypotheses is not None:
        for sub in ("data", "circuits"):
            (hypotheses / sub).mkdir(parents=True, exist_ok=True)
        (hypotheses / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
        for suffix, keep in (("-full", None), ("", varying)):
            circuit = eap_ig_json(graph, config, name, keep)
            (hypotheses / "circuits" / f"{name}{suffix}.json").write_text(json.dumps(circuit, indent=1) + "\n")
    return meta


def varying_labels(residuals: list[np.ndarray], labels: list[str]) -> set[str]:
    """Residual labels whose value differs between inputs at some real position, over every row."""
    seen: dict[int, list[np.ndarray]] = {}
    for res in residuals:
        for pos in range(res.shape[0]):
            seen.setdefault(pos, []).append(res[pos])
    spread = np.zeros(len(labels))
    for values in seen.values():
        stack = np.stack(values)
        spread = np.maximum(spread, stack.max(0) - stack.min(0))
    return {labels[i] for i in np.flatnonzero(spread > 1e-6)}


# ---------------------------------------------------------------------------------------------
# The circuit in the weights (numpy; no jax, no torch needed beyond reading the tensors)


def _nonzero(matrix, axis) -> set[int]:
    """Residual directions a weight touches: indices along `axis` with any non-zero entry."""
    m = np.abs(np.asarray(matrix, dtype=np.float64))
    return set(np.flatnonzero(m.sum(axis=axis) > 0).tolist())


def circuit_edges(state: dict, config: dict, labels: list[str]) -> dict:
    """{"nodes": {name: order}, "edges": {"w->r": [labels carried]}} of every edge the weights connect.

    Weights are nn.Linear-shaped ([out, in]): a head's output rows of `attn.o.weight` are residual
    directions; its rows of `attn.q.weight` read residual directions through their columns."""
    n_heads, d_head = config["n_heads"], config["d_head"]
    t = {k: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in state.items()}
    writers = {"input": (_nonzero(t["embed.weight"], 0) | _nonzero(t["pos_embed.weight"], 0), 0)}
    readers: dict[str, tuple[set[int], int]] = {}
    for layer in range(config["n_layers"]):
        b = f"blocks.{layer}"
        if np.any(t[f"{b}.attn.o.bias"]):
            raise ValueError(f"{b}.attn.o.bias is not zero: it belongs to no head")
        for h in range(n_heads):
            cols = slice(h * d_head, (h + 1) * d_head)
            node = f"a{layer}.h{h}"
            writers[node] = (_nonzero(t[f"{b}.attn.o.weight"][:, cols], 1), 2 * layer + 1)
            for qkv in "qkv":
                readers[f"{node}<{qkv}>"] = (_nonzero(t[f"{b}.attn.{qkv}.weight"][cols], 0), 2 * layer + 1)
        writers[f"m{layer}"] = (_nonzero(t[f"{b}.mlp.out.weight"], 1) | _nonzero(t[f"{b}.mlp.out.bias"][:, None], 1),
                                2 * layer + 2)
        readers[f"m{layer}"] = (_nonzero(t[f"{b}.mlp.in.weight"], 0), 2 * layer + 2)
    readers["logits"] = (_nonzero(t["unembed.weight"], 0 if t["unembed.weight"].shape[0] != config["d_model"] else 1),
                         2 * config["n_layers"] + 1)
    edges = {}
    for w, (wdims, worder) in writers.items():
        for r, (rdims, rorder) in readers.items():
            if worder < rorder:
                edges[f"{w}->{r}"] = sorted(labels[i] for i in wdims & rdims)
    return {"writers": list(writers), "edges": edges}


def eap_ig_json(graph: dict, config: dict, name: str, keep: set[str] | None) -> dict:
    """The circuit as EAP-IG graph JSON (the MIB and CircuitKit layout): every node and edge of the
    model with `in_graph`; an edge is in when the weights connect it (and, with `keep`, when it
    carries one of those labels); a node is in when an in-graph edge leaves or enters it."""
    def carried(labels):
        return [x for x in labels if keep is None or x in keep]

    edges = {e: {"score": float(len(carried(ls))), "in_graph": bool(carried(ls))} for e, ls in graph["edges"].items()}
    live = {part.split("<")[0] for e, v in edges.items() if v["in_graph"] for part in e.split("->")}
    nodes = {n: {"score": None, "in_graph": n in live} for n in [*graph["writers"], "logits"]}
    cfg = {"n_layers": config["n_layers"], "n_heads": config["n_heads"], "d_model": config["d_model"],
           "parallel_attn_mlp": False, "model": f"zoo:{name}",
           "score": "number of the program's residual directions the edge carries"}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def card(name: str, meta: dict, graph: dict, varying: set[str]) -> str:
    program = PROGRAMS[name]
    source = inspect.getsource(globals()[program.build])
    full, prog = f"hypotheses/circuits/{name}-full.json", f"hypotheses/circuits/{name}.json"
    lines = [f"# zoo:{name}", "",
             f"**Task.** {program.task}. Compiled by tracr from the RASP program below: no training; the "
             "weights are tracr's, converted by TransformerLens 4.3's tracr converter.", "",
             "```python", source.rstrip(), "```", "",
             "## Vocabulary and BOS", "",
             f"Inputs: tokens from {list(program.vocab)}, length 1 to {program.max_seq_len}"
             + (", all distinct" if program.unique else "") + f". Token ids: {meta['input_ids']}. Every prompt starts "
             f"with `BOS` (id {meta['input_ids'][BOS]}) at position 0; shorter prompts are right-padded with "
             f"`compiler_pad` (id {meta['input_ids'][PAD]}) and the attention mask hides the padding (tracr "
             "masks it the same way). Attention is bidirectional, as tracr compiles it. Output ids (the "
             f"unembedding's {len(meta['output_ids'])} columns): {meta['output_ids']}; the output at position "
             "i >= 1 is the program's value at input position i - 1; the output at BOS means nothing.", "",
             f"Rows: `hypotheses/data/{name}.jsonl`, every input of the task ({len(inputs(program))} rows), each "
             "target the output tracr's own model gives, checked against the task in plain Python when written.", "",
             "## Weights", "",
             f"Largest difference between tracr's final residual stream and this model's, over every row: "
             f"{meta['residual_max_abs_diff']:.2e}. `model.safetensors` has sha256 `{meta['sha256']}`. "
             "`residual_labels.json` names each residual direction.", "",
             "## Known circuit", "",
             f"Edges the weights connect, with the residual directions each carries: `{full}`. A `*` marks "
             f"the edges of the program circuit, `{prog}`: they carry a value that differs between inputs.", ""]
    for edge, labels in graph["edges"].items():
        if labels:
            star = "*" if set(labels) & varying else " "
            lines.append(f"- {star} `{edge}`: {', '.join(labels)}")
    lines += ["", f"True under: `{full}` under every ablation (what lies outside it has zero weight); `{prog}` "
              "under mean and resample ablation (the edges it leaves out carry values that are the same for every "
              "input at each position), not under zero ablation. The claims in "
              f"`hypotheses/{name}.hyp.yaml` and, edge by edge, `hypotheses/{name}-circuit.hyp.yaml` measure it.", "",
              "## Reproduce", "", "```", 'pip install -e ".[tracr]"',
              f"circuitcheck zoo compile {name} --out src/circuitcheck/zoo/models/{name} --hypotheses hypotheses",
              "```", "",
              "tracr-pypi 1.0.0, jax 0.10.2. Compiling writes the same bytes each time (no training, no random "
              "draws).", ""]
    return "\n".join(lines)
