"""How circuitcheck is imported: the package loads nothing until a public name is used, and under
pytest only the plugin module is assertion-rewritten (pytest rewrites a plugin's whole package,
re-parsing it on every run where no bytecode is written: 0.2-0.4 s of a cached rerun); the
user's own test files and conftests are rewritten as ever."""
from __future__ import annotations

import subprocess
import sys

import pytest

import circuitcheck

TEST = """\
import sys

import circuitcheck.session


def loader(name):
    return type(sys.modules[name].__loader__).__name__


def test_loaders():
    assert loader("circuitcheck.session") == "SourceFileLoader"
    assert loader("circuitcheck.stats") == "SourceFileLoader"
    assert loader("circuitcheck.plugin") == "AssertionRewritingHook"
    assert loader(__name__) == "AssertionRewritingHook"  # a test file: rewritten


def test_a_failing_assert_still_explains_itself():
    x = [1, 2]
    assert x == [1, 3]
"""


def test_only_the_plugin_and_the_users_tests_are_rewritten(tmp_path):
    (tmp_path / "test_loaders.py").write_text(TEST)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "-p", "no:randomly", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert "1 failed, 1 passed" in out, out
    assert "At index 1 diff: 2 != 3" in out, out  # the user's assert, rewritten and explained


def test_importing_the_package_loads_nothing_else():
    code = "import sys, circuitcheck; print(sorted(m for m in sys.modules if m.startswith('circuitcheck.')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


@pytest.mark.parametrize("name", circuitcheck.__all__)
def test_every_public_name_resolves(name):
    assert getattr(circuitcheck, name) is not None
    assert name in dir(circuitcheck)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'chek'"):
        circuitcheck.chek
