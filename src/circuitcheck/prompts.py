"""Prompt sets: seeded generators for the seed tasks, and named positions inside a prompt.

Everything here is numpy only, so prompts (and the positions claims name) can be built and
checked while pytest collects, before torch or any model is imported.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    return m["name"], sum(int(t.replace(" ", "")) for t in re.findall(r"[+-]\s*\d+", m["offs"] or ""))


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


def condition(where: str, prompts: PromptSet) -> np.ndarray:
    """The prompts meeting a `where:` condition, as a boolean mask (see `where.py`)."""
    from .where import evaluate

    return evaluate(where, prompts)


def _finish(tokens, positions, target_pos, target_tok, source, target_cf=None, **extra) -> PromptSet:
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


def max_of_list(n: int, seed: int, length: int = 5, digits: int = 10, ans_token: int | None = None,
                unique_max: bool = True, max_at: int | None = None) -> PromptSet:
    """Lists of digits then `ANS`; the answer at `ANS` is the list's maximum (seed 000).

    `max_at` puts the maximum at one index, for invariance claims ("(2,1,1,1,1) … (1,1,1,1,2)").
    """
    rng = np.random.default_rng(seed)
    ans = digits if ans_token is None else ans_token
    lists = rng.integers(0, digits, size=(n, length))
    if unique_max or max_at is not None:
        lists = _unique_max(rng, lists, digits, max_at)
    tokens = np.concatenate([lists, np.full((n, 1), ans)], axis=1)
    argmax = lists.argmax(axis=1)
    positions = {"ANS": np.full(n, length), "argmax": argmax}
    return _finish(tokens, positions, np.full(n, length), lists.max(axis=1), "max_of_list", ans_token=ans)


def _unique_max(rng, lists, digits, max_at):
    """Lists with one maximum; with `max_at`, the same lists with the maximum swapped to that index,
    so variants with the same seed are permutations of each other."""
    n, length = lists.shape
    top = rng.integers(1, digits, size=n)
    rest = np.floor(rng.random((n, length)) * top[:, None]).astype(np.int64)
    at = rng.integers(0, length, size=n)
    rows = np.arange(n)
    rest[rows, at] = top
    if max_at is not None:
        rest[rows, at], rest[rows, max_at] = rest[rows, max_at], top
    return rest


def repeated_tokens(n: int, seed: int, length: int = 10, vocab: int = 64, bos: int | None = 0,
                    low: int = 1) -> PromptSet:
    """`BOS r1..rL r1..rL` with random tokens; in the second copy each next token is predictable
    by induction (seeds 002, 004). Named positions: `S1`, `S2` (starts of the copies), `BOS`."""
    rng = np.random.default_rng(seed)
    seg = np.stack([rng.choice(np.arange(low, vocab), size=length, replace=False) for _ in range(n)])
    head = np.full((n, 1), bos) if bos is not None else np.zeros((n, 0), np.int64)
    tokens = np.concatenate([head, seg, seg], axis=1)
    off = head.shape[1]
    s2 = off + length
    target_pos = np.tile(np.arange(s2, s2 + length - 1), (n, 1))
    target_tok = tokens[:, off + length + 1:]
    positions = {"S1": np.full(n, off), "S2": np.full(n, s2)}
    if bos is not None:
        positions["BOS"] = np.zeros(n)
    return _finish(tokens, positions, target_pos, target_tok, "repeated_tokens", bos=bos)


_SLOT = re.compile(r"^\{(\w+)\}$")


def template(n: int, seed: int, text: str, answer: str, slots: dict[str, list | str], vocab: list[str] | None = None,
             distinct: bool = True) -> PromptSet:
    """A template of space-separated tokens with `{SLOT}`s filled at random (seed 001).

    Tokens are integers, or names from `vocab`. Slot values are a list or a range `"1..63"`; with
    `distinct`, the slots of one prompt get different values, drawn in the order `slots` lists them,
    so two templates with the same slots and seed draw the same values. Each slot's first occurrence is a position named
    after it, later ones `SLOT#2`, `SLOT#3`. The answer (a slot or a token) is predicted at the
    last position.
    """
    rng = np.random.default_rng(seed)
    words = text.split()
    lookup = {w: i for i, w in enumerate(vocab)} if vocab else None
    for w in words:
        m = _SLOT.match(w)
        if m and m[1] not in slots:
            raise PromptError(f"template slot {{{m[1]}}} has no values", f"add `{m[1]}: [...]` under `slots`")
    draws = _fill_slots(rng, n, slots, distinct, lookup)
    cols, positions, seen = [], {}, {}
    for i, w in enumerate(words):
        m = _SLOT.match(w)
        if m:
            cols.append(draws[m[1]])
            seen[m[1]] = seen.get(m[1], 0) + 1
            positions[m[1] if seen[m[1]] == 1 else f"{m[1]}#{seen[m[1]]}"] = np.full(n, i)
        else:
            cols.append(np.full(n, _token(w, lookup)))
    tokens = np.stack(cols, axis=1)
    answer = str(answer).strip()  # `answer: 7` is token 7
    m = _SLOT.match(answer)
    ans = draws[m[1]] if m else np.full(n, _token(answer, lookup))
    return _finish(tokens, positions, np.full(n, len(words) - 1), ans, "template")


def _slot_values(v) -> list:
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


def _fill_slots(rng, n, slots, distinct, lookup):
    names = list(slots)
    values = {k: [_token(x, lookup) for x in _slot_values(slots[k])] for k in names}
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


def _token(word, lookup):
    if isinstance(word, (int, np.integer)) or re.fullmatch(r"\d+", str(word)):
        return int(word)
    if lookup is None or word not in lookup:
        raise PromptError(f"token {word!r} is not in the vocabulary", "use integer token ids or give `vocab`")
    return lookup[word]


def jsonl(n: int | None, seed: int, path: str, base: Path | None = None, padding: str = "right",
          pad_token: int = 0, read_at: str | int = "last", tokenizer: str | None = None,
          prepend_bos: bool = True) -> PromptSet:
    """Prompts from a JSONL file, one row a line, every row checked (see `jsonl.read`); rows with
    `text` go through the model's tokenizer."""
    from . import jsonl as J

    return J.read(Path(path) if base is None else base / path, n, padding, pad_token, read_at, tokenizer, prepend_bos)


def text(n: int, seed: int, template, slots: dict, answer: str, counterfactual: str | None = None,
         tokenizer: str | None = None, prepend_bos: bool = True, distinct: bool = True) -> PromptSet:
    """Text templates tokenised by the model's tokenizer (`circuitcheck.text_prompts.text`)."""
    from .text_prompts import text as build_text

    return build_text(n, seed, template, slots, answer, counterfactual, tokenizer, prepend_bos, distinct)


GENERATORS: dict[str, Callable[..., PromptSet]] = {
    "max_of_list": max_of_list,
    "repeated_tokens": repeated_tokens,
    "template": template,
    "jsonl": jsonl,
    "text": text,
}


def build(generator: str, n: int, seed: int, **params) -> PromptSet:
    import difflib
    import inspect

    if generator not in GENERATORS:
        raise PromptError(f"unknown prompt generator {generator!r}", f"use one of: {', '.join(GENERATORS)}")
    allowed = [p for p in inspect.signature(GENERATORS[generator]).parameters if p not in ("n", "seed", "base")]
    for name in params:
        if name not in allowed and name != "base":
            close = difflib.get_close_matches(name, allowed, n=1)
            raise PromptError(f"generator {generator!r} has no parameter {name!r}",
                              (f"did you mean {close[0]!r}? " if close else "") + f"its parameters: {', '.join(allowed)}")
    _check_params(generator, n, params)
    return GENERATORS[generator](n=n, seed=seed, **params)


MAX_TOKENS = 5_000_000  # prompts × tokens of one set (40 MB as int64), checked before allocating
MAX_INT = 1_000_000  # lengths, vocabularies, digits, token ids: far above any model's

# generator -> parameter -> (kind, smallest, largest); kinds: int, int?, bool, text, text|int, map, list?
PARAMS: dict[str, dict[str, tuple]] = {
    "max_of_list": {"length": ("int", 1, 1_000), "digits": ("int", 2, MAX_INT), "ans_token": ("int?", 0, MAX_INT),
                    "unique_max": ("bool",), "max_at": ("int?", 0, 999)},
    "repeated_tokens": {"length": ("int", 2, 1_000), "vocab": ("int", 2, MAX_INT), "bos": ("int?", 0, MAX_INT),
                        "low": ("int", 0, MAX_INT)},
    "template": {"text": ("text",), "answer": ("text|int",), "slots": ("map",), "vocab": ("list?",),
                 "distinct": ("bool",)},
    "text": {"answer": ("text",), "slots": ("map",), "distinct": ("bool",), "prepend_bos": ("bool",)},
    "jsonl": {"prepend_bos": ("bool",)},
}


def _check_params(generator: str, n: int, params: dict):
    """Types and ranges of a generator's parameters, and the set's size, before anything is allocated."""
    for name, value in params.items():
        if name in PARAMS.get(generator, {}):
            _check_param(name, value, *PARAMS[generator][name])
    p = {k: v for k, v in params.items()}
    if generator == "max_of_list":
        length = p.get("length", 5)
        if p.get("max_at") is not None and p["max_at"] >= length:
            raise PromptError(f"max_at {p['max_at']} is past the end of a list of {length}",
                              f"max_at is an index 0..{length - 1}", param="max_at")
        _check_size(n, length + 1)
    elif generator == "repeated_tokens":
        length, vocab, low = p.get("length", 10), p.get("vocab", 64), p.get("low", 1)
        if length > vocab - low:
            raise PromptError(f"length {length} is more than the {max(vocab - low, 0)} distinct tokens from low {low} "
                              f"to vocab {vocab}", "a segment has distinct tokens: raise `vocab` or lower `length`",
                              param="length")
        _check_size(n, 2 * length + 1)
        _check_size(n, vocab, "candidate tokens")
    elif generator == "template":
        words = str(p.get("text", "")).split()
        if not words:
            raise PromptError("the template text is empty", "write the prompt's tokens, e.g. \"0 {A} {B} {A}\"", param="text")
        _check_size(n, len(words))
        _check_size(n, sum(len(_slot_values(v)) for v in p.get("slots", {}).values()), "slot values")
    elif generator == "text":
        _check_size(n, max(len(str(t).split()) + 1 for t in _as_list(p.get("template", ""))))


def _as_list(x) -> list:
    return x if isinstance(x, list) and x else [x]


def _check_param(name, value, kind, lo=None, hi=None):
    if kind in ("int", "int?"):
        if value is None and kind == "int?":
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise PromptError(f"{name} must be a whole number, not {value!r}", "see docs/reference.md", param=name)
        if not lo <= value <= hi:
            raise PromptError(f"{name} must be between {lo:,} and {hi:,}, not {value:,}", "see docs/reference.md", param=name)
    elif kind == "bool" and not isinstance(value, bool):
        yaml11 = " (in YAML 1.2, yes/no/on/off are text)" if str(value).lower() in ("yes", "no", "on", "off") else ""
        raise PromptError(f"{name} must be true or false, not {value!r}{yaml11}", "write true or false", param=name)
    elif kind == "text" and not isinstance(value, str):
        raise PromptError(f"{name} must be text, not {value!r}", "see docs/reference.md", param=name)
    elif kind == "text|int" and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise PromptError(f"{name} must be a slot like \"{{B}}\" or a token, not {value!r}", "see docs/reference.md", param=name)
    elif kind == "map" and not isinstance(value, dict):
        raise PromptError(f"{name} must be a mapping from slot names to values", 'e.g. slots: {A: "1..63"}', param=name)
    elif kind == "list?" and value is not None and not (isinstance(value, list)
                                                       and all(isinstance(w, str) for w in value)):
        raise PromptError(f"{name} must be a list of words", "e.g. vocab: [BOS, a, b, c]", param=name)


def _check_size(n: int, width: int, what: str = "tokens"):
    if n * width > MAX_TOKENS:
        raise PromptError(f"{n:,} prompts × {width:,} {what} = {n * width:,}, more than the "
                          f"{MAX_TOKENS:,} a prompt set may have", "use fewer prompts or shorter ones; see the "
                          "limits in docs/reference.md", param="n")
