"""The value cache is untrusted input (CI restores it from shared storage): an entry planted in it,
values, a bound's answers or a built prompt set, never makes a false claim pass; it is refused,
said (CacheWarning), and computed anew. Weights changed in place are hashed anew however their
size and mtime look. Each test plants what an attacker could write and asserts the false claim
still fails."""
from __future__ import annotations

import dataclasses
import json
import os
import stat

import numpy as np
import pytest

from circuitcheck.files import loader as H
from circuitcheck.runs import cache as C
from circuitcheck.runs import seal
from circuitcheck.session import Options, Session

# On the tiny random model: accuracy is about 0.02 and L0H1's previous-token score about 0.11.
FALSE_CLAIMS = """\
- id: accurate
  says: "false: the random model is right nine times in ten"
  measure: accuracy
  expect: {at_least: 0.9}
- id: previous-token-head
  says: "false: L0H1 attends to the previous token"
  measure: {head_score: {head: L0H1, pattern: previous_token}}
  expect: {at_least: 0.5}
"""


@pytest.fixture(autouse=True)
def own_key(monkeypatch, tmp_path):
    """This machine's key, in a key file of the test's own (never the user's)."""
    monkeypatch.delenv(seal.ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    seal.forget_key()
    yield
    seal.forget_key()


def verdicts(path, directory) -> tuple[dict, Session]:
    s = Session(Options(cache="on", cache_dir=str(directory)))
    loaded = H.load(path, store=s.cache)
    s.add(loaded)
    return {lc.claim.id: s.result(loaded.path, lc.claim.id).verdict for lc in loaded.claims}, s


def as_attacker(monkeypatch, write) -> None:
    """Run `write()` with another key: what a cache restored from shared storage may hold."""
    monkeypatch.setenv(seal.ENV, "the attacker's key, not this machine's")
    seal.forget_key()
    write()
    monkeypatch.delenv(seal.ENV)
    seal.forget_key()


def entries(directory, kind) -> list:
    return sorted(p for p in (directory / kind).rglob("*") if p.is_file())


def test_planted_values_do_not_pass_a_false_claim(hyp, tmp_path, monkeypatch):
    path, cache = hyp(FALSE_CLAIMS), tmp_path / "cache"
    before, _ = verdicts(path, cache)
    assert set(before.values()) == {"fail"}
    values = entries(cache, "values")
    assert len(values) == 2

    def plant():
        attacker = C.ValueCache(cache)
        for p in values:  # values that pass both claims, under the same names
            attacker.put(p.name.split(".")[0], np.ones(120))

    as_attacker(monkeypatch, plant)
    with pytest.warns(C.CacheWarning, match="values entry .* refused .* seal does not match"):
        after, s = verdicts(path, cache)
    assert after == before and s.cache.rejected == 2 and s.cache.hits == 0


def test_unsealed_or_moved_values_are_refused(hyp, tmp_path):
    path, cache = hyp(FALSE_CLAIMS), tmp_path / "cache"
    before, _ = verdicts(path, cache)
    a, b = entries(cache, "values")
    sealed_a, sealed_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(sealed_b)  # a genuine entry, moved under another entry's name
    np.save(b, np.ones(120))  # a plain .npy, as circuitcheck wrote them before entries were sealed
    with pytest.warns(C.CacheWarning) as said:
        after, s = verdicts(path, cache)
    assert after == before and s.cache.rejected == 2
    assert {"no seal", "seal does not match"} <= {w for r in said for w in ("no seal", "seal does not match")
                                                   if w in str(r.message)}
    assert a.read_bytes() == sealed_a and b.read_bytes() == sealed_b  # recomputed and stored again


def test_planted_answers_of_bounds_do_not_pass_a_false_claim(hyp, tmp_path, monkeypatch):
    path, cache = hyp(FALSE_CLAIMS), tmp_path / "cache"
    before, _ = verdicts(path, cache)
    answers = entries(cache, "answers")
    assert answers

    def passing(name: str) -> float:  # every bound far above the threshold, every p-value tiny
        return {"lower": 0.9, "upper": 0.95, "p_low": 1e-9, "p_high": 1.0}.get(name.split(":")[0], 0.9)

    def plant():
        attacker = C.ValueCache(cache)
        for p in answers:
            known = json.loads(p.read_bytes().split(b"\n", 2)[2])
            attacker._write("answers", p.stem, p, json.dumps({k: passing(k) for k in known}).encode())

    as_attacker(monkeypatch, plant)
    with pytest.warns(C.CacheWarning, match="answers entry .* refused"):
        after, s = verdicts(path, cache)
    assert after == before and s.cache.rejected == len(answers)


def test_answers_of_the_wrong_types_are_refused(tmp_path):
    store = C.ValueCache(tmp_path)
    for bad in ([1, 2], {"lower:0.01": "0.9"}, {"lower:0.01": [0.9]}, {"lower:0.01": True}):
        key = C.digest("some data", json.dumps(bad))
        store._write("answers", key, store._answers_path(key), json.dumps(bad).encode())  # sealed, but not answers
        with pytest.warns(C.CacheWarning, match="not a map of names to numbers"):
            assert store._read_answers(key) == {}
        store._said.clear()


def test_values_of_the_wrong_dtype_are_refused(tmp_path):
    store = C.ValueCache(tmp_path)
    for bad in (np.array(["0.9", "1.0"]), np.ones(2, dtype=complex), np.ones((2, 2, 2))):
        store.put("cd" * 32, bad)
        with pytest.warns(C.CacheWarning, match="not numbers"):
            assert store.get("cd" * 32) is None
        store._said.clear()


def test_a_cache_directory_that_is_a_file_is_said_and_the_run_goes_on(hyp, tmp_path):
    path = hyp(FALSE_CLAIMS)
    (tmp_path / "cache").write_text("not a directory")
    with pytest.warns(C.CacheWarning, match="the value cache cannot be written"):
        got, s = verdicts(path, tmp_path / "cache")
    assert set(got.values()) == {"fail"} and s.cache.hits == 0 and s.cache.unwritable


def test_a_planted_prompt_set_does_not_pass_a_false_claim(tmp_path, monkeypatch):
    from circuitcheck import prompts as P

    monkeypatch.setattr(H, "_GENERATED", {})
    path = tmp_path / "t.hyp.yaml"  # zoo:ioi names the indirect object: accuracy is 1.00
    path.write_text("""\
model: zoo:ioi
prompts:
  generator: text
  template: "When {IO} and {S} went to the store, {S} gave a drink to"
  slots: {IO: &names [Mary, John, Alice, Bob, Tom, Anna, Kate, James, Sarah, David], S: *names}
  answer: IO
  counterfactual: S
  n: 60
claims:
- {id: rarely-right, says: "false: the model rarely names the indirect object", measure: accuracy,
   expect: {at_most: 0.5}}
""")
    before, _ = verdicts(path, tmp_path / "cache")
    assert before == {"rarely-right": "fail"}
    (stored,) = entries(tmp_path / "cache", "prompts")
    real = C.read_prompt_set(__import__("io").BytesIO(stored.read_bytes().split(b"\n", 2)[2]))
    forged = dataclasses.replace(real, target_tok=real.target_cf)  # the subject as the answer: accuracy 0
    assert isinstance(forged, P.PromptSet)

    def plant():
        C.ValueCache(tmp_path / "cache")._write("prompts", stored.stem, stored, C.prompt_set_bytes(forged))

    as_attacker(monkeypatch, plant)
    monkeypatch.setattr(H, "_GENERATED", {})
    with pytest.warns(C.CacheWarning, match="prompts entry .* refused"):
        after, s = verdicts(path, tmp_path / "cache")
    assert after == before and s.cache.rejected == 1


def statistics(path, directory, mode="on") -> tuple[dict, Session]:
    s = Session(Options(cache=mode, cache_dir=str(directory)))
    loaded = H.load(path)
    s.add(loaded)
    return {lc.claim.id: s.result(loaded.path, lc.claim.id).main.estimate.statistic for lc in loaded.claims}, s


def test_weights_changed_in_place_with_the_same_size_and_mtime_are_hashed_anew(hyp, tmp_path):
    from conftest import save_model

    from circuitcheck import models

    path = hyp(FALSE_CLAIMS)
    weights = tmp_path / "tiny0" / "model.safetensors"
    before, _ = statistics(path, tmp_path / "cache")
    st = weights.stat()
    other = save_model(tmp_path / "other", json.loads((weights.parent / "config.json").read_text()), seed=3)
    with open(weights, "r+b") as f:  # in place: same inode, same size
        f.write((other / "model.safetensors").read_bytes())
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (weights.stat().st_ino, weights.stat().st_size, weights.stat().st_mtime_ns) == (
        st.st_ino, st.st_size, st.st_mtime_ns)
    models.loading._CACHE.clear()
    after, s = statistics(path, tmp_path / "cache")
    models.loading._CACHE.clear()
    uncached, _ = statistics(path, tmp_path / "cache", mode="off")
    assert s.cache.hits == 0 and after == uncached != before


def test_the_key_file_is_made_private_and_an_open_one_is_not_trusted(tmp_path):
    key, where = seal.key()
    assert where == str(seal.key_path()) and len(key) == 64
    assert stat.S_IMODE(seal.key_path().stat().st_mode) == 0o600
    seal.forget_key()
    assert seal.key()[0] == key  # the same key on the next run
    seal.key_path().chmod(0o644)
    seal.forget_key()
    other, where = seal.key()
    assert other != key and "this run only" in where and "chmod 600" in where
