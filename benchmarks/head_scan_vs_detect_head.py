"""Head-role scan: circuitcheck `head_score` claims against what a researcher would write.

    python benchmarks/head_scan_vs_detect_head.py [--n 200] [--repeats 5]

The scan: every head of `zoo:induction` scored for induction, previous_token and duplicate_token
on the same `n` repeated-token sequences. circuitcheck states it as three quantified claims
(`for: {all: {each: [every head]}}`, `measure: {head_score: ...}`) and runs them through a
`Session`. The references, strongest first:

- **batched script** (the reference): ten lines of torch, one `run_with_cache` of every sequence
  with a `names_filter` for the attention patterns, the detection patterns built for the whole
  batch, one einsum per pattern;
- **detect_head with cache=**: the same one batched `run_with_cache`, then TransformerLens's
  `detect_head` per sequence and pattern, given that sequence's slice of the cache;
- **detect_head, one pass per call** (weak, kept for comparison with earlier figures): `detect_head`
  as its docs show it, without `cache=`, one forward pass per sequence and pattern.

`detect_head` takes strings, so `model.to_tokens` returns each sequence's token tensor. Every
side reports the mean over sequences of the per-sequence "mul" score; the tables must agree to
1e-5. Timings: fastest of `--repeats`, the sides interleaved, the model loaded and warmed first.
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

    def detect_head_side():
        with torch.no_grad():
            return {kind: torch.stack([detect_head(model, name, tl_name) for name in names]).mean(0).double().numpy()
                    for kind, tl_name in PATTERNS.items()}

    def detect_head_cached_side():
        from transformer_lens.ActivationCache import ActivationCache

        with torch.inference_mode():
            _, cache = original(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
            passes()
        per_seq = [ActivationCache({k: v[i] for k, v in cache.items()}, model, has_batch_dim=False)
                   for i in range(len(names))]
        return {kind: torch.stack([detect_head(model, name, tl_name, cache=c) for name, c in zip(names, per_seq)])
                .mean(0).double().numpy() for kind, tl_name in PATTERNS.items()}

    def batched_script():
        with torch.inference_mode():
            _, cache = original(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
            passes()
        pats = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(cfg.n_layers)], 1)
        t = tokens.shape[1]
        earlier = torch.ones(t, t, dtype=torch.bool).tril(-1)  # key before query
        dup = (tokens[:, :, None] == tokens[:, None, :]) & earlier  # [n, q, k]
        ind = torch.zeros_like(dup)
        ind[:, :, 1:] = dup[:, :, :-1]  # the token after an earlier copy
        dets = {"previous_token": torch.eye(t, dtype=torch.bool).roll(-1, 1).tril(-1).expand_as(dup),
                "duplicate_token": dup, "induction": ind}
        return {kind: (torch.einsum("nlhqk,nqk->lh", pats.double(), d.double()) / (len(tokens) * t)).numpy()
                for kind, d in dets.items()}

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
    sides = {"batched script": batched_script, "detect_head with cache=": detect_head_cached_side,
             "detect_head, one pass per call (weak)": detect_head_side,
             "circuitcheck values only": lambda: circuitcheck_side(False),
             "circuitcheck claims with intervals": circuitcheck_side}
    counts = {}
    for name, fn in sides.items():  # forward passes of one call of each side
        before = passes.n
        out = fn()
        counts[name] = out[0].forward_passes() if isinstance(out, tuple) else passes.n - before
    timing = C.interleaved(sides, repeats=args.repeats)
    reference = timing["batched script"]

    print(f"model: zoo:induction ({cfg.n_layers} layers x {cfg.n_heads} heads), {args.n} sequences of "
          f"{tokens.shape[1]} tokens, 3 patterns = {3 * cfg.n_layers * cfg.n_heads} head scores; "
          f"fastest of {args.repeats} after a warm-up\n")
    rows, worst = [], 0.0
    for name, (t, _, out) in timing.items():
        scores = out[1] if isinstance(out, tuple) else out
        diff = max(float(np.abs(scores[k] - reference[2][k]).max()) for k in PATTERNS)
        worst = max(worst, diff)
        rows.append([name, f"{t:.4f}", f"{t / reference[0]:.2f}x", counts[name], f"{diff:.1e}"])
    print(C.table(rows, ["", "seconds", "time vs batched script", "forward passes", "max |diff| vs script"]))
    equal = worst <= 1e-5
    print(f"\nscores equal to 1e-5 on every side: {'yes' if equal else 'NO'}")
    cc_scores = timing["circuitcheck values only"][2][1]
    for kind in PATTERNS:
        row = "  ".join(f"L{i // cfg.n_heads}H{i % cfg.n_heads} {v:.4f}" for i, v in enumerate(cc_scores[kind].ravel()))
        print(f"  {kind:16s} {row}")
    print("all timings (s): " + "; ".join(f"{name} {C.fmt_times(ts)}" for name, (_, ts, _) in timing.items()))
    print(f"[{time.perf_counter() - t0:.0f} s in all]")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
