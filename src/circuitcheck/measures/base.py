"""The shape of every measure kind, and the run a measure reads.

A measure kind is one `Kind` subclass in one file of this package, registered with `@register`:

    name          the key a file writes (`measure: {attention: {...}}`)
    schema        the pydantic type of what follows the key; `spec.Measure` is built from these
    needs         the hook names it reads, given the model's config (planning keeps only these)
    compute       one float per prompt from a `Run` (weights-only kinds: a number or vector)
    references    the heads, positions and hooks it names, checked at collection
    describe      how it names itself in reports and errors
    value_range   what its values lie in (`values`: when that depends on the body or the model)
    variants      prompt sets it compares (similarity); most kinds compare none
    check         collection-time checks that need the prompt set (padded rows, ...)
    defined       the prompts it has a value on, where a selection inside a row can be empty

Kind files import torch inside functions only: collection imports this package (through spec)
and must stay torch-free.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..language import fields
from .. import prompts as P
from ..language.registry import CodeError

KINDS: dict[str, "Kind"] = {}
register = fields.registrar(KINDS)  # class decorator: `@register class AblateKind(Kind): name = "ablate"`


class Kind(fields.KindBase):
    value_range: tuple[float, float] | None = None  # what every per-prompt value lies in, by construction
    weights_only: bool = False  # computed from the weights alone: no run, an exact value
    vector: bool = False  # weights-only, one value per unit (`units`), judged with `order`
    bare: bool = False  # a file may write the body alone (`measure: accuracy`)
    # Each prompt's value reads only that prompt's rows of the run, so a run can be measured chunk by
    # chunk as it goes and dropped (runs.Runs.stream); a kind mixing prompts sets this False, a kind
    # where only some bodies mix them says which in `streams_for`.
    streams: bool = True

    def needs(self, body, cfg) -> set[str]:
        return set()

    def compute(self, body, run: "Run") -> np.ndarray:
        raise NotImplementedError

    def variants(self, body) -> list[dict]:
        return []

    def streams_for(self, body) -> bool:
        """Whether this measure's value on a prompt reads that prompt's rows alone (see `streams`)."""
        return self.streams

    @property
    def per_prompt(self) -> bool:
        """One value per prompt of the claim's own prompts (what `versus` subtracts)."""
        return not self.weights_only

    def values(self, body, prompts: P.PromptSet, d_vocab) -> dict:
        """What the per-prompt values are, by construction, for choosing the bound: `{"binary": True}`
        for 0/1 outcomes, else `{"value_range": (lo, hi)}` (None: unbounded). `d_vocab()` gives the
        model's output vocabulary size (loading the model if the config did not say)."""
        return {"value_range": self.value_range}

    def check(self, body, prompts: P.PromptSet) -> None:
        """Raise `prompts.PromptError` for what the prompt set makes impossible (`param`: the field at fault)."""

    def defined(self, body, prompts: P.PromptSet) -> np.ndarray | None:
        """The prompts this measure has a value on (None: every prompt). A measure reading a selection
        inside each row (`targets`, a query set `{where: ...}`) has none where the selection is empty:
        `compute` gives NaN there, and the claim leaves those prompts out, as `where:` would."""
        return None

    def zero_mean_why(self, body) -> str | None:
        """Why this measure's mean over every prompt it is computed on is 0 by construction, whatever
        the model (a claim judging that mean could not tell one model from another); None: it is not."""
        return None

    unit = "unit"  # what `units` are, as reports name them

    def is_weights_only(self, body) -> bool:
        """Whether this measure reads the weights alone (a `python:` measure says so when registered)."""
        return self.weights_only

    def units(self, body) -> list:
        """Labels of a weights-only measure's values, for `expect: {order: ...}`."""
        return []


@dataclass
class Run:
    """One run of the model over a prompt set: what every measure reads, and what a
    `python:` measure receives. Stable: fields are only ever added.

    logits    [n, seq, vocab] tensor
    cache     hook name -> activation over all prompts (the hooks the measure declared)
    prompts   the prompt set: `tokens` [n, seq], `positions`, `target_pos`/`target_tok` [n, k], `extra`
    model     the model (a TransformerLens bridge)
    variants  for measures comparing prompt variants: one Run per variant
    clean     for measures comparing with the clean run (`kl`): that run; else None
    memo      what several measures of this run share (`shared`: a layer's head scores, the metrics'
              log-softmax at the targets), dropped with the run
    """

    logits: Any
    cache: dict
    prompts: P.PromptSet
    model: Any
    variants: list = field(default_factory=list)
    clean: Any = None
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        # Under a `device_map:` each layer's activations stay on its layer's device; a measure adding
        # up several layers (dla) needs them on one, the logits' device (no copy when already there).
        if self.logits is not None:
            self.cache = {name: x.to(self.logits.device) for name, x in self.cache.items()}

    @property
    def n(self) -> int:
        return self.prompts.n

    @property
    def tokens(self) -> np.ndarray:
        return self.prompts.tokens

    def position(self, expr) -> np.ndarray:
        """One index per prompt for a position (`ANS`, `argmax`, `S1+1`, `last`, 3)."""
        return P.position(self.prompts, expr)

    def __getitem__(self, hook: str):
        if hook not in self.cache:
            raise KeyError(f"activation {hook!r} was not read in this run; declare it in reads=[...] "
                           f"(read: {', '.join(sorted(self.cache)) or 'none'})")
        return self.cache[hook]


def kind_of(measure) -> Kind:
    return KINDS[measure.kind]


class MeasureFailed(Exception):
    """A measure raised while computing its values: the error of the claims that read this measure,
    not of the run they share with other claims. `error` is what it raised, with its traceback."""

    def __init__(self, measure, error: Exception):
        self.measure, self.error = measure, error
        super().__init__(failure_text(measure, error))


def failure_text(measure, error: Exception) -> str:
    """One line: the measure, what went wrong, and what to do about it."""
    if isinstance(error, CodeError):  # registered code: its own words name the function and line
        return str(error)
    what = kind_of(measure).describe(measure.body)
    text = str(error).splitlines()[0][:300] if str(error) else ""
    if isinstance(error, P.PromptError):  # the claim asks for something these prompts cannot give
        return (f"measure {what} cannot be computed on these prompts: {text} "
                f"({error.hint or 'change the measure or its prompts'})")
    if isinstance(error, NotImplementedError) and "meta" in text:  # torch's and TransformerLens's words for it
        return (f"measure {what} reads weights that `device_map:` offloaded to disk (accelerate loads them only "
                f"while their layer runs): {text} (place the model on devices that hold all of it)")
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return (f"measure {what} failed: {type(error).__name__}{where}: {text}. This is a circuitcheck bug: please "
            "report it with the hypothesis file attached (pytest --tb=long shows the traceback)")


def shared(memo: dict | None, key, of, make):
    """`make()`, kept in `memo` (a run's `Run.memo`) under `key` for as long as it is asked about the
    same object `of` (the tensor or array it is computed from); computed each time without a memo."""
    if memo is None:
        return make()
    if key not in memo or memo[key][0] is not of:
        memo[key] = of, make()
    return memo[key][1]


def to_numpy(x) -> np.ndarray:
    import torch

    return x.detach().to(torch.float64).cpu().numpy()


def f64(x):
    """A tensor (or parameter) as float64, detached: measures compute in double precision."""
    import torch

    return x.detach().to(torch.float64)


def over_targets(value, prompts, chosen=None):
    """[n, k] -> [n]: the mean over each prompt's real targets (prompts may have different counts), or
    over those of them `chosen` [n, k] marks (NaN where it marks none)."""
    import torch

    if prompts.target_valid is None and chosen is None:
        return value.mean(-1)
    keep = np.ones(prompts.target_tok.shape, bool) if prompts.target_valid is None else prompts.target_valid
    if chosen is not None:
        keep = keep & chosen
    valid = torch.as_tensor(keep, device=value.device).to(value.dtype)
    return (value * valid).sum(-1) / valid.sum(-1)


def enough(defined: np.ndarray | None, what: str, param) -> None:
    """Refuse at collection a selection that leaves fewer than 2 prompts with a value."""
    if defined is not None and defined.sum() < 2:
        raise P.PromptError(f"{what} holds something in only {int(defined.sum())} of {defined.size} prompts",
                            "a claim needs at least 2 prompts with a value: widen the condition", param=param)
