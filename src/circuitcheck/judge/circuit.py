"""The judged quantity of each case of a claim about a circuit, from the per-prompt values of its
named runs (files/circuit_cases.py names them):

    faithfulness   F = (m(C) − m(∅)) / (m(M) − m(∅))
    completeness   (m(C∖K) − m(M∖K)) / (m(M) − m(∅)) = F(C∖K) − F(M∖K), held to [−x, x]
    minimality     for node v, the largest over K of (m(C∖K) − m(C∖(K∪v))) / (m(C∖K) − m(∅)), the
                   relative drop of F(C∖K) when v joins K, held to [x, ∞)
    beats_random   the share of the random circuits R_j with E[m(C) − m(R_j)] > 0
    cpr            MIB's area under the faithfulness curve: Σ_i w_i F(C_i) over the edge budgets C_i,
                   with trapezoid weights w_i on x_i = the share of the model's edges C_i keeps; every
                   F(C_i) has the denominator m(M) − m(∅), so CPR = E[Σ_i w_i a_i] / E[b], one ratio
    cmd            MIB's area between the curve and 1: Σ_i w_i |1 − F(C_i)|, bounded over the budgets'
                   intervals taken together (Bonferroni)

each a ratio of paired means over prompts or a count of paired comparisons (ratio.py)."""
from __future__ import annotations

from .ratio import Area, Beaten, BestOf, Ratio
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
    if form in ("cpr", "cmd"):
        return _area(form, named, seed, spread, binary)
    draws = sorted((n for n in named if n.startswith("random:")), key=lambda n: int(n.split(":")[1]))
    diffs = [bound_for(named["circuit"] - named[d], seed, value_range=spread, paired_binary=binary) for d in draws]
    return Beaten(diffs, "m(C) − m(random circuit) > 0")


def budgets(named: dict) -> list[tuple[float, str]]:
    """(x, run name) of each budget run `budget:K:TOTAL`, x = K / TOTAL, in order of x."""
    return sorted((int(n.split(":")[1]) / int(n.split(":")[2]), n) for n in named if n.startswith("budget:"))


def trapezoid(xs: list[float]) -> list[float]:
    """Weights w_i with Σ w_i y_i the trapezoid rule's area under the points (x_i, y_i)."""
    gaps = [b - a for a, b in zip(xs, xs[1:])]
    return [((gaps[i - 1] if i > 0 else 0.0) + (gaps[i] if i < len(gaps) else 0.0)) / 2 for i in range(len(xs))]


def _area(form: str, named: dict, seed: int, spread, binary: bool):
    xs, runs = zip(*budgets(named))
    w = trapezoid(list(xs))
    den = named["full"] - named["empty"]
    if form == "cpr":
        a = sum(wi * (named[r] - named["empty"]) for wi, r in zip(w, runs))
        scaled = None if spread is None else (spread[0] * sum(w), spread[1] * sum(w))
        return Ratio(a, den, seed, (scaled, spread), binary, "CPR", "m(M) − m(∅)")
    parts = [Ratio(named[r] - named["empty"], den, seed, (spread, spread), binary, f"F at {r.split(':')[1]} edges",
                   "m(M) − m(∅)") for r in runs]
    return Area(parts, w, "CMD: Σ w·|1 − F| over the budgets")


def region(form: str, claimed: tuple[float, float]) -> tuple[float, float]:
    """The region the quantity is held to: completeness's `at_most: x` is |·| ≤ x."""
    if form == "completeness":
        return (-claimed[1], claimed[1])
    return claimed
