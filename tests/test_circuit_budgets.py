"""`circuit: {budgets: ...}` with `cpr` and `cmd` (MIB): the faithfulness of a scored graph's top-k
edges at each budget, and the trapezoid areas under the curve and between it and 1, checked against
hand forward passes of each top-k circuit (test_circuit_interventions.hand) on a model with MLPs and
on a native attention-only one; bad budgets are collection errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from circuitcheck.files import loader as H
from circuitcheck.session import Session
from test_circuit_interventions import PROMPTS, hand, knocked_edge_reader, logprob, means, reference_tokens
from test_circuit_named import eap_name, reader_names, writers_before

TOP = [0, 3, 9, 20]


def every_edge(model) -> list[tuple[str, str]]:
    """(writer, reader) of every edge, readers as the hand forward names them (`L1H2.q`, `L1.mlp`, `logits`)."""
    return [(w, r) for r in reader_names(model) for w in writers_before(model, r)]


def scored_file(folder, model) -> list[tuple[str, str]]:
    """A graph file scoring every edge, |score| distinct (no ties); the edges in order of |score|, largest first."""
    edges = every_edge(model)
    score = {e: (-1) ** j * (j + 1) / 100 for j, e in enumerate(edges)}

    def name(w, r):
        reader, _, inp = r.partition(".")
        return f"{eap_name(w)}->{eap_name(r if inp == 'mlp' else reader)}" + (f"<{inp}>" if inp in ("q", "k", "v") else "")

    graph = {"cfg": {"n_layers": model.cfg.n_layers, "n_heads": model.cfg.n_heads},
             "nodes": {}, "edges": {name(*e): {"score": s, "in_graph": False} for e, s in score.items()}}
    (folder / "scored.json").write_text(json.dumps(graph))
    return sorted(edges, key=lambda e: -abs(score[e]))


@pytest.fixture(params=["mlp", "attn_only"])
def setup(request, tmp_path, tiny_mlp_dir, tiny_dir, tiny_mlp_model, tiny_model):
    from conftest import writer

    d, m = (tiny_mlp_dir, tiny_mlp_model) if request.param == "mlp" else (tiny_dir, tiny_model)
    ranked = scored_file(tmp_path, m)
    return writer(tmp_path, d), m, ranked


def test_cpr_and_cmd_are_the_trapezoid_areas_of_the_hand_curve(setup):
    write, model, ranked = setup
    budgets = TOP + [len(ranked)]
    text = "".join(f"- id: {form}\n  says: the scored graph's curve\n"
                   f"  circuit: {{name: scored, ablation: mean, budgets: {{top: {budgets}}}}}\n"
                   f"  measure: logprob\n  expect: {{{form}: {{{side}: {x}}}}}\n"
                   for form, side, x in (("cpr", "at_least", -100), ("cmd", "at_most", 100)))
    path = write(text, prompts=PROMPTS, extra="circuits:\n  scored: {file: scored.json}\n")
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    case = loaded.claims[0].cases[0]
    ps = H.prompt_set(loaded, case.prompts_key, case.prompts)
    tokens = torch.as_tensor(ps.tokens)
    mean = means(model, reference_tokens(path), tokens)

    def kept(k):  # the hand run of the top-k edges: every other edge reads its writer's mean
        keep = set(ranked[:k])
        out = {r: [w for w in writers_before(model, r) if (w, r) not in keep] for r in reader_names(model)}
        return logprob(hand(model, tokens, knocked_edge_reader(out, mean))[0], ps).mean()

    curve = {k: kept(k) for k in budgets}
    empty, full = curve[0], logprob(hand(model, tokens)[0], ps).mean()
    f = np.array([(curve[k] - empty) / (full - empty) for k in budgets])
    x = np.array(budgets) / len(ranked)
    assert 0.05 < f[1:-1].std() and np.isclose(f[-1], 1, atol=1e-6)  # a curve, not a constant
    want = {"cpr": np.sum((x[1:] - x[:-1]) * (f[1:] + f[:-1]) / 2),
            "cmd": np.sum((x[1:] - x[:-1]) * (np.abs(1 - f[1:]) + np.abs(1 - f[:-1])) / 2)}
    for form, w in want.items():
        est = session.result(loaded.path, form).main.estimate
        assert np.isclose(est.statistic, w, atol=2e-4), (form, est.statistic, w)
        assert est.low <= est.statistic <= est.high and est.high - est.low > 0


def bad(write, circuit: str, expect: str, extra: str):
    path = write(f"- id: bad\n  says: x\n  circuit: {circuit}\n  measure: logprob\n  expect: {expect}\n",
                 prompts=PROMPTS, extra=extra)
    with pytest.raises(H.HypothesisError) as info:
        H.load(path)
    return info.value, path.read_text().splitlines()


@pytest.mark.parametrize("circuit, expect, field, message", [
    ("{name: plain, budgets: {top: [1, 2]}}", "{cpr: {at_least: 0.5}}", "claims[0].circuit.name", "no edge scores"),
    ("{name: scored, budgets: {top: [1, 5000]}}", "{cpr: {at_least: 0.5}}", "claims[0].circuit.name",
     "more than the"),
    ("{name: scored}", "{cpr: {at_least: 0.5}}", "claims[0]", "`budgets:`"),
    ("{name: scored, budgets: {top: [1, 2]}}", "{faithfulness: {at_least: 0.5}}", "claims[0]", "`budgets:`"),
    ("{name: scored, budgets: {top: [1, 2], fractions: [0.1, 1]}}", "{cpr: {at_least: 0.5}}", "claims[0].circuit",
     "budgets"),
])
def test_bad_budgets_are_collection_errors(setup, circuit, expect, field, message):
    write, model, _ = setup
    err, lines = bad(write, circuit, expect, "circuits:\n  scored: {file: scored.json}\n  plain: {nodes: [L0H1]}\n")
    assert err.field.startswith(field) and message in err.message, (err.field, err.message)
    assert err.line is not None and ("circuit" in lines[err.line - 1] or "id: bad" in lines[err.line - 1])
