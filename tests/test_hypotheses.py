"""The shipped claims in hypotheses/ pass on the shipped zoo, and every one of them has a false twin
in tests/twins/ (same id: wrong head, wrong direction, or a threshold beyond what the model does)
that FAILS. A claim whose twin also passes is a defect in the claim or in the statistics."""
from __future__ import annotations

from pathlib import Path

import pytest

from circuitcheck import load
from circuitcheck.session import Session

ROOT = Path(__file__).resolve().parents[1]
HYPOTHESES = sorted((ROOT / "hypotheses").glob("*.hyp.yaml"))
TWINS = sorted((Path(__file__).parent / "twins").glob("*.hyp.yaml"))


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
    bad = {cid: r.verdict for cid, r in results(session, path).items() if r.verdict != "pass"}
    assert not bad, f"{path.name}: claims that did not pass: {bad}"


@pytest.mark.parametrize("path", TWINS, ids=lambda p: p.name)
def test_false_twins_fail(session, path):
    bad = {cid: (r.verdict, r.main.estimate.statistic if r.main else r.error)
           for cid, r in results(session, path).items() if r.verdict != "fail"}
    assert not bad, f"{path.name}: false twins that did not fail: {bad}"
