"""`measure: {row_class: {head, behaviour, rows, mass, window}}`: the share of a head's attention
rows that one behaviour explains (seed 001)."""
from __future__ import annotations

from typing import Literal, Union

import numpy as np
from pydantic import Field

from .. import prompts as P
from ..language.fields import Head, Position, Strict
from ..language.names import parse_head, pattern_name
from .base import Kind, f64, register, to_numpy
from .head_score import detection_pattern


class RowClass(Strict):
    """Share of a head's attention rows that one behaviour explains (≥ `mass` of the row; seed 001)."""

    head: Head
    behaviour: Literal["previous", "inactive", "induction", "previous+induction", "unknown"]
    rows: Union[list[Position], str] = Field("all", description="query positions: a list, `all`, or `A..B`")
    mass: float = Field(0.95, gt=0, le=1)
    window: int = Field(1, ge=1, description="`previous` covers the last `window` tokens")


@register
class RowClassKind(Kind):
    name = "row_class"
    schema = RowClass
    value_range = (0.0, 1.0)  # a share

    def needs(self, body, cfg) -> set[str]:
        return {pattern_name(parse_head(body.head)[0])}

    def compute(self, body, run) -> np.ndarray:
        return row_class(run.cache, run.prompts, body)

    def references(self, body):
        yield from super().references(body)
        if body.rows != "all":
            rows = body.rows
            for j, p in enumerate(rows if isinstance(rows, list) else rows.split("..")):
                yield ("rows",) + ((j,) if isinstance(rows, list) else ()), p, "position"

    def check(self, body, prompts) -> None:
        if body.rows == "all" and prompts.mask is not None:  # `all` would count padding rows
            raise P.PromptError("`rows: all` reads every query position, and these prompts are padded to "
                                "different lengths",
                                "name the rows (`rows: [S2, last]` or `rows: S2..last`), or give rows of one length")
        if isinstance(body.rows, str) and body.rows != "all":
            _rows(prompts, body.rows)  # a range that runs backwards or varies in width: refused here


def row_masses(pattern, tokens, window: int) -> dict:
    """For each row [n, q]: attention mass on BOS, on the previous `window` tokens, on induction targets."""
    import torch

    t = pattern.shape[-1]
    q = torch.arange(t)[:, None]
    k = torch.arange(t)[None, :]
    prev = ((q - k >= 1) & (q - k <= window)).to(pattern)
    ind = detection_pattern(tokens, "induction").to(pattern)
    return {"inactive": pattern[..., 0], "previous": (pattern * prev).sum(-1), "induction": (pattern * ind).sum(-1),
            "previous+induction": (pattern * torch.clamp(prev + ind, max=1)).sum(-1)}


def classify_rows(pattern, tokens, mass: float, window: int) -> np.ndarray:
    """Label every row [n, q] with the first behaviour carrying at least `mass` of it (seed 001)."""
    masses = row_masses(pattern, tokens, window)
    labels = np.full(tuple(pattern.shape[:2]), "unknown", dtype=object)
    for name in ("previous+induction", "induction", "previous", "inactive"):  # later names win
        labels[to_numpy(masses[name]) >= mass] = name
    return labels


def row_class(cache, prompts, body) -> np.ndarray:
    import torch

    layer, h = parse_head(body.head)
    pattern = f64(cache[pattern_name(layer)][:, h])
    labels = classify_rows(pattern, torch.as_tensor(prompts.tokens), body.mass, body.window)
    rows = _rows(prompts, body.rows)
    picked = labels[np.arange(prompts.n)[:, None], rows]
    return (picked == body.behaviour).mean(-1).astype(np.float64)


def _rows(prompts, rows) -> np.ndarray:
    if rows == "all":
        return np.tile(np.arange(1, prompts.seq_len), (prompts.n, 1))  # row 0 can only attend to itself
    if isinstance(rows, list):
        return np.stack([P.position(prompts, r) for r in rows], axis=1)
    start, end = (P.position(prompts, r.strip()) for r in rows.split(".."))
    if np.any(end < start):
        first, last = (r.strip() for r in rows.split(".."))
        raise P.PromptError(f"row range {rows!r} runs backwards: {last} comes before {first} in "
                            f"{int(np.sum(end < start))} prompts", f"write it the other way round: `{last}..{first}`")
    width = int((end - start).max()) + 1
    if not np.all(end - start == width - 1):
        raise P.PromptError(f"row range {rows!r} spans a different number of rows in different prompts",
                            "use a range whose ends lie the same distance apart in every prompt, or list the rows")
    return start[:, None] + np.arange(width)[None, :]
