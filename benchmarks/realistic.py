"""A GPT-2-small-sized model: a suite of claims against bare forward passes of the same tokens.

    python benchmarks/realistic.py [--claims 100] [--prompts 32] [--repeats 3]

The model: TransformerLens-native, GPT-2 small's dimensions (12 layers, d_model 768, 12 heads of
64, d_mlp 3072, vocabulary 50,257, LayerNorm, gelu_new), random weights from a fixed seed, built
offline from the config (`model: factory:gpt2-small-random`, registered here). The suite:
`--claims` generated claims over one prompt set of `--prompts` repeated-token sequences (21
tokens), a third each `attention`, `head_score` and single-head ablations (mean, zero or resample,
measured by one of four metrics), heads spread over every layer.

Printed: the suite's wall time (a `Session` answering every claim, and the per-case values alone)
and the tokens its forward passes processed (every `run_with_hooks` batch is counted); the floor:
bare `model(tokens)` of the prompt set under `torch.inference_mode`, its tokens per second applied
to the suite's token count (circuitcheck stacks interventions into bigger batches, which on a CPU
run at the same rate per token); tokens per second of each. The suite is timed both ways: as it
runs (each intervened pass starting at its first intervened block, from the clean residual entering
it) and with every pass from block 0; the blocks each computed (prompts x blocks) are printed, and
the share of block work that starting late skips, counted from the plan.
"""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()

import torch  # noqa: E402

GPT2_SMALL = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024,
                  act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard", seed=0)
LAYERS, HEADS = 12, 12
METHODS = ["mean", "zero", "resample"]
METRICS = ["loss", "logprob", "rank", "logit_diff"]


def head(j: int) -> str:
    return f"L{(j * 5) % LAYERS}H{(j * 7) % HEADS}"  # strides coprime with 12: every layer and head


def claim(i: int) -> str:
    kind, j = i % 3, i // 3
    if kind == 0:
        return (f"  - id: c{i}-attention\n    says: \"{head(j)} attends from S2+{j % 10} to S1+{j % 10 + 1}\"\n"
                f"    measure: {{attention: {{head: {head(j)}, from: S2+{j % 10}, to: S1+{(j % 10) + 1}}}}}\n"
                f"    expect: {{at_least: 0.0}}\n")
    if kind == 1:
        pattern = ["induction", "previous_token", "duplicate_token"][j % 3]
        return (f"  - id: c{i}-head-score\n    says: \"{head(j)} {pattern} score\"\n"
                f"    measure: {{head_score: {{head: {head(j)}, pattern: {pattern}}}}}\n"
                f"    expect: {{at_most: 1.0}}\n")
    metric, method = METRICS[j % 4], METHODS[j % 3]
    return (f"  - id: c{i}-ablate\n    says: \"{method}-ablating {head(j)} moves {metric}\"\n"
            f"    under: {{ablate: {{heads: [{head(j)}], method: {method}}}}}\n"
            f"    measure: {metric}\n    expect: {{at_least: -1000000}}\n")


def write_file(directory: Path, n_claims: int, n_prompts: int) -> Path:
    path = directory / "gpt2_small_random.hyp.yaml"
    path.write_text("model: factory:gpt2-small-random\n"
                    f"prompts: {{generator: repeated_tokens, n: {n_prompts}, seed: 0, length: 10, vocab: 50257}}\n"
                    f"claims:\n" + "".join(claim(i) for i in range(n_claims)))
    return path


def gpt2_small_random():
    from circuitcheck.models import native

    torch.manual_seed(0)
    return native(GPT2_SMALL)


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--claims", type=int, default=100)
    ap.add_argument("--prompts", type=int, default=16)
    args = ap.parse_args()
    C.start(THREADS)
    t0 = time.perf_counter()
    import circuitcheck
    from circuitcheck.session import Options, Session

    circuitcheck.register_model("gpt2-small-random")(gpt2_small_random)
    loaded = circuitcheck.load(write_file(Path(tempfile.mkdtemp(prefix="cc-realistic-")), args.claims, args.prompts))
    counter = {"tokens": 0}

    def suite(values_only: bool, full: bool = False):
        with C.full_passes() if full else contextlib.nullcontext():
            return answer(values_only)

    def answer(values_only: bool):
        s = Session(Options())
        s.add(loaded)
        C.count_tokens(s.model(loaded), counter)
        counter["tokens"] = 0
        for lc in loaded.claims:
            if values_only:
                for case in lc.cases:
                    s.values(loaded, lc.claim, case)
            else:
                assert s.result(loaded.path, lc.claim.id).error is None
        return s, counter["tokens"]

    model = Session(Options()).model(loaded)
    ps = next(iter(loaded.prompt_sets.values()))
    batch = torch.as_tensor(ps.tokens)

    def bare():
        with torch.inference_mode():
            model(batch)
        return batch.numel()

    bare()  # warm-up: the model is loaded and has run once before any clock starts
    timing = C.interleaved({"suite": lambda: suite(False), "values": lambda: suite(True),
                            "full": lambda: suite(False, full=True), "values_full": lambda: suite(True, full=True),
                            "bare": bare}, repeats=args.repeats, warmup=0)
    session, tokens = timing["suite"][2]
    full_session, full_tokens = timing["full"][2]
    assert full_tokens == tokens  # the same batches; only the blocks computed differ
    bare_rate = timing["bare"][2] / timing["bare"][0]
    floor = tokens / bare_rate
    print(f"model: GPT-2-small dims, random weights (124M parameters); {args.claims} claims, {ps.n} prompts of "
          f"{ps.seq_len} tokens; floor: a bare pass of the {ps.n} prompts, scaled to the suite's tokens; "
          f"fastest of {args.repeats}\n")
    rows = [["bare forward passes (floor)", f"{floor:.2f}", f"{bare_rate:,.0f}", "1.00x"]]
    for name, label in (("values_full", "circuitcheck values only, every pass from block 0"),
                        ("full", "circuitcheck claims with intervals, every pass from block 0"),
                        ("values", "circuitcheck values only"), ("suite", "circuitcheck claims with intervals")):
        t = timing[name][0]
        rows.append([label, f"{t:.2f}", f"{tokens / t:,.0f}", f"{t / floor:.2f}x"])
    print(C.table(rows, ["", "seconds", "tokens/s", "time vs floor"]))
    print(f"\nforward passes {session.forward_passes()} (every pass from block 0: {full_session.forward_passes()}), "
          f"tokens {tokens:,}")
    print(f"{C.block_line(session)}; every pass from block 0: {C.block_line(full_session)}")
    print(skippable(session))
    print("all timings (s): " + "; ".join(f"{k} {C.fmt_times(v[1])}" for k, v in timing.items()))
    print(f"[{time.perf_counter() - t0:.0f} s in all]")
    return 0


def skippable(session) -> str:
    """Block work that starting each intervened run at its first intervened layer saves, counted from the plan."""
    from circuitcheck.files.spec import parse_head

    blocks = skipped = 0
    for group in session.plan.groups.values():
        for k in group.measured():  # every run of the plan, the clean one included
            blocks += LAYERS
            if k:  # an intervened run: every head this benchmark ablates names its layer
                layers = [parse_head(h)[0] for iv in json.loads(f"[{','.join(k)}]") for h in iv["ablate"]["heads"]]
                skipped += min(layers)
    return (f"counted from the plan: block passes {blocks}; starting each intervened run at its first "
            f"intervened layer skips "
            f"{skipped} ({100 * skipped / max(blocks, 1):.0f}% of block work)")


if __name__ == "__main__":
    sys.exit(main())
