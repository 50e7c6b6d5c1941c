"""Where TransformerLens's hooks live in a Hugging Face model's own module tree, for runners that
edit that tree (runs/nnsight_runner.py), and for collection checks of what such a runner can reach.

A *point* is a module's input or output, or a value inside its forward (nnsight's `.source`), with
the layout TransformerLens shows there: `[batch, pos, head, d]` for a head's z, q, k and v apart.
Only GPT-2's tree is mapped so far (`GPT2`: zoo:ioi, and hf: GPT-2 checkpoints).
"""
from __future__ import annotations

import re
from dataclasses import dataclass



class RunnerError(Exception):
    """A claim the chosen runner cannot compute (a hook it does not map, a model it does not know)."""


@dataclass(frozen=True)
class Point:
    """Where one TransformerLens hook lives in the Hugging Face tree, and how its activation looks."""

    path: str  # module path from the model root, with {l} for the layer
    io: str  # "input", "output", or "source:<name>" (a value inside the module's forward)
    order: int  # where in a block the model computes it (points are visited in this order)
    layout: str = "plain"  # the whole value as TransformerLens lays it out: plain | heads | qkv
    part: object = None  # what of it the hook sees: None (all), 0/1/2 (q, k, v), "scale", "normalized"

    @property
    def writable(self) -> bool:
        return self.part not in ("scale", "normalized")


# GPT-2 (transformers' GPT2LMHeadModel). TransformerLens edits resid_mid at the MLP's input only
# (interventions/base.py), which is what writing ln_2's input does.
SOFTMAX = "source:attention_interface_1.nn_functional_softmax_0"
H = "transformer.h.{l}"
GPT2 = {
    "hook_embed": Point("transformer.wte", "output", -2),
    "hook_pos_embed": Point("transformer.wpe", "output", -1),
    "hook_resid_pre": Point(H, "input", 0),
    "ln1.hook_scale": Point(H + ".ln_1", "input", 1, part="scale"),
    "ln1.hook_normalized": Point(H + ".ln_1", "input", 1, part="normalized"),
    "attn.hook_q": Point(H + ".attn.c_attn", "output", 2, "qkv", 0),
    "attn.hook_k": Point(H + ".attn.c_attn", "output", 2, "qkv", 1),
    "attn.hook_v": Point(H + ".attn.c_attn", "output", 2, "qkv", 2),
    "attn.hook_pattern": Point(H + ".attn", SOFTMAX, 3),
    "attn.hook_z": Point(H + ".attn.c_proj", "input", 4, "heads"),
    "hook_attn_out": Point(H + ".attn", "output", 5),
    "hook_resid_mid": Point(H + ".ln_2", "input", 6),
    "ln2.hook_scale": Point(H + ".ln_2", "input", 6, part="scale"),
    "ln2.hook_normalized": Point(H + ".ln_2", "input", 6, part="normalized"),
    "mlp.hook_pre": Point(H + ".mlp.c_fc", "output", 7),
    "mlp.hook_post": Point(H + ".mlp.c_proj", "input", 8),
    "hook_mlp_out": Point(H + ".mlp", "output", 9),
    "hook_resid_post": Point(H, "output", 10),
    "ln_final.hook_in": Point("transformer.ln_f", "input", 0),
    "ln_final.hook_scale": Point("transformer.ln_f", "input", 0, part="scale"),
    "ln_final.hook_normalized": Point("transformer.ln_f", "input", 0, part="normalized"),
    "ln_final.hook_out": Point("transformer.ln_f", "output", 1),
}
GPT2.update({"hook_in": GPT2["hook_resid_pre"], "hook_out": GPT2["hook_resid_post"]})  # the bridge's block aliases
ARCHITECTURES = {"GPT2LMHeadModel": GPT2}
BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def point(name: str, architecture: str) -> tuple[Point, int | None]:
    """The point of hook `name` and its layer, or a RunnerError that says what is not mapped."""
    table = ARCHITECTURES.get(architecture)
    if table is None:
        raise RunnerError(f"the nnsight runner maps {', '.join(ARCHITECTURES)} only, and this model is a "
                          f"{architecture}: use `runner: transformer_lens`")
    m = BLOCK.match(name)
    short, layer = (m[2], int(m[1])) if m else (name, None)
    if short not in table:
        raise RunnerError(f"the nnsight runner cannot reach the hook {name} of a {architecture} yet "
                          f"(it maps {', '.join(sorted(table))}): use `runner: transformer_lens` for this claim")
    return table[short], layer


def unsupported(names, architecture: str, edited=()) -> str | None:
    """Why the nnsight runner cannot run passes reading `names` and editing `edited`, or None (also
    where the architecture is not known here: a hub name, checked when it loads)."""
    if architecture is None:
        return None
    try:
        for name in sorted(set(names) | set(edited)):
            p, _ = point(name, architecture)
            if name in edited and not p.writable:
                raise RunnerError(f"the nnsight runner reads {name} but cannot edit it: use "
                                  "`runner: transformer_lens` for this claim")
    except RunnerError as exc:
        return str(exc)
    return None
