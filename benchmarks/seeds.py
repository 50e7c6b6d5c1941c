"""Do the shipped claims hold on fresh prompts? The whole suite rerun on other prompt seeds.

    nice -n 10 python benchmarks/seeds.py [--seeds 0-20] [--out DIR] [PATHS...]

Each seed runs `pytest PATHS --cc-prompt-seed SEED --cc-json DIR/seed-SEED.json` (default PATHS:
hypotheses/) in its own process: every generated prompt set of every file is drawn with its seed
+ SEED, JSONL data keep their rows. A seed whose report is already in DIR is read, not rerun, so an
interrupted check resumes. Printed: every claim whose verdict is not the same on every seed, with
the seeds where it moves, its deciding case on each (on a seed where it passes, the case nearest to
moving), and the threshold it is held to; per seed, what the compare with the baselines said (cases
compared, claims that drifted at the run's stated level). Exit status 1 when some claim moves (a threshold chosen
on the prompts it was judged on), else 0.

A threshold is set on pilot prompts and judged on fresh ones: a claim this check flags gets its
threshold from the values on seeds it is not judged on (`expect: record` or `circuitcheck measure
--cc-prompt-seed N`), never moved until it passes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def seeds(text: str) -> list[int]:
    """`0-20` or `0,3,7`."""
    if "-" in text:
        lo, hi = map(int, text.split("-"))
        return list(range(lo, hi + 1))
    return [int(s) for s in text.split(",")]


def run_seed(seed: int, out: Path, paths: list[str]) -> Path:
    report = out / f"seed-{seed}.json"
    if report.exists():
        return report
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    partial = out / f"seed-{seed}.json.part"
    cmd = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider", "--cc-prompt-seed", str(seed),
           "--cc-json", str(partial), "-o", "addopts=", "--tb=no", "--no-header"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if not partial.exists():
        raise SystemExit(f"seed {seed}: pytest wrote no report (exit {done.returncode}):\n{done.stdout[-2000:]}")
    partial.rename(report)
    return report


def verdicts(report: Path) -> dict[str, dict]:
    """`file::claim` -> {verdict, value, expected} of one seed's report."""
    data = json.loads(report.read_text())
    out = {}
    for c in data["claims"]:
        main = _deciding(c)
        out[f"{Path(c['file']).name}::{c['id']}"] = {
            "verdict": c["verdict"], "expected": c["expected"],
            "value": main["value"] if main else None, "case": main["label"] if main else "",
            "low": main["low"] if main else None, "high": main["high"] if main else None}
    return out


def drift(report: Path) -> dict:
    """What the seed's compare with hypotheses/__baselines__ said: cases compared, how many of them by
    the old rule (a baseline case without per-prompt values: the intervals do not overlap, a test at
    no stated level), and the claims that drifted or flipped. On seed 0 the prompts are the baseline's;
    on every other seed the compare is the two-sample test of no change, Bonferroni across the run."""
    claims = [c for c in json.loads(report.read_text())["claims"] if c.get("baseline")]
    cases = [k for c in claims for k in c["baseline"].get("cases") or []]
    name = lambda c: f"{Path(c['file']).name}::{c['id']}"  # noqa: E731
    return {"cases": len(cases),
            "overlap_rule": sum("without per-prompt values" in (k.get("test") or "") for k in cases),
            "drifted": [name(c) for c in claims if c["baseline"].get("drift")],
            "flipped": [name(c) for c in claims if c["baseline"].get("flip")]}


def _deciding(claim: dict) -> dict | None:
    """The case that decides the claim: for `all` (or a plain claim) the one least clearly inside its
    region, for `any` the one most clearly inside, for `none` the one least clearly outside. On a
    seed where every case passes this is the case nearest to moving, not merely the first."""
    cases = claim.get("cases") or []
    if not cases:
        return None
    broken = [c for c in cases if c.get("value") is None or c.get("low") is None or c.get("high") is None]
    if broken:
        return broken[0]
    q = claim.get("quantifier")
    if q == "none":
        return min(cases, key=_outside)
    return (max if q == "any" else min)(cases, key=_inside)


def _region(case: dict) -> tuple[float, float]:
    lo, hi = case.get("bounds") or (None, None)
    return (-math.inf if lo is None else lo), (math.inf if hi is None else hi)


def _inside(case: dict) -> float:
    """How far the case's interval lies inside its region (negative: it reaches out of it)."""
    lo, hi = _region(case)
    return min(case["low"] - lo, hi - case["high"])


def _outside(case: dict) -> float:
    """How far the case's interval lies outside its region (negative: it overlaps it)."""
    lo, hi = _region(case)
    return max(lo - case["high"], case["low"] - hi)


def moved(by_seed: dict[int, dict[str, dict]]) -> dict[str, dict[int, dict]]:
    """Claims whose verdict differs between seeds (or that do not pass on some seed)."""
    claims = sorted({c for v in by_seed.values() for c in v})
    out = {}
    for c in claims:
        runs = {s: v[c] for s, v in by_seed.items() if c in v}
        if any(r["verdict"] not in ("pass", "recorded") for r in runs.values()):
            out[c] = runs
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", default=["hypotheses/"])
    ap.add_argument("--seeds", type=seeds, default=seeds("0-20"))
    ap.add_argument("--out", type=Path, default=REPO / ".seeds")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    by_seed, drifted = {}, {}
    for s in args.seeds:
        report = run_seed(s, args.out, args.paths)
        by_seed[s], d = verdicts(report), drift(report)
        drifted[s] = d["drifted"]
        print(f"seed {s}: {sum(r['verdict'] == 'pass' for r in by_seed[s].values())} of {len(by_seed[s])} claims pass; "
              f"baselines: {d['cases']} cases compared ({d['overlap_rule']} by the overlap rule), "
              f"{len(d['drifted'])} claims drifted, {len(d['flipped'])} flipped"
              + "".join(f"\n    drifted: {c}" for c in d["drifted"]), flush=True)
    flagged = moved(by_seed)
    total = len({c for v in by_seed.values() for c in v})
    print(f"\n{len(flagged)} of {total} claims do not pass on every one of {len(args.seeds)} prompt seeds")
    for c, runs in flagged.items():
        bad = {s: r for s, r in runs.items() if r["verdict"] != "pass"}
        print(f"  {c}  ({next(iter(runs.values()))['expected']}): not passing on {len(bad)} of {len(runs)} seeds")
        for s, r in runs.items():
            case = f" [{r['case']}]" if r["case"] else ""
            numbers = f"{r['value']:.4g} [{r['low']:.4g}, {r['high']:.4g}]" if r["value"] is not None else "-"
            print(f"    seed {s:>2}: {r['verdict']:<12} {numbers}{case}")
    some = [s for s in args.seeds if drifted[s]]
    print(f"\nbaseline drift at the run's stated level (--cc-drift-alpha, Bonferroni across the run): raised on "
          f"{len(some)} of {len(args.seeds)} seeds" + (f" ({', '.join(map(str, some))})" if some else ""))
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
