"""How circuitcheck's time grows with the number of claims sharing a model, and with the prompts.

    python benchmarks/scaling.py [--claims 10,100,1000] [--prompts 100,400,1600] [--repeats 3]

1. Claims: 10, 100, 1000 generated claims on `zoo:induction` (files of 20 claims, one prompt set
   of 200 repeated-token sequences), a mix of a third each: `attention` (head x from x to),
   `head_score` (head x pattern) and single-head ablations (`ablate` one head by mean, zero or
   resample, measured by one of the six metrics, some at one position; drop/rise or absolute).
   Printed: wall time of a `Session` answering every claim, time per claim, forward passes, and
   the same for the per-case values alone (runs and measures, no intervals).
2. Prompts: 60 claims (the same mix) at 100, 400 and 1600 prompts.
3. Collection: 1,000 claims in 50 files, `pytest --collect-only -q` in a subprocess (a
   `python -c` wrapper around `pytest.main` that reports whether torch is in `sys.modules`
   afterwards); the wall time of the whole subprocess and of `pytest.main` alone.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()

HEADS = [f"L{layer}H{h}" for layer in range(2) for h in range(4)]
PATTERNS = ["induction", "previous_token", "duplicate_token"] + [f"offset:{k}" for k in range(1, 16)]
METHODS = ["mean", "zero", "resample"]
METRICS = ["accuracy", "loss", "prob", "logprob", "rank", "logit_diff"]


def claim(i: int) -> str:
    """The i-th generated claim: attention, head_score and single-head ablation in turn."""
    kind, j = i % 3, i // 3
    if kind == 0:
        h, src, dst = HEADS[j % 8], (j // 8) % 10, (j // 80) % 10
        return (f"  - id: c{i}-attention\n    says: \"{HEADS[j % 8]} attends from S2+{src} to S1+{dst}\"\n"
                f"    measure: {{attention: {{head: {h}, from: S2+{src}, to: S1+{dst}}}}}\n"
                f"    expect: {{at_least: 0.0}}\n")
    if kind == 1:
        pat, h, bos = PATTERNS[j % len(PATTERNS)], HEADS[(j // len(PATTERNS)) % 8], (j // 144) % 2 == 1
        return (f"  - id: c{i}-head-score\n    says: \"{h} {pat} score\"\n"
                f"    measure: {{head_score: {{head: {h}, pattern: \"{pat}\", exclude_bos: {str(bos).lower()}}}}}\n"
                f"    expect: {{at_most: 1.0}}\n")
    metric, method, h = METRICS[j % 6], METHODS[(j // 6) % 3], HEADS[(j // 18) % 8]  # the same mix at every size
    at = "" if j < 144 else f", at: S2+{(j // 144) - 1}"
    expect = {"accuracy": "{drop: {at_most: 1.0}}", "prob": "{drop: {at_most: 1.0}}",
              "loss": "{rise: {at_least: -100}}"}.get(metric, "{at_least: -1000}")
    return (f"  - id: c{i}-ablate\n    says: \"{method}-ablating {h} moves {metric}\"\n"
            f"    under: {{ablate: {{heads: [{h}], method: {method}{at}}}}}\n"
            f"    measure: {metric}\n    expect: {expect}\n")


def write_files(directory: Path, n_claims: int, per_file: int, n_prompts: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, start in enumerate(range(0, n_claims, per_file)):
        body = "".join(claim(i) for i in range(start, min(start + per_file, n_claims)))
        p = directory / f"gen{f:03d}.hyp.yaml"
        p.write_text(f"model: zoo:induction\nprompts: {{generator: repeated_tokens, n: {n_prompts}, seed: 0, "
                     f"length: 10}}\nclaims:\n{body}")
        paths.append(p)
    return paths


def session_times(paths, repeats):
    import circuitcheck
    from circuitcheck.session import Options, Session

    loaded = [circuitcheck.load(p) for p in paths]

    def full():
        s = Session(Options())
        for f in loaded:
            s.add(f)
        results = [s.result(f.path, lc.claim.id) for f in loaded for lc in f.claims]
        assert all(r.error is None for r in results), [r.error for r in results if r.error][:3]
        return s

    def values():
        s = Session(Options())
        for f in loaded:
            s.add(f)
        for f in loaded:
            for lc in f.claims:
                for c in lc.cases:
                    s.values(f, lc.claim, c)
        return s

    t = C.interleaved({"full": full, "values": values}, repeats=repeats, warmup=0)
    return t["full"][0], t["values"][0], t["full"][2].forward_passes(), len(loaded)


COLLECT = ("import sys, time, json; t = time.perf_counter(); import pytest; "
           "rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', sys.argv[1]]); "
           "print('@@' + json.dumps({'rc': int(rc), 'torch': 'torch' in sys.modules, "
           "'numpy': 'numpy' in sys.modules, 'seconds': time.perf_counter() - t}))")


def collect(directory: Path):
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLLECT, str(directory)], cwd=directory, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t
    report = json.loads(next(line[2:] for line in out.stdout.splitlines() if line.startswith("@@")))
    items = sum(1 for line in out.stdout.splitlines() if "::" in line)
    m = re.search(r"collected in ([0-9.]+)s", out.stdout)
    report["collection"] = float(m[1]) if m else float("nan")  # pytest's own figure: files to items
    return wall, report, items, out


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--claims", default="10,100,1000")
    ap.add_argument("--prompts", default="100,400,1600")
    ap.add_argument("--prompt-claims", type=int, default=60, help="claims in the prompt-count rows")
    args = ap.parse_args()
    C.start(THREADS)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="cc-scaling-"))

    # warm-up: model load, first torch and scipy calls
    session_times(write_files(tmp / "warm", 30, 20, 200), 1)

    rows = []
    for n in [int(x) for x in args.claims.split(",")]:
        full, values, passes, files = session_times(write_files(tmp / f"claims{n}", n, 20, 200), args.repeats)
        rows.append([n, files, 200, f"{full:.3f}", f"{1000 * full / n:.2f}", f"{values:.3f}",
                     f"{1000 * values / n:.2f}", passes])
    for p in [int(x) for x in args.prompts.split(",")]:
        n = args.prompt_claims
        full, values, passes, files = session_times(write_files(tmp / f"prompts{p}", n, 20, p), args.repeats)
        rows.append([n, files, p, f"{full:.3f}", f"{1000 * full / n:.2f}", f"{values:.3f}",
                     f"{1000 * values / n:.2f}", passes])
    print(f"\nSession on zoo:induction, claims a third each attention / head_score / single-head ablation; "
          f"fastest of {args.repeats}\n")
    print(C.table(rows, ["claims", "files", "prompts", "seconds", "ms/claim", "values-only s", "values ms/claim",
                         "forward passes"]))

    # collection: 1,000 claims in 50 files, in a fresh interpreter
    paths = write_files(tmp / "collect", 1000, 20, 200)
    runs = [collect(tmp / "collect") for _ in range(args.repeats)]
    walls = sorted(r[0] for r in runs)
    inner = sorted(r[1]["seconds"] for r in runs)
    own = sorted(r[1]["collection"] for r in runs)
    wall, report, items, out = runs[0]
    torch_loaded = any(r[1]["torch"] for r in runs)
    print(f"\ncollection: {items} claims in {len(paths)} files, `pytest --collect-only -q` in a subprocess "
          f"(fastest of {args.repeats}):")
    print(f"  whole subprocess (interpreter start, imports, collection): {walls[len(walls) // 2]:.2f} s  "
          f"{['%.2f' % w for w in walls]}")
    print(f"  pytest.main alone (start-up, plugins, collection):         {inner[len(inner) // 2]:.2f} s  "
          f"{['%.2f' % w for w in inner]}")
    print(f"  collection as pytest reports it ('collected in'):          {own[len(own) // 2]:.2f} s  "
          f"{['%.2f' % w for w in own]}")
    print(f"  torch imported during collection: {'YES' if torch_loaded else 'no'}; "
          f"numpy imported: {'yes' if report['numpy'] else 'no'}; pytest exit code {report['rc']}")
    ok = not torch_loaded and items == 1000 and report["rc"] == 0
    if not ok:
        print(out.stdout[-2000:], out.stderr[-2000:])
    print(f"[{time.perf_counter() - t0:.0f} s in all]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
