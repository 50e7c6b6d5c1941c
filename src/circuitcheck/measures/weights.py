"""Named weights: a small expression language for weight matrices and vectors, and what weight-space
measures compute from them (singular values, cosine similarity, norms).

    W_E @ OV[L0H1] @ W_U          the full OV circuit of head L0H1   [d_vocab, d_vocab]
    QK[L1H1]                      W_Q W_K^T of head L1H1             [d_model, d_model]
    W_E[3] @ OV[L0H1]             what L0H1 writes when it reads token 3
    W_U[:, 3] - W_U[:, 5]         the logit-difference direction between tokens 3 and 5
    W_in[0][:, 12]                MLP neuron 12 of layer 0: its input weights
    W_out[0][12]                  ... and its output weights

Names follow TransformerLens: `W_E`, `W_pos`, `W_U`, `b_U`; per head `W_Q`, `W_K`, `W_V`, `W_O`,
`b_Q`, `b_K`, `b_V` written `W_Q[L0H1]`; per layer `b_O`, `W_in`, `W_out`, `b_in`, `b_out` written
`W_in[0]`; `OV[LxHy]` = W_V W_O and `QK[LxHy]` = W_Q W_K^T. Later brackets index the matrix
(`[3]`, `[:, 3]`, `[2:5]`), `.T` transposes, `@` multiplies, `+`/`-` add, parentheses group.

Parsing is plain Python (no torch, never `eval`), so a file's expressions are checked while pytest
collects; `evaluate` computes one on a model, in float64.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

PER_HEAD = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "OV", "QK")
PER_LAYER = ("b_O", "W_in", "W_out", "b_in", "b_out", "ln1_w", "ln1_b", "ln2_w", "ln2_b")
GLOBAL = ("W_E", "W_pos", "W_U", "b_U", "ln_final_w", "ln_final_b")
NAMES = PER_HEAD + PER_LAYER + GLOBAL
# LayerNorm weights, read from the state dict (TransformerLens 4 bridges name them so)
LN_KEYS = {"ln1_w": "blocks.{}.ln1.weight", "ln1_b": "blocks.{}.ln1.bias", "ln2_w": "blocks.{}.ln2.weight",
           "ln2_b": "blocks.{}.ln2.bias", "ln_final_w": "ln_final.weight", "ln_final_b": "ln_final.bias"}
# Reductions: f(X) over every entry, f(X, axis) along one axis (0: down each column, so `norm(W_in[0], 0)`
# is the norm of each neuron's input weights); `cos(X, v)` is the cosine of each column of X with v;
# `sq` and `abs` act on each entry.
FUNCTIONS = ("norm", "mean", "sum", "max", "min", "cos", "sq", "abs")

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<num>-?\d+)|(?P<op>[@+\-()\[\]:,.]))")


class ExpressionError(ValueError):
    """A weight expression that cannot be read; `hint` says what is allowed."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Weight:
    name: str
    select: tuple  # (layer, head) for per-head names, (layer,) for per-layer names, () for global


@dataclass(frozen=True)
class Index:
    of: object
    index: tuple  # ints and (start, stop) slices; None stands for `:`


@dataclass(frozen=True)
class Call:
    name: str  # one of FUNCTIONS
    args: tuple  # expressions, and an int axis for the reductions


@dataclass(frozen=True)
class Op:
    op: str  # "@", "+", "-", "neg", "T"
    args: tuple


HINT = ("write e.g. `W_E @ OV[L0H1] @ W_U`, `W_U[:, 3] - W_U[:, 5]`, `W_in[0][:, 12]` or "
        "`mean(sq(cos(W_in[0], W_U[:, 3])))`; names: " + ", ".join(NAMES) + "; functions: " + ", ".join(FUNCTIONS))


def parse(text: str):
    """The expression tree of `text`, or an `ExpressionError` saying where it goes wrong."""
    tokens = _tokenize(text)
    parser = _Parser(text, tokens)
    tree = parser.expr()
    if parser.i != len(tokens):
        raise ExpressionError(f"unexpected {tokens[parser.i]!r} in weight expression {text!r}", HINT)
    return tree


def _tokenize(text: str) -> list[str]:
    out, i = [], 0
    text = str(text)
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m:
            raise ExpressionError(f"cannot read {text[i:].strip()!r} in weight expression {text!r}", HINT)
        out.append(m.group(m.lastgroup))
        i = m.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary ('@' unary)* ; unary := '-' unary | postfix ;
    postfix := atom ('[' index ']' | '.T')* ; atom := NAME | NAME '[' select ']' | '(' expr ')'
    | FUNCTION '(' expr (',' expr | ',' INT)* ')'"""

    def __init__(self, text, tokens):
        self.text, self.tokens, self.i = text, tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected=None):
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            want = f"{expected!r}" if expected else "more"
            raise ExpressionError(f"expected {want} in weight expression {self.text!r}, got {tok!r}", HINT)
        self.i += 1
        return tok

    def expr(self):
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = Op(op, (node, self.term()))
        return node

    def term(self):
        node = self.unary()
        while self.peek() == "@":
            self.take()
            node = Op("@", (node, self.unary()))
        return node

    def unary(self):
        if self.peek() == "-":
            self.take()
            return Op("neg", (self.unary(),))
        return self.postfix(self.atom())

    def atom(self):
        tok = self.take()
        if tok == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok in FUNCTIONS:
            return self.call(tok)
        if tok not in NAMES:
            raise ExpressionError(f"unknown weight {tok!r} in {self.text!r}", HINT)
        if tok in GLOBAL:
            return Weight(tok, ())
        self.take("[")
        sel = self.take()
        self.take("]")
        if tok in PER_HEAD:
            m = re.fullmatch(r"L(\d+)H(\d+)", sel)
            if not m:
                raise ExpressionError(f"{tok} is per head: write {tok}[L<layer>H<head>], e.g. {tok}[L0H1]", HINT)
            return Weight(tok, (int(m[1]), int(m[2])))
        if not re.fullmatch(r"\d+", sel):
            raise ExpressionError(f"{tok} is per layer: write {tok}[<layer>], e.g. {tok}[0]", HINT)
        return Weight(tok, (int(sel),))

    def call(self, name):
        self.take("(")
        args = [self.expr()]
        while self.peek() == ",":
            self.take()
            args.append(int(self.take()) if re.fullmatch(r"-?\d+", self.peek() or "") else self.expr())
        self.take(")")
        want = {"cos": (2, 2), "sq": (1, 1), "abs": (1, 1)}.get(name, (1, 2))
        if not want[0] <= len(args) <= want[1] or any(isinstance(a, int) for a in args[:1]) \
                or (name != "cos" and len(args) == 2 and not isinstance(args[1], int)):
            form = {"cos": "cos(X, v)", "sq": "sq(X)", "abs": "abs(X)"}.get(name, f"{name}(X) or {name}(X, axis)")
            raise ExpressionError(f"write {form} in weight expression {self.text!r}", HINT)
        return Call(name, tuple(args))

    def postfix(self, node):
        while self.peek() in ("[", "."):
            if self.take() == ".":
                self.take("T")
                node = Op("T", (node,))
                continue
            parts = [self.index_part()]
            while self.peek() == ",":
                self.take()
                parts.append(self.index_part())
            self.take("]")
            node = Index(node, tuple(parts))
        return node

    def index_part(self):
        start = int(self.take()) if self.peek() not in (":", ",", "]") else None
        if self.peek() != ":":
            if start is None:
                raise ExpressionError(f"empty index in weight expression {self.text!r}", HINT)
            return start
        self.take(":")
        stop = int(self.take()) if self.peek() not in (",", "]") else None
        return (start, stop)


def heads_and_layers(tree):
    """Every (name, select) the expression reads, to check heads and layers against the model."""
    if isinstance(tree, Weight):
        return [tree]
    children = (tree.of,) if isinstance(tree, Index) else [a for a in tree.args if not isinstance(a, int)]
    return [w for c in children for w in heads_and_layers(c)]


# ---------------------------------------------------------------- evaluation (torch from here on)
def evaluate(model, tree):
    """The expression's value on `model`, as a float64 tensor."""
    if isinstance(tree, Weight):
        return _weight(model, tree)
    if isinstance(tree, Index):
        x = evaluate(model, tree.of)
        key = tuple(slice(None) if p == (None, None) else (slice(*p) if isinstance(p, tuple) else p)
                    for p in tree.index)
        if len(key) > x.dim():
            raise ExpressionError(f"{len(key)} indices into a {x.dim()}-d value of shape {tuple(x.shape)}")
        try:
            return x[key]
        except IndexError as exc:
            raise ExpressionError(f"index out of range on a value of shape {tuple(x.shape)}: {exc}") from None
    if isinstance(tree, Call):
        return _call(tree.name, [a if isinstance(a, int) else evaluate(model, a) for a in tree.args])
    args = [evaluate(model, a) for a in tree.args]
    if tree.op == "neg":
        return -args[0]
    if tree.op == "T":
        return args[0].T
    a, b = args
    try:
        return a @ b if tree.op == "@" else (a + b if tree.op == "+" else a - b)
    except RuntimeError:
        raise ExpressionError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit {tree.op!r}") from None


def _call(name: str, args: list):
    import torch

    x = args[0]
    if name in ("sq", "abs"):
        return x * x if name == "sq" else x.abs()
    if name == "cos":
        v = args[1]
        if v.dim() != 1 or x.shape[0] != v.shape[0]:
            raise ExpressionError(f"cos(X, v) compares each column of X {tuple(x.shape)} with a vector of its "
                                  f"length, got {tuple(v.shape)}", "e.g. cos(W_in[0], W_U[:, 3])")
        return torch.nn.functional.cosine_similarity(x, v.reshape(-1, *([1] * (x.dim() - 1))), dim=0)
    axis = args[1] if len(args) == 2 else None
    if axis is not None and not -x.dim() <= axis < x.dim():
        raise ExpressionError(f"{name}(X, {axis}): X has shape {tuple(x.shape)}, with axes 0..{x.dim() - 1}")
    if name == "norm":
        return x.norm() if axis is None else x.norm(dim=axis)
    reduce = {"mean": torch.mean, "sum": torch.sum, "max": torch.amax, "min": torch.amin}[name]
    return reduce(x) if axis is None else reduce(x, dim=axis)


def _weight(model, w: Weight):
    import torch

    def get(name):
        if name in LN_KEYS:
            key = LN_KEYS[name].format(*w.select)
            sd = model.state_dict()
            if key not in sd:
                raise ExpressionError(f"{name} reads {key!r}, which this model does not have (no LayerNorm "
                                      "there, or one without a learned weight)")
            return sd[key].detach().to(torch.float64).cpu()
        return getattr(model, name).detach().to(torch.float64).cpu()

    if w.name in LN_KEYS:
        return get(w.name)

    if w.name == "OV":
        return get("W_V")[w.select] @ get("W_O")[w.select]
    if w.name == "QK":
        return get("W_Q")[w.select] @ get("W_K")[w.select].T
    return get(w.name)[w.select] if w.select else get(w.name)


# ---------------------------------------------------------------- weight-space statistics
def singular_value_statistic(matrix, top: int, take: str) -> float:
    """From the singular values s (largest first) of a matrix: `value` s[top-1], `ratio`
    s[top-1] / s[top], `share` the part of the squared spectrum in the `top` largest."""
    import torch

    if matrix.dim() != 2:
        raise ExpressionError(f"singular values need a matrix, got shape {tuple(matrix.shape)}")
    s = torch.linalg.svdvals(matrix)
    if top > len(s) - (take == "ratio"):
        raise ExpressionError(f"the matrix has {len(s)} singular values; `top: {top}` with `{take}` needs "
                              f"{top + (take == 'ratio')}")
    if take == "value":
        return float(s[top - 1])
    if take == "ratio":
        return float(s[top - 1] / s[top])
    return float((s[:top] ** 2).sum() / (s ** 2).sum())


def cosine(a, b) -> float:
    import torch

    if a.dim() != 1 or b.dim() != 1 or a.shape != b.shape:
        raise ExpressionError(f"cosine compares two vectors of one length, got shapes {tuple(a.shape)} and "
                              f"{tuple(b.shape)}", "index a row `[3]` or a column `[:, 3]`")
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def norm(x) -> float:
    """The Euclidean norm of a vector, the Frobenius norm of a matrix."""
    return float(x.norm())


# ---------------------------------------------------------------- in a hypothesis file
def _checked(text: str) -> str:
    if "$" in text:  # checked again once a quantifier or sweep binds the variable
        return text
    try:
        parse(text)
    except ExpressionError as exc:
        raise ValueError(f"{exc} ({exc.hint})" if exc.hint else str(exc)) from None
    return text


Expression = Annotated[str, AfterValidator(_checked), Field(
    description="a weight expression: `OV[L0H1]`, `W_E @ OV[L0H1] @ W_U`, `W_U[:, 3] - W_U[:, 5]`, `W_in[0][:, 12]`")]


# The size a model config names for each axis of a weight, where the config says: an index into
# that axis (`W_E[90]`, `W_in[0][:, 300]`) is checked against it at collection.
AXES = {"W_E": ("d_vocab", None), "W_pos": ("n_ctx", None), "W_U": (None, "d_vocab_out"), "b_U": ("d_vocab_out",),
        "W_in": (None, "d_mlp"), "W_out": ("d_mlp", None), "b_in": ("d_mlp",)}


def references(text: str, loc: tuple):
    """(loc, value, what) for the heads and layers a weight expression names, and the indices it
    takes into vocabulary, position and neuron axes ((size name, index, weight)), checked at collection."""
    tree = parse(text)
    for w in heads_and_layers(tree):
        if len(w.select) == 2:
            yield loc, f"L{w.select[0]}H{w.select[1]}", "head"
        elif len(w.select) == 1:
            yield loc, w.select[0], "layer"
    for weight, axis, index in indices(tree):
        size = AXES.get(weight.name, ())[axis:axis + 1]
        if size and size[0]:
            yield loc, (size[0], index, weight.name), "index"


def indices(tree):
    """(weight, axis, int) for every single index taken directly into a named weight."""
    if isinstance(tree, Weight):
        return []
    if isinstance(tree, Index):
        own = [(tree.of, axis, i) for axis, i in enumerate(tree.index) if isinstance(tree.of, Weight)
               and isinstance(i, int)]
        return own + indices(tree.of)
    return [found for a in tree.args if not isinstance(a, int) for found in indices(a)]
