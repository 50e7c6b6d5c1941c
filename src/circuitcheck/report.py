"""Report: the words and tables a researcher reads for a result."""
from __future__ import annotations

from .verdict import FAIL, INCONCLUSIVE, PASS, CaseResult, Result


def _num(x: float) -> str:
    return f"{x:.4g}"


def interval(c: CaseResult) -> str:
    e = c.estimate
    return f"[{_num(e.low)}, {_num(e.high)}]"


def why(c: CaseResult) -> str:
    lo, hi = c.bounds
    e = c.estimate
    if c.verdict == PASS:
        return "the interval lies inside the claimed region"
    if c.verdict == FAIL:
        side = f"below {_num(lo)}" if e.high < lo else f"above {_num(hi)}"
        return f"the whole interval lies {side}"
    settle = c.settle
    advice = f"about {settle} prompts would likely settle it" if settle else "the estimate sits on the boundary"
    return f"the interval straddles the boundary; {advice} (now n={e.n})"


def describe(result: Result) -> str:
    """The full failure message: sentence, value, interval, threshold, n, seed, file:line."""
    head = f"{result.path}:{result.line}: claim {result.claim_id!r} {result.verdict.upper()}"
    if result.error:
        return f"{head}\n  says:      {result.says}\n  could not be measured: {result.error}"
    lines = [head, f"  says:      {result.says}", f"  expected:  {result.measure} {result.expected}"
             + (f"  ({result.quantifier} of {len(result.cases)} cases)" if result.quantifier else "")]
    for c in result.cases:
        e = c.estimate
        label = f"  [{c.label}]" if c.label else ""
        lines.append(f"  measured{label}: {_num(e.statistic)}  {e.level:.1%} CI {interval(c)}  "
                     f"({e.method}, n={e.n})  -> {c.verdict}: {why(c)}")
        if c.curve:
            lines.append("      curve: " + ", ".join(f"{x}: {_num(y)}" for x, y in c.curve))
        if c.clean is not None:
            lines.append(f"      clean run: {_num(c.clean.statistic)} {interval(CaseResult('', '', c.clean, c.bounds))}")
    lines.append(f"  seed {result.seed}, model {result.model}, load {result.load}")
    if result.verdict == INCONCLUSIVE:
        lines.append("  an inconclusive claim fails by default; `--cc-inconclusive=skip` skips it instead")
    return "\n".join(lines)


def properties(result: Result) -> list[tuple[str, object]]:
    """Numbers for JUnit XML (pytest `user_properties`): of the claim's worst case, then every case."""
    props = [("claim", f"{result.path.split('/')[-1]}::{result.claim_id}"), ("verdict", result.verdict),
             ("expected", result.expected)]
    if not result.cases:
        return props + [("error", result.error)]
    c = worst(result.cases)
    props += [("value", c.estimate.statistic), ("ci_low", c.estimate.low), ("ci_high", c.estimate.high),
              ("ci_level", c.estimate.level), ("n", c.estimate.n), ("method", c.estimate.method),
              ("cases", len(result.cases)), ("seed", result.seed), ("model", result.model), ("load", str(result.load))]
    if len(result.cases) > 1:
        props += [(f"case[{x.label}]", f"{x.verdict} {x.estimate.statistic:.4g} {interval(x)}") for x in result.cases]
    # plain Python values: pytest-xdist sends them between processes and cannot serialise numpy scalars
    return [(k, float(v) if hasattr(v, "dtype") else v) for k, v in props]


def worst(cases: list[CaseResult]) -> CaseResult:
    """The case nearest to failing: failed first, then inconclusive, then the smallest margin."""
    rank = {FAIL: 0, INCONCLUSIVE: 1, PASS: 2}

    def margin(c):
        lo, hi = c.bounds
        return min(c.estimate.low - lo, hi - c.estimate.high)

    return min(cases, key=lambda c: (rank.get(c.verdict, 0), margin(c)))


def table(claims: list[dict]) -> list[str]:
    """One line per claim, from its `properties`: verdict, claim, value, interval, expectation, n."""
    rows = [("verdict", "claim", "value", "CI", "expected", "n")]
    for p in claims:
        if "value" not in p:
            rows.append((p["verdict"].upper(), p["claim"], "-", "-", p["expected"], "-"))
            continue
        cases = "" if p["cases"] == 1 else f" (worst of {p['cases']})"
        rows.append((p["verdict"].upper(), p["claim"], _num(p["value"]) + cases,
                     f"[{_num(p['ci_low'])}, {_num(p['ci_high'])}]", p["expected"], str(p["n"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
