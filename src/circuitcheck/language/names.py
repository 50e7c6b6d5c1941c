"""Names of heads and hooks: `L1H2`, `blocks.1.attn.hook_z`. Plain strings, no torch, so every
stage of the pipeline (and collection) can use them."""
from __future__ import annotations

import re

HEAD = re.compile(r"^L(\d+)H(\d+)$")
NEURON = re.compile(r"^L(\d+)N(\d+)$")  # an MLP neuron: L1N42 is index 42 of blocks.1.mlp.hook_post

HOOK = re.compile(r"^(hook_embed|hook_pos_embed|ln_final\.hook_(in|out|scale|normalized)|blocks\.(\d+)\.("
                  r"hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out|attn_in|mlp_in|q_input|k_input|v_input|in|out)"
                  r"|attn\.hook_(q|k|v|z|pattern|attn_scores)|mlp\.hook_(pre|post)|ln[12]\.hook_(scale|normalized)))$")

# Short forms a file may write for the common hooks of a layer (`resid_pre` at layer 1).
SHORT_HOOKS = {"resid_pre": "blocks.{}.hook_resid_pre", "resid_mid": "blocks.{}.hook_resid_mid",
               "resid_post": "blocks.{}.hook_resid_post", "attn_out": "blocks.{}.hook_attn_out",
               "mlp_out": "blocks.{}.hook_mlp_out", "mlp_pre": "blocks.{}.mlp.hook_pre",
               "mlp_post": "blocks.{}.mlp.hook_post", "z": "blocks.{}.attn.hook_z", "q": "blocks.{}.attn.hook_q",
               "k": "blocks.{}.attn.hook_k", "v": "blocks.{}.attn.hook_v", "pattern": "blocks.{}.attn.hook_pattern"}


def parse_head(text: str) -> tuple[int, int]:
    m = HEAD.match(text)
    return int(m[1]), int(m[2])


def parse_neuron(text: str) -> tuple[int, int]:
    m = NEURON.match(text)
    return int(m[1]), int(m[2])


def z_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def pattern_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def all_heads(cfg) -> list[str]:
    return [f"L{layer}H{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]


def hook_name(hook: str, layer=None) -> str:
    """The full hook name of a short form at a layer (`resid_pre`, 1 -> `blocks.1.hook_resid_pre`)."""
    return SHORT_HOOKS[hook].format(layer) if hook in SHORT_HOOKS and layer is not None else hook


def hook_layer(name: str) -> int | None:
    m = re.match(r"^blocks\.(\d+)\.", name)
    return int(m[1]) if m else None


def per_head(name: str) -> bool:
    """Whether the activation at this hook has a head dimension ([batch, pos, head, d])."""
    return re.search(r"\.attn\.hook_(q|k|v|z)$", name) is not None
