"""What a researcher meets first with their own model (issue 23): `hf: DIR` read from where the file
says, nested `.pt` state dicts, and a hub model offline."""
from __future__ import annotations

import os
import shutil
import textwrap

import pytest

from circuitcheck.files.loader import HypothesisError, load
from circuitcheck.models import ZOO_DIR

IOI = ZOO_DIR / "ioi"  # a Hugging Face folder with its own tokenizer.json
TEXT_FILE = """\
model: MODEL
prompts:
  generator: text
  template: "When {IO} and {S} went to the store, {S} gave a drink to"
  slots: {IO: [Mary, John, Alice], S: [Bob, Tom, Anna]}
  answer: IO
  counterfactual: S
  n: 12
claims:
  - {id: ld, says: "x", measure: logit_diff, expect: record}
"""


@pytest.fixture
def project(tmp_path):
    """A project folder with a researcher's Hugging Face folder under models/, and a folder beside it."""
    shutil.copytree(IOI, tmp_path / "proj" / "models" / "my-gpt2")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "proj"


def write(folder, name, model):
    path = folder / name
    path.write_text(TEXT_FILE.replace("MODEL", model))
    return path


@pytest.mark.parametrize("model", ["hf:./models/my-gpt2", "{hf: models/my-gpt2}", "{hf: ./models/my-gpt2/}"])
def test_an_hf_folder_is_found_from_the_hypothesis_file_whatever_the_working_directory(project, model, monkeypatch):
    monkeypatch.chdir(project.parent / "elsewhere")  # not where the file is
    loaded = load(write(project, "a.hyp.yaml", model))
    assert loaded.model_source.ref == str(project / "models" / "my-gpt2")
    assert loaded.claims[0].cases[0].prompts.tokenizer == str(project / "models" / "my-gpt2")  # its own tokenizer


@pytest.mark.parametrize("model, says", [
    ("hf:../elsewhere", "outside the hypothesis file's folder"),
    ("hf:./models", "has no config.json"),
    ("hf:./models/none-such", "does not exist"),
    ("hf:./a.hyp.yaml", "is not a folder"),
])
def test_an_hf_folder_out_of_bounds_or_wrong_is_an_error_at_the_model_line(project, model, says):
    path = write(project, "a.hyp.yaml", model)
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert err.value.line == 1 and err.value.field == "model.hf" and says in err.value.message
    assert err.value.hint


def test_an_hf_folder_elsewhere_loads_once_its_folder_is_allowed(project, monkeypatch):
    from circuitcheck.files import paths

    shutil.copytree(IOI, project.parent / "elsewhere" / "gpt")
    path = write(project, "a.hyp.yaml", "hf:../elsewhere/gpt")
    with pytest.raises(HypothesisError, match="outside"):
        load(path)
    monkeypatch.setattr(paths, "ALLOWED", [])
    paths.allow([project.parent / "elsewhere"])
    assert load(path).model_source.ref == str(project.parent / "elsewhere" / "gpt")


def test_a_symlinked_hf_folder_that_leads_out_is_refused(project):
    shutil.copytree(IOI, project.parent / "elsewhere" / "gpt")
    os.symlink(project.parent / "elsewhere" / "gpt", project / "models" / "linked")
    with pytest.raises(HypothesisError, match="outside"):
        load(write(project, "a.hyp.yaml", "hf:./models/linked"))


def test_a_hub_name_stays_a_hub_name_unless_the_file_s_folder_has_that_folder(project):
    path = project / "b.hyp.yaml"
    path.write_text(textwrap.dedent("""\
        model: hf:circuitcheck-no-such-org/no-such-model
        prompts: {generator: max_of_list, n: 20}
        claims:
          - {id: a, says: "x", measure: accuracy, expect: record}
        """))
    assert load(path).model_source.ref == "circuitcheck-no-such-org/no-such-model"
    shutil.copytree(IOI, project / "circuitcheck-no-such-org" / "no-such-model")
    assert load(path).model_source.ref == str(project / "circuitcheck-no-such-org" / "no-such-model")


def test_an_hf_folder_runs_end_to_end_from_another_directory(project, pytester, monkeypatch):
    write(project, "a.hyp.yaml", "hf:./models/my-gpt2")
    monkeypatch.chdir(project.parent / "elsewhere")
    res = pytester.runpytest_subprocess(str(project / "a.hyp.yaml"), "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)


HUB_TEXT = TEXT_FILE.replace("MODEL", "hf:gpt2").replace(
    "  - {id: ld, says: \"x\", measure: logit_diff, expect: record}",
    "  - {id: ld, says: \"x\", measure: logit_diff, expect: {at_least: 0.5}}\n"
    "  - {id: acc, says: \"y\", measure: accuracy, expect: {at_least: 0.5}}")


@pytest.fixture
def offline(pytester, monkeypatch):
    """No network and an empty Hugging Face cache: gpt2 is on no disk this run can see."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(pytester.path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    pytester.makefile(".hyp.yaml", hub=HUB_TEXT)
    pytester.makefile(".hyp.yaml", local=TEXT_FILE.replace("MODEL", "zoo:ioi"))
    return pytester


def test_a_hub_model_offline_with_text_prompts_skips_its_claims_with_the_reason(offline):
    res = offline.runpytest_subprocess("-p", "no:cacheprovider", "-rs")  # a fresh process reads HF_HUB_OFFLINE
    res.assert_outcomes(skipped=2, passed=1)  # the zoo file beside it still runs
    out = res.stdout.str()
    assert "hub.hyp.yaml:10: model not available" in out and "hub.hyp.yaml:11: model not available" in out
    assert "'gpt2' is not in the local cache" in out and "HF_HUB_OFFLINE is set" in out
    assert "Traceback" not in out and "error" not in out.lower().split("short test summary")[-1]


def test_a_hub_model_offline_fails_its_claims_under_require_models(offline):
    res = offline.runpytest_subprocess("-p", "no:cacheprovider", "--cc-require-models", "hub.hyp.yaml")
    res.assert_outcomes(failed=2)
    assert "--cc-require-models" in res.stdout.str()


def test_circuitcheck_check_skips_a_hub_model_offline_too(offline):
    import subprocess
    import sys

    def check(*flags):
        return subprocess.run([sys.executable, "-m", "circuitcheck.cli", "check", "hub.hyp.yaml", *flags],
                              capture_output=True, text=True, cwd=offline.path)

    skipped = check()
    assert skipped.returncode == 0 and "hub.hyp.yaml: skipped: model not available" in skipped.stderr
    assert "'gpt2' is not in the local cache" in skipped.stderr and "Traceback" not in skipped.stderr
    required = check("--cc-require-models")
    assert required.returncode == 1 and "failed (--cc-require-models)" in required.stderr
