"""The corpus of malformed hypothesis files in tests/bad/: each must be refused at load time with a
`HypothesisError` that names the file and line and says what is wrong, without importing torch.

Each bad file starts with its expectations as comments:

    # expect: <substring of str(error)>      (one or more; the message, the field, the hint)
                                             (in the file's own encoding: some are not UTF-8)
    # line: N                                (optional: the line the error must point at)
    # file: data/rows.jsonl                  (optional: the error is in this data file, at its own line)
    # field: answer                          (optional: the field the error must name)
    # imports: torch (why)                   (optional: the one check of this file needs torch,
                                             such as counting the GPUs a `device_map:` names)

The native model in these files points at `tests/bad/tiny.safetensors`, a placeholder that holds no
tensors: loading only checks that the weights file exists, so no bad file ever needs real weights.

A file listed in KNOWN_PROBLEMS is one that src/ does not yet handle well; its test is a strict
xfail, so it turns into an error (XPASS) as soon as src/ is fixed and the entry must be removed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from circuitcheck.files.loader import HypothesisError, load
from conftest import copy_hyp

BAD = Path(__file__).resolve().parent / "bad"
FILES = sorted(BAD.glob("*.hyp.yaml"))

KNOWN_PROBLEMS: dict[str, str] = {}


def comments(path: Path) -> list[str]:
    """The file's lines, whatever its bytes: the corpus has Latin-1, UTF-16 and binary files too."""
    data = path.read_bytes()
    return data.decode("utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin-1").splitlines()


def expectations(path: Path) -> tuple[list[str], int | None]:
    expects, line = [], None
    for text in comments(path):
        if m := re.match(r"^# expect: (.+)$", text):
            expects.append(m[1])
        elif m := re.match(r"^# line: (\d+)\s*$", text):
            line = int(m[1])
    return expects, line


def located(path: Path) -> tuple[Path, str | None]:
    """The file the error must be in (a data file the hypothesis file reads, or itself) and its field."""
    where, field = path, None
    for text in comments(path):
        if m := re.match(r"^# file: (\S+)\s*$", text):
            where = path.parent / m[1]
        elif m := re.match(r"^# field: (\S+)\s*$", text):
            field = m[1]
    return where, field


def _param(path: Path):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_PROBLEMS[path.name])] if path.name in KNOWN_PROBLEMS else []
    return pytest.param(path, id=path.name.removesuffix(".hyp.yaml"), marks=marks)


def test_the_corpus_is_well_formed():
    assert len(FILES) >= 24
    for path in FILES:
        first = comments(path)[0]
        assert first.startswith("# expect: "), f"{path.name}: first line must be `# expect: ...`"
    assert (BAD / "tiny.safetensors").exists()
    stale = set(KNOWN_PROBLEMS) - {p.name for p in FILES}
    assert not stale, f"KNOWN_PROBLEMS names files that are not in tests/bad/: {stale}"


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_bad_file_is_refused_with_file_line_and_message(path: Path):
    expects, line = expectations(path)
    with pytest.raises(HypothesisError) as info:
        load(path)
    err = info.value
    text = str(err)
    where, field = located(path)
    for expected in expects:
        assert expected in text, f"expected {expected!r} in:\n{text}"
    assert isinstance(err.line, int) and err.line >= 1, text
    assert err.path == where and text.startswith(f"{where}:{err.line}: "), text
    if field is not None:
        assert err.field == field, f"error names field {err.field!r}, expected {field!r}:\n{text}"
    if where != path:  # a data file's line: the hint says which hypothesis file read it
        assert path.name in err.hint, text
    if line is not None:
        assert err.line == line, f"error at line {err.line}, expected line {line}:\n{text}"
    assert "Traceback" not in text


def test_loading_the_corpus_never_imports_torch():
    code = textwrap.dedent("""\
        import json, sys
        from circuitcheck.files.loader import HypothesisError, load
        outcomes = {}
        for path in json.loads(sys.argv[1]):
            try:
                load(path)
                outcomes[path] = "loaded"
            except HypothesisError:
                outcomes[path] = "HypothesisError"
            except Exception as exc:  # reported by the per-file test; here only torch matters
                outcomes[path] = type(exc).__name__
        heavy = [m for m in ("torch", "transformer_lens") if m in sys.modules]
        assert not heavy, f"loading hypothesis files imported {heavy}"
        print(len(outcomes))
        """)
    files = json.dumps([str(p) for p in FILES if not any(t.startswith("# imports: torch") for t in comments(p))])
    res = subprocess.run([sys.executable, "-c", code, files], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == str(len(json.loads(files)))


GOOD = """\
- id: random-model-is-bad
  says: "A random model gets almost nothing right"
  measure: accuracy
  expect: {at_most: 0.2}
"""


def test_pytest_reports_bad_files_as_collection_errors_and_runs_the_good_one(pytester, hyp):
    good = hyp(GOOD, prompts="{generator: max_of_list, n: 120, seed: 1}", name="good.hyp.yaml")
    d = pytester.path / "hyps"
    d.mkdir()
    bad = {name: d / name for name in ("unknown_expect_key.hyp.yaml", "head_layer_out_of_range.hyp.yaml")}
    for name, dest in bad.items():
        shutil.copy(BAD / name, dest)
    shutil.copy(BAD / "tiny.safetensors", d / "tiny.safetensors")
    copy_hyp(good, d / "good.hyp.yaml")

    res = pytester.runpytest(str(d), "-p", "no:cacheprovider")
    out = res.stdout.str()
    outcomes = res.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1, out
    assert outcomes.get("errors", outcomes.get("error", 0)) == 2, out
    for dest in bad.values():
        expects, line = expectations(dest)
        assert f"{dest}:{line}: " in out, out
        for expected in expects:
            assert expected in out, out
    assert "Traceback" not in out


UNFORESEEN = """\
import pytest
from circuitcheck.files import loader as hypothesis_file
from circuitcheck.judge.claims import Judge

_load, _rows = hypothesis_file.load, Judge.rows


def load(path, *args, **kwargs):  # stands for any failure the loader does not check yet
    if path.name == "unforeseen.hyp.yaml":
        raise KeyError("an internal key")
    return _load(path, *args, **kwargs)


def rows(self, loaded, lc):
    if lc.claim.id == "breaks":
        raise ZeroDivisionError("an internal division")
    return _rows(self, loaded, lc)


hypothesis_file.load, Judge.rows = load, rows
"""


def test_an_unforeseen_error_is_one_files_or_one_claims_error_in_plain_words(pytester, hyp, monkeypatch):
    """Whatever the loader or a measure does not foresee stays with its file or claim: a plain
    sentence first, then the internal text; the other files and claims still run."""
    from circuitcheck.files import loader as hypothesis_file
    from circuitcheck.judge.claims import Judge

    # the conftest below replaces these in this process: put them back after the test
    monkeypatch.setattr(hypothesis_file, "load", hypothesis_file.load)
    monkeypatch.setattr(Judge, "rows", Judge.rows)
    good = hyp(GOOD + GOOD.replace("random-model-is-bad", "breaks"), prompts="{generator: max_of_list, n: 120, seed: 1}")
    pytester.makeconftest(UNFORESEEN)
    copy_hyp(good, pytester.path / "good.hyp.yaml")
    copy_hyp(good, pytester.path / "unforeseen.hyp.yaml")
    res = pytester.runpytest("-p", "no:cacheprovider")
    out = res.stdout.str()
    assert res.parseoutcomes().get("passed") == 1 and res.parseoutcomes().get("failed") == 1, out
    assert res.parseoutcomes().get("error", res.parseoutcomes().get("errors")) == 1, out
    assert "unforeseen.hyp.yaml: circuitcheck failed while reading this hypothesis file" in out
    assert "internal error KeyError" in out and "'an internal key'" in out
    assert "circuitcheck failed while measuring this claim" in out and "ZeroDivisionError" in out
    assert "Traceback" not in out


def test_a_batch_size_below_one_is_a_usage_error(pytester):
    res = pytester.runpytest("--cc-batch-size", "0", "-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "'0' is not a positive whole number" in res.stderr.str()
