"""`measure: {dla: {component, share}}`: direct logit attribution to the correct token."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ..fields import Strict
from ..names import parse_head, z_name
from .base import Kind, f64, over_targets, register, to_numpy


class DLA(Strict):
    component: str = Field(
        description="a head L<l>H<h>, `embed` (token and position embeddings), or `bias`",
        pattern=r"^(L\d+H\d+|\$\w+|embed|bias)$",
    )
    share: bool = Field(True, description="divide by the correct-token logit")


@register
class DLAKind(Kind):
    name = "dla"
    schema = DLA

    def needs(self, body, cfg) -> set[str]:
        return dla_needs(cfg)

    def compute(self, body, run) -> np.ndarray:
        return dla(run.model, run.cache, run.prompts, body.component, body.share)

    def references(self, body):
        if body.component.startswith("L"):
            yield ("component",), body.component, "head"


def dla_needs(cfg) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_in"}
    return names | {z_name(layer) for layer in range(cfg.n_layers)}


def dla(model, cache, prompts, component: str, share: bool) -> np.ndarray:
    """The correct-token logit carried by one component, through the final LayerNorm's scale.

    The parts (every head, `embed`, `bias`) add up to the logit exactly in attention-only
    models; `share` divides by the logit. Averaged over each prompt's targets.
    """
    import torch

    rows = torch.arange(prompts.n)[:, None]
    pos = torch.as_tensor(prompts.target_pos)
    tok = torch.as_tensor(prompts.target_tok)
    w_u = f64(model.W_U)[:, tok]  # [d, n, k]
    ln = final_ln(model, cache, rows, pos)
    part = component_output(model, cache, component, rows, pos)  # [n, k, d]
    contrib = torch.einsum("nkd,dnk->nk", ln(part, component == "bias"), w_u)
    if component == "bias":
        contrib = contrib + f64(model.b_U)[tok]
    if share:
        total = torch.einsum("nkd,dnk->nk", ln(f64(cache["ln_final.hook_in"][rows, pos]), True), w_u)
        contrib = contrib / (total + f64(model.b_U)[tok])
    return to_numpy(over_targets(contrib, prompts))


def component_output(model, cache, component, rows, pos):
    if component == "embed":
        return f64((cache["hook_embed"] + cache["hook_pos_embed"])[rows, pos])
    if component == "bias":
        return f64(model.b_O).sum(0).expand(*pos.shape, -1)
    layer, h = parse_head(component)
    return f64(cache[z_name(layer)][rows, pos, h]) @ f64(model.W_O[layer, h])


def final_ln(model, cache, rows, pos):
    """A linear map applying the final LayerNorm with the scale the clean residual had."""
    import torch

    norm = getattr(model.cfg, "normalization_type", None)
    if norm is None:
        return lambda x, with_bias: x
    if norm not in ("LN", "LNPre"):
        raise ValueError(f"dla supports LayerNorm or no normalization, not {norm!r}")
    resid = f64(cache["ln_final.hook_in"][rows, pos])
    centred = resid - resid.mean(-1, keepdim=True)
    eps = getattr(model.cfg, "eps", 1e-5)
    scale = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    sd = model.state_dict()
    w = sd.get("ln_final.weight", torch.ones(resid.shape[-1])).to(torch.float64)
    b = sd.get("ln_final.bias", torch.zeros(resid.shape[-1])).to(torch.float64)

    def apply(x, with_bias):
        y = (x - x.mean(-1, keepdim=True)) / scale * w
        return y + b if with_bias else y

    return apply
