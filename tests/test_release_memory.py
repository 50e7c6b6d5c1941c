"""runs.release_memory trims the heap only once the resident set has grown TRIM_AFTER past what the
last trim left: a trim costs about as much as a small pass, and a big suite still gets every trim
it needs (benchmarks/README section 7)."""
from __future__ import annotations

from circuitcheck.runs import engine as R


def test_trims_only_after_growth(monkeypatch):
    rss, trims = [100 * 2 ** 20], []

    def trim(_):
        trims.append(rss[0])
        rss[0] -= 10 * 2 ** 20  # what a trim hands back

    monkeypatch.setattr(R, "_malloc_trim", lambda: trim)
    monkeypatch.setattr(R, "_resident", lambda: rss[0])
    monkeypatch.setattr(R, "_TRIMMED", [0])
    R.release_memory()  # far above nothing: trims
    assert len(trims) == 1 and R._TRIMMED[0] == 90 * 2 ** 20
    rss[0] += R.TRIM_AFTER - 1
    R.release_memory()  # not grown enough: no trim
    assert len(trims) == 1
    rss[0] += 1
    R.release_memory()
    assert len(trims) == 2


def test_always_trims_where_the_resident_set_is_unknown(monkeypatch):
    trims = []
    monkeypatch.setattr(R, "_malloc_trim", lambda: trims.append)
    monkeypatch.setattr(R, "_resident", lambda: None)
    R.release_memory()
    R.release_memory()
    assert len(trims) == 2


def test_the_resident_set_is_read_here():
    assert R._resident() is None or R._resident() > 2 ** 20
