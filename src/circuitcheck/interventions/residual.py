"""The residual stream as a sum of its writers' parts, and readers' inputs rebuilt from those parts.

Every writer (the input, a head, an MLP layer) adds its output to the residual stream; every reader
(a head's q, k or v input, an MLP's input, the logits) reads the sum of what the writers before it
wrote. An edge edit gives one reader an input with some writers' parts replaced:

    input_r = resid_r - sum over knocked-out writers w of (out_w(this run) - out_w(replacement))

where resid_r is the residual stream the reader sees in this run. A head's part is `z_h @ W_O[h]`
(its share of the attention output; the output bias is every run's and cancels), an MLP's is its
`hook_mlp_out`, the input's is `hook_embed` (+ `hook_pos_embed` where positions are embedded).

Where the edit lands, per reader (the TransformerLens 4.3 hooks that reach that reader alone):
- a head's q/k/v: at `attn.hook_q|k|v`, that head's slice recomputed by the block's own layers from
  the rebuilt residual (`attn.q(ln1(input_r))`, with the modules the bridge wraps, so no hook fires twice). TransformerLens's `use_split_qkv_input` would
  give each head its own input hook, but native bridges refuse it, so the projection is redone;
- an MLP's input: at `hook_resid_mid`, which a bridge hands to the MLP only (base.py's trap);
- the logits: at the last block's `hook_resid_post`, which only ln_final and the unembedding read.

Rotary models are refused (the recomputed q and k would miss the rotation), and so are models whose
MLPs run in parallel with attention (the edges assume sequential blocks).
"""
from __future__ import annotations

from ..circuits import INPUT, Node, Shape
from ..language.names import z_name

EMBED, POS_EMBED = "hook_embed", "hook_pos_embed"


def shape_of(cfg) -> Shape:
    attn_only = bool(getattr(cfg, "attn_only", False))
    return Shape(cfg.n_layers, cfg.n_heads, not attn_only, None if attn_only else getattr(cfg, "d_mlp", None))


def writer_hooks(node: Node, cfg) -> list[str]:
    """The hooks whose activations make a writer's part of the residual stream."""
    if node.kind == "head":
        return [z_name(node.layer)]
    if node.kind == "mlp":
        return [f"blocks.{node.layer}.hook_mlp_out"]
    if node.kind == "input":
        return [EMBED] + ([POS_EMBED] if getattr(cfg, "positional_embedding_type", "standard") == "standard" else [])
    raise ValueError(f"{node} writes no part of its own to the residual stream here")


def part(node: Node, acts: dict, model):
    """A writer's part [rows, pos, d_model] from the activations at its hooks (`writer_hooks`)."""
    if node.kind == "head":
        z = acts[z_name(node.layer)][:, :, node.index]
        w_o = model.W_O[node.layer, node.index].to(z.device, z.dtype)
        return z @ w_o
    hooks = writer_hooks(node, model.cfg)
    out = acts[hooks[0]]
    for h in hooks[1:]:
        out = out + acts[h]
    return out


def reader_hook(reader: Node, input_: str | None, n_layers: int) -> str:
    """The hook where a reader's input is edited."""
    if reader.kind == "head":
        return f"blocks.{reader.layer}.attn.hook_{input_}"
    if reader.kind == "mlp":
        return f"blocks.{reader.layer}.hook_resid_mid"
    return f"blocks.{n_layers - 1}.hook_resid_post"


def resid_hook(reader: Node, n_layers: int) -> str:
    """The residual stream a reader reads (before its layer norm)."""
    if reader.kind == "head":
        return f"blocks.{reader.layer}.hook_resid_pre"
    return reader_hook(reader, None, n_layers)


def swapped(resid, taken, put):
    """resid - sum(taken) + sum(put), in float64 and cast back: a part taken out and put back unchanged
    (or a one-hot value swapped for its mean) then leaves no rounding residue. In float32,
    `1 - (1 - 1/3)` is one ulp off `0 - (0 - 1/3)`, and that ulp broke tracr-reverse's exact logit ties
    in favour of the clean answer (accuracy 1.0 where the edge edit leaves a three-way tie)."""
    import torch

    x = resid.to(torch.float64)
    for t, p in zip(taken, put, strict=True):
        x = x - t.to(x.device, torch.float64) + p.to(x.device, torch.float64)
    return x.to(resid.dtype)


def check_model(cfg) -> None:
    if getattr(cfg, "parallel_attn_mlp", False):
        raise ValueError("this model's MLPs read the layer's input in parallel with its attention: circuitcheck's "
                         "edges assume an MLP reads its own layer's heads (sequential blocks)")
    if getattr(cfg, "positional_embedding_type", "standard") == "rotary":
        raise ValueError("edge edits recompute a head's q and k from the residual stream, and this model rotates "
                         "them by position (rotary): circuitcheck does not rebuild that rotation")


def edits(readers: dict, model, seen: dict) -> list[tuple[str, object]]:
    """(hook, function) pairs that give each reader its new input.

    `readers` maps (reader Node, input) to `new(resid, seen) -> new residual` (None: leave it);
    `seen` is the dict the run's capture hooks fill (hook name -> activation of this pass)."""
    cfg = model.cfg
    check_model(cfg)
    by_hook: dict[str, list] = {}
    for (reader, input_), new in readers.items():
        by_hook.setdefault(reader_hook(reader, input_, cfg.n_layers), []).append((reader, input_, new))
    out = []
    for hook, items in by_hook.items():
        if items[0][0].kind == "head":
            out.append((hook, _heads_edit(items, model, seen)))
        else:
            out.append((hook, _resid_edit(items[0][2], seen)))
    return out


def _resid_edit(new, seen):
    def hook(x, hook):
        return new(x, seen)

    return hook


def _heads_edit(items, model, seen):
    """At hook_q|k|v of one layer: each listed head's slice recomputed from its rebuilt residual."""
    layer, input_ = items[0][0].layer, items[0][1]
    block = model.blocks[layer]
    project, norm = unhooked(getattr(block.attn, input_)), unhooked(getattr(block, "ln1", None))
    pre = f"blocks.{layer}.hook_resid_pre"

    def hook(x, hook):
        x = x.clone()
        resid = seen[pre]
        for reader, _, new in items:
            rebuilt = new(resid, seen)
            y = project(norm(rebuilt)).reshape(x.shape)  # [rows, pos, head, d_head]
            x[:, :, reader.index] = y[:, :, reader.index].to(x.dtype)
        return x

    return hook


def unhooked(module):
    """The module a bridge component wraps, so that calling it fires no hooks (the bridge's `attn.q`
    output is `attn.hook_q` itself); the identity where there is none (a model without LayerNorm)."""
    if module is None:
        return lambda x: x
    return getattr(module, "original_component", None) or module


def captures(names, seen: dict) -> list[tuple[str, object]]:
    """Hooks that keep this pass's activation at each name in `seen` (read only)."""
    def keep(name):
        def hook(x, hook):
            seen[name] = x
            return x

        return hook

    return [(name, keep(name)) for name in sorted(names)]


def head_resids(readers) -> set[str]:
    """The residual streams head readers are rebuilt from (captured before their layer's attention)."""
    return {f"blocks.{r.layer}.hook_resid_pre" for r, _ in readers if r.kind == "head"}


__all__ = ["INPUT", "EMBED", "POS_EMBED", "shape_of", "writer_hooks", "part", "reader_hook", "resid_hook", "edits",
           "captures", "head_resids", "check_model", "swapped"]
