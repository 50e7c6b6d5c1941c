"""Calibration as a test: claims whose true value sits exactly on the threshold (or just past it)
pass at most α plus Monte Carlo error, for every expectation form and method, at n = 10, 100 and
400, including constant samples. The table with more draws is docs/calibration.md."""
from __future__ import annotations

import pytest

from calibration import ALPHA, mc_limit, scenarios

DRAWS = 600


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: f"{s.method}-n{s.n}-{s.name}")
def test_a_just_false_claim_passes_at_most_alpha(scenario):
    rate = scenario.pass_rate(DRAWS, seed=1)
    assert rate <= mc_limit(DRAWS), f"{scenario.name}: passes {rate:.3f} of the time at α={ALPHA}"
