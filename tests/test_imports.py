"""How circuitcheck is imported: the package loads nothing until a public name is used, and under
pytest only the plugin module is assertion-rewritten (pytest rewrites a plugin's whole package,
re-parsing it on every run where no bytecode is written: 0.2-0.4 s of a cached rerun); the
user's own test files and conftests are rewritten as ever."""
from __future__ import annotations

import subprocess
import textwrap
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
    assert loader("circuitcheck.judge.stats") == "SourceFileLoader"
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


OLD_PATHS = ["stats", "paths", "hypothesis_file", "text_prompts", "report_json", "cache", "placement", "weights"]


@pytest.mark.parametrize("old", OLD_PATHS)
def test_a_module_path_of_the_flat_layout_still_imports_and_says_where_it_went(old):
    """`import circuitcheck.stats` and friends keep working for one release (CHANGELOG.md), each
    name read from the module's new home, with a warning that names the path to write instead."""
    code = textwrap.dedent(f"""\
        import importlib, warnings
        from circuitcheck import MOVED
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = importlib.import_module("circuitcheck.{old}")
        new = importlib.import_module("circuitcheck." + MOVED["{old}"])
        names = [n for n in vars(new) if not n.startswith("_")]
        assert names and all(getattr(old, n) is getattr(new, n) for n in names)
        print(caught[0].category.__name__, caught[0].message)
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"DeprecationWarning circuitcheck.{old} moved to circuitcheck.")
    assert "import it from there" in res.stdout


def test_the_old_names_of_the_packages_that_were_modules_still_resolve():
    from circuitcheck.report import table
    from circuitcheck.runs import engine

    with pytest.warns(DeprecationWarning, match="circuitcheck.runs.engine.Runs"):
        from circuitcheck.runs import Runs
    with pytest.warns(DeprecationWarning, match="circuitcheck.report.table.properties"):
        from circuitcheck.report import properties
    assert Runs is engine.Runs and properties is table.properties
    with pytest.raises(ImportError):
        from circuitcheck.runs import no_such_name  # noqa: F401
