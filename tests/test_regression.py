"""Regression checks: --cc-model overrides, fingerprints, the JSON report, baselines, diff."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from circuitcheck.report import baseline
from circuitcheck.models import override
from circuitcheck.models import ZOO_DIR

from conftest import TINY, save_model

CLAIMS = """\
- id: random-model-is-bad
  says: "A random model gets almost nothing right"
  measure: accuracy
  expect: {at_least: 0}
- id: prev-head
  says: "L0H1 attends to the previous token"
  for: {all: {each: [L0H1, L1H2]}}
  measure: {head_score: {head: $head, pattern: previous_token}}
  expect: {at_least: 0}
"""
PROMPTS = "{generator: repeated_tokens, n: 60, seed: 1}"
# Against another model: 60 prompts give intervals too wide to part, so prev-head sets `drift:`
# (the other model moves L0H1's score by 0.033).
OTHER = CLAIMS.replace("{at_least: 0}", "{at_least: 0.01}").replace(
    "previous_token}}\n  expect: {at_least: 0.01}\n", "previous_token}}\n  expect: {at_least: 0.01}\n  drift: 0.02\n")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(pytester, path, *args):
    return pytester.runpytest(str(path), "-p", "no:cacheprovider", *args)


def model_of(path):
    """The model source a hypothesis file names (its own copy of the tiny model, beside it)."""
    from circuitcheck.files.loader import load

    return load(path).model_source


def report(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    """The tiny model's architecture with other weights: a 'retrain'."""
    return save_model(tmp_path_factory.mktemp("other"), TINY, seed=7)


# ---------------------------------------------------------------- --cc-model
def test_source_forms(tiny_dir, tmp_path):
    o = override.parse(f"zoo:induction={tiny_dir}")
    (ck,) = o.checkpoints
    assert o.ref == "zoo:induction" and not o.series
    assert ck.source.kind == "native" and ck.source.weights == str(tiny_dir / "model.safetensors")
    assert ck.dims == (TINY["n_layers"], TINY["n_heads"])
    assert override.source(str(tiny_dir / "model.safetensors"))[0] == ck.source
    assert override.source("zoo:max-of-list")[0].kind == "zoo"
    assert override.source("hf:gpt2")[0] == override.source("hf:gpt2")[0].__class__("hf", "gpt2")
    hf = tmp_path / "hfdir"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 3}))
    assert override.source(str(hf)) == (override.source(str(hf))[0].__class__("hf", str(hf)), (2, 3))


@pytest.mark.parametrize("text, message", [
    ("zoo:max-of-list", "write REF=SOURCE"),
    ("zoo:max-of-list=/no/such/dir", "neither a file, a directory"),
    ("zoo:max-of-list=zoo:max-of-lsit", "no zoo model named 'max-of-lsit'"),
    ("zoo:max-of-list=/tmp/*.no-such-glob", "matches no file"),
])
def test_bad_overrides_say_what_to_write(text, message):
    with pytest.raises(override.OverrideError, match=message):
        override.parse(text)


def test_a_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(override.OverrideError, match="none of model.safetensors"):
        override.parse(f"zoo:induction={tmp_path}")


def test_a_series_from_a_glob_in_step_order(tiny_dir, tmp_path):
    for step in (1200, 400, 800):
        d = tmp_path / f"step-{step}"
        d.mkdir()
        for f in ("config.json", "model.safetensors"):
            (d / f).write_bytes((tiny_dir / f).read_bytes())
    o = override.parse(f"zoo:induction={tmp_path}/step-*")
    assert o.series and [c.name for c in o.checkpoints] == ["step-400", "step-800", "step-1200"]


def test_override_runs_the_other_model_under_the_same_names(pytester, hyp, tiny_dir, other_dir, tmp_path):
    path = hyp(CLAIMS, prompts=PROMPTS)
    out_a, out_b, xml = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "b.xml"
    run(pytester, path, f"--cc-json={out_a}").assert_outcomes(passed=2)
    res = run(pytester, path, f"--cc-json={out_b}", f"--junitxml={xml}",
              f"--cc-model={model_of(path).ref}={other_dir}")
    res.assert_outcomes(passed=2)
    a, b = report(out_a)["claims"], report(out_b)["claims"]
    assert [r["id"] for r in a] == [r["id"] for r in b] == ["random-model-is-bad", "prev-head"]
    assert 'name="random-model-is-bad"' in xml.read_text() and 'name="prev-head"' in xml.read_text()
    assert a[0]["fingerprint"]["weights_sha256"] == sha256(tiny_dir / "model.safetensors")
    assert b[0]["fingerprint"]["weights_sha256"] == sha256(other_dir / "model.safetensors")
    assert a[1]["cases"][0]["value"] != b[1]["cases"][0]["value"]  # it really ran the other weights
    root = Path(report(out_b)["run"]["root"])  # the report's paths are relative to it
    assert f"native:{other_dir.relative_to(root)}/config.json" in b[0]["model"]


def test_an_override_matching_no_file_is_an_error_before_any_claim_runs(pytester, hyp, other_dir):
    """A typo in REF ran the files' own models and exited 0: a green run on the wrong model."""
    res = run(pytester, hyp(CLAIMS, prompts=PROMPTS), f"--cc-model=zoo:induction={other_dir}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "--cc-model zoo:induction=...: no file's model is zoo:induction" in res.stderr.str()
    res.assert_outcomes()  # nothing ran


def test_the_command_line_refuses_an_override_matching_no_file(hyp, other_dir, capsys):
    from circuitcheck import cli

    assert cli.main(["check", str(hyp(CLAIMS, prompts=PROMPTS)), f"--cc-model=zoo:induction={other_dir}"]) == 2
    err = capsys.readouterr().err
    assert "no file's model is zoo:induction (the files' models: native:" in err


def test_fingerprint_of_a_zoo_model():
    from circuitcheck.models.fingerprint import fingerprint
    from circuitcheck.models import ModelSource

    fp = fingerprint(ModelSource("zoo", "max-of-list"), {"dtype": "float32", "device": "cpu"})
    assert fp["weights_sha256"] == sha256(ZOO_DIR / "max-of-list" / "model.safetensors")
    assert fp["weights_from"] == ["model.safetensors"]
    assert {"torch", "transformer_lens", "circuitcheck", "dtype", "device"} <= set(fp)


# ---------------------------------------------------------------- JSON report
def test_json_report_follows_its_schema(pytester, hyp, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from circuitcheck.report.json_report import SCHEMA

    path = hyp(CLAIMS + """\
- id: ablating-changes-little
  says: "ablating L0H0 changes accuracy by at most 1"
  under: {ablate: {heads: [L0H0], method: zero}}
  measure: accuracy
  expect: {change: {about: 0, tol: 1}}
""", prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    out = tmp_path / "r.json"
    run(pytester, path, f"--cc-json={out}").assert_outcomes(passed=3)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    data = report(out)
    jsonschema.validate(data, schema)
    ablate = data["claims"][2]
    assert ablate["cases"][0]["interventions"] == [{"ablate": {"heads": ["L0H0"], "method": "zero"}}]
    assert ablate["cases"][0]["clean"]["n"] == 60 and ablate["baseline"]["flip"] is None
    data["claims"][0]["cases"][0]["value"] = "high"  # the schema is not a rubber stamp
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


# ---------------------------------------------------------------- baselines
def test_baselines_round_trip(pytester, hyp, tmp_path):
    path = hyp(CLAIMS, prompts=PROMPTS)
    res = run(pytester, path, "--cc-update-baselines")
    stored = baseline.path_for(path)
    assert stored == tmp_path / "__baselines__" / "t.json" and "wrote baseline" in res.stdout.str()
    data = json.loads(stored.read_text())
    assert set(data["claims"]) == {"random-model-is-bad", "prev-head"}
    assert [c["label"] for c in data["claims"]["prev-head"]["cases"]] == ["L0H1", "L1H2"]

    out = tmp_path / "r.json"
    res = run(pytester, path, f"--cc-json={out}")
    res.assert_outcomes(passed=2)
    assert "2 claims compared, 0 with verdict flips, 0 drifted" in res.stdout.str()
    for rec in report(out)["claims"]:
        assert rec["baseline"]["flip"] is None and not rec["baseline"]["drift"]
        assert all(c["change"] == 0 for c in rec["baseline"]["cases"])


def test_a_baseline_with_a_refused_bound_is_written_and_compared(pytester, hyp, tmp_path):
    """An unbounded measure on 12 prompts gets no bound (the skew-corrected t starts at 30): its
    bounds are infinite, which JSON cannot hold. The baseline keeps them as null, as the JSON
    report does, and a rerun compares against it (it crashed in `baseline.numbers` before)."""
    claims = ("- id: few-prompts\n  says: \"logprob on 12 prompts\"\n  measure: logprob\n"
              "  expect: {at_least: -100}\n")
    path = hyp(claims, prompts="{generator: repeated_tokens, n: 12, seed: 1}")
    res = run(pytester, path, "--cc-update-baselines", "--cc-inconclusive=skip")
    assert "wrote baseline" in res.stdout.str(), res.stdout.str()
    case = json.loads(baseline.path_for(path).read_text())["claims"]["few-prompts"]["cases"][0]
    assert case["low"] is None and case["high"] is None and case["verdict"] == "inconclusive"
    res = run(pytester, path, "--cc-inconclusive=skip")
    assert "1 claims compared, 0 with verdict flips, 0 drifted" in res.stdout.str()
    edit_baseline(path, "few-prompts", values=None, value=case["value"] + 1)  # a baseline without values
    res = run(pytester, path, "--cc-inconclusive=skip")  # the old overlap rule: unbounded intervals overlap
    assert "1 claims compared, 0 with verdict flips, 0 drifted" in res.stdout.str()


def edit_baseline(path, claim, case=0, **changes):
    p = baseline.path_for(path)
    data = json.loads(p.read_text())
    if "verdict" in changes and case is None:
        data["claims"][claim]["verdict"] = changes.pop("verdict")
    else:
        data["claims"][claim]["cases"][case].update(changes)
    p.write_text(json.dumps(data))
    return data


def shift_baseline(path, claim, case, by):
    """Move a baseline case's per-prompt values (and value) by `by`: as if the model had changed."""
    p = baseline.path_for(path)
    data = json.loads(p.read_text())
    c = data["claims"][claim]["cases"][case]
    c.update(values=[v + by for v in c["values"]], value=c["value"] + by)
    p.write_text(json.dumps(data))


def test_a_perturbed_baseline_is_drift_and_drift_can_fail(pytester, hyp, tmp_path):
    path = hyp(CLAIMS, prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    shift_baseline(path, "prev-head", 0, 0.2)  # every prompt 0.2 higher in the baseline
    res = run(pytester, path)
    res.assert_outcomes(passed=2)  # --cc-drift=warn: reported, not failed
    out = res.stdout.str()
    assert "1 drifted" in out and "drift  t.hyp.yaml::prev-head: L0H1 Δ-0.2" in out
    assert "paired over the same 60 prompts" in out or "a test of no change" in out
    res = run(pytester, path, "--cc-drift=fail")
    res.assert_outcomes(passed=1, failed=1)
    assert "DRIFT" in res.stdout.str() and "drift from the baseline fails this claim" in res.stdout.str()


def test_a_claims_drift_key_is_an_equivalence_test(pytester, hyp):
    path = hyp(CLAIMS.replace("previous_token}}\n  expect: {at_least: 0}\n",
                              "previous_token}}\n  expect: {at_least: 0}\n  drift: 0.5\n"), prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    shift_baseline(path, "prev-head", 0, 0.1)
    assert "0 drifted" in run(pytester, path).stdout.str()  # a change shown to lie within ±0.5
    shift_baseline(path, "prev-head", 0, 0.6)
    out = run(pytester, path).stdout.str()
    assert "1 drifted" in out and "not shown within ±0.5" in out


def test_update_baselines_rewrites_nothing_on_an_unchanged_model(pytester, hyp):
    """Issue 23: an update compares before it writes; an entry that neither flips nor drifts stays."""
    path = hyp(CLAIMS, prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    p = baseline.path_for(path)
    data = json.loads(p.read_text())
    c = data["claims"]["prev-head"]["cases"][0]
    c.update(values=[v + 1e-9 for v in c["values"]], value=c["value"] + 1e-9)  # float noise of another machine
    p.write_text(baseline._dump(data))
    before = p.read_bytes()
    run(pytester, path, "--cc-update-baselines")
    assert p.read_bytes() == before
    shift_baseline(path, "prev-head", 0, 0.2)  # a real change is written
    run(pytester, path, "--cc-update-baselines")
    assert json.loads(p.read_text())["claims"]["prev-head"]["cases"][0]["values"] != \
        json.loads(before)["claims"]["prev-head"]["cases"][0]["values"]


def test_a_claim_without_a_baseline_cannot_pass_unseen(pytester, hyp):
    """Issue 23: under --cc-drift=fail a claim without a baseline entry is listed even where no
    baseline file exists; --cc-drift=require fails it."""
    path = hyp(CLAIMS, prompts=PROMPTS)
    res = run(pytester, path, "--cc-drift=fail")
    res.assert_outcomes(passed=2)
    assert "no baseline for t.hyp.yaml::random-model-is-bad" in res.stdout.str()
    res = run(pytester, path, "--cc-drift=require")
    res.assert_outcomes(failed=2)
    assert "--cc-drift=require fails it" in res.stdout.str()
    run(pytester, path, "--cc-update-baselines")
    run(pytester, path, "--cc-drift=require").assert_outcomes(passed=2)


def test_a_verdict_flip_is_reported(pytester, hyp, tmp_path):
    path = hyp(CLAIMS, prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    edit_baseline(path, "random-model-is-bad", case=None, verdict="fail")
    edit_baseline(path, "prev-head", case=1, verdict="inconclusive")
    out = tmp_path / "r.json"
    res = run(pytester, path, f"--cc-json={out}")
    text = res.stdout.str()
    assert "2 with verdict flips" in text and "flip   t.hyp.yaml::random-model-is-bad: fail→pass" in text
    assert "flip   t.hyp.yaml::prev-head: [L1H2] inconclusive→pass" in text
    prev = report(out)["claims"][1]["baseline"]
    assert prev["flip"] is None and prev["cases"][1]["flip"] == "inconclusive→pass"


def test_unused_and_missing_baselines_are_reported(pytester, hyp):
    path = hyp(CLAIMS, prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    p = baseline.path_for(path)
    data = json.loads(p.read_text())
    data["claims"]["renamed-away"] = data["claims"].pop("random-model-is-bad")
    p.write_text(json.dumps(data))
    out = run(pytester, path).stdout.str()
    assert "unused baseline t.hyp.yaml::renamed-away: the claim is gone from the file" in out
    assert "no baseline for t.hyp.yaml::random-model-is-bad" in out
    run(pytester, path, "--cc-update-baselines", "-k", "prev-head")  # a partial update keeps the others...
    assert set(json.loads(p.read_text())["claims"]) == {"prev-head"}  # ...that exist in the file


def test_another_model_drifts_from_the_baseline(pytester, hyp, tiny_dir, other_dir):
    path = hyp(OTHER, prompts=PROMPTS)
    run(pytester, path, "--cc-update-baselines")
    res = run(pytester, path, f"--cc-model={model_of(path).weights}={other_dir}")
    out = res.stdout.str()
    assert "drift  t.hyp.yaml::prev-head" in out
    header = next(x for x in out.split("circuitcheck claims")[1].splitlines() if x.startswith("verdict"))
    assert header.split()[-1] == "baseline"  # the table's baseline column


def test_a_broken_baseline_file_is_a_clear_error(pytester, hyp):
    path = hyp(CLAIMS, prompts=PROMPTS)
    p = baseline.path_for(path)
    p.parent.mkdir()
    p.write_text("{not json")
    res = run(pytester, path)
    assert "not valid JSON" in res.stdout.str() and "--cc-update-baselines" in res.stdout.str()


# ---------------------------------------------------------------- circuitcheck check / diff
def cli(*args):
    return subprocess.run([sys.executable, "-m", "circuitcheck.cli", *map(str, args)], capture_output=True, text=True)


def test_check_and_diff_from_the_command_line(hyp, tiny_dir, other_dir, tmp_path):
    path = hyp(OTHER, prompts=PROMPTS)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    cli("check", path, "--cc-json", a)
    cli("check", path, "--cc-json", b, "--cc-model", f"{model_of(path).ref}={other_dir}")
    same = cli("diff", a, a)
    assert same.returncode == 0 and "0 with verdict flips, 0 drifted" in same.stdout
    changed = cli("diff", a, b)
    assert "t.hyp.yaml::prev-head" in changed.stdout and "drift" in changed.stdout
    flipped = any(x["verdict"] != y["verdict"] for ra, rb in zip(report(a)["claims"], report(b)["claims"])
                  for x, y in zip([ra] + ra["cases"], [rb] + rb["cases"]))
    assert changed.returncode == int(flipped)
    assert cli("diff", a, b, "--cc-drift", "fail").returncode == 1
    for bad in (tmp_path / "none.json", tmp_path):
        r = cli("diff", bad, a)
        assert r.returncode == 2 and "Traceback" not in r.stderr and str(bad) in r.stderr


# ---------------------------------------------------------------- checkpoint series
def test_a_checkpoint_series_from_training_runs_each_claim_on_each(pytester, tmp_path):
    from circuitcheck.zoo.train import train

    train("max-of-list", steps=20, out=tmp_path / "run", measure=False, save_every=10)
    assert sorted(p.name for p in (tmp_path / "run").glob("step-*")) == ["step-10", "step-20"]
    path = pytester.path / "m.hyp.yaml"
    path.write_text("model: zoo:max-of-list\nprompts: {generator: max_of_list, n: 50, seed: 0}\nclaims:\n"
                    "  - {id: some-accuracy, says: accuracy, measure: accuracy, expect: {at_least: 0}}\n")
    out = tmp_path / "series.json"
    res = run(pytester, path, f"--cc-model=zoo:max-of-list={tmp_path / 'run'}/step-*", f"--cc-json={out}",
              "-v")
    res.assert_outcomes(passed=2)
    text = res.stdout.str()
    assert "some-accuracy[step-10] PASSED" in text and "some-accuracy[step-20] PASSED" in text
    table = text.split("claims across checkpoints:")[1].splitlines()
    assert table[1].split() == ["claim", "step-10", "step-20"]
    recs = report(out)["claims"]
    assert [r["checkpoint"] for r in recs] == ["step-10", "step-20"]
    shas = {r["fingerprint"]["weights_sha256"] for r in recs}
    assert shas == {sha256(tmp_path / "run" / s / "model.safetensors") for s in ("step-10", "step-20")}
    assert sha256(tmp_path / "run" / "step-20" / "model.safetensors") == sha256(tmp_path / "run" / "model.safetensors")
    bad = run(pytester, path, f"--cc-model=zoo:max-of-list={tmp_path / 'run'}/step-*", "--cc-update-baselines")
    assert "give --cc-model one checkpoint, not a series" in bad.stderr.str()


def checkpoints_beside(folder, *model_dirs):
    """Copies of models as `folder/ckpts/step-1`, `step-2`, ... (a training run's checkpoints)."""
    import shutil

    for i, d in enumerate(model_dirs, 1):
        shutil.copytree(d, folder / "ckpts" / f"step-{i}")


def test_a_files_checkpoints_run_each_claim_on_each(pytester, hyp, tiny_dir, other_dir, tmp_path):
    """`checkpoints:` in the file does what `--cc-model REF=a,b` does: every claim on each, one
    column per checkpoint; an override of the file's model wins over them."""
    from circuitcheck import check

    checkpoints_beside(tmp_path, tiny_dir, other_dir)
    path = hyp(CLAIMS, prompts=PROMPTS, extra="checkpoints: ckpts/step-*\n")
    out = tmp_path / "series.json"
    res = run(pytester, path, f"--cc-json={out}", "-v")
    res.assert_outcomes(passed=4)
    text = res.stdout.str()
    assert "prev-head[step-1] PASSED" in text and "prev-head[step-2] PASSED" in text
    assert text.split("claims across checkpoints:")[1].splitlines()[1].split() == ["claim", "step-1", "step-2"]
    recs = report(out)["claims"]
    assert [(r["id"], r["checkpoint"]) for r in recs] == [
        ("random-model-is-bad", "step-1"), ("prev-head", "step-1"), ("random-model-is-bad", "step-2"),
        ("prev-head", "step-2")]
    assert [recs[i]["fingerprint"]["weights_sha256"] for i in (0, 2)] == [
        sha256(tiny_dir / "model.safetensors"), sha256(other_dir / "model.safetensors")]
    assert recs[1]["cases"][0]["value"] != recs[3]["cases"][0]["value"]  # each ran its own weights
    # the library runs them too, in the list's order
    listed = hyp(CLAIMS, prompts=PROMPTS, name="l.hyp.yaml", extra="checkpoints: [ckpts/step-2, ckpts/step-1]\n")
    assert [(r.claim_id, r.checkpoint) for r in check(listed)][::2] == [("random-model-is-bad", "step-2"),
                                                                       ("random-model-is-bad", "step-1")]
    # --cc-model re-points the file's model: one run, on that model, under the plain names
    res = run(pytester, path, f"--cc-model={model_of(path).ref}={other_dir}", "-v")
    res.assert_outcomes(passed=2)
    assert "prev-head PASSED" in res.stdout.str() and "[step-" not in res.stdout.str()
    bad = run(pytester, path, "--cc-update-baselines")
    assert "--cc-update-baselines writes one baseline per file" in bad.stdout.str() and "Traceback" not in bad.stdout.str()
    assert f"{path}:" in bad.stdout.str() and "checkpoints" in bad.stdout.str()


@pytest.mark.parametrize("given, message", [
    ("[ckpts/step-1, ckpts/step-9]", "the checkpoint 'ckpts/step-9' does not exist"),
    ("[ckpts/step-1, ../outside]", "outside the hypothesis file's folder"),
    ("[ckpts/step-1, /etc]", "outside the hypothesis file's folder"),
    ("[ckpts/step-1, ckpts/empty]", "has no config.json"),
    ("[ckpts/step-1, ckpts/step-1]", "is listed twice"),
    ("[ckpts/step-1, ckpts/mlp]", "checkpoints are of the file's model"),
    ("ckpts/zzz-*", "matches no checkpoint"),
    ("[]", "at least 1 item"),
])
def test_bad_checkpoints_are_collection_errors(hyp, tiny_dir, tiny_no_ln_dir, tmp_path, given, message):
    from circuitcheck.files.loader import HypothesisError, load

    checkpoints_beside(tmp_path, tiny_dir)
    (tmp_path / "ckpts" / "empty").mkdir()
    import shutil

    shutil.copytree(tiny_no_ln_dir, tmp_path / "ckpts" / "mlp")  # one layer, not two
    (tmp_path.parent / "outside").mkdir(exist_ok=True)
    path = hyp(CLAIMS, prompts=PROMPTS, extra=f"checkpoints: {given}\n")
    with pytest.raises(HypothesisError) as err:
        load(path)
    text = str(err.value)
    assert message in text and str(path) in text and "checkpoints" in text
    assert err.value.line == path.read_text().splitlines().index(f"checkpoints: {given}") + 1


def test_save_every_never_writes_into_the_package():
    from circuitcheck.zoo.train import ZOO_MODELS, train

    with pytest.raises(ValueError, match="--out"):
        train("max-of-list", out=ZOO_MODELS / "max-of-list", steps=2000, save_every=500)


@pytest.mark.parametrize("where", ["a folder", "below a file"])
def test_a_report_path_that_cannot_be_written_stops_pytest_before_any_run(pytester, hyp, tmp_path, where):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    target = tmp_path if where == "a folder" else tmp_path / "notes.txt" / "report.json"
    for flag in ("--cc-json", "--cc-html"):
        res = run(pytester, hyp(CLAIMS), f"{flag}={target}")
        assert res.ret == pytest.ExitCode.USAGE_ERROR, (flag, res.ret)
        err = res.stderr.str()
        assert f"{flag} {target}:" in err and "Traceback" not in err, err
        assert "circuitcheck claims" not in res.stdout.str()  # nothing ran


def test_a_report_that_fails_to_write_at_the_end_fails_the_run(pytester, hyp, tmp_path, monkeypatch):
    from circuitcheck.report import json_report as report_json

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_json, "write", full)
    res = run(pytester, hyp(CLAIMS), f"--cc-json={tmp_path / 'r.json'}")
    res.assert_outcomes(passed=2)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    assert f"could not write the JSON report to {tmp_path / 'r.json'}: No space left on device" in res.stdout.str()


def test_a_truncated_override_is_refused_before_the_run(pytester, hyp, tiny_dir, tmp_path):
    """It loaded lazily and every claim failed with an internal SafetensorError at measure time."""
    import shutil

    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(tiny_dir / "config.json", cut / "config.json")
    data = (tiny_dir / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    path = hyp(CLAIMS, prompts=PROMPTS)
    res = run(pytester, path, f"--cc-model={model_of(path).ref}={cut}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "--cc-model: weights model.safetensors are cut short" in res.stderr.str()
