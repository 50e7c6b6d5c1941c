"""The value cache for reruns: a rerun reads values back without torch; a change to the weights,
the prompts, the interventions or circuitcheck's code computes them anew."""
from __future__ import annotations

import json
import subprocess
import sys
from xml.etree import ElementTree

import numpy as np
import pytest

from circuitcheck.runs import cache as C
from circuitcheck.files import loader as H
from circuitcheck.session import Options, Session

CLAIMS = """\
- id: accuracy-low
  says: "a random model is rarely right"
  measure: accuracy
  expect: {at_most: 0.3}
- id: ablation-changes-loss
  says: "ablating a head moves the loss"
  under: {ablate: {heads: [L1H0], method: mean}}
  measure: loss
  expect: {change: {at_least: -100}}
- id: head-attends
  says: "a head's attention to the previous token"
  measure: {head_score: {head: L0H1, pattern: previous_token}}
  expect: {at_least: 0}
"""

# Runs pytest in a fresh interpreter and says whether torch was imported.
RUN = "import sys, pytest; rc = pytest.main(sys.argv[1:]); print('TORCH', 'torch' in sys.modules); sys.exit(rc)"


def run_pytest(cwd, *args) -> dict:
    """rc, whether torch was imported, and each claim's numbers from the JUnit XML."""
    xml = cwd / "out.xml"
    res = subprocess.run([sys.executable, "-c", RUN, *args, "-q", "-p", "no:xdist", f"--junitxml={xml}"],
                         cwd=cwd, capture_output=True, text=True)
    assert "TORCH" in res.stdout, res.stdout + res.stderr
    numbers = {}
    for case in ElementTree.parse(xml).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        numbers[case.get("name")] = tuple(props.get(k) for k in ("value", "ci_low", "ci_high", "verdict"))
    return {"rc": res.returncode, "torch": "TORCH True" in res.stdout, "claims": numbers}


def cached_files(root) -> list:
    return sorted((root / ".pytest_cache" / "d" / "circuitcheck" / "values").rglob("*.npy"))


def test_a_rerun_reads_the_cache_without_torch_and_gives_the_same_numbers(hyp, tmp_path):
    path = hyp(CLAIMS)
    first = run_pytest(tmp_path, str(path))
    assert first["rc"] == 0 and first["torch"] and len(first["claims"]) == 3
    assert len(cached_files(tmp_path)) == 4  # accuracy, clean and ablated loss, head score
    second = run_pytest(tmp_path, str(path))
    assert second == dict(first, torch=False)


def test_no_cache_without_pytests_cache_or_when_off(pytester, hyp, tmp_path):
    path, here = hyp(CLAIMS), ("-o", f"cache_dir={tmp_path / '.pytest_cache'}")
    pytester.runpytest(str(path), "-p", "no:cacheprovider", *here).assert_outcomes(passed=3)
    pytester.runpytest(str(path), "--cc-cache=off", *here).assert_outcomes(passed=3)
    assert cached_files(tmp_path) == []
    pytester.runpytest(str(path), *here).assert_outcomes(passed=3)
    written = {p: p.stat().st_mtime_ns for p in cached_files(tmp_path)}
    assert len(written) == 4
    pytester.runpytest(str(path), *here).assert_outcomes(passed=3)  # read back, not rewritten
    assert {p: p.stat().st_mtime_ns for p in cached_files(tmp_path)} == written
    pytester.runpytest(str(path), "--cache-clear", *here).assert_outcomes(passed=3)  # emptied, then written anew
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())


def session(directory, mode="on") -> Session:
    return Session(Options(cache=mode, cache_dir=str(directory)))


def check(path, directory, mode="on"):
    s = session(directory, mode)
    loaded = H.load(path)
    s.add(loaded)
    results = {lc.claim.id: s.result(loaded.path, lc.claim.id) for lc in loaded.claims}
    return s, {k: (r.main.estimate.statistic, r.main.estimate.low, r.main.estimate.high) for k, r in results.items()}


def test_in_process_rerun_runs_no_forward_pass(hyp, tmp_path):
    path = hyp(CLAIMS)
    first, numbers = check(path, tmp_path / "c")
    assert first.forward_passes() > 0 and first.cache.misses == 4 and first.cache.hits == 0
    again, same = check(path, tmp_path / "c")
    assert again.forward_passes() == 0 and again.cache.hits == 4 and same == numbers
    # read: reads but never writes; write: recomputes and stores
    fresh, _ = check(path, tmp_path / "r", mode="read")
    assert fresh.forward_passes() > 0 and not list((tmp_path / "r").rglob("*.npy"))
    rewrite, _ = check(path, tmp_path / "c", mode="write")
    assert rewrite.forward_passes() > 0 and rewrite.cache.hits == 0


def test_changed_weights_are_computed_anew(hyp, tmp_path, tiny_dir):
    from conftest import save_model

    path = hyp(CLAIMS)
    model_dir = tmp_path / tiny_dir.name  # the copy beside the file that `hyp` writes
    _, before = check(path, tmp_path / "c")
    save_model(model_dir, json.loads((model_dir / "config.json").read_text()), seed=1)
    _clear_loaded_models()
    changed, after = check(path, tmp_path / "c")
    assert changed.cache.hits == 0 and changed.forward_passes() > 0 and after != before


def test_changed_prompts_are_computed_anew(hyp, tmp_path):
    _, before = check(hyp(CLAIMS, prompts="{generator: repeated_tokens, n: 120, seed: 1}"), tmp_path / "c")
    changed, after = check(hyp(CLAIMS, prompts="{generator: repeated_tokens, n: 120, seed: 2}"), tmp_path / "c")
    assert changed.cache.hits == 0 and after != before


def test_changed_code_changes_every_key(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "measures.py").write_text("A = 1\n")
    monkeypatch.setattr(C, "PACKAGE", package)
    monkeypatch.setattr(C, "_CODE", [])
    before = C.code_version()
    (package / "measures.py").write_text("A = 2\n")
    monkeypatch.setattr(C, "_CODE", [])
    assert C.code_version() != before


def test_keys_differ_by_interventions_measure_and_settings(hyp, tmp_path):
    path = hyp(CLAIMS)
    s = session(tmp_path)
    loaded = H.load(path)
    s.add(loaded)
    ablated = loaded.claims[1].cases[0]
    keys = {s.run_values._cache_key(loaded, lc.cases[0], lc.cases[0].under) for lc in loaded.claims}
    keys.add(s.run_values._cache_key(loaded, ablated, ()))  # the same measure on the clean run
    assert len(keys) == 4 and None not in keys
    other = Session(Options(batch_size=7, cache="on", cache_dir=str(tmp_path)))
    other.add(loaded)
    assert other.run_values._cache_key(loaded, ablated, ()) not in keys


def test_a_factory_model_is_never_cached():
    from circuitcheck.models import ModelSource

    assert C.model_fingerprint(ModelSource("factory", "my_model")) is None
    assert C.model_fingerprint(ModelSource("hf", "gpt2")) is None  # a hub name: files outside the project


def test_a_damaged_cache_file_is_recomputed(tmp_path):
    vc = C.ValueCache(tmp_path)
    vc.put("ab" * 32, np.arange(3.0))
    assert np.array_equal(vc.get("ab" * 32), np.arange(3.0))
    entry = next(tmp_path.rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:-8])  # cut short by a crash: its seal no longer matches
    with pytest.warns(C.CacheWarning, match="values entry .* refused .* seal does not match"):
        assert vc.get("ab" * 32) is None
    assert vc.rejected == 1


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="on, read, write, off"):
        C.ValueCache(tmp_path, "sometimes")


def _clear_loaded_models():
    from circuitcheck import models

    models.loading._CACHE.clear()


def test_every_field_of_a_prompt_set_is_in_its_hash():
    import dataclasses

    from circuitcheck import prompts

    ps = prompts.build("repeated_tokens", 8, 0)
    changed = {"tokens": ps.tokens + 1, "positions": {**ps.positions, "extra": ps.tokens[:, 0]},
               "target_pos": ps.target_pos * 0, "target_tok": ps.target_tok + 1, "source": "other",
               "extra": {"k": 1}, "target_cf": ps.target_tok, "target_valid": ps.target_tok > 0,
               "mask": np.ones_like(ps.tokens), "fields": {"label": np.array(list("abcdefgh"), dtype=object)}}
    names = {f.name for f in dataclasses.fields(ps)}
    assert names <= set(changed), f"add the new fields {names - set(changed)} here"
    hashes = {C.prompt_set_hash(dataclasses.replace(ps, **{k: changed[k]})) for k in names}
    assert len(hashes) == len(names) and C.prompt_set_hash(ps) not in hashes


ROLE = "roles: {prev: {best: {head_score: {head: $head, pattern: previous_token}}, among: layer 0}}\n"
ROLE_CLAIM = """\
- id: role-attends
  says: "the head that fills the role attends to the previous token"
  measure: {head_score: {head: $prev, pattern: previous_token}}
  expect: {at_least: 0}
"""


def test_a_rerun_binds_roles_from_the_cache_without_torch(hyp, tmp_path):
    """The role scan's candidate scores are values like any other: a rerun reads them back."""
    path = hyp(CLAIMS + ROLE_CLAIM, extra=ROLE)
    first = run_pytest(tmp_path, str(path))
    assert first["rc"] == 0 and first["torch"] and len(first["claims"]) == 4
    second = run_pytest(tmp_path, str(path))
    assert second == dict(first, torch=False)


def bounds(seed: int = 0, shift: float = 0.0) -> list:
    """One bound of each kind whose answers are remembered, on fixed random data."""
    from circuitcheck.judge import correlation
    from circuitcheck.judge import stats as S

    rng = np.random.default_rng(seed)
    unit = rng.beta(2, 5, 300) + shift
    wide = rng.normal(1.0, 2.0, 300)
    curve = np.clip(np.linspace(0.1, 0.9, 5)[:, None] + rng.normal(0, 0.2, (5, 300)), 0, 1)
    return [S.Betting(unit, 0, 1), S.SkewT(wide), S.Binomial(40, 120), S.R2(np.arange(5.0), curve),
            correlation.Correlation(unit, wide, 0, "x"),
            S.Crossing(np.arange(5.0), [S.Betting(row, 0, 1) for row in curve], 0.5, True, "linear", "crossing")]


def answers(bs) -> list:
    return [(b.at(0.01), b.at(0.2), b.p_low(0.3), b.p_high(0.6), b.sd) for b in bs]


def test_bounds_answer_from_the_cache_with_the_same_numbers(tmp_path, monkeypatch):
    from circuitcheck.judge import stats as S

    plain = answers(bounds())  # no store: every answer computed
    store = C.ValueCache(tmp_path)
    with S.remembering(store):
        first = answers(bounds())
    store.flush()
    assert first == plain and list((tmp_path / "answers").rglob("*.json"))

    def computes(*args, **kwargs):
        raise AssertionError("computed, not read back")

    for name in ("_edge", "_p"):
        monkeypatch.setattr(S.Betting, name, computes)
    with S.remembering(C.ValueCache(tmp_path)):  # a new run: no bisection, no resampling
        assert answers(bounds()) == plain
        with pytest.raises(AssertionError, match="computed"):  # other data: answered anew
            answers(bounds(shift=1e-12))
    with S.remembering(C.ValueCache(tmp_path, mode="write")):  # write: recomputes
        with pytest.raises(AssertionError, match="computed"):
            answers(bounds())
