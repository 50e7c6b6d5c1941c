"""Train the zoo models from scratch on CPU, seeded and deterministic.

    circuitcheck zoo train max-of-list --out DIR          # writes DIR/{model.safetensors,config.json,card.md}
    circuitcheck zoo train all --out DIR                  # DIR/max-of-list/, DIR/induction/
    circuitcheck zoo train induction --steps 20 --out /tmp/smoke   # quick smoke run

Reproducible: with the same torch build and CPU, the same prompt generators and the default
steps and seed, retraining writes a byte-identical `model.safetensors` (its sha256 is on the card;
checked for both models with torch 2.13.0+cpu on x86-64). Training is chaotic, so another torch
version or CPU kernel set can move the last bits and, from there, which head does what.

Training data comes from the prompt generators in `circuitcheck.prompts` (the same ones the
hypothesis files use), drawn fresh each step with seeds that never collide with evaluation seeds.
The model is a TransformerLens 4 `TransformerBridge` built with `boot_native` and trained
directly (plain AdamW loop); its `state_dict()` is what ships.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from ..files import atomic
from .. import prompts as P
from .readings import head_norms, target_loss

ZOO_MODELS = Path(__file__).parent / "models"

# Training batches use seeds TRAIN_SEED_BASE * (seed + 1) + step; evaluation uses small seeds
# (12345 by default), so held-out prompts are never drawn from a training seed.
TRAIN_SEED_BASE = 1_000_003
EVAL_SEED = 12345

SPECS: dict[str, dict] = {
    "max-of-list": {
        "config": {
            "d_model": 32,
            "d_head": 8,
            "n_heads": 4,
            "n_layers": 1,
            "n_ctx": 6,
            "d_vocab": 11,
            "attn_only": True,
            "normalization_type": None,
            "act_fn": "relu",
            "seed": 0,
        },
        "task": (
            "max of list: 5 digits 0..9 then ANS (token 10); predict the list's maximum at ANS "
            "(position 5)"
        ),
        "prompts": {"generator": "max_of_list", "length": 5, "digits": 10, "ans_token": 10},
        "training": {
            "steps": 2000,
            "batch_size": 256,
            "lr": 3e-3,
            "weight_decay": 0.01,
            "betas": [0.9, 0.98],
            "warmup_steps": 100,
            "schedule": "linear warmup, cosine decay to 10%",
            "optimizer": "AdamW",
            "loss": "cross-entropy at the ANS position only (target_pos/target_tok)",
            "unique_max_false_fraction": 0.5,
        },
        "eval": {"n": 2000, "seed": EVAL_SEED, "params": {}},
    },
    "induction": {
        "config": {
            "d_model": 64,
            "d_head": 16,
            "n_heads": 4,
            "n_layers": 2,
            "n_ctx": 32,
            "d_vocab": 64,
            "attn_only": True,
            "normalization_type": None,
            "act_fn": "relu",
            "seed": 0,
        },
        "task": (
            "induction on repeated random tokens: BOS(0), a segment of distinct tokens from 1..63, "
            "the same segment again; predict each next token (the second copy is predictable)"
        ),
        "prompts": {"generator": "repeated_tokens", "length": 10, "vocab": 64, "bos": 0},
        "training": {
            "steps": 2500,
            "batch_size": 64,
            "lr": 3e-3,
            "weight_decay": 0.01,
            "betas": [0.9, 0.98],
            "warmup_steps": 100,
            "schedule": "linear warmup, cosine decay to 10%",
            "optimizer": "AdamW",
            "loss": "cross-entropy on all next-token predictions",
            "length_range": [5, 15],
            # Group-lasso penalty (sum over heads of the norm of each head's W_Q, W_K, W_V, W_O),
            # ramped in linearly over steps 800..1400, after induction has formed. Without it all
            # four layer-1 heads become near-identical induction heads and the layer-0
            # previous-token job is smeared over all four heads; with it one layer-0 head does
            # the previous-token job and two layer-1 heads carry induction.
            "head_group_lasso": 0.015,
            "head_group_lasso_ramp": [800, 1400],
        },
        "eval": {"n": 2000, "seed": EVAL_SEED, "params": {}},
    },
}


def names() -> list[str]:
    return list(SPECS)


# --------------------------------------------------------------------------------------------
# data and loss


def _prompt_params(spec: dict) -> dict:
    return {k: v for k, v in spec["prompts"].items() if k != "generator"}


def _train_batch(name: str, spec: dict, step: int, seed: int) -> P.PromptSet:
    tr = spec["training"]
    data_seed = TRAIN_SEED_BASE * (seed + 1) + step
    params = _prompt_params(spec)
    bs = tr["batch_size"]
    if name == "max-of-list":
        n_any = int(round(bs * tr.get("unique_max_false_fraction", 0.0)))
        uniq = P.max_of_list(bs - n_any, data_seed, **params)
        if n_any == 0:
            return uniq
        anym = P.max_of_list(n_any, data_seed + TRAIN_SEED_BASE // 2, unique_max=False, **params)
        return P.PromptSet(
            np.concatenate([uniq.tokens, anym.tokens]),
            {},
            np.concatenate([uniq.target_pos, anym.target_pos]),
            np.concatenate([uniq.target_tok, anym.target_tok]),
            "max_of_list",
        )
    if name == "induction":
        lo, hi = tr["length_range"]
        length = int(np.random.default_rng(data_seed).integers(lo, hi + 1))
        return P.repeated_tokens(bs, data_seed, **{**params, "length": length})
    raise KeyError(name)


def _loss(name: str, logits, ps: P.PromptSet, torch):
    """The training loss: ANS position only (max-of-list), all next tokens (induction)."""
    F = torch.nn.functional
    if name == "induction":
        tokens = torch.as_tensor(ps.tokens)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    return target_loss(logits, ps, torch)[0]


def eval_prompts(spec: dict, n: int | None = None, seed: int | None = None) -> P.PromptSet:
    ev = spec["eval"]
    params = {**_prompt_params(spec), **ev.get("params", {})}
    return P.build(spec["prompts"]["generator"], n or ev["n"], ev["seed"] if seed is None else seed, **params)


def evaluate(model, spec: dict, n: int | None = None, seed: int | None = None) -> dict:
    import torch

    ps = eval_prompts(spec, n, seed)
    with torch.no_grad():
        logits = model(torch.as_tensor(ps.tokens))
        loss, acc = target_loss(logits, ps, torch)
    return {"n": ps.n, "seed": ev_seed(spec, seed), "loss": float(loss), "accuracy": float(acc)}


def ev_seed(spec, seed):
    return spec["eval"]["seed"] if seed is None else seed


# --------------------------------------------------------------------------------------------
# training


def _ramp(step: int, ramp) -> float:
    start, end = ramp
    return min(1.0, max(0.0, (step - start) / max(1, end - start)))


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def center_unembed(model) -> None:
    """Subtract the mean over the vocabulary from the unembedding (softmax is unchanged).

    Logits then sum to zero at each position, so a head's direct logit attribution onto the
    correct answer is measured against the mean logit rather than an arbitrary offset.
    """
    import torch

    sd = model.state_dict(keep_vars=True)
    with torch.no_grad():
        w = sd["unembed.weight"]  # [vocab, d_model]
        w -= w.mean(0, keepdim=True)
        b = sd["unembed.bias"]
        b -= b.mean()


def build_model(config: dict):
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_native(TransformerBridgeConfig(**config))


def train(name: str, out: str | Path, steps: int | None = None, seed: int = 0,
          measure: bool = True, verbose: bool = False, save_every: int | None = None) -> dict:
    """Train zoo model `name` and write it to the folder `out` (nowhere else); returns metrics.

    `steps` overrides the default number of steps (a smoke run: `steps=20`). `seed` seeds the
    initialisation and the training data; the shipped models use seed 0. `save_every` also writes
    `out/step-N/` (config.json + model.safetensors) every N steps and at the last step: a
    checkpoint series for `--cc-model zoo:NAME='out/step-*'`.
    """
    import torch

    if name not in SPECS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(SPECS)}")
    spec = copy.deepcopy(SPECS[name])
    tr = spec["training"]
    default_steps = tr["steps"]
    steps = default_steps if steps is None else int(steps)
    tr["steps"] = steps
    tr["seed"] = seed
    spec["config"]["seed"] = seed
    out = Path(out)
    if out.resolve() == (ZOO_MODELS / name).resolve() and (steps != default_steps or save_every):
        raise ValueError("a run with non-default --steps or with --save-every must write elsewhere: pass --out DIR")

    with reproducible_cpu() as deterministic:
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = build_model(spec["config"])
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"],
                                betas=tuple(tr["betas"]))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, tr["warmup_steps"]))
        t0 = time.perf_counter()
        losses: list[float] = []
        for step in range(steps):
            ps = _train_batch(name, spec, step, seed)
            logits = model(torch.as_tensor(ps.tokens))
            loss = task_loss = _loss(name, logits, ps, torch)
            if tr.get("head_group_lasso"):
                lam = tr["head_group_lasso"] * _ramp(step, tr.get("head_group_lasso_ramp", [0, 1]))
                if lam > 0:
                    loss = loss + lam * head_norms(model, spec["config"]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(task_loss.item())
            if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
                _save(out / f"step-{step + 1}", spec, model)
            if verbose and (step % 250 == 0 or step == steps - 1):
                print(f"[{name}] step {step:5d}  loss {loss.item():.4f}", flush=True)
        train_time = time.perf_counter() - t0
        model.eval()
        center_unembed(model)
        held_out = evaluate(model, spec)
        final_loss = float(np.mean(losses[-50:])) if losses else float("nan")
        metrics = {
            "name": name,
            "steps": steps,
            "seed": seed,
            "final_train_loss": final_loss,
            "train_time_s": round(train_time, 1),
            "deterministic_algorithms": deterministic,
            "torch_threads": 1,
            "torch_version": torch.__version__,
            "held_out": held_out,
        }
        spec["training"]["final_train_loss_last50"] = round(final_loss, 5)
        spec["eval"].update({"loss": round(held_out["loss"], 5), "accuracy": round(held_out["accuracy"], 5)})
        measured = None
        if measure:
            from . import inspect_zoo

            measured = inspect_zoo.measure(name, model)
            metrics["measured"] = measured
        _write(out, name, spec, model, metrics, measured, default=steps == default_steps)
        if save_every:
            _save(out / f"step-{steps}", spec, model)
        metrics["out"] = str(out)
        metrics["reload_max_abs_diff"] = _check_reload(out, model, spec)
        return metrics


@contextlib.contextmanager
def reproducible_cpu():
    """Train on one torch thread with deterministic algorithms and subnormals flushed; yields
    whether deterministic algorithms are on; puts every setting back afterwards."""
    import torch

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    # Once attention gets sharp, softmax produces subnormal floats that slow CPU training ~10x.
    flushed = torch.set_flush_denormal(True)
    # One thread: CPU kernels may reduce in a different order with more threads, and training
    # is chaotic enough that this changes which heads end up doing what.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.use_deterministic_algorithms(True)
        deterministic = True
    except Exception:  # pragma: no cover - depends on the torch build
        deterministic = False
    try:
        yield deterministic
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if flushed:
            torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _write(out: Path, name: str, spec: dict, model, metrics: dict, measured: dict | None, default: bool):
    _save(out, spec, model)
    metrics["sha256"] = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    atomic.write(out / "card.md", card(name, spec, metrics, measured, default))


def _save(out: Path, spec: dict, model):
    """config.json (the zoo card's config) and model.safetensors: what `--cc-model REF=DIR` reads.
    Each is renamed into place whole, so a full disk or Ctrl-C never leaves a cut-short model."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic.replacing(out / "model.safetensors") as tmp:
        save_file(state, str(tmp))
        tmp.chmod(0o644)
    doc = {k: spec[k] for k in ("config", "task", "prompts", "training", "eval")}
    atomic.write(out / "config.json", json.dumps(doc, indent=2) + "\n")


def _check_reload(out: Path, model, spec: dict) -> float:
    """Load the written files the way `circuitcheck.models` does; max |logit difference|."""
    import torch

    from ..models import native, read_config, read_weights

    again = native(read_config(out / "config.json"), read_weights(out / "model.safetensors")).eval()
    tokens = torch.as_tensor(eval_prompts(spec, n=64).tokens)
    with torch.no_grad():
        diff = (again(tokens) - model(tokens)).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"reloaded model differs from the trained one (max |dlogit| = {diff})")
    return diff


# --------------------------------------------------------------------------------------------
# model card


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def reproduce(cmd: str) -> list[str]:
    """A card's "Reproduce" section: the command that trains the model again."""
    return ["## Reproduce", "", "```", cmd, "```", ""]


def card(name: str, spec: dict, metrics: dict, measured: dict | None, default: bool) -> str:
    cfg, tr, ev = spec["config"], spec["training"], spec["eval"]
    cmd = f"circuitcheck zoo train {name} --out DIR"
    if not default:
        cmd += f" --steps {tr['steps']}"
    if metrics["seed"]:
        cmd += f" --seed {metrics['seed']}"
    ho = metrics["held_out"]
    gen = spec["prompts"]
    gen_args = ", ".join(f"{k}={v!r}" for k, v in gen.items() if k != "generator")
    lines = [
        f"# zoo:{name}",
        "",
        f"**Task.** {spec['task']}.",
        f"Prompts: `circuitcheck.prompts.{gen['generator']}({gen_args})`.",
        "",
        "## Architecture",
        "",
        f"TransformerLens 4 `TransformerBridge.boot_native`, attention-only: {cfg['n_layers']} layer(s) x "
        f"{cfg['n_heads']} heads, d_model {cfg['d_model']}, d_head {cfg['d_head']}, n_ctx {cfg['n_ctx']}, "
        f"d_vocab {cfg['d_vocab']}, normalization_type {cfg['normalization_type']} (no LayerNorm, so "
        "direct logit attribution is exact), learned positional embeddings, no MLPs "
        "(act_fn relu is unused). The unembedding bias is a fixed zero buffer.",
        "",
        "## Training",
        "",
        f"- {tr['steps']} steps of {tr['optimizer']} (lr {tr['lr']}, betas {tuple(tr['betas'])}, weight decay "
        f"{tr['weight_decay']}, {tr['schedule']}), batch {tr['batch_size']}, seed {metrics['seed']}.",
        f"- Loss: {tr['loss']}"
        + (f", plus a group-lasso penalty {tr['head_group_lasso']} x sum over heads of ||(W_Q, W_K, W_V, W_O) of "
           f"the head||, ramped in linearly over steps {tr['head_group_lasso_ramp'][0]}.."
           f"{tr['head_group_lasso_ramp'][1]} (after induction has formed) so that fewer heads share each job"
           if tr.get("head_group_lasso") else "") + ".",
        "- After training the unembedding is centred (its mean over the vocabulary subtracted; softmax and "
        "predictions unchanged), so logits are relative to the mean logit at each position.",
    ]
    if name == "max-of-list":
        frac = tr.get("unique_max_false_fraction", 0)
        lines.append(
            f"- Data: fresh `max_of_list` batches each step; {frac:.0%} of each batch drawn with "
            "`unique_max=False` (ties allowed), the rest with the default unique maximum. Only 10^5 "
            "lists exist, so 'held-out' means a different sampling seed, not unseen lists."
        )
    else:
        lo, hi = tr["length_range"]
        lines.append(
            f"- Data: fresh `repeated_tokens` batches each step, segment length drawn uniformly from "
            f"{lo}..{hi} per step (so no fixed positional offset solves the task)."
        )
    lines += [
        f"- Training data seeds: {TRAIN_SEED_BASE} * (seed + 1) + step; evaluation seed {ev['seed']}.",
        f"- Final training loss (task cross-entropy, mean of the last 50 steps): {metrics['final_train_loss']:.4f}"
        + (" (the first copy is unpredictable: its floor is about ln(63) per first-copy position)"
           if name == "induction" else "") + ".",
        f"- Wall time: {metrics['train_time_s']} s on CPU ({metrics['torch_threads']} torch thread, torch "
        f"{metrics['torch_version']}, deterministic algorithms: {metrics['deterministic_algorithms']}, "
        "subnormal floats flushed to zero).",
        "",
        "## Held-out evaluation",
        "",
        f"{ho['n']} prompts from the default generator parameters, seed {ho['seed']}: "
        f"accuracy **{ho['accuracy']:.4f}**, loss {ho['loss']:.4f}"
        + (" (on the second-copy targets)." if name == "induction" else " (at ANS)."),
        "",
        *reproduce(cmd),
        f"`model.safetensors` has sha256 `{metrics['sha256']}`. Retraining with the same torch build "
        f"({metrics['torch_version']}) on the same kind of CPU writes the same bytes (checked on x86-64); "
        "another torch version or CPU can change the last bits of the weights and, since training is "
        "chaotic, the numbers below.",
        "",
    ]
    if measured is not None:
        from . import inspect_zoo

        lines += ["## Measured behaviour", "", inspect_zoo.markdown(name, measured), ""]
    return "\n".join(lines)
