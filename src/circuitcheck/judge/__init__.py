"""Judging: from per-prompt values to intervals, p-values and verdicts.

- `stats.py`        one-sided bounds and p-values that hold for the sample, and Holm's step-down
- `correlation.py`  Pearson's r of a measure with a per-prompt quantity (jackknife, Fisher z)
- `verdict.py`      does an interval lie inside the claimed region, outside it, or straddle it
- `claims.py`       a claim's rows (one per case, or a sweep's curve) judged as a family
- `specificity.py`  does a passing claim single out what it names (its mutants must not pass)
"""
