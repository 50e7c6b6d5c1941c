"""Built prompt sets are stored beside the values (cache.ValueCache.prompts): a rerun reads them back,
field for field the same, instead of reading JSONL and tokenising; a changed JSONL file, tokenizer,
generator argument or circuitcheck source builds them anew."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from circuitcheck.runs import cache as C
from circuitcheck.files import loader as H
from circuitcheck import prompts as P

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "hypotheses").glob("*.hyp.yaml"))


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(H, "_GENERATED", {})  # generated sets are memoised per process


@pytest.fixture
def registered():
    import importlib.util

    spec = importlib.util.spec_from_file_location("shipped_conftest", ROOT / "hypotheses" / "conftest.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # the `python:` measures a file names


def all_sets(loaded) -> list:
    return [H.prompt_set(loaded, case.prompts_key, case.prompts) for lc in loaded.claims for case in lc.cases]


def builds(monkeypatch) -> list:
    """Every call of a generator from now on."""
    calls = []
    real = P.build
    monkeypatch.setattr(P, "build", lambda gen, *a, **k: calls.append(gen) or real(gen, *a, **k))
    return calls


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_prompt_set_reads_back_field_for_field(path, tmp_path, monkeypatch, registered):
    plain = all_sets(H.load(path))
    monkeypatch.setattr(H, "_GENERATED", {})
    store = C.ValueCache(tmp_path)
    first = all_sets(H.load(path, store=store))
    monkeypatch.setattr(H, "_GENERATED", {})
    calls = builds(monkeypatch)
    again = all_sets(H.load(path, store=C.ValueCache(tmp_path)))
    assert calls == []  # nothing built: every set was stored and read back
    for a, b, c in zip(plain, first, again):
        assert C.prompt_set_hash(a) == C.prompt_set_hash(b) == C.prompt_set_hash(c)
        assert list(a.positions) == list(c.positions) and a.extra == c.extra
        assert all(type(a.extra[k]) is type(c.extra[k]) for k in a.extra)


JSONL = """\
{"text": "When {S} and {IO} went to the {PLACE} , {S} gave a {OBJECT} to", "slots": {"IO": "Grace", "S": "Sam", "PLACE": "garden", "OBJECT": "gift"}, "answer": "Grace", "counterfactual": "Sam", "fields": {"order": "ABBA"}}
{"text": "When {IO} and {S} went to the {PLACE} , {S} gave a {OBJECT} to", "slots": {"IO": "David", "S": "Mike", "PLACE": "store", "OBJECT": "drink"}, "answer": "David", "counterfactual": "Mike", "fields": {"order": "BABA"}}
"""


def jsonl_file(tmp_path, text=JSONL) -> Path:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(text)
    path = tmp_path / "t.hyp.yaml"
    path.write_text("model: zoo:ioi\nprompts: {generator: jsonl, path: rows.jsonl}\nclaims:\n"
                    "- {id: acc, says: accuracy, measure: accuracy, expect: {at_least: 0}}\n")
    return path


def test_changed_rows_or_tokenizer_are_built_anew(tmp_path, monkeypatch):
    path, store = jsonl_file(tmp_path), C.ValueCache(tmp_path / "cache")
    first = all_sets(H.load(path, store=store))[0]
    shipped_tokenizer = Path(H.models.tokenizer_dir(H.load(path).model_source))
    calls = builds(monkeypatch)
    all_sets(H.load(path, store=store))
    assert calls == []
    path.with_name("rows.jsonl").write_text(JSONL.replace("Grace", "Sarah"))  # a changed row
    changed = all_sets(H.load(path, store=store))[0]
    assert calls == ["jsonl"] and not np.array_equal(changed.tokens, first.tokens)
    tok = tmp_path / "tok"  # the same tokenizer, copied and then changed: its bytes are hashed
    shutil.copytree(shipped_tokenizer, tok)
    path.write_text(path.read_text().replace("path: rows.jsonl", f"path: rows.jsonl, tokenizer: tok/tokenizer.json"))
    all_sets(H.load(path, store=store))
    assert calls == ["jsonl"] * 2  # another tokenizer path: another key
    all_sets(H.load(path, store=store))
    assert calls == ["jsonl"] * 2
    config = tok / "tokenizer_config.json"
    config.write_text(config.read_text() + " ")
    all_sets(H.load(path, store=store))
    assert calls == ["jsonl"] * 3


def test_changed_code_or_arguments_are_built_anew(tmp_path, monkeypatch):
    path, store = jsonl_file(tmp_path), C.ValueCache(tmp_path / "cache")
    all_sets(H.load(path, store=store))
    calls = builds(monkeypatch)
    monkeypatch.setattr(C, "_CODE", ["another version of circuitcheck"])
    all_sets(H.load(path, store=store))
    assert calls == ["jsonl"]
    path.write_text(path.read_text().replace("path: rows.jsonl", "path: rows.jsonl, padding: left"))
    all_sets(H.load(path, store=store))
    assert calls == ["jsonl"] * 2


@pytest.mark.parametrize("mode, stored, read", [("on", True, True), ("read", False, True), ("write", True, False)])
def test_modes(tmp_path, monkeypatch, mode, stored, read):
    path = jsonl_file(tmp_path)
    all_sets(H.load(path, store=C.ValueCache(tmp_path / "cache", mode)))
    assert bool(list((tmp_path / "cache" / "prompts").rglob("*.npz"))) is stored
    all_sets(H.load(path, store=C.ValueCache(tmp_path / "cache")))  # now stored in any case
    calls = builds(monkeypatch)
    all_sets(H.load(path, store=C.ValueCache(tmp_path / "cache", mode)))
    assert calls == ([] if read else ["jsonl"])


def test_a_damaged_file_is_built_anew(tmp_path, monkeypatch):
    path = jsonl_file(tmp_path)
    first = all_sets(H.load(path, store=C.ValueCache(tmp_path / "cache")))[0]
    (stored,) = (tmp_path / "cache" / "prompts").rglob("*.npz")
    stored.write_bytes(stored.read_bytes()[:100])
    calls = builds(monkeypatch)
    with pytest.warns(C.CacheWarning, match="prompts entry .* refused"):
        again = all_sets(H.load(path, store=C.ValueCache(tmp_path / "cache")))[0]
    assert calls == ["jsonl"] and C.prompt_set_hash(again) == C.prompt_set_hash(first)


def test_what_would_not_read_back_the_same_is_not_stored(tmp_path):
    ps = P.repeated_tokens(4, 0, length=3, vocab=10)
    odd = P.PromptSet(ps.tokens, ps.positions, ps.target_pos, ps.target_tok, "x", {"where": {"path": "looks like a path"}})
    assert C.prompt_set_bytes(odd) is None  # would read back as a Path: refused
    stored = C.prompt_set_bytes(ps)
    assert C.prompt_set_hash(C.read_prompt_set(io.BytesIO(stored))) == C.prompt_set_hash(ps)


def test_check_reads_prompt_sets_back_when_its_cache_is_on(tmp_path, monkeypatch):
    from circuitcheck.session import Options, check

    path = jsonl_file(tmp_path)
    options = Options(cache="on", cache_dir=str(tmp_path / "cache"))
    first = check(path, options)
    monkeypatch.setattr(H, "_GENERATED", {})
    calls = builds(monkeypatch)
    again = check(path, options)
    assert calls == [] and [r.verdict for r in again] == [r.verdict for r in first]
    check(path, Options())  # cache off (the default): built
    assert calls == ["jsonl"]
