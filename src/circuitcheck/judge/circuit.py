"""The judged quantity of each case of a claim about a circuit, from the per-prompt values of its
named runs (files/circuit_cases.py names them):

    faithfulness   F = (m(C) − m(∅)) / (m(M) − m(∅))
    completeness   (m(C∖K) − m(M∖K)) / (m(M) − m(∅)) = F(C∖K) − F(M∖K), held to [−x, x]
    minimality     for node v, the largest over K of (m(C∖K) − m(C∖(K∪v))) / (m(C∖K) − m(∅)), the
                   relative drop of F(C∖K) when v joins K, held to [x, ∞)
    beats_random   the share of the random circuits R_j with E[m(C) − m(R_j)] > 0

each a ratio of paired means over prompts or a count of paired comparisons (ratio.py)."""
from __future__ import annotations

from .ratio import Beaten, BestOf, Ratio
from .stats import bound_for


def bound(form: str, named: dict, seed: int, kind: dict):
    """The bound of one case's quantity from its runs' values; `kind` says what the measure's values
    are (0/1 outcomes, or a range), which sets the range of each difference."""
    binary = bool(kind.get("binary"))
    r = (0.0, 1.0) if binary else kind.get("value_range")
    spread = None if r is None else (r[0] - r[1], r[1] - r[0])

    def ratio(a, b, what, denominator):
        return Ratio(a, b, seed, (spread, spread), binary, what, denominator)

    if form == "faithfulness":
        return ratio(named["circuit"] - named["empty"], named["full"] - named["empty"],
                     "faithfulness", "m(M) − m(∅)")
    if form == "completeness":
        k = next(n.split(":", 1)[1] for n in named if n.startswith("circuit-K:"))
        return ratio(named[f"circuit-K:{k}"] - named[f"model-K:{k}"], named["full"] - named["empty"],
                     f"F(C∖K) − F(M∖K), K={k}", "m(M) − m(∅)")
    if form == "minimality":
        ks = [n.split(":", 1)[1] for n in named if n.startswith("circuit-K:")]
        parts = [ratio(named[f"circuit-K:{k}"] - named[f"circuit-Kv:{k}"], named[f"circuit-K:{k}"] - named["empty"],
                       f"relative drop, K={k}", f"m(C∖K) − m(∅) (K={k})") for k in ks]
        return BestOf(parts, ks, "relative drop when the node joins K")
    draws = sorted((n for n in named if n.startswith("random:")), key=lambda n: int(n.split(":")[1]))
    diffs = [bound_for(named["circuit"] - named[d], seed, value_range=spread, paired_binary=binary) for d in draws]
    return Beaten(diffs, "m(C) − m(random circuit) > 0")


def region(form: str, claimed: tuple[float, float]) -> tuple[float, float]:
    """The region the quantity is held to: completeness's `at_most: x` is |·| ≤ x."""
    if form == "completeness":
        return (-claimed[1], claimed[1])
    return claimed
