"""`circuitcheck` on the command line: check files and folders, print the schema, say its version."""
from __future__ import annotations

import pytest

from circuitcheck.cli import SCHEMA, main, schema_text

CLAIM = """\
- id: random-model-is-bad
  says: "A random model gets almost nothing right"
  measure: accuracy
  expect: {at_most: 0.2}
"""


def test_schema_prints_to_stdout_and_leaves_the_installed_file_alone(capsys):
    before = SCHEMA.stat().st_mtime_ns
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()
    assert SCHEMA.stat().st_mtime_ns == before


def test_schema_writes_only_the_path_it_is_given(tmp_path, capsys):
    assert main(["schema", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text() == schema_text() and capsys.readouterr().out == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("circuitcheck ")


def test_check_a_folder_runs_every_hypothesis_file_in_it(hyp, tmp_path, capsys):
    hyp(CLAIM, name="a.hyp.yaml", prompts="{generator: max_of_list, n: 60, seed: 1}")
    (tmp_path / "sub").mkdir()
    hyp(CLAIM, name="sub/b.hyp.yaml", prompts="{generator: max_of_list, n: 60, seed: 1}")
    assert main(["check", str(tmp_path)]) == 1  # sub/b names its model beside it: not there
    out, err = capsys.readouterr()
    assert "a.hyp.yaml::random-model-is-bad" in out and "sub/b.hyp.yaml:2: model.native" in err


def test_check_a_missing_file_or_an_empty_folder_is_a_message(hyp, tmp_path, capsys):
    good = hyp(CLAIM, prompts="{generator: max_of_list, n: 60, seed: 1}")
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "nope.hyp.yaml"), str(tmp_path / "empty"), str(good)]) == 1
    out, err = capsys.readouterr()
    assert "nope.hyp.yaml: no such file or folder" in err
    assert "empty: no hypothesis files (*.hyp.yaml) in this folder" in err
    assert "PASS" in out and "Traceback" not in err  # the good file still runs
