"""On zoo:ioi (a GPT-2 bridge, whose attention TransformerLens 4.3's edge tools accept),
keep_circuit at edge level with patching from a corrupted prompt agrees with TransformerLens's own
exact "ablate every edge outside the circuit" faithfulness, prompt pair by prompt pair. (TL refuses
the native zoo models; those are checked against the hand forward in test_circuit_interventions.py.)"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from circuitcheck.files import loader as H
from circuitcheck.session import Session

NAMES = "[Mary, John, Alice, Bob, Tom, Anna, Kate, James]"
PROMPTS = ("{generator: text, template: 'When {IO} and {S} went to the store, {S} gave a drink to', "
           f"slots: {{IO: {NAMES}, S: {NAMES}}}, answer: IO, counterfactual: S, n: 2, seed: SEED}}")
# every input edge is kept: TransformerLens's input writer is hook_embed alone, circuitcheck's adds
# hook_pos_embed, so the two agree where the input is never knocked out (zoo:ioi: 3 layers, 4 heads)
INPUTS = [f"input -> L{layer}H{h}" for layer in range(3) for h in range(4)] + [f"input -> L{layer}.mlp" for layer in
                                                                                range(3)] + ["input -> logits"]
KEPT = INPUTS + ["L0H1 -> L2H0.q", "L1H3 -> L2H0.k", "L0H2 -> L2.mlp", "L2H0 -> logits", "L2.mlp -> logits",
                 "L1.mlp -> L2H1.v", "L2H1 -> logits"]


def test_edge_keep_under_patching_matches_transformer_lens(tmp_path):
    tl = pytest.importorskip("transformer_lens.tools.analysis.attribution_patching")
    from circuitcheck.circuits import Circuit

    (tmp_path / "t.hyp.yaml").write_text(textwrap.dedent(f"""\
        model: zoo:ioi
        prompts: {PROMPTS.replace('SEED', '0')}
        circuits:
          c: {{edges: [{', '.join(repr(e) for e in KEPT)}]}}
        claims:
          - id: c
            says: keep the edges
            under: {{keep_circuit: {{circuit: c, method: patch, source: {PROMPTS.replace('SEED', '3')}}}}}
            measure: logit_diff
            expect: record
        """))
    loaded = H.load(tmp_path / "t.hyp.yaml")
    session = Session()
    session.add(loaded)
    lc = loaded.claims[0]
    ours, _ = session.values(loaded, lc.claim, lc.cases[0])
    ps = H.prompt_set(loaded, lc.cases[0].prompts_key, lc.cases[0].prompts)
    src = H.prompt_set(loaded, H.prompts_key(loaded.path, lc.cases[0].under[0].body.source),
                       lc.cases[0].under[0].body.source)
    assert ps.mask is None and src.tokens.shape == ps.tokens.shape
    model = session.model(loaded)
    circuit = Circuit.of(edges=KEPT)
    kind = {"head": "attn_head_out", "mlp": "mlp_out", "input": "embed"}
    reader = {"q": "q_input", "k": "k_input", "v": "v_input"}
    n_layers, seq = model.cfg.n_layers, ps.tokens.shape[1]

    def tl_node(n, inp, pos, writer):
        if writer:
            return tl.Node(kind[n.kind], pos, None if n.kind == "input" else n.layer,
                           n.index if n.kind == "head" else None)
        if n.kind == "logits":
            return tl.Node("logits", pos, n_layers - 1)
        return tl.Node(reader[inp] if n.kind == "head" else "mlp_in", pos, n.layer, n.index if n.kind == "head" else None)

    kept = [(tl_node(e.writer, None, p, True), tl_node(e.reader, e.input, p, False))
            for e in circuit.edges for p in range(seq)]
    theirs, clean = [], []
    for i in range(ps.n):
        def metric(logits, i=i):  # logit_diff by hand: the answer's logit minus the counterfactual's
            row = logits[0, int(ps.target_pos[i][0])]
            return row[int(ps.target_tok[i][0])] - row[int(ps.target_cf[i][0])]

        r = tl.faithfulness(model, torch.as_tensor(ps.tokens[i:i + 1]), torch.as_tensor(src.tokens[i:i + 1]),
                            metric, kept)
        clean.append(r.full_metric)
        theirs.append(r.corrupt_metric + r.recovered * (r.full_metric - r.corrupt_metric))
    assert not np.allclose(ours, clean, atol=0.1)  # the circuit is not the whole model
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
