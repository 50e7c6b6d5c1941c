"""The YAML reader: safe, YAML 1.2 scalars, line numbers, duplicate keys, merge keys."""
from __future__ import annotations

import pytest
from yaml.error import MarkedYAMLError

from circuitcheck.files.yaml_lines import line_of, read


def test_scalars_read_as_yaml_1_2():
    doc = read("a: 1e-3\nb: yes\nc: 012\nd: 2024-01-02\ne: .5\nf: -7\ng: true\nh: ~\ni: 0x1f\nj: on\n")
    assert doc == {"a": 0.001, "b": "yes", "c": 12, "d": "2024-01-02", "e": 0.5, "f": -7, "g": True,
                   "h": None, "i": 31, "j": "on"}
    assert type(doc["f"]) is int and type(doc["a"]) is float


def test_lines_of_keys_and_items():
    doc = read("model: zoo:x\nclaims:\n  - id: a\n    says: s\n  - id: b\n")
    assert line_of(doc, ("claims", 1, "id")) == 5
    assert line_of(doc, ("claims", 0, "says")) == 4
    assert line_of(doc, ("claims", 0, "nope")) == 3  # the deepest part that exists
    assert line_of(doc, ("model",)) == 1


def test_duplicate_keys_are_refused_with_both_lines():
    with pytest.raises(MarkedYAMLError) as err:
        read("a: 1\nb:\n  c: 2\n  c: 3\n")
    assert "duplicate key 'c' (first on line 3)" in err.value.problem and err.value.problem_mark.line == 3


def test_merge_keys_and_anchors():
    doc = read("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 5}\nsame: *b\n")
    assert doc["use"] == {"x": 1, "y": 5} and doc["same"] == {"x": 1, "y": 2}


def test_python_objects_are_never_built():
    with pytest.raises(MarkedYAMLError, match="tag `!!python/object/apply:os.system` is not allowed"):
        read("a: !!python/object/apply:os.system ['echo pwned']\n")
