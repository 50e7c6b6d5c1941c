"""Direct attribution: what each component writes to the residual stream, read through the final
LayerNorm and projected on a direction (a token's unembedding, a difference of two, or any weight
vector, or a direction fitted from the run: the difference of two subsets' mean activations), and
logit differences between named tokens.

Tokens are named per prompt: `correct` (the target's token), `counterfactual` (the target's
counterfactual, from the data), an integer id, or `tok[POS]` (the token standing at a named
position of that prompt, e.g. the subject in IOI). Values are taken at each prompt's target
positions (averaged over its real targets), or at one position `at`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Union

import numpy as np
from pydantic import BeforeValidator, Field

from .. import prompts as P

TOKEN = r"correct|counterfactual|-?\d+|tok\[[^\]]+\]"
COMPONENT = r"L\d+H\d+|L\d+N\d+|mlp\d+|attn\d+|embed|tok_embed|pos_embed|bias"


# ---------------------------------------------------------------- where, and which tokens (numpy)
@dataclass(frozen=True)
class Reads:
    """Where a measure reads [n, k], and the target's tokens there (None: not a target everywhere)."""

    pos: np.ndarray
    correct: np.ndarray | None
    counterfactual: np.ndarray | None  # -1 where a target names none
    valid: np.ndarray | None  # [n, k] real targets, where prompts have different numbers

    def mean(self, value):
        """[n, k] -> [n]: the mean over each prompt's real read positions."""
        if self.valid is None:
            return value.mean(-1)
        return (value * self.valid).sum(-1) / self.valid.sum(-1)


def reads(prompts: P.PromptSet, at=None) -> Reads:
    """The prompt set's targets, or one position `at` (with the target there, if every prompt has one)."""
    if at is None:
        return Reads(prompts.target_pos, prompts.target_tok, prompts.target_cf, prompts.target_valid)
    pos = P.position(prompts, at)[:, None]
    hit = prompts.target_pos == pos
    if prompts.target_valid is not None:
        hit &= prompts.target_valid
    if not hit.any(1).all():
        return Reads(pos, None, None, None)
    col = (np.arange(prompts.n), hit.argmax(1))
    cf = prompts.target_cf[col][:, None] if prompts.target_cf is not None else None
    return Reads(pos, prompts.target_tok[col][:, None], cf, None)


def token_ids(prompts: P.PromptSet, spec, at: Reads) -> np.ndarray:
    """The token ids [n, k] that `spec` names in each prompt, at each read position."""
    text = str(spec).strip()
    shape = at.pos.shape
    if text in ("correct", "counterfactual"):
        ids = at.correct if text == "correct" else at.counterfactual
        if ids is None:
            raise P.PromptError(f"`{text}` names the target's token, but this position is not a target of every "
                                "prompt", "name the token (an id or `tok[POS]`), or drop `at:` to read at the targets")
        if (ids[at.valid if at.valid is not None else np.ones(shape, bool)] < 0).any():
            raise P.PromptError("`counterfactual`: some targets of this prompt set name no counterfactual",
                                "give every target a counterfactual in the data, or name the token")
        return np.broadcast_to(np.maximum(ids, 0), shape)
    m = re.fullmatch(r"tok\[([^\]]+)\]", text)
    if m:
        tok = prompts.tokens[np.arange(prompts.n), P.position(prompts, m[1].strip())]
        return np.broadcast_to(tok[:, None], shape)
    if re.fullmatch(r"-?\d+", text):
        return np.full(shape, int(text))
    raise P.PromptError(f"cannot read token {spec!r}",
                        "write `correct`, `counterfactual`, a token id, or `tok[POS]`, e.g. tok[S1]")


# ---------------------------------------------------------------- logit difference
def logit_diff(logits, prompts: P.PromptSet, of, vs, at=None) -> np.ndarray:
    """Per prompt: logit of `of` minus logit of `vs`, at the targets (mean) or at `at`."""
    import torch

    where = reads(prompts, at)
    a, b = (torch.as_tensor(token_ids(prompts, t, where).copy(), device=logits.device) for t in (of, vs))
    rows = torch.arange(prompts.n)[:, None]
    at_pos = logits[rows, torch.as_tensor(where.pos)].to(torch.float64)  # [n, k, vocab]
    diff = (at_pos.gather(-1, a[..., None]) - at_pos.gather(-1, b[..., None]))[..., 0]
    return where.mean(diff.cpu().numpy())


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


def source_needs(component: str) -> set[str]:
    """The hooks a head's output split by source position reads: its values and its pattern."""
    layer = re.fullmatch(r"L(\d+)H\d+", component)[1]
    return {f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.attn.hook_pattern"}


def from_sources(model, cache, component: str, rows, pos, keys: np.ndarray):
    """[n, k, d_model]: the part of head `component`'s output at `pos` [n, k] that it read from the
    key positions `keys` [n, seq] (boolean): sum over those keys of pattern[q, key] v[key] W_O. Over
    every key it is the head's whole output (z W_O), so the parts of a partition add up to it."""
    import torch

    m = re.fullmatch(r"L(\d+)H(\d+)", component)
    layer, h = int(m[1]), int(m[2])
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, h].to(torch.float64)  # [n, q, s]
    v = cache[f"blocks.{layer}.attn.hook_v"][:, :, h].to(torch.float64)  # [n, s, e]
    weights = pattern[rows, pos] * torch.as_tensor(keys, device=pattern.device)[:, None, :]  # [n, k, s]
    w_o = model.W_O[layer, h].detach().to(torch.float64).to(pattern.device)
    return torch.einsum("nks,nse->nke", weights, v) @ w_o


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


SCALES = ("frozen", "mean", "fit", "none")


def final_ln(model, cache, rows, pos, scale: str = "frozen"):
    """A linear map standing for the final normalisation, as one of the readings papers use:

    frozen  each prompt's own scale at each read position (TransformerLens's `apply_ln_to_stack`)
    mean    one scale for every prompt: the mean of those scales over the prompts' read positions
    fit     a least-squares affine map from the normalisation's input to its output over the read
            positions of all prompts (ARENA's `get_ln_fit`; its intercept goes with `bias`)
    none    the identity: the raw residual stream, as if there were no final normalisation
    """
    import torch

    norm = getattr(model.cfg, "normalization_type", None)
    if norm is None or scale == "none":
        return lambda x, with_bias: x
    if norm not in ("LN", "LNPre", "RMS", "RMSPre"):
        raise ValueError(f"attribution supports LN, LNPre, RMS, RMSPre or no normalization, not {norm!r}")
    centre = norm.startswith("LN")
    x = cache["ln_final.hook_in"][rows, pos].to(torch.float64)
    resid = x - x.mean(-1, keepdim=True) if centre else x
    scales = (resid.pow(2).mean(-1, keepdim=True) + getattr(model.cfg, "eps", 1e-5)).sqrt()
    scale_of = {"frozen": lambda: scales, "mean": lambda: scales.mean(), "fit": lambda: scales}
    frozen = _ln_map(model, norm, centre, scale_of[scale](), resid.shape[-1], resid.device)
    if scale == "fit":
        return _fitted_ln(x, frozen(x, True))
    return frozen


def _ln_map(model, norm, centre, scale, d, device):
    """x -> the normalisation of x at a given scale, with its weight (and bias where asked)."""
    import torch

    sd = model.state_dict()
    if not norm.endswith("Pre") and "ln_final.weight" not in sd:  # never guess a learned scale
        raise ValueError(f"the model's final {norm} has no `ln_final.weight` in its state dict")
    w = sd.get("ln_final.weight", torch.ones(d)).to(torch.float64).to(device)
    b = sd.get("ln_final.bias", torch.zeros(d)).to(torch.float64).to(device)

    def apply(x, with_bias):
        y = ((x - x.mean(-1, keepdim=True)) if centre else x) / scale * w
        return y + b if with_bias else y

    return apply


def _fitted_ln(x, y):
    """The affine map y ≈ x A + c fitted by least squares over every read position [n, k, d]."""
    import torch

    d = x.shape[-1]
    inputs, outputs = x.reshape(-1, d), y.reshape(-1, d)
    if inputs.shape[0] <= d + 1:
        raise P.PromptError(f"`scale: fit` fits {d + 1} coefficients per output dimension from {inputs.shape[0]} "
                            "read positions, which does not determine them",
                            f"give the claim more than {d + 1} prompts, or use `scale: mean` or `frozen`")
    design = torch.cat([inputs, torch.ones(inputs.shape[0], 1, dtype=inputs.dtype, device=inputs.device)], 1)
    # gelsd (SVD), not the CPU default gelsy: gelsy's answer moves in the last bits from one call to the
    # next on the same inputs (6e-16 on 500 x 65), which broke same-file-same-numbers
    coef = torch.linalg.lstsq(design.cpu(), outputs.cpu(), driver="gelsd").solution.to(x.device)  # [d + 1, d]
    weight, intercept = coef[:d], coef[d]

    def apply(part, with_bias):
        out = part @ weight
        return out + intercept if with_bias else out

    return apply


# ---------------------------------------------------------------- directions
def directions(model, cache, prompts: P.PromptSet, toward, where: Reads, device):
    """Per read position, the direction [n, k, d] and the unembedding bias along it [n, k].

    `toward` is a token name (its unembedding column), `{diff: [a, b]}` (W_U[:, a] - W_U[:, b]),
    `{direction: EXPR}`, a weight expression giving one d_model vector, or `{fitted: {hook, at,
    between}}`, fitted from the run's activations (`fitted_direction`); no bias along the last two."""
    import torch

    from . import weights

    w_u = model.W_U.detach().to(torch.float64).to(device)
    b_u = model.b_U.detach().to(torch.float64).to(device)
    if isinstance(toward, dict) and ("direction" in toward or "fitted" in toward):
        shape = where.pos.shape
        if "fitted" in toward:  # one direction per prompt: fitted on the other half (cross-fitting)
            per_prompt = fitted_direction(cache, prompts, **toward["fitted"]).to(device)
            return per_prompt[:, None, :].expand(-1, shape[1], -1), torch.zeros(shape, dtype=torch.float64,
                                                                                 device=device)
        v = weights.evaluate(model, weights.parse(toward["direction"])).to(device)
        if v.shape != (w_u.shape[0],):
            raise weights.ExpressionError(f"a direction is one d_model vector ({w_u.shape[0]}), "
                                          f"but {toward['direction']!r} has shape {tuple(v.shape)}")
        return v.expand(*shape, -1), torch.zeros(shape, dtype=torch.float64, device=device)
    pair = toward["diff"] if isinstance(toward, dict) else [toward]
    ids = [torch.as_tensor(token_ids(prompts, t, where).copy(), device=device) for t in pair]
    vec = w_u[:, ids[0]].permute(1, 2, 0)
    bias = b_u[ids[0]]
    if len(ids) == 2:
        vec, bias = vec - w_u[:, ids[1]].permute(1, 2, 0), bias - b_u[ids[1]]
    return vec, bias


def fit_subsets(prompts: P.PromptSet, between, loc: tuple = ()) -> list[np.ndarray]:
    """The two masks of a fitted direction's `between: [A, B]`; a condition that selects no prompt
    is an error naming it (`param`: where it stands)."""
    masks = []
    for j, condition in enumerate(between):
        try:
            mask = P.condition(condition, prompts)
        except P.PromptError as exc:
            exc.param = loc + (j,)
            raise
        if not mask.any():
            raise P.PromptError(f"`{condition}` selects none of the {prompts.n} prompts: a fitted direction needs "
                                "a mean over each subset", "loosen the condition, or check the prompts' fields and "
                                "tokens", param=loc + (j,))
        masks.append(mask)
    return masks


FOLDS = 2  # a fitted direction is cross-fitted: prompt i is read along the direction of the other half


def folds(n: int) -> np.ndarray:
    """Each prompt's half: alternate prompts (0, 1, 0, 1, ...), fixed, so the same prompts give the same bits."""
    return np.arange(n) % FOLDS


def fitted_direction(cache, prompts: P.PromptSet, hook: str, at, between):
    """[n, d]: for each prompt, the mean activation at `hook`, position `at`, over the prompts of the
    *other* half meeting `between[0]` minus that over those meeting `between[1]`, at unit length
    (float64). Cross-fitted: a direction fitted on the prompts it is then judged on makes noise look
    like signal (a contrast between the halves of a fair coin passed 11 of 25 times; issue 22)."""
    import torch

    if hook not in cache:
        raise ValueError(f"a fitted direction reads {hook!r}, which this run did not keep")
    act = cache[hook]
    if act.dim() != 3:
        raise ValueError(f"a fitted direction reads one vector per position, but {hook!r} has shape "
                         f"{tuple(act.shape)} (use a residual-stream or block output hook)")
    pos = torch.as_tensor(P.position(prompts, at), device=act.device)
    rows = act[torch.arange(prompts.n, device=act.device), pos].to(torch.float64)  # [n, d]
    masks = fit_subsets(prompts, between)
    half = folds(prompts.n)
    out = torch.empty_like(rows)
    for f in range(FOLDS):
        other = half != f  # fit on the other half, apply to this one
        a, b = (torch.as_tensor(m & other, device=act.device) for m in masks)
        if not (a.any() and b.any()):
            raise ValueError(f"the fitted direction at {hook!r} is cross-fitted over two halves of the prompts "
                             f"(alternate prompts), and one subset has no prompt in a half: use more prompts")
        v = rows[a].mean(0) - rows[b].mean(0)
        norm = v.norm()
        if not norm > 0:
            raise ValueError(f"the fitted direction at {hook!r} is zero: both subsets have the same mean activation")
        out[torch.as_tensor(half == f, device=act.device)] = v / norm
    return out


def attribution(model, cache, prompts: P.PromptSet, component: str, toward, at=None, scale: str = "frozen",
                source=None):
    """[n, k]: at each read position, the component's output through the final LayerNorm (read as
    `scale` says: `final_ln`) projected on the direction. The `bias` component also carries the
    final LayerNorm's bias and b_U along the direction. `source` (a head only): the [n, seq] key
    positions whose part of the head's output is taken (`from_sources`)."""
    return _project(model, cache, prompts, toward, at, scale, component, source)


def total(model, cache, prompts: P.PromptSet, toward, at=None, scale: str = "frozen"):
    """[n, k]: the whole residual stream projected the same way (the logit, for a token)."""
    return _project(model, cache, prompts, toward, at, scale, None)


def _project(model, cache, prompts, toward, at, scale, component, source=None):
    import torch

    where = reads(prompts, at)
    rows = torch.arange(prompts.n)[:, None]
    pos = torch.as_tensor(where.pos)
    vec, bias = directions(model, cache, prompts, toward, where, cache_device(cache))
    if component is None:
        part = cache["ln_final.hook_in"][rows, pos].to(torch.float64)
    elif source is not None:
        part = from_sources(model, cache, component, rows, pos, source)
    else:
        part = component_output(model, cache, component, rows, pos)
    with_bias = component in (None, "bias")
    ln = final_ln(model, cache, rows, pos, scale)
    value = (ln(part, with_bias) * vec).sum(-1)
    if with_bias:
        value = value + bias
    return value.cpu().numpy()


def centred(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Values minus their mean over a reference subset of prompts (a boolean mask)."""
    return values - values[reference].mean()


# ---------------------------------------------------------------- in a hypothesis file
def _token_text(v):
    if isinstance(v, str) and not re.fullmatch(rf"\s*({TOKEN}|\$\w+)\s*", v):
        raise ValueError(f"cannot read token {v!r}: write `correct`, `counterfactual`, a token id, or `tok[POS]` "
                         "(the token at a named position, e.g. tok[S1])")
    return v


Token = Annotated[Union[int, str], BeforeValidator(_token_text), Field(
    description="a token: `correct` (the target), `counterfactual` (the target's, from the data), an id, or "
                "`tok[POS]` (the token at a named position)")]
Component = Annotated[str, Field(
    pattern=rf"^({COMPONENT}|\$\w+)$",
    description="a head `L0H1`, a neuron `L0N12`, an MLP or attention layer `mlp0`/`attn0`, `embed` (token and "
                "position), `tok_embed`, `pos_embed`, or `bias` (attention output biases, final LN bias, b_U)")]


def token_references(spec, loc: tuple):
    """The position a `tok[POS]` token names, checked at collection like any other position, and a
    token id, checked against the output vocabulary."""
    m = re.fullmatch(r"\s*tok\[([^\]]+)\]\s*", str(spec))
    if m:
        yield loc, m[1].strip(), "position"
    elif re.fullmatch(r"\s*-?\d+\s*", str(spec)):  # a token id: inside the output vocabulary
        yield loc, ("d_vocab_out", int(spec), "token"), "index"


def component_references(component: str, loc: tuple):
    m = re.fullmatch(r"L(\d+)([HN])(\d+)|(?:mlp|attn)(\d+)", component)
    if m and m[2] == "H":
        yield loc, component, "head"
    elif m:  # an MLP layer or a neuron needs the model to have MLPs; attnN only the layer
        yield loc, int(m[1] if m[1] is not None else m[4]), "layer" if component.startswith("attn") else "mlp"
    if m and m[2] == "N":
        yield loc, ("d_mlp", int(m[3]), "neuron"), "index"
