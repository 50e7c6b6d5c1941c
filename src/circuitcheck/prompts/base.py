"""A prompt set and the named positions inside it: what every generator builds and every later
stage reads. Numpy only, so prompts can be built and checked while pytest collects.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class PromptError(ValueError):
    """A prompt set or a position that cannot be built; `hint` says what to do instead."""

    def __init__(self, message: str, hint: str = "", file: Path | None = None, line: int | None = None,
                 field: str = "", param: str | tuple = ""):
        super().__init__(message)
        self.hint, self.param = hint, param  # `param`: the generator parameter at fault, if one is
        self.file, self.line, self.field = file, line, field  # a data file's own line (JSONL rows)
        self.detail = message  # the message without its location, once a caller names the location


def row_error(path, line: int, field: str, message: str, hint: str) -> PromptError:
    """A defect in one row of a data file, located by the file's own line number."""
    exc = PromptError(f"line {line}: {field + ': ' if field else ''}{message}", hint, path, line, field)
    exc.detail = message
    return exc


@dataclass(frozen=True)
class PromptSet:
    """`n` prompts as one [n, seq] array, with named positions and the tokens to predict.

    `targets` are (position, token) pairs per prompt: the model is scored on predicting `token`
    from the logits at `position` (`target_cf` is the counterfactual token of a pair, -1 when none;
    `target_valid` marks the real pairs where prompts have different numbers of targets).
    Prompts of different lengths are padded (`mask` is 1 on real tokens, and goes to the model as
    its attention mask); positions are absolute indices into the padded array.
    """

    tokens: np.ndarray  # int64 [n, seq]
    positions: dict[str, np.ndarray]  # name -> int64 [n]
    target_pos: np.ndarray  # int64 [n, k]
    target_tok: np.ndarray  # int64 [n, k]
    source: str = ""
    extra: dict = field(default_factory=dict)
    target_cf: np.ndarray | None = None  # int64 [n, k], -1 where a target has no counterfactual
    target_valid: np.ndarray | None = None  # bool [n, k]; None: every target is real
    mask: np.ndarray | None = None  # int64 [n, seq] attention mask; None: no padding
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # per-prompt metadata (object arrays)

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def start(self) -> np.ndarray:
        """Index of each prompt's first real token (after left padding)."""
        return np.zeros(self.n, np.int64) if self.mask is None else self.mask.argmax(1).astype(np.int64)

    @property
    def length(self) -> np.ndarray:
        """Number of real tokens of each prompt."""
        return np.full(self.n, self.seq_len, np.int64) if self.mask is None else self.mask.sum(1).astype(np.int64)

    def subset(self, idx: np.ndarray) -> "PromptSet":
        def pick(a):
            return None if a is None else a[idx]

        return PromptSet(
            self.tokens[idx],
            {k: v[idx] for k, v in self.positions.items()},
            self.target_pos[idx],
            self.target_tok[idx],
            self.source,
            self.extra,
            pick(self.target_cf),
            pick(self.target_valid),
            pick(self.mask),
            {k: v[idx] for k, v in self.fields.items()},
        )

    def where(self, i: int) -> str:
        """Names prompt `i` for an error message: its JSONL line, or its index."""
        lines = self.extra.get("lines")
        return f"line {lines[i]} of {self.extra['file']}" if lines is not None else f"prompt {i}"


_TERM = r"(?:[A-Za-z_][\w#]*|-?\d+)"
_POSITION = re.compile(rf"^\s*(?P<name>{_TERM})(?P<offs>(?:\s*[+-]\s*\d+)*)\s*$")


def parse_position(expr: str | int) -> tuple[str, int]:
    """(`name` or integer text, total offset) of a position expression."""
    m = _POSITION.match(str(expr))
    if not m:
        raise PromptError(
            f"cannot read position {expr!r}",
            "write a position name, a name plus or minus integers (`S1+1`, `last - 2`), or an integer",
        )
    name = m["name"]
    off = sum(int(t.replace(" ", "")) for t in re.findall(r"[+-]\s*\d{1,30}", m["offs"] or ""))
    numbers = [int(name)] if re.fullmatch(r"-?\d+", name) and len(name) < 30 else []
    if (re.fullmatch(r"-?\d+", name) and not numbers) or any(abs(v) > MAX_POSITION for v in numbers + [off]):
        raise PromptError(f"position {expr!r} is far past any prompt (a number over {MAX_POSITION})",
                          "positions index a prompt's tokens: a name, a name plus or minus a few, or a small integer")
    return name, off


MAX_POSITION = 1 << 31  # positions are numpy int64 arithmetic: an index this large can only be a typo


def position(prompts: PromptSet, expr: str | int) -> np.ndarray:
    """Resolve a position expression to one index per prompt.

    A name (`ANS`, `argmax`, `last`), an integer index into the prompt's own tokens (negative
    counts from its end; with left padding, index 0 is the first real token), or either plus or
    minus integers (`S1+1`, `21 - 3`, `last - 2`: quantified positions like `21 - $q` arrive here
    with `$q` bound).
    """
    name, off = parse_position(expr)
    start, length = prompts.start, prompts.length
    if re.fullmatch(r"-?\d+", name):
        base = start + (int(name) if int(name) >= 0 else length + int(name))
    elif name in prompts.positions:
        base = prompts.positions[name]
    else:
        close = difflib.get_close_matches(name, list(prompts.positions), n=1)
        raise PromptError(
            f"unknown position {name!r}",
            (f"did you mean {close[0]!r}? " if close else "") + f"this prompt set names: {', '.join(sorted(prompts.positions))}",
        )
    idx = np.asarray(base, dtype=np.int64) + off
    bad = (idx < start) | (idx >= start + length)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise PromptError(
            f"position {expr!r} is {int(idx[first] - start[first])} in {prompts.where(first)}, "
            f"outside 0..{int(length[first]) - 1}",
            f"prompts of this set have {prompts.seq_len} tokens" if prompts.mask is None
            else f"that prompt has {int(length[first])} tokens",
        )
    return idx


def check_fit(prompts: PromptSet, d_vocab: int | None, d_vocab_out: int | None, n_ctx: int | None) -> None:
    """Token ids inside the model's vocabulary, targets inside its output vocabulary, prompts no
    longer than its context: checked at collection, naming the first prompt (its JSONL line)."""
    checks = [(prompts.tokens, d_vocab, "token id", "tokens", "the model's vocabulary"),
              (prompts.target_tok, d_vocab_out, "target token", "targets", "the model's output vocabulary"),
              (prompts.target_cf, d_vocab_out, "counterfactual token", "targets", "the model's output vocabulary")]
    for values, limit, what, key, where in checks:
        if limit is None or values is None or values.size == 0:
            continue
        bad = values >= limit
        if key == "tokens" and prompts.mask is not None:
            pad = prompts.extra["pad_token"]
            if pad >= limit:  # padding goes through the embedding too, masked or not
                raise PromptError(f"pad_token {pad} is outside the model's vocabulary (0..{limit - 1})",
                                  "write `pad_token:` with a token id the model knows, e.g. 0")
            bad &= prompts.mask.astype(bool)
        if bad.any():
            i = int(np.flatnonzero(bad.any(axis=1))[0])
            raise _fit_error(prompts, i, key, f"{what} {int(values[i][bad[i]][0])} is outside {where} (0..{limit - 1})",
                             "use token ids the model knows, or check which model the file names")
    if n_ctx is not None and prompts.seq_len > n_ctx:
        i = int(np.argmax(prompts.length))
        raise _fit_error(prompts, i, "tokens", f"{int(prompts.length[i])} tokens, longer than the model's context "
                         f"of {n_ctx}", f"shorten the prompts to at most {n_ctx} tokens")


def _fit_error(prompts, i, key, message, hint) -> PromptError:
    lines = prompts.extra.get("lines")
    if lines is None:
        return PromptError(f"{prompts.where(i)}: {message}", hint)
    if key == "tokens" and prompts.extra.get("text"):  # a text row: its tokens come from its text
        key = "text"
    return row_error(prompts.extra.get("path"), lines[i], key, message, hint)


def finish(tokens, positions, target_pos, target_tok, source, target_cf=None, **extra) -> PromptSet:
    n, seq = tokens.shape
    positions = {"first": np.zeros(n, np.int64), "last": np.full(n, seq - 1), **positions}
    return PromptSet(
        np.asarray(tokens, np.int64),
        {k: np.asarray(v, np.int64) for k, v in positions.items()},
        np.asarray(target_pos, np.int64).reshape(n, -1),
        np.asarray(target_tok, np.int64).reshape(n, -1),
        source,
        extra,
        target_cf=None if target_cf is None else np.asarray(target_cf, np.int64).reshape(n, -1),
    )


def slot_values(v) -> list:
    """A slot's values: a list, or an inclusive integer range written `"1..63"`."""
    if isinstance(v, str) and re.fullmatch(r"\d+\.\.\d+", v.strip()):
        lo, hi = map(int, v.split(".."))
        if not 0 < hi - lo + 1 <= MAX_SLOT_VALUES:
            raise PromptError(f"slot range {v!r} has {max(hi - lo + 1, 0):,} values", f"a range runs from low to high "
                              f"and has at most {MAX_SLOT_VALUES:,} values", param="slots")
        return list(range(lo, hi + 1))
    if not isinstance(v, list) or not v or len(v) > MAX_SLOT_VALUES:
        raise PromptError(f"slot values {str(v)[:40]!r} are neither a list (of at most {MAX_SLOT_VALUES:,}) nor a range",
                          'write [3, 5, 7] or "1..63"', param="slots")
    bad = next((x for x in v if isinstance(x, bool) or not isinstance(x, (int, str))), None)
    if bad is not None:
        raise PromptError(f"slot value {bad!r} is neither a token id nor a word", "write integers, or words from "
                          "`vocab`", param="slots")
    return v


MAX_SLOT_VALUES = 100_000


def fill_slots(rng, n, slots, distinct, lookup):
    names = list(slots)
    values = {k: [token_id(x, lookup) for x in slot_values(slots[k])] for k in names}
    kinds = {k: set(v) for k, v in values.items()}
    draws = {k: np.empty(n, dtype=object) for k in names}
    for i in range(n):
        used: set = set()
        for k in names:
            clash = distinct and not used.isdisjoint(kinds[k])  # else the pool is every value: no copy
            pool = ([v for v in values[k] if v not in used] or values[k]) if clash else values[k]
            v = pool[rng.integers(len(pool))]
            used.add(v)
            draws[k][i] = v
    return draws


def token_id(word, lookup):
    if isinstance(word, (int, np.integer)) or re.fullmatch(r"\d+", str(word)):
        return int(word)
    if lookup is None or word not in lookup:
        raise PromptError(f"token {word!r} is not in the vocabulary", "use integer token ids or give `vocab`")
    return lookup[word]




def quantity(prompts: PromptSet, spec: str) -> np.ndarray:
    """The per-prompt numbers `spec` names: a token at a named position (`tok[S]`) or a numeric field."""
    m = re.fullmatch(r"\s*tok\[([^\]]+)\]\s*", spec)
    if m:
        return prompts.tokens[np.arange(prompts.n), position(prompts, m[1].strip())].astype(np.float64)
    if spec in prompts.fields:
        try:
            return np.asarray(prompts.fields[spec], dtype=np.float64)
        except (TypeError, ValueError):
            raise PromptError(f"field {spec!r} is not numeric in every prompt", "correlate with a numeric field") from None
    known = ", ".join(sorted(prompts.fields)) or "none"
    raise PromptError(f"cannot read per-prompt quantity {spec!r}",
                      f"write `tok[POS]` (a token at a named position) or a field of the data (fields: {known})")
