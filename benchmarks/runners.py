"""The two runners side by side: the TransformerLens runner, the nnsight runner and the floor.

    python benchmarks/runners.py [--claims 60] [--prompts 16] [--repeats 3]

The model: GPT-2 small's architecture (12 layers, d_model 768, 12 heads, vocabulary 50,257) with
random weights from a fixed seed, saved in Hugging Face format and loaded through `hf:` (offline),
so that both runners can run it. The suite: `realistic.py`'s generated claims (a third each
`attention`, `head_score` and single-head ablations) over one prompt set of repeated-token
sequences. Timed in one process, alternating: the per-case values through each runner (a fresh
`Session` each time, the model already loaded), and the floor, bare forward passes of transformers'
own model over the same tokens, scaled to the number of passes the suite makes. The values of both
runners are compared (allclose) before anything is timed.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from realistic import claim  # noqa: E402


def gpt2_small_dir(directory: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)
    return directory


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--claims", type=int, default=60)
    ap.add_argument("--prompts", type=int, default=16)
    args = ap.parse_args()
    C.start(THREADS)
    import circuitcheck
    from circuitcheck import models
    from circuitcheck.session import Options, Session

    tmp = Path(tempfile.mkdtemp(prefix="cc-runners-"))
    model_dir = gpt2_small_dir(tmp / "gpt2-small-random")
    path = tmp / "runners.hyp.yaml"
    path.write_text(f"model: {{hf: {model_dir}}}\n"
                    f"prompts: {{generator: repeated_tokens, n: {args.prompts}, seed: 0, length: 10, vocab: 50257}}\n"
                    "claims:\n" + "".join(claim(i) for i in range(args.claims)))
    loaded = circuitcheck.load(path)

    def values(runner: str):
        s = Session(Options(runner=runner))
        s.add(loaded)
        out = [s.values(loaded, lc.claim, case)[0] for lc in loaded.claims for case in lc.cases]
        return out, s.forward_passes()

    tl, passes = values("transformer_lens")
    nn, nn_passes = values("nnsight")
    for a, b in zip(tl, nn):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    hf = models.hf_module(loaded.model_source, models.LoadOptions())
    batch = torch.as_tensor(next(iter(loaded.prompt_sets.values())).tokens)

    def bare():
        with torch.inference_mode():
            hf(batch)

    timing = C.interleaved({"transformer_lens": lambda: values("transformer_lens"),
                            "nnsight": lambda: values("nnsight"), "bare": bare}, repeats=args.repeats)
    floor = timing["bare"][0] * passes
    print(f"model: GPT-2-small architecture, random weights, Hugging Face format; {args.claims} claims, "
          f"{args.prompts} prompts; {passes} passes (TransformerLens runner), {nn_passes} (nnsight runner); "
          f"values equal (allclose); fastest of {args.repeats}; {C.machine()}\n")
    rows = [["bare transformers forward passes (floor)", f"{floor:.2f}", "1.00x"]]
    for name in ("transformer_lens", "nnsight"):
        rows.append([f"circuitcheck values, {name} runner", f"{timing[name][0]:.2f}", f"{timing[name][0] / floor:.2f}x"])
    print(C.table(rows, ["", "seconds", "time vs floor"]))
    print("all timings (s): " + "; ".join(f"{k} {C.fmt_times(v[1])}" for k, v in timing.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
