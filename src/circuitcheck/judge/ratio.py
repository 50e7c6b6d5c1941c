"""Bounds of the quantities claims about a circuit judge, each built from bounds of means (stats.py):

- `Ratio`   θ = E[a] / E[b] over paired per-prompt values (faithfulness, completeness, minimality's
            relative drop), by Fieller's construction: while E[b] > 0, θ ≤ m exactly when
            E[a − m·b] ≤ 0, so each test of the ratio is a test of a mean, by the method the values
            call for (`stats.bound_for`: betting for bounded measures, the unbounded measures' bound otherwise). A
            ratio is judged only where the denominator's bound certifies E[b] > 0 at the same level;
            where it does not, its bounds are infinite and the claim is refused with the reason.
- `BestOf`  the largest of several ratios (minimality: some K makes v matter): Bonferroni over them.
- `Area`    Σ_i w_i |1 − θ_i| of several ratios (MIB's CMD): their intervals taken together
            (Bonferroni over the ratios, each two-sided), and the area's least and largest value over them.
- `Beaten`  how many of J paired comparisons come out positive (the circuit against J random
            circuits), as a share: "beats at least k of J" is tested by the k-th smallest p-value
            times J − k + 1, valid under any dependence between the comparisons.

Validity without splitting the level: a claim passes only when the denominator is certified
positive AND the mean test rejects, each at the claim's level; whatever is false, one of the two
is a test of a true null, so the pass has probability at most that level (docs/calibration.md
measures it).
"""
from __future__ import annotations

import math

import numpy as np

from .stats import LEVEL_FLOOR, SKEW_SHARE, Bound, Estimate, SkewT, _skew_term, bound_for, skew_floor, skewness


class Ratio(Bound):
    """E[a] / E[b] of paired per-prompt values, with E[b] > 0 required (see the module doc).
    `ranges`: the ranges the values of a and of b lie in by construction (None: unbounded);
    `binary`: both are changes of 0/1 outcomes."""

    def __init__(self, a, b, seed: int, ranges=(None, None), binary: bool = False, what: str = "ratio",
                 denominator: str = "the denominator"):
        self.a, self.b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        self.seed, self.ranges, self.what, self.denominator = seed, ranges, what, denominator
        self.n = self.a.size
        self.den = bound_for(self.b, seed, value_range=ranges[1], paired_binary=binary)
        mb = float(self.b.mean())
        self.statistic = float(self.a.mean()) / mb if mb != 0 else math.nan
        resid = self.a - (self.statistic if math.isfinite(self.statistic) else 0.0) * self.b
        self.sd = float(resid.std(ddof=1) / abs(mb)) if mb != 0 and self.n > 1 else 0.0
        self.method = f"{what}: Fieller's test of E[a − m·b] by {self._d(self.statistic if math.isfinite(self.statistic) else 0.0).method}"

    def _d(self, m: float) -> Bound:
        """The bound of E[a − m·b]: the mean whose sign decides θ ≤ m."""
        return _mean_bound(self, float(m))

    def certified(self, a: float) -> bool:
        return self.den.lower(a) > 0

    def p_low(self, m):  # against θ ≤ m
        return max(self.den.p_low(0.0), self._d(m).p_low(0.0))

    def p_high(self, m):  # against θ ≥ m
        return max(self.den.p_low(0.0), self._d(m).p_high(0.0))

    def lower(self, a):
        if not self.certified(a) or not math.isfinite(self.statistic):
            return -math.inf
        return self._edge(a, -1)

    def upper(self, a):
        if not self.certified(a) or not math.isfinite(self.statistic):
            return math.inf
        return self._edge(a, +1)

    def _edge(self, a: float, side: int) -> float:
        """The edge of the set of m the one-sided test of θ against m does not reject, on `side`."""
        if isinstance(self._d(self.statistic), SkewT):
            return _skew_edge(self, a, side)
        rejects = (lambda m: self._d(m).lower(a) > 0) if side < 0 else (lambda m: self._d(m).upper(a) < 0)
        inner, outer = _bracket(rejects, self.statistic, side)
        if outer is None:
            return side * math.inf
        for _ in range(50):
            mid = (inner + outer) / 2
            inner, outer = (inner, mid) if rejects(mid) else (mid, outer)
        return outer

    def at(self, a):
        est = super().at(a)
        if self.certified(a):
            return est
        lo, hi = self.den.lower(a), self.den.upper(a)
        why = (f"refused: {self.denominator} is not certified positive at this level ([{lo:.4g}, {hi:.4g}]; "
               + ("it is negative: use a measure that is higher when the model does the task, e.g. logprob rather "
                  "than loss)" if hi < 0 else "the ratio is undefined where it may be 0: more prompts, or a "
                  "measure the knockouts move more)"))
        return Estimate(est.statistic, -math.inf, math.inf, est.level, est.n, why, est.sd)


def _bracket(rejects, start: float, side: int):
    """(inner, outer): outward from `start` by doubling steps until `rejects(outer)`; outer None if never."""
    inner, width = start, max(1.0, abs(start))
    for _ in range(60):
        outer = inner + side * width
        if rejects(outer):
            return inner, outer
        inner, width = outer, 2 * width
    return inner, None


EDGE_TOL = 1e-10  # relative to max(1, |θ|): how far outside the test's own edge an interval's edge may fall


def _skew_edge(r: Ratio, a: float, side: int) -> float:
    """The edge for the skew-corrected t (the mean bound of unbounded values). Its test of m rejects
    where (i) the corrected t bound of E[a − m·b] clears 0 and (ii) the skewness of a − m·b is small
    enough to trust that bound at level a; where (ii) fails the test cannot reject, so m stays in the
    interval. (i) alone is one crossing near θ, found by Brent's method; (ii) fails on a set of m
    bounded by the real roots of a degree-6 polynomial, found exactly, so a stretch of m far out where
    the bound is refused is never stepped over (bisection over (i) and (ii) together could)."""
    from scipy.optimize import brentq

    def gap(m):  # > 0: (i) rejects
        d = SkewT(r.a - m * r.b, refuse=False)
        return d.lower(a) if side < 0 else -d.upper(a)

    inner, outer = _bracket(lambda m: gap(m) > 0, r.statistic, side)
    tol = EDGE_TOL * max(1.0, abs(r.statistic))
    edge = side * math.inf if outer is None else brentq(gap, inner, outer, xtol=tol)
    while math.isfinite(edge) and not gap(edge) > 0:  # a root may sit a hair on the inner side
        edge += side * tol
    # (ii) fails on a stretch reaching past the edge: the interval takes in all of it
    fars = [lo if side < 0 else hi for lo, hi in _refused(r, a) if side * ((lo if side < 0 else hi) - edge) > 0]
    if not fars:
        return edge
    far = min(fars) if side < 0 else max(fars)
    if math.isinf(far):
        return far
    step = tol
    while refused(r, a, far + side * step):  # a root is placed to rounding: step until outside
        step *= 2
    return far + side * step


def refused(r: Ratio, a: float, m: float) -> bool:
    """Whether the skew-corrected t refuses the mean of a − m·b at level a (stats.SkewT)."""
    return a < skew_floor(skewness(r.a - m * r.b), r.n)


def _refused(r: Ratio, a: float) -> list[tuple[float, float]]:
    """The stretches of m (in order; ±inf at the ends) where the skew-corrected t refuses a − m·b at
    level a: |G1| > S, i.e. k² m3(m)² − S² m2(m)³ > 0, a polynomial of degree 6 in m from the centred
    moments of a and b. Each stretch between its real roots is classed by the bound's own rule."""
    from numpy.polynomial import polynomial as P

    n = r.n
    if n < 3:
        return []
    A, B = r.a - r.a.mean(), r.b - r.b.mean()
    mean = lambda x: float(x.mean())  # noqa: E731
    m2 = [mean(A * A), -2 * mean(A * B), mean(B * B)]
    m3 = [mean(A ** 3), -3 * mean(A * A * B), 3 * mean(A * B * B), -mean(B ** 3)]
    k2 = n * (n - 1) / (n - 2) ** 2
    S = SKEW_SHARE * math.sqrt(n) / _skew_term(a)
    poly = P.polysub(k2 * P.polypow(m3, 2), S * S * P.polypow(m2, 3))
    roots = sorted(float(z.real) for z in P.polyroots(P.polytrim(poly)) if abs(z.imag) <= 1e-9 * (1 + abs(z)))
    cuts = [-math.inf] + roots + [math.inf]
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        mid = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else \
            (hi - max(1.0, abs(hi)) if math.isfinite(hi) else lo + max(1.0, abs(lo)) if math.isfinite(lo) else 0.0)
        if refused(r, a, mid):
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
    return out


def _mean_bound(r: Ratio, m: float) -> Bound:
    memo = r.__dict__.setdefault("_memo", {})
    if m not in memo:
        ra, rb = r.ranges
        rng = None
        if ra is not None and rb is not None:
            lo_b, hi_b = sorted((m * rb[0], m * rb[1]))
            rng = (ra[0] - hi_b, ra[1] - lo_b)
        memo[m] = bound_for(r.a - m * r.b, r.seed, value_range=rng)
    return memo[m]


class BestOf(Bound):
    """max_k θ_k of several bounds: each at a/k (Bonferroni), so both bounds hold together."""

    def __init__(self, parts: list[Bound], labels: list[str], what: str):
        self.parts, self.labels = parts, labels
        self.n = min(p.n for p in parts)
        best = int(np.nanargmax([p.statistic if math.isfinite(p.statistic) else -math.inf for p in parts]))
        self.statistic, self.sd, self.best = parts[best].statistic, parts[best].sd, labels[best]
        self.method = f"{what}: the largest of {len(parts)} (Bonferroni); best K={labels[best]}: {parts[best].method}"

    def p_low(self, m):
        return min(1.0, len(self.parts) * min(p.p_low(m) for p in self.parts))

    def p_high(self, m):
        return min(1.0, len(self.parts) * max(p.p_high(m) for p in self.parts))

    def lower(self, a):
        return max(p.lower(a / len(self.parts)) for p in self.parts)

    def upper(self, a):
        return max(p.upper(a / len(self.parts)) for p in self.parts)


class Area(Bound):
    """Σ_i w_i |1 − θ_i| of several ratios. Each ratio's interval at a / (2k), both sides, so that all k
    intervals hold together with probability ≥ 1 − a (Bonferroni); the bounds are the area's least and
    largest value over them. A ratio whose denominator is not certified makes the upper bound infinite."""

    def __init__(self, parts: list[Ratio], weights: list[float], what: str):
        self.parts, self.weights = parts, weights
        self.n = min(p.n for p in parts)
        self.statistic = float(sum(w * abs(1 - p.statistic) for p, w in zip(parts, weights)))
        self.method = f"{what}: {len(parts)} ratios together (Bonferroni); each {parts[0].method}"

    def _range(self, a: float) -> tuple[float, float]:
        near = far = 0.0
        for p, w in zip(self.parts, self.weights):
            lo, hi = p.lower(a / (2 * len(self.parts))), p.upper(a / (2 * len(self.parts)))
            near += w * (0.0 if lo <= 1 <= hi else min(abs(1 - lo), abs(1 - hi)))
            far += w * max(abs(1 - lo), abs(1 - hi))
        return near, far

    def lower(self, a):
        return self._range(a)[0]

    def upper(self, a):
        return self._range(a)[1]

    def p_low(self, m):
        return _on_grid(lambda a: self.lower(a) >= m)

    def p_high(self, m):
        return _on_grid(lambda a: self.upper(a) <= m)


GRID = np.geomspace(LEVEL_FLOOR, 0.5, 64)  # neighbours 1.75 apart


def _on_grid(clears) -> float:
    """The smallest level of GRID at which `clears` (monotone in the level): never below the exact p,
    at most 1.75 times it (conservative), in 7 evaluations where stats' bisection makes 60; each
    evaluation of an Area bounds every budget's ratio, itself a bisection."""
    if not clears(0.5):
        return 1.0
    lo, hi = 0, len(GRID) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if clears(float(GRID[mid])) else (mid + 1, hi)
    return float(GRID[hi])


class Beaten(Bound):
    """The share of J paired comparisons whose mean is positive (the circuit's metric above a random
    circuit's). Beating at least k of J is tested with J − k + 1 times the k-th smallest p-value."""

    def __init__(self, diffs: list[Bound], what: str):
        self.diffs, self.J = diffs, len(diffs)
        self.n = min(d.n for d in diffs)
        self.statistic = float(np.mean([d.statistic > 0 for d in diffs]))
        self.sd = 0.0
        self.method = f"{what}: k-of-{self.J} test (J − k + 1 times the k-th smallest p); each {diffs[0].method}"

    def _p_at_least(self, k: int, beats: bool) -> float:
        """p against "fewer than k beaten" (beats) or "fewer than k not beaten"."""
        if k <= 0:
            return 0.0
        if k > self.J:
            return 1.0
        ps = sorted(d.p_low(0.0) if beats else d.p_high(0.0) for d in self.diffs)
        return min(1.0, (self.J - k + 1) * ps[k - 1])

    def p_low(self, m):  # against share ≤ m: beats at least floor(mJ) + 1
        return self._p_at_least(math.floor(m * self.J) + 1, True)

    def p_high(self, m):  # against share ≥ m: fails to beat at least J − ceil(mJ) + 1
        return self._p_at_least(self.J - math.ceil(m * self.J) + 1, False)

    def lower(self, a):
        return max([k / self.J for k in range(1, self.J + 1) if self._p_at_least(k, True) <= a], default=0.0)

    def upper(self, a):
        lost = max([k for k in range(1, self.J + 1) if self._p_at_least(k, False) <= a], default=0)
        return (self.J - lost) / self.J
