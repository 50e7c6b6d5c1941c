"""Statistics: from per-prompt values to one-sided bounds and p-values that hold for the sample.

A claim says a quantity θ lies in a region [lo, hi]. Every judged quantity is a `Bound`, chosen
from what the measure *is* (never from what the data happen to look like):

- `Binomial`        0/1 outcomes (accuracy): Clopper-Pearson, exact at any n.
- `PairedBinomial`  the change of a 0/1 outcome, paired by prompt: exact bounds on the shares of
                    prompts that went 1→0 and 0→1 (Clopper-Pearson each, Bonferroni over the two).
- `Betting`         any other measure with a known range (attention, probabilities, head scores,
                    similarities, ranks, and changes of them): the betting confidence sequence of
                    Waudby-Smith & Ramdas (2023). Valid at every n, constant samples included.
- `SkewT`           measures with no known range (logits, losses, DLA): Student's t with Hall's
                    skewness correction, refused at levels where the skewness is too large for n;
                    needs at least `MIN_N_UNBOUNDED` prompts and spread beyond float rounding,
                    else `Unknown`.
- `Unknown`         no valid bound exists (too few prompts, or an unbounded measure with no
                    spread): the bounds are infinite, so the verdict is inconclusive, with the reason.
- `Exact`           quantities exact by construction (weights, architecture): a point.

`lower(a)` / `upper(a)` are one-sided bounds at confidence 1-a; `p_low(m)` is the p-value against
"θ ≤ m" and `p_high(m)` against "θ ≥ m", from the same test, so that Holm's step-down orders and
stops on the tests that decide (`judge/claims.py`).
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

MIN_N_UNBOUNDED = 30  # below this, no bound for a measure with no known range held its level (docs/calibration.md)
# A spread under this share of the values' scale (at least 1) is float rounding, not variation: a
# float32 model's values carry about 1e-7 relative error, summed over many terms.
NOISE = 1e-5
BETTING_DESIGN_LEVEL = 0.005  # tunes the bets' size for power only; validity holds at every level
# Caps on a bet as a share of the most it could be (c/m): 1/2 is robust (Waudby-Smith & Ramdas); near 1
# gives the exact binomial bound on a constant sample. The bets of all three are averaged.
CAPS = (0.5, 0.9, 0.999)


@dataclass(frozen=True)
class Estimate:
    """Like a scipy.stats result: the statistic, its bounds at a level, and how they were computed.
    `low` and `high` are each a one-sided bound at confidence `level`."""

    statistic: float
    low: float
    high: float
    level: float
    n: int
    method: str
    sd: float  # per-prompt standard deviation, for sample-size advice


# ---------------------------------------------------------------- remembered results
# A bound's answers (its bounds and p-values at given levels and points) are a pure function of its
# data and of this code. While a session judges with a value cache (`remembering`), the costly bounds
# look their answers up under a hash of their data, so a rerun on cached values repeats no bisection
# and draws no resamples; without one, answers are remembered for the bound's own lifetime only.
_STORE: list = []


@contextmanager
def remembering(store):
    """Within the block, bounds read and write their answers in `store` (cache.ValueCache)."""
    _STORE.append(store)
    try:
        yield
    finally:
        _STORE.pop()


def known_answers(*data) -> dict:
    """The answers remembered for a bound over `data` (a name, numbers and arrays)."""
    return _STORE[-1].answers(data) if _STORE and _STORE[-1] is not None else {}


def remembered(method):
    """A bound's query (`lower(a)`, `p_low(m)`, …) answered from `self.known` when asked before."""
    name = method.__name__

    @functools.wraps(method)
    def answer(self, x):
        key = f"{name}:{float(x)!r}"
        if key not in self.known:
            self.known[key] = float(method(self, x))
        return self.known[key]

    return answer


# ---------------------------------------------------------------- the base
class Bound:
    """A judged quantity: its statistic, one-sided bounds at any level, and p-values."""

    statistic: float = float("nan")
    n: int = 0
    sd: float = 0.0
    method: str = ""
    exact: bool = False  # a point by construction

    def lower(self, a: float) -> float:
        raise NotImplementedError

    def upper(self, a: float) -> float:
        raise NotImplementedError

    def p_low(self, m: float) -> float:
        """p-value against θ ≤ m: the smallest a at which lower(a) ≥ m (found by bisection)."""
        return _invert(lambda a: self.lower(a) >= m)

    def p_high(self, m: float) -> float:
        """p-value against θ ≥ m: the smallest a at which upper(a) ≤ m."""
        return _invert(lambda a: self.upper(a) <= m)

    def at(self, a: float) -> Estimate:
        return Estimate(float(self.statistic), float(self.lower(a)), float(self.upper(a)), 1 - a, self.n,
                        self.method, float(self.sd))

    def resized(self, n: int) -> "Bound | None":
        """The same data scaled to n prompts (same mean and spread), for sample-size advice."""
        return None


LEVEL_FLOOR = 1e-15  # no claim is judged below this level (α / claims / cases / sweep points)


def _invert(clears, lo: float = LEVEL_FLOOR) -> float:
    """The smallest a in [lo, 1] with clears(a), for clears monotone in a (bisection on log a). A
    bound that clears even at `lo` gets p = lo, never 0: only exact quantities have p = 0, and a
    formula probed far below any level a claim is judged at must not decide the Holm order."""
    if not clears(0.5):
        return 1.0
    if clears(lo):
        return lo
    a, b = math.log(lo), math.log(0.5)
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (a, mid) if clears(math.exp(mid)) else (mid, b)
    return math.exp(b)


POPULATION = "exact: the {n} prompts are the whole population (`population: true`), so there is no sampling error"


def exactly(bound: Bound) -> Bound:
    """A statistic computed on the whole population: the value itself, with no interval."""
    return Exact(bound.statistic, bound.n, POPULATION.format(n=bound.n))


class Exact(Bound):
    exact = True

    def __init__(self, value: float, n: int, what: str):
        self.statistic, self.n, self.method = float(value), n, what

    def lower(self, a):
        return self.statistic

    def upper(self, a):
        return self.statistic

    def p_low(self, m):
        return 0.0 if self.statistic > m else 1.0

    def p_high(self, m):
        return 0.0 if self.statistic < m else 1.0


class Unknown(Bound):
    """No valid bound: infinite bounds and p-values of 1, with the reason as the method."""

    def __init__(self, statistic: float, n: int, reason: str, sd: float = 0.0):
        self.statistic, self.n, self.method, self.sd = statistic, n, reason, sd

    def lower(self, a):
        return -math.inf

    def upper(self, a):
        return math.inf

    def p_low(self, m):
        return 1.0

    def p_high(self, m):
        return 1.0


# ---------------------------------------------------------------- exact counts
class Binomial(Bound):
    """k successes in n: Clopper-Pearson bounds and exact binomial tail p-values."""

    def __init__(self, k: int, n: int):
        self.k, self.n = int(k), int(n)
        self.statistic = self.k / self.n
        self.sd = math.sqrt(self.statistic * (1 - self.statistic))
        self.method = "Clopper-Pearson (exact binomial)"
        self.known = known_answers("binomial", self.k, self.n)  # a rerun need not import scipy

    @remembered
    def lower(self, a):
        from scipy.special import betaincinv

        return 0.0 if self.k == 0 else float(betaincinv(self.k, self.n - self.k + 1, a))

    @remembered
    def upper(self, a):
        from scipy.special import betaincinv

        return 1.0 if self.k == self.n else float(betaincinv(self.k + 1, self.n - self.k, 1 - a))

    # Binomial tails as regularised incomplete beta functions (scipy.special: a cached rerun never
    # imports scipy.stats): P(X >= k | m) = I_m(k, n-k+1), P(X <= k | m) = I_{1-m}(n-k, k+1).
    @remembered
    def p_low(self, m):
        from scipy.special import betainc

        if m < 0 or self.k == 0 and m >= 0:
            return 0.0 if m < 0 else 1.0
        return 1.0 if m >= 1 else float(betainc(self.k, self.n - self.k + 1, m))

    @remembered
    def p_high(self, m):
        from scipy.special import betainc

        if m > 1 or self.k == self.n and m <= 1:
            return 0.0 if m > 1 else 1.0
        return 1.0 if m <= 0 else float(betainc(self.n - self.k, self.k + 1, 1 - m))

    def resized(self, n):
        return Binomial(round(self.statistic * n), n)


# ---------------------------------------------------------------- bounded measures: betting
class Betting(Bound):
    """Mean of values known to lie in [r0, r1]: the hedged-capital betting test of Waudby-Smith &
    Ramdas (2023, JRSS-B), one-sided. Against θ ≤ m the capital Π(1 + λ_i (y_i - m)) is a
    nonnegative supermartingale, so by Ville's inequality p = 1 / max_t capital is valid at every
    n and every level; the bets λ_i use only earlier prompts (predictable plug-in)."""

    def __init__(self, values: np.ndarray, r0: float, r1: float):
        x = np.asarray(values, dtype=np.float64)
        self.r0, self.r1 = float(r0), float(r1)
        self.n = x.size
        self.statistic = math.fsum(x) / x.size  # exact sum: the same in any order
        self.sd = float(np.sort(x).std(ddof=1)) if x.size > 1 else 0.0
        self.y = canonical_order(np.clip((x - self.r0) / (self.r1 - self.r0), 0.0, 1.0))
        self.method = f"betting confidence bound (range [{_g(r0)}, {_g(r1)}])"
        self.known = known_answers("betting", self.r0, self.r1, self.y)

    @functools.cached_property
    def _lam(self) -> np.ndarray:
        return self._bets(self.y)

    @staticmethod
    def _bets(y: np.ndarray) -> np.ndarray:
        """λ_i from prompts before i: sqrt(2 log(1/a0) / (n σ̂²_{i-1})), uncapped here."""
        n = y.size
        i = np.arange(1, n + 1)
        mu = (0.5 + np.cumsum(y)) / (i + 1)  # μ̂_i, regularised towards 1/2
        dev = np.concatenate([[0.0], np.cumsum((y - mu) ** 2)[:-1]])
        var = (0.25 + dev) / i  # σ̂²_{i-1}
        return np.sqrt(2 * math.log(1 / BETTING_DESIGN_LEVEL) / (n * var))

    def _p(self, m: float, side: int) -> float:
        """side +1: against θ ≤ m; -1: against θ ≥ m (m on the original scale)."""
        u = (m - self.r0) / (self.r1 - self.r0)
        if side > 0 and u < 0 or side < 0 and u > 1:
            return 0.0
        if side > 0 and u >= 1 or side < 0 and u <= 0:
            return 1.0
        if side > 0 and u == 0 or side < 0 and u == 1:  # θ at the range's end: only a constant sample there fits
            return 1.0 if np.all(self.y == u) else 0.0
        room = u if side > 0 else 1 - u  # how far y can move against the bet
        logs = []
        for c in CAPS:  # the average of nonnegative supermartingales is one: valid, and adapts to the data
            lam = np.minimum(self._lam, c / room)
            logs.append(np.cumsum(np.log1p(side * lam * (self.y - u))))
        log_capital = np.logaddexp.reduce(np.stack(logs), axis=0) - math.log(len(CAPS))
        return float(math.exp(-max(0.0, float(log_capital.max()))))

    @remembered
    def p_low(self, m):
        return self._p(m, +1)

    @remembered
    def p_high(self, m):
        return self._p(m, -1)

    @remembered
    def lower(self, a):
        return self._edge(a, +1)

    @remembered
    def upper(self, a):
        return self._edge(a, -1)

    def _edge(self, a: float, side: int) -> float:
        """The bound: where the p-value crosses a, by bisection between the range end and the mean."""
        outer, inner = (self.r0, self.statistic) if side > 0 else (self.r1, self.statistic)
        if self._p(outer, side) > a:
            return outer
        for _ in range(50):  # to ~1e-15 of the range
            mid = (outer + inner) / 2
            outer, inner = (mid, inner) if self._p(mid, side) <= a else (outer, mid)
        return outer

    def resized(self, n):
        reps = -(-n // self.n)
        return Betting(np.tile(self.y * (self.r1 - self.r0) + self.r0, reps)[:n], self.r0, self.r1)


def canonical_order(y: np.ndarray) -> np.ndarray:
    """The values in an order fixed by their multiset alone: sorted, then a permutation that depends
    only on n. The bets see prompts one at a time, so the bound would otherwise change when the same
    prompts come in another order, and a data file sorted by something the measure tracks (difficulty,
    length) would feed the bets a trend. The permutation is drawn independently of the values, so for
    exchangeable prompts the order is as good as a random one (docs/calibration.md measures it)."""
    order = np.random.default_rng([0x5EED, y.size]).permutation(y.size)
    return np.sort(y)[order]


# ---------------------------------------------------------------- unbounded measures: skew-corrected t
class SkewT(Bound):
    """Mean of values with no known range: Student's t on n-1 degrees of freedom, with Hall's (1992,
    JRSS-B 54:221) cubic transformation of the studentized mean, which removes the skewness term of its
    Edgeworth expansion: g(t) = t + c t² + c² t³ / 3 + c / 2 with c = γ̂ / (3√n), monotone in t.

    The correction is a first-order one, so it is trusted only while that term is small: at level a
    the bound is refused (infinite) when the skewness term γ̂ (2z²+1) φ(z) / (6√n) of the uncorrected
    t exceeds a third of a (z the normal a-quantile; `SKEW_SHARE`). Small levels (Holm, `any`, sweeps) ask for more
    prompts per unit of skewness, and a sample with one outsized value is refused outright.
    Closed forms: no resampling, so any level is answered exactly (no Monte Carlo floor)."""

    def __init__(self, values: np.ndarray, refuse: bool = True):
        x = np.asarray(values, dtype=np.float64)
        n = self.n = x.size
        self.statistic = float(x.mean())
        self.sd = float(x.std(ddof=1))
        self.se = self.sd / math.sqrt(n)
        self.skew = skewness(x)
        self.c = self.skew / (3 * math.sqrt(n))
        self.a_min = skew_floor(self.skew, n) if refuse else 0.0  # `refuse=False`: the caller checks skewness
        self.method = (f"skew-corrected t (Hall 1992; n={n}, skewness {self.skew:.2f}; no bound below "
                       f"level {self.a_min:.2g})")

    def _g(self, t: float) -> float:
        c = self.c
        return t + c * t * t + c * c * t ** 3 / 3 + c / 2

    def _g_inv(self, y: float) -> float:
        c = self.c
        if abs(c) < 1e-12:
            return y
        return (float(np.cbrt(1 + 3 * c * (y - c / 2))) - 1) / c

    def lower(self, a):
        from scipy.special import stdtrit

        if a < self.a_min:
            return -math.inf
        return self.statistic - self._g_inv(float(stdtrit(self.n - 1, 1 - a))) * self.se

    def upper(self, a):
        from scipy.special import stdtrit

        if a < self.a_min:
            return math.inf
        return self.statistic - self._g_inv(float(stdtrit(self.n - 1, a))) * self.se

    def p_low(self, m):
        from scipy.special import stdtr

        if m == -math.inf:  # every bound clears it
            return 0.0
        return max(float(stdtr(self.n - 1, -self._g((self.statistic - m) / self.se))), self.a_min)

    def p_high(self, m):
        from scipy.special import stdtr

        if m == math.inf:
            return 0.0
        return max(float(stdtr(self.n - 1, self._g((self.statistic - m) / self.se))), self.a_min)

    def resized(self, n):
        return _Normal(self.statistic, self.sd, n, self.method)


def skewness(x: np.ndarray) -> float:
    """The adjusted Fisher-Pearson sample skewness G1 (0 for a constant sample)."""
    n, d = x.size, x - x.mean()  # deviations first: no cancellation for values far from 0
    m2, m3 = float((d ** 2).mean()), float((d ** 3).mean())
    return 0.0 if m2 == 0 or n < 3 else m3 / m2 ** 1.5 * math.sqrt(n * (n - 1)) / (n - 2)


def _skew_term(a: float) -> float:
    """(2z²+1) φ(z) / (6a): the skewness term of the t's tail probability at level a, per unit of
    γ/√n, relative to a (Hall 1992, eq. 2.1). It grows as a shrinks."""
    from scipy.special import ndtri

    z = float(ndtri(a))
    return (2 * z * z + 1) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / (6 * a)


# The skewness term may be at most this share of the level. Of 1, 1/2, 1/3 and 1/4, the largest
# with which lognormal (σ 0.5-1.5), Pareto 2.5, gamma and t data held their level from n = 30 to
# 400, at a = 0.05 down to 0.0005 (docs/calibration.md); sample skewness underestimates heavy tails.
SKEW_SHARE = 1 / 3


def skew_floor(skew: float, n: int) -> float:
    """The smallest level a at which the skewness term stays under SKEW_SHARE · a."""
    if skew == 0:
        return 0.0
    ok = lambda a: abs(skew) * _skew_term(a) <= SKEW_SHARE * math.sqrt(n)  # noqa: E731
    if not ok(0.5):
        return 1.0
    lo, hi = math.log(1e-300), math.log(0.5)
    if ok(math.exp(lo)):
        return 0.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(math.exp(mid)) else (mid, hi)
    return math.exp(hi)


class _Normal(Bound):
    """A normal-theory stand-in, used only to size a future sample for sample-size advice."""

    def __init__(self, mean, sd, n, method):
        self.statistic, self.sd, self.n, self.method = mean, sd, n, method

    def lower(self, a):
        from scipy.special import ndtri

        return self.statistic + ndtri(a) * self.sd / math.sqrt(self.n)

    def upper(self, a):
        return 2 * self.statistic - self.lower(a)


def bound_for(values: np.ndarray, seed: int, binary: bool = False, value_range=None, paired_binary: bool = False,
              population: bool = False) -> Bound:
    """The bound for the mean of per-prompt values, chosen by what the values are (see module doc);
    with `population`, the prompts are all there is: the mean is exact."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("the measure produced no finite values" if x.size else "no prompts to measure")
    if population:
        return Exact(math.fsum(x) / x.size, x.size, POPULATION.format(n=x.size))
    if paired_binary:
        return PairedBinomial(int((x > 0).sum()), int((x < 0).sum()), x.size)
    if binary:
        return Binomial(int(x.sum()), x.size)
    if value_range is not None and all(math.isfinite(r) for r in value_range) and value_range[1] > value_range[0]:
        return Betting(x, *value_range)
    if x.size < MIN_N_UNBOUNDED:
        return Unknown(float(x.mean()), x.size, f"no valid bound: n={x.size} is below the {MIN_N_UNBOUNDED} prompts "
                       "a measure with no known range needs (docs/calibration.md)",
                       float(x.std(ddof=1)) if x.size > 1 else 0.0)
    if x.std() <= NOISE * max(1.0, float(np.abs(x).max())):
        return Unknown(float(x.mean()), x.size, "no valid bound: every prompt gave the same value (up to float "
                       "rounding) and the measure has no known range; a rare large value would go unseen")
    return SkewT(x)


# ---------------------------------------------------------------- two groups
class Difference(Bound):
    """θ_a - θ_b of two independent groups: each side's bound at half the level (Bonferroni)."""

    def __init__(self, a: Bound, b: Bound):
        self.a, self.b = a, b
        self.statistic = a.statistic - b.statistic
        self.n = a.n + b.n
        self.sd = math.sqrt((a.sd ** 2 + b.sd ** 2) / 2)
        self.method = f"difference of two groups ({a.n} vs {b.n} prompts; each {a.method}; Bonferroni)"

    def lower(self, a):
        return self.a.lower(a / 2) - self.b.upper(a / 2)

    def upper(self, a):
        return self.a.upper(a / 2) - self.b.lower(a / 2)

    def resized(self, n):
        ra, rb = self.a.resized(max(2, n // 2)), self.b.resized(max(2, n // 2))
        return Difference(ra, rb) if ra and rb else None


class PairedBinomial(Difference):
    """The mean of paired changes in {-1, 0, 1}: θ = P(+1) - P(-1), bounded by Clopper-Pearson on
    each count at half the level (Bonferroni), so it is exact however few prompts changed."""

    def __init__(self, plus: int, minus: int, n: int):
        super().__init__(Binomial(plus, n), Binomial(minus, n))
        self.n = n  # one sample of n prompts, not two groups
        mean2 = (plus + minus) / n
        self.sd = math.sqrt(max(mean2 - self.statistic ** 2, 0.0))
        self.method = f"exact paired counts ({plus} up, {minus} down; Clopper-Pearson, Bonferroni)"

    def resized(self, n):
        return PairedBinomial(round(self.a.statistic * n), round(self.b.statistic * n), n)


# ---------------------------------------------------------------- curves over a sweep
class Crossing(Bound):
    """Where a swept mean first reaches `level`, from per-point bounds held simultaneously
    (Bonferroni over the K points). The interval is the set of crossings no point rules out:
    - `mode="bracket"` (default): the crossing lies between the last sweep value where the mean
      surely misses and the first where it surely reaches the level: (x[j_lo-1], x[j_hi)];
    - `mode="discrete"` (`interpolate: false`): the first sweep value reaching it, [x[j_lo], x[j_hi]];
    - `mode="linear"` (`interpolate: true`): the estimate is where the mean curve, joined linearly,
      reaches the level; the interval is the bracket's. Nothing measures the curve between sweep
      points, and inverting bound curves joined linearly passed false claims on a sigmoid (51% at
      n = 30, all from n = 400: issue 22, item 4), so linearity is never assumed for the interval."""

    def __init__(self, xs, points: list[Bound], level: float, rising: bool, mode: str, what: str):
        self.xs, self.points, self.level, self.rising, self.mode = np.asarray(xs, float), points, level, rising, mode
        self.n = min(p.n for p in points)
        means = np.array([p.statistic for p in points])
        self.means = means
        self.statistic = _first_crossing(self.xs, means, level, rising, interpolate=mode != "discrete")
        self.sd = float(np.mean([p.sd for p in points]))
        self.method = f"{what}; per-point {points[0].method}, simultaneous over {len(points)} points"

    def _curves(self, a):
        k = len(self.points)
        lows = np.array([p.lower(a / k) for p in self.points])
        highs = np.array([p.upper(a / k) for p in self.points])
        return (highs, lows) if self.rising else (lows, highs)  # (optimistic, pessimistic) curves

    def lower(self, a):
        optimistic, _ = self._curves(a)
        hit = self._hits(optimistic)
        if not hit.any():
            return math.inf
        j = int(hit.argmax())
        if self.mode == "discrete":
            return float(self.xs[j])
        if j == 0:
            return -math.inf  # it may already be reached before the sweep starts
        return float(self.xs[j - 1])  # bracket, and linear: the last value surely short of the level

    def upper(self, a):
        _, pessimistic = self._curves(a)
        hit = self._hits(pessimistic)
        if not hit.any():
            return math.inf
        return float(self.xs[int(hit.argmax())])

    def _hits(self, ys):
        return ys >= self.level if self.rising else ys <= self.level


def _first_crossing(xs, ys, level, rising, interpolate) -> float:
    hit = ys >= level if rising else ys <= level
    if not hit.any():
        return math.inf
    i = int(hit.argmax())
    if not interpolate or i == 0:
        return float(xs[i])
    y0, y1 = ys[i - 1], ys[i]
    return float(xs[i - 1] + (level - y0) / (y1 - y0) * (xs[i] - xs[i - 1]))


def slope_weights(xs) -> np.ndarray:
    """w with slope = w · ys for a least-squares line through (xs, ys)."""
    xs = np.asarray(xs, float)
    dx = xs - xs.mean()
    return dx / (dx @ dx)


def slope_range(xs, value_range):
    """The range of a per-prompt slope when each point's value lies in `value_range`."""
    if value_range is None:
        return None
    w = slope_weights(xs)
    r0, r1 = value_range
    return float(np.minimum(w * r0, w * r1).sum()), float(np.maximum(w * r0, w * r1).sum())


class R2(Bound):
    """R² of the straight-line fit to the mean curve over `xs` (matrix [K points, n prompts]).

    R² ≥ c exactly when q_c(μ) = SS_reg(μ) - c·SS_tot(μ) ≥ 0, a quadratic form in the mean curve μ.
    The bound is a projection: the smallest (largest) R² over Hotelling's confidence ellipsoid for μ
    in the K-1 centred coordinates R² depends on, found as a trust-region minimum of q_c over the
    ellipsoid and a bisection on c. It holds whenever the ellipsoid covers μ (exact for normal noise,
    conservative since it covers every function of μ at once), and it never centres on R² of the
    noisy mean curve, which is biased low. A flat curve has no R²: `flat` says so, and the claim fails."""

    def __init__(self, xs, matrix: np.ndarray):
        self.xs, self.n = np.asarray(xs, float), matrix.shape[1]
        k = self.xs.size
        mean = matrix.mean(1)
        self.flat = bool(np.ptp(mean) <= 1e-12 * max(1.0, float(np.abs(mean).max())))
        self.statistic = math.nan if self.flat else float(_r2(self.xs, mean[None])[0])
        basis = np.linalg.svd(np.eye(k) - 1.0 / k)[0][:, :k - 1]  # orthonormal, orthogonal to constants
        self.centred = basis.T @ mean  # the mean curve in centred coordinates
        dx = basis.T @ (self.xs - self.xs.mean())
        self.u = dx / np.linalg.norm(dx)  # SS_reg = (u·μ)², SS_tot = |μ|²
        cov = np.cov(basis.T @ matrix) / self.n if self.n > 1 else np.zeros((k - 1, k - 1))
        vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
        self.root = vecs * np.sqrt(np.clip(vals, 0, None))  # root @ root.T = covariance of the mean
        self.dims = k - 1
        self.sd = float(math.sqrt(max(vals.max(), 0.0) * self.n)) if vals.size else 0.0
        spread = vals.size and vals.min() > 1e-12 * max(vals.max(), 1e-300)
        self.method = ("R² is undefined: the mean curve is flat (no variance for a line to explain)" if self.flat else
                       f"R² of the mean curve, over Hotelling's {k - 1}-dimensional ellipsoid for it (n={self.n})")
        if not self.flat and (self.n <= k or not spread):
            self.method = (f"no valid bound: R² over {k} points needs more than {k} prompts whose curves vary in "
                           f"every direction (n={self.n})")
            self.refused = True
        else:
            self.refused = self.flat

    def _radius(self, a: float) -> float:
        """Hotelling's T² quantile at 1-a, as a radius in whitened coordinates of the mean."""
        from scipy.special import fdtri

        p, n = self.dims, self.n
        return math.sqrt(p * (n - 1) / (n - p) * float(fdtri(p, n - p, 1 - a)))

    def _lowest(self, c: float, r: float, sign: int) -> float:
        """The minimum of sign·q_c over the ellipsoid of whitened radius r."""
        a_mat = sign * (np.outer(self.u, self.u) - c * np.eye(self.dims))
        return _ball_minimum(self.root.T @ a_mat @ self.root, self.root.T @ a_mat @ self.centred,
                             float(self.centred @ a_mat @ self.centred), r)

    def _edge(self, a: float, sign: int) -> float:
        """lower (sign +1): the largest c with q_c ≥ 0 on the whole ellipsoid; upper (sign -1): the
        smallest c with q_c ≤ 0 on it (the minimum of sign·q_c is monotone in c)."""
        from scipy.optimize import brentq

        if self.refused:
            return -math.inf if sign > 0 else math.inf
        r = self._radius(a)
        low = lambda c: self._lowest(c, r, sign)  # noqa: E731
        far, near = (0.0, 1.0) if sign > 0 else (1.0, 0.0)
        if low(far) < 0:
            return far  # not even R² = 0 (or 1) is ruled out
        if low(near) >= 0:
            return near
        return float(brentq(low, 0.0, 1.0, xtol=1e-12))

    def _p(self, c: float, sign: int) -> float:
        """The level at which the ellipsoid just touches sign·q_c = 0: Hotelling's tail at that radius."""
        from scipy.optimize import brentq
        from scipy.special import fdtrc

        if self.refused:
            return 1.0
        low = lambda r: self._lowest(c, r, sign)  # noqa: E731
        if low(0.0) < 0:
            return 1.0  # the mean curve itself is on the other side
        hi = 1.0
        while low(hi) >= 0:
            hi *= 4
            if hi > 1e8:  # no mean curve reaches the other side (c outside [0, 1])
                return 0.0
        touch = brentq(low, 0.0, hi, xtol=1e-12 * hi)
        p, n = self.dims, self.n
        return max(float(fdtrc(p, n - p, touch * touch * (n - p) / (p * (n - 1)))), LEVEL_FLOOR)

    def lower(self, a):
        return self._edge(a, +1)

    def upper(self, a):
        return self._edge(a, -1)

    def p_low(self, m):
        return self._p(m, +1)

    def p_high(self, m):
        return self._p(m, -1)


def _ball_minimum(b: np.ndarray, g: np.ndarray, q0: float, r: float) -> float:
    """min over |v| ≤ r of q0 + 2 g·v + v·B v: the trust-region subproblem, solved on B's eigenbasis
    by the secular equation |(Λ + s)⁻¹ g| = r for the shift s ≥ max(0, -λ_min)."""
    from scipy.optimize import brentq

    lam, vecs = np.linalg.eigh(b)
    gt = vecs.T @ g
    floor = max(0.0, -float(lam[0]))

    def step(shift):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(gt == 0, 0.0, -gt / (lam + shift))

    def excess(shift):  # falls as the shift grows; near the floor the step may overflow to inf
        with np.errstate(over="ignore"):
            return float(np.linalg.norm(step(shift))) - r

    def value(v):
        return q0 + 2 * float(gt @ v) + float(v @ (lam * v))

    if r == 0:
        return q0
    if lam[0] > 0 and excess(0.0) <= 0:
        return value(step(0.0))  # the unconstrained minimum lies inside the ball
    lo = floor * (1 + 1e-15) + 1e-300
    hi = floor + max(1.0, float(np.abs(gt).sum()) / r)
    if not excess(lo) > 0:  # the hard case: the step at the floor stays inside; fill along λ_min
        v = step(lo)
        v[0] = 0.0 if lam[0] < 0 else v[0]
        return value(v) + float(lam[0]) * max(r * r - float(v @ v), 0.0) * (lam[0] < 0)
    return value(step(brentq(excess, lo, hi, xtol=1e-14 * hi)))


def _r2(xs, ys):
    ys = np.atleast_2d(ys)
    w = slope_weights(xs)
    dx = xs - xs.mean()
    dy = ys - ys.mean(1, keepdims=True)
    b = dy @ w
    total = (dy ** 2).sum(1)
    resid = ((dy - b[:, None] * dx) ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1 - resid / total, np.nan)


# ---------------------------------------------------------------- regions, Holm, sample sizes
def p_inside(bound: Bound, lo: float, hi: float) -> float:
    """p-value against "θ lies outside [lo, hi]": both one-sided tests must reject (intersection-union)."""
    p_lo = bound.p_low(lo) if math.isfinite(lo) else 0.0
    p_hi = bound.p_high(hi) if math.isfinite(hi) else 0.0
    return max(p_lo, p_hi)


def p_outside(bound: Bound, lo: float, hi: float) -> float:
    """p-value against "θ lies inside [lo, hi]": one of the two one-sided tests rejects (Bonferroni)."""
    sides = [bound.p_high(lo)] if math.isfinite(lo) else []
    sides += [bound.p_low(hi)] if math.isfinite(hi) else []
    return min(1.0, len(sides) * min(sides)) if sides else 1.0


def holm(pvalues: list[float], alpha: float) -> list[float]:
    """Holm's step-down: the level each hypothesis is judged at. In p order, the i-th (0-based) is
    judged at alpha / (m - i) while every earlier one was rejected; from the first that is not,
    every later one is judged at that same level, so none of them can be rejected (the stop)."""
    m = len(pvalues)
    levels = [alpha] * m
    stopped = None
    for rank, idx in enumerate(np.argsort(pvalues, kind="stable")):
        level = stopped if stopped is not None else alpha / (m - rank)
        levels[idx] = level
        if stopped is None and pvalues[idx] > level:
            stopped = level
    return levels


def prompts_to_settle(bound: Bound, lo: float, hi: float, a: float, power: float = 0.8, cap: int = 10_000_000):
    """The number of prompts at which the same method would settle the claim with `power`, if the
    mean and spread stayed as measured; None when no number can (the estimate sits on a boundary).
    Power: the bound must clear with the estimate moved z_power standard errors towards the boundary."""
    from scipy.special import ndtri

    if bound.resized(bound.n) is None or not all(map(math.isfinite, (bound.statistic,))):
        return None
    inside = lo <= bound.statistic <= hi
    z = ndtri(power)

    def settles(n):
        b = bound.resized(n)
        shift = z * bound.sd / math.sqrt(n)
        est = b.at(a)
        if inside:
            return est.low - shift * (lo > -math.inf) >= lo and est.high + shift * (hi < math.inf) <= hi
        return est.high + shift < lo or est.low - shift > hi

    n = bound.n
    while not settles(n):
        n *= 2
        if n > cap:
            return None
    lo_n, hi_n = max(bound.n, n // 2), n
    while hi_n - lo_n > max(1, lo_n // 50):
        mid = (lo_n + hi_n) // 2
        lo_n, hi_n = (lo_n, mid) if settles(mid) else (mid, hi_n)
    return hi_n


def _g(x: float) -> str:
    return f"{x:g}"
