"""Other tools' circuit names (auto-circuit, ACDC, CircuitKit) mapped to circuitcheck's, the
`circuitcheck circuit convert | export` commands, and round trips through EAP-IG JSON. The expected
circuits are written by hand in circuitcheck's names."""
from __future__ import annotations

import json

import numpy as np
import pytest

from circuitcheck.circuits import Circuit, CircuitError, Shape, eap, maps
from circuitcheck.cli import main

SHAPE = Shape(n_layers=4, n_heads=4)
WANT = Circuit.of(edges=["input -> L0H1.v", "L0H1 -> L3H0.q", "L2.mlp -> logits", "L1H2 -> L2.mlp",
                         "L3H0 -> logits"])
FILES = {
    "auto-circuit": ["Resid Start->A0.1.V", "A0.1->A3.0.Q", "MLP 2->Resid End", "A1.2->MLP 2", "A3.0->Resid End"],
    "acdc": [["blocks.0.hook_v_input", "[:, :, 1]", "blocks.0.hook_resid_pre", "[:]"],
             ["blocks.3.hook_q_input", "[:, :, 0]", "blocks.0.attn.hook_result", "[:, :, 1]"],
             "blocks.2.hook_mlp_out -> blocks.3.hook_resid_post",
             ["blocks.2.hook_mlp_in", "[:]", "blocks.1.attn.hook_result", "[:, :, 2]"],
             ["blocks.3.hook_resid_post", "[:]", "blocks.3.attn.hook_result", "[:, :, 0]"]],
    "circuitkit": ["input->A0.1<v>", "A0.1->A3.0<q>", "MLP 2->logits", "A1.2->MLP 2", "A3.0->logits"],
}


@pytest.mark.parametrize("form", FILES)
def test_each_tools_names(form):
    assert maps.graph(FILES[form], form).in_graph().edges == WANT.edges


@pytest.mark.parametrize("form", [*FILES, "eap"])
def test_names_round_trip(form):
    for e in sorted(WANT.edges):
        assert maps.edge(maps.edge_name(e, form, SHAPE.n_layers), form) == e


@pytest.mark.parametrize("form, bad", [("auto-circuit", "A0.1.Q->A3.0.Q"), ("auto-circuit", "A0.1->A3.0"),
                                       ("circuitkit", "A3.0->A0.1<q>"), ("acdc", "blocks.0.hook_q_input -> x"),
                                       ("acdc", ["blocks.1.hook_q_input", "[:]", "blocks.0.hook_mlp_out", "[:]"])])
def test_bad_names(form, bad):
    with pytest.raises(CircuitError):
        maps.edge(bad, form)


@pytest.mark.parametrize("form", FILES)
def test_convert_then_read_back(tmp_path, form, capsys):
    src = tmp_path / f"{form}.json"
    src.write_text(json.dumps(FILES[form]))
    out = tmp_path / "out.json"
    assert main(["circuit", "convert", str(src), str(out), "--from", form, "--layers", "4", "--heads", "4"]) == 0
    cfg, graph = eap.loads(json.loads(out.read_text()))
    assert (cfg["n_layers"], cfg["n_heads"]) == (4, 4)
    assert graph.in_graph().edges == WANT.edges
    assert len(graph.edges) == len(SHAPE.edges())  # every edge of the model, in the graph or not


def test_convert_keeps_scores_and_refuses_a_model_too_small(tmp_path, capsys):
    src = tmp_path / "s.json"
    src.write_text(json.dumps({"A0.1->A3.0.Q": 0.5, "MLP 2->Resid End": {"score": -0.25, "in_graph": False}}))
    out = tmp_path / "o.json"
    assert main(["circuit", "convert", str(src), str(out), "--from", "auto-circuit", "--layers", "4", "--heads", "4"]) == 0
    _, g = eap.loads(json.loads(out.read_text()))
    assert g.in_graph().names() == ["L0H1 -> L3H0.q"] and g.top(k=2).size == 2
    assert main(["circuit", "convert", str(src), str(out), "--from", "auto-circuit", "--layers", "3", "--heads", "4"]) == 2
    assert "3 layers" in capsys.readouterr().err
    assert main(["circuit", "convert", str(src), str(out), "--from", "auto-circuit"]) == 2
    assert "--layers" in capsys.readouterr().err


def test_export_a_named_circuit_round_trips(hyp, tmp_path):
    path = hyp("""\
- id: c
  says: keep it
  under: {keep_circuit: {circuit: path, method: mean}}
  measure: logprob
  expect: record
""", extra="circuits:\n  path: {edges: ['input -> L0H1.v', 'L0H1 -> L1H2.q', 'L1H2 -> logits']}\n")
    out = tmp_path / "path.json"
    assert main(["circuit", "export", str(path), "path", str(out)]) == 0
    _, g = eap.loads(json.loads(out.read_text()))
    assert g.in_graph().names() == ["input -> L0H1.v", "L0H1 -> L1H2.q", "L1H2 -> logits"]
    assert main(["circuit", "export", str(path), "nope", str(out)]) == 2


def test_converted_files_judge_like_the_circuit_written_out(hyp, tmp_path):
    """A circuit given as each tool's file, converted, gives the values of the same circuit written inline."""
    shape = Shape(2, 4, mlps=False)
    files = {"auto-circuit": ["Resid Start->A0.1.V", "A0.1->A1.2.Q", "A1.2->Resid End", "Resid Start->Resid End"],
             "acdc": ["blocks.0.hook_resid_pre -> blocks.0.hook_v_input[:, :, 1]",
                      "blocks.0.attn.hook_result[:, :, 1] -> blocks.1.hook_q_input[:, :, 2]",
                      "blocks.1.attn.hook_result[:, :, 2] -> blocks.1.hook_resid_post",
                      "blocks.0.hook_resid_pre -> blocks.1.hook_resid_post"],
             "circuitkit": ["input->A0.1<v>", "A0.1->A1.2<q>", "A1.2->logits", "input->logits"]}
    circuits = ""
    for form, names in files.items():
        (tmp_path / f"{form}.json").write_text(json.dumps(names))
        text = maps.graph(names, form).in_graph()
        (tmp_path / f"{form}.eap.json").write_text(eap.dumps(text, shape))
        circuits += f"  {form.replace('-', '_')}: {{file: {form}.eap.json}}\n"
    circuits += "  inline: {edges: ['input -> L0H1.v', 'L0H1 -> L1H2.q', 'L1H2 -> logits', 'input -> logits']}\n"
    names = ["inline", "auto_circuit", "acdc", "circuitkit"]
    claims = "".join(f"- id: {n}\n  says: keep it\n  under: {{keep_circuit: {{circuit: {n}, method: mean}}}}\n"
                     "  measure: logprob\n  expect: record\n" for n in names)
    claims += "- id: clean\n  says: the model\n  measure: logprob\n  expect: record\n"
    from circuitcheck.files import loader as H
    from circuitcheck.session import Session

    loaded = H.load(hyp(claims, prompts="{generator: repeated_tokens, n: 16, seed: 1, length: 6}", extra="circuits:\n" + circuits))
    session = Session()
    session.add(loaded)
    *vals, clean = [session.values(loaded, lc.claim, lc.cases[0])[0] for lc in loaded.claims]
    assert not np.allclose(vals[0], clean, atol=1e-3)  # the circuit is not the whole model
    for v in vals[1:]:
        np.testing.assert_array_equal(v, vals[0])
