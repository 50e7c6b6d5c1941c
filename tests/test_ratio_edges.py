"""A ratio's interval (Fieller) is the set of m its test of θ = m does not reject. Where the mean
bound of a − m·b is refused for skewness (it cannot reject), that m stays in the interval; the
interval's edge must not step over such a stretch, wherever it lies."""
from __future__ import annotations

import numpy as np

from circuitcheck.judge.ratio import Ratio


def skewed(seed: int, n: int = 100, tail: float = 1.0):
    rng = np.random.default_rng(seed)
    b = rng.normal(2, 1, n) + tail * rng.lognormal(0, 1, n)
    return 0.8 * b + rng.normal(0, 1, n) + tail * rng.lognormal(0, 1.5, n), b


def rejects(r: Ratio, a: float, m: float, side: int) -> bool:
    """The pointwise one-sided test of θ against m, read from the mean bound alone (no edge search)."""
    d = r._d(m)
    return d.lower(a) > 0 if side < 0 else d.upper(a) < 0


def test_a_refused_stretch_far_below_the_estimate_stays_in_the_interval():
    r = Ratio(*skewed(34), seed=0)
    assert r.certified(0.05)
    # the test rejects m = -5.7 (where bisection from the estimate stopped) but cannot test m = -70
    assert rejects(r, 0.05, -5.7, -1) and not rejects(r, 0.05, -70.0, -1)
    assert r.lower(0.05) <= -70.0
    assert rejects(r, 0.05, r.lower(0.05), -1)  # the edge itself is outside the set


def test_edges_are_where_the_test_turns_when_nothing_is_refused():
    rng = np.random.default_rng(3)
    b = rng.normal(2, 1, 400)
    r = Ratio(0.7 * b + rng.normal(0, 0.5, 400), b, seed=0)
    for a in (0.05, 0.0025):
        for side, edge in ((-1, r.lower(a)), (1, r.upper(a))):
            width = 1e-6 * max(1.0, abs(edge))
            assert rejects(r, a, edge, side) and not rejects(r, a, edge - side * width, side)


def test_every_edge_holds_against_a_dense_scan():
    """On skewed data at two levels, no m beyond an edge goes unrejected (a scan of 3000 points out to
    10^4 times the scale); checks the edges of 16 samples of 100 and 300 with lighter or heavier tails."""
    checked = 0
    for seed in range(16):
        r = Ratio(*skewed(seed, n=(100, 300)[seed % 2], tail=(0.3, 1.0)[seed // 8]), seed=0)
        w = max(1.0, abs(r.statistic))
        steps = np.concatenate([np.linspace(0, 5 * w, 2000), np.geomspace(5 * w, 1e4 * w, 1000)])
        for a in (0.05, 0.0025):
            if not r.certified(a):
                continue
            checked += 1
            for side, edge in ((-1, r.lower(a)), (1, r.upper(a))):
                beyond = [m for m in r.statistic + side * steps if side * (m - edge) > 0]
                assert all(rejects(r, a, m, side) for m in beyond), (seed, a, side)
    assert checked >= 16, "most samples should be certified at some level"
