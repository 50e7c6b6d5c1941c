"""keep_circuit, knock_out and path_patch, each checked per prompt against a forward pass written out
here from the state dict (not through circuitcheck, not through TransformerLens's hooks): one model
with MLPs and LayerNorm, one native attention-only model. The hand forward builds every reader's
input (each head's q, k and v, each MLP, the logits) from the parts the writers (input, heads, MLPs)
added to the residual stream, so an edge edit is written as what it means."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import manual
from circuitcheck.files import loader as H
from circuitcheck.interventions.ablate import resample_order
from circuitcheck.session import Session

PROMPTS = "{generator: repeated_tokens, n: 24, seed: 1, length: 6}"
SOURCE = "{generator: repeated_tokens, n: 24, seed: 9, length: 6}"


def hand(model, tokens, reader=None, part=None, keys=None):
    """Logits and the writers' parts of a hand forward pass (float64). `reader(name, resid, parts)`
    gives the residual a reader reads (names `L1H2.q`, `L1.mlp`, `logits`); `part(name, x)` replaces
    a writer's part (`input`, `L0H1`, `L1.mlp`) as it is written. `keys` [b, pos]: the positions
    attention may read (padding hidden); attention is causal unless the model says bidirectional."""
    reader = reader or (lambda name, resid, parts: resid)
    part = part or (lambda name, x: x)
    cfg = model.cfg
    sd = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()}
    h, e, t = cfg.n_heads, cfg.d_head, tokens.shape[1]

    def ln(x, name):
        return manual.layer_norm(sd, x, name, cfg.eps)

    def linear(x, name):
        return manual.affine(sd, x, name)

    parts = {"input": part("input", sd["embed.weight"][tokens] + sd["pos_embed.weight"][:t])}
    resid = parts["input"]
    hidden = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)[None, None]
    if getattr(cfg, "attention_dir", "causal") == "bidirectional":
        hidden = torch.zeros_like(hidden)
    if keys is not None:
        hidden = hidden | ~torch.as_tensor(keys, dtype=torch.bool)[:, None, None, :]
    for layer in range(cfg.n_layers):
        a = f"blocks.{layer}.attn"
        qkv = {}
        for n in "qkv":
            w = sd[f"{a}.{n}.weight"].reshape(h, e, -1)
            b = sd[f"{a}.{n}.bias"].reshape(h, e)
            qkv[n] = torch.stack([ln(reader(f"L{layer}H{i}.{n}", resid, parts), f"blocks.{layer}.ln1") @ w[i].T + b[i]
                                  for i in range(h)], 2)  # [b, pos, head, e]
        scores = torch.einsum("bqhe,bkhe->bhqk", qkv["q"], qkv["k"]) / math.sqrt(e)
        pattern = torch.softmax(scores.masked_fill(hidden, float("-inf")), -1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, qkv["v"])
        w_o = sd[f"{a}.o.weight"].T.reshape(h, e, -1)
        for i in range(h):
            parts[f"L{layer}H{i}"] = part(f"L{layer}H{i}", z[:, :, i] @ w_o[i])
        resid = resid + sum(parts[f"L{layer}H{i}"] for i in range(h)) + sd[f"{a}.o.bias"]
        if f"blocks.{layer}.mlp.in.weight" in sd:
            x = ln(reader(f"L{layer}.mlp", resid, parts), f"blocks.{layer}.ln2")
            pre = linear(x, f"blocks.{layer}.mlp.in")
            post = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2))) if cfg.act_fn == "gelu" else torch.relu(pre)
            parts[f"L{layer}.mlp"] = part(f"L{layer}.mlp", linear(post, f"blocks.{layer}.mlp.out"))
            resid = resid + parts[f"L{layer}.mlp"]
    logits = ln(reader("logits", resid, parts), "ln_final") @ sd["unembed.weight"].T + sd["unembed.bias"]
    return logits, parts


def logprob(logits, ps) -> np.ndarray:
    """The `logprob` measure by hand: the correct token's log-probability, averaged over targets."""
    rows = torch.arange(ps.n)[:, None]
    lp = torch.log_softmax(logits[rows, torch.as_tensor(ps.target_pos)], -1)
    return lp.gather(-1, torch.as_tensor(ps.target_tok)[..., None])[..., 0].mean(-1).numpy()


def values(path, n_claims=1):
    """circuitcheck's per-prompt values of the file's first claims, and the prompt set."""
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    out = []
    for lc in loaded.claims[:n_claims]:
        value, _ = session.values(loaded, lc.claim, lc.cases[0])
        out.append(value)
    case = loaded.claims[0].cases[0]
    return out, H.prompt_set(loaded, case.prompts_key, case.prompts)


def reference_tokens(path):
    return torch.as_tensor(manual.reference_prompts(path).tokens)


def claims(*unders: str) -> str:
    return "".join(f"- id: c{i}\n  says: an intervention, checked by hand\n  under: {u}\n  measure: logprob\n"
                   "  expect: record\n" for i, u in enumerate(unders))


CLEAN = "[]"


@pytest.fixture(params=["mlp", "attn_only"])
def setup(request, tmp_path, tiny_mlp_dir, tiny_dir, tiny_mlp_model, tiny_model):
    """(write(claims, extra) -> path, model) for the model with MLPs and the native attention-only one."""
    from conftest import writer

    d, m = (tiny_mlp_dir, tiny_mlp_model) if request.param == "mlp" else (tiny_dir, tiny_model)
    write = writer(tmp_path, d)
    return (lambda text, extra="": write(text, prompts=PROMPTS, extra=extra)), m


def every_node(model) -> list[str]:
    cfg = model.cfg
    mlps = [] if cfg.attn_only else [f"L{layer}.mlp" for layer in range(cfg.n_layers)]
    return ["input", "logits", *mlps, *(f"L{layer}H{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads))]


def means(model, reference, like):
    """Each writer's part averaged over the reference prompts (per position), from the clean hand run,
    in the shape of the judged run `like`."""
    _, parts = hand(model, reference)
    return {k: v.mean(0, keepdim=True).expand(like.shape[0], *v.shape[1:]) for k, v in parts.items()}


def test_keeping_every_node_or_edge_is_the_clean_run_exactly(setup):
    write, model = setup
    nodes = every_node(model)
    (clean, by_nodes, by_edges), _ = values(write(claims(CLEAN, "{keep_circuit: {circuit: all, method: zero}}",
                                                         "{keep_circuit: {circuit: all, level: edges, method: zero}}"),
                                                  extra=f"circuits:\n  all: {{nodes: [{', '.join(nodes)}]}}\n"), 3)
    np.testing.assert_array_equal(by_nodes, clean)
    np.testing.assert_array_equal(by_edges, clean)


def test_keeping_nothing_is_the_all_ablated_run(setup):
    write, model = setup
    knocked = [n for n in every_node(model) if n != "logits"]
    path = write(claims("{keep_circuit: {circuit: {nodes: [logits]}, method: mean}}",
                        f"{{knock_out: {{nodes: [{', '.join(knocked)}], method: mean}}}}"))
    (kept, all_out), ps = values(path, 2)
    tokens = torch.as_tensor(ps.tokens)
    mean = means(model, reference_tokens(path), tokens)
    want = logprob(hand(model, tokens, part=lambda name, x: mean[name])[0], ps)
    clean = logprob(hand(model, tokens)[0], ps)
    assert not np.allclose(want, clean, atol=1e-2)
    np.testing.assert_allclose(kept, want, atol=2e-4)
    np.testing.assert_allclose(all_out, want, atol=2e-4)


def test_a_node_circuit_knocks_out_exactly_the_nodes_outside_it(setup):
    write, model = setup
    keep = {"input", "logits", "L0H1", "L1H2"} | ({"L1.mlp"} if not model.cfg.attn_only else set())
    (got,), ps = values(write(claims(f"{{keep_circuit: {{circuit: {{nodes: [{', '.join(sorted(keep))}]}}, "
                                     "method: resample}}")))
    tokens = torch.as_tensor(ps.tokens)
    _, clean = hand(model, tokens)
    perm = torch.as_tensor(resample_order(ps.n, 0))
    want = logprob(hand(model, tokens, part=lambda name, x: x if name in keep else clean[name][perm])[0], ps)
    wrong = logprob(hand(model, tokens, part=lambda name, x: x if name in keep | {"L0H2"} else clean[name][perm])[0], ps)
    assert not np.allclose(want, wrong, atol=1e-3)  # negative control: one node more gives other numbers
    np.testing.assert_allclose(got, want, atol=2e-4)


def knocked_edge_reader(edges_out: dict, replace: dict):
    """A hand `reader` that takes, for each (writer, reader) knocked out, the writer's part out of the
    reader's residual and puts its replacement in."""
    def reader(name, resid, parts):
        for w in edges_out.get(name, ()):
            resid = resid - parts[w] + replace[w]
        return resid

    return reader


@pytest.mark.parametrize("edge, writer, reader", [("L0H1 -> L1H2.q", "L0H1", "L1H2.q"),
                                                  ("L0H3 -> L1H0.v", "L0H3", "L1H0.v"),
                                                  ("input -> L1H1.k", "input", "L1H1.k"),
                                                  ("L1H0 -> logits", "L1H0", "logits")])
def test_one_edge_knocked_out(setup, edge, writer, reader):
    """Every edge of the model but one kept: that one reader reads the writer's mean, not its part."""
    write, model = setup
    from circuitcheck.circuits import parse_edge
    from circuitcheck.interventions.residual import shape_of

    gone = set(parse_edge(edge))
    rest = [str(e) for e in shape_of(model.cfg).edges() if e not in gone]
    path = write(claims("{keep_circuit: {circuit: most, method: mean}}",
                        f"{{knock_out: {{nodes: [{writer}], method: mean}}}}"),
                 extra="circuits:\n  most: {edges: [" + ", ".join(f"'{e}'" for e in rest) + "]}\n")
    (got, other), ps = values(path, 2)
    tokens = torch.as_tensor(ps.tokens)
    mean = means(model, reference_tokens(path), tokens)
    want = logprob(hand(model, tokens, knocked_edge_reader({reader: [writer]}, mean))[0], ps)
    clean = logprob(hand(model, tokens)[0], ps)
    assert not np.allclose(want, clean, atol=1e-4)
    np.testing.assert_allclose(got, want, atol=2e-4)
    if writer != "L1H0":  # negative control: knocking out the writer's node is not knocking out its one edge
        assert not np.allclose(got, other, atol=1e-4)


def test_edges_kept_with_patching_from_corrupted_prompts(setup):
    """ACDC style: every edge outside the circuit reads its writer's value on the corrupted prompts."""
    write, model = setup
    from circuitcheck import prompts as P
    from circuitcheck.circuits import Circuit
    from circuitcheck.interventions.residual import shape_of

    kept = ["input -> L0H1.v", "input -> L0H1.k", "L0H1 -> L1H2.q", "L0H1 -> L1H2.k", "input -> L1H2.v",
            "L1H2 -> logits", "input -> logits"]
    (got,), ps = values(write(claims(f"{{keep_circuit: {{circuit: c, method: patch, source: {SOURCE}}}}}"),
                              extra="circuits:\n  c: {edges: [" + ", ".join(f"'{e}'" for e in kept) + "]}\n"))
    tokens = torch.as_tensor(ps.tokens)
    src = P.repeated_tokens(n=24, seed=9, length=6)
    _, corrupt = hand(model, torch.as_tensor(src.tokens))
    c = Circuit.of(edges=kept)
    out: dict = {}
    for e in shape_of(model.cfg).edges():
        if e not in c.edges:
            out.setdefault(e.reader.name + (f".{e.input}" if e.input else ""), []).append(e.writer.name)
    out = {("logits" if k == "logits" else k): v for k, v in out.items()}
    want = logprob(hand(model, tokens, knocked_edge_reader(out, corrupt))[0], ps)
    assert not np.allclose(want, logprob(hand(model, tokens)[0], ps), atol=1e-3)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_path_patching_matches_the_hand_computation(setup):
    """L0H1's output on the source prompts reaches only L1H2's query (or its q, k and v, or the logits
    directly); every other input is the clean run's."""
    write, model = setup
    from circuitcheck import prompts as P

    receivers = ["[L1H2.q]", "[L1H2]", "[logits]"]
    got, ps = values(write(claims(*(f"{{path_patch: {{senders: [L0H1], receivers: {r}, source: {SOURCE}}}}}"
                                    for r in receivers))), 3)
    tokens = torch.as_tensor(ps.tokens)
    src = P.repeated_tokens(n=24, seed=9, length=6)
    _, source = hand(model, torch.as_tensor(src.tokens))
    _, clean = hand(model, tokens)
    delta = source["L0H1"] - clean["L0H1"]

    def clean_resid(name):  # the clean residual stream a reader reads, by hand
        layer = 1 if name.startswith("L1") else model.cfg.n_layers
        mlps = [f"L{x}.mlp" for x in range(layer) if f"L{x}.mlp" in clean]
        heads = [f"L{x}H{i}" for x in range(layer) for i in range(model.cfg.n_heads)]
        bias = sum(model.state_dict()[f"blocks.{x}.attn.o.bias"].to(torch.float64) for x in range(layer))
        return clean["input"] + sum(clean[k] for k in heads + mlps) + bias

    def reader(readers):
        return lambda name, resid, parts: clean_resid(name) + delta if name in readers else resid

    want = [logprob(hand(model, tokens, reader(r))[0], ps)
            for r in ({"L1H2.q"}, {"L1H2.q", "L1H2.k", "L1H2.v"}, {"logits"})]
    assert not np.allclose(want[0], want[1], atol=1e-4)  # negative control: q alone is not q, k and v
    assert not np.allclose(want[0], logprob(hand(model, tokens)[0], ps), atol=1e-4)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=2e-4)


def test_stacked_runs_give_the_same_values(setup, monkeypatch):
    """On a GPU several runs share one pass (engine._stacked); the captures and rebuilt inputs of edge
    edits must stay within their own copy of the prompts."""
    write, model = setup
    from circuitcheck.runs import engine

    text = claims("{keep_circuit: {circuit: {edges: ['input -> L0H1.v', 'L0H1 -> L1H2.q', 'L1H2 -> logits']}, "
                  "method: mean}}", f"{{path_patch: {{senders: [L0H1], receivers: [L1H2.q], source: {SOURCE}}}}}",
                  "{knock_out: {nodes: [L0H2, input], method: zero}}")
    alone, _ = values(write(text), 3)
    monkeypatch.setattr(engine, "STACK_ON_CPU", True)
    stacked, _ = values(write(text), 3)
    for a, s in zip(alone, stacked):
        np.testing.assert_allclose(s, a, atol=1e-5)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)  # three different runs, not one run three times


def accuracy(logits, ps) -> np.ndarray:
    """The `accuracy` measure by hand: the top logit (the first on a tie, as argmax) is the target's,
    averaged over each prompt's real targets."""
    rows = torch.arange(ps.n)[:, None]
    hit = (logits[rows, torch.as_tensor(ps.target_pos)].argmax(-1) == torch.as_tensor(ps.target_tok)).double()
    valid = torch.ones_like(hit) if ps.target_valid is None else torch.as_tensor(ps.target_valid).double()
    return ((hit * valid).sum(-1) / valid.sum(-1)).numpy()


def test_a_one_hot_input_swapped_for_its_mean_leaves_an_exact_tie(tmp_path):
    """Issue 21's suspected bug. On zoo:tracr-reverse the flip head L3H0 reads the tokens (one-hot) through
    its values; with `input -> L3H0.v` alone knocked out under mean ablation, every value holds each token
    at 1/3, the three output logits tie exactly, and argmax takes the first: the hand run gives 1/3 per
    target. circuitcheck gave 1.0: in float32 the rebuilt input `1 - (1 - 1/3)` is one ulp off
    `0 - (0 - 1/3)`, which broke every tie in favour of the clean answer."""
    import shutil

    from circuitcheck.circuits import parse_edge
    from circuitcheck.interventions.residual import shape_of
    from circuitcheck.session import load_model

    model = load_model("zoo:tracr-reverse")
    rest = [f"'{e}'" for e in shape_of(model.cfg).edges() if e not in set(parse_edge("input -> L3H0.v"))]
    shutil.copy(Path(__file__).parents[1] / "hypotheses/data/tracr-reverse.jsonl", tmp_path / "rows.jsonl")
    path = tmp_path / "t.hyp.yaml"
    path.write_text("model: zoo:tracr-reverse\nprompts: {generator: jsonl, path: rows.jsonl, pad_token: 4}\n"
                    f"circuits:\n  most: {{edges: [{', '.join(rest)}]}}\nclaims:\n"
                    "- {id: a, says: x, under: {keep_circuit: {circuit: most, method: mean}}, measure: accuracy, "
                    "expect: record}\n")
    (got,), ps = values(path)
    tokens, keys = torch.as_tensor(ps.tokens), torch.as_tensor(ps.mask).bool()
    _, parts = hand(model, tokens, keys=keys)
    real = keys[..., None].double()
    mean = ((parts["input"] * real).sum(0) / real.sum(0))[None]  # per position, over the real tokens
    want = accuracy(hand(model, tokens, knocked_edge_reader({"L3H0.v": ["input"]}, {"input": mean}), keys=keys)[0],
                    ps)
    np.testing.assert_array_equal(accuracy(hand(model, tokens, keys=keys)[0], ps), 1.0)  # the clean run reverses
    assert abs(want.mean() - 1 / 3) < 1e-12  # a three-way tie on every target: argmax picks token 1, right 1/3
    np.testing.assert_array_equal(got, want)
