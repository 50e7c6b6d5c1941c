"""A tokenizer's two files are read like every other file a run reads: regular files of a bounded
size, and a defect in them is a clear error naming the file, never an internal error or a hang."""
from __future__ import annotations

import os
import shutil

import pytest

from circuitcheck import prompts as P
from circuitcheck.models import ZOO_DIR

ARGS = dict(template="When {IO} and {S} went to the store, {S} gave a drink to", slots={"IO": ["Mary", "John"],
            "S": ["Mary", "John"]}, answer="IO", counterfactual="S")


def tokenizer_dir(tmp_path, **files):
    """A copy of zoo:ioi's tokenizer with some of its files replaced (text, or a callable(path))."""
    d = tmp_path / "tok"
    d.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ZOO_DIR / "ioi" / name, d / name)
    for name, content in files.items():
        target = d / f"{name}.json"
        target.unlink()
        content(target) if callable(content) else target.write_text(content)
    return d


def build(d):
    return P.build("text", 4, 0, tokenizer=str(d), **ARGS)


def test_the_copy_reads_as_the_zoo_tokenizer(tmp_path):
    assert build(tokenizer_dir(tmp_path)).n == 4  # the control: only the replaced file differs below


@pytest.mark.parametrize("files, message", [
    ({"tokenizer": '{"model": {"type": "WordLevel"'}, "is not a tokenizer the tokenizers library reads"),
    ({"tokenizer": "[1, 2]"}, "is not a tokenizer the tokenizers library reads"),
    ({"tokenizer_config": '{"bos_token": '}, "tokenizer_config.json at .* is not JSON"),
    ({"tokenizer_config": "[1, 2]"}, "is a JSON list, not an object"),
    ({"tokenizer_config": '{"bos_token": 7}'}, "bos_token in .* is 7, not a token"),
    ({"tokenizer_config": os.mkfifo}, "is not a regular file"),
    ({"tokenizer": lambda p: p.symlink_to("/dev/zero")}, "is not a regular file"),
    ({"tokenizer_config": lambda p: p.symlink_to("/dev/zero")}, "is not a regular file"),
])
def test_a_bad_tokenizer_file_is_a_clear_error(tmp_path, files, message):
    with pytest.raises(P.PromptError, match=message):
        build(tokenizer_dir(tmp_path, **files))


def test_an_oversized_tokenizer_file_is_refused_before_reading(tmp_path, monkeypatch):
    from circuitcheck.prompts import text

    monkeypatch.setattr(text, "MAX_CONFIG_BYTES", 10)
    with pytest.raises(P.PromptError, match=r"bytes, over the 10 a tokenizer file may have"):
        build(tokenizer_dir(tmp_path))


def test_allow_paths_works_as_the_readme_writes_it(tmp_path):
    """`circuitcheck.paths.allow` needed `import circuitcheck.paths` first; the README now writes
    `circuitcheck.allow_paths([DIR])`, which works after `import circuitcheck` alone."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert re.search(r"`circuitcheck\.allow_paths\(\[DIR\]\)`", readme)
    code = ("import circuitcheck, sys; circuitcheck.allow_paths([sys.argv[1]]);"
            "from circuitcheck.files.paths import ALLOWED; print(ALLOWED)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr([tmp_path.resolve()])


def test_an_ov_norm_token_past_the_vocabulary_is_a_collection_error(hyp):
    """It was caught only at run time (an IndexError inside the measure)."""
    from circuitcheck.files.loader import HypothesisError, load

    path = hyp("- {id: ov, says: ov norms, measure: {ov_norm: {head: L0H1, tokens: [1, 64]}}, "
               "expect: {order: {largest: [1]}}}\n")  # the tiny model's d_vocab is 64: ids 0..63
    with pytest.raises(HypothesisError) as err:
        load(path)
    assert "token index 64 is out of range: d_vocab is 64" in str(err.value)
    claim_line = 1 + path.read_text().splitlines().index("  - {id: ov, says: ov norms, measure: {ov_norm: {head: L0H1, "
                                                           "tokens: [1, 64]}}, expect: {order: {largest: [1]}}}")
    assert "claims[0].measure.ov_norm.tokens[1]" in str(err.value) and err.value.line == claim_line


@pytest.mark.parametrize("claim, message", [
    ("- {id: r, says: rows, measure: {row_class: {head: L0H1, behaviour: previous, rows: last..first}}, "
     "expect: {at_least: 0.5}}\n", "row range 'last..first' runs backwards: first comes before last"),
    ("- {id: s, says: sweep, sweep: {factor: [0, 0.5, 0.5, 1]}, "
     "under: {scale_attention: {head: L0H1, from: last, to: first, factor: $factor}}, measure: accuracy, "
     "expect: {crosses: {level: 0.5, at: {between: [0, 1]}}}}\n", "a sweep's values must differ: 0.5 appears"),
])
def test_row_ranges_and_sweeps_that_measure_nothing_are_collection_errors(hyp, claim, message):
    """Both reached "no finite values" in the statistics (first corpus)."""
    from circuitcheck.files.loader import HypothesisError, load

    with pytest.raises(HypothesisError, match=message):
        load(hyp(claim))


@pytest.mark.parametrize("expr", ["99999999999999999999999", "last + 99999999999999999999", "S1 - 4294967296"])
def test_a_huge_position_is_a_prompt_error_not_an_overflow(expr):
    """An OverflowError inside the position arithmetic (first corpus)."""
    ps = P.build("repeated_tokens", 4, 0)
    with pytest.raises(P.PromptError, match="far past any prompt"):
        P.position(ps, expr)
