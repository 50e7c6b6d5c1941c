"""The hypothesis-file schema: what a researcher may write, validated strictly.

A claim is built from four composable parts:
  under    interventions applied to the run (ablate, keep_only, scale_attention, patch)
  measure  a per-prompt quantity (a metric at the targets, attention, a head score, DLA, ...)
  for      an optional quantifier or sweep that expands the claim into sub-claims
  expect   the region the measured value (or its change from the clean run) must lie in

`$name` inside `under` or `measure` is replaced by the value a quantifier or sweep binds.
`circuitcheck schema` writes the JSON Schema exported from these models for editors.
"""
from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, create_model, field_validator, model_validator

from .. import interventions as _interventions
from .. import measures as _measures
from ..language.fields import Head, Heads, Number, Position, Seed, Strict  # noqa: F401  (the vocabulary's building blocks)
from ..language.names import HEAD, parse_head  # noqa: F401
from ..circuits.spec import NAME as CIRCUIT_NAME, CircuitSpec


# ---------------------------------------------------------------- model and prompts
DTYPES = ("float32", "float64", "bfloat16", "float16")  # floating point: the measures compute in it


class ModelSpec(Strict):
    zoo: str | None = Field(None, description="a model the project ships: max-of-list, induction")
    native: "NativeSpec | None" = None
    hf: str | None = Field(None, description="a Hugging Face name or local directory")
    factory: str | None = Field(None, description="the name of a model registered with "
                                "@circuitcheck.register_model(NAME), e.g. in a conftest.py; never a module path")
    dtype: Literal[DTYPES] | None = Field(
        None, description="this file's dtype; wins over --cc-dtype (default float32)")
    device: str | None = Field(None, description="this file's device (cpu, cuda, cuda:1); wins over --cc-device")
    device_map: Union[str, dict[str, Union[int, str]]] | None = Field(
        None, description="a Hugging Face model (hf:, zoo:ioi) placed over several devices by accelerate: auto, "
        "balanced, balanced_low_0, sequential, or module name -> device (0, cuda:1, cpu, disk); instead of `device:`")
    max_memory: dict[str, Union[int, str]] | None = Field(
        None, description="with `device_map: auto` (balanced, sequential): the most each device may hold, "
        "e.g. {0: 70GiB, 1: 70GiB, cpu: 200GiB}")
    weight_processing: Union[Literal["none", "default"], "Processing"] = Field(
        "none", description="TransformerLens weight processing: none, default (all four), or the flags to apply")
    attention: Literal["causal", "bidirectional"] | None = Field(
        None, description="attention direction of a zoo or native model (its config's attention_dir)")
    runner: Literal["transformer_lens", "nnsight", "nnsight:local", "nnsight:ndif"] | None = Field(
        None, description="what computes the runs; wins over --cc-runner (default transformer_lens). nnsight: "
        "a Hugging Face model's own module tree through nnsight; nnsight:local through NDIF's serialisation, "
        "offline; nnsight:ndif on NDIF's hosted copy (needs NDIF_API_KEY)")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v):
        if isinstance(v, str):  # `model: zoo:max-of-list`, `hf:gpt2`, `factory:NAME`
            kind, sep, ref = v.partition(":")
            if not sep or kind not in ("zoo", "hf", "factory"):
                raise ValueError("write `zoo:NAME`, `hf:NAME`, `factory:NAME`, or a mapping with `native:`")
            return {kind: ref}
        return v

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.zoo, self.native, self.hf, self.factory)) != 1:
            raise ValueError("give exactly one of zoo, native, hf, factory")
        return self


class Processing(Strict):
    """TransformerBridge.process_weights: each step leaves the model's log-probabilities unchanged."""

    fold_ln: bool = Field(False, description="fold LayerNorm weights and biases into the next layer")
    center_writing_weights: bool = Field(False, description="centre weights that write to the residual stream")
    center_unembed: bool = Field(False, description="centre the unembedding (logits shift by a constant)")
    fold_value_biases: bool = Field(False, description="fold value biases into the output bias")



class NativeSpec(Strict):
    config: Union[str, dict[str, Any]] = Field(description="a TransformerLens config: a JSON file or inline keys")
    weights: str = Field(description="a .safetensors file, or a .pt state dict (loaded with weights_only=True)")


class PromptSpec(Strict):
    model_config = ConfigDict(extra="allow", frozen=True)  # generator parameters, checked by the generator
    generator: Literal["max_of_list", "repeated_tokens", "template", "jsonl", "text"]
    n: int | None = Field(None, ge=1, le=100_000,
                          description="number of prompts: default 200; for jsonl every row (fewer: the first n rows); "
                                      "1 only with `population: true` (one given input)")
    seed: Seed = 0
    population: bool = Field(
        False, description="these prompts are the whole population a claim is about (a fixed data set, or a few "
                           "given inputs, or one): its quantities are computed exactly, with no interval")

    @model_validator(mode="after")
    def _one_input(self):
        if self.n == 1 and not self.population:
            raise ValueError(ONE_INPUT)
        return self


# A single prompt is no sample: nothing can be estimated from it. It is an exact statement about
# that one input, which only a declared population judges (issue 22, "decide what the data can decide").
ONE_INPUT = ("one prompt is no sample to estimate from: a claim about this one given input says "
             "`population: true` (judged exactly, with no interval); a claim about a population needs at least 2")


# ---------------------------------------------------------------- interventions and measures
class OneOf(Strict):
    """A mapping with exactly one key, the kind, whose value is that kind's body. The fields are
    made from the kinds registered in `interventions/` and `measures/` (see `vocabulary`)."""

    KINDS: ClassVar[dict] = {}
    WHAT: ClassVar[str] = ""

    @model_validator(mode="after")
    def _one(self):
        if sum(getattr(self, k) is not None for k in self.KINDS) != 1:
            raise ValueError(f"{self.WHAT} is one of: " + ", ".join(k.form for k in self.KINDS.values()))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in self.KINDS if getattr(self, k) is not None)

    @property
    def body(self):
        return getattr(self, self.kind)


class _Measure(OneOf):
    @model_validator(mode="before")
    @classmethod
    def _short(cls, v):  # `measure: accuracy`: a bare name is the kind that takes one
        bare = next((k for k, kind in cls.KINDS.items() if kind.bare), None)
        return {bare: v} if isinstance(v, str) and bare else v


def vocabulary(name: str, base: type, kinds: dict, what: str) -> type:
    """The model of `under:` items or of `measure:`: one optional field per registered kind."""
    for kind in kinds.values():
        if isinstance(kind.schema, type) and issubclass(kind.schema, BaseModel):
            kind.schema.model_rebuild(_types_namespace={"PromptSpec": PromptSpec})
    fields = {k: (Optional[kind.schema], Field(None, description=kind.doc())) for k, kind in kinds.items()}
    model = create_model(name, __base__=base, **fields)
    model.KINDS, model.WHAT = kinds, what
    return model


Intervention = vocabulary("Intervention", OneOf, _interventions.KINDS, "each intervention")
Measure = vocabulary("Measure", _Measure, _measures.KINDS, "a measure")
INTERVENTIONS = tuple(_interventions.KINDS)
MEASURES = tuple(_measures.KINDS)


# ---------------------------------------------------------------- expectations
Variable = Annotated[str, Field(pattern=r"^\$\w+$", description="`$name`: a value bound by the claim's "
                                                                  "`for: {...: {values: ...}}`, one per case")]


def _number(v):
    """A threshold: a number, or `$name` bound case by case; anything else is refused in words that say so."""
    if isinstance(v, str) and not re.fullmatch(r"\$\w+", v.strip()):
        try:
            float(v)
        except ValueError:
            raise ValueError(f"must be a number, not the text {v!r} (a variable is written `$name` and takes its "
                             "values from the claim's `for: {all: {values: {name: [...]}}}`)") from None
    return v


Number = Annotated[Union[float, Variable], BeforeValidator(_number)]


def _text(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


class Region(Strict):
    at_least: Number | None = None
    at_most: Number | None = None
    between: tuple[Number, Number] | None = None
    about: Number | None = None
    tol: Union[Annotated[float, Field(gt=0)], Variable] | None = None

    @property
    def variables(self) -> list[str]:
        """The `$name`s standing for numbers, bound case by case (loader.expand)."""
        values = [self.at_least, self.at_most, self.about, self.tol, *(self.between or ())]
        return [v for v in values if isinstance(v, str)]

    @model_validator(mode="after")
    def _one(self):
        if self.variables:  # compared once each case has its numbers
            return self
        self._check()
        return self

    def _check(self):
        forms = [self.at_least is not None or self.at_most is not None, self.between is not None, self.about is not None]
        if sum(forms) != 1:
            raise ValueError("state one of: at_least / at_most, between: [lo, hi], about: x with tol: t")
        if self.about is not None and self.tol is None:
            raise ValueError("`about:` needs a tolerance: add `tol:`")
        if self.tol is not None and self.about is None:
            raise ValueError("`tol:` goes with `about:`")
        if self.between is not None and self.between[0] >= self.between[1]:
            raise ValueError("`between: [lo, hi]` needs lo < hi")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError("at_least > at_most leaves nothing in the region: it needs at_least ≤ at_most")
        return self

    def bounds(self) -> tuple[float, float]:
        inf = float("inf")
        if self.variables:
            raise ValueError(f"{self.variables[0]} is not bound: a region is judged once each case has its numbers")
        if self.between is not None:
            return self.between
        if self.about is not None:
            return (self.about - self.tol, self.about + self.tol)
        return (-inf if self.at_least is None else self.at_least, inf if self.at_most is None else self.at_most)

    def text(self) -> str:
        if self.about is not None:
            return f"≈ {_text(self.about)} ± {_text(self.tol)}"
        if self.between is not None:
            return f"in [{_text(self.between[0])}, {_text(self.between[1])}]"
        parts = [f"≥ {_text(self.at_least)}" if self.at_least is not None else "",
                 f"≤ {_text(self.at_most)}" if self.at_most is not None else ""]
        return " and ".join(p for p in parts if p)


class Crossing(Strict):
    """Where a swept measure first reaches `level` ("H2 fully recovers at scale 0.08")."""

    level: float
    at: Region = Field(description="the region the crossing point lies in")
    direction: Literal["up", "down"] = Field("up", description="up: first value where the mean is ≥ level; down: ≤")
    interpolate: bool | None = Field(
        None, description="absent: the crossing is bracketed by the sweep values around it; true: the curve is "
        "asserted linear between sweep points; false: the first sweep value reaching the level (layers, counts)")


class Order(Strict):
    """Which units (tokens of a weight-only measure) are largest or smallest; exact, no interval."""

    largest: list[int] | None = None
    smallest: list[int] | None = None
    monotonic: bool | None = Field(None, description="whether the values rise or fall monotonically with the unit")


class Correlates(Region):
    """Pearson's r between the measure and a per-prompt quantity of the data, over the prompts."""

    with_: str = Field(alias="with", description="`tok[POS]` (the token id at a named position) or a numeric field "
                                                 "of the data; `tok[$pos]` with a variable of `for:`")


RELATIVE = ("drop", "rise", "change", "contrast", "correlates")
SWEPT = ("crosses", "slope", "r2")
CIRCUIT = ("faithfulness", "completeness", "minimality", "beats_random", "cpr", "cmd")  # need `circuit:` (circuit_cases.py)
BUDGETED = ("cpr", "cmd")  # need `circuit: {budgets: ...}`


class Expect(Region):
    """The region the value lies in. `drop`/`rise`/`change` compare with the clean run, paired by
    prompt; `contrast` compares prompts meeting the claim's `where` with the rest; `correlates`
    correlates the measure with a per-prompt quantity of the data; `crosses`,
    `slope` and `r2` judge a sweep's curve; `order` ranks a weight-only measure's units."""

    drop: Region | None = Field(None, description="clean minus intervened")
    rise: Region | None = Field(None, description="intervened minus clean")
    change: Region | None = Field(None, description="intervened minus clean, for `about`/`between`")
    contrast: Region | None = Field(None, description="prompts meeting `where` minus the others")
    crosses: Crossing | None = None
    slope: Region | None = Field(None, description="least-squares slope of the measure against the swept value")
    r2: Region | None = Field(None, description="R² of that straight-line fit")
    order: Order | None = None
    correlates: Correlates | None = Field(None, description="Pearson's r with a per-prompt quantity, "
                                                             "jackknife of Fisher's z over prompts")
    record: Literal["value", "drop", "rise", "change", "contrast"] | None = Field(
        None, description="no threshold: report the value (or the change, or the contrast) and its interval")
    faithfulness: Region | None = Field(None, description="with `circuit:`: (m(C) - m(∅)) / (m(M) - m(∅)), the "
                                        "share of the metric the circuit recovers (a ratio of paired means)")
    completeness: Region | None = Field(None, description="with `circuit:`: at_most x: |F(C∖K) - F(M∖K)| ≤ x for "
                                        "every K of the circuit's `knock:` family")
    minimality: Region | None = Field(None, description="with `circuit:`: at_least x: every node v of the circuit "
                                      "has some K of the `knock:` family where adding v to K drops F(C∖K) by a "
                                      "share ≥ x")
    beats_random: Region | None = Field(None, description="with `circuit:`: at_least q: the circuit's metric is "
                                        "above that of at least a share q of the `random:` circuits of its make-up")
    cpr: Region | None = Field(None, description="with `circuit: {budgets: ...}`: MIB's CPR, the area under the "
                               "faithfulness curve over the budgets (x: the share of the model's edges kept)")
    cmd: Region | None = Field(None, description="with `circuit: {budgets: ...}`: MIB's CMD, the area between the "
                               "faithfulness curve and 1 over the budgets (0: the circuits match the model)")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v):
        return {"record": "value"} if v == "record" else v  # `expect: record`

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in RELATIVE + SWEPT + CIRCUIT + ("order", "record") if getattr(self, k) is not None]
        plain = any(v is not None for v in (self.at_least, self.at_most, self.between, self.about))
        if len(given) + plain != 1:
            raise ValueError("state one of: at_least, at_most, between, about (+tol), "
                             + ", ".join(RELATIVE + SWEPT + CIRCUIT + ("order",))
                             + ", or `record` to see the numbers first")
        if plain and not self.variables:
            Region._check(self)
        one_sided = {"completeness": "at_most", "minimality": "at_least", "beats_random": "at_least"}
        for key, side in one_sided.items():
            r = getattr(self, key)
            if r is not None and set(r.model_dump(exclude_none=True)) != {side}:
                raise ValueError(f"`{key}` takes `{side}: x` alone")
        return self

    @property
    def bound_later(self) -> bool:
        """Whether the claim's `for:` binds part of this expectation (`at_least: $v`, `with: tok[$pos]`)."""
        return "$" in repr(self.model_dump())

    @property
    def circuit_form(self) -> str | None:
        """faithfulness, completeness, minimality or beats_random: a claim about a circuit as a whole."""
        return next((k for k in CIRCUIT if getattr(self, k) is not None), None)

    @property
    def relative(self) -> str | None:
        if self.record is not None:
            return self.record if self.record != "value" else None
        return next((k for k in RELATIVE if getattr(self, k) is not None), None)

    @property
    def swept(self) -> str | None:
        return next((k for k in SWEPT if getattr(self, k) is not None), None)

    @property
    def region(self) -> Region:
        if self.record is not None:  # no region: every interval lies inside (-inf, inf)
            return Region.model_construct(at_least=None, at_most=None, between=None, about=None, tol=None)
        if self.crosses is not None:
            return self.crosses.at
        if self.order is not None:
            return Region(at_least=0.5)  # the exact check scores 1 when the order holds
        kind = self.relative or self.swept or self.circuit_form
        return getattr(self, kind) if kind else self

    def text(self) -> str:
        if self.record is not None:
            return "recorded" + (f" ({self.record})" if self.record != "value" else "")
        if self.crosses is not None:
            return f"crosses {self.crosses.level:g} at {self.crosses.at.text()}"
        if self.order is not None:
            return "order " + ", ".join(f"{k}={v}" for k, v in self.order.model_dump(exclude_none=True).items())
        if self.correlates is not None:
            return f"correlation with {self.correlates.with_} {self.correlates.text()}"
        kind = self.relative or self.swept or self.circuit_form
        return f"{CIRCUIT_TEXT.get(kind, kind)} {self.region.text()}" if kind else Region.text(self)


CIRCUIT_TEXT = {"faithfulness": "faithfulness (m(C) − m(∅)) / (m(M) − m(∅))",
                "completeness": "completeness |F(C∖K) − F(M∖K)| for every K:",
                "minimality": "minimality: for every node v, some K gives a relative drop",
                "beats_random": "share of random circuits beaten",
                "cpr": "CPR (area under the faithfulness curve over the edge budgets)",
                "cmd": "CMD (area between the faithfulness curve and 1 over the edge budgets)"}


# ---------------------------------------------------------------- quantifiers
class HeadSet(Strict):
    """Which head sets a quantifier ranges over; each becomes `$heads` (a list) in the claim."""

    each: list[Head] | None = Field(None, description="each head alone")
    pairs: list[Head] | None = Field(None, description="every pair of these heads")
    cross: list[list[Head]] | None = Field(None, description="one head from each group")
    within: list[list[Head]] | None = Field(None, description="every pair inside one group")
    subsets: list[list[Head]] | None = Field(None, description="these sets, as written")
    values: dict[str, list[Union[str, int, float]]] | None = Field(
        None, description="variables and their values, e.g. {pos: [0, 1, 2]} binds $pos; several with `combine`")
    combine: Literal["zip", "product"] | None = Field(
        None, description="with several `values` variables: zip (the i-th values together) or product (every combination)")

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("each", "pairs", "cross", "within", "subsets", "values") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give one of: each, pairs, cross, within, subsets, values")
        if self.values is not None:
            _check_values(self.values, self.combine)
        elif self.combine is not None:
            raise ValueError("`combine` goes with several `values` variables")
        if not getattr(self, given[0]) or any(isinstance(g, list) and not g for g in getattr(self, given[0])):
            raise ValueError(f"`{given[0]}` is empty: a quantifier over an empty set checks nothing")
        return self


def _check_values(values: dict, combine) -> None:
    if any(not v for v in values.values()):
        empty = next(k for k, v in values.items() if not v)
        raise ValueError(f"`values` binds {empty} to an empty list: a quantifier over nothing checks nothing")
    if len(values) > 1 and combine is None:
        raise ValueError("several `values` variables need `combine: zip` (the i-th values together) "
                         "or `combine: product` (every combination)")
    lengths = {k: len(v) for k, v in values.items()}
    if combine == "zip" and len(set(lengths.values())) > 1:
        raise ValueError("`combine: zip` pairs the i-th values, but the lists have different lengths: "
                         + ", ".join(f"{k}: {n}" for k, n in lengths.items()))


class Quantifier(Strict):
    all: HeadSet | None = None
    any: HeadSet | None = None
    none: HeadSet | None = None

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.all, self.any, self.none)) != 1:
            raise ValueError("a quantifier is one of: all, any, none")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("all", "any", "none") if getattr(self, k) is not None)

    @property
    def sets(self) -> HeadSet:
        return getattr(self, self.kind)


# ---------------------------------------------------------------- the claim and the file
class Ranks(Strict):
    """A ranking over heads: each named head's value exceeds each other head's, as paired cases
    (`L0H1>L0H0`, ...) each judged on the per-prompt difference; the measure names `$head`."""

    heads: Heads = Field(description="the heads claimed to come first, each bound as $head in the measure")
    above: Union[list[Head], Literal["layer", "all"]] = Field(
        description="the heads they beat: a list, `layer` (every other head of the named head's layer) or `all`")


class VersusRun(Strict):
    """The other side of a paired comparison, run under its own interventions: `versus: {under: [],
    measure: logit_diff}` compares the claim's run with the clean run (the full model), prompt by prompt."""

    under: list[Intervention] = Field(description="the interventions of the compared run ([]: the clean run)")
    measure: Measure | None = Field(None, description="its measure (default: the claim's own)")

    @field_validator("under", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, dict) else v


def _versus_form(v) -> str:
    run = isinstance(v, VersusRun) or isinstance(v, dict) and "under" in v  # validating a file, or dumping a claim
    return "versus[run]" if run else "versus[measure]"


# The tags name the two forms in pydantic's error locations; the loader drops them (they are no keys).
Versus = Annotated[Union[Annotated[VersusRun, Tag("versus[run]")], Annotated[Measure, Tag("versus[measure]")]],
                   Discriminator(_versus_form)]


class Knock(Strict):
    """The node sets K a circuit claim knocks out: completeness knocks each out of the circuit and
    of the model; minimality tries each K (within the circuit, without v) with and without each node v."""

    classes: Union[bool, dict[str, list[str]]] = Field(
        True, description="true: each class of the circuit's nodes (heads, mlps); or named groups of its nodes")
    random: int = Field(0, ge=0, le=200, description="how many seeded random subsets of the circuit's nodes")
    size: int | None = Field(None, ge=1, description="nodes in each random subset (default: half the circuit)")
    seed: Seed = Field(0, description="seeds the random subsets")
    greedy: int = Field(0, ge=0, le=50, description="completeness: the greedy worst case, this many steps. K grows "
                        "one node at a time, each step adding the circuit's node that most raises |F(C∖K) − F(M∖K)| "
                        "on held-out prompts; each step's K is a case, judged on the claim's prompts")
    prompts: Optional[PromptSpec] = Field(None, description="the held-out prompts the greedy K is chosen on. Default: "
                                          "the claim's generator with its seed + 2,000,003 (a JSONL set must name one)")

    @model_validator(mode="after")
    def _greedy(self):
        if self.prompts is not None and not self.greedy:
            raise ValueError("`knock.prompts` are the held-out prompts the greedy K is chosen on: add `greedy: N`")
        return self


class Budgets(Strict):
    """The edge budgets of a faithfulness curve (MIB): the top edges of a scored circuit by |score|."""

    top: Optional[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2)]] = Field(
        None, description="edge counts, e.g. [5, 10, 20, 40]")
    fractions: Optional[Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2)]] = Field(
        None, description="shares of the model's edges, e.g. MIB's [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, "
        "0.2, 0.5, 1]; each keeps floor(share × edges) edges")

    @model_validator(mode="after")
    def _one(self):
        if (self.top is None) == (self.fractions is None):
            raise ValueError("write `budgets: {top: [K, ...]}` or `budgets: {fractions: [F, ...]}`")
        return self


class Draws(Strict):
    """Random circuits of the same make-up (as many heads, MLPs, ... as the circuit), seeded."""

    draws: int = Field(20, ge=1, le=1000, description="how many random circuits")
    seed: Seed = Field(0, description="seeds the draws")


Ablation = Literal["zero", "mean", "resample", "patch"]
Scope = Literal["heads", "mlps", "input"]


class CircuitClaim(Strict):
    """The circuit a claim is about: a name under the file's `circuits:` (nodes or edges, inline or from
    a graph file), or its nodes or edges written here. Everything outside it is knocked out by
    `ablation` (keep_circuit): at node level every head and MLP (neurons: the rest of their layer) and,
    with `scope`, the input; at edge level every edge outside it, the input's too."""

    name: Optional[Annotated[str, Field(pattern=CIRCUIT_NAME)]] = Field(
        None, description="a circuit named under the file's `circuits:`")
    nodes: Optional[Annotated[list[str], Field(min_length=1)]] = Field(
        None, description="or: the circuit's heads (L1H0), MLP layers (mlp2, L2.mlp), neurons (L2N14), input")
    edges: Optional[Annotated[list[str], Field(min_length=1)]] = Field(
        None, description="or: its edges, WRITER -> READER (`L0H1 -> L2H0.q`, `input -> L1H2.v`, `L1.mlp -> logits`)")
    level: Optional[Literal["nodes", "edges"]] = Field(
        None, description="nodes: knock out every node outside the circuit; edges: every edge outside it (a node "
        "circuit's edges are those between its nodes). Default: the circuit's own level")
    scope: Optional[Annotated[list[Scope], Field(min_length=1)]] = Field(
        None, description="at node level, which nodes outside the circuit (and in ∅) are knocked out: default "
        "[heads, mlps] (the input stays); add input to knock out the embeddings too")
    ablation: Union[Ablation, Annotated[list[Ablation], Field(min_length=1)]] = Field(
        "mean", description="how a node or edge outside the circuit is knocked out: zero, mean (over the prompts, "
        "per position), resample (another prompt's), or patch (its value on the `source:` prompts, ACDC and EAP "
        "style); a list judges the claim under each, and every one must pass")
    source: Optional["PromptSpec"] = Field(None, description="with `ablation: patch`: the corrupted prompt set, as "
                                           "many prompts of the same length as the claim's")
    knock: Knock = Field(default_factory=Knock, description="the family of knocked-out sets K (completeness, "
                                                            "minimality)")
    random: Draws = Field(default_factory=Draws, description="the random circuits of `beats_random`")
    budgets: Optional[Budgets] = Field(None, description="the edge budgets of `cpr` and `cmd`: the circuit's top "
                                       "edges by |score| (a scored graph file) at each")

    _nodes = field_validator("nodes")(CircuitSpec._nodes.__func__)
    _edges = field_validator("edges")(CircuitSpec._edges.__func__)

    @model_validator(mode="after")
    def _consistent(self):
        if sum(x is not None for x in (self.name, self.nodes, self.edges)) != 1:
            raise ValueError("a circuit claim's circuit is one of: `name: NAME` (under `circuits:`), "
                             "`nodes: [...]`, `edges: [...]`")
        if ("patch" in self.ablations) != (self.source is not None):
            raise ValueError("`ablation: patch` takes its values from `source:` (a prompt set), and `source:` goes "
                             "with `ablation: patch`")
        if self.budgets is not None and self.level == "nodes":
            raise ValueError("`budgets` keep the top edges of a scored circuit: they run at edge level")
        if self.scope is not None and (self.level == "edges" or self.level is None and self.edges is not None):
            raise ValueError("`scope` chooses which nodes are knocked out at node level; at edge level every edge "
                             "outside the circuit is")
        return self

    @property
    def ablations(self) -> list[str]:
        return [self.ablation] if isinstance(self.ablation, str) else list(dict.fromkeys(self.ablation))

    @property
    def given(self) -> str:
        """The key that gives the circuit: name, nodes or edges (where errors about it point)."""
        return next(k for k in ("name", "nodes", "edges") if getattr(self, k) is not None)


class Claim(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*$", description="unique in the file; used by -k")
    says: str = Field(min_length=1, description="the sentence this claim checks, shown in reports")
    under: list[Intervention] = Field(default_factory=list)
    measure: Measure
    versus: Versus | None = Field(None, description="a second measure on the same prompts: the claim judges measure "
                                  "minus versus, paired by prompt; on the same run, or `{under: [...], measure: ...}` "
                                  "on a run of its own")
    ranks: Ranks | None = None
    circuit: CircuitClaim | None = Field(None, description="the claim is about this circuit: measured with every "
                                         "other node knocked out, and judged with faithfulness, completeness, "
                                         "minimality, beats_random, or any other expectation")
    for_: Quantifier | None = Field(None, alias="for")
    sweep: dict[str, list[Union[float, int, str]]] | None = Field(
        None, description="one variable and its values, bound as $name in under, measure and prompts")
    where: str | None = Field(None, description="keep the prompts meeting a condition: "
                              "\"category == 'neg_only' and tok[S] != tok[IO]\" (see docs/reference.md)")
    expect: Expect
    prompts: PromptSpec | None = Field(None, description="overrides the file's prompt set")
    marks: list[str] = Field(default_factory=list)
    drift: float | None = Field(None, gt=0, description="the change from the baseline that is not drift: the "
                                "change must be shown within ±drift (an equivalence test; default: a test of no change)")
    clusters: str | None = Field(None, description="a claim that generalises over groups of prompts (templates, "
                                 "sentences): the field naming each prompt's group (`template` for a text "
                                 "generator's list of templates, or a JSONL field); the bound is over group means")

    @field_validator("under", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, dict) else v

    @field_validator("where")
    @classmethod
    def _parses(cls, v):
        from ..prompts.where import parse

        if v is not None:
            parse(v)  # syntax here, with the line; names and positions once the prompts exist
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.sweep is not None:
            if len(self.sweep) != 1:
                raise ValueError("a sweep varies one variable: `sweep: {factor: [0, 0.1, 0.2]}`")
            values = next(iter(self.sweep.values()))
            if len(values) < 2:
                raise ValueError("a sweep needs at least two values")
            repeated = sorted({str(v) for v in values if sum(str(w) == str(v) for w in values) > 1})
            if repeated:  # two points at one x: no curve to cross, fit or rank
                raise ValueError(f"a sweep's values must differ: {', '.join(repeated)} appears more than once")
            if self.for_ is not None:
                raise ValueError("a claim has a sweep or a `for:` quantifier, not both")
        if self.expect.swept is not None and self.sweep is None:
            raise ValueError("`crosses`, `slope` and `r2` judge a sweep: add `sweep:`, or use at_least/at_most/...")
        if self.sweep is not None and not all(isinstance(v, (int, float)) for v in next(iter(self.sweep.values()))):
            raise ValueError("sweep values must be numbers: the curve is judged against them")
        if self.expect.relative == "contrast" and self.where is None:
            raise ValueError("`contrast` compares prompts meeting `where:` with the rest: add `where:`")
        if self.expect.bound_later and (self.sweep is not None or self.ranks is not None):
            raise ValueError("variables in `expect:` take their values from `for: {all: {values: {v: [...]}}}`, one "
                             "region per case; a sweep's curve and a ranking are judged against one region: write "
                             "the numbers")
        if self.sweep is not None and self.expect.swept is None and self.expect.record is None:
            raise ValueError("a sweep is judged with `crosses`, `slope` or `r2` (or `expect: record` to see each value)")
        kind = _measures.kind_of(self.measure)
        if self.expect.order is not None and not kind.is_weights_only(self.measure.body):
            raise ValueError("`order` ranks a weight-only measure's values: "
                             + ", ".join(k for k, m in _measures.KINDS.items() if m.weights_only))
        why = kind.zero_mean_why(self.measure.body)
        if (why and self.where is None and self.expect.record is None and self.expect.correlates is None
                and self.versus is None and self.clusters is None):  # those judge something besides that 0
            raise ValueError(f"{why}, so the mean this claim judges is 0 whatever the model: a claim that cannot "
                             "tell a model where it holds from one where it does not. Judge a subset "
                             "(`where:`), centre on one (`centre: \"tok[1] > tok[2]\"`), correlate the values "
                             "(`expect: {correlates: ...}`), see them (`expect: record`), or drop `centre`")
        if self.expect.record is None and kind.vector and self.expect.order is None:
            raise ValueError(f"`{kind.name}` gives one value per unit: judge it with `expect: {{order: ...}}`")
        if kind.weights_only and kind.is_weights_only(self.measure.body) and (self.expect.relative is not None or self.expect.swept is not None or self.under):
            raise ValueError(f"`{kind.name}` is computed from the weights alone, one exact number: it has no clean "
                             "run to compare with, no prompts to split and no interventions; judge it with "
                             "at_least / at_most / between / about")
        if self.ranks is not None and (self.for_ is not None or self.sweep is not None or self.versus is not None):
            raise ValueError("`ranks` makes its own paired cases: it goes without `for:`, `sweep:` and `versus:`")
        if (self.ranks is not None or self.versus is not None) and self.expect.order is not None:
            raise ValueError("`order` ranks one weight-only measure's units; compare two measures with at_least/...")
        if self.versus is not None and not _measures.kind_of(self.versus_measure).per_prompt:
            raise ValueError("`versus` is one value per prompt of the claim's own prompts: not "
                             + " or ".join(k for k, m in _measures.KINDS.items() if not m.per_prompt))
        if self.expect.circuit_form is not None and self.circuit is None:
            raise ValueError(f"`{self.expect.circuit_form}` judges a circuit: add `circuit: {{nodes: [...]}}`")
        if (self.expect.circuit_form in BUDGETED) != (self.circuit is not None and self.circuit.budgets is not None):
            raise ValueError("`cpr` and `cmd` judge a faithfulness curve over edge budgets, and `budgets:` (in "
                             "`circuit:`) goes with them: write both, or neither")
        if self.circuit is not None and self.circuit.knock.greedy and self.expect.circuit_form != "completeness":
            raise ValueError("`knock.greedy` chooses the worst-case K of completeness: it goes with "
                             "`expect: {completeness: ...}`")
        if self.circuit is not None and (self.under or self.for_ or self.sweep or self.ranks or self.versus
                                         or self.where or self.expect.relative in ("contrast", "correlates")
                                         or self.expect.swept or self.expect.order):
            raise ValueError("`circuit:` makes the claim's runs and cases itself: it goes without `under`, `for`, "
                             "`sweep`, `ranks`, `versus`, `where`, contrast, correlates, sweeps and order")
        if self.versus_under is not None and self.expect.relative in ("drop", "rise", "change"):
            raise ValueError("`versus: {under: ...}` already compares two runs, prompt by prompt: judge the "
                             "difference with at_least / at_most / between / about, not drop/rise/change")
        if kind.is_weights_only(self.measure.body) and (self.under or self.where or self.expect.relative
                                                        or self.expect.swept or self.versus is not None):
            raise ValueError(f"`{kind.describe(self.measure.body)}` reads the weights alone: no run, so no `under`, "
                             "`where`, `versus`, drop/rise/change/contrast or sweep curve applies to it")
        return self


    @property
    def versus_measure(self) -> "Measure | None":
        """The measure subtracted: `versus` itself, or its run's measure (by default the claim's)."""
        if isinstance(self.versus, VersusRun):
            return self.versus.measure or self.measure
        return self.versus

    @property
    def versus_under(self) -> list | None:
        """The interventions of the compared run, or None when `versus` reads the claim's own run."""
        return self.versus.under if isinstance(self.versus, VersusRun) else None


class Role(Strict):
    """A head named by what it does: the candidate scoring highest on a measure, found when the claims run."""

    best: "Measure" = Field(description="a measure with `$head` where the candidate goes, e.g. "
                                        "{head_score: {head: $head, pattern: induction}}")
    among: Union[list[Head], str] = Field("all", description="candidates: a list of heads, `layer N`, or `all`")
    rank: int = Field(1, ge=1, description="1 takes the highest-scoring candidate, 2 the next, ...")
    prompts: Union[PromptSpec, Literal["claims"], None] = Field(
        None, description="the prompts the scan runs on: default, the file's prompts drawn with another seed "
        "(held out from the claims); `claims` scans on the claims' own prompts (a best-of-k choice, biased)")

    @field_validator("among")
    @classmethod
    def _among(cls, v):
        if isinstance(v, str) and not re.fullmatch(r"all|layer \d+", v):
            raise ValueError("write `among: all`, `among: layer 1`, or a list of heads")
        return v

    @model_validator(mode="after")
    def _uses_head(self):
        if "$head" not in str(self.best.model_dump()):
            raise ValueError("a role's `best:` measure puts the candidate where it writes `$head`")
        return self


class HypothesisFile(Strict):
    model: ModelSpec
    prompts: PromptSpec | None = Field(None, description="the prompts every claim runs on (a claim's own `prompts:` "
                                       "wins); a file whose claims all read the weights alone needs none")
    checkpoints: Union[Annotated[list[str], Field(min_length=1)], str, None] = Field(
        None, description="run every claim on each of these checkpoints of the file's model: model folders "
        "(config.json + model.safetensors) or weights files, relative to this file; a list, or a glob such "
        "as `ckpts/step-*` (natural order: step-400 before step-1200)")
    circuits: dict[Annotated[str, Field(pattern=CIRCUIT_NAME)], CircuitSpec] = Field(
        default_factory=dict, description="circuits named once, for `keep_circuit`/`knock_out` to refer to by name: "
        "{nodes: [...]}, {edges: [...]}, or {file: PATH, take: in_graph | {top: K} | {top_fraction: F}}")
    roles: dict[Annotated[str, Field(pattern=r"^[A-Za-z_]\w*$")], Role] = Field(
        default_factory=dict, description="heads bound by a scan when the claims run; claims write `$name`")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="family-wise error rate for the claims of this file (Holm)")
    seed: Seed = Field(0, description="seeds resampling, bootstrap and anything random at run time")
    claims: list[Claim] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self):
        taken = {"head", "heads"} & set(self.roles)
        if taken:
            raise ValueError(f"role name ${taken.pop()} is taken: `for:` binds $head and $heads")
        jsonl = self.prompts is not None and self.prompts.generator == "jsonl"  # weights-only files have none
        for name, role in self.roles.items():
            if role.prompts is None and jsonl:
                raise ValueError(f"role ${name} needs `prompts:`: a role is scanned on prompts held out from the "
                                 "claims, and a JSONL data set has no other seed; name held-out rows (another "
                                 "JSONL file or a generator), or write `prompts: claims` to scan on the claims' "
                                 "own rows (biased: the best of several heads looks better than it is)")
        seen = set()
        for c in self.claims:
            bound = set(c.sweep or {}) | set((c.for_.sets.values or {}) if c.for_ and c.for_.sets else {})
            shadowed = sorted(bound & set(self.roles))
            if shadowed:  # `$name` would be the scan's head, not the values the claim lists
                raise ValueError(f"claim {c.id!r} binds ${shadowed[0]} in its `for:` or `sweep:`, and the file has a "
                                 f"role ${shadowed[0]}: rename one of them")
            if c.id in seen:
                raise ValueError(f"duplicate claim id {c.id!r}")
            seen.add(c.id)
        return self


ModelSpec.model_rebuild()


def processing_flags(m: ModelSpec) -> tuple[str, ...]:
    """The weight-processing steps a file asks for, in TransformerLens's order."""
    steps = tuple(Processing.model_fields)
    if m.weight_processing in ("none", "default"):
        return steps if m.weight_processing == "default" else ()
    return tuple(k for k in steps if getattr(m.weight_processing, k))


# A name, not a web address: editors find the schema by path (README, Reference).
SCHEMA_ID = "urn:circuitcheck:schema:hypothesis-file"


def json_schema() -> dict:
    """The JSON Schema of a hypothesis file, with the short forms the loader also accepts."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
              **HypothesisFile.model_json_schema(by_alias=True)}
    schema["title"] = "circuitcheck hypothesis file"
    defs = schema["$defs"]
    defs["Expect"] = {"anyOf": [{"const": "record", "description": "no verdict: the value, its interval and "
                                 "every case, to choose a threshold from"}, defs["Expect"]]}
    defs["ModelSpec"] = {"anyOf": [{"type": "string", "pattern": r"^(zoo|hf|factory):.+$",
                                    "description": "zoo:NAME, hf:NAME or factory:NAME"}, defs["ModelSpec"]]}
    bare = [k for k in _measures.KINDS.values() if k.bare]  # `measure: accuracy`: the name alone
    defs["Measure"] = {"anyOf": [*({"enum": list(get_args(k.schema)), "description": k.form} for k in bare),
                                 defs["Measure"]]}
    for model in ("Claim", "VersusRun"):  # `under:` takes one intervention or a list
        under = defs[model]["properties"]["under"]
        defs[model]["properties"]["under"] = {"anyOf": [{"$ref": "#/$defs/Intervention"}, under], "title": "Under",
                                              "description": "one intervention, or a list applied together"}
    return schema


def head_sets(s) -> list[tuple[str, ...]]:
    """The head tuples a `for:` set names, one per case (`each`, `pairs`, `cross`, `within`, `subsets`)."""
    if s.each is not None:
        return [(h,) for h in s.each]
    if s.pairs is not None:
        return list(itertools.combinations(s.pairs, 2))
    if s.cross is not None:
        return list(itertools.product(*s.cross))
    if s.within is not None:
        return [p for g in s.within for p in itertools.combinations(g, 2)]
    return [tuple(x) for x in s.subsets]
