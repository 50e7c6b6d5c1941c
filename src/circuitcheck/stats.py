"""Statistics: an estimate with its interval and how it was computed, from per-prompt values.

- proportions (every value 0 or 1): Wilson score interval;
- anything else, and paired changes from the clean run: a seeded BCa bootstrap of the mean
  (percentile when BCa is undefined), so the same file and seed give the same interval;
- multiple claims in a file: Holm's step-down, applied as a per-claim interval level.
"""
from __future__ import annotations

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


def estimate(values: np.ndarray, level: float, seed: int) -> Estimate:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("the measure produced no finite values")
    if is_binary(x):
        return wilson(int(x.sum()), x.size, level)
    return bootstrap(x, level, seed)


def wilson(k: int, n: int, level: float) -> Estimate:
    from scipy import stats as sps  # scipy loads when a claim runs, not at collection

    z = sps.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), level, n, "Wilson score", math.sqrt(p * (1 - p)))


def bootstrap(x: np.ndarray, level: float, seed: int) -> Estimate:
    from scipy import stats as sps

    mean, sd = float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0
    if np.ptp(x) == 0:
        return Estimate(mean, mean, mean, level, x.size, "constant (every prompt gave the same value)", 0.0)
    rng = np.random.default_rng(seed)
    method = "BCa"
    res = sps.bootstrap((x,), np.mean, confidence_level=level, n_resamples=N_RESAMPLES, method="BCa", rng=rng)
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        method = "percentile"
        res = sps.bootstrap((x,), np.mean, confidence_level=level, n_resamples=N_RESAMPLES,
                            method="percentile", rng=np.random.default_rng(seed))
        low, high = res.confidence_interval
    return Estimate(mean, float(low), float(high), level, x.size, f"{method} bootstrap ({N_RESAMPLES} resamples)", sd)


def p_inside(est_value: float, sd: float, n: int, lo: float, hi: float) -> float:
    """Normal-approximation p-value against 'the true value is outside [lo, hi]' (for ranking)."""
    from scipy import stats as sps

    d = min(est_value - lo, hi - est_value)
    se = sd / math.sqrt(n) if n else 0.0
    if se == 0:
        return 0.0 if d > 0 else 1.0
    return float(sps.norm.cdf(-d / se))


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
    if d == 0 or est.half_width == 0:
        return None
    return int(math.ceil(est.n * (est.half_width / d) ** 2))
