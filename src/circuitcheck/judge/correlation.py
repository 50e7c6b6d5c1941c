"""Correlation of a measure with a per-prompt quantity from the data (`expect: {correlates: ...}`).

Pearson's r is a function of five means (x, y, x², y², xy), so its interval comes from the same
bootstrap over prompts as a sweep's curve statistics (`stats.curve`): the five moments are the
curve's points. The quantity is `tok[POS]` (the token id at a named position, e.g. the list's
maximum at `argmax`) or the name of a numeric field of the prompts' data (JSONL `fields`).
"""
from __future__ import annotations

import functools

import numpy as np

from . import stats as S


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


class Correlation(S.Bound):
    """Pearson's r of x with y: a percentile bootstrap over prompts, the resamples shared with every
    other quantity over the same prompts. A constant x or y has no r: infinite bounds, and the
    method says why."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int, what: str):
        matrix = moments(x, y)
        self.n = matrix.shape[1]
        self.statistic = float(pearson(matrix.mean(1))[0])
        self.flat = not np.isfinite(self.statistic)
        self.matrix, self.seed = matrix, seed
        self.known = S.known_answers("correlation", seed, np.ascontiguousarray(matrix))
        self.method = (f"Pearson r with {what}, percentile bootstrap over prompts ({S.N_RESAMPLES} resamples)"
                       if not self.flat else f"Pearson r with {what} is undefined: one of the two is constant")

    @functools.cached_property
    def boots(self) -> np.ndarray:  # drawn when an answer is not remembered
        boots = pearson(S.resampled_means(self.matrix.T, self.seed))
        return np.sort(boots[np.isfinite(boots)])

    @property
    def sd(self) -> float:
        return S.boots_sd(self.known, self.boots if "sd" not in self.known else None, self.n)

    @S.remembered
    def lower(self, a):
        return -np.inf if self.flat else float(np.quantile(self.boots, a))

    @S.remembered
    def upper(self, a):
        return np.inf if self.flat else float(np.quantile(self.boots, 1 - a))
