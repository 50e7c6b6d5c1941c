"""Verdicts: does the interval lie inside the claimed region, outside it, or straddle it?"""
from __future__ import annotations

from dataclasses import dataclass, field

from .stats import Estimate, prompts_to_settle

PASS, FAIL, INCONCLUSIVE, ERROR = "pass", "fail", "inconclusive", "error"
RECORDED = "recorded"  # `expect: record`: measured and reported, not judged


def judge(est: Estimate, lo: float, hi: float) -> str:
    if lo <= est.low and est.high <= hi:
        return PASS
    if est.high < lo or est.low > hi:
        return FAIL
    return INCONCLUSIVE


@dataclass
class CaseResult:
    """One concrete check: the value, its interval, the region it was held to, the verdict."""

    label: str
    verdict: str
    estimate: Estimate
    bounds: tuple[float, float]
    clean: Estimate | None = None  # the clean run's value, when the claim is about a change
    alpha: float = 0.05
    curve: list | None = None  # (swept value, mean) points, for sweeps
    bound: object = None  # the stats.Bound behind the estimate, for sample-size advice
    values: object = None  # the per-prompt values behind it, their prompts' digest and kind (baselines)
    prompts: str = ""
    kind: dict | None = None

    @property
    def settle(self) -> int | None:
        """Prompts that would settle an inconclusive case with 80% power (None: no number would)."""
        if self.verdict != INCONCLUSIVE or self.bound is None:
            return None
        return prompts_to_settle(self.bound, *self.bounds, self.alpha)

    @property
    def margin(self) -> float:
        """How far the interval sits inside the region (negative: outside or straddling)."""
        lo, hi = self.bounds
        return min(self.estimate.low - lo, hi - self.estimate.high)


@dataclass
class Result:
    """A claim's outcome: its cases combined by the claim's quantifier (or the single case)."""

    claim_id: str
    says: str
    expected: str
    quantifier: str | None
    verdict: str
    cases: list[CaseResult]
    path: str
    line: int
    seed: int
    model: str
    load: dict = field(default_factory=dict)
    measure: str = ""
    error: str | None = None  # why the claim could not be measured
    under: str = ""  # the interventions, as a reader names them
    family: str = ""  # the multiple-testing family and the level this claim was judged at
    traceback: str = ""  # where an error came from: pytest shows it on request (-v, --tb=long)
    level: float = 0.05  # that level: the claim's error rate after Holm
    # regression checks (fingerprint.py, override.py, baseline.py)
    fingerprint: dict = field(default_factory=dict)  # weights sha256, library versions, dtype, device
    checkpoint: str = ""  # the checkpoint's name when `--cc-model REF=a,b,c` runs a series
    case_under: dict = field(default_factory=dict)  # case label -> its interventions, with values bound
    roles: dict = field(default_factory=dict)  # role name -> the head a scan bound it to
    drift: float | None = None  # the claim's `drift:` tolerance against its baseline
    baseline: object = None  # a baseline.Comparison when a baseline exists

    @property
    def main(self) -> CaseResult | None:
        """The case that decides the verdict: the worst for `all` (and a plain claim), the best for
        `any`, and for `none` the case nearest to passing (it alone could make the claim fail)."""
        return deciding(self.quantifier, self.cases)


RANK = {FAIL: 0, INCONCLUSIVE: 1, PASS: 2}


def deciding(quantifier: str | None, cases: list[CaseResult]) -> CaseResult | None:
    if not cases:
        return None
    key = lambda c: (RANK.get(c.verdict, 0), c.margin)  # noqa: E731
    return max(cases, key=key) if quantifier in ("any", "none") else min(cases, key=key)


def combine(quantifier: str | None, verdicts: list[str]) -> str:
    """all: every case passes; any: at least one passes; none: every case fails. No case at all is
    inconclusive under every quantifier: a claim that checked nothing has shown nothing."""
    if not verdicts:
        return INCONCLUSIVE
    if quantifier in (None, "all"):
        return FAIL if FAIL in verdicts else (PASS if all(v == PASS for v in verdicts) else INCONCLUSIVE)
    if quantifier == "any":
        return PASS if PASS in verdicts else (FAIL if all(v == FAIL for v in verdicts) else INCONCLUSIVE)
    return FAIL if PASS in verdicts else (PASS if all(v == FAIL for v in verdicts) else INCONCLUSIVE)
