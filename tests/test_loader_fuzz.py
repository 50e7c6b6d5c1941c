"""Property-based tests of the loader: whatever a hypothesis file holds, `load()` either returns or
raises `HypothesisError`; no other exception escapes, so pytest never prints a traceback for a file.

Mutants start from every shipped file (hypotheses/, tests/twins/) and every file of the bad corpus,
and change one to three places: a value replaced by one of any type (a head, a position, a huge or
negative number, NaN, a list, a mapping), a key removed, a known key added, an item repeated, or
the text itself cut, repeated or spliced with odd characters. Examples are derandomized, so CI sees
the same mutants every run, and few enough to take seconds.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitcheck.files.loader import HypothesisError, _plain, load
from circuitcheck.files.yaml_lines import read

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "hypotheses").glob("*.hyp.yaml")) + sorted((ROOT / "tests" / "twins").glob("*.hyp.yaml")) \
    + sorted((ROOT / "tests" / "bad").glob("*.hyp.yaml"))


def _tree(path: Path):
    try:
        tree = read(path.read_text())
    except Exception:  # the bytes and YAML classes of the corpus: mutated as text only
        return None
    return _plain(tree) if isinstance(tree, dict) else None


TREES = [t for t in map(_tree, SOURCES) if t is not None]
TEXTS = [p.read_bytes() for p in SOURCES]

FIELD_VALUES = [  # values a person might write in any field, right or wrong
    "L0H0", "L1H3", "L99H0", "L0H99", "L0H", "ANS", "argmax", "S1+1", "S2-40", "last", "first", "-1", "BOS",
    "$head", "$heads", "$x", "$factor", "accuracy", "acuracy", "loss", "zoo:induction", "zoo:nope", "hf:", "factory:x",
    "1..63", "63..1", "0..0", "1..99999999", "{A}", "{Z}", "tok[1] > tok[2]", "tok[99] > 1", "no", "yes", "offset:0",
    "offset:99999", "induction", "previous_token", "z", "pattern", "head_out", "blocks.0.hook_resid_pre",
    "blocks.9.attn.hook_z", "mean", "bos", "zero", "resample", "up", "down", "tiny.safetensors", "/dev/zero", "",
    0, 1, 2, -1, -3, 5, 63, 64, 1000, 10**6, 10**12, 2**63, -(2**63), 0.5, -0.5, 1e-300, 1e300,
    float("nan"), float("inf"), -float("inf"), True, False, None,
]
KEYS = ["n", "seed", "length", "digits", "max_at", "vocab", "bos", "low", "unique_max", "ans_token", "answer", "text",
        "slots", "distinct", "path", "factor", "method", "at", "heads", "head", "tol", "level", "interpolate", "values",
        "each", "pairs", "cross", "within", "subsets", "sweep", "for", "where", "under", "window", "mass", "rows",
        "tokens", "about", "between", "at_least", "at_most", "drop", "rise", "crosses", "variants", "dtype", "device"]

scalars = st.one_of(st.sampled_from(FIELD_VALUES), st.integers(-(2**70), 2**70), st.floats(),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=8)


def _places(tree, prefix=()):
    yield prefix
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        yield from _places(v, prefix + (k,))


@st.composite
def mutated_trees(draw):
    tree = copy.deepcopy(draw(st.sampled_from(TREES)))
    for _ in range(draw(st.integers(1, 3))):
        places = list(_places(tree))[1:]
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent = tree
        for part in place[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "repeat"]))
        if op == "replace":
            parent[place[-1]] = draw(values)
        elif op == "delete":
            del parent[place[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
        elif op == "repeat" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[place[-1]]))
    return tree


@st.composite
def mutated_texts(draw):
    data = bytearray(draw(st.sampled_from(TEXTS)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if op == "insert":
            piece = draw(st.sampled_from([b"\t", b"\x00", b"\xff", b"&a ", b"*a", b"<<: ", b"[", b"{", b"- ", b": ",
                                          b"!!int ", b"!!binary ", b"\n  ", b"'", b'"', b"#", b"\xc3", b"9" * 40]))
            data[at:at] = piece
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        else:
            data[at:at] = data[max(0, at - 60):at]
    return bytes(data)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with what the bad corpus refers to (the placeholder weights and model files)."""
    d = tmp_path_factory.mktemp("fuzz")
    shutil.copy(ROOT / "tests" / "bad" / "tiny.safetensors", d / "tiny.safetensors")
    shutil.copytree(ROOT / "tests" / "bad" / "models", d / "models")
    shutil.copytree(ROOT / "tests" / "bad" / "data", d / "data")
    return d


def _only_hypothesis_errors(path: Path):
    try:
        load(path)
    except HypothesisError as err:
        assert err.line is None or err.line >= 1
        # a row of a data file the mutant reads is located there, and the hint names the mutant
        in_data = err.path != path and err.path.is_relative_to(path.parent) and path.name in err.hint
        assert str(err).startswith(str(path)) or in_data, str(err)


# CC_FUZZ_EXAMPLES=5000 searches longer (locally); CI runs the same 150 mutants of each kind every time.
FUZZ = settings(max_examples=int(os.environ.get("CC_FUZZ_EXAMPLES", 150)), deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


@FUZZ
@given(tree=mutated_trees())
def test_mutated_files_raise_only_hypothesis_errors(workdir, tree):
    path = workdir / "mutant.hyp.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True, sort_keys=False))
    _only_hypothesis_errors(path)


@FUZZ
@given(data=mutated_texts())
def test_mutated_bytes_raise_only_hypothesis_errors(workdir, data):
    path = workdir / "mutant.hyp.yaml"
    path.write_bytes(data)
    _only_hypothesis_errors(path)
