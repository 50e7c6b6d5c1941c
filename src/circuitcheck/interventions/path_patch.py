"""`under: {path_patch: {senders, receivers, source}}`: path patching (Wang et al. 2022): each
sender's output on the `source` prompts reaches the receivers' inputs (a head's q, k or v, an MLP's
input, the logits) and nothing else: a receiver reads the clean residual stream plus, for each
sender, its source output minus its clean output; every other input is the clean run's. What the
receivers then write flows on through the rest of the model."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..circuits import Edge, Node, check_edge, parse_edge, parse_node
from ..circuits.spec import CircuitSpec
from . import knockout as K
from . import residual as R
from .base import Context, Kind, Source, register


def _receivers(v):
    for i, text in enumerate(v):
        try:
            receiver(text)
        except ValueError as exc:
            raise ValueError(f"receiver {i}: {exc} ({getattr(exc, 'hint', '')})") from None
    return v


class PathPatch(K.Strict):
    senders: list[str] = Field(min_length=1, description="nodes whose source output is sent: heads L0H1, MLPs "
                               "L1.mlp, input")
    receivers: list[str] = Field(min_length=1, description="inputs that receive it: `L2H0.q` (or .k, .v; `L2H0` "
                                 "for all three), `L1.mlp`, `logits`")
    # spec.PromptSpec, resolved when spec builds the vocabulary (spec sits above this package)
    source: "PromptSpec" = Field(description="the prompts the senders' outputs come from, as many and as long "  # noqa: F821
                                 "as the claim's")

    _senders = field_validator("senders")(CircuitSpec._nodes.__func__)
    _checked = field_validator("receivers")(_receivers)

    @model_validator(mode="after")
    def _order(self):
        for s in self.senders:
            node = parse_node(s)
            if node.kind in ("logits", "neuron"):
                raise ValueError(f"sender {s}: a sender is a head, an MLP layer or the input")
            for r, i in (x for text in self.receivers for x in receiver(text)):
                check_edge(Edge(node, r, i))  # a sender must come before every receiver
        return self


def receiver(text: str) -> list[tuple[Node, str | None]]:
    """`L2H0.q` -> [(L2H0, q)]; `L2H0` -> its q, k and v; `L1.mlp`, `logits`."""
    return [(e.reader, e.input) for e in parse_edge(f"input -> {text}")]


def senders_of(body) -> list[Node]:
    return sorted(parse_node(s) for s in body.senders)


def receivers_of(body) -> list[tuple[Node, str | None]]:
    return sorted({x for text in body.receivers for x in receiver(text)}, key=lambda x: (x[0], x[1] or ""))


@register
class PathPatchKind(Kind):
    name = "path_patch"
    schema = PathPatch

    def hooks(self, body, ctx: Context):
        model, cfg = ctx.model, ctx.cfg
        sent = senders_of(body)
        parts: dict = {}

        def swap():  # every sender's clean output, and its source output, on these rows
            if not parts:
                src = {h: ctx.sources[K.source_of(body, h).key][ctx.rows] for s in sent for h in R.writer_hooks(s, cfg)}
                clean = {h: ctx.clean[h][ctx.rows] for s in sent for h in R.writer_hooks(s, cfg)}
                parts["clean"] = [R.part(s, clean, model) for s in sent]
                parts["source"] = [R.part(s, src, model) for s in sent]
            return parts["clean"], parts["source"]

        def new(reader):
            hook = R.resid_hook(reader, cfg.n_layers)

            def rebuilt(resid, seen):  # the clean residual, not this run's: everything but the path is frozen
                clean = ctx.clean[hook][ctx.rows].to(resid.device, resid.dtype)
                return R.swapped(clean, *swap())

            return rebuilt

        readers = {r: new(r[0]) for r in receivers_of(body)}
        seen: dict = {}
        return R.captures(R.head_resids(readers), seen) + R.edits(readers, model, seen)

    def clean_needs(self, body, cfg):
        writers = {h for s in senders_of(body) for h in R.writer_hooks(s, cfg)}
        return writers | {R.resid_hook(r, cfg.n_layers) for r, _ in receivers_of(body)}

    def sources(self, body, cfg=None) -> list[Source]:
        if cfg is None:
            return [K.source_of(body, "hook_embed")]
        return [K.source_of(body, h) for h in sorted({h for s in senders_of(body) for h in R.writer_hooks(s, cfg)})]

    def references(self, body):
        yield from super().references(body)
        for j, s in enumerate(body.senders):
            if parse_node(s).kind == "head":
                yield ("senders", j), s, "head"
        for j, text in enumerate(body.receivers):
            for r, _ in receiver(text):
                if r.kind == "head":
                    yield ("receivers", j), r.name, "head"

