"""`measure: {weight_value: {of: "mean(sq(cos(W_in[0], W_U[:, 3])))"}}`: the one number a weight
expression gives once reduced (`norm`, `mean`, `sum`, `max`, `min` over every entry or one axis;
`cos(X, v)` per column; `sq`, `abs` per entry; LayerNorm weights `ln1_w[L]`, `ln2_w[L]`,
`ln_final_w`). Exact, like `norm`, when it reads the weights alone.

With `act(HOOK)` or `act(HOOK, POS)` it also reads a run: the mean over the claim's prompts of an
activation at the read positions (a LayerNorm scale, a mean residual). The value is then a smooth
function f of those means, judged like any mean over prompts through its linearised per-prompt
values f(m) + ∇f(m)·(x_i − m): their mean is f(m) exactly and their spread is the delta method's."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from . import weights as W
from .. import prompts as P
from ..language.fields import Strict
from .weights import RunExpression
from .base import Kind, register


class WeightValue(Strict):
    of: RunExpression = Field(description="a weight expression reduced to one number, e.g. `mean(norm(W_in[0], 0))`, "
                                          "`mean(sq(cos(W_in[0], W_U[:, 3])))` or "
                                          "`act(ln_final.hook_scale) / act(blocks.0.ln1.hook_scale)`")


@register
class WeightValueKind(Kind):
    name = "weight_value"
    schema = WeightValue
    weights_only = True  # unless it reads a run (`is_weights_only`)

    def is_weights_only(self, body) -> bool:
        return "$" in body.of or not W.acts(W.parse(body.of, runs=True))

    def streams_for(self, body) -> bool:
        return False  # the means are over every prompt of the claim

    def needs(self, body, cfg) -> set[str]:
        return {act.hook for act in W.acts(W.parse(body.of, runs=True))}

    def compute(self, body, run) -> np.ndarray:
        tree = W.parse(body.of, runs=True)
        found = W.acts(tree)
        if not found:
            return np.float64(one_number(body.of, W.evaluate(run.model, tree)).item())
        per_prompt = {act: activation(run, act) for act in found}
        return linearised(run.model, tree, body.of, per_prompt)

    def references(self, body):
        yield from W.references(body.of, ("of",), runs=True)


def one_number(text: str, value):
    if value.numel() != 1:
        raise W.ExpressionError(f"{text!r} has shape {tuple(value.shape)}, not one number: reduce it with "
                                "mean(...), sum(...), max(...), min(...) or norm(...)")
    return value.reshape(())


def activation(run, act: W.Act):
    """[n, ...] float64: each prompt's activation at its read positions (the targets, or `act.at`),
    averaged over them; a LayerNorm scale as one number per prompt."""
    import torch

    from .attribution import reads

    where = reads(run.prompts, act.at)
    x = run[act.hook].to(torch.float64)
    x = x[torch.as_tensor(np.arange(run.n)[:, None]), torch.as_tensor(where.pos)]  # [n, k, ...]
    if act.hook.endswith("hook_scale"):
        x = x[..., 0]
    valid = torch.ones(where.pos.shape, dtype=torch.float64) if where.valid is None else \
        torch.as_tensor(where.valid, dtype=torch.float64)
    valid = valid.to(x.device).reshape(*valid.shape, *([1] * (x.dim() - 2)))
    return (x * valid).sum(1) / valid.sum(1)


def linearised(model, tree, text: str, per_prompt: dict) -> np.ndarray:
    """Per prompt f(m) + Σ ∇f(m)·(x_i − m) over the `act(...)` means m (autograd gives ∇f)."""
    import torch

    with torch.enable_grad():
        means = {act: x.mean(0).detach().requires_grad_(True) for act, x in per_prompt.items()}
        value = one_number(text, W.evaluate(model, tree, means))
        if not value.requires_grad:  # no act(...) reaches the value (`0 * act(...)`): a number of weights alone
            return np.full(len(next(iter(per_prompt.values()))), float(value))
        grads = torch.autograd.grad(value, list(means.values()), allow_unused=True)
    out = value.detach().expand(len(next(iter(per_prompt.values())))).clone()
    for (act, x), m, g in zip(per_prompt.items(), means.values(), grads):
        if g is not None:
            out += ((x - m.detach()) * g).reshape(len(x), -1).sum(1)
    if not torch.isfinite(out).all():
        raise P.PromptError(f"{text!r} is not finite on these prompts", "check for a division by a scale near 0")
    return out.cpu().numpy()
