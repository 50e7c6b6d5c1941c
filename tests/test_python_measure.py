"""`measure: {python: NAME}`: registered Python measures, checked against a hand forward pass of the
tiny model with MLPs and LayerNorm (tests/manual.py) and against the built-in measures; their
errors stay in their claim; their values are never served stale from the cache; the README's
worked example runs exactly as written there."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import circuitcheck
import manual
from circuitcheck.files import loader as H
from circuitcheck.language import registry
from circuitcheck.session import Options, Session

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = "{generator: repeated_tokens, n: 120, seed: 1, length: 6}"


@circuitcheck.register_measure("t-pattern-5-4", reads=["blocks.1.attn.hook_pattern"], range=(0, 1))
def pattern_5_4(run, head=2):
    return run["blocks.1.attn.hook_pattern"][:, head, 5, 4]


@circuitcheck.register_measure("t-pattern-of", reads=lambda cfg, layer, **_: [f"blocks.{layer}.attn.hook_pattern"],
                               range=(0, 1))
def pattern_of(run, layer, head):
    return run[f"blocks.{layer}.attn.hook_pattern"][:, head, 5, 4]


@circuitcheck.register_measure("t-post-mean", reads=["blocks.0.mlp.hook_post"])
def post_mean(run):
    return run["blocks.0.mlp.hook_post"].mean((1, 2))


@circuitcheck.register_measure("t-undeclared", reads=["blocks.0.mlp.hook_post"])
def undeclared(run):
    return run["blocks.1.mlp.hook_post"].mean((1, 2))


@circuitcheck.register_measure("t-raises", reads=[])
def raises(run):
    scale = 0
    return run.logits[:, 0, 0] / scale if scale else {}["missing"]


@circuitcheck.register_measure("t-short", reads=[])
def short(run):
    return np.zeros(run.n - 1)


@circuitcheck.register_measure("t-nan", reads=[])
def nan(run):
    out = np.ones(run.n)
    out[3] = np.nan
    return out


@circuitcheck.register_measure("t-out-of-range", reads=[], range=(0, 1))
def out_of_range(run):
    return np.full(run.n, 1.5)


@circuitcheck.register_measure("t-w-norm", weights_only=True)
def w_norm(model, layer):
    return model.W_O[layer].norm()


@circuitcheck.register_measure("t-w-head-norms", weights_only=True)
def w_head_norms(model):
    return model.W_O[0].flatten(1).norm(dim=-1)  # one norm per head of layer 0


def values(path, claim_index=0):
    loaded = H.load(path)
    session = Session()
    session.add(loaded)
    lc = loaded.claims[claim_index]
    return session.values(loaded, lc.claim, lc.cases[0])[0], session, loaded


def one(measure: str, expect: str = "record", cid: str = "c") -> str:
    return f"""\
    - id: {cid}
      says: "a python measure"
      measure: {measure}
      expect: {expect}
    """.rstrip(" ")


def test_values_equal_the_hand_forward_and_the_built_in_measure(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp(one("{python: t-pattern-5-4}") + one("{attention: {head: L1H2, from: 5, to: 4}}", cid="b")
                   + one("{python: {name: t-pattern-of, args: {layer: 0, head: 1}}}", cid="d"), prompts=PROMPTS)
    value, session, loaded = values(path)
    ps = H.prompt_set(loaded, loaded.claims[0].cases[0].prompts_key, loaded.claims[0].cases[0].prompts)
    _, hand = manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens))
    np.testing.assert_allclose(value, hand["pattern1"][:, 2, 5, 4].numpy(), atol=1e-5)
    builtin, _, _ = values(path, 1)
    np.testing.assert_array_equal(value, builtin)
    with_args, _, _ = values(path, 2)
    np.testing.assert_allclose(with_args, hand["pattern0"][:, 1, 5, 4].numpy(), atol=1e-5)


def test_declared_hooks_are_planned_with_the_other_claims(hyp_mlp, tiny_mlp_model):
    """The python measures' hooks join one planned clean run: one forward pass for both, each reading
    only its own hooks. (Streaming built-in measures run apart, chunk by chunk.)"""
    path = hyp_mlp(one("{python: t-pattern-5-4}") + one("{python: t-post-mean}", cid="b")
                   + one("{python: {name: t-pattern-of, args: {layer: 0, head: 1}}}", cid="d"), prompts=PROMPTS)
    session = Session()
    loaded = H.load(path)
    session.add(loaded)
    results = [session.result(loaded.path, lc.claim.id) for lc in loaded.claims]
    assert [r.verdict for r in results] == ["recorded"] * 3
    assert session.forward_passes() == 1
    ps = H.prompt_set(loaded, loaded.claims[0].cases[0].prompts_key, loaded.claims[0].cases[0].prompts)
    _, hand = manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens))
    assert results[1].main.estimate.statistic == pytest.approx(hand["post0"].mean().item(), abs=1e-5)


def test_a_declared_range_gets_the_betting_bound_and_none_is_unbounded(hyp_mlp):
    path = hyp_mlp(one("{python: t-pattern-5-4}", "{at_least: 0}") + one("{python: t-post-mean}", "{at_least: -10}",
                                                                         cid="b"), prompts=PROMPTS)
    bounded, unbounded = circuitcheck.check(path)
    assert "betting" in bounded.main.estimate.method and "[0, 1]" in bounded.main.estimate.method
    assert "skew-corrected t" in unbounded.main.estimate.method


@pytest.mark.parametrize("name, words", [
    ("t-raises", ["python measure 't-raises'", "raises at", "test_python_measure.py:", "KeyError", "'missing'",
                  "(at "]),
    ("t-short", ["returned shape (119,), not one value per prompt (120,)"]),
    ("t-nan", ["returned nan at index 3", "finite"]),
    ("t-out-of-range", ["returned 1.5 at index 0, outside its declared range (0, 1)"]),
    ("t-undeclared", ["'blocks.1.mlp.hook_post' was not read in this run; declare it in reads=[...]"]),
])
def test_what_the_function_does_wrong_is_its_claims_error(hyp_mlp, name, words):
    path = hyp_mlp(one(f"{{python: {name}}}", "{at_least: 0}") + one("accuracy", "{at_least: 0}", cid="fine"),
                   prompts=PROMPTS)
    broken, fine = circuitcheck.check(path)
    assert broken.verdict == "error" and fine.verdict == "pass"
    for w in words:
        assert w in broken.error, f"{w!r} not in {broken.error!r}"
    assert "internal error" not in broken.error


def test_the_error_names_the_line_that_raised():
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "{}[\"missing\"]" in text)
    reg = registry.measure("t-raises")
    from circuitcheck.measures.python import invoke

    with pytest.raises(registry.CodeError) as info:
        invoke(reg, None, {})
    assert f"test_python_measure.py:{line})" in str(info.value)


def test_weights_only_measures_are_exact(hyp_mlp, tiny_mlp_model):
    norm = tiny_mlp_model.W_O[1].norm().item()
    path = hyp_mlp(one("{python: {name: t-w-norm, args: {layer: 1}}}", f"{{at_least: {norm - 1e-3}}}")
                   + one("{python: {name: t-w-norm, args: {layer: 1}}}", f"{{at_least: {norm + 1e-3}}}", cid="b"),
                   prompts=PROMPTS)
    holds, fails = circuitcheck.check(path)
    assert (holds.verdict, fails.verdict) == ("pass", "fail")
    assert holds.main.estimate.statistic == pytest.approx(norm, rel=1e-6)
    assert holds.main.estimate.low == holds.main.estimate.high
    norms = tiny_mlp_model.W_O[0].flatten(1).norm(dim=-1)
    top = int(norms.argmax())
    other = int(norms.argmin())
    path = hyp_mlp(one("{python: t-w-head-norms}", f"{{order: {{largest: [{top}]}}}}")
                   + one("{python: t-w-head-norms}", f"{{order: {{largest: [{other}]}}}}", cid="b")
                   + one("{python: t-w-head-norms}", "{at_least: 0}", cid="d"), prompts=PROMPTS, name="v.hyp.yaml")
    holds, fails, vector = circuitcheck.check(path)
    assert (holds.verdict, fails.verdict, vector.verdict) == ("pass", "fail", "error")
    assert "returned 4 values: judge a vector with `expect: {order" in vector.error


def test_weights_only_measures_refuse_interventions(hyp_mlp):
    path = hyp_mlp("""\
    - id: c
      says: "a weights-only measure under an ablation"
      under: {ablate: {heads: [L0H1]}}
      measure: {python: {name: t-w-norm, args: {layer: 1}}}
      expect: {at_least: 0}
    """, prompts=PROMPTS)
    with pytest.raises(circuitcheck.HypothesisError, match="reads the weights alone"):
        H.load(path)


def test_an_unregistered_name_is_a_collection_error_with_did_you_mean(hyp_mlp):
    path = hyp_mlp(one("{python: t-pattern-5-5}"), prompts=PROMPTS)
    with pytest.raises(circuitcheck.HypothesisError) as info:
        H.load(path)
    text = str(info.value)
    assert ":7: claims[0].measure.python: no measure named 't-pattern-5-5' is registered" in text
    assert "did you mean 't-pattern-5-4'?" in text


def test_heads_in_args_are_bound_by_quantifiers(hyp_mlp, tiny_mlp_model):
    path = hyp_mlp("""\
    - id: c
      says: "each head's attention from 5 to 4"
      for: {all: {values: {h: [0, 3]}}}
      measure: {python: {name: t-pattern-5-4, args: {head: $h}}}
      expect: record
    """, prompts=PROMPTS)
    result, = circuitcheck.check(path)
    loaded = H.load(path)
    ps = H.prompt_set(loaded, loaded.claims[0].cases[0].prompts_key, loaded.claims[0].cases[0].prompts)
    _, hand = manual.forward_mlp(tiny_mlp_model, torch.as_tensor(ps.tokens))
    got = sorted(c.estimate.statistic for c in result.cases)
    want = sorted(hand["pattern1"][:, h, 5, 4].mean().item() for h in (0, 3))
    assert got == pytest.approx(want, abs=1e-5)


# ---------------------------------------------------------------- the value cache
def test_python_values_are_never_served_stale(hyp_mlp, tmp_path):
    """With the cache on, a rerun after the function changed gives the new values; the built-in
    measures of the same file are cached as usual."""
    scale = {"k": 1.0}

    @circuitcheck.register_measure("t-scaled", reads=[])
    def scaled(run):
        return np.full(run.n, scale["k"])

    path = hyp_mlp(one("{python: t-scaled}") + one("accuracy", cid="b"), prompts=PROMPTS)
    options = Options(cache="on", cache_dir=str(tmp_path / "cache"))
    first = circuitcheck.check(path, options)
    scale["k"] = 2.0
    session = Session(options)
    loaded = H.load(path)
    session.add(loaded)
    again = [session.result(loaded.path, lc.claim.id) for lc in loaded.claims]
    assert first[0].main.estimate.statistic == 1.0 and again[0].main.estimate.statistic == 2.0
    assert session.cache.hits == 1  # accuracy read back; the python measure recomputed
    from circuitcheck.files.spec import Measure

    assert session.cache.key(loaded.model_source, [], (), Measure.model_validate({"python": "t-scaled"})) is None
    assert session.cache.key(loaded.model_source, [], (), Measure.model_validate("accuracy")) is not None


def _import_file(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_measure_registered_with_cache_is_read_back_until_its_file_changes(hyp_mlp, tmp_path):
    """`cache=True`: a rerun reads the values back without calling the function; an edit of the
    file the function is written in (here its constant) computes them anew."""
    source = tmp_path / "cached_measure.py"
    path = hyp_mlp(one("{python: t-cached}"), prompts=PROMPTS)
    options = Options(cache="on", cache_dir=str(tmp_path / "cache"))

    def run(k: float, version: int):
        source.write_text("import numpy as np\nimport circuitcheck\nCALLS = []\n\n\n"
                          "@circuitcheck.register_measure('t-cached', reads=[], cache=True)\n"
                          f"def cached(run):\n    CALLS.append(1)\n    return np.full(run.n, {k})\n")
        module = _import_file(source, f"cached_measure_{version}")
        result, = circuitcheck.check(path, options)
        return result.main.estimate.statistic, module.CALLS

    assert run(1.0, 1) == (1.0, [1])  # computed and stored
    assert run(1.0, 2) == (1.0, [])  # same source: read back, the function not called
    assert run(2.0, 3) == (2.0, [1])  # the file changed: computed anew


def test_a_cached_measure_without_a_source_file_is_never_cached(tmp_path):
    """A function with no file to hash (a notebook cell, exec) cannot promise anything: no key."""
    namespace = {"np": np}
    exec(compile("def f(run):\n    return np.zeros(run.n)\n", "<cell>", "exec"), namespace)
    circuitcheck.register_measure("t-cell", reads=[], cache=True)(namespace["f"])
    from circuitcheck.runs.cache import ValueCache
    from circuitcheck.files.spec import Measure

    assert registry.measure("t-cell").source_hash() is None
    cache = ValueCache(tmp_path, "on")
    with pytest.warns(circuitcheck.runs.cache.CacheWarning, match="'t-cell' .* computed anew each run: f has no source"):
        assert cache._python_source(Measure.model_validate({"python": "t-cell"}).python) is None


# ---------------------------------------------------------------- the README's worked example
def readme_block(lang: str, first_line: str) -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"README.md should have one ```{lang} block starting {first_line!r}"
    return found[0]


def test_the_readme_example_runs_as_written(tmp_path):
    """The conftest.py and hypothesis file of README's 'Measures in Python', exactly as written there."""
    from circuitcheck.files.conftests import load_beside

    (tmp_path / "conftest.py").write_text(readme_block("python", "# conftest.py (beside l2h0.hyp.yaml)\n"))
    path = tmp_path / "l2h0.hyp.yaml"
    path.write_text(readme_block("yaml", "# l2h0.hyp.yaml\n"))
    load_beside(path)
    result, = circuitcheck.check(path)
    assert result.verdict == "pass", result.error
    m = re.search(r"measured ([\d.]+) \(one-sided 95% bound ([\d.]+)\)", path.read_text())
    assert result.main.estimate.statistic == pytest.approx(float(m[1]), abs=0.005)
    assert result.main.estimate.low == pytest.approx(float(m[2]), abs=0.005)
