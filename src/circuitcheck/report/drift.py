"""Drift from a baseline as a test at a stated level (issue 22, item 14).

A baseline case keeps the per-prompt values its interval came from, a digest of the prompts they
were measured on, and what the values are (0/1 outcomes, a known range: `kind`). A run compares
each case with its baseline:

- same prompts (same digest): **paired**. The per-prompt differences now − baseline are bounded
  like any claim's values (betting bound over the range of a difference, exact counts for 0/1
  outcomes, else the bootstrap): a 0.2-sd shift on the same prompts is found where two intervals
  that merely overlap would hide it.
- other prompts (another prompt seed, another data set): **two samples**, each bounded at half the
  level (Bonferroni) and the bounds subtracted.
- a baseline written before values were kept: the old rule (the two intervals do not overlap),
  said as such in the report; `--cc-update-baselines` rewrites it with values.

Without `drift:` a case drifts when the two-sided test of "no change" rejects: Δ's bounds at a/2
each exclude 0. With `drift: X` it is an equivalence test: the case holds only when Δ's bounds, each
one-sided at a, lie within ±X; otherwise it drifts ("not shown within ±X"). The level a is the
run's drift level (`--cc-drift-alpha`, default 0.05) over the number of baseline cases compared in
the run (Bonferroni across the run).
"""
from __future__ import annotations

import numpy as np

SIGNIFICANT = 7  # digits kept per value in a baseline: float32 holds about 7


def rounded(values) -> list[float]:
    return [float(f"{float(v):.{SIGNIFICANT}g}") for v in np.asarray(values).ravel()]


def _eps(*samples) -> float:
    """What rounding to SIGNIFICANT digits (and float32) can move a value by, at these scales."""
    scale = max([1.0] + [float(np.max(np.abs(s))) for s in samples if len(s)])
    return 10.0 ** (1 - SIGNIFICANT) * scale


def _difference_range(kind: dict):
    """(bound_for keyword arguments) for per-prompt differences of two values of this kind."""
    if kind.get("binary"):
        return {"paired_binary": True}  # 0/1 minus 0/1: exact counts of the prompts that changed
    lo_hi = kind.get("value_range") or ((-1.0, 1.0) if kind.get("paired_binary") else None)
    if lo_hi is None:
        return {}
    width = float(lo_hi[1]) - float(lo_hi[0])
    return {"value_range": (-width, width)}


def _same_kind(kind: dict) -> dict:
    out = {k: bool(kind.get(k)) for k in ("binary", "paired_binary") if kind.get(k)}
    if kind.get("value_range") is not None:
        out["value_range"] = tuple(kind["value_range"])
    return out


def change_bound(base: dict, now: dict, seed: int = 0):
    """(bound of the mean change now − baseline, how it was made), or None without values.
    An exactly unchanged paired sample (within rounding) gives the string "unchanged"."""
    from ..judge import stats as S

    bv, nv = base.get("values"), now.get("values")
    if not bv or not nv:
        return None
    b, n = np.asarray(bv, dtype=np.float64), np.asarray(nv, dtype=np.float64)
    kind = now.get("kind") or base.get("kind") or {}
    if base.get("prompts") and base.get("prompts") == now.get("prompts") and b.size == n.size:
        d = n - b
        if np.max(np.abs(d)) <= _eps(b, n):
            return "unchanged", "paired, same prompts: no prompt changed beyond rounding"
        bound = S.bound_for(d, seed, **_difference_range(kind))
        return bound, f"paired over the same {d.size} prompts ({bound.method})"
    k = _same_kind(kind)
    bound = S.Difference(S.bound_for(n, seed, **k), S.bound_for(b, seed, **k))
    return bound, f"two samples ({n.size} and {b.size} prompts, other prompts; each bound at half the level)"


def drifts(base: dict, now: dict, a: float, tol: float | None, seed: int = 0) -> tuple[bool, str]:
    """(whether the case drifted, the test that said so) at error level `a` for this case."""
    made = change_bound(base, now, seed)
    if made is None:
        return _overlap_rule(base, now, tol), "baseline without per-prompt values: " + (
            f"|Δ| > {tol:g}" if tol is not None else "the intervals do not overlap")
    bound, how = made
    if isinstance(bound, str):
        return False, how
    eps = _eps(np.asarray(base["values"]), np.asarray(now["values"]))
    if tol is not None:  # equivalence: the change must be shown to lie within ±tol
        lo, hi = bound.lower(a), bound.upper(a)
        return not (lo >= -tol - eps and hi <= tol + eps), f"Δ in [{lo:.4g}, {hi:.4g}] at {1 - a:.4g} per side, " \
            f"equivalence within ±{tol:g}; {how}"
    lo, hi = bound.lower(a / 2), bound.upper(a / 2)
    return bool(lo > eps or hi < -eps), f"Δ in [{lo:.4g}, {hi:.4g}] at {1 - a / 2:.4g} per side, test of no " \
        f"change; {how}"


def _overlap_rule(base: dict, now: dict, tol: float | None) -> bool:
    if tol is not None:
        return abs(now["value"] - base["value"]) > tol
    # Zero-width intervals (a constant measure) touch within rounding: float32 keeps ~7 digits.
    eps = 1e-6 * max(1.0, abs(base["value"]), abs(now["value"]))
    low = lambda c: -np.inf if c["low"] is None else c["low"]  # noqa: E731 (null: a refused bound, unbounded)
    high = lambda c: np.inf if c["high"] is None else c["high"]  # noqa: E731
    return low(now) > high(base) + eps or high(now) < low(base) - eps
