"""Calibration as a test: claims whose true value sits exactly on the threshold (or just past it)
pass at most their level plus Monte Carlo error, for every expectation form and method, at n = 10,
100 and 400, including constant samples; and, for measures with no known range, at Holm's level for
the largest shipped file (α/20) on normal, t3, lognormal and Pareto values at n = 30 and 100; and the
closed-form methods (Clopper-Pearson, the skew-corrected t, sweeps) at α/20 at n = 400 and as `any` of
4, with `correlates` as `any` of 4 at n = 100. The tables with more draws are docs/calibration.md."""
from __future__ import annotations

import pytest

from dataclasses import replace

from calibration import ALPHA, SHIPPED_ANY, SHIPPED_M, SWEEP_POINTS, fitted, mc_limit, scenarios, shipped_family, unbounded

DRAWS = 600


def test_the_rows_are_at_the_levels_the_shipped_files_judge_at():
    """The harness's α/m, `any` size and sweep size are the shipped files' own (they went stale once:
    α/20 and `any` of 4 while induction.hyp.yaml had 30 claims and an `any` of 6 pairs)."""
    assert shipped_family() == (SHIPPED_M, SHIPPED_ANY, SWEEP_POINTS)
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


HOLM = ALPHA / SHIPPED_M
CHEAP = ("Clopper-Pearson", "skew-corrected t", "per-point Clopper-Pearson")  # closed forms: no bisection
NEW_ROWS = ([s for s in scenarios((HOLM,), ns=(400,), sweep_ns=(400,)) if s.method in CHEAP]
            + [replace(s, cases=4) for s in scenarios((HOLM,), ns=(10, 100, 400), sweep_ns=())
               if s.method == "Clopper-Pearson"]
            + [replace(s, cases=4) for s in fitted(ns=(100,)) if s.level == HOLM and "x normal" in s.name])


@pytest.mark.parametrize("scenario", NEW_ROWS, ids=lambda s: f"n{s.n}-{s.where}-{s.name}")
def test_other_methods_hold_at_holms_level_and_as_any_of_4(scenario):
    """A cheap subset of the α/m and `any` of 4 rows docs/calibration.md lists for the other methods."""
    rate = scenario.pass_rate(DRAWS_SMALL_LEVEL, seed=3)
    assert rate <= mc_limit(DRAWS_SMALL_LEVEL, scenario.level), f"{scenario.name}: passes {rate:.4f} at {scenario.where}"
