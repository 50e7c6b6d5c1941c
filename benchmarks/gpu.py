"""The suite on a GPU: circuitcheck with Options(device="cuda") against a bare forward pass.

    python benchmarks/gpu.py [FILE.hyp.yaml ...]     (default: hypotheses/*.hyp.yaml)

Without CUDA it prints "no GPU: skipped" and exits 0. With CUDA:
- the suite through a `Session(Options(device="cuda"))` (end to end, and runs + measures alone),
  counting every token its forward passes process (each model's `run_with_hooks` is wrapped to
  count; the batches are circuitcheck's own, prompt sets stacked `batch_size // n` deep);
- for each model and prompt set of the suite, a bare `model(tokens)` on the same stacked batch
  circuitcheck runs (the prompt set repeated `batch_size // n` times), under inference_mode;
- tokens per second of each, and the suite on the CPU for comparison (verdicts must agree).
Timings are medians after a warm-up, with `torch.cuda.synchronize()` before every clock read.
"""
from __future__ import annotations

import glob
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402


def main():
    ap = C.parser(__doc__)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.set_defaults(threads=os.cpu_count())  # the CPU comparison gets every core, not one
    args = ap.parse_args()
    C.set_torch_threads(args.threads)
    if not torch.cuda.is_available():
        print("no GPU: skipped")
        return 0
    import circuitcheck
    from circuitcheck.session import Options, Session

    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {C.machine()}")
    paths = args.files or sorted(glob.glob(str(C.REPO / "hypotheses" / "*.hyp.yaml")))
    files = [circuitcheck.load(p) for p in paths]
    n_claims = sum(len(f.claims) for f in files)
    count = {"tokens": 0}

    def sync(device):
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def suite(device, stats=True):
        s = Session(Options(device=device, batch_size=args.batch_size))
        for f in files:
            C.count_tokens(s.model(f), count)
            s.add(f)
        count["tokens"] = 0
        sync(device)
        t = time.perf_counter()
        if stats:
            out = {(f.path.name, lc.claim.id): s.result(f.path, lc.claim.id) for f in files for lc in f.claims}
        else:
            out = {(f.path.name, lc.claim.id): [s.values(f, lc.claim, c) for c in lc.cases]
                   for f in files for lc in f.claims}
        sync(device)
        return time.perf_counter() - t, count["tokens"], s.forward_passes(), out

    def median_of(fn):
        fn()  # warm-up
        runs = [fn() for _ in range(args.repeats)]
        times = [r[0] for r in runs]
        return statistics.median(times), times, runs[-1]

    rows, results = [], {}
    for device in ("cuda", "cpu"):
        for stats in (True, False):
            t, times, (_, tokens, passes, out) = median_of(lambda: suite(device, stats))
            if stats:
                results[device] = out
            rows.append([f"circuitcheck on {device}, " + ("end to end" if stats else "runs + measures"),
                         f"{t:.3f}", passes, f"{tokens:,}", f"{tokens / t:,.0f}"])

    # bare forward passes on the same stacked batches, per model and prompt set
    bare = []
    session = Session(Options(device="cuda", batch_size=args.batch_size))
    for f in files:
        session.add(f)
    for loaded, ps in prompt_shapes(session):
        model = session.model(loaded)
        copies = max(1, args.batch_size // ps.n)  # as Runs.run_many stacks them
        tokens = torch.as_tensor(ps.tokens, device="cuda").repeat(copies, 1)
        with torch.inference_mode():
            for _ in range(3):
                model(tokens)
            torch.cuda.synchronize()
            times = []
            for _ in range(20):
                t = time.perf_counter()
                model(tokens)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        t = statistics.median(times)
        bare.append([f"bare forward, {loaded.model_source.describe()}, {copies} x {ps.n} prompts x {ps.seq_len}",
                     f"{t * 1000:.2f} ms", 1, f"{tokens.numel():,}", f"{tokens.numel() / t:,.0f}"])

    print(f"files: {', '.join(Path(p).name for p in paths)}; claims: {n_claims}; batch_size {args.batch_size}; "
          f"median of {args.repeats} after a warm-up\n")
    print(C.table(rows + bare, ["", "time", "forward passes", "tokens", "tokens/s"]))
    flips = [k for k in results["cpu"] if results["cpu"][k].verdict != results["cuda"][k].verdict]
    diffs = [abs(results["cpu"][k].main.estimate.statistic - results["cuda"][k].main.estimate.statistic)
             for k in results["cpu"] if results["cpu"][k].main and results["cuda"][k].main]
    errors = [k for k, r in results["cuda"].items() if r.error]
    print(f"\ncuda vs cpu: verdict differences {flips or 'none'}; errors on cuda {errors or 'none'}; "
          f"max |statistic difference| {max(diffs):.2e}")
    return 1 if flips or errors else 0


def prompt_shapes(session) -> list[tuple]:
    """(file, prompt set) of each model and prompt-set shape the session's plan runs: one bare pass
    each (prompt variants of one shape: one row)."""
    from circuitcheck.files import loader as H

    out, seen = [], set()
    for key, group in session.plan.groups.items():
        prompts_key = key[-1]  # Plan.key: (model source, the file's `model:` as JSON, prompts key)
        ps = H.prompt_set(group.loaded, prompts_key, group.prompts)
        shape = (group.loaded.model_source, ps.n, ps.seq_len)
        if shape not in seen:
            seen.add(shape)
            out.append((group.loaded, ps))
    return out


if __name__ == "__main__":
    sys.exit(main())
