"""Sets of query and key positions for aggregated attention, resolved per prompt.

A set is one position (`ANS`, `S1+1`, `3`), a list of them, an inclusive range `"S1..S2-1"`, or
(keys only) `{where: "tok[k] == tok[q]"}`: the keys the query can see (the earlier ones on a causal
model, all on a bidirectional one) whose token meets a condition, where `tok[k]` is the key's token,
`tok[q]` the query's, `tok[POS]` the token at a named position. The query's own position is left out
(`include_query: true` keeps it): "the earlier copies of this token" is what a duplicate-token claim
means, and with the query in, `tok[k] == tok[q]` always holds some mass (the query's attention to itself).
Sets are boolean masks over positions, so ranges may differ in length between prompts. Numpy
only: a file's sets are checked while pytest collects.
"""
from __future__ import annotations

import operator
import re
from typing import Annotated, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from . import selections as S
from .. import prompts as P

OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt,
       ">": operator.gt}
KEY_WHERE = r"^\s*tok\[k\]\s*(==|!=|<=|>=|<|>)\s*(tok\[[^\]]+\]|-?\d+)\s*$"


def ordered(prompts: P.PromptSet, spec) -> np.ndarray:
    """[n, m] positions of a list or range, in order (a range must have one length in every prompt)."""
    if isinstance(spec, list):
        return np.stack([P.position(prompts, p) for p in spec], axis=1)
    if isinstance(spec, str) and ".." in spec:
        start, end = (P.position(prompts, part.strip()) for part in spec.split("..", 1))
        width = end - start + 1
        if (width < 1).any():
            i = int(np.flatnonzero(width < 1)[0])
            raise P.PromptError(f"range {spec!r} is empty in prompt {i} ({int(start[i])}..{int(end[i])})",
                                "a range `A..B` runs from A to B inclusive, with A ≤ B")
        if (width != width[0]).any():
            raise P.PromptError(f"range {spec!r} has different lengths in different prompts",
                                "pairing queries with keys needs the same number of each in every prompt")
        return start[:, None] + np.arange(width[0])[None, :]
    return P.position(prompts, spec)[:, None]


def mask(prompts: P.PromptSet, spec) -> np.ndarray:
    """[n, seq] boolean: the positions of a set (one position, a list, a range, or `{where: ...}`:
    the positions meeting a condition, which may hold none in some prompts: see `defined`)."""
    if isinstance(spec, (dict, QueryWhere)):
        return S.select(spec["where"] if isinstance(spec, dict) else spec.where, S.at_every_position(prompts))
    out = np.zeros((prompts.n, prompts.seq_len), dtype=bool)
    rows = np.arange(prompts.n)
    if isinstance(spec, str) and ".." in spec:
        start, end = (P.position(prompts, part.strip()) for part in spec.split("..", 1))
        idx = np.arange(prompts.seq_len)[None, :]
        out = (idx >= start[:, None]) & (idx <= end[:, None])
    else:
        for col in ordered(prompts, spec).T:
            out[rows, col] = True
    if not out.any(1).all():
        i = int(np.flatnonzero(~out.any(1))[0])
        raise P.PromptError(f"position set {spec!r} is empty in prompt {i}", "a range `A..B` needs A ≤ B")
    return out


def key_mask(prompts: P.PromptSet, spec, causal: bool = True) -> np.ndarray:
    """[n, q, k] boolean: the keys each query's set holds (`causal`: the model's attention direction,
    which decides which keys a `where` set may hold)."""
    t = prompts.seq_len
    if isinstance(spec, (dict, KeyWhere)):
        spec = spec if isinstance(spec, KeyWhere) else KeyWhere(**spec)
        return _where(prompts, spec.where) & visible(t, causal, spec.include_query)[None]
    return np.broadcast_to(mask(prompts, spec)[:, None, :], (prompts.n, t, t))


def visible(t: int, causal: bool, include_query: bool) -> np.ndarray:
    """[q, k] boolean: the keys a query can attend to (earlier ones when causal), with or without itself."""
    out = np.tril(np.ones((t, t), dtype=bool)) if causal else np.ones((t, t), dtype=bool)
    if not include_query:
        np.fill_diagonal(out, False)
    return out


def is_causal(model) -> bool:
    """Whether a model attends only to earlier positions (TransformerLens's `attention_dir`)."""
    return getattr(getattr(model, "cfg", None), "attention_dir", "causal") != "bidirectional"


def _where(prompts: P.PromptSet, cond: str) -> np.ndarray:
    m = re.match(KEY_WHERE, cond)
    if not m:
        raise P.PromptError(f"cannot read key condition {cond!r}",
                            "write `tok[k] OP X` with OP one of == != < <= > >= and X `tok[q]`, `tok[POS]` or a number")
    toks = prompts.tokens
    key = toks[:, None, :]
    rhs = m[2]
    if re.fullmatch(r"-?\d+", rhs):
        right = int(rhs)
    elif rhs == "tok[q]":
        right = toks[:, :, None]
    else:
        right = toks[np.arange(prompts.n), P.position(prompts, rhs[4:-1].strip())][:, None, None]
    return np.broadcast_to(OPS[m[1]](key, right), (prompts.n, prompts.seq_len, prompts.seq_len))


# ---------------------------------------------------------------- on a head's pattern (torch)
def mass(pattern, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per prompt: the attention mass on the key set, averaged over the queries of the set.
    pattern [n, q, k]; queries [n, q] and keys [n, q, k] boolean masks."""
    import torch

    p = pattern.to(torch.float64)
    on_keys = (p * torch.as_tensor(np.ascontiguousarray(keys), device=p.device)).sum(-1)  # [n, q]
    qm = torch.as_tensor(queries, device=p.device, dtype=torch.float64)
    return ((on_keys * qm).sum(-1) / qm.sum(-1)).cpu().numpy()  # NaN where no query: see `defined`


def pairs(pattern, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per prompt: the mean of pattern[q_i, k_i] over paired positions [n, m] (the i-th with the i-th)."""
    import torch

    rows = torch.arange(pattern.shape[0])[:, None]
    q, k = torch.as_tensor(queries), torch.as_tensor(keys)
    return pattern[rows, q, k].to(torch.float64).mean(-1).cpu().numpy()


def argmax_in(pattern, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per prompt: the share of the set's queries whose largest attention weight lands on the key set
    (NaN where the set holds no query: the prompt has no value, see `defined`)."""
    top = pattern.argmax(-1).cpu().numpy()  # [n, q]
    n, t = top.shape
    hit = keys[np.arange(n)[:, None], np.arange(t)[None, :], top]
    count = queries.sum(-1)
    return np.divide((hit & queries).sum(-1), count, out=np.full(n, np.nan), where=count > 0)


def defined(prompts: P.PromptSet, queries) -> np.ndarray | None:
    """The prompts whose query set holds a query (None: all, as every set but `{where: ...}` must)."""
    if not isinstance(queries, (dict, QueryWhere)):
        return None
    return mask(prompts, queries).any(1)


# ---------------------------------------------------------------- in a hypothesis file
class KeyWhere(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    where: str = Field(description="`tok[k] OP X`: X is `tok[q]`, `tok[POS]` or a number")
    include_query: bool = Field(False, description="also count the query's own position when its token meets "
                                "the condition (default: only the other keys it can see)")


class QueryWhere(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    where: str = Field(description="the positions meeting a condition on each position: \"target in 28..37\", "
                                   "\"copies_before > 0\" (tok[q], q, target, copies_before; see docs/reference.md)")

    @field_validator("where")
    @classmethod
    def _reads(cls, v):
        S.check(v)
        return v


def _key_set(v):
    """A mapping is a key condition: check it here, so an error names the condition, not a union member."""
    if isinstance(v, dict):
        if not set(v) <= {"where", "include_query"} or not isinstance(v.get("where"), str) \
                or not re.match(KEY_WHERE, v["where"]):
            raise ValueError(f"cannot read key set {v!r}: write {{where: \"tok[k] OP X\"}} with OP one of "
                             "== != < <= > >= and X `tok[q]` (the query's token), `tok[POS]` or a number "
                             "(and optionally `include_query: true`)")
    return v


def _query_set(v):
    """A mapping is a position condition: read it here, so an error names the condition."""
    if isinstance(v, dict):
        if set(v) != {"where"} or not isinstance(v["where"], str):
            raise ValueError(f"cannot read query set {v!r}: write {{where: \"CONDITION\"}}, e.g. "
                             "{where: \"copies_before > 0\"}")
        try:
            S.check(v["where"])
        except P.PromptError as exc:
            raise ValueError(f"{exc} ({exc.hint})") from None
    return v


Position = Union[str, int]
Queries = Annotated[Union[list[Position], Position, QueryWhere], BeforeValidator(_query_set)]
Keys = Annotated[Union[list[Position], Position, KeyWhere], BeforeValidator(_key_set)]


def references(spec, loc: tuple):
    """(loc, position, 'position') for every named position inside a set, checked at collection."""
    if isinstance(spec, QueryWhere):
        yield from S.references(spec.where, loc + ("where",))
    elif isinstance(spec, KeyWhere):
        m = re.match(KEY_WHERE, spec.where)
        inner = m[2][4:-1].strip() if m[2].startswith("tok[") else None
        if inner not in (None, "q"):
            yield loc + ("where",), inner, "position"
    elif isinstance(spec, list):
        for j, p in enumerate(spec):
            yield loc + (j,), p, "position"
    elif isinstance(spec, str) and ".." in spec:
        for part in spec.split("..", 1):
            yield loc, part.strip(), "position"
    else:
        yield loc, spec, "position"
