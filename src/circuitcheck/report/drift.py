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
- a case with no per-prompt values to pair (a ratio such as faithfulness, a curve, a contrast of two
  groups, a weight): the baseline keeps its interval at each level of a ladder (`LADDER`). Two
  intervals, each one-sided at level L at both ends, that do not overlap are a test of no change at
  level 4L (each of the four ends misses with probability at most L), so a compare at case level a
  reads the largest L ≤ a/4 of the ladder and this run's bound at that same L.
- a baseline written before values or ladders were kept: the old rule (the two intervals do not
  overlap, at the claim's own level: a test at no stated level), said as such in the report;
  `--cc-update-baselines` rewrites it.

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


LADDER = (2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6, 5e-7, 2e-7, 1e-7,
          5e-8, 2e-8, 1e-8)  # one-sided levels; 1e-8 serves a run of up to 10^6 cases at 0.05


def ladder(bound) -> list[list]:
    """[level, lower, upper] of a bound at each level of the ladder (null: a refused end)."""
    end = lambda x: None if not np.isfinite(x) else float(f"{float(x):.{SIGNIFICANT}g}")  # noqa: E731
    return [[level, end(bound.lower(level)), end(bound.upper(level))] for level in LADDER]


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


def drifts(base: dict, now: dict, a: float, tol: float | None, seed: int = 0, bound=None) -> tuple[bool, str]:
    """(whether the case drifted, the test that said so) at error level `a` for this case; `bound`:
    this run's stats.Bound for the case, where the run has it (else `now`'s ladder is read)."""
    made = change_bound(base, now, seed)
    if made is None and base.get("ladder") and (bound is not None or now.get("ladder")):
        return _ladder_rule(base, now, a, tol, bound)
    if made is None:
        return _overlap_rule(base, now, tol), "baseline without per-prompt values or ladder: " + (
            f"|Δ| > {tol:g}" if tol is not None else "the intervals do not overlap (no stated level; "
            "--cc-update-baselines keeps a ladder)")
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


def _ladder_rule(base: dict, now: dict, a: float, tol: float | None, bound) -> tuple[bool, str]:
    """Drift read from two intervals at one ladder level L ≤ a/4 (see the module doc)."""
    rows = {float(r[0]): r for r in base["ladder"]}
    fit = [level for level in rows if level <= a / 4]
    level = max(fit) if fit else min(rows)
    now_rows = {float(r[0]): r for r in now.get("ladder") or []}
    if bound is None and level not in now_rows:
        return _overlap_rule(base, now, tol), "the two ladders share no level: the intervals do not overlap"
    b_lo, b_hi = _ends(rows[level])
    n_lo, n_hi = (bound.lower(level), bound.upper(level)) if bound is not None else _ends(now_rows[level])
    eps = 10.0 ** (1 - SIGNIFICANT) * max(1.0, abs(base["value"]), abs(now["value"]))
    lo, hi = n_lo - b_hi, n_hi - b_lo  # Δ's bounds, each holding with probability at least 1 - 2L
    said = f"Δ in [{lo:.4g}, {hi:.4g}] from the two intervals at one-sided level {level:.2g} each (a test at level " \
        f"{4 * level:.2g}{'' if fit else f', above this case level {a:.2g}: the ladder ends there'}; no per-prompt " \
        "values for this kind of case)"
    if tol is not None:
        return not (lo >= -tol - eps and hi <= tol + eps), f"{said}, equivalence within ±{tol:g}"
    return bool(lo > eps or hi < -eps), f"{said}, test of no change"


def _ends(row) -> tuple[float, float]:
    return (-np.inf if row[1] is None else row[1]), (np.inf if row[2] is None else row[2])


def _overlap_rule(base: dict, now: dict, tol: float | None) -> bool:
    if tol is not None:
        return abs(now["value"] - base["value"]) > tol
    # Zero-width intervals (a constant measure) touch within rounding: float32 keeps ~7 digits.
    eps = 1e-6 * max(1.0, abs(base["value"]), abs(now["value"]))
    low = lambda c: -np.inf if c["low"] is None else c["low"]  # noqa: E731 (null: a refused bound, unbounded)
    high = lambda c: np.inf if c["high"] is None else c["high"]  # noqa: E731
    return low(now) > high(base) + eps or high(now) < low(base) - eps
