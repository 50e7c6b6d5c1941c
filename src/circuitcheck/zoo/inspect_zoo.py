"""Measure what the shipped zoo models do: attention scores, ablations, direct logit attribution.

    python -m circuitcheck.zoo.inspect_zoo                 # every shipped model, markdown
    python -m circuitcheck.zoo.inspect_zoo induction --json
    python -m circuitcheck.zoo.inspect_zoo --write-card    # refresh the cards' "Measured behaviour"

Mean ablation replaces a head's `hook_z` ([batch, pos, head, d_head]) by its mean over the prompt
batch (per position), taken from the clean run. Head scores use the `transformer_lens.head_detector`
"mul" definition, sum(pattern * detection) / sum(pattern) per sequence, averaged over sequences.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from .. import prompts as P

N_PROMPTS = 500
SEED = 12345


def _z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def _run_ablated(model, tokens, cache, heads):
    """Logits with `heads` [(layer, head), ...] mean-ablated (means from the clean `cache`)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    hooks = []
    for layer, hs in by_layer.items():
        mean = cache[_z(layer)].mean(0, keepdim=True)  # [1, pos, head, d_head]

        def fn(z, hook, hs=hs, mean=mean):
            z = z.clone()
            z[:, :, hs] = mean[:, :, hs].expand(z.shape[0], -1, -1, -1)
            return z

        hooks.append((_z(layer), fn))
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def _score(logits, ps, torch):
    from .readings import target_loss

    loss, acc = target_loss(logits, ps, torch)
    return {"accuracy": round(float(acc), 4), "loss": round(float(loss), 4)}


def _hname(layer, head):
    return f"L{layer}H{head}"


def _norms(model) -> dict:
    """Norm of each head's (W_Q, W_K, W_V, W_O) weights."""
    from .readings import head_norms

    c = model.cfg
    cfg = {"d_head": c.d_head, "n_heads": c.n_heads, "n_layers": c.n_layers}
    n = head_norms(model, cfg).detach()
    return {_hname(l, h): round(float(n[l, h]), 3) for l in range(c.n_layers) for h in range(c.n_heads)}


def measure_max_of_list(model, n: int = N_PROMPTS, seed: int = SEED) -> dict:
    import torch

    ps = P.max_of_list(n, seed)
    tokens = torch.as_tensor(ps.tokens)
    ans = int(ps.positions["ANS"][0])
    argmax = torch.as_tensor(ps.positions["argmax"])
    answer = torch.as_tensor(ps.target_tok[:, 0])
    n_heads = model.cfg.n_heads
    heads = [(0, h) for h in range(n_heads)]
    out: dict = {"n": n, "seed": seed, "weight_norm": _norms(model)}
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        out["clean"] = _score(logits, ps, torch)
        pat = cache[_pattern(0)]  # [batch, head, q, k]
        rows = torch.arange(n)
        out["attn_ans_to_argmax"] = {
            _hname(0, h): round(float(pat[rows, h, ans, argmax].mean()), 4) for h in range(n_heads)
        }
        out["ablate_one"] = {_hname(*hd): _score(_run_ablated(model, tokens, cache, [hd]), ps, torch)
                             for hd in heads}
        out["ablate_pair"] = {
            f"{_hname(*a)}+{_hname(*b)}": _score(_run_ablated(model, tokens, cache, [a, b]), ps, torch)
            for a, b in itertools.combinations(heads, 2)
        }
        out["keep_only"] = {
            _hname(*hd): _score(_run_ablated(model, tokens, cache, [o for o in heads if o != hd]), ps, torch)
            for hd in heads
        }
        out["ablate_all"] = _score(_run_ablated(model, tokens, cache, heads), ps, torch)
        # Direct logit attribution at ANS onto the correct answer's unembedding direction.
        z = cache[_z(0)][:, ans]  # [batch, head, d_head]
        W_O = model.W_O[0]  # [head, d_head, d_model]
        W_U = model.W_U  # [d_model, vocab]
        per_head = torch.einsum("bhd,hdm->bhm", z, W_O)  # [batch, head, d_model]
        u = W_U[:, answer].T  # [batch, d_model]
        contrib = torch.einsum("bhm,bm->bh", per_head, u)
        correct = logits[rows, ans, answer]
        share = contrib / correct[:, None]
        out["correct_logit_mean"] = round(float(correct.mean()), 4)
        out["dla_share"] = {_hname(0, h): round(float(share[:, h].mean()), 4) for h in range(n_heads)}
        out["dla_share_median"] = {_hname(0, h): round(float(share[:, h].median()), 4) for h in range(n_heads)}
        out["dla_logit_mean"] = {_hname(0, h): round(float(contrib[:, h].mean()), 4) for h in range(n_heads)}
        rest = correct - contrib.sum(1)
        out["dla_rest_share"] = round(float((rest / correct).mean()), 4)  # embed + pos + biases
    return out


def _detection_patterns(tokens, torch):
    """[batch, q, k] 0/1 previous-token, duplicate-token and induction patterns (head_detector)."""
    b, s = tokens.shape
    prev = torch.zeros(s, s)
    prev[1:, :-1] = torch.eye(s - 1)
    prev = prev.expand(b, s, s)
    eq = (tokens[:, :, None] == tokens[:, None, :]).float()
    eq = eq * (1 - torch.eye(s))
    dup = torch.tril(eq)
    ind = torch.zeros_like(dup)
    ind[:, :, 1:] = dup[:, :, :-1]
    return {"prev_token": prev, "duplicate_token": dup, "induction": torch.tril(ind)}


def measure_induction(model, n: int = N_PROMPTS, seed: int = SEED, length: int = 10) -> dict:
    import torch

    ps = P.repeated_tokens(n, seed, length=length)
    tokens = torch.as_tensor(ps.tokens)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    all_heads = [(l, h) for l in range(L) for h in range(H)]
    last = [(L - 1, h) for h in range(H)]
    out: dict = {"n": n, "seed": seed, "length": length, "weight_norm": _norms(model)}
    det = _detection_patterns(tokens, torch)
    out["max_possible_score"] = {
        k: round(float((v.sum((1, 2)) / tokens.shape[1]).mean()), 4) for k, v in det.items()
    }
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        out["clean"] = _score(logits, ps, torch)
        scores: dict = {k: {} for k in det}
        for layer in range(L):
            pat = cache[_pattern(layer)]  # [batch, head, q, k]
            for h in range(H):
                p = pat[:, h]
                for k, d in det.items():
                    s = (p * d).sum((1, 2)) / p.sum((1, 2))
                    scores[k][_hname(layer, h)] = round(float(s.mean()), 4)
        out["scores"] = scores
        # Mean attention to the previous token from first-copy queries (positions 1..length), where
        # the previous-token information is what the induction heads' keys need.
        q = torch.arange(1, length + 1)
        out["prev_token_first_copy"] = {
            _hname(layer, h): round(float(cache[_pattern(layer)][:, h, q, q - 1].mean()), 4)
            for layer in range(L) for h in range(H)
        }
        out["ablate_one"] = {_hname(*hd): _score(_run_ablated(model, tokens, cache, [hd]), ps, torch)
                             for hd in all_heads}
        out["ablate_pair_last_layer"] = {
            f"{_hname(*a)}+{_hname(*b)}": _score(_run_ablated(model, tokens, cache, [a, b]), ps, torch)
            for a, b in itertools.combinations(last, 2)
        }
        out["ablate_last_layer"] = _score(_run_ablated(model, tokens, cache, last), ps, torch)
        out["ablate_layer0"] = _score(_run_ablated(model, tokens, cache, [(0, h) for h in range(H)]), ps, torch)
    return out


MEASURES = {"max-of-list": measure_max_of_list, "induction": measure_induction}


def measure(name: str, model) -> dict:
    return MEASURES[name](model)


# --------------------------------------------------------------------------------------------
# markdown


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _al(d):
    return f"{d['accuracy']:.3f}"


def markdown(name: str, m: dict) -> str:
    if name == "max-of-list":
        heads = list(m["attn_ans_to_argmax"])
        parts = [
            f"Measured by `python -m circuitcheck.zoo.inspect_zoo` on {m['n']} held-out prompts "
            f"(`max_of_list`, seed {m['seed']}). Clean accuracy **{_al(m['clean'])}** "
            f"(loss {m['clean']['loss']:.4f}); all heads mean-ablated: {_al(m['ablate_all'])}.",
            "",
            _table(
                ["head", "attn ANS->argmax", "acc. ablated", "acc. only this head kept",
                 "DLA share (mean)", "DLA share (median)", "DLA logit (mean)", "weight norm"],
                [[h, f"{m['attn_ans_to_argmax'][h]:.3f}", _al(m["ablate_one"][h]), _al(m["keep_only"][h]),
                  f"{m['dla_share'][h]:.3f}", f"{m['dla_share_median'][h]:.3f}",
                  f"{m['dla_logit_mean'][h]:.2f}", f"{m['weight_norm'][h]:.2f}"] for h in heads],
            ),
            "",
            f"Correct-answer logit at ANS: mean {m['correct_logit_mean']:.2f}; share from embeddings and "
            f"biases (not heads): {m['dla_rest_share']:.3f}. DLA share = (z @ W_O)[head] . W_U[:, answer] "
            "/ correct logit, per prompt.",
            "",
            "Accuracy with pairs of heads mean-ablated:",
            "",
            _table(["pair", "accuracy"], [[k, _al(v)] for k, v in m["ablate_pair"].items()]),
        ]
        return "\n".join(parts)
    heads = list(m["scores"]["prev_token"])
    mp = m["max_possible_score"]
    parts = [
        f"Measured by `python -m circuitcheck.zoo.inspect_zoo` on {m['n']} held-out sequences "
        f"(`repeated_tokens`, length {m['length']}, seed {m['seed']}), scored on the second-copy targets. "
        f"Clean accuracy **{_al(m['clean'])}**, loss {m['clean']['loss']:.4f}. "
        f"All layer-{int(heads[-1][1])} heads mean-ablated: {_al(m['ablate_last_layer'])} "
        f"(loss {m['ablate_last_layer']['loss']:.3f}); all layer-0 heads: {_al(m['ablate_layer0'])} "
        f"(loss {m['ablate_layer0']['loss']:.3f}).",
        "",
        "Head scores use the head_detector \"mul\" definition (sum(pattern*detection)/sum(pattern) per "
        "sequence, averaged); the largest possible values on these sequences are "
        f"previous-token {mp['prev_token']:.3f}, induction {mp['induction']:.3f}, duplicate-token "
        f"{mp['duplicate_token']:.3f} (rows without a target count as zero). \"attn to prev (1st copy)\" is "
        "the mean attention from first-copy queries (positions 1..length) to the position before; "
        "\"weight norm\" is the norm of the head's (W_Q, W_K, W_V, W_O), which the group-lasso penalty shrinks "
        "for heads the model does not need.",
        "",
        _table(
            ["head", "prev-token", "induction", "duplicate", "attn to prev (1st copy)", "acc. ablated",
             "loss ablated", "weight norm"],
            [[h, f"{m['scores']['prev_token'][h]:.3f}", f"{m['scores']['induction'][h]:.3f}",
              f"{m['scores']['duplicate_token'][h]:.3f}", f"{m['prev_token_first_copy'][h]:.3f}",
              _al(m["ablate_one"][h]),
              f"{m['ablate_one'][h]['loss']:.3f}", f"{m['weight_norm'][h]:.2f}"] for h in heads],
        ),
        "",
        "Pairs of last-layer heads mean-ablated:",
        "",
        _table(["pair", "accuracy", "loss"],
               [[k, _al(v), f"{v['loss']:.3f}"] for k, v in m["ablate_pair_last_layer"].items()]),
    ]
    return "\n".join(parts)


def _write_card(path: Path, section: str) -> None:
    text = path.read_text()
    head = text.split("## Measured behaviour")[0].rstrip("\n")
    path.write_text(head + "\n\n## Measured behaviour\n\n" + section + "\n")


def main(argv: list[str] | None = None) -> int:
    from ..models import ZOO_DIR, ModelSource, load, zoo_names

    ap = argparse.ArgumentParser(prog="python -m circuitcheck.zoo.inspect_zoo", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="zoo models (default: every shipped one that has a measure)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    ap.add_argument("--write-card", action="store_true", help="rewrite the cards' 'Measured behaviour' section")
    args = ap.parse_args(argv)
    chosen = args.names or [n for n in zoo_names() if n in MEASURES]
    results = {}
    for name in chosen:
        if name not in MEASURES:
            ap.error(f"no measurements defined for {name!r}; known: {', '.join(MEASURES)}")
        with contextlib.redirect_stdout(sys.stderr):  # loading prints device/dtype notes
            model = load(ModelSource("zoo", name))
        results[name] = measure(name, model)
        if args.write_card:
            _write_card(ZOO_DIR / name / "card.md", markdown(name, results[name]))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, m in results.items():
            print(f"## zoo:{name}\n\n{markdown(name, m)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
