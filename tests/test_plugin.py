"""The pytest plugin end to end, through pytester: items, messages, options, tables, JUnit XML."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

TRUE_AND_FALSE = """\
- id: random-model-is-bad
  says: "A random model gets almost nothing right"
  measure: accuracy
  expect: {at_most: 0.2}
- id: false-claim
  says: "A random model is right half the time"
  measure: accuracy
  expect: {at_least: 0.5}
"""


def test_true_claim_passes_false_claim_fails_with_the_numbers(pytester, hyp):
    path = hyp(TRUE_AND_FALSE, prompts="{generator: max_of_list, n: 120, seed: 1}")
    result = pytester.runpytest(str(path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    line = path.read_text().splitlines().index("  - id: false-claim") + 1
    assert f"{path}:{line}: claim 'false-claim' FAIL" in out
    for text in ("says:      A random model is right half the time", "expected:  accuracy ≥ 0.5", "CI [",
                 "per side)", "Clopper-Pearson (exact binomial), n=120", "the whole interval lies below 0.5", "seed 0",
                 "dtype': 'float32'", "multiple testing: Holm over 2 claims of this file"):
        assert text in out
    assert "Traceback" not in out and "circuitcheck/" not in out.split("FAILURES")[1].split("circuitcheck claims")[0]
    assert "circuitcheck claims" in out and "t.hyp.yaml::random-model-is-bad" in out


def test_inconclusive_fails_by_default_and_can_skip(pytester, hyp):
    path = hyp("""\
        - id: straddles
          says: "accuracy near a coin flip of 3%"
          measure: accuracy
          expect: {at_least: 0.03}
        """, prompts="{generator: repeated_tokens, n: 10, seed: 1}")
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    assert "INCONCLUSIVE" in res.stdout.str() and "prompts would settle it with 80% power" in res.stdout.str()
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider", "--cc-inconclusive=skip", "-rs")
    res.assert_outcomes(skipped=1)
    line = path.read_text().splitlines().index("  - id: straddles") + 1
    assert f"t.hyp.yaml:{line}: inconclusive: the interval straddles" in res.stdout.str()  # the claim's YAML line


def test_the_short_summary_starts_with_the_verdict_and_numbers(pytester, hyp):
    import re

    path = hyp(TRUE_AND_FALSE, prompts="{generator: max_of_list, n: 120, seed: 1}")
    out = pytester.runpytest(str(path), "-p", "no:cacheprovider", "-rf", "-vv").stdout.str()  # -vv: untrimmed
    assert re.search(r"^FAILED \S+::false-claim - FAIL 0 \[0, 0\.\d+\] expected ≥ 0\.5$", out, re.M), out


def test_marks_from_files_are_registered_for_strict_markers(pytester, hyp):
    path = hyp(TRUE_AND_FALSE.replace('  says: "A random model is right half the time"',
                                      '  says: "A random model is right half the time"\n  marks: [slow, nightly]'))
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider", "--strict-markers", "-m", "slow")
    res.assert_outcomes(failed=1)
    assert "not found in `markers`" not in res.stdout.str()


SLOW_FACTORY = """\
import time

import circuitcheck
from circuitcheck.models import native


@circuitcheck.register_model("plugin-slow-to-build")
def build():
    time.sleep(2.0)  # stands for loading a big model: work every claim of the file shares
    return native(dict(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=16,
                       attn_only=True, act_fn="relu", normalization_type=None, seed=0))
"""


def test_durations_charge_shared_work_to_the_first_setup_and_each_claim_its_own(pytester, tiny_model):
    pytester.makeconftest(SLOW_FACTORY)
    pytester.makefile(".hyp.yaml", slow="model: factory:plugin-slow-to-build\n"
                      "prompts: {generator: max_of_list, n: 40}\nclaims:\n" + textwrap.indent(TRUE_AND_FALSE, "  "))
    reports = pytester.inline_run("-p", "no:cacheprovider").getreports("pytest_runtest_logreport")
    setup = [r.duration for r in reports if r.when == "setup"]
    calls = [r.duration for r in reports if r.when == "call"]
    assert len(calls) == 2 and all(0 < d < 2.0 for d in calls), calls  # not the first claim: the model
    assert setup[0] >= 2.0 and setup[1] < 2.0, setup  # the first claim's setup built it, for both


def test_junit_xml_carries_the_numbers(pytester, hyp, tmp_path):
    path = hyp(TRUE_AND_FALSE)
    xml = tmp_path / "out.xml"
    pytester.runpytest(str(path), "-p", "no:cacheprovider", f"--junitxml={xml}")
    text = xml.read_text()
    for name in ("value", "ci_low", "ci_high", "n", "seed", "expected", "verdict"):
        assert f'name="{name}"' in text


def test_select_claims_by_id_and_kind(pytester, hyp):
    path = hyp(TRUE_AND_FALSE + textwrap.dedent("""\
        - id: prev-head
          says: "some head"
          measure: {head_score: {head: L0H1, pattern: previous_token}}
          expect: {at_least: 0.0}
        """))
    pytester.runpytest(str(path), "-p", "no:cacheprovider", "-k", "random-model").assert_outcomes(passed=1)
    pytester.runpytest(str(path), "-p", "no:cacheprovider", "-m", "head_score").assert_outcomes(passed=1)
    pytester.runpytest(str(path), "-p", "no:cacheprovider", "-m", "metric").assert_outcomes(passed=1, failed=1)


def test_a_broken_file_is_a_collection_error_and_the_others_still_run(pytester, hyp):
    good = hyp(TRUE_AND_FALSE.split("- id: false-claim")[0], name="good.hyp.yaml")
    bad = hyp("- id: x\n  says: y\n  measure: accuracy\n  expect: {at_leest: 1}\n", name="bad.hyp.yaml")
    res = pytester.runpytest(str(good), str(bad), "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    assert f"{bad}:8: claims[0].expect.at_leest: unknown key 'at_leest'" in out
    assert "did you mean 'at_least'?" in out and "Traceback" not in out


def test_collect_only_never_imports_torch(hyp, tmp_path):
    hyp(TRUE_AND_FALSE)
    code = ("import sys, pytest; rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', sys.argv[1]]);"
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'transformer_lens' not in sys.modules;"
            "sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 tests collected" in res.stdout or "2 items" in res.stdout or "t.hyp.yaml::false-claim" in res.stdout


def test_library_works_without_pytest(hyp):
    from circuitcheck import check

    results = {r.claim_id: r for r in check(hyp(TRUE_AND_FALSE))}
    assert results["random-model-is-bad"].verdict == "pass" and results["false-claim"].verdict == "fail"
    assert results["false-claim"].main.estimate.n == 120


def test_select_by_model_name(pytester):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "hypotheses"
    res = pytester.runpytest(str(root / "max_of_list.hyp.yaml"), str(root / "induction.hyp.yaml"),
                             "-p", "no:cacheprovider", "-k", "max-of-list and ov-norms", "--cc-dtype", "float16")
    res.assert_outcomes(passed=1)


def test_a_files_dtype_wins_over_the_run_default(tmp_path):
    from circuitcheck import check
    from circuitcheck.session import Options

    path = tmp_path / "f.hyp.yaml"
    path.write_text(textwrap.dedent("""\
        model: {zoo: max-of-list, dtype: float64}
        prompts: {generator: max_of_list, n: 50}
        claims:
          - {id: exact, says: "runs in float64", measure: accuracy, expect: {at_least: 0.9}}
        """))
    (result,) = check(path, Options(dtype="float16"))
    assert result.verdict == "pass" and result.load["dtype"] == "float64"


def test_xdist_keeps_a_models_claims_on_one_worker_and_prints_the_table(pytester, hyp, tmp_path):
    import re

    extra = "".join(f"- {{id: more-{i}, says: more, measure: accuracy, expect: {{at_most: 0.2}}}}\n" for i in range(3))
    tiny = hyp(TRUE_AND_FALSE + extra, prompts="{generator: max_of_list, n: 60, seed: 1}")
    zoo = tmp_path / "zoo.hyp.yaml"
    zoo.write_text("model: zoo:max-of-list\nprompts: {generator: max_of_list, n: 60}\nclaims:\n" + "".join(
        f"  - {{id: zoo-{i}, says: right, measure: accuracy, expect: {{at_least: 0.8}}}}\n" for i in range(5)))
    res = pytester.runpytest_subprocess(str(tiny), str(zoo), "-p", "no:cacheprovider", "-n", "2",
                                        "--dist", "loadgroup", "-v")
    res.assert_outcomes(passed=9, failed=1)
    out = res.stdout.str()
    assert "circuitcheck claims" in out and "t.hyp.yaml::false-claim" in out and "INTERNALERROR" not in out
    workers: dict[str, set[str]] = {}
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] (?:PASSED|FAILED) (\S+)", out, re.M):
        assert "@model_" in nodeid  # the group pytest-xdist's loadgroup reads
        workers.setdefault(nodeid.split("::")[0], set()).add(worker)
    assert sum(len(w) for w in workers.values()) >= 2 and len(re.findall(r"^\[gw\d+\] \[", out, re.M)) == 10
    assert [len(w) for w in workers.values()] == [1, 1], workers  # each model's claims on one worker


def test_holm_family_per_file_or_per_run(pytester, hyp, tmp_path):
    one = hyp(TRUE_AND_FALSE, name="one.hyp.yaml")
    two = hyp(TRUE_AND_FALSE, name="two.hyp.yaml")
    per_file = pytester.runpytest(str(one), str(two), "-p", "no:cacheprovider")
    assert "Holm over 2 claims of this file" in per_file.stdout.str()
    per_run = pytester.runpytest(str(one), str(two), "-p", "no:cacheprovider", "--cc-family=run")
    per_run.assert_outcomes(passed=2, failed=2)
    assert "Holm over 4 claims of 2 files" in per_run.stdout.str()


# ---------------------------------------------------------------- a measure that raises
SHARING_ONE_RUN = """\
- id: accuracy-low
  says: "accuracy"
  measure: accuracy
  expect: {at_most: 0.5}
- id: logit-diff
  says: "the measure that raises"
  measure: {logit_diff: {of: correct, vs: 3}}
  expect: {at_most: 100}
- id: logit-diff-again
  says: "another claim reading the measure that raises"
  measure: {logit_diff: {of: correct, vs: 3}}
  expect: {at_least: -100}
- id: attends
  says: "attention"
  measure: {attention: {head: L1H0, from: S2, to: S1+1}}
  expect: {at_least: 0}
"""


def raising(error):
    def compute(self, body, run):
        raise error

    return compute


def outcomes(path, batch_size=1024):
    from circuitcheck import check
    from circuitcheck.session import Options

    return {r.claim_id: (r.verdict, [(c.estimate.statistic, c.estimate.low, c.estimate.high) for c in r.cases],
                         r.error, r.level, r.family) for r in check(path, Options(batch_size=batch_size))}


@pytest.mark.parametrize("batch_size", [1024, 50])  # one pass; 120 prompts in chunks of 50
def test_a_measure_that_raises_errors_its_own_claims_only(hyp, monkeypatch, batch_size):
    """The claims beside an erroring one keep their values and verdicts, and their Holm family: the
    two claims that error stay in it with p = 1 (untested, never rejected). Their levels are then
    Holm's over 4 claims whose two errors come last: alpha/4 and alpha/3 (alpha 0.05; both pass, so
    the step-down goes on past the first), never looser than in the run without errors."""
    from circuitcheck.measures.logit_diff import LogitDiffKind

    path = hyp(SHARING_ONE_RUN)
    clean = outcomes(path, batch_size)
    monkeypatch.setattr(LogitDiffKind, "compute", raising(IndexError("index 7 is out of bounds for dimension 1")))
    broken = outcomes(path, batch_size)
    for cid in ("accuracy-low", "attends"):  # the same pass, their values and verdicts unchanged
        assert broken[cid][0] == clean[cid][0] == "pass", (cid, broken[cid])
        assert [v for v, _, _ in broken[cid][1]] == [v for v, _, _ in clean[cid][1]]
        assert broken[cid][3] <= clean[cid][3] and "Holm over 4 claims" in broken[cid][4]
    assert sorted([broken["accuracy-low"][3], broken["attends"][3]]) == pytest.approx([0.05 / 4, 0.05 / 3])
    for cid in ("logit-diff", "logit-diff-again"):
        verdict, _, error, _, _ = broken[cid]
        assert verdict == "error" and "\n" not in error
        assert error.startswith("measure logit_diff(of=correct, vs=3) failed: IndexError at test_plugin.py:")
        assert "index 7 is out of bounds" in error and "report it with the hypothesis file attached" in error


def test_a_measure_failing_on_the_file_s_input_says_what_to_change(hyp, monkeypatch):
    from circuitcheck import prompts as P
    from circuitcheck.measures.logit_diff import LogitDiffKind

    monkeypatch.setattr(LogitDiffKind, "compute", raising(P.PromptError("S2 is past the end", "use a shorter offset")))
    result = outcomes(hyp(SHARING_ONE_RUN))
    assert result["logit-diff"][2] == ("measure logit_diff(of=correct, vs=3) cannot be computed on these prompts: "
                                       "S2 is past the end (use a shorter offset)")
    assert result["attends"][0] == "pass"


def test_a_raising_measure_s_traceback_shows_on_request_only(pytester, hyp, monkeypatch):
    from circuitcheck.measures.logit_diff import LogitDiffKind

    monkeypatch.setattr(LogitDiffKind, "compute", raising(IndexError("index 7 is out of bounds")))
    path = hyp(SHARING_ONE_RUN)
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2, failed=2)
    assert "Traceback" not in res.stdout.str()
    for flags in (["--tb=long"], ["-v"], ["-rf", "-vv"]):  # -vv: the short summary untrimmed
        out = pytester.runpytest(str(path), "-p", "no:cacheprovider", *flags).stdout.str()
        assert "Traceback (most recent call last)" in out and "raise error" in out, flags
    assert re.search(r"^FAILED \S+::logit-diff - ERROR: measure logit_diff\(of=correct, vs=3\) failed: IndexError "
                     r"at test_plugin.py:\d+: index 7 is out of bounds\. This is a circuitcheck bug", out, re.M), out


REPORT_HYPOTHESIS = """\
import sys


def pytest_unconfigure(config):
    plugin = config.pluginmanager.get_plugin("hypothesispytest")
    print(f"HYPOTHESIS imported={'hypothesis' in sys.modules} plugin={plugin is not None}")
"""


def test_an_unused_hypothesis_plugin_does_not_import_its_library_at_the_end(pytester, hyp):
    """Hypothesis's pytest plugin imports the whole library in its terminal summary (0.8 s of a
    cached rerun); when no test used the library, circuitcheck drops it first. Where a test does
    use it, the plugin stays and reports as usual (the control)."""
    import importlib.util

    if importlib.util.find_spec("_hypothesis_pytestplugin") is None:
        pytest.skip("the Hypothesis library is not installed: nothing to drop")
    path = hyp(TRUE_AND_FALSE.split("- id: false-claim")[0], prompts="{generator: max_of_list, n: 120, seed: 1}")
    pytester.makepyfile(report_hypothesis=REPORT_HYPOTHESIS)  # a plugin (-p): the claim file lies elsewhere
    res = pytester.runpytest_subprocess(str(path), "-p", "report_hypothesis", "-p", "no:cacheprovider", "-s")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*HYPOTHESIS imported=False plugin=False*"])

    pytester.makepyfile(test_uses_it="from hypothesis import given, strategies as st\n\n\n"
                        "@given(st.integers())\ndef test_int(x):\n    assert isinstance(x, int)\n")
    res = pytester.runpytest_subprocess(str(path), "test_uses_it.py", "-p", "report_hypothesis", "-p",
                                        "no:cacheprovider", "-s")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["*HYPOTHESIS imported=True plugin=True*"])


def test_an_in_process_run_stopped_by_a_usage_error_leaves_hypothesis_initialised(pytester):
    """The suite's own hygiene (tests/conftest.py's pytester): an in-process run that ends on a usage
    error, before any session starts, must not leave Hypothesis counting itself as still initialising,
    or every strategy a later property test builds in this process warns HypothesisSideeffectWarning."""
    import warnings

    pytest.importorskip("hypothesis")
    import _hypothesis_globals
    from hypothesis import given, settings, strategies as st
    from hypothesis.errors import HypothesisSideeffectWarning

    before = _hypothesis_globals.in_initialization
    for _ in range(2):
        assert pytester.runpytest("--cc-batch-size", "0", "-p", "no:cacheprovider").ret == pytest.ExitCode.USAGE_ERROR
    assert _hypothesis_globals.in_initialization == before

    @settings(max_examples=3, database=None)
    @given(st.integers(0, 3))
    def in_range(x):
        assert 0 <= x <= 3

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        in_range()
    assert [str(w.message) for w in caught if issubclass(w.category, HypothesisSideeffectWarning)] == []
