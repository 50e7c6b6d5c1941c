"""Seeded generators for the seed tasks (max of a list, repeated tokens, templates), and `build`,
which runs the one a file names (JSONL and text rows live in `jsonl.py` and `text.py`).
Numpy only, so prompts can be built and checked while pytest collects.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from .base import PromptError, PromptSet, fill_slots, finish, slot_values, token_id


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
    return finish(tokens, positions, np.full(n, length), lists.max(axis=1), "max_of_list", ans_token=ans)


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
    return finish(tokens, positions, target_pos, target_tok, "repeated_tokens", bos=bos)


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
    draws = fill_slots(rng, n, slots, distinct, lookup)
    cols, positions, seen = [], {}, {}
    for i, w in enumerate(words):
        m = _SLOT.match(w)
        if m:
            cols.append(draws[m[1]])
            seen[m[1]] = seen.get(m[1], 0) + 1
            positions[m[1] if seen[m[1]] == 1 else f"{m[1]}#{seen[m[1]]}"] = np.full(n, i)
        else:
            cols.append(np.full(n, token_id(w, lookup)))
    tokens = np.stack(cols, axis=1)
    answer = str(answer).strip()  # `answer: 7` is token 7
    m = _SLOT.match(answer)
    ans = draws[m[1]] if m else np.full(n, token_id(answer, lookup))
    return finish(tokens, positions, np.full(n, len(words) - 1), ans, "template")


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
    from .text import text as build_text

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
        _check_size(n, sum(len(slot_values(v)) for v in p.get("slots", {}).values()), "slot values")
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
