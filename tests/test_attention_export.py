"""Beside the HTML report: its attention examples in the shape CircuitsVis's `attention_patterns`
takes, and a circuitsvis page where the optional package is installed (a stand-in here: the suite
never needs circuitsvis)."""
from __future__ import annotations

import json
import sys
import types

import numpy as np

from test_report_html import CLAIMS


def test_attention_examples_are_written_as_circuitsvis_takes_them(pytester, hyp, tmp_path, monkeypatch):
    path = hyp(CLAIMS, prompts="{generator: repeated_tokens, n: 60, seed: 1}")
    page = tmp_path / "report.html"
    monkeypatch.setitem(sys.modules, "circuitsvis", None)  # not installed: `import circuitsvis` fails
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider", f"--cc-html={page}")
    res.assert_outcomes(passed=3, failed=1)
    assert "report.attention.json (no circuitsvis here" in res.stdout.str()
    assert not (tmp_path / "report.circuitsvis.html").exists()
    data = json.loads((tmp_path / "report.attention.json").read_text())
    assert data["format"] == "circuitcheck-attention/1"
    # the head claims: prev-head (L0H1) and the sweep (L1H0); the accuracy claims read no head
    assert sorted((p["claim"], p["head"]) for p in data["patterns"]) == [("prev-head", "L0H1"),
                                                                       ("scaling-moves-attention", "L1H0")]
    for p in data["patterns"]:
        a = np.array(p["attention"])
        n = len(p["tokens"])
        assert a.shape == (1, n, n)  # [heads, query, key], as attention_patterns takes it
        assert np.allclose(a.sum(-1), 1, atol=n * 1e-4)  # each query's weights: softmax rows, 4 decimals each
        assert not np.triu(a[0], 1).any()  # causal: no query reads a later key
        assert p["file"].endswith("t.hyp.yaml") and not p["file"].startswith("/")  # relative to the root
        assert p["prompts"] == 60

    calls = []
    package, module = types.ModuleType("circuitsvis"), types.ModuleType("circuitsvis.attention")
    module.attention_patterns = lambda tokens, attention: calls.append((tokens, attention)) or "<div>VIEW</div>"
    package.attention = module
    monkeypatch.setitem(sys.modules, "circuitsvis", package)
    monkeypatch.setitem(sys.modules, "circuitsvis.attention", module)
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider", f"--cc-html={page}")
    assert "report.attention.json and " in res.stdout.str()
    view = (tmp_path / "report.circuitsvis.html").read_text()
    assert view.count("<div>VIEW</div>") == 2 and "prev-head: L0H1, averaged over 60 prompts" in view
    assert calls == [(p["tokens"], p["attention"]) for p in data["patterns"]]
