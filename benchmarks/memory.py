"""Peak memory of a big suite against its floor, per batch size.

    python benchmarks/memory.py [--claims 1000] [--prompts 10000] [--batch-sizes 256,1024,4096]

The suite: `--claims` generated claims on `zoo:induction` (scaling.py's mix: a third each
`attention`, `head_score` and single-head ablations measured by one of six metrics), in files of
20, over one prompt set of `--prompts` repeated-token sequences, answered by one `Session` at each
`--batch-size`. The floor: in the same kind of fresh process, what any code must hold to answer the
same claims: torch, TransformerLens and circuitcheck imported, the model loaded, bare forward
passes over the same tokens in chunks of the batch size (each chunk's logits, and the attention
patterns of every layer, dropped after use: one log-softmax per chunk, the detection patterns
built per chunk), one float per prompt for every value the suite computed, and one block of
bootstrap resample counts (2^22 numbers) at a time.

Each side runs in its own fresh interpreter (peak RSS is a high-water mark, so it cannot be
measured twice in one process); the table prints each side's peak RSS (`ru_maxrss`), its RSS once
everything was imported and the model loaded, the peak after the values alone (before any
statistics) and the seconds. Memory, not time, is the result here; seconds are for orientation.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()


def rss_mb() -> float:
    """The resident set now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def loaded_files(directory: Path):
    import circuitcheck

    return [circuitcheck.load(p) for p in sorted(directory.glob("*.hyp.yaml"))]


def child_suite(directory: Path, batch_size: int) -> dict:
    from circuitcheck import models
    from circuitcheck.session import Options, Session

    C.set_torch_threads(THREADS)
    files = loaded_files(directory)
    session = Session(Options(batch_size=batch_size))
    for f in files:
        session.add(f)
    session.model(files[0])  # imported and loaded: the level every side starts from
    base = rss_mb()
    t = time.perf_counter()
    for f in files:  # every value first (runs and measures), then the statistics
        for lc in f.claims:
            for case in lc.cases:
                session.values(f, lc.claim, case)
    values_peak, values_seconds = peak_mb(), time.perf_counter() - t
    results = [session.result(f.path, lc.claim.id) for f in files for lc in f.claims]
    errors = [r.error for r in results if r.error]
    assert not errors, errors[:3]
    del models
    return {"base": base, "values_peak": values_peak, "peak": peak_mb(), "values_seconds": values_seconds,
            "seconds": time.perf_counter() - t, "passes": session.forward_passes(), "claims": len(results),
            "values": len(session.measured), "runs": sum(len(g.measured()) for g in session.plan.groups.values())}


def child_floor(directory: Path, batch_size: int, n_values: int, n_runs: int) -> dict:
    """Bare forward passes over the same tokens: `n_runs` passes over the prompt set in chunks."""
    import numpy as np
    import torch

    from circuitcheck.files import loader as H
    from circuitcheck.measures.head_score import detection_pattern
    from circuitcheck.language.names import pattern_name
    from circuitcheck.session import Options, Session

    C.set_torch_threads(THREADS)
    files = loaded_files(directory)
    model = Session(Options()).model(files[0])
    f = files[0]
    ps = H.prompt_set(f, H.prompts_key(f.path, f.spec.prompts), f.spec.prompts)
    tokens = torch.as_tensor(ps.tokens)
    base = rss_mb()
    t = time.perf_counter()
    kept = [np.empty(ps.n) for _ in range(n_values)]  # one float per prompt per value, as the suite keeps
    names = {pattern_name(layer) for layer in range(model.cfg.n_layers)}
    rows = np.arange(ps.n)
    with torch.inference_mode():
        for _ in range(n_runs):
            for start in range(0, ps.n, batch_size):
                chunk = slice(start, min(start + batch_size, ps.n))
                logits, cache = model.run_with_cache(tokens[chunk], names_filter=lambda n: n in names)
                pos = torch.as_tensor(ps.target_pos[chunk])
                at = logits[torch.arange(pos.shape[0])[:, None], pos].to(torch.float64)
                logp = torch.log_softmax(at, -1)  # one log-softmax per chunk: every metric reads it
                kept[0][rows[chunk]] = logp.max(-1).values.mean(-1).numpy()
                det = detection_pattern(tokens[chunk], "induction")[:, None]
                for name in names:
                    p = cache[name].to(torch.float64)
                    kept[1][rows[chunk]] = ((p * det).sum((-1, -2)) / p.sum((-1, -2)))[:, 0].numpy()
                del logits, cache, at, logp, det
    values_peak = peak_mb()
    rng = np.random.default_rng(0)  # the statistics: resample counts one block at a time
    block = max(1, 2 ** 22 // ps.n)
    for start in range(0, 4000, block):
        rows_ = min(block, 4000 - start)
        idx = rng.integers(0, ps.n, size=(rows_, ps.n)) + (np.arange(rows_) * ps.n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=rows_ * ps.n).reshape(rows_, ps.n).astype(np.float64)
        _ = counts @ kept[0]
        del idx, counts
    return {"base": base, "values_peak": values_peak, "peak": peak_mb(), "seconds": time.perf_counter() - t,
            "passes": n_runs * -(-ps.n // batch_size)}


def child(args) -> int:
    directory, mode, batch_size = Path(args.child[0]), args.child[1], int(args.child[2])
    out = child_suite(directory, batch_size) if mode == "suite" else \
        child_floor(directory, batch_size, int(args.child[3]), int(args.child[4]))
    print("@@" + json.dumps(out))
    return 0


def run_child(*argv) -> dict:
    res = subprocess.run([sys.executable, __file__, "--threads", str(THREADS), "--child", *map(str, argv)],
                         capture_output=True, text=True)
    lines = [line for line in res.stdout.splitlines() if line.startswith("@@")]
    if res.returncode or not lines:
        raise SystemExit(f"child {argv} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads(lines[0][2:])


def main() -> int:
    ap = C.parser(__doc__)
    ap.add_argument("--claims", type=int, default=1000)
    ap.add_argument("--prompts", type=int, default=10000)
    ap.add_argument("--batch-sizes", default="256,1024,4096")
    ap.add_argument("--child", nargs="+", help=argparse_hidden())
    args = ap.parse_args()
    if args.child:
        return child(args)
    from scaling import write_files

    print(f"load average {os.getloadavg()} at the start; {THREADS} thread(s)")
    tmp = Path(tempfile.mkdtemp(prefix="cc-memory-"))
    write_files(tmp, args.claims, 20, args.prompts)
    rows, t0 = [], time.perf_counter()
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        s = run_child(tmp, "suite", b)
        f = run_child(tmp, "floor", b, s["values"], s["runs"])
        rows.append([b, f"{s['peak']:.0f}", f"{s['values_peak']:.0f}", f"{s['base']:.0f}", f"{f['peak']:.0f}",
                     f"{f['base']:.0f}", f"{s['peak'] / f['peak']:.2f}x", f"{s['seconds']:.0f}", s["passes"],
                     s["runs"], s["values"]])
        print(C.table(rows[-1:], HEADER), flush=True)
    print(f"\n{args.claims} claims x {args.prompts} prompts on zoo:induction; MB of resident memory; "
          f"load average {os.getloadavg()} at the end\n")
    print(C.table(rows, HEADER))
    print(f"[{time.perf_counter() - t0:.0f} s in all]")
    return 0


HEADER = ["batch size", "suite peak", "suite peak, values only", "suite after load", "floor peak",
          "floor after load", "suite / floor", "suite s", "forward passes", "runs", "values kept"]


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
