"""Statistics: an estimate with its interval and how it was computed, from per-prompt values.

- proportions (every value 0 or 1): Wilson score interval;
- anything else, and paired changes from the clean run: a seeded BCa bootstrap of the mean
  (percentile when BCa is undefined), so the same file and seed give the same interval;
- multiple claims in a file: Holm's step-down, applied as a per-claim interval level.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 4000


@dataclass(frozen=True)
class Estimate:
    """Like a scipy.stats result: the statistic, its interval, and how it was computed."""

    statistic: float
    low: float
    high: float
    level: float  # confidence level of [low, high]
    n: int
    method: str
    sd: float  # per-prompt standard deviation, for sample-size advice

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def estimate(values: np.ndarray, level: float, seed: int, proportion: bool = True) -> Estimate:
    """The mean with its interval: Wilson when the values are 0/1 outcomes (`proportion`), else bootstrap.
    Paired differences and ranks are never proportions, even when every value is 0 or 1."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("the measure produced no finite values")
    if proportion and is_binary(x):
        return wilson(int(x.sum()), x.size, level)
    return bootstrap(x, level, seed)


def wilson(k: int, n: int, level: float) -> Estimate:
    from scipy.special import ndtri  # norm.ppf without importing scipy.stats (a second per run)

    z = ndtri(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), level, n, "Wilson score", math.sqrt(p * (1 - p)))


def bootstrap(x: np.ndarray, level: float, seed: int) -> Estimate:
    """BCa bootstrap of the mean; the same draws and formulas as `scipy.stats.bootstrap(method="BCa")`,
    so the intervals agree with scipy's, but the resampled means come from one matrix product."""
    from scipy.special import ndtr, ndtri

    mean, sd = float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0
    if np.ptp(x) == 0:
        return Estimate(mean, mean, mean, level, x.size, "constant (every prompt gave the same value)", 0.0)
    boots = resampled_means(x[:, None], seed)[:, 0]
    alpha = (1 - level) / 2
    z0 = ndtri(((boots < mean).sum() + (boots <= mean).sum()) / (2 * boots.size))
    loo = (x.sum() - x) / (x.size - 1)  # jackknife means, for the acceleration
    d = loo.mean() - loo
    accel = (d ** 3).sum() / (6 * ((d ** 2).sum()) ** 1.5)
    qs = [ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z))) for z in (ndtri(alpha), -ndtri(alpha))]
    method = "BCa"
    if not np.all(np.isfinite(qs)):
        method, qs = "percentile", [alpha, 1 - alpha]
    low, high = np.quantile(boots, qs)
    return Estimate(mean, float(low), float(high), level, x.size, f"{method} bootstrap ({N_RESAMPLES} resamples)", sd)


def resampled_means(columns: np.ndarray, seed: int) -> np.ndarray:
    """[N_RESAMPLES, k]: the column means of each bootstrap resample of the rows (prompts) of
    `columns` [n, k]. The draws are scipy.stats.bootstrap's for this seed; they are shared by every
    quantity over the same n prompts, so they are drawn once and kept as counts."""
    n = columns.shape[0]
    return _counts(n, seed) @ columns / n  # sum, then divide: ties land where scipy's means land


@functools.lru_cache(maxsize=4)
def _counts(n: int, seed: int) -> np.ndarray:
    """[N_RESAMPLES, n]: how often each prompt appears in each resample."""
    rng = np.random.default_rng(seed)
    out = np.empty((N_RESAMPLES, n))
    block = max(1, 2 ** 22 // n)  # the draws are made in blocks to bound memory; the stream is the same
    for start in range(0, N_RESAMPLES, block):
        rows = min(block, N_RESAMPLES - start)
        idx = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        out[start:start + rows] = np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n)
    out.flags.writeable = False
    return out


def p_inside(value: float, se: float, lo: float, hi: float) -> float:
    """Normal-approximation p-value against 'the true value is outside [lo, hi]' (for Holm's order)."""
    from scipy.special import ndtr  # norm.cdf, without importing scipy.stats

    d = min(value - lo, hi - value)
    if not np.isfinite(d):
        return 1.0
    if se == 0 or not np.isfinite(se):
        return 0.0 if d > 0 else 1.0
    return float(ndtr(-d / se))


def holm_alphas(pvalues: list[float], alpha: float) -> list[float]:
    """Holm: the claim with the i-th smallest p-value (0-based) is tested at alpha / (m - i)."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    out = [alpha] * m
    for rank, idx in enumerate(order):
        out[idx] = alpha / (m - rank)
    return out


def prompts_to_settle(est: Estimate, lo: float, hi: float) -> int | None:
    """Roughly how many prompts would make the interval clear the nearest boundary."""
    d = min(abs(est.statistic - lo), abs(est.statistic - hi))
    if d == 0 or not math.isfinite(d) or not (0 < est.half_width < math.inf):
        return None
    return int(math.ceil(est.n * (est.half_width / d) ** 2))


def contrast(a: np.ndarray, b: np.ndarray, level: float, seed: int) -> Estimate:
    """Mean of `a` minus mean of `b` (independent groups), with a seeded BCa bootstrap interval."""
    from scipy import stats as sps

    diff = float(a.mean() - b.mean())
    sd = math.sqrt(a.var(ddof=1) / a.size * (a.size + b.size) / 2 + b.var(ddof=1) / b.size * (a.size + b.size) / 2)
    res = sps.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), vectorized=True,
                        confidence_level=level, n_resamples=N_RESAMPLES, method="BCa", rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return Estimate(diff, float(low), float(high), level, a.size + b.size,
                    f"two-sample BCa bootstrap ({a.size} vs {b.size} prompts)", sd)


def curve(matrix: np.ndarray, statistic, level: float, seed: int, what: str) -> Estimate:
    """A statistic of the mean curve (one row per sweep point, one column per prompt), with a
    percentile bootstrap over prompts (the same resample of prompts at every point)."""
    point = statistic(matrix.mean(1)[None])[0]
    n = matrix.shape[1]
    boots = statistic(resampled_means(matrix.T, seed))
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail], method="linear") if np.all(np.isfinite(boots)) else \
        _quantile_with_inf(boots, tail)
    sd = float(np.std(boots[np.isfinite(boots)]) * math.sqrt(n)) if np.isfinite(boots).sum() > 1 else float("inf")
    return Estimate(float(point), float(low), float(high), level, n,
                    f"{what}, percentile bootstrap over prompts ({len(boots)} resamples)", sd)


def _quantile_with_inf(boots, tail):
    s = np.sort(boots)  # +inf sorts last: "never crosses" counts as beyond every sweep value
    k = len(s)
    return s[int(math.floor(tail * (k - 1)))], s[int(math.ceil((1 - tail) * (k - 1)))]


# Curve statistics take curves as rows ([curves, points]) and give one value per curve, so that
# every bootstrap resample is handled in one array operation.
def crossing(xs: np.ndarray, level: float, rising: bool, interpolate: bool):
    """The first x where a curve is ≥ `level` (≤ unless `rising`); +inf if it never is. With
    `interpolate`, the point between the last miss and the first hit where the line meets `level`."""

    def stat(ys):
        ys = np.atleast_2d(ys)
        hit = ys >= level if rising else ys <= level
        i = hit.argmax(1)
        rows = np.arange(len(ys))
        out = xs[i].astype(float)
        if interpolate:
            j = np.maximum(i - 1, 0)
            y0, y1 = ys[rows, j], ys[rows, i]
            with np.errstate(divide="ignore", invalid="ignore"):
                between = xs[j] + (level - y0) / (y1 - y0) * (xs[i] - xs[j])
            out = np.where(i > 0, between, out)
        return np.where(hit.any(1), out, np.inf)

    return stat


def _fit(xs: np.ndarray, ys: np.ndarray):
    """Least-squares slope of each row of ys against xs, and the rows centred on their means."""
    ys = np.atleast_2d(ys)
    dx = xs - xs.mean()
    dy = ys - ys.mean(1, keepdims=True)
    return dy @ dx / (dx @ dx), dx, dy


def slope(xs: np.ndarray):
    return lambda ys: _fit(xs, ys)[0]


def r2(xs: np.ndarray):
    def stat(ys):
        b, dx, dy = _fit(xs, ys)
        total = (dy ** 2).sum(1)
        resid = ((dy - b[:, None] * dx) ** 2).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, 1 - resid / total, 1.0)

    return stat


def exact(value: float, n: int, what: str) -> Estimate:
    return Estimate(float(value), float(value), float(value), 1.0, n, what, 0.0)
