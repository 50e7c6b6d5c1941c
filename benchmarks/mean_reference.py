"""Where should `method: mean` take its means? The spread issue 22 item 1 describes, measured on zoo:ioi.

    nice -n 10 python benchmarks/mean_reference.py [--sets 20] [--n 500] [--out DIR]

On zoo:ioi, ablating L2H0 by its mean (the shipped claims `removing-l2h0-collapses-the-logit-difference`
and `answer-stays-first-without-any-one-head`), for accuracy and the logit difference:

- own:       judged sets seed 0..K-1 (n prompts each), the mean over the judged prompts themselves
             (circuitcheck's default before this change; written here as `mean_from:` the claim's own spec);
- reference: the same judged sets, the mean over a set drawn apart (the default now: the same spec with
             its seed moved by REFERENCE_SEED_OFFSET);
- fixed:     one evaluation set of 4,000 prompts, the means from K other sets of 400 prompts (the issue's
             measurement).

Printed for each: the sd of the value across the K sets, the mean standard error an interval over
prompts uses (sd of the per-prompt values / sqrt(n)), and their ratio. A ratio near 1 means the
interval's spread is the spread the value really has across draws; the `fixed` row is the part of the
spread that comes from the means alone, which no interval over the judged prompts can see.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from circuitcheck.files.loader import REFERENCE_SEED_OFFSET  # noqa: E402

NAMES = ("[Mary, John, Alice, Bob, Tom, Anna, Kate, James, Sarah, David, Emma, Paul, Laura, Mark, Lisa, Peter, "
         "Jane, Mike, Susan, Chris, Helen, Dan, Amy, Sam, Rose, Jack, Lucy, Ben, Grace, Max, Ruth, Carl, Nina, Ray, "
         "Eve, Adam]")
MEASURES = ("accuracy", "logit_diff")


def spec(n: int, seed: int) -> str:
    return ("{generator: text, template: \"When {IO} and {S} went to the store, {S} gave a drink to\", "
            f"slots: {{IO: {NAMES}, S: {NAMES}}}, answer: IO, counterfactual: S, n: {n}, seed: {seed}}}")


def claim(cid: str, judged: str, mean_from: str | None, measure: str) -> str:
    extra = "" if mean_from is None else f", mean_from: {mean_from}"
    return (f"  - id: {cid}\n    says: measured\n    prompts: {judged}\n"
            f"    under: {{ablate: {{heads: [L2H0], method: mean{extra}}}}}\n"
            f"    measure: {measure}\n    expect: record\n")


def hypothesis_file(sets: int, n: int) -> str:
    out = ["model: zoo:ioi\nclaims:\n"]
    for m in MEASURES:
        for k in range(sets):
            out.append(claim(f"own-{m}-{k}", spec(n, k), spec(n, k), m))
            out.append(claim(f"reference-{m}-{k}", spec(n, k), None, m))
            out.append(claim(f"fixed-{m}-{k}", spec(4000, 0), spec(400, 1000 + k), m))
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=20)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        (out / "means.hyp.yaml").write_text(hypothesis_file(args.sets, args.n))
        report = out / "means.json"
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        subprocess.run([sys.executable, "-m", "pytest", str(out / "means.hyp.yaml"), "-q", "-p", "no:cacheprovider",
                        "-o", "addopts=", "--cc-json", str(report), "--tb=short"], cwd=REPO, env=env, check=False,
                       capture_output=True)
        claims = {c["id"]: c["cases"][0] for c in json.loads(report.read_text())["claims"]}
    print(f"zoo:ioi, L2H0 mean-ablated; {args.sets} sets; reference seed offset {REFERENCE_SEED_OFFSET}")
    print(f"{'measure':<11} {'means from':<10} {'n':>5} {'sd across sets':>15} {'mean se':>9} {'ratio':>6}  range")
    for m in MEASURES:
        for how, n in (("own", args.n), ("reference", args.n), ("fixed", 4000)):
            cases = [claims[f"{how}-{m}-{k}"] for k in range(args.sets)]
            values = np.array([c["value"] for c in cases])
            se = np.mean([np.std(c["values"], ddof=1) / np.sqrt(len(c["values"])) for c in cases])
            sd = values.std(ddof=1)
            print(f"{m:<11} {how:<10} {n:>5} {sd:>15.4g} {se:>9.4g} {sd / se:>6.2f}  "
                  f"{values.min():.4g} to {values.max():.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
