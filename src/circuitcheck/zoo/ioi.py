"""`zoo:ioi`: a small GPT-2 trained here on indirect-object identification, shipped in Hugging Face format.

    circuitcheck zoo train ioi --out DIR             # writes DIR/ (the shipped one: zoo/models/ioi/)
    circuitcheck zoo train ioi --steps 20 --out DIR  # smoke run

The directory is what `transformers` writes (`config.json`, `model.safetensors`, `tokenizer.json`,
`tokenizer_config.json`), so the model loads through the `hf:` route, offline; `training.json`
keeps the task and training settings, `card.md` what formed. The tokenizer is word-level (the
`tokenizers` library, split on whitespace and punctuation) over the task's words, with the GPT-2
convention of one `<|endoftext|>` token as BOS.

Training text is built by the `text` prompt generator the hypothesis files use (through the
saved tokenizer): IOI sentences over 12 templates (two orders, ABBA and BABA, of 6 sentences;
two more held out), plus repeated random word sequences (`BOS w1..wk w1..wk`) so that induction
heads have a reason to form. Loss: next-token cross-entropy on every token, plus the
cross-entropy at the IOI answer.
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path

import numpy as np

from ..prompts import text as T
from .train import EVAL_SEED, TRAIN_SEED_BASE, ZOO_MODELS, _lr_factor, reproduce, reproducible_cpu

BOS = "<|endoftext|>"
NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "Kate", "James", "Sarah", "David", "Emma", "Paul",
         "Laura", "Mark", "Lisa", "Peter", "Jane", "Mike", "Susan", "Chris", "Helen", "Dan", "Amy", "Sam",
         "Rose", "Jack", "Lucy", "Ben", "Grace", "Max", "Ruth", "Carl", "Nina", "Ray", "Eve", "Adam"]
PLACES = ["store", "park", "school", "office", "garden", "station", "market", "beach"]
OBJECTS = ["drink", "book", "ball", "letter", "gift", "key", "ring", "snack"]
SENTENCES = [
    "When {A} and {B} went to the {PLACE} , {S} gave a {OBJECT} to",
    "Then , {A} and {B} had a long day at the {PLACE} . {S} handed a {OBJECT} to",
    "After {A} and {B} met at the {PLACE} , {S} sent a {OBJECT} to",
    "{A} and {B} were working at the {PLACE} . {S} decided to give a {OBJECT} to",
    "While {A} and {B} were at the {PLACE} , {S} threw a {OBJECT} to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE} . {S} gave it to",
]
HELD_OUT = ["The {PLACE} was quiet when {A} and {B} arrived . {S} passed a {OBJECT} to"]


def templates(sentences: list[str]) -> list[str]:
    """Each sentence in both orders: BABA ({IO} first) and ABBA ({S} first)."""
    out = []
    for s in sentences:
        out.append(s.replace("{A}", "{IO}").replace("{B}", "{S}"))
        out.append(s.replace("{A}", "{S}").replace("{B}", "{IO}"))
    return out


SLOTS = {"IO": NAMES, "S": NAMES, "PLACE": PLACES, "OBJECT": OBJECTS}

SPEC: dict = {
    "config": {  # transformers.GPT2Config
        "vocab_size": None,  # set from the tokenizer
        "n_positions": 24,
        "n_embd": 64,
        "n_layer": 3,
        "n_head": 4,
        "n_inner": 256,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": True,
    },
    "task": ("indirect-object identification over templated sentences: 'When {IO} and {S} went to the "
             "{PLACE} , {S} gave a {OBJECT} to' -> IO; 36 names, 8 places, 8 objects, 12 templates (6 "
             "sentences in ABBA and BABA order), 2 more held out; plus repeated random word sequences"),
    "prompts": {"generator": "text", "template": templates(SENTENCES), "slots": SLOTS, "answer": "IO",
                "counterfactual": "S"},
    "training": {
        "steps": 3000,
        "batch_size": 96,
        "repeat_fraction": 0.25,
        "repeat_length": [4, 10],
        "lr": 2e-3,
        "weight_decay": 0.05,
        "betas": [0.9, 0.98],
        "warmup_steps": 100,
        "schedule": "linear warmup, cosine decay to 10%",
        "optimizer": "AdamW",
        "loss": "next-token cross-entropy on every token (padding excluded), plus the cross-entropy at the answer",
    },
    "eval": {"n": 1000, "seed": EVAL_SEED},
}


# --------------------------------------------------------------------------------------------
# tokenizer


def vocabulary() -> list[str]:
    """Every word of the task, in a fixed order: BOS, unknown, the template words, the slot values."""
    words = [BOS, "<unk>"]
    for t in SENTENCES + HELD_OUT:
        for w in T.SLOT.sub(" ", t).split():
            if w not in words:
                words.append(w)
    for values in (NAMES, PLACES, OBJECTS):
        words += [v for v in values if v not in words]
    return words


def write_tokenizer(out: Path):
    """A word-level tokenizer over `vocabulary()`, saved as transformers does (tokenizer.json + config)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = vocabulary()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, unk_token="<unk>")
    fast.save_pretrained(str(out))
    T.load_tokenizer.cache_clear()
    T.bos_id.cache_clear()
    return len(words)


# --------------------------------------------------------------------------------------------
# data


def ioi_batch(n: int, seed: int, tokenizer: str, sentences: list[str] = SENTENCES):
    """IOI prompts, one template per prompt, right-padded to one length: (tokens, mask, end, answer, s)."""
    rng = np.random.default_rng(seed)
    ts = templates(sentences)
    counts = np.bincount(rng.integers(len(ts), size=n), minlength=len(ts))
    sets = [T.text(int(c), seed * 31 + i, t, SLOTS, "IO", "S", tokenizer) for i, (t, c) in enumerate(zip(ts, counts)) if c]
    width = max(s.seq_len for s in sets)
    tokens = np.concatenate([np.pad(s.tokens, ((0, 0), (0, width - s.seq_len))) for s in sets])
    mask = np.concatenate([np.pad(np.ones_like(s.tokens), ((0, 0), (0, width - s.seq_len))) for s in sets])
    end = np.concatenate([s.positions["end"] for s in sets])
    answer = np.concatenate([s.target_tok[:, 0] for s in sets])
    other = np.concatenate([s.target_cf[:, 0] for s in sets])
    return tokens, mask, end, answer, other


def repeat_batch(n: int, seed: int, vocab: int, length: int):
    """`BOS w1..wk w1..wk` over the non-special words (ids 2..vocab-1)."""
    from ..prompts import repeated_tokens

    ps = repeated_tokens(n, seed, length=length, vocab=vocab, bos=0, low=2)
    return ps.tokens, np.ones_like(ps.tokens)


def train_batch(spec: dict, step: int, seed: int, tokenizer: str, vocab: int, width: int):
    tr = spec["training"]
    data_seed = TRAIN_SEED_BASE * (seed + 1) + step
    n_rep = int(round(tr["batch_size"] * tr["repeat_fraction"]))
    tokens, mask, end, answer, _ = ioi_batch(tr["batch_size"] - n_rep, data_seed, tokenizer)
    lo, hi = tr["repeat_length"]
    length = int(np.random.default_rng(data_seed).integers(lo, hi + 1))
    rt, rm = repeat_batch(n_rep, data_seed + 7, vocab, length)
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])))  # noqa: E731
    tokens = np.concatenate([pad(tokens), pad(rt)])
    mask = np.concatenate([pad(mask), pad(rm)])
    return tokens, mask, end, answer


def _loss(logits, tokens, mask, end, answer, torch):
    F = torch.nn.functional
    lp = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    m = mask[:, 1:].to(lp.dtype)
    lm = (lp * m).sum() / m.sum()
    n = end.shape[0]
    la = F.cross_entropy(logits[torch.arange(n), end], answer)
    return lm + la, lm, la


# --------------------------------------------------------------------------------------------
# evaluation


def evaluate(model, tokenizer: str, n: int, seed: int, sentences=SENTENCES) -> dict:
    """Accuracy, logit difference IO - S and the share of prompts where IO beats S, at the end."""
    import torch

    tokens, mask, end, answer, s = ioi_batch(n, seed, tokenizer, sentences)
    with torch.no_grad():
        logits = model(torch.as_tensor(tokens), attention_mask=torch.as_tensor(mask)).logits
    at = logits[torch.arange(len(end)), torch.as_tensor(end)]
    io_logit = at.gather(1, torch.as_tensor(answer)[:, None])[:, 0]
    s_logit = at.gather(1, torch.as_tensor(s)[:, None])[:, 0]
    diff = io_logit - s_logit
    return {"n": int(len(end)), "seed": seed, "accuracy": round(float((at.argmax(-1) == torch.as_tensor(answer)).float().mean()), 4),
            "logit_diff_io_s": round(float(diff.mean()), 3), "io_beats_s": round(float((diff > 0).float().mean()), 4)}


# --------------------------------------------------------------------------------------------
# training


def train(steps: int | None = None, out: str | Path | None = None, seed: int = 0, measure: bool = True,
          verbose: bool = False) -> dict:
    """Train `zoo:ioi` and write its Hugging Face directory to `out` (default zoo/models/ioi)."""
    spec = copy.deepcopy(SPEC)
    tr = spec["training"]
    default_steps = tr["steps"]
    steps = default_steps if steps is None else int(steps)
    tr["steps"], tr["seed"] = steps, seed
    out = Path(out) if out is not None else ZOO_MODELS / "ioi"
    if out == ZOO_MODELS / "ioi" and steps != default_steps:
        raise ValueError("a run with non-default --steps must write elsewhere: pass --out DIR")
    out.mkdir(parents=True, exist_ok=True)
    with _staged(out) as stage:  # every file is written here, and moved into `out` only at the end
        return _train(spec, steps, seed, measure, verbose, stage, out)


def _train(spec: dict, steps: int, seed: int, measure: bool, verbose: bool, stage: Path, out: Path) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tr = spec["training"]
    vocab = write_tokenizer(stage)
    tokenizer = str(stage)
    spec["config"]["vocab_size"] = vocab
    width = spec["config"]["n_positions"]

    with reproducible_cpu():  # one thread, deterministic: the same model every run
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config(bos_token_id=0, eos_token_id=0, **spec["config"]))
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"], betas=tuple(tr["betas"]))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, tr["warmup_steps"]))
        t0 = time.perf_counter()
        history = []
        for step in range(steps):
            tokens, mask, end, answer = (torch.as_tensor(a) for a in train_batch(spec, step, seed, tokenizer, vocab, width))
            # Right padding under a causal mask cannot reach the real tokens; the loss skips it.
            logits = model(tokens).logits
            loss, lm, la = _loss(logits, tokens, mask, end, answer, torch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append((lm.item(), la.item()))
            if verbose and (step % 250 == 0 or step == steps - 1):
                print(f"[ioi] step {step:5d}  lm {lm.item():.4f}  answer {la.item():.4f}  "
                      f"{time.perf_counter() - t0:.0f}s", flush=True)
        train_time = time.perf_counter() - t0
        model.eval()
        last = np.array(history[-50:])
        metrics = {
            "name": "ioi", "steps": steps, "seed": seed, "train_time_s": round(train_time, 1),
            "final_train_loss": round(float(last[:, 0].mean()), 4) if len(last) else None,
            "final_answer_loss": round(float(last[:, 1].mean()), 4) if len(last) else None,
            "torch_version": torch.__version__, "torch_threads": 1,
            "held_out": evaluate(model, tokenizer, spec["eval"]["n"], spec["eval"]["seed"]),
            "held_out_templates": evaluate(model, tokenizer, spec["eval"]["n"], spec["eval"]["seed"], HELD_OUT),
            "n_params": sum(p.numel() for p in model.parameters()),
        }
        model.save_pretrained(str(stage))
        (stage / "generation_config.json").unlink(missing_ok=True)  # not used; fewer files to ship
        _, metrics["reload_max_abs_diff"] = _check_reload(stage, model, tokenizer)
        (stage / "training.json").write_text(json.dumps({**{k: spec[k] for k in ("task", "prompts", "training", "eval")},
                                                         "metrics": metrics}, indent=2) + "\n")
        write_card(stage, measure)
        metrics["out"] = str(out)
        return metrics


# --------------------------------------------------------------------------------------------
# what formed, measured with circuitcheck's own runs, interventions and measures

PATTERNS = ("duplicate_token", "previous_token", "induction")
ATTENTION = {"S1+1->S1": ("S+1", "S"), "S2->S1": ("S#2", "S"), "S2->S1+1": ("S#2", "S+1"), "end->IO": ("end", "IO"),
             "end->S1": ("end", "S"), "end->S2": ("end", "S#2")}


def measure_model(model, tokenizer: str | Path = ZOO_MODELS / "ioi", n: int = 300, seed: int = 0) -> dict:
    """Head scores on IOI and repeated-word prompts, logit difference IO - S, and the effect of
    mean-ablating each head (and each head with the strongest one already ablated: backup)."""
    from ..measures import attention, head_score, metric
    from ..language.names import all_heads, pattern_name
    from ..prompts import repeated_tokens
    from ..runs.engine import Runs

    heads = all_heads(model.cfg)
    patterns = {pattern_name(layer) for layer in range(model.cfg.n_layers)}
    ioi_ps = T.text(n, seed, SPEC["prompts"]["template"][0], SLOTS, "IO", "S", str(tokenizer))
    rep_ps = repeated_tokens(n, seed, length=8, vocab=model.cfg.d_vocab, bos=0, low=2)
    out: dict = {"n": n, "seed": seed, "template": SPEC["prompts"]["template"][0]}
    runs = Runs(model, ioi_ps)
    clean = runs.clean(patterns)
    mean = lambda x: round(float(np.mean(x)), 4)  # noqa: E731
    out["clean"] = {m: mean(metric.metric(m, clean.logits, ioi_ps)) for m in ("accuracy", "logit_diff", "rank")}
    out["ioi_scores"] = {k: {h: mean(head_score.head_score(clean.cache, ioi_ps, h, k)) for h in heads} for k in PATTERNS}
    for key, (src, dst) in ATTENTION.items():
        out[key] = {h: mean(attention.attention(clean.cache, ioi_ps, h, src, dst)) for h in heads}
    rep = Runs(model, rep_ps).clean(patterns)
    out["repeat_scores"] = {k: {h: mean(head_score.head_score(rep.cache, rep_ps, h, k)) for h in heads} for k in PATTERNS}
    out["repeat_accuracy"] = mean(metric.metric("accuracy", rep.logits, rep_ps))
    out["ablate_one"] = {h: _ablated(runs, ioi_ps, [h]) for h in heads}
    top = min(heads, key=lambda h: out["ablate_one"][h]["logit_diff"])
    out["strongest"] = top
    out["ablate_with_strongest"] = {h: _ablated(runs, ioi_ps, [top, h]) for h in heads if h != top}
    return out


def _ablated(runs, ps, heads) -> dict:
    from ..measures import attention, head_score, metric
    from ..files.spec import Intervention

    under = (Intervention.model_validate({"ablate": {"heads": heads, "method": "mean"}}),)
    logits = runs.run(under, set()).logits
    return {m: round(float(np.mean(metric.metric(m, logits, ps))), 4) for m in ("accuracy", "logit_diff", "rank")}


def markdown(m: dict) -> str:
    heads = list(m["ablate_one"])
    rows = ["| head | dup (IOI) | prev (IOI) | induction (IOI) | " + " | ".join(ATTENTION) + " | dup (rep) | prev (rep) "
            "| induction (rep) | logit diff, head ablated | rank, head ablated |",
            "|" + "---|" * (9 + len(ATTENTION))]
    for h in heads:
        rows.append("| " + " | ".join([h] + [f"{m['ioi_scores'][k][h]:.3f}" for k in PATTERNS]
                                      + [f"{m[k][h]:.3f}" for k in ATTENTION]
                                      + [f"{m['repeat_scores'][k][h]:.3f}" for k in PATTERNS]
                                      + [f"{m['ablate_one'][h]['logit_diff']:.3f}", f"{m['ablate_one'][h]['rank']:.3f}"])
                    + " |")
    return "\n".join(rows)


def _check_reload(out: Path, model, tokenizer: str):
    """Load the directory the way `hf:` does; the bridge must give the trained model's logits."""
    import torch

    from ..models import LoadOptions, ModelSource, load_hf, prepare

    bridge = prepare(load_hf(ModelSource("hf", str(out))), LoadOptions())
    tokens, *_ = ioi_batch(64, EVAL_SEED, tokenizer)
    with torch.no_grad():
        diff = (bridge(torch.as_tensor(tokens)) - model(torch.as_tensor(tokens)).logits).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"the reloaded model differs from the trained one (max |dlogit| = {diff})")
    return bridge, diff


# --------------------------------------------------------------------------------------------
# card

# What the measurements mean, written after looking at them (seed 0, the shipped model).
NOTES = """\
Formed (the numbers are in the tables above; `hypotheses/ioi.hyp.yaml` states them as claims):

- **A previous-token head, L0H0**: previous-token score 0.42 on repeated sequences (of a possible
  0.94), about twice any other head's; on IOI sentences the token after S1 attends to S1 with 0.69.
- **Induction heads in layer 1, L1H0, L1H1, L1H3** (0.34 to 0.36 of a possible 0.47 on repeated
  sequences; L1H2 weaker, 0.19), formed from the repeated-sequence part of the data: previous-token
  head in layer 0, induction in layer 1, the classic two-layer circuit.
- **The same layer-1 heads move names**: at the end of an IOI sentence each attends to IO (0.44 to
  0.49) and to S1 (0.34 to 0.46), so both names become likely next tokens. Ablating all four drops
  the answer from rank 1 to about 18 while the logit difference IO - S barely moves: they choose
  names, not which name.
- **An S-attending head that decides IO over S, L2H0**: the end attends to S2 with 0.95, and
  mean-ablating it alone cuts the logit difference IO - S from about 12.7 to 1.4 (accuracy 1.0 to
  0.9). It plays the part of the IOI paper's S-inhibition and negative heads in one.
- **A head that works against the answer, L2H1**: the end attends to S1 with 0.99, and ablating
  it raises the logit difference IO - S from 12.7 to 14.2.
- **An induction-like attention at S2, L2H3**: S2 attends to the token after S1 with 0.92 (seed
  002's "induction head 5.5: period attends to names"); it is not an induction head on random
  sequences (0.03) and, in the last layer at S2, cannot affect the answer.
- **Redundancy (seed 003)**: no single layer-1 head matters alone (accuracy stays at least 0.98), all
  four together do (0.08); and each layer-1 head's effect rises once L2H0 is ablated (accuracy 0.9
  with L2H0 gone, 0.58 to 0.69 with one layer-1 head gone too).

Did not form:

- **No duplicate-token head**: S2 attends to S1 with at most 0.05 in every head; the model finds the
  repeated name from the end (L2H0 attends to S2, whose position the templates fix), not at S2.
- **No backup head in the IOI paper's sense** (a later head that takes over when a name mover is
  ablated): L2H0 is in the last layer, so nothing after it can compensate; what rises when it is
  ablated is the effect of the earlier layer-1 heads, measured above. The name movers here are the
  layer-1 heads, and layer 2 comes after them, so that is where a backup head would be. Measured
  (`circuitcheck measure`, 300 prompts of `hypotheses/ioi.hyp.yaml`'s template, `dla` with
  `share: false`: each head's direct logit attribution to IO): mean-ablating L1H0, which carries
  2.14, raises the layer-2 heads' by 0.05 to 0.07 (L2H3 0.11 to 0.18), and the other layer-1 heads'
  by 0.21 to 0.27, although no head can react to a head of its own layer: that rise, 10 to 13% of
  each head's attribution, is the final LayerNorm's scale growing. It accounts for most of L2H1's
  and L2H2's (16%); only L2H3 rises beyond it, by about 0.06, 3% of what L1H0 carried. Ablating
  L1H3 (2.13) gives the same picture (layer 2: +0.01 to +0.07). Not retrained for it.
- **Generalisation to unseen sentences is weak**: on the held-out sentence the answer is right in
  24% of prompts (IO above S in 61%), against 100% on the training templates.
"""


def write_card(out: Path = ZOO_MODELS / "ioi", measure: bool = True) -> None:
    """card.md from training.json and, with `measure`, from measuring the model in `out` anew."""
    from ..models import LoadOptions, ModelSource, load_hf, prepare

    doc = json.loads((out / "training.json").read_text())
    spec = {**doc, "config": json.loads((out / "config.json").read_text())}
    metrics = doc["metrics"]
    measured = measure_model(prepare(load_hf(ModelSource("hf", str(out))), LoadOptions()), out) if measure else None
    (out / "card.md").write_text(card(spec, metrics, measured, default=metrics["steps"] == SPEC["training"]["steps"]))


def card(spec: dict, metrics: dict, measured: dict | None, default: bool) -> str:
    cfg, tr = spec["config"], spec["training"]
    cmd = "circuitcheck zoo train ioi --out DIR" + ("" if default else f" --steps {tr['steps']}") + \
        (f" --seed {metrics['seed']}" if metrics["seed"] else "")
    ho, ht = metrics["held_out"], metrics["held_out_templates"]
    lines = [
        "# zoo:ioi",
        "",
        f"**Task.** {spec['task']}.",
        "",
        "A Hugging Face directory (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`):",
        "a file names it `model: zoo:ioi` (or `model: hf:PATH/TO/zoo/models/ioi`); it loads through",
        "`TransformerBridge.boot_transformers` from this directory, offline. Text prompts use its tokenizer:",
        "`prompts: {generator: text, template: ..., slots: ..., answer: IO, counterfactual: S}`.",
        "",
        "## Architecture",
        "",
        f"`transformers` GPT-2 (`GPT2LMHeadModel`): {cfg['n_layer']} layers x {cfg['n_head']} heads, d_model "
        f"{cfg['n_embd']}, MLP width {cfg['n_inner']} ({cfg['activation_function']}), LayerNorm before each block and "
        f"at the end, learned positions (n_ctx {cfg['n_positions']}), tied embedding and unembedding, no dropout; "
        f"{metrics['n_params']:,} parameters. Tokenizer: word-level (`tokenizers` WordLevel, whitespace and "
        f"punctuation split), {cfg['vocab_size']} tokens: `<|endoftext|>` (BOS, id 0), `<unk>`, the template words, "
        f"{len(NAMES)} names, {len(PLACES)} places, {len(OBJECTS)} objects.",
        "",
        "## Training",
        "",
        f"- {tr['steps']} steps of {tr['optimizer']} (lr {tr['lr']}, betas {tuple(tr['betas'])}, weight decay "
        f"{tr['weight_decay']}, {tr['schedule']}), batch {tr['batch_size']}, seed {metrics['seed']} "
        "(`torch.manual_seed`, one thread, deterministic algorithms).",
        f"- Data, fresh each step: {1 - tr['repeat_fraction']:.0%} IOI sentences from the `text` generator over the "
        f"{len(SENTENCES) * 2} training templates; {tr['repeat_fraction']:.0%} repeated random word sequences "
        f"`BOS w1..wk w1..wk`, k from {tr['repeat_length'][0]} to {tr['repeat_length'][1]} (so that induction has "
        "a reason to form). Right-padded to n_ctx; padding is excluded from the loss.",
        f"- Loss: {tr['loss']}.",
        f"- Final training loss (mean of the last 50 steps): language model {metrics['final_train_loss']}, "
        f"answer {metrics['final_answer_loss']}.",
        f"- Wall time: {metrics['train_time_s']} s on a shared 2-core CPU (torch {metrics['torch_version']}).",
        f"- Training data seeds: {TRAIN_SEED_BASE} * (seed + 1) + step; evaluation seed {spec['eval']['seed']}.",
        "",
        "## Held-out evaluation",
        "",
        f"{ho['n']} prompts at the answer position (`end`), training templates, seed {ho['seed']}: accuracy "
        f"**{ho['accuracy']:.4f}**, logit difference IO - S {ho['logit_diff_io_s']:.3f}, IO above S in "
        f"{ho['io_beats_s']:.1%} of prompts.",
        f"On the held-out sentence (`{templates(HELD_OUT)[0]}`, both orders): accuracy {ht['accuracy']:.4f}, logit difference "
        f"{ht['logit_diff_io_s']:.3f}, IO above S in {ht['io_beats_s']:.1%}.",
        "",
        *reproduce(cmd),
    ]
    if measured is not None:
        c = measured["clean"]
        lines += [
            "## Measured behaviour",
            "",
            f"circuitcheck's own measures (`circuitcheck.zoo.ioi.measure_model`), {measured['n']} prompts of "
            f"`{measured['template']}` (seed {measured['seed']}) and as many repeated random word sequences "
            f"(`repeated_tokens`, length 8). Clean: accuracy {c['accuracy']}, logit difference IO - S "
            f"{c['logit_diff']}, rank of IO {c['rank']}. Head scores are transformer_lens.head_detector's \"mul\" "
            "score; the arrows are mean attention weights between named positions; the last two columns "
            "mean-ablate one head.",
            "",
            markdown(measured),
            "",
            f"Backup: with the strongest head ({measured['strongest']}) mean-ablated, each other head also ablated:",
            "",
            "| also ablated | accuracy | logit diff | rank |",
            "|---|---|---|---|",
            *[f"| {h} | {v['accuracy']:.3f} | {v['logit_diff']:.3f} | {v['rank']:.3f} |"
              for h, v in measured["ablate_with_strongest"].items()],
            "",
            "## What formed",
            "",
            NOTES,
            "",
        ]
    return "\n".join(lines)


@contextlib.contextmanager
def _staged(out: Path):
    """A folder inside `out` (one file system: renames are atomic) that the block fills with the whole
    model: tokenizer, config, weights, training.json, card. When the block ends, the files replace
    `out`'s: its old weights go first and the new weights come last, so that an interruption at any
    point leaves either the old model whole, or a folder without model.safetensors, never a
    complete-looking folder whose tokenizer, config and weights come from different runs. When the
    block raises (Ctrl-C while training), `out` is left as it was. Other files in `out` are kept."""
    import os
    import shutil

    stage = out / f".partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        (out / "model.safetensors").unlink(missing_ok=True)
        for f in sorted(stage.iterdir(), key=lambda f: f.name == "model.safetensors"):
            f.chmod(0o644)
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
