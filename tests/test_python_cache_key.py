"""`cache=True` keys a python measure's values by everything its function reaches, not only its
own file: a helper in another module, a decorator, a closure, a module constant. An edit of any of
them computes the values anew; a function reaching an object the cache cannot hash is not cached,
and a CacheWarning says which name."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

import circuitcheck
from circuitcheck.runs.cache import CacheWarning
from circuitcheck.session import Options

CLAIM = "- {id: c, says: a registered measure, measure: {python: k-measure}, expect: record}\n"

MEASURE = """\
import numpy as np
import circuitcheck
import k_helper
from k_deco import doubled

CALLS = []


@circuitcheck.register_measure("k-measure", reads=[], cache=True)
@doubled
def measure(run):
    CALLS.append(1)
    return np.full(run.n, k_helper.value())
"""
HELPER = "def value():\n    return {v}\n"
DECO = """\
import functools


def doubled(fn):
    @functools.wraps(fn)
    def wrapper(run):
        return {k} * fn(run)
    return wrapper
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    from circuitcheck.language import registry

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "MEASURES", dict(registry.MEASURES))  # each test's files are their own
    monkeypatch.setattr(registry, "CONFLICTS", {})

    def write(helper=1.0, deco=2, extra=""):
        (tmp_path / "k_helper.py").write_text(HELPER.format(v=helper))
        (tmp_path / "k_deco.py").write_text(DECO.format(k=deco))
        (tmp_path / "k_measure.py").write_text(MEASURE + extra)
        for name in ("k_helper", "k_deco", "k_measure"):  # a new process: the files as they are now
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return importlib.import_module("k_measure")

    yield write
    for name in ("k_helper", "k_deco", "k_measure"):
        sys.modules.pop(name, None)


def measured(path, tmp_path, module):
    result, = circuitcheck.check(path, Options(cache="on", cache_dir=str(tmp_path / "cache")))
    return result.main.estimate.statistic, len(module.CALLS)


def test_an_edit_of_a_helper_or_a_decorator_in_another_module_computes_anew(hyp, tmp_path, project):
    path = hyp(CLAIM)
    assert measured(path, tmp_path, project()) == (2.0, 1)  # 2 * 1.0, computed
    assert measured(path, tmp_path, project()) == (2.0, 0)  # nothing changed: read back
    assert measured(path, tmp_path, project(helper=3.0)) == (6.0, 1)  # the helper's module changed
    assert measured(path, tmp_path, project(helper=3.0, deco=5)) == (15.0, 1)  # the decorator's module changed


def test_a_measure_reaching_an_object_with_state_is_not_cached_and_says_so(hyp, tmp_path, project):
    path = hyp(CLAIM)
    extra = textwrap.dedent("""\
        class Counter:
            def __init__(self):
                self.n = 0


        COUNTER = Counter()
        k_helper.value = lambda: COUNTER.n
        """)
    module = project(extra=extra)
    for _ in range(2):
        with pytest.warns(CacheWarning, match="'k-measure' .* computed anew each run: .*'COUNTER', which is a k_measure.Counter"):
            assert measured(path, tmp_path, module) == (0.0, 1)
        module.CALLS.clear()
