"""Calibration of the ratio of paired means (faithfulness, completeness, minimality) and of MIB's
areas over edge budgets (CPR, one ratio; CMD, Bonferroni over the budgets' ratios): how often a claim
whose true value sits exactly on its threshold passes, through the real judging path
(`judge.ratio.Ratio`, or `judge.circuit`'s trapezoid weights and `Area`, in a `Row`; `claim_p` at the
level). The rate must stay at or under the level
plus Monte Carlo error (3 standard errors). Levels: 0.05 (a file of one claim) and α/30 (Holm's
smallest level in the largest shipped file: calibration.SHIPPED_M).

    PYTHONPATH=src:tests python tests/calibration_ratio.py --draws 1000   # the tables in docs/calibration.md
    PYTHONPATH=src:tests python tests/calibration_ratio.py --only CMD --draws 400
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from circuitcheck.judge.circuit import bound, trapezoid
from circuitcheck.judge.claims import Row, claim_p
from circuitcheck.judge.ratio import Ratio

from calibration import ALPHA, SHIPPED_M

THETA = 0.8  # the true ratio, on the threshold
HOLM = ALPHA / SHIPPED_M
NS = (30, 100, 400)  # prompts per claim; 30 is the fewest a mean with no known range is bounded from


@dataclass
class Scenario:
    name: str
    n: int
    level: float
    draw: Callable  # (rng, n) -> (a, b) with E[a] / E[b] = THETA exactly
    region: tuple = (THETA, math.inf)
    ranges: tuple = (None, None)
    judged: Callable = lambda a, b, ranges: Ratio(a, b, 0, ranges)  # noqa: E731  (a, b) -> the judged bound

    def pass_rate(self, draws: int, seed: int = 0) -> float:
        return self.rates(draws, seed)[0]

    def rates(self, draws: int, seed: int = 0) -> tuple[float, float]:
        """(how often the claim passes, how often its bound was refused: infinite on the side it needs)."""
        rng = np.random.default_rng(seed)
        passed = refused = 0
        for _ in range(draws):
            a, b = self.draw(rng, self.n)
            row = Row("", self.judged(a, b, self.ranges), self.region)
            passed += claim_p(_Claim(), [row]) <= self.level
            est = row.bound.at(self.level)
            refused += math.isfinite(self.region[0]) and est.low == -math.inf or \
                math.isfinite(self.region[1]) and est.high == math.inf
        return passed / draws, refused / draws

    def limit(self, draws: int) -> float:
        return self.level + 3 * math.sqrt(self.level * (1 - self.level) / draws)


class _Claim:  # a plain claim: no quantifier
    for_ = None


def normal(rng, n):
    b = rng.normal(1.0, 1.0, n)  # m(M) − m(∅) per prompt: a logit difference, say
    return THETA * b + rng.normal(0, 0.5, n), b


def skewed(rng, n):
    b = rng.lognormal(0.0, 1.0, n)  # heavy right tail
    return THETA * b + rng.standard_t(3, n) * 0.5, b


def weak(rng, n):
    b = rng.normal(0.12, 1.0, n)  # the knockouts barely move the metric: mostly refused
    return THETA * b + rng.normal(0, 0.5, n), b


def bounded(rng, n):
    """Probabilities: p(M) ~ Beta(8, 2), p(∅) ~ Beta(2, 8), the circuit keeps a Beta(8, 2) share
    (mean 0.8) of the gap, independently: E[a] = 0.8 E[b], every value in [−1, 1]."""
    full, empty, share = rng.beta(8, 2, n), rng.beta(2, 8, n), rng.beta(8, 2, n)
    b = full - empty
    return share * b, b


def completeness(rng, n):
    """|F(C∖K) − F(M∖K)| ≤ 0.1 with the true value exactly 0.1 (the upper edge)."""
    b = rng.normal(1.0, 1.0, n)
    return 0.1 * b + rng.normal(0, 0.5, n), b


# Edge budgets as a curve: the shares of the model's edges kept, and each budget's true F. The empty
# circuit's run is ∅'s and the full budget's the model's on every prompt, exactly, as in a real run.
SHARES = [0.0, 0.1, 0.3, 1.0]
CURVE = [0.0, 0.5, 0.9, 1.0]
WEIGHTS = trapezoid(SHARES)
CMD = sum(w * abs(1 - f) for w, f in zip(WEIGHTS, CURVE))  # 0.05 + 0.075 + 0.045 + 0 = the true CMD
CPR = sum(w * f for w, f in zip(WEIGHTS, CURVE))


def budgets(rng, n):
    """The named runs' per-prompt values: m(∅), m(M) = m(∅) + b, and each budget's m(∅) + F_i b, plus
    noise of its own at the two middle budgets."""
    empty, b = rng.normal(0.0, 1.0, n), rng.normal(1.0, 1.0, n)
    named = {"empty": empty, "full": empty + b}
    for share, f in zip(SHARES, CURVE):
        named[f"budget:{round(share * 100)}:100"] = empty + f * b + (rng.normal(0, 0.5, n) if 0 < f < 1 else 0.0)
    return named, None


def area(form):
    """CPR or CMD from the named runs as a claim's case is judged (judge.circuit.bound)."""
    return lambda named, _b, _ranges: bound(form, named, 0, {})


SCENARIOS = [
    *(Scenario(f"normal, F at_least 0.8, true 0.8", n, lv, normal) for n in NS for lv in (ALPHA, HOLM)),
    *(Scenario(f"lognormal b, t3 noise, F at_least 0.8, true 0.8", n, lv, skewed) for n in NS
      for lv in (ALPHA, HOLM)),
    Scenario("weak denominator (E[b] = 0.12 sd), F at_least 0.8, true 0.8", 100, 0.05, weak),
    *(Scenario("probabilities (betting), F at_least 0.8, true 0.8", n, 0.05, bounded, ranges=((-1, 1), (-1, 1)))
      for n in NS),
    *(Scenario("completeness at_most 0.1, true 0.1", n, lv, completeness, region=(-0.1, 0.1))
      for n in NS for lv in (ALPHA, HOLM)),
    *(Scenario(f"CMD at_most {CMD:.2f}, true {CMD:.2f} (4 budgets)", n, lv, budgets, region=(-math.inf, CMD),
               judged=area("cmd")) for n in NS for lv in (ALPHA, HOLM)),
    *(Scenario(f"CPR at_least {CPR:.3f}, true {CPR:.3f} (4 budgets)", n, lv, budgets, region=(CPR, math.inf),
               judged=area("cpr")) for n in NS for lv in (ALPHA, HOLM)),
]
# A fast subset for CI (tests/test_circuit_claims.py): normal at n = 100, α and n = 400, α/m;
# probabilities at n = 100; CPR at n = 100, α.
ASSERTED = [s for s in SCENARIOS if (s.name.split(",")[0], s.n, s.level) in
            {("normal", 100, ALPHA), ("normal", 400, HOLM), ("probabilities (betting)", 100, ALPHA)}
            or s.name.startswith("CPR") and (s.n, s.level) == (100, ALPHA)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--only", default="", help="the scenarios whose name starts with this (CMD, CPR, ...)")
    parser.add_argument("--ns", type=lambda t: {int(x) for x in t.split(",")}, default=None,
                        help="only the rows at these n, e.g. 30")
    args = parser.parse_args()
    print(f"| scenario | n | level | pass rate ({args.draws} draws) | limit | refused |")
    print("|---|---|---|---|---|---|")
    for s in (s for s in SCENARIOS if s.name.startswith(args.only) and (args.ns is None or s.n in args.ns)):
        rate, refused = s.rates(args.draws)
        print(f"| {s.name} | {s.n} | {s.level:.4g} | {rate:.4f} | {s.limit(args.draws):.4f} | {refused:.0%} |",
              flush=True)


if __name__ == "__main__":
    main()
