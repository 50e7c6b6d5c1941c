"""The trust boundary: a hypothesis file is data. It names Python only through names registered in
code (a conftest.py, an entry point), never a module to import, and a registered factory that
breaks costs its own claims, never the run."""
from __future__ import annotations

import textwrap

import pytest

from circuitcheck.language import registry

CLAIM = """\
claims:
  - id: random-model
    says: "a random model is rarely right"
    measure: accuracy
    expect: {at_most: 0.5}
"""
PROMPTS = "prompts: {generator: max_of_list, n: 40}\n"

# A conftest.py that registers one working factory and one of each way a factory can break.
CONFTEST = """\
import os
import sys

import circuitcheck
from circuitcheck.models import native


@circuitcheck.register_model("sec-tiny")
def tiny():
    return native(dict(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=16,
                       attn_only=True, act_fn="relu", normalization_type=None, seed=0))


@circuitcheck.register_model("sec-raises")
def raises():
    raise ValueError("no weights for you")


@circuitcheck.register_model("sec-exits")
def exits():
    sys.exit(3)


@circuitcheck.register_model("sec-string")
def string():
    return "a model, honestly"
"""


@pytest.fixture(autouse=True)
def _torch_imported_first(tiny_model):
    """pytester's in-process runs drop the modules first imported inside them, and torch cannot be
    imported twice in one process: build a model before, so torch and transformer_lens stay."""


def _file(pytester, name: str, model: str):
    return pytester.path.joinpath(f"{name}.hyp.yaml").write_text(f"model: {model}\n{PROMPTS}{CLAIM}")


EVIL = ["factory:os:abort", "factory:builtins:print", "{factory: 'os:abort'}", "factory:evil_module:run",
        "factory:evil_module.run"]


def test_a_file_cannot_name_an_unregistered_callable(pytester):
    # A module whose import or call leaves a trace: neither may happen because a file names it.
    pytester.path.joinpath("evil_module.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').write_text('x')\n"
        "def run():\n    pathlib.Path(__file__).with_name('called').write_text('x')\n")
    pytester.makeconftest(CONFTEST)
    for i, model in enumerate(EVIL):
        _file(pytester, f"evil{i}", model)
    _file(pytester, "good", "factory:sec-tiny")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # os.abort would kill this process
    res.assert_outcomes(passed=1, errors=len(EVIL))
    out = res.stdout.str()
    for i, model in enumerate(EVIL):
        assert f"evil{i}.hyp.yaml:1: model.factory: " in out, model
    assert out.count("register_model(") >= len(EVIL) and "Traceback" not in out  # each says how to register
    assert not (pytester.path / "imported").exists() and not (pytester.path / "called").exists()


def test_an_unknown_registered_name_says_did_you_mean(pytester):
    pytester.makeconftest(CONFTEST)
    _file(pytester, "typo", "factory:sec-tinny")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    out = res.stdout.str()
    assert "typo.hyp.yaml:1: model.factory: no model named 'sec-tinny' is registered" in out
    assert "did you mean 'sec-tiny'?" in out


def test_factories_that_raise_exit_or_return_a_string_fail_their_claims_only(pytester):
    pytester.makeconftest(CONFTEST)
    for name in ("raises", "exits", "string"):
        _file(pytester, name, f"factory:sec-{name}")
    _file(pytester, "good", "factory:sec-tiny")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, failed=3)
    out = res.stdout.str()
    assert "the model factory 'sec-raises' (registered at " in out and "raised ValueError: no weights for you" in out
    assert "the model factory 'sec-exits'" in out and "raised SystemExit: 3" in out
    assert "the model factory 'sec-string'" in out and "returned str, not a model" in out
    assert "Traceback" not in out


def test_a_broken_factory_is_called_once_not_once_per_claim(tmp_path, monkeypatch):
    from circuitcheck import check

    calls = []
    monkeypatch.setitem(registry.MODELS, "sec-once", registry.Registered("sec-once", lambda: calls.append(1)))
    path = tmp_path / "f.hyp.yaml"
    path.write_text("model: factory:sec-once\n" + PROMPTS + CLAIM + CLAIM.split("\n", 1)[1].replace("random-model", "again"))
    results = check(path)
    assert [r.verdict for r in results] == ["error", "error"] and calls == [1]
    assert "returned NoneType, not a model" in results[0].error


def test_conftests_in_subfolders_register_before_their_files_are_collected(pytester):
    sub = pytester.mkdir("sub")
    sub.joinpath("conftest.py").write_text(CONFTEST)
    sub.joinpath("f.hyp.yaml").write_text(f"model: factory:sec-tiny\n{PROMPTS}{CLAIM}")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)  # the whole tree
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "sub/f.hyp.yaml").assert_outcomes(passed=1)  # one file


def test_the_command_line_loads_conftests_beside_and_above_the_file(pytester, capsys):
    from circuitcheck.cli import main

    pytester.path.joinpath("pyproject.toml").write_text("")  # the project root: conftests above it stay out
    pytester.makeconftest(CONFTEST.replace("sec-tiny", "sec-cli-tiny"))
    sub = pytester.mkdir("sub")
    sub.joinpath("f.hyp.yaml").write_text(f"model: factory:sec-cli-tiny\n{PROMPTS}{CLAIM}")
    assert main(["check", "sub/f.hyp.yaml"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_a_conftest_that_fails_to_import_is_a_message_for_the_command_line(pytester, capsys):
    from circuitcheck.cli import main

    pytester.makeconftest("raise RuntimeError('broken on purpose')\n")
    _file(pytester, "f", "factory:sec-tiny")
    assert main(["check", "f.hyp.yaml"]) == 1
    err = capsys.readouterr().err
    assert "conftest.py: importing it raised RuntimeError: broken on purpose" in err and "Traceback" not in err


def test_packages_register_through_the_circuitcheck_entry_point_group(tmp_path, monkeypatch):
    dist = tmp_path / "cc_models_pkg-1.0.dist-info"
    dist.mkdir()
    dist.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: cc-models-pkg\nVersion: 1.0\n")
    dist.joinpath("entry_points.txt").write_text("[circuitcheck]\nmine = cc_models_mod\nbroken = cc_no_such_mod\n")
    tmp_path.joinpath("cc_models_mod.py").write_text(textwrap.dedent("""\
        import circuitcheck
        circuitcheck.register_model("sec-from-entry-point")(lambda: None)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.model("sec-from-entry-point").name == "sec-from-entry-point"
    with pytest.raises(registry.NotRegistered) as err:
        registry.model("sec-nowhere")
    assert "entry point 'broken' failed to import (ModuleNotFoundError" in err.value.hint


# ---------------------------------------------------------------- paths a file names
NATIVE = "model:\n  native: {{config: {config}, weights: {weights}}}\n"


@pytest.fixture
def confined(monkeypatch, tmp_path, tiny_dir):
    """A folder with the tiny model in it, and no folders allowed besides each file's own."""
    from circuitcheck.files import paths
    from conftest import copy_model

    monkeypatch.setattr(paths, "ALLOWED", [])
    (tmp_path / "project").mkdir()
    copy_model(tiny_dir, tmp_path / "project")
    return tmp_path / "project", tiny_dir.name


def _native(folder, config, weights, name="f.hyp.yaml"):
    path = folder / name
    path.write_text(NATIVE.format(config=config, weights=weights) + PROMPTS + CLAIM)
    return path


@pytest.mark.parametrize("weights, message", [
    ("../w.safetensors", "outside the hypothesis file's folder"),
    ("/etc/hostname", "outside the hypothesis file's folder"),
    ("link.safetensors", "outside the hypothesis file's folder"),  # a symlink out of the folder
    ("''", "the weights file path is empty"),
    ("sub", "is a directory, not a regular file"),
    ("fifo.safetensors", "is a device, pipe or socket, not a regular file"),
    ("nowhere.safetensors", "does not exist"),
])
def test_paths_a_file_names_stay_in_its_folder_and_name_regular_files(confined, message, weights):
    import os

    from circuitcheck import load
    from circuitcheck.files.loader import HypothesisError

    folder, model = confined
    (folder.parent / "w.safetensors").write_bytes(b"")
    (folder / "link.safetensors").symlink_to(folder.parent / "w.safetensors")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "fifo.safetensors")  # reading it would wait for a writer forever
    path = _native(folder, f"{model}/config.json", weights)
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert err.value.line == 2 and err.value.field == "model.native.weights" and message in err.value.message


def test_a_prompt_file_outside_the_folder_or_a_device_is_refused(confined):
    from circuitcheck import load
    from circuitcheck.files.loader import HypothesisError

    folder, model = confined
    for jsonl, message in (("/dev/zero", "outside the hypothesis file's folder"), ("../p.jsonl", "outside"),
                           ("''", "the prompt file path is empty")):
        path = folder / "j.hyp.yaml"
        path.write_text(NATIVE.format(config=f"{model}/config.json", weights=f"{model}/model.safetensors")
                        + f"prompts: {{generator: jsonl, path: {jsonl}}}\n" + CLAIM)
        with pytest.raises(HypothesisError, match=message) as err:
            load(path)
        assert err.value.line == 3 and err.value.field == "prompts"


def test_allowed_folders_are_read_and_devices_are_still_refused(confined, tmp_path, pytester):
    from circuitcheck import load
    from circuitcheck.files import paths
    from circuitcheck.files.loader import HypothesisError

    folder, model = confined
    elsewhere = _native(tmp_path, f"project/{model}/config.json", f"project/{model}/model.safetensors")
    _native(pytester.path, folder / model / "config.json", folder / model / "model.safetensors")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(errors=1)  # absolute, outside: refused
    pytester.runpytest("-p", "no:cacheprovider", "--cc-allow-path", str(folder)).assert_outcomes(passed=1)
    load(elsewhere)  # below the file's folder: fine without an option
    paths.allow(["/dev"])
    with pytest.raises(HypothesisError, match="device, pipe or socket"):
        load(_native(folder, f"{model}/config.json", "/dev/zero", "dev.hyp.yaml"))
