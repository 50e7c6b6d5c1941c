"""The pydantic building blocks every part of a hypothesis file is written with: strict models,
heads, positions, numbers that a sweep may bind. No torch: collection validates with them."""
from __future__ import annotations

from typing import Annotated, Any, Iterator, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .names import HEAD, NEURON

Head = Annotated[str, Field(pattern=r"^(L\d+H\d+|\$\w+)$", description="a head as `L<layer>H<head>`, e.g. L0H2")]
Position = Annotated[Union[str, int], Field(description="a named position: ANS, argmax, S1+1, last, or an index")]
Number = Union[float, Annotated[str, Field(pattern=r"^\$\w+$")]]  # a number, or `$name` bound by a sweep


def _one_head_as_list(v):
    return [v] if isinstance(v, str) and HEAD.match(v) else v


# A list of heads, one head (`heads: L0H1`, or `$head` bound by `each`), or `$heads` bound by a quantifier.
Heads = Annotated[Union[Annotated[list[Head], Field(min_length=1)], Head], BeforeValidator(_one_head_as_list)]
Neuron = Annotated[str, Field(pattern=r"^(L\d+N\d+|\$\w+)$", description="an MLP neuron as `L<layer>N<index>`, "
                                                                         "e.g. L1N42")]


def _one_neuron_as_list(v):
    return [v] if isinstance(v, str) and NEURON.match(v) else v


# MLP neurons: a list, one neuron, or `$neurons` bound by a quantifier.
Neurons = Annotated[Union[Annotated[list[Neuron], Field(min_length=1)], Neuron], BeforeValidator(_one_neuron_as_list)]
Layer = Union[Annotated[int, Field(ge=0)], Annotated[str, Field(pattern=r"^\$\w+$")]]  # a layer, or `$layer`
Seed = Annotated[int, Field(ge=0, le=2**63 - 1, description="a non-negative integer")]
Positions = Union[list[Position], Position, None]


class Strict(BaseModel):
    # NaN and infinity are refused everywhere: `about: 0.5, tol: .inf` would pass anything.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def references(body, base: tuple = ()):
    """(loc, value, what) for the heads and positions a body names in the usual fields (`head`,
    `heads`, `from`, `to`, `at`), so collection can check each against the model and prompts;
    what is 'head', 'position' or 'hook'. Kinds add the references their other fields make."""
    if not isinstance(body, BaseModel):
        return
    heads = getattr(body, "heads", None)
    for j, h in enumerate(heads if isinstance(heads, list) else ([heads] if heads else [])):
        yield base + ("heads", j) if isinstance(heads, list) else base + ("heads",), h, "head"
    if isinstance(getattr(body, "head", None), str):
        yield base + ("head",), body.head, "head"
    for name in ("from_", "to"):
        if getattr(body, name, None) is not None:
            yield base + (name.rstrip("_"),), getattr(body, name), "position"
    at = getattr(body, "at", None)
    for j, p in enumerate(at if isinstance(at, list) else ([] if at is None else [at])):
        yield base + ("at", j) if isinstance(at, list) else base + ("at",), p, "position"


class KindBase:
    """What every kind of the vocabulary (a measure, an intervention) has: the key a file writes,
    the schema of its body, and how it names itself. See measures/base.py and interventions/base.py."""

    name: str = ""
    schema: Any = None

    @property
    def form(self) -> str:
        """How an error message lists this kind among the others."""
        return self.name

    def doc(self) -> str:
        """The JSON Schema description: the first paragraph of the kind's module docstring."""
        import sys

        text = sys.modules[type(self).__module__].__doc__ or ""
        return " ".join(text.strip().split("\n\n")[0].split())

    def references(self, body) -> Iterator[tuple[tuple, Any, str]]:
        yield from references(body)

    def describe(self, body) -> str:
        """How reports and errors name one use of it: `attention(head=L0H1, from=ANS, to=argmax)`."""
        if not isinstance(body, BaseModel):
            return f"{self.name}({_short(body)})"
        fields = body.model_dump(by_alias=True, exclude_none=True)
        return f"{self.name}(" + ", ".join(f"{k}={_short(v)}" for k, v in fields.items()) + ")"


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_short, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def registrar(table: dict):
    """A class decorator that adds one instance of the class to `table`, under its `name`."""

    def register(cls):
        table[cls.name] = cls()
        return cls

    return register
