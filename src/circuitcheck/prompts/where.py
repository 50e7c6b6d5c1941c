"""`where:` conditions on prompts: parsed by a small grammar, never evaluated as Python.

    where: "category == 'neg_only' and depth >= 2"
    where: "tok[S] != tok[IO] or not (depth in 1..3)"
    where: "pos[S] < pos[IO] and target in [3, 5, 7]"

    expr    := and ('or' and)*
    and     := unary ('and' unary)*
    unary   := 'not' unary | '(' expr ')' | compare
    compare := operand (OP operand | ['not'] 'in' (list | range))
    operand := tok[POS] | pos[POS] | target | counterfactual | length | FIELD | NUMBER | 'STRING'
               | true | false | $VAR
    list    := '[' literal (',' literal)* ']'        range := NUMBER '..' NUMBER (inclusive)

`tok[POS]` is the token at a position, `pos[POS]` the position's index in the prompt's own tokens,
`target`/`counterfactual` the first target's tokens, `length` the number of real tokens, and any
other name a JSONL row's `fields` entry. Everything resolves per prompt, into a boolean mask.
"""
from __future__ import annotations

import difflib
import operator
import re

import numpy as np

from . import base as P

OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
BUILTIN = ("target", "counterfactual", "length")
KEYWORDS = ("and", "or", "not", "in", "true", "false")
HINT = "see `where` in docs/reference.md: e.g. \"category == 'neg_only' and tok[S] != tok[IO]\""
# Bounds that keep parsing and evaluation far from Python's recursion limit and from numbers no
# prompt holds (each nesting level is a few frames; each `and`/`or` one level of evaluation).
MAX_CHARS = 2000
MAX_DEPTH = 50
MAX_DIGITS = 30

_TOKEN = re.compile(r"""\s*(?:
    (?P<index>(?:tok|pos)\[[^\]]*\])
  | (?P<range>-?\d+\s*\.\.\s*-?\d+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<var>\$\w+)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<arith>[+-])
  | (?P<punct>[()\[\],])
)""", re.VERBOSE)


class WhereError(P.PromptError):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    text = text.rstrip()
    if len(text) > MAX_CHARS:
        raise WhereError(f"`where` is {len(text):,} characters long, more than {MAX_CHARS:,}",
                         "split the condition over several claims, or add a JSONL field that says it")
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            raise WhereError(f"cannot read `where` at {text[i:].strip()[:20]!r}", HINT)
        kind = m.lastgroup
        if kind in ("number", "range") and max(map(len, re.findall(r"\d+", m[kind]))) > MAX_DIGITS:
            raise WhereError(f"a number in `where` has more than {MAX_DIGITS} digits", "no token or field is that large")
        out.append((kind, m[kind].strip()))
        i = m.end()
    return out


class Parser:
    def __init__(self, text: str):
        self.text, self.toks, self.i, self.depth = text, tokenize(text), 0, 0

    def parse(self):
        if not self.toks:
            raise WhereError("`where` is empty", HINT)
        tree = self.expr()
        if self.i < len(self.toks):
            raise WhereError(f"unexpected {self.toks[self.i][1]!r} in `where: {self.text}`", HINT)
        return tree

    def peek(self, value=None):
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        return tok if value is None or (tok[1] == value and tok[0] in ("name", "punct", "op", "arith")) else None

    def take(self, value=None):
        tok = self.peek(value)
        if tok is None:
            got = self.toks[self.i][1] if self.i < len(self.toks) else "the end"
            raise WhereError(f"expected {value or 'a value'!r} in `where: {self.text}`, found {got!r}", HINT)
        self.i += 1
        return tok

    def expr(self):
        node = self.conj()
        while self.peek("or"):
            self.take()
            node = ("or", node, self.conj())
        return node

    def conj(self):
        node = self.unary()
        while self.peek("and"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self):
        if self.peek("not") or self.peek("("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise WhereError(f"`where` nests `not` and parentheses more than {MAX_DEPTH} deep", HINT)
            try:
                if self.take()[1] == "not":
                    return ("not", self.unary())
                node = self.expr()
                self.take(")")
                return node
            finally:
                self.depth -= 1
        return self.compare()

    def compare(self):
        left = self.operand()
        negate = bool(self.peek("not"))
        if negate:
            self.take()
        if self.peek("in"):
            self.take()
            node = ("in", left, self.members())
            return ("not", node) if negate else node
        if negate:
            raise WhereError(f"`not` after a value must be followed by `in` in `where: {self.text}`", HINT)
        tok = self.take()
        if tok[0] != "op":
            raise WhereError(f"expected a comparison (==, !=, <, <=, >, >=, in) in `where: {self.text}`, "
                             f"found {tok[1]!r}", HINT)
        return ("cmp", tok[1], left, self.operand())

    def members(self):
        if self.peek() and self.peek()[0] == "range":
            lo, hi = (int(x) for x in self.take()[1].split(".."))
            if lo > hi:
                raise WhereError(f"range {lo}..{hi} is empty: write the smaller bound first", HINT)
            return ("range", lo, hi)
        self.take("[")
        items = [self.literal()]
        while self.peek(","):
            self.take()
            items.append(self.literal())
        self.take("]")
        return ("list", items)

    def literal(self):
        node = self.operand()
        if node[0] not in ("lit", "var"):
            raise WhereError(f"a list after `in` holds numbers or quoted strings, not {_describe(node)}", HINT)
        return node

    def operand(self):
        if self.peek("-"):  # a negative number
            self.take()
            return ("lit", self.arithmetic(-self.number()))
        kind, text = self.take()
        if kind == "index":
            return (text[:3], text[4:-1].strip())
        if kind == "number":
            return ("lit", self.arithmetic(float(text) if "." in text else int(text)))
        if kind == "string":
            return ("lit", text[1:-1])
        if kind == "var":
            return ("var", text)
        if kind == "name" and text in ("true", "false"):
            return ("lit", text == "true")
        if kind == "name" and text not in KEYWORDS:
            return ("name", text)
        raise WhereError(f"expected a value in `where: {self.text}`, found {text!r}", HINT)


    def arithmetic(self, value):
        """`21 - 3` (what `21 - $q` becomes once `$q` is bound): numbers added and subtracted."""
        while self.peek() and self.peek()[0] == "arith":
            sign = -1 if self.take()[1] == "-" else 1
            value += sign * self.number()
        return value

    def number(self):
        kind, text = self.take()
        if kind != "number":
            raise WhereError(f"`+`/`-` join numbers in `where: {self.text}`, not {text!r}", HINT)
        return float(text) if "." in text else int(text)


def parse(text: str):
    """The syntax tree of a condition; raises `WhereError` with a hint on anything else."""
    return Parser(str(text)).parse()


def evaluate(text: str, prompts: P.PromptSet) -> np.ndarray:
    """The boolean mask of the prompts meeting `text`."""
    return np.asarray(_eval(parse(text), prompts), dtype=bool)



def condition(where: str, prompts: P.PromptSet) -> np.ndarray:
    """The prompts meeting a `where:` condition, as a boolean mask (`evaluate` under the name
    generators and measures use)."""
    return evaluate(where, prompts)

def _eval(node, ps):
    kind = node[0]
    if kind == "or":
        return _eval(node[1], ps) | _eval(node[2], ps)
    if kind == "and":
        return _eval(node[1], ps) & _eval(node[2], ps)
    if kind == "not":
        return ~_eval(node[1], ps)
    if kind == "cmp":
        left, right = _value(node[2], ps), _value(node[3], ps)
        _same_kind(node[2], left, node[3], right)
        try:
            return np.asarray(OPS[node[1]](left, right), dtype=bool) & np.ones(ps.n, bool)
        except TypeError:
            raise WhereError(f"cannot compare {_describe(node[2])} with {_describe(node[3])} using {node[1]} "
                             "(a string with a number?)", HINT) from None
    left = _value(node[1], ps)
    members = node[2]
    if members[0] == "range":
        inside = [(v is not None and not isinstance(v, str) and members[1] <= v <= members[2])
                  for v in np.broadcast_to(left, (ps.n,))]
        return np.array(inside, dtype=bool)
    values = [_value(m, ps) for m in members[1]]
    for m, v in zip(members[1], values):
        _same_kind(node[1], left, m, v)
    return np.array([v in values for v in np.broadcast_to(left, (ps.n,)).tolist()], dtype=bool)


def _value(node, ps):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        raise WhereError(f"{node[1]} is not bound: a quantifier's `values:` or a sweep binds it", HINT)
    if kind == "tok":
        return ps.tokens[np.arange(ps.n), P.position(ps, node[1])]
    if kind == "pos":
        return P.position(ps, node[1]) - ps.start
    name = node[1]
    if name in ps.fields:  # a JSONL field wins over a built-in of the same name
        return ps.fields[name]
    if name == "target" or name == "counterfactual":
        if ps.target_tok.shape[1] == 0:
            raise WhereError(f"`{name}` reads the first target, and these prompts have none", HINT)
        return (ps.target_tok if name == "target" else _cf(ps))[:, 0]
    if name == "length":
        return ps.length
    known = list(ps.fields) + list(BUILTIN)
    close = difflib.get_close_matches(name, known, n=1)
    fields = f"this prompt set's fields: {', '.join(ps.fields)}" if ps.fields else "this prompt set has no fields"
    raise WhereError(f"`where` names {name!r}, which is no field of these prompts",
                     (f"did you mean {close[0]!r}? " if close else "") + fields +
                     "; also tok[POS], pos[POS], target, counterfactual, length; quote strings: 'neg_only'")


def _kind(v) -> set:
    items = np.asarray(v, dtype=object).ravel().tolist()
    return {"text" if isinstance(x, str) else "number" for x in items}


def _same_kind(a, va, b, vb):
    """A token compared with 'neg_only' is a mistake in the file, not a condition that never holds."""
    ka, kb = _kind(va), _kind(vb)
    if len(ka) == 1 and len(kb) == 1 and ka != kb:
        raise WhereError(f"`where` compares {_describe(a)} ({ka.pop()}) with {_describe(b)} ({kb.pop()})",
                         "compare numbers with numbers and text with quoted text")


def _cf(ps):
    return ps.target_cf if ps.target_cf is not None else np.full_like(ps.target_tok, -1)


def _describe(node) -> str:
    if node[0] in ("tok", "pos"):
        return f"{node[0]}[{node[1]}]"
    return repr(node[1]) if node[0] == "lit" else node[1]
