"""A faithfulness + completeness + minimality suite on zoo:ioi vs a competent script, side by side.

    python benchmarks/circuit_suite.py [--repeats 3] [--threads 1]

circuitcheck side: one hypothesis file (written to a temporary folder) with three claims about one
circuit of zoo:ioi (its previous-token head, the three layer-1 heads, the name mover L2H0 and the
last MLP), under mean ablation: faithfulness, completeness over its two classes and 4 random
subsets, minimality over its classes and 2 random subsets per node. A fresh `Session` judges it.

Reference: what a careful researcher writes with plain TransformerLens hooks. It lists every
knocked-out node set the three claims read, dedupes them (as circuitcheck plans them), runs the
clean model once on the judged prompts (m(M)) and once on the reference prompts that `method:
mean` averages over (their z and mlp_out give the means), then one pass per distinct set with hooks that write the means over the knocked-out heads' z and MLPs' mlp_out,
and computes the logit difference per prompt. It computes no intervals: only the values.

Printed: the forward passes of each side, the fastest time of each, and that both sides' per-prompt
values agree on every run (the reference is checked against circuitcheck, not trusted)."""
from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

THREADS = _common.pin_threads()

CIRCUIT = "[L0H0, L1H0, L1H1, L1H2, L2H0, mlp2]"
FILE = """\
model: zoo:ioi
prompts:
  generator: text
  template: "When {IO} and {S} went to the store, {S} gave a drink to"
  slots:
    IO: &names [Mary, John, Alice, Bob, Tom, Anna, Kate, James, Sarah, David, Emma, Paul, Laura, Mark, Lisa,
                Peter, Jane, Mike, Susan, Chris, Helen, Dan, Amy, Sam, Rose, Jack, Lucy, Ben, Grace, Max]
    S: *names
  answer: IO
  counterfactual: S
  n: 500
  seed: 0
claims:
  - id: faithful
    says: the circuit recovers the logit difference
    circuit: {nodes: CIRCUIT}
    measure: logit_diff
    expect: {faithfulness: {at_least: 0}}
  - id: complete
    says: knocking out a class or a random subset does to the circuit what it does to the model
    circuit: {nodes: CIRCUIT, knock: {random: 4}}
    measure: logit_diff
    expect: {completeness: {at_most: 1}}
  - id: minimal
    says: every node matters
    circuit: {nodes: CIRCUIT, knock: {random: 2}}
    measure: logit_diff
    expect: {minimality: {at_least: 0}}
""".replace("CIRCUIT", CIRCUIT)


def circuitcheck_side(path):
    from circuitcheck.files import loader as H
    from circuitcheck.session import Session

    session = Session()
    loaded = H.load(path)
    session.add(loaded)
    results = {lc.claim.id: session.result(loaded.path, lc.claim.id) for lc in loaded.claims}
    values = {}
    for lc in loaded.claims:
        for case in lc.cases:
            for (name, under), v in zip(case.runs, session.run_values.named(loaded, case).values()):
                values[_key(under)] = v
    return session.run_values.forward_passes(), results, values


def _key(under) -> tuple:
    from circuitcheck.interventions import run_key

    return run_key(under)


def knocked_sets(path):
    """Every distinct knocked-out node set the file's cases read: {run key: (heads by layer, MLP layers)}.
    A `keep_circuit` run knocks out every head and MLP layer outside the circuit; `knock_out` its nodes."""
    from circuitcheck.files import loader as H

    loaded = H.load(path)
    every = [f"L{l}H{h}" for l in range(loaded.n_layers) for h in range(loaded.n_heads)] + \
            [f"L{l}.mlp" for l in range(loaded.n_layers)]
    out = {}
    for lc in loaded.claims:
        for case in lc.cases:
            for _, under in case.runs:
                knocked = []
                for iv in under:
                    body = iv.body
                    kept = getattr(body, "circuit", None)
                    knocked += [n for n in every if n not in kept.nodes] if kept is not None else list(body.nodes)
                heads, mlps = {}, []
                for n in knocked:
                    if n.endswith(".mlp"):
                        mlps.append(int(n[1:-4]))
                    else:
                        heads.setdefault(int(n[1:n.index("H")]), []).append(int(n[n.index("H") + 1:]))
                out[_key(under)] = (heads, mlps)
    return out


def reference_side(model, tokens, reference, target_pos, io, s, sets):
    """One clean pass for m(M), one over the reference prompts for the means (`method: mean` averages over
    a set drawn apart from the judged prompts), one pass per distinct knocked-out set: logit diff per prompt."""
    import torch

    n_layers = model.cfg.n_layers
    names = [f"blocks.{l}.attn.hook_z" for l in range(n_layers)] + [f"blocks.{l}.hook_mlp_out" for l in range(n_layers)]
    passes = 0
    with torch.inference_mode():
        logits = model(tokens)
        _, cache = model.run_with_cache(reference, names_filter=lambda n: n in names)
        passes += 2
        means = {n: cache[n].mean(0, keepdim=True) for n in names}
        rows = torch.arange(tokens.shape[0])

        def diff(lg):
            at = lg[rows, target_pos].double()
            return (at[rows, io] - at[rows, s]).numpy()

        out = {}
        for key, (heads, mlps) in sets.items():
            if not heads and not mlps:
                out[key] = diff(logits)
                continue
            hooks = []
            for layer, hs in heads.items():
                def z_hook(x, hook, hs=hs, m=means[f"blocks.{layer}.attn.hook_z"]):
                    x = x.clone()
                    x[:, :, hs] = m[:, :, hs]
                    return x
                hooks.append((f"blocks.{layer}.attn.hook_z", z_hook))
            for layer in mlps:
                hooks.append((f"blocks.{layer}.hook_mlp_out",
                              lambda x, hook, m=means[f"blocks.{layer}.hook_mlp_out"]: m.expand_as(x).clone()))
            out[key] = diff(model.run_with_hooks(tokens, fwd_hooks=hooks))
            passes += 1
    return passes, out


def main():
    ap = _common.parser(__doc__)
    args = ap.parse_args()
    import numpy as np
    import torch

    _common.set_torch_threads(THREADS)
    from circuitcheck import load_model
    from circuitcheck.files import loader as H

    folder = Path(tempfile.mkdtemp())
    path = folder / "ioi_circuit.hyp.yaml"
    path.write_text(FILE)
    loaded = H.load(path)
    ps = H.prompt_set(loaded, loaded.claims[0].cases[0].prompts_key, loaded.claims[0].cases[0].prompts)
    spec = H.reference_spec(loaded.claims[0].cases[0].prompts)
    model = load_model("zoo:ioi")
    tokens = torch.as_tensor(ps.tokens)
    reference = torch.as_tensor(H.prompt_set(loaded, H.prompts_key(path, spec), spec).tokens)
    target_pos = torch.as_tensor(ps.target_pos[:, 0])
    io, s = torch.as_tensor(ps.target_tok[:, 0]), torch.as_tensor(ps.target_cf[:, 0])
    sets = knocked_sets(path)
    circuitcheck_side(path)  # warm: the model loads, the prompt set builds
    times = {"circuitcheck": [], "reference": []}
    for _ in range(args.repeats):  # interleaved
        t = time.perf_counter()
        cc_passes, results, cc_values = circuitcheck_side(path)
        times["circuitcheck"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ref_passes, ref_values = reference_side(model, tokens, reference, target_pos, io, s, sets)
        times["reference"].append(time.perf_counter() - t)
    worst = max(float(np.abs(cc_values[k] - ref_values[k]).max()) for k in ref_values)
    cases = sum(len(r.cases) for r in results.values())
    print(f"zoo:ioi, {ps.n} prompts, circuit {CIRCUIT}: 3 claims, {cases} cases, {len(sets)} distinct runs")
    for side, passes in (("circuitcheck", cc_passes), ("reference", ref_passes)):
        print(f"  {side:13s} forward passes {passes:3d}   fastest {min(times[side]):.3f} s   all: "
              + ", ".join(f"{x:.3f}" for x in times[side]))
    print(f"  ratio circuitcheck / reference (fastest): {min(times['circuitcheck']) / min(times['reference']):.2f}x"
          "  (circuitcheck's time includes the intervals: Fieller's construction over the mean bounds)")
    print(f"  largest per-prompt difference between the two sides' values: {worst:.2e}")
    for cid, r in results.items():
        print(f"  {cid}: {r.verdict}, {', '.join(f'{c.label}={c.estimate.statistic:.3f}' for c in r.cases)}")


if __name__ == "__main__":
    main()
