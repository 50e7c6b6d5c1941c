"""The shipped JSON Schema accepts what the loader accepts at the schema level, and refuses what it
refuses there (test_models.py checks that the shipped file is what `json_schema()` writes)."""
from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from circuitcheck.files.loader import _plain
from circuitcheck.files.spec import HypothesisFile, json_schema
from circuitcheck.files.yaml_lines import read

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "circuitcheck" / "schema" / "hypothesis.schema.json"
SHIPPED = sorted((ROOT / "hypotheses").glob("*.hyp.yaml")) + sorted((ROOT / "tests" / "twins").glob("*.hyp.yaml"))
# Errors a JSON Schema can state: types, patterns, enums, bounds, unknown and missing keys. The rest
# (exactly one of, lo < hi, a sweep with `crosses`, and NaN/inf, which JSON cannot even write) are
# the loader's own checks.
SCHEMA_LEVEL = {"extra_forbidden", "missing", "literal_error", "string_pattern_mismatch", "string_type", "int_type",
                "int_parsing", "float_type", "float_parsing", "bool_type", "bool_parsing", "list_type", "dict_type",
                "model_type", "too_short", "greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _document(path: Path):
    try:
        return _plain(read(path.read_bytes().decode("utf-8")))
    except Exception:
        return None  # the corpus's bytes and YAML classes: not documents a schema can see


def _schema_level(doc) -> bool:
    """Whether the loader refuses `doc` for a reason the schema states (pydantic's first errors)."""
    if not isinstance(doc, dict):
        return False
    try:
        HypothesisFile.model_validate(doc)
    except ValidationError as exc:
        return all(e["type"] in SCHEMA_LEVEL for e in exc.errors())
    return False


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_file_is_valid(path):
    jsonschema.validate(_document(path), json_schema())


@pytest.mark.parametrize("path", sorted((ROOT / "hypotheses").glob("*.hyp.yaml")), ids=lambda p: p.name)
def test_the_shipped_files_name_the_schema_for_editors(path):
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../src/circuitcheck/schema/hypothesis.schema.json"


def test_the_schema_level_bad_files_are_invalid():
    docs = {p.name: _document(p) for p in sorted((ROOT / "tests" / "bad").glob("*.hyp.yaml"))}
    schema_level = [name for name, doc in docs.items() if _schema_level(doc)]
    assert len(schema_level) >= 15, schema_level
    validator = jsonschema.Draft202012Validator(json_schema())
    accepted = [name for name in schema_level if validator.is_valid(docs[name])]
    assert not accepted, f"the schema accepts files the loader refuses: {accepted}"


@pytest.mark.parametrize("short, long", [
    ("model: zoo:induction", "model: {zoo: induction}"),
    ("measure: accuracy", "measure: {metric: accuracy}"),
    ("under: {ablate: {heads: L0H1}}", "under: [{ablate: {heads: [L0H1]}}]"),
])
def test_short_forms_validate_like_long_ones(short, long):
    base = ("prompts: {generator: max_of_list}\n"
            "claims: [{id: a, says: s, measure: accuracy, expect: {at_least: 0.5}}]\nmodel: zoo:induction\n")
    for form in (short, long):
        key = form.split(":")[0]
        doc = _plain(read(base))
        value = _plain(read(form))[key]
        if key in ("measure", "under"):
            doc["claims"][0][key] = value
        else:
            doc[key] = value
        jsonschema.validate(doc, json_schema())
        HypothesisFile.model_validate(doc)


def test_the_schema_accepts_expect_record_and_names_itself():
    """The documented `expect: record` was refused by the shipped schema; it has an `$id` now."""
    import json

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "urn:circuitcheck:schema:hypothesis-file"
    doc = {"model": "zoo:max-of-list", "prompts": {"generator": "max_of_list", "n": 10},
           "claims": [{"id": "a", "says": "s", "measure": "accuracy", "expect": "record"}]}
    jsonschema.validate(doc, schema)
    HypothesisFile.model_validate(doc)  # the loader agrees
    doc["claims"][0]["expect"] = "recorded"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
