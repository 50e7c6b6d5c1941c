"""The shipped claims in hypotheses/ pass on the shipped zoo, and every one of them has a false twin
in tests/twins/ (same id: wrong head, wrong direction, or a threshold beyond what the model does)
that FAILS. A claim whose twin also passes is a defect in the claim or in the statistics."""
from __future__ import annotations

from pathlib import Path

import pytest

from circuitcheck import load
from circuitcheck.files.conftests import load_beside
from circuitcheck.session import Session

ROOT = Path(__file__).resolve().parents[1]
HYPOTHESES = sorted((ROOT / "hypotheses").glob("*.hyp.yaml"))
TWINS = sorted((Path(__file__).parent / "twins").glob("*.hyp.yaml"))
load_beside(HYPOTHESES[0])  # hypotheses/conftest.py registers the `python:` measures both folders name


@pytest.fixture(scope="module")
def session():
    return Session()


def results(session, path):
    loaded = load(path)
    session.add(loaded)
    return {lc.claim.id: session.result(loaded.path, lc.claim.id) for lc in loaded.claims}


def ids(paths) -> set[tuple[str, str]]:
    return {(p.name, lc.claim.id) for p in paths for lc in load(p).claims}


def test_there_are_shipped_claims_and_twins():
    assert len(HYPOTHESES) >= 2 and len(TWINS) >= 2


def test_every_shipped_claim_has_a_false_twin():
    missing = ids(HYPOTHESES) - ids(TWINS)
    assert not missing, f"claims without a false twin in tests/twins/: {sorted(missing)}"


@pytest.mark.parametrize("path", HYPOTHESES, ids=lambda p: p.name)
def test_shipped_claims_pass(session, path):
    bad = {cid: r.verdict for cid, r in results(session, path).items() if r.verdict not in ("pass", "recorded")}
    assert not bad, f"{path.name}: claims that did not pass: {bad}"


@pytest.mark.parametrize("path", TWINS, ids=lambda p: p.name)
def test_false_twins_fail(session, path):
    bad = {cid: (r.verdict, r.main.estimate.statistic if r.main else r.error)
           for cid, r in results(session, path).items() if r.verdict != "fail"}
    assert not bad, f"{path.name}: false twins that did not fail: {bad}"


# ---------------------------------------------------------------- near twins
def _region_past(region: dict, low: float, high: float) -> dict | None:
    """The same kind of region moved just past the interval [low, high] (by a tenth of its width),
    so that the claim is false by a little: at_least above the interval, at_most below it, a
    two-sided region wholly above it."""
    gap = 0.1 * (high - low) or 1e-3
    if set(region) == {"at_least"}:
        return {"at_least": high + gap}
    if set(region) == {"at_most"}:
        return {"at_most": low - gap}
    if set(region) == {"about", "tol"}:
        return {"about": high + gap + region["tol"], "tol": region["tol"]}
    if set(region) == {"between"}:
        lo, hi = region["between"]
        return {"between": [high + gap, high + gap + (hi - lo)]}
    return None


def near_twin(claim: dict, result) -> dict | None:
    """A false twin of a passing claim with its threshold just past the measured interval (of the
    deciding case), or None where the form has no threshold to move (order, none)."""
    import copy
    import math

    if result.verdict == "recorded":  # `expect: record`: no threshold to move
        return None
    c, est = copy.deepcopy(claim), result.main.estimate
    if not (math.isfinite(est.low) and math.isfinite(est.high)) or result.quantifier == "none":
        return None
    expect = c["expect"]
    (key, value), = [(k, v) for k, v in expect.items()] if len(expect) == 1 else [(None, expect)]
    if key == "crosses":
        moved = _region_past(value["at"], est.low, est.high)
        value["at"] = moved
    elif isinstance(value, dict) and key is not None:
        moved = expect[key] = _region_past(value, est.low, est.high)
    else:
        moved = _region_past(expect, est.low, est.high)
        c["expect"] = moved
    if moved is None:
        return None
    if result.quantifier == "any":  # every case must fail: move past the best case's interval
        best = max(result.cases, key=lambda x: x.estimate.high)
        worst = min(result.cases, key=lambda x: x.estimate.low)
        c["expect"] = near_twin({**claim, "for": None}, type(result)(**{**result.__dict__, "quantifier": None,
                                "cases": [best if "at_least" in str(claim["expect"]) else worst]}))["expect"]
    return c


@pytest.mark.parametrize("path", HYPOTHESES, ids=lambda p: p.name)
def test_near_twins_fail(session, path):
    """Most shipped claims have a near twin, the threshold moved a tenth of the interval's width past
    the interval the report printed, judged at the claim's own level, which must FAIL: the verdict
    agrees with the reported interval for every region form, relative form, crossing and quantifier."""
    from circuitcheck.files import loader as H

    shipped = results(session, path)
    tree = H.plain_tree(path)
    twins = []
    for raw in tree["claims"]:
        twin = near_twin(raw, shipped[raw["id"]])
        if twin is not None:
            twins.append(twin)
    assert len(twins) >= len(tree["claims"]) // 2, "most shipped claims should get a near twin"
    loaded = H.load_tree(path.with_name(path.name + "#near"), {**tree, "claims": twins})
    session.add(loaded)
    bad = {lc.claim.id: session.judge_at(loaded, lc, shipped[lc.claim.id].level).verdict for lc in loaded.claims}
    bad = {k: v for k, v in bad.items() if v != "fail"}
    assert not bad, f"{path.name}: near twins that did not fail: {bad}"


@pytest.mark.parametrize("path", HYPOTHESES, ids=lambda p: p.name)
def test_shipped_claims_single_out_what_they_name(session, path):
    """`circuitcheck specificity hypotheses/*.hyp.yaml` flags no shipped claim: each fails when a head
    it names is swapped for another of its layer, or when its direction is flipped."""
    from circuitcheck.judge import specificity as SP

    loaded = load(path)
    session.add(loaded)
    flagged = [line for rep in SP.check(session, loaded) if rep.survivors for line in rep.lines()]
    assert not flagged, "\n".join(flagged)
