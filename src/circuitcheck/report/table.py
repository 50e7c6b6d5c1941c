"""Report: the words and tables a researcher reads for a result."""
from __future__ import annotations

import math

from ..judge.verdict import FAIL, INCONCLUSIVE, PASS, RECORDED, CaseResult, Result


def _num(x: float) -> str:
    return f"{x:.4g}"


def interval(c: CaseResult) -> str:
    e = c.estimate
    return f"[{_num(e.low)}, {_num(e.high)}]"


def level(c: CaseResult) -> str:
    """How sure each bound is: one-sided, at the level the claim was judged at (after Holm)."""
    if c.bound is not None and getattr(c.bound, "exact", False):
        return "exact"
    return f"{c.estimate.level:.4g} per side"


def why(c: CaseResult) -> str:
    lo, hi = c.bounds
    e = c.estimate
    if c.verdict == PASS:
        return "the interval lies inside the claimed region"
    if c.verdict == RECORDED:
        return "recorded, not judged"
    if c.verdict == FAIL:
        if getattr(c.bound, "flat", False):
            return e.method
        side = f"below {_num(lo)}" if e.high < lo else f"above {_num(hi)}"
        return f"the whole interval lies {side}"
    if not (math.isfinite(e.low) or math.isfinite(e.high)):
        return e.method  # no valid bound exists: say why
    settle = c.settle
    advice = (f"about {settle} prompts would settle it with 80% power" if settle
              else "no number of prompts would settle it: the estimate sits on the boundary")
    return f"the interval straddles the boundary; {advice} (now n={e.n})"


def _quantified(result: Result) -> str:
    if not result.quantifier:
        return ""
    n = len(result.cases)
    return {"all": f"  (all of {n} cases must pass)", "any": f"  (any of {n} cases may pass)",
            "none": f"  (none of {n} cases may pass)"}[result.quantifier]


def describe(result: Result) -> str:
    """The full failure message: sentence, what was done and measured, value, interval, threshold,
    n, seed, the multiple-testing family, file:line."""
    head = f"{result.path}:{result.line}: claim {result.claim_id!r} {result.verdict.upper()}"
    if result.error:
        return f"{head}\n  says:      {result.says}\n  could not be measured: {result.error}"
    lines = [head, f"  says:      {result.says}"]
    if result.under:
        lines.append(f"  under:     {result.under}")
    lines.append(f"  expected:  {result.measure} {result.expected}" + _quantified(result))
    main = result.main
    for c in result.cases:
        e = c.estimate
        label = f"  [{c.label}]" if c.label else ""
        mark = "  <- decides" if c is main and len(result.cases) > 1 else ""
        lines.append(f"  measured{label}: {_num(e.statistic)}  CI {interval(c)} ({level(c)})  "
                     f"({e.method}, n={e.n})  -> {c.verdict}: {why(c)}{mark}")
        if c.curve:
            lines.append("      curve: " + ", ".join(f"{x}: {_num(y)}" for x, y in c.curve))
        if c.clean is not None:
            lines.append(f"      clean run: {_num(c.clean.statistic)} [{_num(c.clean.low)}, {_num(c.clean.high)}]")
    lines.append(f"  seed {result.seed}, model {result.model}, load {result.load}")
    if result.family:
        lines.append(f"  multiple testing: {result.family}")
    if result.verdict == INCONCLUSIVE:
        lines.append("  an inconclusive claim fails by default; `--cc-inconclusive=skip` skips it instead")
    return "\n".join(lines)


def properties(result: Result) -> list[tuple[str, object]]:
    """Numbers for JUnit XML (pytest `user_properties`): of the claim's deciding case, then every case."""
    props = [("claim", f"{result.path.split('/')[-1]}::{result.claim_id}"), ("verdict", result.verdict),
             ("expected", f"{result.measure} {result.expected}"), ("quantifier", result.quantifier or "")]
    if not result.cases:
        return props + [("error", result.error)]
    c = result.main
    props += [("value", c.estimate.statistic), ("ci_low", c.estimate.low), ("ci_high", c.estimate.high),
              ("ci_level", c.estimate.level), ("level", level(c)), ("n", c.estimate.n), ("method", c.estimate.method),
              ("cases", len(result.cases)), ("seed", result.seed), ("model", result.model), ("load", str(result.load)),
              ("family", result.family)]
    if len(result.cases) > 1:
        props += [(f"case[{x.label}]", f"{x.verdict} {x.estimate.statistic:.4g} {interval(x)}") for x in result.cases]
    # plain Python values: pytest-xdist sends them between processes and cannot serialise numpy scalars
    return [(k, float(v) if hasattr(v, "dtype") else v) for k, v in props]


WHICH = {"all": "worst", "any": "best", "none": "nearest to passing"}


def table(claims: list[dict], width: int | None = None) -> list[str]:
    """One line per claim, from its `properties`: verdict, claim, the deciding case's value, its
    interval and level, the expectation, n, and the method (and the baseline, when there is one).
    With `width` (the terminal's), text columns are cut short to fit it (fit_widths)."""
    base = any("baseline" in p for p in claims)  # a column for baseline.py's comparison, when there is one
    rows = [("verdict", "claim", "value", "CI", "level", "expected", "n", "method") + (("baseline",) if base else ())]
    for p in claims:
        extra = (p.get("baseline", "-"),) if base else ()
        if "value" not in p:
            rows.append((p["verdict"].upper(), p["claim"], "-", "-", "-", p["expected"], "-", p.get("error", "")) + extra)
            continue
        which = WHICH.get(p.get("quantifier") or "all")
        cases = "" if p["cases"] == 1 else f" ({which} of {p['cases']})"
        rows.append((p["verdict"].upper(), p["claim"], _num(p["value"]) + cases,
                     f"[{_num(p['ci_low'])}, {_num(p['ci_high'])}]", str(p.get("level", "")), p["expected"],
                     str(p["n"]), _brief(p["method"])) + extra)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if width is not None:
        widths = fit_widths(widths, rows[0], width)
    middle = [name == "claim" for name in rows[0]]  # a claim's id is at its end: cut its file name instead
    return ["  ".join(_cut(cell, w, m).ljust(w) for cell, w, m in zip(row, widths, middle) if w).rstrip()
            for row in rows]


# Columns that give up width when a row is wider than the terminal, in that order, and the width each
# keeps at least; then, on a narrow terminal, again down to the second minimum (0: the column goes).
# The numbers and the verdict never shrink; the full text stays in the JSON and HTML reports and in
# each failing claim's own message.
SHRINK = (("method", 8, 0), ("baseline", 12, 0), ("expected", 14, 10), ("claim", 20, 12))


def fit_widths(widths: list[int], header, width: int) -> list[int]:
    """Column widths that make a row at most `width` characters (two spaces between columns), taking
    from the text columns in SHRINK's order; as narrow as they may be, if the terminal is narrower."""
    widths = list(widths)
    for least in (1, 2):
        for name, *floors in SHRINK:
            over = sum(widths) + 2 * (sum(1 for w in widths if w) - 1) - width
            if over <= 0:
                return widths
            if name in header:
                i = header.index(name)
                floor = floors[least - 1]
                widths[i] = 0 if floor == 0 and least == 2 else max(floor, widths[i] - over, min(len(name), widths[i]))
    return widths


def _cut(cell: str, w: int, middle: bool = False) -> str:
    if len(cell) <= w:
        return cell
    if middle:
        head = (w - 1) // 3
        return cell[:head] + "…" + cell[len(cell) - (w - 1 - head):]
    return cell[:w - 1] + "…"


def _brief(method: str) -> str:
    return method.split(" (")[0].split(";")[0]
