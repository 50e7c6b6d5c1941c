"""The nnsight runner: the same planned runs as `engine.Runs`, computed by nnsight on the Hugging Face
module tree instead of TransformerLens hooks.

Planning, chunking, the value cache and the statistics do not change: this runner only replaces the
one pass `Runs._run`, so every intervention and measure keeps its TransformerLens-shaped hook
functions. Each hook name is a *point* of the Hugging Face model (a module's input or output, or a
value inside its forward reached through nnsight's `.source`), read once per pass in the order the
model computes it, turned into the activation TransformerLens would show (`[batch, pos, head, d]` for
a head's z), handed to the hook functions in order, and written back when one of them edited it.

Heads are edited at the *input* of the attention's output projection (`c_proj`), where they are still
separable: at its output they are already summed. Measures that read weights (DLA, OV norms) read
them from the TransformerLens bridge of the same checkpoint, which the session loads either way.

Only GPT-2's module tree is mapped (`GPT2` below: zoo:ioi, and hf: GPT-2 checkpoints); what a model
or a hook outside the map needs is a `RunnerError` naming the hook and the runner, raised when a
claim is collected (`unsupported`) before any model runs.

`remote`: None runs the trace here; "local" sends it through NDIF's serialisation in-process (what
would run on NDIF, checked offline); "ndif" runs it on NDIF's hosted copy of the model (needs the
network and `NDIF_API_KEY`).
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import torch

from ..models.module_map import RunnerError, point
from .engine import Runs

REMOTES = (None, "local", "ndif")


class NNsightRuns(Runs):
    """`Runs` whose passes go through nnsight on the checkpoint's Hugging Face model: `hf`, the
    transformers module here, or, with `remote="ndif"`, `hub_name`, the model NDIF hosts (nnsight's
    `LanguageModel` holds only its config and empty weights here)."""

    def __init__(self, model, prompts, seed: int = 0, batch_size: int = 1024, source_prompts=None,
                 hf=None, remote: str | None = None, hub_name: str | None = None, reference=None):
        super().__init__(model, prompts, seed, batch_size, source_prompts, reference)
        self.late_start = None  # a pass always runs from the embeddings: nnsight runs the model's own forward
        self.hf, self.remote, self.hub_name = hf, remote, hub_name
        self.config = hf.config if hf is not None else self.wrapped.config
        self.architecture = (self.config.architectures or ["?"])[0] if hf is None else type(hf).__name__

    def _run(self, tokens, hooks, mask, start: int = 0, resid=None):
        assert start == 0 and resid is None, "the nnsight runner never starts a pass late"
        logits = run(self.wrapped, self.architecture, self.config, tokens, hooks, mask, self.remote)
        self.forward_passes += 1
        self.blocks_run += tokens.shape[0] * self.model.cfg.n_layers
        return logits

    @functools.cached_property
    def wrapped(self):
        from nnsight import LanguageModel, NNsight

        return NNsight(self.hf) if self.hf is not None else LanguageModel(self.hub_name)


def run(wrapped, architecture: str, config, tokens, hooks, mask, remote=None):
    """The logits of one nnsight trace of `tokens` with TransformerLens-style `hooks` [(name, fn)]."""
    visits = _visits(hooks, architecture)
    kwargs = {} if mask is None else {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
    trace = {} if remote is None else {"remote": True if remote == "ndif" else remote}
    with torch.inference_mode(), wrapped.trace(tokens, **kwargs, **trace):
        for (path, io, layout), fns in visits:
            _visit(_at(wrapped, path), io, layout, fns, config)
        logits = wrapped.lm_head.output.save()
    return logits.to(tokens.device)


def _visits(hooks, architecture: str) -> list:
    """The points `hooks` touch, in the order the model computes them, each with its (name, point, fn)."""
    by_point: dict[tuple, list] = {}
    for name, fn in hooks:
        p, layer = point(name, architecture)
        where = (p.path.format(l=layer), p.io, p.layout)
        by_point.setdefault((_when(p, layer), where), []).append((name, p, fn))
    return [(where, fns) for (_, where), fns in sorted(by_point.items(), key=lambda item: item[0][0])]


def _when(p, layer: int | None) -> tuple:
    """Before every block (embeddings), in block `layer`, or after every block (ln_final)."""
    return (-1, p.order) if layer is None and p.order < 0 else (10**6 if layer is None else layer, p.order)


def _at(wrapped, path: str):
    envoy = wrapped
    for part in path.split("."):
        envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
    return envoy


def _visit(envoy, io: str, layout: str, fns, config) -> None:
    """Read one point once, hand its activation to each hook function in turn, write it back if edited."""
    raw = _read(envoy, io)
    value = raw[0] if isinstance(raw, tuple) else raw  # an attention module returns (output, weights)
    x, edited = _to_tl(value, layout, config), False
    for name, p, fn in fns:
        seen = _part(x, p.part, config)
        out = fn(seen, SimpleNamespace(name=name))
        if out is None or out is seen:
            continue
        if not p.writable:
            raise RunnerError(f"the nnsight runner reads {name} but cannot edit it: use `runner: transformer_lens`")
        x, edited = _put(x, p.part, out), True
    if edited:
        new = _from_tl(x, layout, value)
        _write(envoy, io, (new, *raw[1:]) if isinstance(raw, tuple) else new)


def _read(envoy, io: str):
    return _source(envoy, io).output if io.startswith("source:") else getattr(envoy, io)


def _write(envoy, io: str, value) -> None:
    if io.startswith("source:"):
        _source(envoy, io).output = value
    else:
        setattr(envoy, io, value)


def _source(envoy, io: str):
    for part in io.removeprefix("source:").split("."):
        envoy = getattr(envoy.source, part)
    return envoy


def _to_tl(value, layout: str, config):
    """The value in TransformerLens's layout: a head axis for z ([b, p, h, d]), q, k and v apart."""
    if layout == "heads":
        return value.unflatten(-1, (config.n_head, -1))
    if layout == "qkv":
        return torch.stack(value.split(config.n_embd, dim=-1)).unflatten(-1, (config.n_head, -1))
    return value


def _from_tl(x, layout: str, like):
    if layout == "heads":
        return x.reshape(like.shape)
    if layout == "qkv":
        return torch.cat([x[i].flatten(-2) for i in range(3)], dim=-1)
    return x


def _part(x, part, config):
    if isinstance(part, int):
        return x[part]
    if part in ("scale", "normalized"):  # LayerNorm's, from its input (GPT-2's LayerNorm has no hook inside)
        centred = x - x.mean(-1, keepdim=True)
        scale = (centred.pow(2).mean(-1, keepdim=True) + config.layer_norm_epsilon).sqrt()
        return scale if part == "scale" else centred / scale
    return x


def _put(x, part, out):
    if isinstance(part, int):
        x = x.clone()
        x[part] = out
        return x
    return out
