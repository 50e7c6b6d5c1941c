"""Direct attribution: what each component writes to the residual stream, read through the final
LayerNorm and projected on a direction (a token's unembedding, a difference of two, or any weight
vector), and logit differences between named tokens.

Tokens are named per prompt: `correct` (the prompt's target token), an integer id, or `tok[POS]`
(the token standing at a named position of that prompt, e.g. the subject in IOI). Values are taken
at each prompt's target positions (averaged over them), or at one position `at`.
"""
from __future__ import annotations

import re

import numpy as np

from . import prompts as P

TOKEN = r"correct|-?\d+|tok\[[^\]]+\]"
COMPONENT = r"L\d+H\d+|L\d+N\d+|mlp\d+|attn\d+|embed|tok_embed|pos_embed|bias"


# ---------------------------------------------------------------- where, and which tokens (numpy)
def targets(prompts: P.PromptSet, at=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions [n, k] to read, and the correct token at each (None where `at` is not a target)."""
    if at is None:
        return prompts.target_pos, prompts.target_tok
    pos = P.position(prompts, at)[:, None]
    hit = prompts.target_pos == pos
    if not hit.any(1).all():
        return pos, None
    return pos, prompts.target_tok[np.arange(prompts.n), hit.argmax(1)][:, None]


def token_ids(prompts: P.PromptSet, spec, correct: np.ndarray | None, shape) -> np.ndarray:
    """The token ids [n, k] that `spec` names in each prompt."""
    text = str(spec).strip()
    if text == "correct":
        if correct is None:
            raise P.PromptError("`correct` names the target token, but this position is not a target of every prompt",
                                "name the token (an id or `tok[POS]`), or drop `at:` to read at the targets")
        return np.broadcast_to(correct, shape)
    m = re.fullmatch(r"tok\[([^\]]+)\]", text)
    if m:
        tok = prompts.tokens[np.arange(prompts.n), P.position(prompts, m[1].strip())]
        return np.broadcast_to(tok[:, None], shape)
    if re.fullmatch(r"-?\d+", text):
        return np.full(shape, int(text))
    raise P.PromptError(f"cannot read token {spec!r}", "write `correct`, a token id, or `tok[POS]`, e.g. tok[S1]")


def check_token(prompts: P.PromptSet, spec, d_vocab: int | None = None) -> None:
    """Collection-time check of a token name against a prompt set (and the vocabulary size)."""
    pos, correct = targets(prompts)
    ids = token_ids(prompts, spec, correct, pos.shape)
    if d_vocab is not None and (ids.min() < 0 or ids.max() >= d_vocab):
        raise P.PromptError(f"token {spec!r} is outside the vocabulary 0..{d_vocab - 1}", "")


# ---------------------------------------------------------------- logit difference
def logit_diff(logits, prompts: P.PromptSet, of, vs, at=None) -> np.ndarray:
    """Per prompt: logit of `of` minus logit of `vs`, at the targets (mean) or at `at`."""
    import torch

    pos, correct = targets(prompts, at)
    a = torch.as_tensor(token_ids(prompts, of, correct, pos.shape).copy(), device=logits.device)
    b = torch.as_tensor(token_ids(prompts, vs, correct, pos.shape).copy(), device=logits.device)
    rows = torch.arange(prompts.n)[:, None]
    at_pos = logits[rows, torch.as_tensor(pos)].to(torch.float64)  # [n, k, vocab]
    diff = at_pos.gather(-1, a[..., None]) - at_pos.gather(-1, b[..., None])
    return diff[..., 0].mean(-1).cpu().numpy()


# ---------------------------------------------------------------- components (torch)
def component_needs(component: str, cfg) -> set[str]:
    """Hook names one component's output is read from."""
    if component in ("embed", "tok_embed", "pos_embed"):
        return {"hook_embed", "hook_pos_embed"}
    if component == "bias":
        return set()
    m = re.fullmatch(r"L(\d+)([HN])\d+|(mlp|attn)(\d+)", component)
    if m[2] == "H":
        return {f"blocks.{m[1]}.attn.hook_z"}
    if m[2] == "N":
        return {f"blocks.{m[1]}.mlp.hook_post"}
    return {f"blocks.{m[4]}.hook_{m[3]}_out"}


def component_output(model, cache, component: str, rows, pos):
    """[n, k, d_model]: what `component` adds to the residual stream at positions `pos` [n, k].

    Heads: z W_O; neurons: post W_out[n]; `mlpL`/`attnL`: the block's output (with its bias);
    `bias`: the attention output biases b_O of every layer (mlpL already holds its b_out), so the
    heads, `bias`, the MLP layers and `embed` add up to the final residual stream."""
    import torch

    def w(name):
        return getattr(model, name).detach().to(torch.float64)

    def at(name):
        return cache[name][rows, pos].to(torch.float64)

    if component in ("embed", "tok_embed", "pos_embed"):
        return sum(at(h) for h in {"embed": ("hook_embed", "hook_pos_embed"), "tok_embed": ("hook_embed",),
                                   "pos_embed": ("hook_pos_embed",)}[component])
    if component == "bias":
        return w("b_O").sum(0).to(cache_device(cache)).expand(*pos.shape, -1)
    m = re.fullmatch(r"L(\d+)([HN])(\d+)|(mlp|attn)(\d+)", component)
    if m[2] == "H":
        layer, h = int(m[1]), int(m[3])
        return at(f"blocks.{layer}.attn.hook_z")[..., h, :] @ w("W_O")[layer, h].to(cache_device(cache))
    if m[2] == "N":
        layer, n = int(m[1]), int(m[3])
        return at(f"blocks.{layer}.mlp.hook_post")[..., n, None] * w("W_out")[layer, n].to(cache_device(cache))
    return at(f"blocks.{m[5]}.hook_{m[4]}_out")


def cache_device(cache):
    return next(iter(cache.values())).device


def final_ln(model, cache, rows, pos):
    """A linear map applying the final normalisation with the scale the run's residual had there:
    the standard linearisation of direct logit attribution."""
    import torch

    norm = getattr(model.cfg, "normalization_type", None)
    if norm is None:
        return lambda x, with_bias: x
    if norm not in ("LN", "LNPre", "RMS", "RMSPre"):
        raise ValueError(f"attribution supports LN, LNPre, RMS, RMSPre or no normalization, not {norm!r}")
    centre = norm.startswith("LN")
    resid = cache["ln_final.hook_in"][rows, pos].to(torch.float64)
    if centre:
        resid = resid - resid.mean(-1, keepdim=True)
    scale = (resid.pow(2).mean(-1, keepdim=True) + getattr(model.cfg, "eps", 1e-5)).sqrt()
    sd = model.state_dict()
    d = resid.shape[-1]
    w = sd.get("ln_final.weight", torch.ones(d)).to(torch.float64).to(resid.device)
    b = sd.get("ln_final.bias", torch.zeros(d)).to(torch.float64).to(resid.device)

    def apply(x, with_bias):
        y = ((x - x.mean(-1, keepdim=True)) if centre else x) / scale * w
        return y + b if with_bias else y

    return apply


# ---------------------------------------------------------------- directions
def directions(model, prompts: P.PromptSet, toward, correct, shape, device):
    """Per read position, the direction [n, k, d] and the unembedding bias along it [n, k].

    `toward` is a token name (its unembedding column), `{diff: [a, b]}` (W_U[:, a] - W_U[:, b]),
    or `{direction: EXPR}`, a weight expression giving one d_model vector (no bias along it)."""
    import torch

    from . import weights

    w_u = model.W_U.detach().to(torch.float64).to(device)
    b_u = model.b_U.detach().to(torch.float64).to(device)
    if isinstance(toward, dict) and "direction" in toward:
        v = weights.evaluate(model, weights.parse(toward["direction"])).to(device)
        if v.shape != (w_u.shape[0],):
            raise weights.ExpressionError(f"a direction is one d_model vector ({w_u.shape[0]}), "
                                          f"but {toward['direction']!r} has shape {tuple(v.shape)}")
        return v.expand(*shape, -1), torch.zeros(shape, dtype=torch.float64, device=device)
    pair = toward["diff"] if isinstance(toward, dict) else [toward]
    ids = [torch.as_tensor(token_ids(prompts, t, correct, shape).copy(), device=device) for t in pair]
    vec = w_u[:, ids[0]].permute(1, 2, 0)
    bias = b_u[ids[0]]
    if len(ids) == 2:
        vec, bias = vec - w_u[:, ids[1]].permute(1, 2, 0), bias - b_u[ids[1]]
    return vec, bias


def attribution(model, cache, prompts: P.PromptSet, component: str, toward, at=None, scale: str = "frozen"):
    """Per prompt: the component's output through the final LayerNorm (frozen at the run's scale,
    or `scale: none` for the raw residual) projected on the direction, mean over read positions.
    The `bias` component also carries the final LayerNorm's bias and b_U along the direction."""
    import torch

    pos_np, correct = targets(prompts, at)
    rows = torch.arange(prompts.n)[:, None]
    pos = torch.as_tensor(pos_np)
    dev = cache_device(cache) if cache else torch.device("cpu")
    vec, bias = directions(model, prompts, toward, correct, pos_np.shape, dev)
    part = component_output(model, cache, component, rows, pos)
    is_bias = component == "bias"
    ln = final_ln(model, cache, rows, pos) if scale == "frozen" else (lambda x, with_bias: x)
    value = (ln(part, is_bias) * vec).sum(-1)
    if is_bias:
        value = value + bias
    return value.mean(-1).cpu().numpy()


def centred(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Values minus their mean over a reference subset of prompts (a boolean mask)."""
    return values - values[reference].mean()
