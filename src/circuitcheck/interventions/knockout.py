"""What keep_circuit, knock_out and path_patch share: which circuit they mean, what a knocked-out
node becomes (zero, its mean over prompts, another prompt's value, or its value on a corrupted
prompt set), and the node-level edits (heads at hook_z, MLP layers at hook_mlp_out, neurons at
mlp.hook_post, the input at hook_embed and hook_pos_embed)."""
from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from .. import prompts as P
from ..circuits import Circuit, Node
from ..circuits.spec import CircuitRef
from ..language.fields import Strict
from ..language.names import z_name
from . import base as C
from .ablate import replacement
from .base import Context, Kind, Source
from .residual import writer_hooks

Method = Literal["zero", "mean", "resample", "patch"]
CircuitField = Union[CircuitRef, str]


class Replacement(Strict):
    """How a knocked-out node or edge is replaced."""

    method: Method = Field("mean", description="zero, mean (over the prompts, per token), resample (another "
                           "prompt's value), or patch (its value on the `source` prompts, prompt by prompt: ACDC "
                           "and EAP style)")
    mean_over: str | None = Field(None, description="with `method: mean`: only the prompts meeting this `where:` "
                                  "condition")
    # spec.PromptSpec, resolved when spec builds the vocabulary (spec sits above this package)
    source: "PromptSpec | None" = Field(None, description="with `method: patch`: the corrupted prompt set, as many "  # noqa: F821
                                        "prompts of the same length as the claim's")

    @model_validator(mode="after")
    def _method(self):
        if self.mean_over is not None and self.method != "mean":
            raise ValueError("`mean_over` chooses the prompts a mean is taken over: it goes with `method: mean`")
        if (self.method == "patch") != (self.source is not None):
            raise ValueError("`method: patch` takes its values from `source:` (a prompt set), and `source:` "
                             "goes with `method: patch`")
        return self


def circuit_of(ref) -> Circuit:
    if isinstance(ref, str):  # the loader writes a named circuit out before anything runs
        raise ValueError(f"circuit {ref!r} was not resolved: name it under the file's `circuits:`")
    return ref.circuit()


def source_of(body, hook: str) -> Source:
    # the same key as `patch` uses, so a corrupted run's activation is computed once for both
    return Source(("patch-source", body.source.model_dump_json(), hook), body.source, hook)


class ReplacingKind(Kind):
    """A kind whose knocked-out activations (`hooks_read`) are replaced as its `Replacement` says."""

    def hooks_read(self, body, cfg) -> set[str]:
        raise NotImplementedError

    def clean_needs(self, body, cfg) -> set[str]:
        return self.hooks_read(body, cfg) if body.method in ("mean", "resample") else set()

    def sources(self, body, cfg=None) -> list[Source]:
        if body.method != "patch":
            return []  # without the model (collection), the embedding's source stands for all: same prompts
        return [source_of(body, h) for h in sorted({"hook_embed"} if cfg is None else self.hooks_read(body, cfg))]

    def check(self, body, prompts: P.PromptSet) -> None:
        check(body, prompts)


def replaced(hook: str, body, ctx: Context, like):
    """What the activation at `hook` becomes on the rows of `ctx` when its node is knocked out."""
    if body.method == "patch":
        return ctx.sources[source_of(body, hook).key][ctx.rows]
    return replacement(hook, body.method, ctx, like, body.mean_over)


def check(body, prompts: P.PromptSet) -> None:
    C.check_over(body.mean_over, prompts, "prompts")
    C.check_resample(body.method, prompts)
    if body.method == "resample" and prompts.mask is not None:
        raise P.PromptError("`method: resample` takes another prompt's value at the same index, and these prompts "
                            "are padded to different lengths", "use `method: mean` or `zero`, or prompts of one "
                            "length", param="method")


def node_targets(nodes, cfg) -> list[C.Target]:
    """The activations and units that carry these nodes' outputs."""
    heads: dict[int, list[int]] = {}
    neurons: dict[int, list[int]] = {}
    out = []
    for n in sorted(nodes):
        if n.kind == "head":
            heads.setdefault(n.layer, []).append(n.index)
        elif n.kind == "neuron":
            neurons.setdefault(n.layer, []).append(n.index)
        elif n.kind in ("mlp", "input"):
            out += [C.Target(h, None) for h in writer_hooks(n, cfg)]
    out += [C.Target(z_name(layer), tuple(hs)) for layer, hs in sorted(heads.items())]
    out += [C.Target(f"blocks.{layer}.mlp.hook_post", tuple(ns)) for layer, ns in sorted(neurons.items())]
    return out


def node_hooks(targets, body, ctx: Context) -> list[tuple[str, object]]:
    def edit(t):
        return lambda x: C.write(x, replaced(t.hook, body, ctx, x), t.units, None)

    return [h for t in targets for h in C.edit_hooks(t.hook, edit(t))]


def outside(circuit: Circuit, cfg, scope) -> list[Node]:
    """Every node of the model in `scope` (heads, mlps, input) that the circuit lacks; an MLP layer of
    which the circuit names only some neurons loses its other neurons."""
    from .residual import shape_of

    shape = shape_of(cfg)
    out = []
    for n in shape.nodes():
        cls = {"head": "heads", "mlp": "mlps", "input": "input"}.get(n.kind)
        if cls is None or cls not in scope or n in circuit.nodes:
            continue
        kept = sorted(m.index for m in circuit.nodes if m.kind == "neuron" and m.layer == n.layer)
        if n.kind == "mlp" and kept:
            out += [Node("neuron", n.layer, i) for i in range(cfg.d_mlp) if i not in kept]
        else:
            out.append(n)
    return out


def circuit_references(circuit: Circuit, base: tuple):
    """(loc, name, what) of the circuit's heads and neurons, for collection's checks against the model."""
    for n in sorted(circuit.nodes):
        if n.kind == "head":
            yield base, n.name, "head"
        elif n.kind == "neuron":
            yield base, n.name, "neuron"
