"""Statistics: intervals, determinism, Holm, verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from circuitcheck import stats as S
from circuitcheck.verdict import FAIL, INCONCLUSIVE, PASS, combine, judge


def test_wilson_matches_the_textbook_value():
    # 81 of 263 at 95%: Wilson interval (0.2553, 0.3662) (Newcombe 1998, via Agresti & Coull)
    e = S.wilson(81, 263, 0.95)
    assert e.low == pytest.approx(0.2553, abs=5e-4) and e.high == pytest.approx(0.3662, abs=5e-4)


def test_binary_values_use_wilson_and_others_bootstrap():
    assert S.estimate(np.array([0, 1, 1, 1.0]), 0.95, 0).method == "Wilson score"
    assert "bootstrap" in S.estimate(np.array([0.1, 0.5, 0.3]), 0.95, 0).method


def test_bootstrap_is_deterministic_and_covers_the_mean():
    x = np.random.default_rng(0).normal(0.3, 1, 400)
    a, b = S.estimate(x, 0.95, 7), S.estimate(x, 0.95, 7)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.low < 0.3 < a.high and a.high - a.low == pytest.approx(2 * 1.96 / 20, rel=0.15)


def test_constant_values_give_a_point_interval():
    e = S.estimate(np.full(10, 0.25), 0.95, 0)
    assert e.low == e.high == 0.25


def test_holm_levels():
    assert S.holm_alphas([0.01, 0.04, 0.03], 0.05) == [0.05 / 3, 0.05 / 1, 0.05 / 2]


def test_judge_and_settle():
    e = S.Estimate(0.5, 0.4, 0.6, 0.95, 100, "x", 0.5)
    assert judge(e, 0.3, 1) == PASS
    assert judge(e, 0.7, 1) == FAIL
    assert judge(e, 0.55, 1) == INCONCLUSIVE
    assert S.prompts_to_settle(e, 0.55, 1) == 400  # half-width 0.1 over distance 0.05: 4x the prompts


@pytest.mark.parametrize("q,verdicts,expected", [
    ("all", [PASS, PASS], PASS), ("all", [PASS, FAIL], FAIL), ("all", [PASS, INCONCLUSIVE], INCONCLUSIVE),
    ("any", [FAIL, PASS], PASS), ("any", [FAIL, FAIL], FAIL), ("any", [FAIL, INCONCLUSIVE], INCONCLUSIVE),
    ("none", [FAIL, FAIL], PASS), ("none", [FAIL, PASS], FAIL), ("none", [FAIL, INCONCLUSIVE], INCONCLUSIVE),
])
def test_quantifiers_combine_case_verdicts(q, verdicts, expected):
    assert combine(q, verdicts) == expected


def test_crossing_slope_and_r2_by_hand():
    xs = np.array([0.0, 0.5, 1.0, 2.0])
    ys = np.array([0.1, 0.3, 0.7, 0.9])
    assert S.crossing(xs, 0.5, True, True)(ys)[0] == pytest.approx(0.75)  # halfway between 0.5 and 1.0
    assert S.crossing(xs, 0.5, True, False)(ys)[0] == 1.0
    assert S.crossing(xs, 0.95, True, True)(ys)[0] == float("inf")
    assert S.crossing(xs, 0.2, False, True)(ys[::-1])[0] == pytest.approx(1.5)  # 0.3 at x=1, 0.1 at x=2
    assert S.crossing(xs, 0.05, True, True)(ys)[0] == 0.0  # already above at the first point
    slope, intercept = np.polyfit(xs, ys, 1)
    assert S.slope(xs)(ys)[0] == pytest.approx(slope)
    fit = slope * xs + intercept
    assert S.r2(xs)(ys)[0] == pytest.approx(1 - ((ys - fit) ** 2).sum() / ((ys - ys.mean()) ** 2).sum())


def test_curve_statistics_take_many_curves_at_once():
    xs = np.array([0.0, 0.5, 1.0, 2.0])
    curves = np.random.default_rng(2).random((50, 4))
    for stat, one in [(S.slope(xs), lambda ys: np.polyfit(xs, ys, 1)[0]),
                      (S.r2(xs), lambda ys: S.r2(xs)(ys)[0]),
                      (S.crossing(xs, 0.5, True, True), lambda ys: S.crossing(xs, 0.5, True, True)(ys)[0])]:
        assert np.allclose(stat(curves), [one(c) for c in curves], rtol=1e-12)


def test_bootstrap_agrees_with_scipy():
    """Our BCa (the resampled means by one matrix product) against scipy.stats.bootstrap itself."""
    from scipy import stats as sps

    rng = np.random.default_rng(5)
    for x in (rng.normal(0.3, 1, 400), rng.exponential(1, 57), (rng.random(200) < 0.3) * 1.0):
        for level in (0.95, 0.995):
            ours = S.bootstrap(x, level, 11)
            ref = sps.bootstrap((x,), np.mean, confidence_level=level, n_resamples=S.N_RESAMPLES, method="BCa",
                                rng=np.random.default_rng(11)).confidence_interval
            assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high), rel=1e-9, abs=1e-12)


def test_curve_interval_covers_a_known_crossing_and_is_deterministic():
    xs = np.linspace(0, 1, 6)
    stat = S.crossing(xs, 0.5, True, True)
    covered = 0
    for seed in range(20):  # P(1) = x, so the true crossing of 0.5 is at x = 0.5
        matrix = (np.random.default_rng(seed).random((6, 500)) < xs[:, None]).astype(float)
        e = S.curve(matrix, stat, 0.95, 3, "crossing")
        covered += e.low <= 0.5 <= e.high
    assert covered >= 16  # a 95% interval: 19 expected, 16 or fewer has probability under 2%
    assert e == S.curve(matrix, stat, 0.95, 3, "crossing")


def test_two_sample_contrast():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1, 300), rng.normal(0.4, 1, 200)
    e = S.contrast(a, b, 0.95, 0)
    half = 1.96 * np.sqrt(1 / 300 + 1 / 200)  # the normal-theory half-width for unit variances
    assert e.statistic == pytest.approx(a.mean() - b.mean())
    assert e.low < e.statistic < e.high and (e.high - e.low) / 2 == pytest.approx(half, rel=0.15)
