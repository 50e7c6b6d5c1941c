"""The shape of every intervention kind, and what its hooks are given at run time.

An intervention kind is one `Kind` subclass in one file of this package, registered with `@register`:

    name          the key a file writes (`under: {ablate: {...}}`)
    schema        the pydantic model of what follows the key; `spec.Intervention` is built from these
    hooks         (hook name, function) pairs that edit the run, given a `Context`
    clean_needs   clean-run activations its hooks read (means, resamples)
    sources       other prompt sets whose activations its hooks read (patching)
    references    the heads, positions and hooks it names, checked at collection
    check         collection-time checks that need the prompt set (positions the mask hides, ...)
    describe      how it names itself in reports and errors

The components ablate and patch edit (heads, neurons, any hook), the means they put there and the
hooks that edit them are at the end of this file, shared by both kinds.

Kind files import torch inside functions only: collection imports this package (through spec).

Two TransformerLens 4.3 traps shape the kinds:
- edits made at `hook_attn_scores` are discarded, so an attention *score* is rescaled at
  `hook_pattern`, from q and k captured earlier in the same forward pass;
- native bridges have no per-head `hook_result`, so a head is ablated at `hook_z` (its output
  is `z @ W_O`);
- an edit at `hook_resid_mid` reaches the MLP's input only, not the residual stream, so resid_mid
  is edited at `hook_attn_out` (`edit_hooks`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..language import fields
from .. import prompts as P
from ..language.names import HOOK, SHORT_HOOKS, hook_name, parse_head, parse_neuron

KINDS: dict[str, "Kind"] = {}
register = fields.registrar(KINDS)  # class decorator: `@register class AblateKind(Kind): name = "ablate"`


@dataclass
class Context:
    """What a hook needs besides the activation: the prompts, the clean run, the rows in this chunk."""

    cfg: object
    prompts: P.PromptSet
    clean: dict  # hook name -> clean activation over all prompts
    rows: slice
    seed: int
    sources: dict  # Source.key -> activations over all prompts of that source
    model: Any = None  # the model itself, for kinds that rebuild a head's input with its own layers (residual.py)
    reference: "Reference | None" = None  # where `method: mean` takes its means; None: over `prompts`


@dataclass
class Reference:
    """The prompt set `method: mean` averages over, apart from the judged prompts, and its clean
    activations (hook name -> [n, seq, ...]). A mean over the judged prompts themselves makes every
    prompt's value depend on every other prompt, which an interval over prompts does not see
    (issue 22 item 1); over a set drawn apart, the judged values are independent given the means."""

    prompts: P.PromptSet
    clean: dict
    means: dict = field(default_factory=dict, repr=False)  # (hook, over) -> per-token mean, made once per run


@dataclass(frozen=True)
class Source:
    """A prompt set (other than the claim's) whose activation at `hook` an intervention reads."""

    key: tuple
    prompts: Any  # spec.PromptSpec
    hook: str
    loc: tuple = ("source",)  # where the file names it, inside the intervention
    reduce: Any = None  # (activation, source PromptSet) -> what the hooks read (a mean); None: the activation
    match: str = "shape"  # what must agree with the claim's prompts: "shape" (prompt by prompt), "length", "any"
    over: str | None = None  # a `where:` condition choosing the source prompts a mean is taken over

    def mismatch(self, source: P.PromptSet, target: P.PromptSet) -> str | None:
        """Why the source prompts cannot serve the claim's prompts, or None."""
        if self.match == "shape" and source.tokens.shape != target.tokens.shape:
            return (f"source prompts have shape {source.tokens.shape}, the claim's prompts {target.tokens.shape}; "
                    "prompt-by-prompt patching needs the same number and length of prompts")
        if self.over is not None:
            from ..prompts.where import evaluate

            try:
                if not evaluate(self.over, source).any():
                    return f"`mean_over: {self.over}` matches none of the {source.n} source prompts"
            except P.PromptError as exc:
                return f"`mean_over: {self.over}`: {exc} ({exc.hint})"
        if self.match == "length" and source.seq_len != target.seq_len:
            return (f"source prompts are {source.seq_len} tokens long, the claim's prompts {target.seq_len}; a mean "
                    "over every position needs the same length (or name the positions with `at:`)")
        return None


class Kind(fields.KindBase):

    def hooks(self, body, ctx: Context) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def clean_needs(self, body, cfg) -> set[str]:
        return set()

    def sources(self, body, cfg=None) -> list[Source]:
        """The prompt sets (and hooks) it reads. Without the model's `cfg` (at collection) a kind whose
        hooks depend on the model may give one source standing for all of them: the prompts are what is checked."""
        return []

    def check(self, body, prompts: P.PromptSet) -> None:
        """Raise `prompts.PromptError` for what the prompt set makes impossible."""


def kind_of(iv) -> Kind:
    return KINDS[iv.kind]


def positions(at, ctx: Context):
    """Per-row destination positions [rows, k] for `at`, or None for every position."""
    import torch

    if at is None:
        return None
    at = at if isinstance(at, list) else [at]
    idx = np.stack([P.position(ctx.prompts, a) for a in at], axis=1)[ctx.rows]
    return torch.as_tensor(idx)


# ---------------------------------------------------------------- components: what ablate and patch edit
# What an ablation or a patch edits, and the means it may put there. A component is a hook's whole
# activation (`hook: mlp_out, layer: 1`, `hook: blocks.0.hook_resid_post`), or some units of it:
# heads (`heads: [L1H0]`: their output at `hook_z`; with `hook: q|k|v|z`, at that
# hook) or MLP neurons (`neurons: [L1N42]`: `mlp.hook_post`; with `hook: mlp_pre`, before the
# activation function). Heads and neurons sit on axis 2 of their activations ([batch, pos, unit, ...]).
# A mean (for `method: mean`, or a patch from the mean of a prompt set) is taken per token over the
# prompts, counting only real tokens of padded prompts (aligned from each prompt's first real
# token), and only the prompts meeting `mean_over` when it is given.
PER_NEURON = ("mlp_pre", "mlp_post")
# Attention scores and patterns are [batch, head, query, key]: edit them with `method: bos` or
# `scale_attention` (and TransformerLens discards edits at hook_attn_scores).
NOT_EDITABLE = re.compile(r"\.attn\.hook_(pattern|attn_scores)$")
# The hooks whose edits are checked to reach the rest of the forward pass (tests/test_components.py).
EDITABLE = re.compile(r"^(hook_embed|hook_pos_embed|blocks\.\d+\.(hook_(resid_pre|resid_mid|resid_post|attn_out|"
                      r"mlp_out)|attn\.hook_(q|k|v|z)|mlp\.hook_(pre|post)))$")
MID = re.compile(r"^blocks\.(\d+)\.hook_resid_mid$")


@dataclass(frozen=True)
class Target:
    hook: str  # the full hook name
    units: tuple[int, ...] | None  # heads or neurons on axis 2; None: the whole activation


def check_selection(body) -> None:
    """Collection-time rules of `heads`/`neurons`/`hook`/`layer` (ValueError with what to write)."""
    heads, neurons, hook, layer = body.heads, getattr(body, "neurons", None), body.hook, body.layer
    if heads is not None and neurons is not None:
        raise ValueError("name `heads` or `neurons`, not both: write two interventions to edit both")
    if hook is None and heads is None and neurons is None:
        raise ValueError("say what to edit: `heads: [L1H0]`, `neurons: [L1N42]`, or `hook:` (with `layer:` for "
                         "a short form such as mlp_out)")
    if hook is not None and NOT_EDITABLE.search(hook_name(hook, 0)) or hook == "pattern":
        raise ValueError(f"`hook: {hook}` holds attention weights per head, query and key: remove a head's "
                         "attention with `method: bos` or `scale_attention`")
    if hook is not None and heads is None and neurons is None and not NOT_EDITABLE.search(hook_name(hook, 0)) \
            and HOOK.match(hook_name(hook, 0)) and not EDITABLE.match(hook_name(hook, 0)):
        raise ValueError(f"`hook: {hook}`: circuitcheck edits resid_pre, resid_mid, resid_post, attn_out, mlp_out, "
                         "q, k, v, z, mlp_pre, mlp_post, hook_embed and hook_pos_embed (the hooks whose edits are "
                         "checked to reach the rest of the forward pass); read other hooks in a measure")
    if heads is not None and hook is not None and hook not in ("q", "k", "v", "z"):
        raise ValueError(f"`heads` with `hook: {hook}`: a head has its own slice only at q, k, v and z; "
                         "write `hook: q` (or k, v, z), or drop `heads` to edit the whole activation")
    if neurons is not None and hook is not None and hook not in PER_NEURON:
        raise ValueError(f"`neurons` with `hook: {hook}`: neurons are slices of mlp_post (the default) or mlp_pre")
    short = hook in SHORT_HOOKS
    if layer is not None and (heads is not None or neurons is not None):
        raise ValueError("`layer` goes with a `hook:` short form alone; heads and neurons name their own layer")
    if layer is not None and hook is not None and not short:
        raise ValueError(f"`{hook}` is a full hook name, which names its layer: drop `layer:`")
    if short and layer is None and heads is None and neurons is None:
        raise ValueError(f"`hook: {hook}` is a short form: add `layer:` (or write the full name, e.g. "
                         f"{hook_name(hook, 0)})")


def targets(body) -> list[Target]:
    """The activations and units a body names, one per (hook, layer)."""
    heads, neurons, hook = body.heads, getattr(body, "neurons", None), getattr(body, "hook", None)
    if heads is not None:
        return grouped([parse_head(h) for h in heads], hook or "z")
    if neurons is not None:
        return grouped([parse_neuron(n) for n in neurons], hook or "mlp_post")
    return [Target(hook_name(hook, body.layer), None)]


def grouped(pairs, short: str) -> list[Target]:
    by_layer: dict[int, list[int]] = {}
    for layer, unit in pairs:
        by_layer.setdefault(layer, []).append(unit)
    return [Target(hook_name(short, layer), tuple(units)) for layer, units in by_layer.items()]


def references(body, base: tuple = ()):
    """The hooks and neurons a body names, for the collection checks (heads and positions: fields.references)."""
    for j, n in enumerate(getattr(body, "neurons", None) or []):
        yield base + ("neurons", j), n, "neuron"
    if getattr(body, "hook", None) is not None:
        for t in targets(body):
            yield base + ("hook",), t.hook, "hook"


def edit_hooks(hook: str, edit) -> list[tuple[str, object]]:
    """(hook name, function) pairs that apply `edit` (activation -> new activation) at `hook`.

    A TransformerLens 4 bridge applies an edit at `hook_resid_mid` to the MLP's input only, not to
    the residual stream the MLP's output is added to; so resid_mid is edited at `hook_attn_out`,
    as the new resid_mid minus resid_pre (captured in the same pass)."""
    mid = MID.match(hook)
    if mid is None:
        return [(hook, lambda x, hook: edit(x))]
    seen = {}

    def keep(x, hook):
        seen["pre"] = x
        return x

    def via_attn_out(x, hook):
        pre = seen["pre"]
        return edit(pre + x) - pre

    return [(f"blocks.{mid[1]}.hook_resid_pre", keep), (f"blocks.{mid[1]}.hook_attn_out", via_attn_out)]


def where_mask(over: str, prompts: P.PromptSet) -> np.ndarray:
    from ..prompts.where import evaluate

    return evaluate(over, prompts)


def check_over(over: str | None, prompts: P.PromptSet, what: str) -> None:
    """A mean over a `where:` subset needs at least one prompt (PromptError otherwise)."""
    if over is None:
        return
    kept = int(where_mask(over, prompts).sum())
    if kept == 0:
        raise P.PromptError(f"`mean_over: {over}` matches none of the {prompts.n} {what}: there is nothing to average",
                            "loosen the condition, or check the field names and values it compares")


def check_resample(method: str, prompts: P.PromptSet) -> None:
    """A resample takes another prompt's activation: one given input has none."""
    if method == "resample" and prompts.n < 2:
        raise P.PromptError("`method: resample` takes another prompt's activation, and this prompt set has one "
                            "prompt", "use `method: zero`, or `mean` with `mean_from:` a reference set", param="method")


def mean(x, prompts: P.PromptSet, over: str | None = None, rows: slice = slice(None)):
    """The mean of x [n, seq, ...] over prompts, for the prompts `rows`: [1, seq, ...] for unpadded
    prompts averaged over all of them (exactly `x.mean(0)`), else [rows, seq, ...] (see `by_token`)."""
    if prompts.mask is None and over is None:
        return x.mean(0, keepdim=True)
    return place(by_token(x, prompts, over), prompts, rows)


def reference_mean(hook: str, ctx: Context, over: str | None = None):
    """[rows, seq, ...]: the reference set's per-token mean at `hook` (over the reference prompts
    meeting `over`), placed on the judged prompts `ctx.rows` by token index."""
    ref = ctx.reference
    if over is not None and not where_mask(over, ref.prompts).any():
        raise ValueError(f"`mean_over: {over}` matches none of the {ref.prompts.n} prompts of the reference set "
                         "the mean is taken over: declare one with `mean_from:`")
    longest = int(ref.prompts.length.max())
    if int(ctx.prompts.length.max()) > longest:
        raise ValueError(f"the judged prompts run to {int(ctx.prompts.length.max())} tokens, the reference set's "
                         f"longest to {longest}: a per-token mean has nothing to put at the later tokens; declare "
                         "a reference set with `mean_from:`")
    # Every run of a claim reads the same means: made once, not at every hook call (a circuit's 41
    # runs each averaged the whole reference set again at every knocked-out hook).
    if (hook, over) not in ref.means:
        ref.means[hook, over] = by_token(ref.clean[hook], ref.prompts, over)
    mean = ref.means[hook, over]
    if ctx.prompts.mask is None:  # every prompt's j-th token sits at j: one row, seen by all (no copy)
        rows = len(range(ctx.prompts.n)[ctx.rows])
        return mean[:ctx.prompts.seq_len].unsqueeze(0).expand(rows, *mean[:ctx.prompts.seq_len].shape)
    return place(mean, ctx.prompts, ctx.rows)


def by_token(x, prompts: P.PromptSet, over: str | None = None):
    """[seq, ...]: the mean at each token index j over the prompts that have a j-th token (counted
    from each prompt's first real token, whichever side the padding is on, so padding never enters
    a mean), only those meeting `over` when it is given."""
    import torch

    n, seq = prompts.tokens.shape
    j = np.arange(seq)
    real = j[None, :] < prompts.length[:, None]  # [n, seq]: prompt i has a j-th token
    if over is not None:
        real = real & where_mask(over, prompts)[:, None]
    at = np.where(real, prompts.start[:, None] + j[None, :], 0)  # where that token sits in the padded array
    dev = x.device
    aligned = x[torch.arange(n, device=dev)[:, None], torch.as_tensor(at, device=dev)]  # [n, seq(j), ...]
    weight = torch.as_tensor(real, dtype=x.dtype, device=dev).reshape(n, seq, *[1] * (x.dim() - 2))
    return (aligned * weight).sum(0) / weight.sum(0).clamp_min(1)


def place(mean, prompts: P.PromptSet, rows: slice):
    """[rows, seq, ...]: each prompt's j-th real token gets mean[j]; padding positions get zeros
    (the attention mask keeps every real token from reading them)."""
    import torch

    n, seq = prompts.tokens.shape
    real = np.arange(seq)[None, :] < prompts.length[:, None]
    ri, ji = np.nonzero(real[rows])
    dev = mean.device
    out = torch.zeros((len(range(n)[rows]), seq) + tuple(mean.shape[1:]), dtype=mean.dtype, device=dev)
    out[torch.as_tensor(ri, device=dev), torch.as_tensor(prompts.start[rows][ri] + ji, device=dev)] = \
        mean[torch.as_tensor(ji, device=dev)]
    return out


def write(x, new, units, at):
    """x with `new` written over `units` (axis 2; all when None) at positions `at` ([rows, k]; all when None)."""
    import torch

    x = x.clone()
    new = new.to(x.device)  # kept clean or source activations: from this hook, so on its device already
    new = new.expand_as(x) if new.shape[0] != x.shape[0] else new  # a mean: one row for every prompt
    if at is None:
        if units is None:
            return new.to(x.dtype).expand_as(x).clone()
        x[:, :, list(units)] = new[:, :, list(units)].to(x.dtype)
        return x
    rows = torch.arange(x.shape[0])[:, None]
    if units is None:
        x[rows, at] = new[rows, at].to(x.dtype)
    else:
        for u in units:
            x[rows, at, u] = new[rows, at, u].to(x.dtype)
    return x
