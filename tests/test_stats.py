"""Statistics: bounds that hold for the sample, p-values from the same tests, Holm with its stop,
crossings from per-point bounds, verdicts. Each defect a statistical review found has a test here
named after it (review items 1-11 of the statistics issue)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from circuitcheck.judge import stats as S
from circuitcheck.judge.claims import Row, _case, case_level, claim_p
from circuitcheck.judge.verdict import FAIL, INCONCLUSIVE, PASS, combine, judge

inf = math.inf


# ---------------------------------------------------------------- the methods
def test_clopper_pearson_matches_scipy():
    from scipy.stats import binomtest

    for k, n in [(81, 263), (0, 400), (400, 400), (3, 10)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")  # two-sided 90% = 95% per side
        b = S.Binomial(k, n)
        assert (b.lower(0.05), b.upper(0.05)) == pytest.approx((ci.low, ci.high), abs=1e-9)


@pytest.mark.parametrize("bound", [
    S.Binomial(37, 50), S.PairedBinomial(12, 3, 100), S.Betting(np.random.default_rng(0).beta(2, 5, 300), 0, 1),
    S.Bootstrap(np.random.default_rng(1).normal(0.2, 1, 300), 0),
    S.Difference(S.Binomial(40, 60), S.Binomial(20, 60)),
], ids=lambda b: type(b).__name__)
def test_p_values_come_from_the_same_test_as_the_bounds(bound):
    """p_low(m) ≤ a exactly when lower(a) ≥ m (and likewise above): Holm orders on the deciding test."""
    for a in (0.2, 0.05, 0.01, 0.001):
        lo, hi = bound.lower(a), bound.upper(a)
        for m, expect_low in ((lo - 1e-3, True), (lo + 1e-3, False)):
            assert (bound.p_low(m) <= a) == expect_low, (a, m)
        for m, expect_high in ((hi + 1e-3, True), (hi - 1e-3, False)):
            assert (bound.p_high(m) <= a) == expect_high, (a, m)


def test_bounds_are_deterministic():
    x = np.random.default_rng(0).normal(0.3, 1, 400)
    a, b = S.bound_for(x, 7).at(0.025), S.bound_for(x, 7).at(0.025)
    assert a == b and a.low < 0.3 < a.high


def test_methods_are_chosen_by_what_the_values_are():
    x = np.random.default_rng(2).random(200)
    assert isinstance(S.bound_for((x > 0.5) * 1.0, 0, binary=True), S.Binomial)
    assert isinstance(S.bound_for(np.sign(x - 0.5), 0, paired_binary=True), S.PairedBinomial)
    assert isinstance(S.bound_for(x, 0, value_range=(0, 1)), S.Betting)
    assert isinstance(S.bound_for(x, 0), S.Bootstrap)


# ---------------------------------------------------------------- 1: constant samples
def test_1_zero_changes_of_400_do_not_certify_a_tolerance_of_one_point():
    """400 unchanged prompts bound the change to about ±0.0167 at Holm's level: `about 0 ± 0.01` is
    inconclusive, not a pass."""
    b = S.bound_for(np.zeros(400), 0, paired_binary=True)
    e = b.at(0.05 / 40)
    assert e.high == pytest.approx(1 - (0.05 / 80) ** (1 / 400), rel=1e-6) and e.high > 0.0167
    assert judge(e, -0.01, 0.01) == INCONCLUSIVE


def test_1_a_constant_bounded_sample_gets_a_bound_that_allows_an_unseen_tail():
    e = S.bound_for(np.ones(400), 0, value_range=(-1, 1)).at(0.025)
    assert e.high == 1 and 0.95 < e.low < 0.99  # a point interval would claim what 400 prompts cannot show


def test_1_rare_large_ranks_are_not_certified_away():
    """`rank at_most 1.05` with 0.1% of prompts at rank 51 (true mean 1.05) passed 72% of the time."""
    rng = np.random.default_rng(3)
    passes = 0
    for _ in range(200):
        ranks = np.where(rng.random(400) < 0.001, 51.0, 1.0)
        passes += judge(S.bound_for(ranks, 0, value_range=(1, 1000)).at(0.05), -inf, 1.05) == PASS
    assert passes == 0


def test_1_an_unbounded_measure_with_no_spread_has_no_bound():
    b = S.bound_for(np.full(400, 2.5), 0)
    assert isinstance(b, S.Unknown) and "no valid bound" in b.method
    assert judge(b.at(0.05), 2.0, inf) == INCONCLUSIVE


def test_1_exact_quantities_stay_points():
    e = S.Exact(1.0, 10, "exact, from weights").at(0.05)
    assert e.low == e.high == 1.0


# ---------------------------------------------------------------- 3: crossings
def _points(rates, n=400):
    return [S.Binomial(round(r * n), n) for r in rates]


def test_3_the_crossing_interval_is_the_bracket_the_data_allow():
    """0.91 at 0.7 and 0.9975 at 0.8 place a crossing of 0.99 in (0.7, 0.8] at best, never [0.78, 0.82]."""
    xs = np.round(np.arange(0, 1.01, 0.1), 1)
    rates = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.91, 0.9975, 1.0, 1.0]
    c = S.Crossing(xs, _points(rates, 4000), 0.99, True, "bracket", "crossing")
    assert (c.lower(0.05), c.upper(0.05)) == (0.7, 0.8)
    few = S.Crossing(xs, _points(rates, 400), 0.99, True, "bracket", "crossing")
    assert few.upper(0.05) > 0.8  # with 400 prompts no point is surely at 0.99


def test_3_linear_mode_interpolates_the_estimate_only_and_discrete_mode_gives_sweep_values():
    """Linear mode's interval is the bracket (issue 22, item 4: the curve between points is not
    measured); only the estimate is interpolated."""
    xs = np.array([0.0, 1.0, 2.0, 3.0])
    pts = _points([0.1, 0.4, 0.6, 0.9], 2000)
    lin = S.Crossing(xs, pts, 0.5, True, "linear", "x")
    assert (lin.lower(0.05), lin.upper(0.05)) == (1.0, 2.0) and lin.statistic == pytest.approx(1.5, abs=0.01)
    disc = S.Crossing(xs, pts, 0.5, True, "discrete", "x")
    assert (disc.lower(0.05), disc.upper(0.05)) == (2.0, 2.0)


def test_3_a_crossing_possibly_before_the_sweep_is_unbounded_below():
    c = S.Crossing(np.array([0.0, 1.0]), _points([0.6, 0.9]), 0.5, True, "bracket", "x")
    assert c.lower(0.05) == -inf


# ---------------------------------------------------------------- 4: Holm
def test_4_holm_stops_at_the_first_hypothesis_it_cannot_reject():
    """p = 0.030 and 0.045 at α = 0.05: the first is not below 0.025, so neither is rejected."""
    levels = S.holm([0.030, 0.045], 0.05)
    assert levels == [0.025, 0.025] and not any(p <= a for p, a in zip([0.030, 0.045], levels))
    assert S.holm([0.01, 0.04, 0.02], 0.05) == [0.05 / 3, 0.05, 0.05 / 2]  # all three rejected, in p order


def test_4_claim_p_values_follow_the_quantifier():
    class C:
        def __init__(self, kind):
            self.for_ = None if kind is None else type("Q", (), {"kind": kind})()

    rows = [Row("a", S.Binomial(95, 100), (0.8, inf)), Row("b", S.Binomial(70, 100), (0.8, inf))]
    p = [S.p_inside(r.bound, *r.region) for r in rows]
    assert claim_p(C(None), rows) == max(p) == claim_p(C("all"), rows)
    assert claim_p(C("any"), rows) == min(1, 2 * min(p))
    assert claim_p(C("none"), rows) == max(S.p_outside(r.bound, *r.region) for r in rows)
    assert case_level(C("any"), rows, 0.05) == 0.025


# ---------------------------------------------------------------- 5: small n
def test_5_a_bootstrap_needs_enough_prompts():
    x = np.random.default_rng(0).normal(size=10)
    b = S.bound_for(x, 0)
    assert isinstance(b, S.Unknown) and f"{S.MIN_N_BOOTSTRAP} prompts" in b.method
    assert isinstance(S.bound_for(np.array([0.2, 0.4]), 0), S.Unknown)


def test_5_bounded_and_binary_measures_stay_valid_at_small_n():
    e = S.bound_for(np.array([0.9, 0.8, 1.0, 0.95, 0.85]), 0, value_range=(0, 1)).at(0.025)
    assert 0 <= e.low < 0.8 and e.high <= 1
    assert S.bound_for(np.ones(5), 0, binary=True).at(0.05).low == pytest.approx(0.05 ** (1 / 5))


# ---------------------------------------------------------------- 6, 7: undefined quantities
def test_6_r2_of_a_flat_curve_fails_with_the_reason():
    matrix = np.ones((5, 300))
    row = Row("curve", S.R2(np.arange(5.0), matrix, 0), (0.9, inf))
    case = _case(row, 0.05)
    assert row.undefined and case.verdict == FAIL and "undefined" in case.estimate.method


def test_7_a_contrast_with_a_constant_group_is_bounded_not_nan():
    rng = np.random.default_rng(0)
    d = S.Difference(S.bound_for(rng.beta(5, 2, 200), 0, value_range=(0, 1)), S.bound_for(np.zeros(200), 0, value_range=(0, 1)))
    e = d.at(0.025)
    assert all(map(math.isfinite, (e.statistic, e.low, e.high))) and e.low < e.statistic < e.high
    unbounded = S.Difference(S.bound_for(rng.normal(size=200), 0), S.bound_for(np.zeros(200), 0))
    assert judge(unbounded.at(0.025), 0, inf) == INCONCLUSIVE and unbounded.b.method.startswith("no valid bound")


# ---------------------------------------------------------------- 8: sample-size advice
def test_8_advice_is_sized_for_power_from_the_method_used():
    # 0 of 2 correct against at_most 0.5: Clopper-Pearson needs 1 - a^(1/n) <= 0.5, so n >= 5 at a = 0.05
    n = S.prompts_to_settle(S.Binomial(0, 2), -inf, 0.5, 0.05)
    assert n >= 5 and S.Binomial(0, n).upper(0.05) <= 0.5
    # 1000 of 1000 against at_least 0.99 at a tiny level: a^(1/n) >= 0.99 needs n >= log(1/a) / 0.01005
    a = 1e-6
    n = S.prompts_to_settle(S.Binomial(1000, 1000), 0.99, inf, a)
    assert n >= math.log(1 / a) / -math.log(0.99) and S.Binomial(n, n).lower(a) >= 0.99


def test_8_no_number_of_prompts_settles_an_estimate_on_the_boundary():
    assert S.prompts_to_settle(S.Binomial(50, 100), 0.5, inf, 0.05) is None


# ---------------------------------------------------------------- 10: one rule for every region
def test_10_every_region_uses_the_same_one_sided_bounds():
    b = S.Binomial(88, 100)
    a = 0.05
    at_least, between, about = (0.8, inf), (0.8, 10.0), (0.85, 0.95)
    assert judge(b.at(a), *at_least) == judge(b.at(a), *between) == PASS
    assert S.p_inside(b, *at_least) == S.p_inside(b, *between)
    assert S.p_inside(b, *about) == max(b.p_low(0.85), b.p_high(0.95))  # TOST


# ---------------------------------------------------------------- 11: agreement with scipy, stated precisely
def test_11_bca_agrees_with_scipy_where_both_are_defined():
    """Same draws, same formulas: equal for n ≥ MIN_N_BOOTSTRAP with spread; below that, or for
    constant data (scipy gives NaN), `bound_for` gives no bootstrap at all."""
    from scipy import stats as sps

    rng = np.random.default_rng(5)
    for x in (rng.normal(0.3, 1, 400), rng.exponential(1, 157)):
        for a in (0.025, 0.0025):
            ours = S.bound_for(x, 11)
            ref = sps.bootstrap((x,), np.mean, confidence_level=1 - 2 * a, n_resamples=S.N_RESAMPLES, method="BCa",
                                rng=np.random.default_rng(11)).confidence_interval
            assert (ours.lower(a), ours.upper(a)) == pytest.approx((ref.low, ref.high), rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- verdicts
def test_judge():
    e = S.Estimate(0.5, 0.4, 0.6, 0.95, 100, "x", 0.5)
    assert judge(e, 0.3, 1) == PASS and judge(e, 0.7, 1) == FAIL and judge(e, 0.55, 1) == INCONCLUSIVE


@pytest.mark.parametrize("q,verdicts,expected", [
    ("all", [PASS, PASS], PASS), ("all", [PASS, FAIL], FAIL), ("all", [PASS, INCONCLUSIVE], INCONCLUSIVE),
    ("any", [FAIL, PASS], PASS), ("any", [FAIL, FAIL], FAIL), ("any", [FAIL, INCONCLUSIVE], INCONCLUSIVE),
    ("none", [FAIL, FAIL], PASS), ("none", [FAIL, PASS], FAIL), ("none", [FAIL, INCONCLUSIVE], INCONCLUSIVE),
])
def test_quantifiers_combine_case_verdicts(q, verdicts, expected):
    assert combine(q, verdicts) == expected


def test_slope_weights_give_the_least_squares_slope():
    xs = np.array([0.0, 0.5, 1.0, 2.0])
    ys = np.array([0.1, 0.3, 0.7, 0.9])
    assert S.slope_weights(xs) @ ys == pytest.approx(np.polyfit(xs, ys, 1)[0])
    lo, hi = S.slope_range(xs, (0, 1))
    assert lo == pytest.approx(-hi) and hi == pytest.approx(S.slope_weights(xs).clip(0).sum())


@pytest.mark.parametrize("n", [100, 300, 2000, 10000])
def test_resampled_means_in_blocks_equal_one_product_over_all_counts(n):
    """Counts kept as bytes and multiplied a block of rows at a time (memory bounded) give the bits
    of one float64 product over every resample, and each column of several its own."""
    x = np.random.default_rng(n).normal(3.0, 2.0, size=(n, 3))
    counts = S._counts(n, 7)
    assert counts.dtype == np.uint8 and counts.sum(1).tolist() == [n] * S.N_RESAMPLES
    whole = counts.astype(np.float64) @ x[:, :1] / n
    assert np.array_equal(S.resampled_means(x[:, :1], 7), whole)
    together = S.resampled_means(x, 7)
    for j in range(3):
        assert np.array_equal(together[:, j], S.resampled_means(x[:, j:j + 1], 7)[:, 0])
