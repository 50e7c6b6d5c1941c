"""What a researcher meets first with their own model (issue 23): `hf: DIR` read from where the file
says, nested `.pt` state dicts, and a hub model offline."""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections import OrderedDict
from pathlib import Path

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


NATIVE_FILE = """\
model: {native: {config: config.json, weights: WEIGHTS}}
prompts: {generator: repeated_tokens, n: 30, seed: 0, length: 6, vocab: 64}
claims:
  - {id: loss, says: "x", measure: loss, expect: record}
"""


def checkpoint(tmp_path, tiny_dir, name, wrap):
    """A `.pt` training checkpoint around the tiny model's state dict, and a hypothesis file naming it."""
    import torch
    from safetensors.torch import load_file

    shutil.copy(tiny_dir / "config.json", tmp_path / "config.json")
    state = OrderedDict(load_file(str(tiny_dir / "model.safetensors")))
    state._metadata = OrderedDict({"": {"version": 1}})  # as `module.state_dict()` returns it
    torch.save(wrap(state), tmp_path / name)
    path = tmp_path / f"{name}.hyp.yaml"
    path.write_text(NATIVE_FILE.replace("WEIGHTS", name))
    return path


@pytest.mark.parametrize("key", ["model_state_dict", "state_dict", "ema_weights"])
def test_a_training_checkpoint_loads_its_state_dict_and_says_which_key(tmp_path, tiny_dir, key):
    import torch

    from circuitcheck import models
    from circuitcheck.session import Session

    path = checkpoint(tmp_path, tiny_dir, "ckpt.pt", lambda sd: {key: sd, "epoch": 7, "optimizer": {"lr": 0.1}})
    plain = checkpoint(tmp_path, tiny_dir, "plain.pt", lambda sd: sd)
    loaded = load(path)
    assert loaded.model_source.weights_key == key and f"ckpt.pt[{key!r}]" in loaded.model_source.describe()
    assert load(plain).model_source.weights_key is None
    tokens = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        want = models.load(models.ModelSource("native", str(tiny_dir / "config.json"),
                                              str(tiny_dir / "model.safetensors")))(tokens)
        got = models.load(loaded.model_source)(tokens)
    assert torch.equal(got, want)
    session = Session()
    session.add(loaded)
    assert session.result(path, "loss").error is None


@pytest.mark.parametrize("wrap, says", [
    (lambda sd: {"epoch": 3, "notes": "no weights here"}, "'epoch', 'notes') with no state dict"),
    (lambda sd: {"a": sd, "b": sd}, "several state dicts ('a', 'b')"),
    (lambda sd: [sd], "hold a list, not a state dict"),
])
def test_a_checkpoint_without_one_clear_state_dict_is_refused_at_collection(tmp_path, tiny_dir, wrap, says):
    path = checkpoint(tmp_path, tiny_dir, "ckpt.pt", wrap)
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert err.value.line == 1 and err.value.field == "model.native.weights" and says in err.value.message
    assert err.value.hint


def test_a_nested_checkpoint_of_another_model_is_refused_at_collection(tmp_path, tiny_dir):
    import json

    path = checkpoint(tmp_path, tiny_dir, "ckpt.pt", lambda sd: {"model": sd})
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "d_model": 48, "d_head": 12}))
    with pytest.raises(HypothesisError, match="the config says d_model 48, but the weights have 32"):
        load(path)


def test_a_checkpoint_that_changes_after_collection_is_that_claim_s_error(tmp_path, tiny_dir):
    import torch

    from circuitcheck.session import Session

    path = checkpoint(tmp_path, tiny_dir, "ckpt.pt", lambda sd: {"model": sd})
    loaded = load(path)
    torch.save({"epoch": 1}, tmp_path / "ckpt.pt")  # swapped between collection and the run
    session = Session()
    session.add(loaded)
    error = session.result(path, "loss").error
    assert "with no state dict in it" in error and "Traceback" not in error


MAX_OF_LIST = """\
model: zoo:max-of-list
prompts: {generator: max_of_list, n: 40, seed: 0}
claims:
  - {id: acc, says: "x", measure: accuracy, expect: record}
  - {id: loss, says: "y", measure: loss, expect: record}
"""


@pytest.mark.parametrize("dist, warns", [((), True), (("--dist", "loadgroup"), False)])
def test_plain_xdist_warns_once_that_it_spreads_a_model_s_claims(pytester, dist, warns):
    pytester.makefile(".hyp.yaml", m=MAX_OF_LIST)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *dist)
    res.assert_outcomes(passed=2)
    said = res.stdout.str().count("without --dist loadgroup spreads each model's claims")
    assert said == (1 if warns else 0), res.stdout.str()


def test_cc_ini_keys_set_the_flags_and_the_command_line_wins(pytester):
    pytester.makefile(".hyp.yaml", m=MAX_OF_LIST)
    pytester.makefile(".toml", pyproject='[tool.pytest.ini_options]\ncc_json = "from-ini.json"\n'
                      'cc_family = "run"\ncc_allow_path = ["data"]\n')
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(passed=2)
    assert (pytester.path / "from-ini.json").is_file()
    (pytester.path / "from-ini.json").unlink()
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cc-json=from-cli.json")
    res.assert_outcomes(passed=2)
    assert (pytester.path / "from-cli.json").is_file() and not (pytester.path / "from-ini.json").exists()


@pytest.mark.parametrize("ini_text, says", [
    ("[pytest]\ncc_dtype = int8\n", "cc_dtype = 'int8': choose one of"),
    ("[pytest]\ncc_batch_size = 0\n", "cc_batch_size = '0': '0' is not a positive whole number"),
    ("[pytest]\ncc_drift_alpha = 2\n", "is not a level between 0 and 1"),
])
def test_a_bad_cc_ini_value_is_a_usage_error_naming_the_file_and_key(pytester, ini_text, says):
    pytester.makefile(".hyp.yaml", m=MAX_OF_LIST)
    pytester.makeini(ini_text)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "tox.ini" in res.stderr.str() and says in res.stderr.str() and "Traceback" not in res.stderr.str()


def test_circuitcheck_check_reads_the_same_ini_keys(pytester):
    import subprocess
    import sys

    pytester.makefile(".hyp.yaml", m=MAX_OF_LIST)
    pytester.makefile(".ini", pytest="[pytest]\ncc_json = from-ini.json\n")

    def check(*flags):
        return subprocess.run([sys.executable, "-m", "circuitcheck.cli", "check", "m.hyp.yaml", *flags],
                              capture_output=True, text=True, cwd=pytester.path)

    assert check().returncode == 0 and (pytester.path / "from-ini.json").is_file()
    (pytester.path / "from-ini.json").unlink()
    assert check("--cc-json", "from-cli.json").returncode == 0
    assert (pytester.path / "from-cli.json").is_file() and not (pytester.path / "from-ini.json").exists()
    pytester.makefile(".ini", pytest="[pytest]\ncc_dtype = int8\n")
    bad = check()
    assert bad.returncode == 2 and "pytest.ini: cc_dtype = 'int8'" in bad.stderr and "Traceback" not in bad.stderr


def _claim_props(i: int) -> dict:
    return {"claim": f"ioi_components.hyp.yaml::a-long-claim-name-that-says-what-it-means-{i}", "verdict": "pass",
            "expected": "logit_diff under ablate(heads=[L2H0, L2H1, L2H2, L2H3]) at_most 0.5 relative to clean",
            "quantifier": "", "value": 0.123456 * i, "ci_low": 0.1, "ci_high": 0.2, "level": "0.0125 per side",
            "n": 500, "cases": 1, "method": "skew-corrected t (Hall 1992; n=500, skewness 0.3)"}


@pytest.mark.parametrize("width", [200, 120, 100, 80])
def test_the_claims_table_fits_the_terminal_and_keeps_the_numbers(width):
    from circuitcheck.report.table import table

    claims = [_claim_props(i) for i in range(1, 4)]
    wide = table(claims)
    assert max(map(len, wide)) > 200  # without a width: the whole text, as before
    lines = table(claims, width)
    assert max(map(len, lines)) <= width
    for line, props in zip(lines[1:], claims):
        assert line.startswith("PASS  ") and f"{props['value']:.4g}" in line and "[0.1, 0.2]" in line
        assert "0.0125 per side" in line and "500" in line
    assert any("…" in line for line in lines)
    assert all(line.split()[1].endswith(f"means-{i}") for i, line in enumerate(lines[1:], 1))  # the id stays


def test_the_pytest_summary_table_fits_columns(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "90")
    pytester.makefile(".hyp.yaml", m=MAX_OF_LIST.replace("id: acc,", "id: accuracy-of-the-last-token-is-high-on-every-list-we-draw,"))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    out = res.stdout.str().split("circuitcheck claims")[1].splitlines()[1:]
    rows = [line for line in out[:next(i for i, line in enumerate(out) if line.startswith("="))] if line]
    assert len(rows) == 3 and max(map(len, rows)) <= 90
    assert rows[1].startswith("RECORDED") or rows[2].startswith("RECORDED")


def test_the_json_report_has_a_run_header_and_each_case_s_standard_error(tmp_path, tiny_dir, monkeypatch):
    import json
    from importlib import metadata

    import numpy as np

    from circuitcheck.cli import main
    from circuitcheck.report import json_report

    path = checkpoint(tmp_path, tiny_dir, "plain.pt", lambda sd: sd)  # a loss with a real spread over prompts
    monkeypatch.chdir(tmp_path)
    assert main(["check", path.name, "--cc-json", "r.json", "--cc-prompt-seed", "3"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert json_report.schema_problem(report) is None
    run = report["run"]
    assert run["versions"]["torch"] == metadata.version("torch") and run["root"] == str(tmp_path)
    assert run["argv"] == ["circuitcheck", "check", path.name, "--cc-json", "r.json", "--cc-prompt-seed", "3"]
    assert run["settings"]["prompt_seed"] == 3 and run["settings"]["device"] == "cpu"
    assert run["totals"] == {"claims": 1, "recorded": 1}
    (claim,) = report["claims"]
    assert run["models"] == {claim["model"]: claim["fingerprint"]["weights_sha256"]}
    assert len(claim["fingerprint"]["weights_sha256"]) == 64
    assert run["started"] <= run["finished"] and run["seconds"] >= 0
    values = np.array(claim["cases"][0]["values"])
    assert values.std() > 0.01
    assert claim["cases"][0]["se"] == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)), rel=1e-5)


def test_the_git_commit_is_read_without_git(tmp_path):
    import subprocess
    from pathlib import Path

    from circuitcheck.report.json_report import git_commit

    here = Path(__file__).parent
    try:
        want = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the tests do not sit in a git checkout")
    assert git_commit(here) == want.stdout.strip()
    assert git_commit(tmp_path) is None or not str(tmp_path).startswith("/tmp")


def test_diff_says_what_differs_between_two_runs_and_reads_old_reports(tmp_path, monkeypatch, capsys):
    import json

    from circuitcheck.cli import main

    (tmp_path / "m.hyp.yaml").write_text(MAX_OF_LIST)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "m.hyp.yaml", "--cc-json", "a.json"]) == 0
    assert main(["check", "m.hyp.yaml", "--cc-json", "b.json", "--cc-dtype", "float64"]) == 0
    capsys.readouterr()
    assert main(["diff", "a.json", "b.json"]) == 0
    assert "run: dtype float32 in A, float64 in B" in capsys.readouterr().out
    old = json.loads((tmp_path / "a.json").read_text())
    del old["run"]  # a report written before the header existed
    for case in (c for r in old["claims"] for c in r["cases"]):
        del case["se"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["diff", "old.json", "b.json"]) == 0
    out = capsys.readouterr().out
    assert "run: A has no run header" in out and "2 claims compared: 0 with verdict flips" in out



def test_json_report_paths_are_relative_to_the_run_s_root(pytester, tiny_dir, monkeypatch, capsys):
    """Two checkouts of one project (a/ and b/, each with its pytest.ini): each report names its files
    relative to its rootdir, so `diff` matches the claims, and reads an older report's absolute paths
    relative to the root it recorded."""
    import json

    from circuitcheck.cli import main
    from conftest import writer

    reports = {}
    for name in ("a", "b"):
        root = pytester.path / name
        (root / "sub").mkdir(parents=True)
        (root / "pytest.ini").write_text("[pytest]\n")
        writer(root / "sub", tiny_dir)("- {id: loss, says: y, measure: loss, expect: record}\n")
        monkeypatch.chdir(root)
        res = pytester.runpytest("-p", "no:cacheprovider", "sub", "--cc-json", "r.json")
        res.assert_outcomes(passed=1)
        reports[name] = json.loads((root / "r.json").read_text())
    report, root = reports["a"], pytester.path / "a"
    assert report["run"]["root"] == str(root) and report["run"]["cwd"] == str(root)
    (claim,) = report["claims"]
    assert claim["file"] == "sub/t.hyp.yaml"
    assert claim["model"] == f"native:sub/{tiny_dir.name}/config.json + sub/{tiny_dir.name}/model.safetensors"
    assert list(report["run"]["models"]) == [claim["model"]]
    quoted = {k: report["run"].pop(k) for k in ("argv", "root", "cwd")}  # as written: absolute where they were
    assert str(root) not in json.dumps(report), "an absolute path under the root is left"
    report["run"].update(quoted)

    capsys.readouterr()
    assert main(["diff", str(root / "r.json"), str(pytester.path / "b" / "r.json")]) == 0
    assert "1 claims compared: 0 with verdict flips" in capsys.readouterr().out
    old = dict(report, claims=[dict(claim, file=str(root / claim["file"]))])  # as written before: absolute
    del old["run"]["cwd"]
    (pytester.path / "old.json").write_text(json.dumps(old))
    assert main(["diff", str(pytester.path / "old.json"), str(pytester.path / "b" / "r.json")]) == 0
    assert "1 claims compared: 0 with verdict flips" in capsys.readouterr().out

OLD_IOI = ("card.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json")


@pytest.fixture
def old_ioi(tmp_path):
    """A folder that holds last week's zoo:ioi (each file's text says so), and a note of the user's."""
    out = tmp_path / "ioi"
    out.mkdir()
    for name in (*OLD_IOI, "my-notes.txt"):
        (out / name).write_text(f"last week's {name}")
    return out


def _unchanged(out) -> bool:
    return all((out / n).read_text() == f"last week's {n}" for n in (*OLD_IOI, "my-notes.txt"))


def test_zoo_ioi_interrupted_while_training_leaves_last_week_s_model_whole(old_ioi, monkeypatch):
    from circuitcheck.zoo import ioi

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ioi, "train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ioi.train(steps=1, out=old_ioi, measure=False)
    assert _unchanged(old_ioi)  # the new tokenizer was not written over the old one
    assert sorted(p.name for p in old_ioi.iterdir()) == sorted((*OLD_IOI, "my-notes.txt"))  # no partial folder


def test_zoo_ioi_interrupted_while_moving_its_files_never_leaves_a_mixed_model(old_ioi, monkeypatch):
    """A failure at each rename in turn: the folder holds last week's model whole, or no weights at
    all, never weights beside a config or tokenizer of another run."""
    import os

    from circuitcheck.zoo import ioi

    real = os.replace
    moves = []

    def failing_at(k):
        def replace(src, dst):
            moves.append(Path(dst).name)
            if len(moves) == k:
                raise OSError(28, "No space left on device")
            return real(src, dst)
        return replace

    monkeypatch.setattr(os, "replace", failing_at(2))
    with pytest.raises(OSError):
        ioi.train(steps=1, out=old_ioi, measure=False)
    assert moves[-1] != "model.safetensors" and not (old_ioi / "model.safetensors").exists()
    assert (old_ioi / "my-notes.txt").read_text() == "last week's my-notes.txt"
    assert not any(p.name.startswith(".partial") for p in old_ioi.iterdir())
    monkeypatch.setattr(os, "replace", real)
    ioi.train(steps=1, out=old_ioi, measure=False)  # and run whole, every file is the new run's
    assert not any((old_ioi / n).read_text(errors="replace").startswith("last week's") for n in OLD_IOI)
    assert (old_ioi / "my-notes.txt").read_text() == "last week's my-notes.txt"
    assert json.loads((old_ioi / "training.json").read_text())["metrics"]["steps"] == 1


def test_progress_says_which_file_and_an_eta_from_the_claims_done(monkeypatch):
    from types import SimpleNamespace

    from circuitcheck import plugin

    lines = []
    terminal = SimpleNamespace(write_line=lines.append)
    source = SimpleNamespace(describe=lambda: "zoo:ioi")

    def item(key):
        it = object.__new__(plugin.ClaimItem)  # the fields Progress reads, without a pytest session
        it.__dict__.update(key=Path(key), loaded=SimpleNamespace(model_source=source))
        return it

    items = [item("a.hyp.yaml")] * 2 + [item("b.hyp.yaml")] * 3 + [item("c.hyp.yaml")]
    now = [0.0]
    monkeypatch.setattr(plugin.ClaimItem, "__eq__", object.__eq__, raising=False)
    progress = plugin.Progress(terminal, items)
    progress.clock, progress.start = (lambda: now[0]), 0.0
    progress.starting(items[0])
    assert lines == ["circuitcheck: a.hyp.yaml: measuring 2 claims on zoo:ioi (file 1 of 3, 0 s in; ETA unknown)"]
    now[0] = 1.0
    progress.starting(items[2])  # a quick run says nothing more
    assert len(lines) == 1
    now[0] = 10.0
    progress.starting(items[2])
    assert lines[-1].endswith("(file 2 of 3, 10 s in; about 20 s left)")  # 10 s for 2 claims, 4 to go


def test_progress_counts_planned_runs_every_few_seconds_and_says_a_model_loads():
    from types import SimpleNamespace

    from circuitcheck import plugin

    lines = []
    progress = plugin.Progress(SimpleNamespace(write_line=lines.append), [])
    now = [0.0]
    progress.clock, progress.start = (lambda: now[0]), 0.0
    progress.loading("hf:gpt2")
    assert lines == ["circuitcheck: loading hf:gpt2 (0 s in)"]
    progress.ran(1, 40)  # a quick run says nothing more
    assert len(lines) == 1
    now[0] = 4.0
    progress.ran(5, 40)
    assert lines[-1] == "circuitcheck: 5 of 40 planned runs done (4 s in; about 28 s left)"  # 4 s / 5 runs x 35
    now[0] = 8.0
    progress.ran(9, 40)  # 4 s after the last count: not yet
    assert len(lines) == 2
    now[0] = 9.0
    progress.ran(10, 40)
    assert lines[-1] == "circuitcheck: 10 of 40 planned runs done (9 s in; about 27 s left)"  # 9 s / 10 x 30


def _in_a_terminal(pytester, *args) -> str:
    """pytest's output when it runs in a pseudo-terminal, as a researcher's shell would."""
    import pty
    import subprocess
    import sys

    main, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=pytester.path,
                            stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "200"})
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    proc.wait()
    os.close(main)
    return out.decode(errors="replace")


def test_progress_shows_on_a_terminal_and_not_under_q_nor_in_a_log(pytester):
    pytester.makefile(".hyp.yaml", m=MAX_OF_LIST)
    said = ["circuitcheck: m.hyp.yaml: measuring 2 claims on zoo:max-of-list (file 1 of 1",
            "circuitcheck: loading zoo:max-of-list ("]
    terminal = _in_a_terminal(pytester)
    assert all(s in terminal for s in said), terminal
    quiet, log = _in_a_terminal(pytester, "-q"), pytester.runpytest_subprocess("-p", "no:cacheprovider").stdout.str()
    assert not any(s in out for s in said for out in (quiet, log))  # a CI log: no tty


def test_a_worker_that_dies_costs_its_own_claims_only(pytester):
    """End to end: a measure kills its pytest-xdist worker. With --max-worker-restart 0 xdist does not
    retry it on replacement workers (8 of them, minutes); its claim is an error in the report, and the
    other model's claims, on the other worker, pass and are reported."""
    import json

    (pytester.path / "dead").mkdir()
    (pytester.path / "dead" / "conftest.py").write_text(textwrap.dedent("""\
        import os
        import circuitcheck

        @circuitcheck.register_measure("kills-its-worker", reads=["blocks.0.hook_resid_pre"])
        def kill(run):
            os._exit(3)
        """))
    (pytester.path / "dead" / "d.hyp.yaml").write_text(MAX_OF_LIST.replace("measure: accuracy",
                                                                          "measure: {python: kills-its-worker}"))
    (pytester.path / "i.hyp.yaml").write_text(MAX_OF_LIST.replace("zoo:max-of-list", "zoo:induction").replace(
        "{generator: max_of_list, n: 40, seed: 0}", "{generator: repeated_tokens, n: 40, seed: 0, length: 8}"))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                                        "--max-worker-restart", "0", "--cc-json=r.json", timeout=400)
    out = res.stdout.str()
    assert "crashed" in out and "Traceback" not in out.split("short test summary")[-1]
    report = json.loads((pytester.path / "r.json").read_text())
    verdicts = {(Path(r["file"]).name, r["id"]): r["verdict"] for r in report["claims"]}
    assert verdicts[("i.hyp.yaml", "acc")] == "recorded" and verdicts[("i.hyp.yaml", "loss")] == "recorded"
    assert verdicts[("d.hyp.yaml", "acc")] == "error"
