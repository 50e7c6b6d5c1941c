"""`--cc-json PATH`: every claim and case of a run as JSON, in a versioned, documented schema.

The schema ships as `circuitcheck/schema/report.schema.json` (format `circuitcheck-report/1`);
docs/reference.md describes each field. A new field may be added within a format version; a
field renamed or removed bumps it. Infinite region bounds (`at_least` has no upper bound) are
written as null, so the file is strict JSON.

`circuitcheck diff A.json B.json` compares two saved reports as a run is compared with its
baseline (baseline.compare): A is the reference, B the new run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import baseline
from ..files import atomic

FORMAT = "circuitcheck-report/1"
SCHEMA = Path(__file__).parents[1] / "schema" / "report.schema.json"


def _finite(x):
    return None if x is None or not math.isfinite(x) else float(x)


def record(result) -> dict:
    """One claim's record: the baseline entry's fields plus what a reader needs to reproduce it."""
    rec = {
        "id": result.claim_id, "file": result.path, "line": result.line, "says": result.says,
        "expected": result.expected, "measure": result.measure, "quantifier": result.quantifier,
        "model": result.model, "checkpoint": result.checkpoint, "seed": result.seed, "load": dict(result.load),
        "fingerprint": dict(result.fingerprint), "error": result.error,
        **baseline.entry(result),
    }
    for case, c in zip(rec["cases"], result.cases):
        case.update(bounds=[_finite(b) for b in c.bounds], alpha=float(c.alpha),
                    interventions=result.case_under.get(c.label, []),
                    clean=baseline.numbers(c.clean) if c.clean is not None else None,
                    curve=[[float(x), float(y)] for x, y in c.curve] if c.curve else None)
    rec["baseline"] = comparison(result.baseline) if result.baseline is not None else None
    return rec


def comparison(cmp: baseline.Comparison) -> dict:
    return {
        "verdict": cmp.base_verdict, "flip": cmp.flip, "drift": cmp.drift, "tolerance": cmp.tolerance,
        "weights_changed": cmp.weights_changed,
        "roles": {r: {"baseline": a, "now": b} for r, (a, b) in cmp.roles.items()},
        "cases": [{"label": c.label, "value": c.base["value"] if c.base else None,
                   "low": c.base["low"] if c.base else None, "high": c.base["high"] if c.base else None,
                   "verdict": c.base["verdict"] if c.base else None, "change": c.change,
                   "flip": c.flip, "drift": c.drift, "test": c.test, "missing": "baseline" if c.base is None else
                   ("run" if c.now is None else None)} for c in cmp.cases],
    }


def document(records: list[dict], unused: list[dict] | None = None, missing: list[dict] | None = None) -> dict:
    return {"format": FORMAT, "claims": records,
            "baselines": {"unused": unused or [], "missing": missing or []}}


def write(path, records: list[dict], unused=None, missing=None) -> Path:
    return atomic.write(path, json.dumps(document(records, unused, missing), indent=1, ensure_ascii=False,
                                         allow_nan=False) + "\n")


def read(path) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ReportError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{p}: is a directory, not a JSON report") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportError(f"{p}: not a {FORMAT} report (write one with --cc-json)")
    return data


class ReportError(ValueError):
    """A report file that cannot be read."""


def key(rec: dict) -> tuple:
    return Path(rec["file"]).name, rec["id"], rec.get("checkpoint", "")


def diff(a: dict, b: dict) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(key, Comparison) for claims in both reports, keys only in A, keys only in B."""
    ra = {key(r): r for r in a["claims"]}
    rb = {key(r): r for r in b["claims"]}
    level = baseline.DRIFT_ALPHA / max(1, sum(len(ra[k]["cases"]) for k in rb if k in ra))  # Bonferroni
    both = [(k, baseline.compare(rb[k], ra[k], ra[k]["fingerprint"].get("weights_sha256"),
                                 rb[k]["fingerprint"].get("weights_sha256"), level)) for k in rb if k in ra]
    return both, [k for k in ra if k not in rb], [k for k in rb if k not in ra]


def diff_lines(a: dict, b: dict) -> tuple[list[str], bool, bool]:
    """The text of `circuitcheck diff`, whether a verdict flipped, whether anything drifted."""
    both, only_a, only_b = diff(a, b)
    rows = [("claim", "A", "B", "change")]
    for (name, cid, ck), cmp in both:
        rows.append((f"{name}::{cid}" + (f"[{ck}]" if ck else ""), cmp.base_verdict, cmp.verdict, cmp.cell()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for (name, cid, ck), cmp in both:
        if cmp.changed:
            out += [f"{name}::{cid}" + (f"[{ck}]" if ck else "")] + cmp.lines()
    out += [f"only in A: {n}::{c}" + (f"[{k}]" if k else "") for n, c, k in only_a]
    out += [f"only in B: {n}::{c}" + (f"[{k}]" if k else "") for n, c, k in only_b]
    flips = sum(bool(cmp.flip or any(c.flip for c in cmp.cases)) for _, cmp in both)
    drifts = sum(cmp.drift for _, cmp in both)
    out.append(f"{len(both)} claims compared: {flips} with verdict flips, {drifts} drifted, "
               f"{len(only_a)} only in A, {len(only_b)} only in B")
    return out, flips > 0, drifts > 0
