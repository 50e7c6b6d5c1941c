"""Positions selected inside each row by a condition: which targets of a multi-target row a metric
reads (`targets`), and which queries an attention set holds (`from: {where: ...}`).

    "target in 28..37"            the targets (queries) whose target token lies in 28..37
    "copies_before > 0"           the positions whose token already stood earlier in the row
    "tok[q] == tok[S1] and q > 3" q is the position itself (its index among the row's real tokens)

The condition is read by the `where:` grammar (prompts/where.py parses it; nothing is evaluated as
Python) and evaluated here per position instead of per prompt:

    tok[q], tok[q-1], tok[q+2]    the token at the position (or near it; -1 outside the row)
    q                             the position's index in the row's own tokens (0: first real token)
    target                        the target token read at the position (-1 where none is)
    copies_before                 how often the position's token occurs earlier in the row
    tok[POS], pos[POS], numbers   per prompt, as in `where:` (POS a named position)

Numpy only: selections are checked while pytest collects.
"""
from __future__ import annotations

import re

import numpy as np

from .. import prompts as P
from ..prompts import where as W

NAMES = ("q", "target", "copies_before")
HINT = ("a position condition reads tok[q] (or tok[q-1], tok[q+1]), q, target, copies_before, tok[POS], pos[POS] "
        "and numbers: e.g. \"target in 28..37\", \"copies_before > 0\"")


class Sites:
    """The positions a condition is asked about: `q` [n, m] indices into the padded rows, and the
    target token read at each (-1 where none)."""

    def __init__(self, prompts: P.PromptSet, q: np.ndarray, target: np.ndarray):
        self.prompts, self.q, self.target = prompts, q, target


def at_every_position(prompts: P.PromptSet) -> Sites:
    """Every position of every row, with the (first) target read there."""
    n, t = prompts.n, prompts.seq_len
    target = np.full((n, t), -1, np.int64)
    valid = prompts.target_valid if prompts.target_valid is not None else np.ones(prompts.target_tok.shape, bool)
    for j in reversed(range(prompts.target_tok.shape[1])):  # the first target at a position wins
        rows = np.flatnonzero(valid[:, j])
        target[rows, prompts.target_pos[rows, j]] = prompts.target_tok[rows, j]
    return Sites(prompts, np.broadcast_to(np.arange(t), (n, t)), target)


def at_targets(prompts: P.PromptSet) -> Sites:
    """Each target of each row: where it is read, and its token."""
    return Sites(prompts, prompts.target_pos, prompts.target_tok)


def select(cond: str, sites: Sites) -> np.ndarray:
    """[n, m] boolean: the sites meeting `cond`, and only the row's real tokens."""
    ps = sites.prompts
    out = np.asarray(_eval(W.parse(cond), sites), dtype=bool) & np.ones(sites.q.shape, bool)
    if ps.mask is not None:
        out &= ps.mask[np.arange(ps.n)[:, None], sites.q].astype(bool)
    return out


def check(cond: str) -> None:
    """Parse `cond` and refuse names it cannot have (raises `P.PromptError`), before any prompt exists."""
    for node in _nodes(W.parse(cond)):
        if node[0] == "name" and node[1] not in NAMES:
            raise W.WhereError(f"a position condition names {node[1]!r}", HINT)
        if node[0] == "pos" and _query_offset(node[1]) is not None:
            raise W.WhereError("`pos[q]` is `q` in a position condition", HINT)


def references(cond: str, loc: tuple):
    """The named positions a condition reads (`tok[S1]`, `pos[S1]`), checked at collection."""
    for node in _nodes(W.parse(cond)):
        if node[0] in ("tok", "pos") and _query_offset(node[1]) is None:
            yield loc, node[1], "position"


def _nodes(node):
    yield node
    for part in node[1:]:
        if isinstance(part, tuple):
            yield from _nodes(part)
        elif isinstance(part, list):
            for item in part:
                yield from _nodes(item)


def _query_offset(text: str) -> int | None:
    """The offset of `q`, `q+1`, `q - 2` (None: not the query)."""
    m = re.fullmatch(r"\s*q\s*(?:([+-])\s*(\d+))?\s*", text)
    if not m:
        return None
    return 0 if not m[1] else int(m[2]) * (1 if m[1] == "+" else -1)


def _eval(node, s: Sites):
    kind = node[0]
    if kind in ("or", "and"):
        left, right = _eval(node[1], s), _eval(node[2], s)
        return (left | right) if kind == "or" else (left & right)
    if kind == "not":
        return ~_eval(node[1], s)
    if kind == "cmp":
        return W.OPS[node[1]](_value(node[2], s), _value(node[3], s))
    left, members = _value(node[1], s), node[2]
    if members[0] == "range":
        return (left >= members[1]) & (left <= members[2])
    return np.isin(left, [_value(m, s) for m in members[1]])


def _value(node, s: Sites):
    ps, kind = s.prompts, node[0]
    if kind == "lit":
        if isinstance(node[1], str):
            raise W.WhereError(f"a position condition compares numbers, not the text {node[1]!r}", HINT)
        return node[1]
    if kind == "var":
        raise W.WhereError(f"{node[1]} is not bound: a quantifier's `values:` or a sweep binds it", HINT)
    rows = np.arange(ps.n)[:, None]
    if kind in ("tok", "pos"):
        off = _query_offset(node[1])
        if off is None:  # a named position: one value per prompt
            at = P.position(ps, node[1])
            return (ps.tokens[np.arange(ps.n), at] if kind == "tok" else at - ps.start)[:, None]
        at = s.q + off
        inside = (at >= ps.start[:, None]) & (at < (ps.start + ps.length)[:, None])
        return np.where(inside, ps.tokens[rows, np.clip(at, 0, ps.seq_len - 1)], -1)
    if node[1] == "q":
        return s.q - ps.start[:, None]
    if node[1] == "target":
        return s.target
    if node[1] == "copies_before":
        return _copies_before(ps)[rows, s.q]
    raise W.WhereError(f"a position condition names {node[1]!r}", HINT)


def _copies_before(ps: P.PromptSet) -> np.ndarray:
    """[n, t]: how many earlier real tokens of the row equal the token at each position."""
    toks = ps.tokens
    same = toks[:, :, None] == toks[:, None, :]  # [n, q, k]
    earlier = np.tril(np.ones((ps.seq_len, ps.seq_len), bool), -1)[None]
    real = np.ones(toks.shape, bool) if ps.mask is None else ps.mask.astype(bool)
    return (same & earlier & real[:, None, :]).sum(-1)
