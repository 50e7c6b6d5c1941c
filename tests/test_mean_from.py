"""`ablate: {method: mean, mean_from: PROMPTS}`: the mean comes from a declared reference set apart
from the prompts a claim is judged on (issue 22, item 1)."""
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
- id: own-mean
  says: "L0H1 ablated with its mean over the claim's own prompts"
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
    assert not np.allclose(got["from-reference"], got["own-mean"], rtol=1e-4, atol=1e-5)


def test_mean_from_goes_with_method_mean_and_prompts_of_the_same_length(hyp):
    bad = CLAIMS.replace("method: mean, mean_from", "method: zero, mean_from", 1)
    with pytest.raises(HypothesisError, match="`mean_from` names the prompts a mean is taken over"):
        load(hyp(bad, prompts="{generator: repeated_tokens, n: 60, seed: 1}"))
    longer = CLAIMS.replace(REF, "{generator: repeated_tokens, n: 80, seed: 11, length: 12}", 1)
    with pytest.raises(HypothesisError, match="same length") as err:
        load(hyp(longer, prompts="{generator: repeated_tokens, n: 60, seed: 1}"))
    assert "mean_from" in err.value.field
