"""Head-role scan: circuitcheck `head_score` claims against transformer_lens.head_detector.detect_head.

    python benchmarks/head_scan_vs_detect_head.py [--n 200] [--repeats 3]

The scan: every head of `zoo:induction` scored for induction, previous_token and duplicate_token
on the same `n` repeated-token sequences. circuitcheck states it as three quantified claims
(`for: {all: {each: [every head]}}`, `measure: {head_score: ...}`) and runs them through a
`Session`; TransformerLens's `detect_head` takes strings, so `model.to_tokens` is monkeypatched to
return each sequence's token tensor, and detect_head is called one sequence at a time (as it
requires; given a list it does the same loop itself) and its scores averaged. Both sides report
the mean over sequences of the per-sequence "mul" score; the two tables must agree to 1e-5.
Timings are medians, the two sides interleaved, the model loaded and warmed before the clock.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import circuitcheck  # noqa: E402
from circuitcheck.session import Options, Session  # noqa: E402

PATTERNS = {"induction": "induction_head", "previous_token": "previous_token_head",
            "duplicate_token": "duplicate_token_head"}


def scan_file(directory: Path, n: int, n_layers: int, n_heads: int) -> Path:
    heads = ", ".join(f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads))
    claims = "".join(f"""
  - id: scan-{kind.replace('_', '-')}
    says: "{kind} score of every head"
    for: {{all: {{each: [{heads}]}}}}
    measure: {{head_score: {{head: $head, pattern: {kind}}}}}
    expect: {{at_least: 0}}
""" for kind in PATTERNS)
    path = directory / "head_scan.hyp.yaml"
    path.write_text(f"model: zoo:induction\nprompts: {{generator: repeated_tokens, n: {n}, seed: 0, length: 10}}\n"
                    f"claims:{claims}")
    return path


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--n", type=int, default=200, help="sequences (default 200)")
    args = ap.parse_args()
    C.start(THREADS)
    from transformer_lens.head_detector import detect_head

    model = C.zoo_bridge("induction")
    cfg = model.cfg
    tmp = tempfile.TemporaryDirectory()
    loaded = circuitcheck.load(scan_file(Path(tmp.name), args.n, cfg.n_layers, cfg.n_heads))
    tokens = torch.as_tensor(loaded.prompt_sets[loaded.claims[0].cases[0].prompts_key].tokens)
    names = [f"seq{i}" for i in range(len(tokens))]
    by_name = dict(zip(names, tokens[:, None, :]))
    model.to_tokens = lambda seq, *a, **k: by_name[seq]  # detect_head takes strings
    passes = C.PassCounter()
    original = model.run_with_cache

    def counted(*a, **k):
        passes()
        return original(*a, **k)

    model.run_with_cache = counted

    def transformer_lens_side():
        with torch.no_grad():
            return {kind: torch.stack([detect_head(model, name, tl_name) for name in names]).mean(0).double().numpy()
                    for kind, tl_name in PATTERNS.items()}

    def circuitcheck_side(stats=True):
        s = Session(Options())
        s.add(loaded)
        out = {}
        for lc in loaded.claims:
            kind = lc.claim.measure.head_score.pattern
            if stats:  # the claims' results: means with bootstrap intervals
                r = s.result(loaded.path, lc.claim.id)
                values = [c.estimate.statistic for c in r.cases]
            else:  # the per-case values only
                values = [s.values(loaded, lc.claim, c)[0].mean() for c in lc.cases]
            out[kind] = np.array(values).reshape(cfg.n_layers, cfg.n_heads)
        return s, out

    t0 = time.perf_counter()
    timing = C.interleaved({"detect_head": transformer_lens_side, "circuitcheck": circuitcheck_side},
                           repeats=args.repeats)
    timing_v = C.interleaved({"circuitcheck": lambda: circuitcheck_side(False)}, repeats=args.repeats)
    tl_scores = timing["detect_head"][2]
    session, cc_scores = timing["circuitcheck"][2]
    tl_passes = passes.n // (args.repeats + 1)

    print(f"model: zoo:induction ({cfg.n_layers} layers x {cfg.n_heads} heads), {args.n} sequences of "
          f"{tokens.shape[1]} tokens, 3 patterns = {3 * cfg.n_layers * cfg.n_heads} head scores; "
          f"median of {args.repeats} after a warm-up\n")
    tl_t, cc_t, cv_t = timing["detect_head"][0], timing["circuitcheck"][0], timing_v["circuitcheck"][0]
    print(C.table([
        ["detect_head (one sequence per call)", f"{tl_t:.3f}", "1.00x", tl_passes],
        ["circuitcheck Session (claims with intervals)", f"{cc_t:.3f}", f"{tl_t / cc_t:.1f}x", session.forward_passes()],
        ["circuitcheck values only (no intervals)", f"{cv_t:.3f}", f"{tl_t / cv_t:.1f}x",
         timing_v["circuitcheck"][2][0].forward_passes()],
    ], ["", "seconds", "speed-up", "forward passes"]))
    worst = 0.0
    for kind in PATTERNS:
        worst = max(worst, float(np.abs(tl_scores[kind] - cc_scores[kind]).max()))
    equal = all(np.allclose(tl_scores[k], cc_scores[k], atol=1e-5, rtol=0) for k in PATTERNS)
    print(f"\nscores equal to 1e-5: {'yes' if equal else 'NO'} (max |difference| {worst:.2e})")
    for kind in PATTERNS:
        row = "  ".join(f"L{i // cfg.n_heads}H{i % cfg.n_heads} {v:.4f}" for i, v in enumerate(cc_scores[kind].ravel()))
        print(f"  {kind:16s} {row}")
    print(f"all timings (s): detect_head {C.fmt_times(timing['detect_head'][1])}, circuitcheck "
          f"{C.fmt_times(timing['circuitcheck'][1])}, values only {C.fmt_times(timing_v['circuitcheck'][1])}")
    print(f"[{time.perf_counter() - t0:.0f} s in all]")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
