"""Calibration as a test: claims whose true value sits exactly on the threshold (or just past it)
pass at most their level plus Monte Carlo error, for every expectation form and method, at n = 10,
100 and 400, including constant samples; and, for measures with no known range, at Holm's level for
the largest shipped file (α/20) on normal, t3, lognormal and Pareto values at n = 30 and 100. The
tables with more draws are docs/calibration.md."""
from __future__ import annotations

import pytest

from calibration import ALPHA, SHIPPED_M, mc_limit, scenarios, unbounded

DRAWS = 600
DRAWS_SMALL_LEVEL = 1500


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: f"{s.method}-n{s.n}-{s.name}")
def test_a_just_false_claim_passes_at_most_alpha(scenario):
    rate = scenario.pass_rate(DRAWS, seed=1)
    assert rate <= mc_limit(DRAWS), f"{scenario.name}: passes {rate:.3f} of the time at α={ALPHA}"


FAST = [s for s in unbounded(ns=(30, 100)) if s.level == ALPHA / SHIPPED_M and s.cases == 1
        and s.name.startswith(("at_least", "at_most"))]


@pytest.mark.parametrize("scenario", FAST, ids=lambda s: f"n{s.n}-{s.name}")
def test_an_unbounded_claim_holds_at_holms_level(scenario):
    rate = scenario.pass_rate(DRAWS_SMALL_LEVEL, seed=2)
    assert rate <= mc_limit(DRAWS_SMALL_LEVEL, scenario.level), f"{scenario.name}: passes {rate:.4f} at {scenario.where}"
