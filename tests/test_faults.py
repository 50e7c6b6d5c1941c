"""Outputs and faults (issue 26): reports never overwrite inputs or each other, are written whole
(an injected ENOSPC leaves last week's report as it was), and a helper that fails (the value cache,
a baseline) costs the run that helper, never the good files beside it."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from circuitcheck.files import atomic
from circuitcheck.report import baseline

from test_regression import CLAIMS  # two claims that pass on the tiny model: accuracy and a head score

PROMPTS = "{generator: repeated_tokens, n: 40, seed: 1}"


def run(pytester, *args):
    return pytester.runpytest(*map(str, args), "-p", "no:cacheprovider")


@pytest.fixture
def full_disk(monkeypatch):
    """Every write through files/atomic.py gets a few bytes down, then ENOSPC (a full disk)."""
    def write(fd, data):
        if len(data) > 8:
            os.write(fd, bytes(data[:8]))
            return 8
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_os_write", write)


# ---------------------------------------------------------------- atomic writes
def test_a_full_disk_leaves_the_old_file_and_no_temporary_one(tmp_path, full_disk):
    target = tmp_path / "report.json"
    target.write_text("last week's report\n")
    with pytest.raises(OSError) as err:
        atomic.write(target, "x" * 1000)
    assert err.value.errno == errno.ENOSPC
    assert target.read_text() == "last week's report\n"
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_json_report_on_a_full_disk_keeps_last_weeks_report(pytester, hyp, tmp_path, full_disk):
    out = tmp_path / "reports" / "r.json"
    out.parent.mkdir()
    out.write_text('{"format": "last week"}\n')
    res = run(pytester, hyp(CLAIMS, prompts=PROMPTS), f"--cc-json={out}", f"--cc-html={out.with_suffix('.html')}")
    res.assert_outcomes(passed=2)
    assert res.ret == pytest.ExitCode.TESTS_FAILED  # a report that could not be written fails the run
    assert f"could not write the JSON report to {out}: No space left on device" in res.stdout.str()
    assert out.read_text() == '{"format": "last week"}\n'
    assert sorted(os.listdir(out.parent)) == ["r.json"]  # no half-written HTML report, no temporary file


def test_a_baseline_on_a_full_disk_keeps_the_old_baseline(pytester, hyp, monkeypatch):
    path = hyp(CLAIMS, prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines").assert_outcomes(passed=2)
    before = baseline.path_for(path).read_text()
    monkeypatch.setattr(atomic, "_os_write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    res = run(pytester, path, "--cc-update-baselines")
    assert "could not write the baseline" in res.stdout.str() and "No space left on device" in res.stdout.str()
    assert "Traceback" not in res.stdout.str() + res.stderr.str()
    assert baseline.path_for(path).read_text() == before


# ---------------------------------------------------------------- output paths
def test_a_report_path_that_names_a_hypothesis_file_is_refused_before_any_run(pytester, hyp):
    path = hyp(CLAIMS, prompts=PROMPTS)
    before = path.read_text()
    for flag in ("--cc-json", "--cc-html"):
        res = run(pytester, path, f"{flag}={path}")
        assert res.ret == pytest.ExitCode.USAGE_ERROR
        assert f"{flag} {path}: names an input" in res.stderr.str()
    assert path.read_text() == before


def test_a_report_path_that_is_a_files_model_config_is_that_files_error_and_not_written(pytester, hyp, tmp_path):
    path = hyp(CLAIMS, prompts=PROMPTS)
    config = next(tmp_path.glob("*/config.json"))
    before = config.read_text()
    res = run(pytester, path, f"--cc-json={config}")
    assert f"--cc-json {config} is a model file of t.hyp.yaml" in res.stdout.str()
    assert f"did not write the JSON report to {config}" in res.stdout.str()
    assert res.ret != pytest.ExitCode.OK
    assert config.read_text() == before


def test_json_and_html_reports_on_one_path_are_a_usage_error(pytester, hyp, tmp_path):
    res = run(pytester, hyp(CLAIMS, prompts=PROMPTS), f"--cc-json={tmp_path / 'r'}", f"--cc-html={tmp_path / 'r'}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "--cc-json and --cc-html both name" in res.stderr.str()
    assert not (tmp_path / "r").exists()


def test_two_files_of_one_name_cannot_dump_values_to_one_file(pytester, hyp, tmp_path):
    from conftest import copy_hyp

    first = hyp(CLAIMS, prompts=PROMPTS)
    (tmp_path / "other").mkdir()
    second = copy_hyp(first, tmp_path / "other" / "t.hyp.yaml")
    dumps = tmp_path / "dumps"
    res = run(pytester, first, second, f"--cc-dump-values={dumps}")
    res.assert_outcomes(passed=2, failed=2)
    out = res.stdout.str()
    assert f"{dumps / 't' / 'random-model-is-bad.json'} holds the values of {first}::random-model-is-bad" in out
    assert json.loads((dumps / "t" / "random-model-is-bad.json").read_text())["file"] == str(first)


def test_each_checkpoint_dumps_its_own_values_and_a_taken_name_is_refused(tmp_path):
    import numpy as np

    from circuitcheck.report.dump import Dumps

    class Named:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    measure = Named(model_dump=lambda **kw: {"metric": "accuracy"})
    claim, case = Named(id="c", expect=Named(text=lambda: "≥ 0")), Named(label="a b", measure=measure, where=None)
    dumps = Dumps(tmp_path / "d")
    for checkpoint, value in (("step-10", 1.0), ("step-20", 2.0)):
        dumps(Named(path=tmp_path / "t.hyp.yaml", checkpoint=checkpoint), claim, case, np.arange(2), np.full(2, value))
    for checkpoint, value in (("step-10", 1.0), ("step-20", 2.0)):
        assert json.loads((tmp_path / "d" / "t" / checkpoint / "c.a_b.json").read_text())["values"] == [value, value]
    clash = Named(label="a_b", measure=measure, where=None)  # another case, the same file name
    with pytest.raises(atomic.OutputError, match="holds the values of .*::c\\[a b\\] already"):
        dumps(Named(path=tmp_path / "t.hyp.yaml", checkpoint="step-10"), claim, clash, np.arange(2), np.zeros(2))
    assert json.loads((tmp_path / "d" / "t" / "step-10" / "c.a_b.json").read_text())["values"] == [1.0, 1.0]


# ---------------------------------------------------------------- baselines with bad contents
BAD_BASELINES = {
    "an entry that is a list": ('{"format": "circuitcheck-baseline/1", "claims": {"prev-head": [1, 2]}}',
                                "the entry of claim 'prev-head' is list"),
    "text where a number is": ('{"format": "circuitcheck-baseline/1", "claims": {"prev-head": {"verdict": "pass", '
                               '"drift": null, "roles": {}, "cases": [{"label": "", "value": "high", "low": 0, '
                               '"high": 1, "level": 0.95, "method": "m", "n": 3, "verdict": "pass"}]}}}',
                               "value 'high', not a number"),
    "Latin-1 bytes": (b'{"format": "circuitcheck-baseline/1", "claims": {"caf\xe9": {}}}', "not UTF-8 text (byte 0xe9"),
    "NaN": ('{"format": "circuitcheck-baseline/1", "claims": {"prev-head": {"verdict": "pass", "drift": NaN}}}',
            "NaN is not a number a baseline holds"),
    "deep nesting": ('{"format": "circuitcheck-baseline/1", "claims": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     "not valid JSON"),
}


@pytest.mark.parametrize("what", [*BAD_BASELINES, "a folder", "a FIFO", "/dev/zero"])
def test_a_baseline_with_bad_contents_is_that_baselines_error_and_the_run_goes_on(pytester, hyp, tmp_path, what):
    bad = hyp(CLAIMS, prompts=PROMPTS, name="bad.hyp.yaml")
    good = hyp(CLAIMS, prompts=PROMPTS, name="good.hyp.yaml")
    p = baseline.path_for(bad)
    p.parent.mkdir()
    if what in BAD_BASELINES:
        text, expected = BAD_BASELINES[what]
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    elif what == "a folder":
        p.mkdir()
        expected = "is not a regular file"
    elif what == "a FIFO":
        os.mkfifo(p)
        expected = "is not a regular file"
    else:
        p.symlink_to("/dev/zero")
        expected = "is not a regular file"
    res = run(pytester, bad, good)
    res.assert_outcomes(passed=2, failed=2)  # good.hyp.yaml's two claims pass
    assert f"{p}: " in res.stdout.str() and expected in res.stdout.str(), res.stdout.str()[-3000:]
    assert "Traceback" not in res.stdout.str()


def test_update_baselines_over_a_corrupt_one_rewrites_it_and_writes_the_others(pytester, hyp):
    bad = hyp(CLAIMS, prompts=PROMPTS, name="bad.hyp.yaml")
    good = hyp(CLAIMS, prompts=PROMPTS, name="good.hyp.yaml")
    baseline.path_for(bad).parent.mkdir()
    baseline.path_for(bad).write_text("{not json")
    res = run(pytester, bad, good, "--cc-update-baselines")
    res.assert_outcomes(passed=4)
    assert "the old one was unreadable" in res.stdout.str()
    for f in (bad, good):
        assert set(json.loads(baseline.path_for(f).read_text())["claims"]) == {"random-model-is-bad", "prev-head"}


def test_check_goes_on_past_a_corrupt_baseline(hyp):
    bad = hyp(CLAIMS, prompts=PROMPTS, name="bad.hyp.yaml")
    good = hyp(CLAIMS, prompts=PROMPTS, name="good.hyp.yaml")
    baseline.path_for(bad).parent.mkdir()
    baseline.path_for(bad).write_text("[]")
    res = subprocess.run([sys.executable, "-m", "circuitcheck.cli", "check", str(bad), str(good)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.count("not a circuitcheck-baseline/1 baseline file") == 1
    assert res.stdout.count("good.hyp.yaml::") == 2 and "bad.hyp.yaml::" not in res.stdout


# ---------------------------------------------------------------- the value cache is a helper
def _claim_lines(res) -> list[str]:
    return sorted(line.split()[0] + line.split()[1] for line in res.stdout.lines if line.startswith(("PASS ", "FAIL ")))


def test_a_full_disk_under_the_value_cache_costs_the_cache_only(pytester, hyp, monkeypatch):
    from circuitcheck.files import atomic

    def full(fd, data):  # where bytes reach the disk: every cache entry is written through it
        raise OSError(errno.ENOSPC, "No space left on device", "values/ab/abc.npy")

    path = hyp(CLAIMS, prompts=PROMPTS)
    monkeypatch.setattr(atomic, "_os_write", full)
    res = pytester.runpytest(str(path), "-W", "always")
    res.assert_outcomes(passed=2, warnings=1)
    assert res.stdout.str().count("CacheWarning: circuitcheck: the value cache cannot be written") == 1
    assert "No space left on device" in res.stdout.str()


def test_a_cache_directory_that_is_a_file_costs_the_cache_only(pytester, hyp):
    path = hyp(CLAIMS, prompts=PROMPTS)
    (pytester.path / ".pytest_cache" / "d").mkdir(parents=True)
    (pytester.path / ".pytest_cache" / "d" / "circuitcheck").write_text("a file where the cache's folder belongs")
    res = pytester.runpytest(str(path), "-W", "always", "-o", f"cache_dir={pytester.path / '.pytest_cache'}")
    res.assert_outcomes(passed=2, warnings=1)
    assert res.stdout.str().count("CacheWarning: circuitcheck: no value cache in this run: File exists") == 1


def _read_only(folder):
    """The command prefix that runs a command with `folder` read-only: a read-only bind mount where
    this is root (root writes through file modes), else file modes. None where neither can be had."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script + ' && touch "$0/x"', str(folder), "true"],
                           capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", script, str(folder)]


def test_a_read_only_checkout_runs_without_a_cache_and_says_so(hyp, tmp_path):
    path = hyp(CLAIMS, prompts=PROMPTS)
    prefix = _read_only(tmp_path)
    if prefix is None:
        pytest.skip("no read-only folder can be made here (root without mount namespaces)")
    res = subprocess.run(prefix + [sys.executable, "-m", "pytest", str(path), "-q", "-W", "always"],
                         cwd=tmp_path, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "2 passed" in out and "Traceback" not in out and "INTERNALERROR" not in out
    assert out.count("CacheWarning: circuitcheck: no value cache in this run: Read-only file system") == 1
    assert not (tmp_path / ".pytest_cache").exists()


# ---------------------------------------------------------------- python measures returning complex numbers
@pytest.mark.parametrize("kind", ["numpy", "torch", "list"])
def test_a_python_measure_returning_complex_numbers_is_its_claims_error(hyp, kind):
    import numpy as np
    import torch

    import circuitcheck

    @circuitcheck.register_measure(f"t-complex-{kind}", reads=[])
    def complex_values(run):
        values = np.ones(run.n) + 0.5j
        return {"numpy": values, "torch": torch.as_tensor(values), "list": values.tolist()}[kind]

    path = hyp(f"""\
        - id: complex
          says: "a measure with complex values"
          measure: {{python: t-complex-{kind}}}
          expect: {{at_least: 0}}
        - id: fine
          says: "a claim beside it"
          measure: accuracy
          expect: {{at_least: 0}}
        """, prompts=PROMPTS)
    broken, fine = circuitcheck.check(path)
    assert broken.verdict == "error" and fine.verdict == "pass"
    assert f"python measure 't-complex-{kind}'" in broken.error and "returned complex numbers" in broken.error


# ---------------------------------------------------------------- bad run options
@pytest.mark.parametrize("flags, words", [
    (["--cc-device", "meta"], "'meta' is not a device"),
    (["--cc-device", "gpu0"], "'gpu0' is not a device"),
    (["--cc-device", "cuda:64"], "asked for 'cuda:64', and this machine has"),
    (["--cc-dtype", "int8"], "invalid choice: 'int8'"),
    (["--cc-dtype", "float"], "invalid choice: 'float'"),
])
def test_bad_run_options_are_usage_errors(pytester, hyp, flags, words):
    path = hyp(CLAIMS, prompts=PROMPTS)
    res = run(pytester, path, *flags)
    assert res.ret == pytest.ExitCode.USAGE_ERROR and words in res.stderr.str(), res.stderr.str()
    cli = subprocess.run([sys.executable, "-m", "circuitcheck.cli", "check", str(path), *flags],
                         capture_output=True, text=True)
    assert cli.returncode == 2 and words in cli.stderr and "Traceback" not in cli.stderr


# ---------------------------------------------------------------- zoo train
def zoo(*args):
    return subprocess.run([sys.executable, "-m", "circuitcheck.zoo", "train", "max-of-list", *map(str, args)],
                          capture_output=True, text=True)


def test_zoo_train_refuses_an_out_that_is_a_file_and_zero_steps(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = zoo("--out", tmp_path / "notes.txt", "--steps", "5", "--no-measure", "--quiet")
    assert res.returncode == 2 and "--out" in res.stderr and "is a file" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    res = zoo("--out", tmp_path / "m", "--steps", "0", "--no-measure", "--quiet")
    assert res.returncode == 2 and "--steps 0" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "m").exists()


def test_zoo_train_interrupted_says_so_and_leaves_no_model(tmp_path, monkeypatch):
    from circuitcheck.zoo import __main__ as zoo_main
    from circuitcheck.zoo import train as T

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "build_model", interrupted)
    assert zoo_main.main(["train", "max-of-list", "--out", str(tmp_path / "m"), "--steps", "5", "--quiet"]) == 130
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_zoo_weights_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A save cut short (Ctrl-C or a full disk in safetensors' write) leaves no model.safetensors."""
    import safetensors.torch

    from circuitcheck.zoo import train as T

    def cut_short(state, filename):
        open(filename, "wb").write(b"\x00" * 16)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", cut_short)
    with pytest.raises(KeyboardInterrupt):
        T.train("max-of-list", out=tmp_path / "m", steps=2, measure=False)
    assert os.listdir(tmp_path / "m") == []


# ---------------------------------------------------------------- circuitcheck diff
def _record(file, verdict="pass", value=0.5, model="zoo:induction"):
    """A report record as --cc-json writes it (report.schema.json), with one case."""
    case = {"label": "", "value": value, "low": value - 0.1, "high": value + 0.1, "level": 0.95, "method": "m",
            "n": 10, "verdict": verdict, "bounds": [0.4, None], "alpha": 0.05, "interventions": [], "clean": None,
            "curve": None}
    return {"id": "c", "file": file, "line": 3, "says": "s", "expected": "≥ 0.4", "measure": "metric",
            "quantifier": None, "model": model, "checkpoint": "", "seed": 0, "load": {}, "fingerprint": {},
            "error": None, "verdict": verdict, "drift": None, "roles": {}, "cases": [case], "baseline": None}


def _report(tmp_path, name, *records):
    p = tmp_path / name
    p.write_text(json.dumps({"format": "circuitcheck-report/1", "claims": list(records),
                             "baselines": {"unused": [], "missing": []}}))
    return p


def diff(*args):
    return subprocess.run([sys.executable, "-m", "circuitcheck.cli", "diff", *map(str, args)],
                          capture_output=True, text=True)


def test_diff_matches_claims_by_folder_and_file_so_a_flip_is_not_hidden(tmp_path):
    a = _report(tmp_path, "a.json", _record("one/t.hyp.yaml"), _record("two/t.hyp.yaml"))
    b = _report(tmp_path, "b.json", _record("one/t.hyp.yaml"), _record("two/t.hyp.yaml", verdict="fail"))
    res = diff(a, b)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "2 claims compared: 1 with verdict flips" in res.stdout and "two/t.hyp.yaml::c" in res.stdout


def test_diff_refuses_a_report_holding_one_claim_twice(tmp_path):
    a = _report(tmp_path, "a.json", _record("t.hyp.yaml"), _record("t.hyp.yaml", verdict="fail"))
    res = diff(a, a)
    assert res.returncode == 2 and "holds claim t.hyp.yaml::c twice" in res.stderr and "Traceback" not in res.stderr


def test_diff_reads_nan_as_a_change_and_says_when_the_model_differs(tmp_path):
    a = _report(tmp_path, "a.json", _record("t.hyp.yaml"))
    b = tmp_path / "b.json"
    b.write_text(a.read_text().replace('"value": 0.5', '"value": NaN').replace("zoo:induction", "zoo:other"))
    res = diff(a, b, "--cc-drift", "fail")
    assert res.returncode == 1 and "1 drifted" in res.stdout
    assert "model: zoo:induction in A, zoo:other in B" in res.stdout
    assert diff(a, a, "--cc-drift", "fail").returncode == 0


@pytest.mark.parametrize("change, where", [
    (lambda d: d.update(claims={"c": 1}), "at claims: {'c': 1} is not of type 'array'"),
    (lambda d: d["claims"][0]["cases"][0].update(value="0.5"), "at claims/0/cases/0/value: '0.5' is not of type 'number'"),
    (lambda d: d["claims"][0].update(verdict=7), "at claims/0/verdict"),
    (lambda d: d["claims"].append("text"), "at claims/1: 'text' is not of type 'object'"),
])
def test_diff_validates_both_reports_against_the_schema(tmp_path, change, where):
    good = _report(tmp_path, "good.json", _record("t.hyp.yaml"))
    data = json.loads(good.read_text())
    change(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    for args in ((good, bad), (bad, good)):
        res = diff(*args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert f"{bad}: not a valid circuitcheck-report/1 report: {where}" in res.stderr, res.stderr


# ---------------------------------------------------------------- checkpoints
def test_a_bad_checkpoint_is_that_checkpoints_error_and_the_others_run(pytester, hyp, tiny_dir, tmp_path):
    from conftest import TINY, save_model

    from circuitcheck.files.loader import load

    path = hyp(CLAIMS, prompts=PROMPTS)
    ckpts = tmp_path / "ckpts"
    for name in ("step-1", "step-2", "step-3", "step-[5]"):
        shutil.copytree(tiny_dir, ckpts / name)
    weights = ckpts / "step-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    cfg = json.loads((ckpts / "step-3" / "config.json").read_text())
    (ckpts / "step-3" / "config.json").write_text(json.dumps({**cfg, "d_model": 64}))  # not its weights' config
    save_model(ckpts / "step-4", dict(TINY, d_vocab=80))  # the same heads, another vocabulary
    res = run(pytester, path, f"--cc-model={load(path).model_source.ref}={ckpts}/step-*")
    out = res.stdout.str()
    res.assert_outcomes(passed=4, failed=6)  # step-1 and step-[5] run; 2, 3 and 4 are their claims' errors
    assert "PASS     t.hyp.yaml::prev-head[step-[5]]" in out
    assert "checkpoint step-2: weights model.safetensors are cut short: the tensors need 55,296 bytes" in out
    assert "checkpoint step-3: the config says d_model 64, but the weights have 32" in out
    assert "checkpoint step-4: its d_vocab is 80, the file's model's is 64" in out
    assert "internal error" not in out


def test_a_folder_name_with_brackets_is_that_folder(tiny_dir, tmp_path):
    from circuitcheck.models import override

    shutil.copytree(tiny_dir, tmp_path / "run[1]")
    shutil.copytree(tiny_dir, tmp_path / "run1")  # what `run[1]` matches as a glob
    o = override.parse(f"zoo:x={tmp_path / 'run[1]'}")
    assert o.checkpoints[0].source.ref == str(tmp_path / "run[1]" / "config.json")


def test_a_glob_matching_thousands_of_folders_is_refused_with_the_limit(tmp_path):
    from circuitcheck.models import override

    for i in range(override.MAX_CHECKPOINTS + 1):
        (tmp_path / f"step-{i}").mkdir()
    with pytest.raises(override.OverrideError, match=f"matches more than {override.MAX_CHECKPOINTS}"):
        override.parse(f"zoo:x={tmp_path}/step-*")


def test_checkpoint_weights_through_a_symlink_out_of_the_folder_are_refused(hyp, tiny_dir, tmp_path):
    from circuitcheck.files.loader import HypothesisError, load

    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    shutil.copytree(tiny_dir, outside)
    ck = tmp_path / "ckpts" / "hf-step"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 4}))
    (ck / "model.safetensors").symlink_to(outside / "model.safetensors")
    path = hyp(CLAIMS, prompts=PROMPTS, extra="checkpoints: [ckpts/hf-step]\n")
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert "checkpoints" in err.value.field and "model.safetensors" in str(err.value), str(err.value)


# ---------------------------------------------------------------- a pytest-xdist worker that dies
def test_a_dead_workers_claim_is_an_error_record_beside_the_others(tmp_path):
    """pytest-xdist reports a claim whose worker died with `when == "???"` and no record: it becomes
    an error record (once, though xdist retries it on each replacement worker), and the records
    other workers sent stand. A real worker crash takes minutes here (xdist restarts 8 workers)."""
    from types import SimpleNamespace

    from circuitcheck import plugin
    from circuitcheck.report import json_report

    plugin.RECORDS.clear()
    plugin.RECORDS.append(_record("good.hyp.yaml"))
    crash = SimpleNamespace(nodeid="sub/dead.hyp.yaml::kills-its-worker[step-2]@model_x", when="???",
                            user_properties=[], longrepr="worker 'gw0' crashed while running 'sub/dead.hyp.yaml::...'")
    for _ in range(3):
        plugin.pytest_runtest_logreport(crash)
    records, _ = list(plugin.RECORDS), plugin.RECORDS.clear()
    assert [(r["file"], r["id"], r["checkpoint"], r["verdict"]) for r in records] == [
        ("good.hyp.yaml", "c", "", "pass"), ("sub/dead.hyp.yaml", "kills-its-worker", "step-2", "error")]
    assert "worker running this claim died: worker 'gw0' crashed" in records[1]["error"]
    assert json_report.schema_problem(json_report.document(records)) is None
