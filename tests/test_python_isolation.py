"""A `python:` measure cannot change what other claims read: it gets a copy of the prompts, and if it changes the model's weights, the logits or the activations it was handed, its
claim is an error and the model and its runs are made afresh for the claims after it. Each test
runs a claim after a vandal and asserts its value is the one it has without the vandal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import circuitcheck
from circuitcheck.files import loader as H
from circuitcheck.session import Options, Session


@circuitcheck.register_measure("iso-zero-weights", weights_only=True)
def zero_weights(model):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0)
    return 1.0


@circuitcheck.register_measure("iso-zero-logits", reads=[])
def zero_logits(run):
    with torch.inference_mode():  # the logits are inference tensors: only so can they be written
        run.logits.mul_(0)
    return np.zeros(run.n)


@circuitcheck.register_measure("iso-zero-tokens", reads=[])
def zero_tokens(run):
    run.prompts.tokens[:] = 0
    return np.zeros(run.n)


@circuitcheck.register_measure("iso-w-norm", weights_only=True)
def w_norm(model):
    return model.W_O[0].norm()


@circuitcheck.register_measure("iso-logit-mean", reads=[])
def logit_mean(run):
    return run.logits[:, -1].mean(-1)


@circuitcheck.register_measure("iso-token-sum", reads=[])
def token_sum(run):
    return run.tokens.sum(-1).astype(float)


def claim(cid: str, measure: str) -> str:
    return f"- {{id: {cid}, says: {cid}, measure: {{python: {measure}}}, expect: record}}\n"


def run_file(path) -> dict:
    s = Session(Options(cache="off"))
    loaded = H.load(path)
    s.add(loaded)
    out = {}
    for lc in loaded.claims:
        r = s.result(loaded.path, lc.claim.id)
        out[lc.claim.id] = r.error or r.main.estimate.statistic
    return out


@pytest.mark.parametrize("vandal, reader, says", [
    ("iso-zero-weights", "iso-w-norm", "changed the model's weights"),
    ("iso-zero-logits", "iso-logit-mean", "changed the model's weights, the logits"),
    ("iso-zero-tokens", "iso-token-sum", "0.0"),  # its own copy: no error, and no one else sees it
])
def test_a_measure_cannot_change_what_the_next_claim_reads(hyp, tmp_path, vandal, reader, says):
    from circuitcheck import models

    alone = run_file(hyp(claim("reader", reader), name="alone.hyp.yaml"))["reader"]
    assert isinstance(alone, float) and alone != 0
    models.loading._CACHE.clear()
    got = run_file(hyp(claim("vandal", vandal) + claim("reader", reader), name="both.hyp.yaml"))
    assert says in str(got["vandal"])
    assert got["reader"] == alone


SHADOW = """\
- id: each-position
  says: "the file lists positions as $prev; a role of that name must not take their place"
  for: {all: {values: {prev: [1, 2]}}}
  measure: {attention: {head: L0H1, from: $prev, to: 0}}
  expect: record
"""


def test_a_role_cannot_shadow_a_for_variable(hyp):
    """A role and a `for:`/`sweep:` variable of one name: `$prev` would be the scan's head in place
    of the values the claim lists. A collection error naming both."""
    role = "roles: {prev: {best: {head_score: {head: $head, pattern: previous_token}}, among: layer 0}}\n"
    with pytest.raises(H.HypothesisError, match=r"claim 'each-position' binds \$prev .* role \$prev: rename"):
        H.load(hyp(SHADOW, extra=role))
    with pytest.raises(H.HypothesisError, match=r"binds \$prev"):
        H.load(hyp(SHADOW.replace("for: {all: {values: {prev: [1, 2]}}}", "sweep: {prev: [1, 2]}"), extra=role))


def test_two_files_registering_one_name_is_an_error_naming_both(hyp, tmp_path, monkeypatch):
    """Which of two registrations a claim ran depended on import order; now the files that name it
    get a collection error naming both places, and files naming other measures still run."""
    import importlib.util

    from circuitcheck.language import registry

    monkeypatch.setattr(registry, "MEASURES", dict(registry.MEASURES))
    monkeypatch.setattr(registry, "CONFLICTS", {})
    for folder, value in (("a", 0.0), ("b", 1.0)):
        (tmp_path / folder).mkdir()
        source = tmp_path / folder / "conftest.py"
        source.write_text("import numpy as np\nimport circuitcheck\n\n\n"
                          "@circuitcheck.register_measure('iso-twice', reads=[])\n"
                          f"def twice(run):\n    return np.full(run.n, {value})\n")
        spec = importlib.util.spec_from_file_location(f"iso_conftest_{folder}", source)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    with pytest.raises(H.HypothesisError) as err:
        H.load(hyp(claim("c", "iso-twice")))
    text = str(err.value)
    assert "'iso-twice' is registered 2 times" in text and "a/conftest.py:5" in text and "b/conftest.py:5" in text
    assert H.load(hyp(claim("c", "iso-w-norm"), name="other.hyp.yaml")).claims  # other names still load


@circuitcheck.register_measure("iso-exits", reads=[])
def exits(run):
    import sys

    sys.exit(3)


@circuitcheck.register_measure("iso-slow", reads=[], timeout=0.5)
def slow(run):
    import time

    time.sleep(30)
    return np.zeros(run.n)


def test_sys_exit_or_a_timeout_is_that_claims_error_and_the_others_run(hyp):
    import time

    start = time.perf_counter()
    got = run_file(hyp(claim("exits", "iso-exits") + claim("slow", "iso-slow") + claim("reader", "iso-logit-mean")))
    assert "raised SystemExit: 3" in got["exits"]
    assert "ran past its timeout of 0.5 s" in got["slow"]
    assert isinstance(got["reader"], float) and time.perf_counter() - start < 25


def test_a_timeout_is_seconds():
    with pytest.raises(ValueError, match=r"timeout=\.\.\.\) takes a number of seconds > 0"):
        circuitcheck.register_measure("iso-bad-timeout", timeout=0)


def test_a_role_inside_a_weight_expression_binds(hyp, tiny_model):
    """`OV[$head]` in a role's scan and `OV[$role]` in a claim: only a whole `$head` string was
    replaced, so binding failed. The scan picks the head whose OV norm is largest (by hand)."""
    role = "roles: {big: {best: {norm: {of: 'OV[$head]'}}, among: layer 1}}\n"
    path = hyp("- {id: big-ov, says: the role's OV norm, measure: {norm: {of: 'OV[$big]'}}, expect: record}\n",
               extra=role)
    with torch.no_grad():  # by hand: OV = W_V W_O, its Frobenius norm
        norms = {h: float((tiny_model.W_V[1, h] @ tiny_model.W_O[1, h]).norm()) for h in range(4)}
    got = run_file(path)["big-ov"]
    assert got == pytest.approx(max(norms.values()), rel=1e-6)


INTERRUPTS = """\
import numpy as np
import circuitcheck


@circuitcheck.register_measure("iso-ctrl-c", reads=[])
def ctrl_c(run):
    raise KeyboardInterrupt
"""


def test_ctrl_c_stops_the_run_with_exit_2_and_keeps_what_it_reported(pytester, hyp, tmp_path):
    import json

    from circuitcheck import cli

    first = hyp("- {id: first, says: first, measure: accuracy, expect: record}\n", name="a.hyp.yaml")
    second = hyp(claim("second", "iso-ctrl-c"), name="b.hyp.yaml")
    third = hyp("- {id: third, says: third, measure: accuracy, expect: record}\n", name="c.hyp.yaml")
    (tmp_path / "conftest.py").write_text(INTERRUPTS)
    report = tmp_path / "report.json"
    res = pytester.runpytest_subprocess(str(first), str(second), str(third), "-p", "no:cacheprovider",
                                        f"--cc-json={report}")
    assert res.ret == pytest.ExitCode.INTERRUPTED
    assert [c["id"] for c in json.loads(report.read_text())["claims"]] == ["first"]  # third never ran
    assert cli.main(["check", str(second)]) == 2
