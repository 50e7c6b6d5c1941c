"""Prompts from a JSONL file: one prompt a line, every row checked while pytest collects.

A row is a JSON object:

    {"tokens": [0, 5, 9, 2],                       token ids (or `text`)
     "answer": 7, "counterfactual": 3, "at": "last",  one target (at: default `read_at`)
     "targets": [{"at": 2, "token": 7, "counterfactual": 3}, ...],   or several (not both)
     "positions": {"S": 1, "IO": 2},               named positions, indices into this row
     "fields": {"category": "neg_only", "depth": 3}}   metadata, for `where:`

    {"text": "When {IO} and {S} went to the store , {S} gave a drink to",   text, for models
     "slots": {"IO": "Mary", "S": "John"},          with a tokenizer: slots name positions
     "answer": "{IO}", "counterfactual": "John"}    (IO, S, S#2, end); targets are words

Text rows are tokenised by the model's tokenizer (`text_prompts.row`), BOS first as the model
expects, so that index 0 is BOS; a word that is not one token is an error at its line.
Rows may have different lengths: they are padded (`padding: right` or `left`, with `pad_token`)
and the attention mask goes to the model. Every defect is a `PromptError` naming the file's own
line: bad JSON, a key missing or misspelt, a wrong type, a position outside the row, a position,
field or target some rows have and others lack. Numpy only: no torch at collection.
"""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import numpy as np

from .base import PromptError, PromptSet, parse_position, row_error

ROW_KEYS = ("tokens", "text", "slots", "answer", "counterfactual", "at", "targets", "positions", "fields")
TARGET_KEYS = ("at", "token", "counterfactual")
NAME = re.compile(r"^[A-Za-z_][\w#]*$")
RESERVED = ("first", "last")  # every prompt set names these itself (text rows also `end`)
SLOT_REF = re.compile(r"^\{(\w+)\}$")  # `"answer": "{IO}"`: the word the row's slot IO holds
HINT = "see `jsonl` rows in docs/reference.md"


def read(path: Path, n: int | None, padding: str = "right", pad_token: int = 0, read_at="last",
         tokenizer: str | None = None, prepend_bos: bool = True) -> PromptSet:
    """The first `n` rows of `path` (every row when `n` is None) as a padded prompt set; rows with
    `text` go through `tokenizer` (the model's tokenizer.json directory)."""
    if padding not in ("right", "left"):
        raise PromptError(f"padding {padding!r} is neither 'right' nor 'left'", "write `padding: left` or `padding: right`")
    if not _is_int(pad_token) or pad_token < 0:
        raise PromptError(f"pad_token {pad_token!r} is not a token id", "write a non-negative integer, e.g. `pad_token: 0`")
    lines = _lines(path, n)
    if n is not None and n > len(lines):
        raise PromptError(f"`n: {n}` asks for more prompts than {path.name} has ({len(lines)} rows)",
                          f"leave `n` out to use every row, or write `n: {len(lines)}` or less")
    if not lines:  # one row is one given input: the loader asks for `population: true` (files/spec.ONE_INPUT)
        raise PromptError(f"{path.name} has 0 rows; a claim needs at least 1 prompt", "add rows, one JSON object a line")
    rows = [_row(path, no, text, read_at, (str(tokenizer), prepend_bos) if tokenizer else None)
            for no, text in lines]
    _one_kind(path, rows)
    _same_keys(path, rows, "positions")
    _same_keys(path, rows, "fields")
    _same_keys(path, rows, "targets", lambda r: {"targets"} if r["targets"] else set())
    _same_types(path, rows)
    return _pad(path, rows, padding, pad_token)


def _lines(path: Path, n: int | None = None) -> list[tuple[int, str]]:
    """(line number, text) of the first `n` non-blank lines (all when None), read a line at a time,
    so a huge file with a small `n` costs only what is read; a BOM at the start is allowed."""
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise PromptError(f"prompt file {str(path)!r} {what}", "paths are relative to the hypothesis file")
    out = []
    with open(path, "rb") as f:
        for i, data in enumerate(f, 1):
            try:
                text = data.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise _error(path, i, "", f"not UTF-8 text (byte {data[exc.start]:#04x})", "save the file as UTF-8") from None
            if text.strip():
                out.append((i, text.rstrip("\r\n")))
            if n is not None and len(out) == n:
                break
    return out



def _error(path, line, field, message, hint=HINT):
    return row_error(path, line, field, message, hint)


MAX_ROW_CHARS = 1_000_000  # a row is a prompt, its positions, targets and fields
MAX_ROW_DEPTH = 20  # a row is an object of lists and objects a few levels deep
SEPARATORS = re.compile("[\u2028\u2029\x85\x0b\x0c\x1c-\x1e]")  # line breaks to some readers, not to JSONL


def _row(path: Path, line: int, text: str, read_at, tokenizer) -> dict:
    if len(text) > MAX_ROW_CHARS:
        raise _error(path, line, "", f"the row is {len(text):,} characters long, more than {MAX_ROW_CHARS:,}",
                     "a row is one prompt; split long data into fields of several rows")
    raw = SEPARATORS.search(text)
    if raw:
        raise _error(path, line, "", f"the row holds a raw U+{ord(raw[0]):04X} at column {raw.start() + 1}, which some "
                     "tools read as a line break (their row numbers then disagree with these)",
                     f"write it escaped inside a string (\\u{ord(raw[0]):04x}) or remove it")
    if _depth(text) > MAX_ROW_DEPTH:
        raise _error(path, line, "", f"the row nests lists and objects more than {MAX_ROW_DEPTH} deep",
                     "each line is one JSON object: {\"tokens\": [...], \"answer\": 7}")
    try:
        row = json.loads(text, parse_constant=_not_a_number(path, line))
    except json.JSONDecodeError as exc:
        hint = "remove the comma before the closing bracket (JSON allows no trailing commas)" \
            if re.search(r",\s*[}\]]", text) else "each line is one JSON object: {\"tokens\": [...], \"answer\": 7}"
        raise _error(path, line, "", f"not valid JSON: {exc.msg} (column {exc.colno})", hint) from None
    except ValueError as exc:  # an integer of thousands of digits (Python's int limit)
        raise _error(path, line, "", f"cannot read the row: {str(exc)[:120]}", "no token id or field is that large") from None
    if not isinstance(row, dict):
        raise _error(path, line, "", f"a row is a JSON object {{\"tokens\": [...], ...}}, not {_kind(row)}")
    _known(path, line, "", row, ROW_KEYS)
    if "text" in row:
        tokens, named, token = _text_row(path, line, row, tokenizer)
    else:
        if "tokens" not in row:
            raise _error(path, line, "", "missing required key 'tokens' (or 'text')")
        if "slots" in row:
            raise _error(path, line, "slots", "`slots` fill the `{SLOT}`s of a row's `text`; this row has `tokens`")
        tokens, named, token = _int_list(path, line, "tokens", row["tokens"]), {}, lambda f, v: _int(path, line, f, v)
    positions = _names(path, line, "positions", row.get("positions", {}), lambda f, v: _index(path, line, f, v, tokens))
    for name in positions.keys() & named.keys():
        raise _error(path, line, f"positions.{name}", f"{name!r} already names a position of this text row",
                     "a text row names its slots (S, S#2) and `end` itself; name this one differently")
    positions = {**named, **positions}
    fields = _names(path, line, "fields", row.get("fields", {}), lambda f, v: _scalar(path, line, f, v))
    return {"line": line, "tokens": tokens, "positions": positions, "fields": fields, "text": "text" in row,
            "targets": _targets(path, line, row, read_at, positions, len(tokens), token)}


def _depth(text: str) -> int:
    """How deep brackets nest outside strings, counted without parsing (the parser recurses)."""
    depth = deepest = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        ch = m[0][0]
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _not_a_number(path, line):
    def refuse(name):
        raise _error(path, line, "", f"{name} is not a value a row holds: a comparison with it in `where:` is "
                     "never true, and no statistic can use it", "leave the field out of this row's file, or write a number")
    return refuse


def _same_types(path, rows) -> None:
    """Each field holds one kind of value in every row: a field that is a number in one row and text
    in another compares as the one kind in `where:` and never matches the other."""
    first = rows[0]
    for r in rows[1:]:
        for name, v in r["fields"].items():
            a, b = _value_kind(first["fields"][name]), _value_kind(v)
            if a != b:
                raise _error(path, r["line"], f"fields.{name}", f"this row's {name} is {b}, and line "
                             f"{first['line']}'s is {a}", f"every row's {name} must be {a}")


def _value_kind(v) -> str:
    return "a boolean" if isinstance(v, bool) else "text" if isinstance(v, str) else "a number"


def _text_row(path, line, row, tokenizer):
    """Token ids of a text row (BOS first), its slot positions and `end`, and how its targets'
    words become token ids."""
    from . import text as T

    if tokenizer is None:
        raise _error(path, line, "text", "a text row needs the model's tokenizer, and this model has none",
                     "write `tokens` (ids), use a model with a tokenizer.json (zoo:ioi, hf:), or give "
                     "`tokenizer: PATH` under `prompts`")
    if "tokens" in row:
        raise _error(path, line, "tokens", "a row has `text` or `tokens`, not both")
    text, slots = row["text"], row.get("slots", {})
    if not isinstance(text, str) or not text.strip():
        raise _error(path, line, "text", f"the text is a non-empty string, not {_kind(text)}")
    if not isinstance(slots, dict):
        raise _error(path, line, "slots", f"an object {{\"IO\": \"Mary\"}}, not {_kind(slots)}")
    for name, value in slots.items():
        if not NAME.match(name) or "#" in name or name in RESERVED + ("end",):
            raise _error(path, line, f"slots.{name}", f"{name!r} cannot name a slot", "names start with a letter and "
                         "hold letters, digits and _; `first`, `last` and `end` are built in")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _error(path, line, f"slots.{name}", f"a slot holds a word, not {_kind(value)}")
    where, prepend_bos = tokenizer
    try:
        tokens, named = T.row(where, text, slots, prepend_bos)
    except PromptError as exc:
        param = exc.param if isinstance(exc.param, tuple) else (exc.param,)
        field = f"slots.{param[1]}" if param[0] == "slots" else "text"
        raise _error(path, line, field, str(exc), exc.hint) from None
    lead = " " if T._needs_space(where) else ""  # an answer follows the text: BPE gives it its space

    def token(field, v):
        if _is_int(v):
            return _int(path, line, field, v)
        if not isinstance(v, str):
            raise _error(path, line, field, f"a target is a word (or a token id), not {_kind(v)}")
        ref = SLOT_REF.match(v)
        if ref and ref[1] not in slots:
            raise _error(path, line, field, f"{v!r} names slot {ref[1]}, which this row's `slots` lack",
                         f"slots here: {', '.join(slots) or 'none'}")
        word = str(slots[ref[1]]) if ref else v
        try:
            return T.one_token(where, word, field, lead, label="the word")
        except PromptError as exc:
            raise _error(path, line, field, str(exc), "a target is one token: a word the model's tokenizer knows") \
                from None

    return tokens, {**named, "end": len(tokens) - 1}, token


def _targets(path, line, row, read_at, positions, length, token) -> list[tuple[int, int, int]]:
    """(row index, token, counterfactual or -1) of each target."""
    if "targets" in row and any(k in row for k in ("answer", "counterfactual", "at")):
        raise _error(path, line, "targets", "a row has `targets` or `answer` (with `at`, `counterfactual`), not both")
    if "targets" not in row:
        if "answer" not in row:
            if "counterfactual" in row or "at" in row:
                raise _error(path, line, "answer", "`at` and `counterfactual` go with `answer`")
            return []
        items, base = [{"token": row["answer"], **{k: row[k] for k in ("at", "counterfactual") if k in row}}], ""
    else:
        items, base = row["targets"], "targets"
        if not isinstance(items, list) or not items:
            raise _error(path, line, base, f"a non-empty list of {{\"at\": ..., \"token\": ...}} objects, not {_kind(items)}")
    out = []
    for i, t in enumerate(items):
        f = f"{base}[{i}]" if base else ""
        if not isinstance(t, dict):
            raise _error(path, line, f, f"a target is an object {{\"at\": ..., \"token\": ...}}, not {_kind(t)}")
        _known(path, line, f, t, TARGET_KEYS)
        if "token" not in t:
            raise _error(path, line, f, "missing required key 'token'")
        tok = token(_join(f, "token" if base else "answer"), t["token"])
        cf = token(_join(f, "counterfactual"), t["counterfactual"]) if "counterfactual" in t else -1
        if cf == tok:
            raise _error(path, line, _join(f, "counterfactual"), f"the counterfactual is the answer ({tok}): the "
                         "logit difference is 0 by construction", "give the token the answer is told apart from")
        at = _resolve(path, line, _join(f, "at"), t.get("at", read_at), positions, length)
        out.append((at, tok, cf))
    return out


def _resolve(path, line, field, expr, positions, length) -> int:
    """A position expression inside one row, as an index into that row."""
    if isinstance(expr, bool) or not isinstance(expr, (int, str)):
        raise _error(path, line, field, f"a position is an index or a name, not {_kind(expr)}")
    try:
        name, off = parse_position(expr)
    except PromptError as exc:
        raise _error(path, line, field, str(exc), exc.hint) from None
    named = {"first": 0, "last": length - 1, **positions}
    if re.fullmatch(r"-?\d+", name):
        base = int(name) if int(name) >= 0 else length + int(name)
    elif name in named:
        base = named[name]
    else:
        close = difflib.get_close_matches(name, list(named), n=1)
        raise _error(path, line, field, f"unknown position {name!r}",
                     (f"did you mean {close[0]!r}? " if close else "") + f"this row names: {', '.join(named)}")
    if not 0 <= base + off < length:
        raise _error(path, line, field, f"position {expr!r} is {base + off}, outside this row's 0..{length - 1}")
    return base + off


def _pad(path: Path, rows: list[dict], padding: str, pad_token: int) -> PromptSet:
    n, seq = len(rows), max(len(r["tokens"]) for r in rows)
    k = max(len(r["targets"]) for r in rows)
    tokens = np.full((n, seq), pad_token, np.int64)
    mask = np.zeros((n, seq), np.int64)
    tpos, ttok, tcf = np.zeros((n, k), np.int64), np.zeros((n, k), np.int64), np.full((n, k), -1, np.int64)
    valid = np.zeros((n, k), bool)
    offset = np.zeros(n, np.int64)
    for i, r in enumerate(rows):
        length = len(r["tokens"])
        offset[i] = seq - length if padding == "left" else 0
        tokens[i, offset[i]:offset[i] + length] = r["tokens"]
        mask[i, offset[i]:offset[i] + length] = 1
        for j, (at, tok, cf) in enumerate(r["targets"]):
            tpos[i, j], ttok[i, j], tcf[i, j], valid[i, j] = offset[i] + at, tok, cf, True
        tpos[i, len(r["targets"]):] = offset[i]  # padding targets: a real position, never read
    length = mask.sum(1)
    positions = {"first": offset, "last": offset + length - 1}
    positions.update({p: offset + np.array([r["positions"][p] for r in rows]) for p in rows[0]["positions"]})
    fields = {f: np.array([r["fields"][f] for r in rows], dtype=object) for f in rows[0]["fields"]}
    padded = bool((mask == 0).any())
    return PromptSet(tokens, positions, tpos, ttok, "jsonl",
                     {"lines": [r["line"] for r in rows], "file": path.name, "path": path, "text": rows[0]["text"],
                      "padding": padding if padded else None,
                      "pad_token": pad_token if padded else None},
                     tcf, None if valid.all() else valid, mask if padded else None, fields)


def _one_kind(path, rows):
    """A file's rows are all text or all token ids: positions and targets mean one thing throughout."""
    for r in rows[1:]:
        if r["text"] != rows[0]["text"]:
            kinds = [("tokens", "text")[x["text"]] for x in (r, rows[0])]
            raise _error(path, r["line"], kinds[0], f"this row has `{kinds[0]}` and line {rows[0]['line']} has "
                         f"`{kinds[1]}`", "a file's rows are all `text` or all `tokens`")


def _same_keys(path, rows, what, keys=None):
    """Every row names the same positions (fields, targets) as the first: a name some rows lack
    would resolve to nothing there."""
    keys = keys or (lambda r: set(r[what]))
    first = keys(rows[0])
    for r in rows[1:]:
        have = keys(r)
        if have != first:
            missing, extra = sorted(first - have), sorted(have - first)
            which = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(extra)}"
            raise _error(path, r["line"], what, f"this row {which}, which line {rows[0]['line']} "
                         f"{'has' if missing else 'lacks'}", f"every row must have the same {what}")


# ---------------------------------------------------------------- value checks
def _kind(v) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return f"{names.get(type(v), type(v).__name__)} ({json.dumps(v)[:40]})"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _join(base, key):
    return f"{base}.{key}" if base else key


def _known(path, line, base, obj, allowed):
    for k in obj:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            raise _error(path, line, _join(base, k), f"unknown key {k!r}",
                         (f"did you mean {close[0]!r}? " if close else "") + f"allowed: {', '.join(allowed)}")


def _int(path, line, field, v) -> int:
    if _is_int(v) and v >= 0:
        return v
    if isinstance(v, str) and v.strip().isdigit():
        raise _error(path, line, field, f"the token id is the string {v!r}", f"write the number {int(v)} without quotes")
    raise _error(path, line, field, f"a token id is a non-negative integer, not {_kind(v)}")


def _int_list(path, line, field, v) -> list[int]:
    if not isinstance(v, list) or not v:
        raise _error(path, line, field, f"a non-empty list of token ids, not {_kind(v)}")
    return [_int(path, line, f"{field}[{i}]", x) for i, x in enumerate(v)]


def _index(path, line, field, v, tokens) -> int:
    if not _is_int(v) or not 0 <= v < len(tokens):
        raise _error(path, line, field, f"a named position is an index 0..{len(tokens) - 1} into this row, not {_kind(v)}")
    return v


def _scalar(path, line, field, v):
    if isinstance(v, (str, int, float, bool)):
        return v
    raise _error(path, line, field, f"a field holds a string, number or boolean, not {_kind(v)}")


def _names(path, line, what, obj, check) -> dict:
    if not isinstance(obj, dict):
        raise _error(path, line, what, f"an object {{\"name\": value}}, not {_kind(obj)}")
    for name in obj:
        if not NAME.match(name) or name in RESERVED:
            raise _error(path, line, f"{what}.{name}", f"{name!r} cannot name a {what[:-1]}",
                         "names start with a letter and hold letters, digits, _ and #; `first` and `last` are built in")
    return {name: check(f"{what}.{name}", v) for name, v in obj.items()}
