"""Calibration: how often a claim that is just false passes, through the real judging path.

Each scenario draws per-prompt values whose true mean sits exactly on a claim's threshold (or just
past it, on the false side), builds the bound `session` would build for that measure, and judges
the claim the way `session` does (`claim_p` at the file's α; a case passes exactly when its bounds
at that level clear the region). The pass rate must stay at or under α plus Monte Carlo error.

    python tests/calibration.py --draws 2000      # prints the table in docs/calibration.md
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from circuitcheck.judge import stats as S
from circuitcheck.judge.claims import Row, case_level, claim_p

ALPHA = 0.05
# The levels claims are really judged at in the shipped files (tests/test_calibration.py checks them
# against hypotheses/): the most judged claims in one file (induction.hyp.yaml: 30), so Holm's smallest
# level is α/30; the most cases of an `any` claim (induction.hyp.yaml's
# some-pair-of-layer-1-heads-is-critical: 6 pairs), each then judged at α/(30·6); the most points of a
# sweep judged by a crossing (max_of_list.hyp.yaml: 11).
SHIPPED_M = 30
SHIPPED_ANY = 6
SWEEP_POINTS = 11


@dataclass
class Scenario:
    name: str
    method: str
    n: int
    draw: Callable[[np.random.Generator, int], object]  # -> the values (or a matrix for sweeps)
    row: Callable[[object], Row]  # the row session builds for those values
    level: float = ALPHA  # the level the claim is judged at (α, or α/m after Holm)
    cases: int = 1  # with more, an `any` claim over that many cases, each just false
    quantifier: str = "any"  # of several cases; `none`: every case sits on its region's edge, inside it

    def pass_rate(self, draws: int, seed: int = 0) -> float:
        return self.rates(draws, seed)[0]

    def rates(self, draws: int, seed: int = 0) -> tuple[float, float]:
        """(how often the claim passes, how often its bounds were refused: infinite at its level)."""
        rng = np.random.default_rng(seed)
        passed = refused = 0
        claim = _Claim(self.quantifier if self.cases > 1 or self.quantifier == "none" else None)
        for i in range(draws):
            rows = [self.row(self.draw(rng, self.n)) for _ in range(self.cases)]
            passed += claim_p(claim, rows) <= self.level and not any(r.undefined for r in rows)
            refused += any(_refused(r, case_level(claim, rows, self.level), self.quantifier == "none") for r in rows)
        return passed / draws, refused / draws

    @property
    def where(self) -> str:
        """How the claim is judged: its level, and its quantifier."""
        many = self.cases > 1 or self.quantifier == "none"
        return f"a={self.level:.3g}" + (f", {self.quantifier} of {self.cases}" if many else "")


def _refused(row: Row, a: float, outside: bool = False) -> bool:
    """No bound on a side the claim needs: the method refused (too few prompts, too skewed). A case
    passes with its lower bound at or above lo; under `none` (`outside`) it must fail, with its upper
    bound below lo (or its lower bound above hi)."""
    lo, hi = row.region
    est = row.bound.at(a)
    lo_side, hi_side = (est.high == math.inf, est.low == -math.inf) if outside else \
        (est.low == -math.inf, est.high == math.inf)
    return bool(math.isfinite(lo) and lo_side or math.isfinite(hi) and hi_side)


class _Claim:
    def __init__(self, kind=None):  # a plain claim, or a quantifier `any`/`all`/`none`
        self.for_ = None if kind is None else type("Q", (), {"kind": kind})()


def _row(kind: dict, region, paired=False):
    def make(x):
        if paired:
            return Row("", S.bound_for(x, 0, value_range=kind.get("value_range"), paired_binary=kind.get("binary", False)),
                       region)
        return Row("", S.bound_for(x, 0, **kind), region)

    return make


def _bernoulli(p):
    return lambda rng, n: (rng.random(n) < p).astype(float)


def _trinomial(up, down):
    def draw(rng, n):
        u = rng.random(n)
        return np.where(u < up, 1.0, np.where(u < up + down, -1.0, 0.0))

    return draw


def _beta(a, b, shift=0.0):
    """Beta(a, b) values; the true mean is a / (a + b) + shift (shift keeps the values in [0, 1])."""
    return lambda rng, n: rng.beta(a, b, n) + shift


def _rare(p, big):
    """Mostly 0, a share p at `big`: the rare-event case a bootstrap misses (mean p * big)."""
    return lambda rng, n: np.where(rng.random(n) < p, big, 0.0)


def _lognormal(sigma):
    """Skewed, unbounded; true mean exp(sigma²/2)."""
    return lambda rng, n: rng.lognormal(0.0, sigma, n)


def _gamma(k):
    """Mildly skewed, unbounded; true mean k."""
    return lambda rng, n: rng.gamma(k, 1.0, n)


def _sweep(xs, crossing_at, n_points_true):
    """A 0/1 outcome whose success rate rises linearly in x; returns a [K, n] matrix."""
    xs = np.asarray(xs, float)

    def draw(rng, n):
        p = np.clip(0.5 + (xs - crossing_at) * n_points_true, 0, 1)
        return (rng.random((xs.size, n)) < p[:, None]).astype(float)

    return draw


def _crossing_row(xs, level, region, mode):
    xs = np.asarray(xs, float)

    def make(m):
        points = [S.bound_for(r, 0, binary=True) for r in m]
        return Row("", S.Crossing(xs, points, level, True, mode, "crossing"), region)

    return make


def _slope_row(xs, region):
    w = S.slope_weights(xs)

    def make(m):
        return Row("", S.bound_for(w @ m, 0, value_range=S.slope_range(xs, (0, 1))), region)

    return make


def _contrast_row(region):
    def make(pair):
        a, b = pair
        return Row("", S.Difference(S.bound_for(a, 0, value_range=(0, 1)), S.bound_for(b, 0, value_range=(0, 1))),
                   region)

    return make


DOC_NS = (10, 30, 100, 400)  # the sizes docs/calibration.md covers, for every method and sweeps alike


def scenarios(levels=(ALPHA,), ns=(10, 100, 400), sweep_ns=(50, 400)) -> list[Scenario]:
    """Every method at `ns` (sweeps at `sweep_ns`), judged at each of `levels`. The defaults are the
    test's; the printed tables use DOC_NS for both."""
    return [replace(sc, level=level) for level in levels for sc in _scenarios(ns, sweep_ns)]


def _scenarios(ns, sweep_ns) -> list[Scenario]:
    inf = math.inf
    out = []
    for n in ns:
        out += [
            Scenario("accuracy at_least 0.9, true 0.9", "Clopper-Pearson", n, _bernoulli(0.9),
                     _row({"binary": True}, (0.9, inf))),
            Scenario("accuracy at_most 0.1, true 0.1", "Clopper-Pearson", n, _bernoulli(0.1),
                     _row({"binary": True}, (-inf, 0.1))),
            Scenario("accuracy between [0.4, 0.9], true 0.4", "Clopper-Pearson", n, _bernoulli(0.4),
                     _row({"binary": True}, (0.4, 0.9))),
            Scenario("accuracy change about 0 ± 0.01, true 0.01", "exact paired counts", n, _trinomial(0.01, 0.0),
                     _row({"binary": True}, (-0.01, 0.01), paired=True)),
            Scenario("accuracy change about 0 ± 0.01, true 0.012", "exact paired counts", n,
                     _trinomial(0.012, 0.0), _row({"binary": True}, (-0.01, 0.01), paired=True)),
            Scenario("accuracy drop at_least 0.3, true 0.3", "exact paired counts", n, _trinomial(0.35, 0.05),
                     _row({"binary": True}, (0.3, inf), paired=True)),
            Scenario("attention at_least 0.8, true 0.8 (Beta(8, 2))", "betting", n, _beta(8, 2),
                     _row({"value_range": (0, 1)}, (0.8, inf))),
            Scenario("attention at_most 0.0909, true 0.0909 (Beta(0.5, 5), skewed)", "betting", n, _beta(0.5, 5),
                     _row({"value_range": (0, 1)}, (-inf, 0.5 / 5.5))),
            Scenario("prob about 0.5 ± 0.05, true 0.55 (Beta(11, 9))", "betting", n, _beta(11, 9),
                     _row({"value_range": (0, 1)}, (0.45, 0.55))),
            Scenario("rank at_most 1.05, true 1.05 (0.1% at rank 51)", "betting", n, _rare(0.001, 50.0),
                     lambda x: Row("", S.bound_for(x + 1, 0, value_range=(1, 1000)), (-inf, 1.05))),
            Scenario("prob change at_most 0.001, true 0.001 (rare)", "betting", n, _rare(0.001, 1.0),
                     _row({"value_range": (-1, 1)}, (-inf, 0.001), paired=True)),
            Scenario("attention contrast at_least 0.2, true 0.2", "betting, two groups", n,
                     lambda rng, n: (rng.beta(6, 4, n), rng.beta(4, 6, n)), _contrast_row((0.2, inf))),
            Scenario("logit_diff at_least 4, true 4 (Gamma(4, 1), skewness 1)", "skew-corrected t", n,
                     _gamma(4.0), _row({}, (4.0, inf))),
            Scenario("logit_diff at_most 4, true 4 (Gamma(4, 1), skewness 1)", "skew-corrected t", n,
                     _gamma(4.0), _row({}, (-inf, 4.0))),
            Scenario("loss about 0 ± 0.1, true 0.1 (normal)", "skew-corrected t", n,
                     lambda rng, n: rng.normal(0.1, 1.0, n), _row({}, (-0.1, 0.1))),
        ]
    xs = np.linspace(0, 1, SWEEP_POINTS)
    for n in sweep_ns:
        out += [
            Scenario("crossing 0.5 between [0.4, 1], true 0.4 (bracket)", "per-point Clopper-Pearson", n,
                     _sweep(xs, 0.4, 2.0), _crossing_row(xs, 0.5, (0.4, 1.0), "bracket")),
            Scenario("crossing 0.5 between [0.45, 1], true 0.45 (linear)", "per-point Clopper-Pearson", n,
                     _sweep(xs, 0.45, 2.0), _crossing_row(xs, 0.5, (0.45, 1.0), "linear")),
            Scenario("slope at_least 2, true 2", "betting", n, _sweep(xs, 0.5, 2.0), _slope_row(xs, (2.0, inf))),
        ]
    return out


# Values with no known range, each with its true mean: the four shapes of issue 22.
UNBOUNDED = {
    "normal": (lambda rng, n: rng.normal(0.0, 1.0, n), 0.0),
    "t3": (lambda rng, n: rng.standard_t(3, n), 0.0),
    "lognormal σ=1": (lambda rng, n: rng.lognormal(0.0, 1.0, n), math.exp(0.5)),
    "Pareto 2.5": (lambda rng, n: rng.pareto(2.5, n) + 1.0, 2.5 / 1.5),
}


def shipped_family(folder=None) -> tuple[int, int, int]:
    """(judged claims of the largest file, cases of the largest `any` claim, points of the largest
    sweep) over the shipped hypothesis files, loaded as the plugin loads them."""
    from pathlib import Path

    from circuitcheck.files import loader as H
    from circuitcheck.files.conftests import load_beside

    folder = Path(folder) if folder else Path(__file__).resolve().parent.parent / "hypotheses"
    m = cases = points = 0
    for path in sorted(folder.glob("*.hyp.yaml")):
        load_beside(path)  # the `python:` measures the files name
        judged = [lc for lc in H.load(path).claims if lc.claim.expect.record is None]
        m = max(m, len(judged))
        cases = max([cases] + [len(lc.cases) for lc in judged if lc.claim.for_ and lc.claim.for_.kind == "any"])
        points = max([points] + [len(lc.cases) for lc in judged if lc.claim.sweep])
    return m, cases, points


def unbounded(ns=(10, 30, 100, 400)) -> list[Scenario]:
    """Every expectation form on unbounded values, at α, at α/m after Holm, and as `any` of
    SHIPPED_ANY cases at α/m: at_least and at_most sit on the true mean, about/between on a region edge."""
    inf, out = math.inf, []
    for n in ns:
        for shape, (draw, mu) in UNBOUNDED.items():
            for level, cases in ((ALPHA, 1), (ALPHA / SHIPPED_M, 1), (ALPHA / SHIPPED_M, SHIPPED_ANY)):
                for form, region in ((f"at_least {mu:.4g}", (mu, inf)), (f"at_most {mu:.4g}", (-inf, mu)),
                                     (f"about {mu - 0.5:.4g} ± 0.5", (mu - 1.0, mu)),
                                     (f"between [{mu:.4g}, {mu + 1:.4g}]", (mu, mu + 1.0))):
                    out.append(Scenario(f"{form}, {shape}, true mean {mu:.4g}", "skew-corrected t", n,
                                        draw, _row({}, region), level, cases))
    return out


def _correlated(r: float, shape: str):
    """(y, x) pairs with Pearson correlation exactly r: x of one of the UNBOUNDED shapes (lognormal
    skewness 6.2; t3 symmetric with an infinite fourth moment; Pareto 2.5 both), y = b x + normal noise."""
    b = r / (SD[shape] * math.sqrt(1 - r * r))
    draw_x = UNBOUNDED[shape][0]

    def draw(rng, n):
        x = draw_x(rng, n)
        return b * x + rng.normal(0.0, 1.0, n), x

    return draw


def _correlation_row(region):
    from circuitcheck.judge.correlation import Correlation

    return lambda pair: Row("", Correlation(pair[0], pair[1], 0, "x"), region)


R2_XS = np.linspace(0.0, 1.0, 5)


def _curve_with_r2(target: float) -> np.ndarray:
    """A mean curve x + c (x - 1/2)² over R2_XS whose straight-line R² is `target` (c by bisection)."""
    lo, hi = 0.0, 100.0
    for _ in range(200):
        c = (lo + hi) / 2
        r2 = float(S._r2(R2_XS, (R2_XS + c * (R2_XS - 0.5) ** 2)[None])[0])
        lo, hi = (c, hi) if r2 > target else (lo, c)
    return R2_XS + c * (R2_XS - 0.5) ** 2


def _noisy_curve(curve: np.ndarray, sd: float):
    return lambda rng, n: curve[:, None] + rng.normal(0.0, sd, (curve.size, n))


def fitted(ns=(10, 30, 100, 400)) -> list[Scenario]:
    """`correlates` (r = 0.5; x of each shape of UNBOUNDED) and `r2` (R² = 0.9 of the mean curve, per-prompt
    noise sd 0.5) with the truth on the threshold, at α and at α/m."""
    inf, out, curve = math.inf, [], _curve_with_r2(0.9)
    for n in ns:
        for level in (ALPHA, ALPHA / SHIPPED_M):
            for shape in UNBOUNDED:
                out += [Scenario(f"correlates at_least 0.5, true r 0.5 (x {shape})", "jackknife Fisher z", n,
                                 _correlated(0.5, shape), _correlation_row((0.5, inf)), level),
                        Scenario(f"correlates at_most 0.5, true r 0.5 (x {shape})", "jackknife Fisher z", n,
                                 _correlated(0.5, shape), _correlation_row((-inf, 0.5)), level)]
            out += [Scenario("r2 at_least 0.9, true R² 0.9", "Hotelling projection", n, _noisy_curve(curve, 0.5),
                             lambda m: Row("", S.R2(R2_XS, m), (0.9, inf)), level),
                    Scenario("r2 at_most 0.9, true R² 0.9", "Hotelling projection", n, _noisy_curve(curve, 0.5),
                             lambda m: Row("", S.R2(R2_XS, m), (-inf, 0.9)), level)]
    return out


def large_n(ns=(30_000,)) -> list[Scenario]:
    """Lognormal and Pareto means at α/m at n where the skew-corrected t may answer (it refuses them
    at α/m at every n up to 400)."""
    return [sc for sc in unbounded(ns) if sc.level == ALPHA / SHIPPED_M and sc.cases == 1
            and sc.name.startswith(("at_least", "at_most")) and ("lognormal" in sc.name or "Pareto" in sc.name)]


SD = {"normal": 1.0, "t3": math.sqrt(3.0), "lognormal σ=1": math.sqrt((math.e - 1) * math.e),
      "Pareto 2.5": math.sqrt(2.5 / (1.5 ** 2 * 0.5))}  # each shape's standard deviation


def _unit(shape: str):
    """Noise of one of the four shapes, centred and scaled to sd 1 (any array shape)."""
    draw, mu = UNBOUNDED[shape]
    return lambda rng, size: (draw(rng, size) - mu) / SD[shape]


def r2_noise(ns=DOC_NS) -> list[Scenario]:
    """`r2` as in `fitted`, with per-prompt noise of sd 0.5 of the other three shapes (Hotelling's
    ellipsoid is exact for normal noise only), at α and at α/m."""
    inf, out, curve = math.inf, [], _curve_with_r2(0.9)
    for n in ns:
        for level in (ALPHA, ALPHA / SHIPPED_M):
            for shape in ("t3", "lognormal σ=1", "Pareto 2.5"):
                noise = _unit(shape)
                draw = lambda rng, n, noise=noise: curve[:, None] + 0.5 * noise(rng, (curve.size, n))  # noqa: E731
                out += [Scenario(f"r2 at_least 0.9, true R² 0.9 ({shape} noise)", "Hotelling projection", n, draw,
                                 lambda m: Row("", S.R2(R2_XS, m), (0.9, inf)), level),
                        Scenario(f"r2 at_most 0.9, true R² 0.9 ({shape} noise)", "Hotelling projection", n, draw,
                                 lambda m: Row("", S.R2(R2_XS, m), (-inf, 0.9)), level)]
    return out


def _none(ns) -> list[Scenario]:
    """`none`: one case (as shipped; more cases only make it harder to pass: its p is their largest)
    whose true value sits on its region's edge, inside it, so the case must not fail. Unbounded values
    of the four shapes, 0/1 outcomes and a betting bound; a two-sided region splits the level in two."""
    inf, out = math.inf, []
    for n in ns:
        for level in (ALPHA, ALPHA / SHIPPED_M):
            for shape, (draw, mu) in UNBOUNDED.items():
                for form, region in ((f"at_least {mu:.4g}", (mu, inf)), (f"at_most {mu:.4g}", (-inf, mu)),
                                     (f"between [{mu:.4g}, {mu + 1:.4g}]", (mu, mu + 1.0))):
                    out.append(Scenario(f"none: {form}, {shape}, true mean {mu:.4g}", "skew-corrected t", n, draw,
                                        _row({}, region), level, quantifier="none"))
            out += [Scenario("none: accuracy at_least 0.9, true 0.9", "Clopper-Pearson", n, _bernoulli(0.9),
                             _row({"binary": True}, (0.9, inf)), level, quantifier="none"),
                    Scenario("none: attention between [0.8, 0.9], true 0.8 (Beta(8, 2))", "betting", n, _beta(8, 2),
                             _row({"value_range": (0, 1)}, (0.8, 0.9)), level, quantifier="none")]
    return out


def _two_groups(shape: str, d: float):
    """A contrast's two groups, n/2 prompts each (as a `where:` that splits the prompts in half):
    the shape's values plus d, and the shape's values: the true difference is d."""
    draw, _ = UNBOUNDED[shape]
    return lambda rng, n: (draw(rng, n // 2) + d, draw(rng, n - n // 2))


def _contrast(ns) -> list[Scenario]:
    """`contrast` of a measure with no known range: each group's skew-corrected t at half the level."""
    inf, out = math.inf, []
    for n in ns:
        for shape in UNBOUNDED:
            for level, cases in ((ALPHA, 1), (ALPHA / SHIPPED_M, 1), (ALPHA / SHIPPED_M, SHIPPED_ANY)):
                for form, region in (("at_least 1", (1.0, inf)), ("at_most 1", (-inf, 1.0))):
                    out.append(Scenario(f"contrast {form}, {shape} groups, true difference 1", "t, two groups", n,
                                        _two_groups(shape, 1.0), lambda p, r=region: Row(
                                            "", S.Difference(S.bound_for(p[0], 0), S.bound_for(p[1], 0)), r),
                                        level, cases))
    return out


SHARE = 0.3  # the true share of the total a component carries


def _share(noise: str, total: str):
    """A component's part and the total along the direction, per prompt: totals positive (gamma(4, 1),
    or lognormal σ = 1), part = SHARE · total + noise of one of the four shapes (sd 1), so that
    E[part] / E[total] = SHARE exactly; the values are `measures.dla.shares`, as the measure gives them."""
    from circuitcheck.measures.dla import shares

    eps = _unit(noise)

    def draw(rng, n):
        t = rng.gamma(4.0, 1.0, n) if total == "gamma" else rng.lognormal(0.0, 1.0, n)
        return shares(SHARE * t + eps(rng, n), t)

    return draw


def _shares(ns) -> list[Scenario]:
    """dla `share`: a ratio of means, judged as the mean of its linearised per-prompt contributions."""
    inf, out = math.inf, []
    pairs = [(noise, "gamma") for noise in UNBOUNDED] + [("normal", "lognormal")]
    for n in ns:
        for level in (ALPHA, ALPHA / SHIPPED_M):
            for noise, total in pairs:
                for form, region in ((f"at_least {SHARE}", (SHARE, inf)), (f"at_most {SHARE}", (-inf, SHARE))):
                    out.append(Scenario(f"dla share {form}, true {SHARE} ({total} totals, {noise} noise)",
                                        "skew-corrected t (linearised ratio)", n, _share(noise, total),
                                        _row({}, region), level))
    return out


def _paired(shape: str, d: float):
    """(clean, intervened) per prompt with a change of the shape's values (centred) plus d."""
    noise = _unit(shape)
    return lambda rng, n: (lambda clean: (clean, clean + d + noise(rng, n)))(rng.normal(-2.0, 1.0, n))


def _outcome_pairs(up: float, down: float):
    """(clean, intervened) 0/1 outcomes: a share `up` goes 0 → 1, `down` goes 1 → 0, the rest stay 1."""
    def draw(rng, n):
        u = rng.random(n)
        return (u >= up).astype(float), ((u < up) | (u >= up + down)).astype(float)

    return draw


def _rise_row(kind: dict, region):
    """The row of `rise`: intervened − clean per prompt (runs/values.py), bounded as a paired change
    (as judge/claims.py does: a measure in [r0, r1] changes within [-(r1 - r0), r1 - r0])."""
    r = kind.get("value_range")
    kind = {"value_range": r and (r[0] - r[1], r[1] - r[0]), "paired_binary": kind.get("binary", False)}
    return lambda pair: Row("", S.bound_for(pair[1] - pair[0], 0, **kind), region)


def _rise(ns) -> list[Scenario]:
    """`rise` (intervened − clean): 0/1 outcomes (exact paired counts), a probability (betting over
    [-1, 1]), and a measure with no known range whose change has each of the four shapes."""
    inf, out = math.inf, []
    for n in ns:
        for level in (ALPHA, ALPHA / SHIPPED_M):
            out += [Scenario("accuracy rise at_least 0.3, true 0.3 (35% up, 5% down)", "exact paired counts", n,
                             _outcome_pairs(0.35, 0.05), _rise_row({"binary": True}, (0.3, inf)), level),
                    Scenario("prob rise at_least 0.3, true 0.3 (Beta(2, 8) to Beta(5, 5))", "betting", n,
                             lambda rng, n: (rng.beta(2, 8, n), rng.beta(5, 5, n)),
                             _rise_row({"value_range": (0, 1)}, (0.3, inf)), level)]
            for shape in UNBOUNDED:
                out.append(Scenario(f"logprob rise at_least 1, true 1 ({shape} change)", "skew-corrected t", n,
                                    _paired(shape, 1.0), _rise_row({}, (1.0, inf)), level))
    return out


def _sweep_unbounded(shape: str, crossing_at: float):
    """11 sweep points whose mean rises linearly (0.5 at `crossing_at`, slope 2) with per-prompt noise
    of the shape (sd 1) at each point; and per prompt its own slope, 2 plus the shape's noise, so
    that the per-prompt slope keeps the shape's skew."""
    xs = np.linspace(0, 1, SWEEP_POINTS)
    noise = _unit(shape)

    def draw(rng, n):
        slope = 2.0 + noise(rng, n)
        return 0.5 + (xs[:, None] - crossing_at) * slope[None] + 0.2 * noise(rng, (xs.size, n))

    return draw


def _crossing_unbounded_row(xs, level, region, mode):
    return lambda m: Row("", S.Crossing(xs, [S.bound_for(r, 0) for r in m], level, True, mode, "crossing"), region)


def _sweeps(ns) -> list[Scenario]:
    """`crosses` (bracket and linear) and `slope` on a measure with no known range, the four shapes."""
    inf, out, xs = math.inf, [], np.linspace(0, 1, SWEEP_POINTS)
    for n in ns:
        for level in (ALPHA, ALPHA / SHIPPED_M):
            for shape in UNBOUNDED:
                out += [Scenario(f"crossing 0.5 between [0.4, 1], true 0.4 (bracket, {shape})",
                                 "per-point skew-corrected t", n, _sweep_unbounded(shape, 0.4),
                                 _crossing_unbounded_row(xs, 0.5, (0.4, 1.0), "bracket"), level),
                        Scenario(f"crossing 0.5 between [0.45, 1], true 0.45 (linear, {shape})",
                                 "per-point skew-corrected t", n, _sweep_unbounded(shape, 0.45),
                                 _crossing_unbounded_row(xs, 0.5, (0.45, 1.0), "linear"), level),
                        Scenario(f"slope at_least 2, true 2 ({shape})", "skew-corrected t", n,
                                 _sweep_unbounded(shape, 0.5),
                                 lambda m: Row("", S.bound_for(S.slope_weights(xs) @ m, 0), (2.0, inf)), level)]
    return out


def forms(ns=DOC_NS) -> list[Scenario]:
    """The forms and quantifiers the other groups leave out (issue 22): `none`, `contrast` and
    `rise` of unbounded measures, dla `share`, and `crosses`/`slope` on unbounded values."""
    return _none(ns) + _contrast(ns) + _shares(ns) + _rise(ns) + _sweeps(ns)


def mc_limit(draws: int, level: float = ALPHA) -> float:
    """The level plus three Monte Carlo standard errors at it."""
    return level + 3 * math.sqrt(level * (1 - level) / draws)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--only", choices=["all", "scenarios", "holm", "unbounded", "fitted", "forms", "r2", "large"],
                    default="all",
                    help="holm: the first group at α/m only (tests/test_calibration.py asserts it at α)")
    ap.add_argument("--ns", type=lambda t: {int(x) for x in t.split(",")}, default=None,
                    help="the rows at these n instead of 10, 30, 100 and 400, e.g. 100,30000")
    ap.add_argument("--starts", default="", help="only the rows whose scenario starts with this, e.g. r2")
    ap.add_argument("--any", action="store_true",
                    help=f"the rows at α/m again as `any` of {SHIPPED_ANY} cases, each just false")
    args = ap.parse_args()
    print("| scenario | method | n | judged at | draws | pass rate | limit | refused |\n|---|---|---|---|---|---|---|---|")
    ns = tuple(sorted(args.ns)) if args.ns else DOC_NS
    groups = {"scenarios": lambda: scenarios((ALPHA, ALPHA / SHIPPED_M), ns, ns),
              "holm": lambda: scenarios((ALPHA / SHIPPED_M,), ns, ns),
              "unbounded": lambda: unbounded(ns), "fitted": lambda: fitted(ns), "forms": lambda: forms(ns),
              "r2": lambda: r2_noise(ns), "large": lambda: large_n(tuple(sorted(args.ns or {30_000})))}
    chosen = [sc for name, make in groups.items() if args.only == name or args.only == "all" and name != "holm"
              for sc in make() if sc.name.startswith(args.starts)]
    if args.any:  # the quantifier's own level: each case at α/(m·cases) (case_level)
        chosen = [replace(sc, cases=SHIPPED_ANY) for sc in chosen if sc.level < ALPHA and sc.cases == 1]
    for sc in chosen:
        draws = args.draws if sc.level >= ALPHA else 2 * args.draws  # rarer events need more draws
        rate, refused = sc.rates(draws)
        print(f"| {sc.name} | {sc.method} | {sc.n} | {sc.where} | {draws} | {rate:.4f} | {mc_limit(draws, sc.level):.4f} "
              f"| {refused:.0%} |", flush=True)


if __name__ == "__main__":
    main()
