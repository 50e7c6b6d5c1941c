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


# ---------------------------------------------------------------- check takes the plugin's flags
PREV = """\
- id: prev-head
  says: "L0H1's previous-token score is at least %s"
  measure: {head_score: {head: L0H1, pattern: previous_token}}
  expect: {at_least: %s}
"""


def test_check_takes_every_flag_the_plugin_takes(tmp_path, monkeypatch):
    import argparse

    monkeypatch.chdir(tmp_path)  # reports named `x` land here

    from circuitcheck.session import add_flags

    plugin = argparse.ArgumentParser()
    add_flags(plugin.add_argument)
    theirs = {a.option_strings[0] for a in plugin._actions if a.option_strings and a.dest != "help"}
    assert {"--cc-model", "--cc-json", "--cc-html", "--cc-device", "--cc-dtype", "--cc-inconclusive",
            "--cc-require-models", "--cc-family", "--cc-batch-size", "--cc-specificity"} <= theirs
    for flag in theirs:  # each one parses on the command line (a file that is not there: a message)
        value = [] if plugin._option_string_actions[flag].nargs == 0 else [_example(plugin, flag)]
        assert main(["check", "nope.hyp.yaml", flag, *value]) == 1, flag


def _example(parser, flag: str) -> str:
    action = parser._option_string_actions[flag]
    if action.choices:
        return list(action.choices)[-1]
    return {"--cc-batch-size": "8", "--cc-model": "zoo:induction=zoo:induction", "--cc-prompt-seed": "1",
            "--cc-drift-alpha": "0.05", "--cc-device": "cpu"}.get(flag, "x")


def test_check_flags_act_as_under_pytest(hyp, tmp_path, capsys):
    import json

    probe = hyp(PREV % (0, 0), name="probe.hyp.yaml")
    out = tmp_path / "probe.json"
    assert main(["check", str(probe), "--cc-json", str(out), "--cc-dtype", "float64", "--cc-device", "cpu"]) == 0
    (rec,) = json.loads(out.read_text())["claims"]
    assert rec["load"]["dtype"] == "float64" and rec["fingerprint"]["dtype"] == "float64"
    value = rec["cases"][0]["value"]
    # the threshold at the measured mean: the interval straddles it
    edge = hyp(PREV % (value, value), name="edge.hyp.yaml")
    capsys.readouterr()
    assert main(["check", str(edge)]) == 1
    assert "INCONCLUSIVE" in capsys.readouterr().out
    assert main(["check", str(edge), "--cc-inconclusive", "skip"]) == 0
    # a passing claim that does not single out its head fails under --cc-specificity
    assert main(["check", str(probe), "--cc-specificity"]) == 1
    assert "does not single out L0H1" in capsys.readouterr().err


def test_check_never_prints_a_traceback_for_a_report_it_cannot_write(hyp, tmp_path, capsys, monkeypatch):
    from circuitcheck.report import json_report as report_json

    good = hyp(CLAIM, prompts="{generator: max_of_list, n: 60, seed: 1}")
    assert main(["check", str(good), "--cc-json", str(tmp_path)]) == 2  # before any run: a folder
    out, err = capsys.readouterr()
    assert f"--cc-json {tmp_path}: is a folder; name a file in it" in err and out == ""

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_json, "write", full)  # what only the write finds: at the end
    assert main(["check", str(good), "--cc-json", str(tmp_path / "r.json")]) == 1
    out, err = capsys.readouterr()
    assert f"could not write the JSON report to {tmp_path / 'r.json'}: No space left on device" in out
    assert "Traceback" not in out + err


def test_check_skips_or_fails_an_unavailable_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "hub.hyp.yaml"
    path.write_text("model: hf:circuitcheck-test/not-in-any-cache\nprompts: {generator: max_of_list, n: 10, seed: 0}\n"
                    "claims:\n  - {id: a, says: a, measure: accuracy, expect: {at_least: 0}}\n")
    assert main(["check", str(path)]) == 0
    assert "1 claims skipped: model not available" in capsys.readouterr().err
    assert main(["check", str(path), "--cc-require-models"]) == 1
    assert "1 claims failed (--cc-require-models): model not available" in capsys.readouterr().err


# ---------------------------------------------------------------- measure and specificity take the run flags
@pytest.mark.parametrize("command", ["measure", "specificity"])
def test_measure_and_specificity_take_the_plugin_s_run_flags(command, tmp_path, monkeypatch):
    import argparse

    from circuitcheck.session import add_flags

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_flags(parser.add_argument)
    for flag in ("--cc-model", "--cc-device", "--cc-device-map", "--cc-dtype", "--cc-batch-size", "--cc-cache",
                 "--cc-allow-path", "--cc-require-models"):  # each parses (a file that is not there: a message, exit 1)
        value = [] if parser._option_string_actions[flag].nargs == 0 else [_example(parser, flag)]
        assert main([command, "nope.hyp.yaml", flag, *value]) == 1, flag


@pytest.mark.parametrize("command", ["measure", "specificity"])
def test_measure_and_specificity_run_on_the_model_cc_model_names(command, hyp, capsys, monkeypatch):
    from circuitcheck.files.loader import load

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = hyp(PREV % (0, 0))
    gone = f"{load(path).model_source.ref}=hf:circuitcheck-test/not-in-any-cache"
    assert main([command, str(path), "--cc-model", gone]) == 0
    assert "1 claims skipped: model not available" in capsys.readouterr().err
    assert main([command, str(path), "--cc-model", gone, "--cc-require-models"]) == 1
    assert "1 claims failed (--cc-require-models): model not available" in capsys.readouterr().err


def test_measure_runs_on_the_other_weights_at_the_dtype_asked(hyp, tmp_path, capsys):
    from circuitcheck.files.loader import load

    from conftest import TINY, save_model

    other = save_model(tmp_path / "other", TINY, seed=7)
    path = hyp(PREV % (0, 0))
    assert main(["measure", str(path)]) == 0
    mine = capsys.readouterr().out
    assert main(["measure", str(path), "--cc-model", f"{load(path).model_source.ref}={other}",
                 "--cc-dtype", "float64"]) == 0
    theirs = capsys.readouterr().out
    assert str(other) in theirs and "'dtype': 'float64'" in theirs and "'dtype': 'float32'" in mine
    value = lambda text: [line for line in text.splitlines() if "CI [" in line]  # noqa: E731
    assert value(mine) != value(theirs)
