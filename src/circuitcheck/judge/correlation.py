"""Correlation of a measure with a per-prompt quantity from the data (`expect: {correlates: ...}`).

Pearson's r is a function of five means (x, y, x², y², xy). Its bound is the jackknife over prompts of
Fisher's z = atanh(r): the pseudo-values n·z(all) - (n-1)·z(all but prompt i) are judged as per-prompt
values by the skew-corrected t (`stats.bound_for`), so the spread follows the data's own kurtosis (the
normal-theory 1/√(n-3) does not), and the t's skewness refusal applies to x and y themselves: r of
a strongly skewed variable is refused at levels its sample size cannot support (docs/calibration.md).

Heavy tails are refused the same way. The spread of r depends on x's and y's fourth moments; with
an infinite one (Student t3) the jackknife's spread comes from a sample that rarely shows the tail,
and a false `at_most` passed 2 to 10 times as often as its level, more so as n grew (issue 22). So
a variable's excess kurtosis (when positive) counts like its skewness in `stats.skew_floor`: no bound
below the level where either is too large for n. Sample kurtosis grows with n for such data, so the
refusal tightens as n grows, while a normal variable's shrinks towards 0.

The quantity is `tok[POS]` (the token id at a named position, e.g. the list's maximum at `argmax`)
or the name of a numeric field of the prompts' data (JSONL `fields`).
"""
from __future__ import annotations

import math

import numpy as np

from . import stats as S

EDGE = 1 - 1e-15  # |r| is kept below 1 so that atanh stays finite


def moments(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[5, n]: the per-prompt terms whose means give Pearson's r."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.stack([x, y, x * x, y * y, x * y])


def pearson(means: np.ndarray) -> np.ndarray:
    """r from the five means of each row [rows, 5] (NaN where a variable is constant)."""
    means = np.atleast_2d(means)
    mx, my, mxx, myy, mxy = means.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return (mxy - mx * my) / np.sqrt((mxx - mx * mx) * (myy - my * my))


def excess_kurtosis(x: np.ndarray) -> float:
    """The adjusted sample excess kurtosis G2 (about 0 for normal values; 0 for fewer than 4 or a
    constant sample)."""
    n, d = x.size, x - x.mean()
    m2, m4 = float((d ** 2).mean()), float((d ** 4).mean())
    if n < 4 or m2 == 0:
        return 0.0
    return ((n + 1) * (m4 / m2 ** 2 - 3) + 6) * (n - 1) / ((n - 2) * (n - 3))


def fisher_z(r):
    return np.arctanh(np.clip(r, -EDGE, EDGE))


class Correlation(S.Bound):
    """Pearson's r of x with y. A constant x or y has no r: `flat`, infinite bounds, and the method
    says why. (`seed` is unused: the jackknife draws nothing.)"""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int, what: str):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n = x.size
        matrix = moments(x - x.mean(), y - y.mean())  # centred: values far from 0 lose no digits
        self.statistic = float(pearson(matrix.mean(1))[0])
        left_out = pearson((matrix.sum(1)[None, :] - matrix.T) / max(self.n - 1, 1))
        self.flat = self.n < 3 or not (math.isfinite(self.statistic) and np.all(np.isfinite(left_out)))
        if self.flat:
            self.method = f"Pearson r with {what} is undefined: one of the two is constant"
            self.inner, self.floor = S.Unknown(self.statistic, self.n, self.method), 1.0
            return
        pseudo = self.n * fisher_z(self.statistic) - (self.n - 1) * fisher_z(left_out)
        # The pseudo-values of r are products of deviations, skewed even for normal data, so the
        # shape that decides a refusal is that of the variables themselves: r is refused at levels
        # where either's skewness or (positive) excess kurtosis is too large for n (what made a
        # skewed or a heavy-tailed variable's r pass too often).
        self.inner = S.bound_for(pseudo, 0) if self.n < S.MIN_N_UNBOUNDED else S.SkewT(pseudo, refuse=False)
        shape = [(S.skewness(v), excess_kurtosis(v)) for v in (x, y)]
        self.floor = max(S.skew_floor(abs(g), self.n) for pair in shape for g in (pair[0], max(pair[1], 0.0)))
        self.method = (f"Pearson r with {what}, Fisher z jackknifed over prompts ({self.inner.method}; no bound "
                       f"below level {self.floor:.2g}: skewness {shape[0][0]:.2f} and {shape[1][0]:.2f}, excess "
                       f"kurtosis {shape[0][1]:.2f} and {shape[1][1]:.2f} of the measure and {what}; below it a "
                       f"claim is inconclusive: use more prompts, or a less skewed, lighter-tailed quantity)")

    @property
    def sd(self) -> float:
        return self.inner.sd

    def lower(self, a):
        z = -math.inf if a < self.floor else self.inner.lower(a)
        return -math.inf if z == -math.inf else float(np.tanh(z))

    def upper(self, a):
        z = math.inf if a < self.floor else self.inner.upper(a)
        return math.inf if z == math.inf else float(np.tanh(z))

    def p_low(self, m):
        return 0.0 if m <= -1 else max(self.inner.p_low(float(fisher_z(m))), self.floor)

    def p_high(self, m):
        return 0.0 if m >= 1 else max(self.inner.p_high(float(fisher_z(m))), self.floor)
