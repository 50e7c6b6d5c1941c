"""`method: mean` takes its mean over a reference set apart from the prompts a claim is judged on
(issue 22, item 1): one declared with `mean_from: PROMPTS`, or by default the claim's own prompt spec
with its seed moved by 1,000,003; a JSONL data set or a declared population keeps its own mean."""
from __future__ import annotations

import numpy as np
import pytest

from circuitcheck import HypothesisError, load
from circuitcheck.session import Session

REF = "{generator: repeated_tokens, n: 80, seed: 11}"
CLAIMS = f"""\
- id: from-reference
  says: "L0H1 ablated with its mean over a reference set"
  under: {{ablate: {{heads: [L0H1], method: mean, mean_from: {REF}}}}}
  measure: logprob
  expect: record
- id: patched-mean
  says: "the same, written as a patch of the reference set's mean"
  under: {{patch: {{heads: [L0H1], mean: true, source: {REF}}}}}
  measure: logprob
  expect: record
- id: default-mean
  says: "L0H1 ablated with its mean over the default reference set"
  under: {{ablate: {{heads: [L0H1], method: mean}}}}
  measure: logprob
  expect: record
"""


def values(path) -> dict:
    loaded = load(path)
    session = Session()
    session.add(loaded)
    return {lc.claim.id: session.values(loaded, lc.claim, lc.cases[0])[0] for lc in loaded.claims}


def test_a_mean_from_a_reference_set_is_that_sets_mean(hyp):
    """Equal to patching the reference set's mean into the head (patch.py, another code path), and
    not the mean over the judged prompts."""
    got = values(hyp(CLAIMS, prompts="{generator: repeated_tokens, n: 60, seed: 1}"))
    assert np.allclose(got["from-reference"], got["patched-mean"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(got["from-reference"], got["default-mean"], rtol=1e-4, atol=1e-5)


JUDGED = "{generator: repeated_tokens, n: 60, seed: 1}"
DEFAULT_REFERENCE = "{generator: repeated_tokens, n: 60, seed: 1000004}"  # seed 1 + 1,000,003


def against(under: str, reference: str, own: str) -> str:
    """`under` with its default mean; the same ablation of L0H1 written as a patch of the default
    reference set's mean (patch.py, another code path), and with the mean over the judged prompts."""
    return f"""\
- id: default
  says: "the default mean"
  under: {under}
  measure: logprob
  expect: record
- id: reference
  says: "the reference set's mean, patched in"
  under: {{patch: {{heads: [L0H1], mean: true, source: {reference}}}}}
  measure: logprob
  expect: record
- id: own
  says: "the mean over the judged prompts"
  under: {{ablate: {{heads: [L0H1], method: mean, mean_from: {own}}}}}
  measure: logprob
  expect: record
"""


@pytest.mark.parametrize("under", ["{ablate: {heads: [L0H1], method: mean}}",
                                   "{knock_out: {nodes: [L0H1], method: mean}}"])
def test_the_default_mean_is_over_a_reference_set_apart_from_the_judged_prompts(hyp, under):
    """Each judged prompt's value then depends on its own prompt and the reference set only: equal to
    patching that set's mean (seed 1,000,004 for judged seed 1), and not the mean over the judged prompts."""
    got = values(hyp(against(under, DEFAULT_REFERENCE, JUDGED), prompts=JUDGED))
    assert np.allclose(got["default"], got["reference"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(got["default"], got["own"], rtol=1e-4, atol=1e-5)


def test_a_population_keeps_its_own_mean(hyp):
    """Declared the whole population, the judged prompts' own mean is the population's mean, exactly."""
    whole = JUDGED[:-1] + ", population: true}"
    got = values(hyp(against("{ablate: {heads: [L0H1], method: mean}}", DEFAULT_REFERENCE, whole), prompts=whole))
    assert np.allclose(got["default"], got["own"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(got["default"], got["reference"], rtol=1e-4, atol=1e-5)


def test_mean_from_goes_with_method_mean_and_prompts_of_the_same_length(hyp):
    bad = CLAIMS.replace("method: mean, mean_from", "method: zero, mean_from", 1)
    with pytest.raises(HypothesisError, match="`mean_from` names the prompts a mean is taken over"):
        load(hyp(bad, prompts="{generator: repeated_tokens, n: 60, seed: 1}"))
    longer = CLAIMS.replace(REF, "{generator: repeated_tokens, n: 80, seed: 11, length: 12}", 1)
    with pytest.raises(HypothesisError, match="same length") as err:
        load(hyp(longer, prompts="{generator: repeated_tokens, n: 60, seed: 1}"))
    assert "mean_from" in err.value.field
