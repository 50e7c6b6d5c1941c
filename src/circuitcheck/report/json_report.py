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


def _nulls(obj):
    """The document with every infinite or NaN number as null (a refused bound, R² of a flat curve):
    JSON has no infinity."""
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _nulls(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nulls(v) for v in obj]
    return obj


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
        case.update(bounds=[_finite(b) for b in c.bounds], alpha=float(c.alpha), se=standard_error(c),
                    interventions=result.case_under.get(c.label, []),
                    clean=baseline.numbers(c.clean) if c.clean is not None else None,
                    curve=[[float(x), float(y)] for x, y in c.curve] if c.curve else None)
    rec["baseline"] = comparison(result.baseline) if result.baseline is not None else None
    return rec


def standard_error(c) -> float | None:
    """The per-prompt spread behind the interval over √n (a mean's standard error); None for an exact
    value (the whole population) or fewer than 2 prompts."""
    e = c.estimate
    if getattr(c.bound, "exact", False) or e.n < 2 or not math.isfinite(e.sd):
        return None
    return float(e.sd) / math.sqrt(e.n)


VERSIONS = ("circuitcheck", "torch", "transformer_lens", "transformers", "numpy")


def header(records: list[dict], settings: dict, started: float, argv=None, root=None) -> dict:
    """The run that wrote the report: when, the command line, where (`root`: the folder the report's
    paths are relative to, pytest's rootdir; default the working directory), the code (git commit,
    versions), the run-wide options, each model's weights hash, and claims per verdict."""
    import os
    import platform
    import sys
    import time
    from collections import Counter
    from importlib import metadata

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    def utc(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    now = time.time()
    models = {r["model"]: (r.get("fingerprint") or {}).get("weights_sha256") for r in records if r.get("model")}
    totals = Counter(r["verdict"] for r in records)
    return {"started": utc(started), "finished": utc(now), "seconds": round(now - started, 3),
            "argv": [str(a) for a in (sys.argv if argv is None else argv)], "root": str(root or os.getcwd()),
            "cwd": os.getcwd(),
            "git_commit": git_commit(Path.cwd()),
            "versions": {"python": platform.python_version(), **{d: version(d) for d in VERSIONS}},
            "platform": platform.platform(), "settings": dict(settings), "models": models,
            "totals": {"claims": len(records), **totals}}


def git_commit(start: Path) -> str | None:
    """HEAD's commit of the git checkout `start` is in, read from its files (no git process); None
    outside a checkout or where HEAD cannot be read."""
    for folder in [start, *start.parents]:
        dot = folder / ".git"
        if dot.is_file():  # a worktree: "gitdir: PATH"
            text = dot.read_text(errors="replace").strip()
            dot = (folder / text.removeprefix("gitdir:").strip()).resolve() if text.startswith("gitdir:") else None
        if dot is not None and dot.is_dir():
            return _head(dot)
    return None


def _head(gitdir: Path) -> str | None:
    try:
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.removeprefix("ref:").strip()
        common = gitdir / "commondir"
        roots = [gitdir] + ([(gitdir / common.read_text().strip()).resolve()] if common.is_file() else [])
        for root in roots:
            if (root / ref).is_file():
                return (root / ref).read_text().strip()
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        return None
    return None


def died(nodeid: str, why: str) -> dict:
    """The record of a claim whose pytest-xdist worker died while running it: an error, so that the
    reports list it beside the claims other workers judged (its numbers never came back)."""
    file, _, name = nodeid.partition("::")
    name = name.split("@")[0]  # the loadgroup suffix
    cid, _, checkpoint = name.partition("[")
    return {"id": cid, "file": file, "line": 0, "says": "", "expected": "", "measure": "", "quantifier": None,
            "model": "", "checkpoint": checkpoint.removesuffix("]"), "seed": 0, "load": {}, "fingerprint": {},
            "error": f"the pytest-xdist worker running this claim died: {why}", "verdict": "error", "drift": None,
            "roles": {}, "cases": [], "baseline": None}


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


def document(records: list[dict], unused: list[dict] | None = None, missing: list[dict] | None = None,
             run: dict | None = None) -> dict:
    doc = {"format": FORMAT, **({"run": run} if run is not None else {}), "claims": records,
           "baselines": {"unused": unused or [], "missing": missing or []}}
    return relative(doc, run["root"]) if run is not None else doc


PROSE = ("says", "expected", "argv", "root", "cwd")  # what the report quotes as written, paths and all


def relative(doc: dict, root: str) -> dict:
    """The report with every path under `root` written relative to it (the claims' files, native models'
    files, prompt files and tokenizers in cases' interventions, baselines' files; also the run header's
    model names), so that reports of one project from two checkouts or machines name the same files
    alike and `diff` matches them. Paths outside `root` stay absolute; the header keeps `root` itself."""
    import re

    under = re.compile(r"(?:^|(?<=[\s:=(\[]))" + re.escape(str(root).rstrip("/") + "/"))

    def walk(obj, name=""):
        if isinstance(obj, str):
            return obj if name in PROSE else under.sub("", obj)
        if isinstance(obj, dict):
            return {walk(k) if name == "models" else k: walk(v, k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, name) for v in obj]
        return obj

    return walk(doc)


def write(path, records: list[dict], unused=None, missing=None, run: dict | None = None) -> Path:
    return atomic.write(path, json.dumps(_nulls(document(records, unused, missing, run)), indent=1, ensure_ascii=False,
                                         allow_nan=False) + "\n")


MAX_BYTES = 500_000_000  # a report of 100,000 claims is far smaller


def read(path) -> dict:
    """A report, checked against the report schema: `diff` compares only what it can read right."""
    p = Path(path)
    try:
        if p.exists() and not p.is_file():
            raise ReportError(f"{p}: is a directory or device, not a JSON report")
        if p.stat().st_size > MAX_BYTES:
            raise ReportError(f"{p}: is {p.stat().st_size:,} bytes, more than a report has")
        data = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{p}: no such file") from None
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
        raise ReportError(f"{p}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportError(f"{p}: not a {FORMAT} report (write one with --cc-json)")
    problem = schema_problem(data)
    if problem:
        raise ReportError(f"{p}: not a valid {FORMAT} report: {problem}")
    # a report written before paths were relative to the run's root (its working directory, then)
    return relative(data, data["run"]["root"]) if "run" in data else data


def schema_problem(data) -> str | None:
    """Where a report breaks report.schema.json (`claims` not a list, text where a number
    belongs), or None. A NaN value passes (JSON Schema counts it a number): `diff` reads it as a change."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        at = "/".join(map(str, error.absolute_path)) or "the top level"
        return f"at {at}: {error.message[:200]}"
    return None


class ReportError(ValueError):
    """A report file that cannot be read."""


def key(rec: dict) -> tuple:
    """A claim's identity in a report: its file (folder and name, as the run wrote it), id and checkpoint."""
    return rec["file"], rec["id"], rec.get("checkpoint", "")


def _by_key(report: dict, which: str) -> dict:
    out = {}
    for r in report["claims"]:
        if key(r) in out:  # one record would hide the other's verdict
            raise ReportError(f"report {which} holds claim {_name(key(r))} twice")
        out[key(r)] = r
    return out


def diff(a: dict, b: dict) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(key, Comparison) for claims in both reports, keys only in A, keys only in B. Claims are
    matched by file path, id and checkpoint; cases by label (baseline.compare)."""
    ra, rb = _by_key(a, "A"), _by_key(b, "B")
    level = baseline.DRIFT_ALPHA / max(1, sum(len(ra[k]["cases"]) for k in rb if k in ra))  # Bonferroni
    both = [(k, baseline.compare(rb[k], ra[k], ra[k]["fingerprint"].get("weights_sha256"),
                                 rb[k]["fingerprint"].get("weights_sha256"), level)) for k in rb if k in ra]
    for k, cmp in both:
        cmp.models = (ra[k]["model"], rb[k]["model"])
    return both, [k for k in ra if k not in rb], [k for k in rb if k not in ra]


def _run_lines(a: dict | None, b: dict | None) -> list[str]:
    """What differs between the two runs' code and settings (a report from before run headers: said once)."""
    if a is None or b is None:
        which = " and ".join(x for x, r in (("A", a), ("B", b)) if r is None)
        return [f"run: {which} {'have' if ' and ' in which else 'has'} no run header (written before "
                "circuitcheck recorded one): versions and settings not compared"]
    out = []
    for part in ("versions", "settings"):
        for k in sorted(set(a[part]) | set(b[part])):
            if a[part].get(k) != b[part].get(k):
                out.append(f"run: {k} {a[part].get(k)} in A, {b[part].get(k)} in B")
    if a["git_commit"] != b["git_commit"]:
        out.append(f"run: git commit {a['git_commit']} in A, {b['git_commit']} in B")
    return out


def _name(k: tuple) -> str:
    file, cid, ck = k
    return f"{file}::{cid}" + (f"[{ck}]" if ck else "")


def diff_lines(a: dict, b: dict) -> tuple[list[str], bool, bool]:
    """The text of `circuitcheck diff`, whether a verdict flipped, whether anything drifted."""
    both, only_a, only_b = diff(a, b)
    rows = [("claim", "A", "B", "change")]
    for k, cmp in both:
        rows.append((_name(k), cmp.base_verdict, cmp.verdict, cmp.cell()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for k, cmp in both:
        if cmp.changed:
            out += [_name(k)] + cmp.lines()
        if cmp.models[0] != cmp.models[1]:
            out.append(f"  model: {cmp.models[0]} in A, {cmp.models[1]} in B")
    out += _run_lines(a.get("run"), b.get("run"))
    out += [f"only in A: {_name(k)}" for k in only_a]
    out += [f"only in B: {_name(k)}" for k in only_b]
    flips = sum(bool(cmp.flip or any(c.flip for c in cmp.cases)) for _, cmp in both)
    drifts = sum(cmp.drift for _, cmp in both)
    out.append(f"{len(both)} claims compared: {flips} with verdict flips, {drifts} drifted, "
               f"{len(only_a)} only in A, {len(only_b)} only in B")
    return out, flips > 0, drifts > 0
