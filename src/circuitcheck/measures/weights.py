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
MLP_NAMES = ("W_in", "W_out", "b_in", "b_out", "ln2_w", "ln2_b")  # a block has these only with an MLP
# LayerNorm weights, read from the state dict (TransformerLens 4 bridges name them so)
LN_KEYS = {"ln1_w": "blocks.{}.ln1.weight", "ln1_b": "blocks.{}.ln1.bias", "ln2_w": "blocks.{}.ln2.weight",
           "ln2_b": "blocks.{}.ln2.bias", "ln_final_w": "ln_final.weight", "ln_final_b": "ln_final.bias"}
# Reductions: f(X) over every entry, f(X, axis) along one axis (0: down each column, so `norm(W_in[0], 0)`
# is the norm of each neuron's input weights); `cos(X, v)` is the cosine of each column of X with v;
# `sq` and `abs` act on each entry.
FUNCTIONS = ("norm", "mean", "sum", "max", "min", "cos", "sq", "abs")

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<num>-?\d+)|(?P<op>[@*/+\-()\[\]:,.]))")
# Bounds that keep parsing and evaluation (both recursive) far from Python's recursion limit: an
# expression names a few weights; no axis of a weight has an index of more than 12 digits.
MAX_CHARS = 1000
MAX_DEPTH = 40
MAX_DIGITS = 12


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
    op: str  # "@", "*", "/", "+", "-", "neg", "T"
    args: tuple


@dataclass(frozen=True)
class Act:
    """`act(HOOK)` / `act(HOOK, POS)`: the mean over the claim's prompts of one activation at the read
    positions (the targets, or POS): a d_model vector, a d_mlp vector, or a LayerNorm scale."""
    hook: str
    at: str | None


# What `act(...)` reads, and the shape of its mean: one vector or one number per position.
ACT_SHAPES = (
    (re.compile(r"^(hook_embed|hook_pos_embed|ln_final\.hook_(in|normalized)|blocks\.\d+\.(hook_(resid_pre|"
                r"resid_mid|resid_post|attn_out|mlp_out|mlp_in)|ln[12]\.hook_normalized))$"), ("d_model",)),
    (re.compile(r"^blocks\.\d+\.mlp\.hook_(pre|post)$"), ("d_mlp",)),
    (re.compile(r"^(blocks\.\d+\.ln[12]|ln_final)\.hook_scale$"), ()),
)
ACT_HINT = ("act(HOOK) or act(HOOK, POS) reads blocks.<layer>.hook_resid_pre / hook_resid_mid / hook_resid_post / "
            "hook_attn_out / hook_mlp_out, blocks.<layer>.mlp.hook_pre / hook_post, a LayerNorm scale "
            "(blocks.<layer>.ln1.hook_scale, ln_final.hook_scale), hook_embed or hook_pos_embed; POS as for `at:`")


RUN_ONLY = "`act(...)` reads the model's activations on the claim's prompts: only `weight_value` takes it"
HINT = ("write e.g. `W_E @ OV[L0H1] @ W_U`, `W_U[:, 3] - W_U[:, 5]`, `W_in[0][:, 12]` or "
        "`mean(sq(cos(W_in[0], W_U[:, 3])))`; names: " + ", ".join(NAMES) + "; functions: " + ", ".join(FUNCTIONS))


def parse(text: str, runs: bool = False):
    """The expression tree of `text`, or an `ExpressionError` saying where it goes wrong. `act(...)`
    (a statistic of a run) is allowed only with `runs`."""
    tokens = _tokenize(text)
    parser = _Parser(text, tokens)
    tree = parser.expr()
    if parser.i != len(tokens):
        raise ExpressionError(f"unexpected {tokens[parser.i]!r} in weight expression {text!r}", HINT)
    if not runs and acts(tree):
        raise ExpressionError(f"{RUN_ONLY}, not this measure ({text!r})",
                              "write `measure: {weight_value: {of: ...}}` for an expression with `act(...)`")
    return tree


def _tokenize(text: str) -> list[str]:
    out, i = [], 0
    text = str(text)
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"weight expression is {len(text):,} characters long, more than {MAX_CHARS:,}", HINT)
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m:
            raise ExpressionError(f"cannot read {text[i:].strip()!r} in weight expression {text!r}", HINT)
        if m.lastgroup == "num" and len(m.group("num").lstrip("-")) > MAX_DIGITS:
            raise ExpressionError(f"index {m.group('num')[:20]}... has more than {MAX_DIGITS} digits in {text[:60]!r}",
                                  "no axis of a weight is that long")
        out.append(m.group(m.lastgroup))
        i = m.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary ('@' unary)* ; unary := '-' unary | postfix ;
    postfix := atom ('[' index ']' | '.T')* ; atom := NAME | NAME '[' select ']' | '(' expr ')'
    | FUNCTION '(' expr (',' expr | ',' INT)* ')'"""

    def __init__(self, text, tokens):
        self.text, self.tokens, self.i, self.depth = text, tokens, 0, 0

    def deeper(self):
        """One more level of parentheses, unary minus or `.T`: bounded (parsing and evaluating recurse)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"weight expression {self.text[:60]!r} nests parentheses, `-` and `.T` more than "
                                  f"{MAX_DEPTH} deep", HINT)

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
        while self.peek() in ("@", "*", "/"):
            op = self.take()
            node = Op(op, (node, self.unary()))
        return node

    def unary(self):
        if self.peek() == "-":
            self.take()
            self.deeper()
            node = Op("neg", (self.unary(),))
            self.depth -= 1
            return node
        return self.postfix(self.atom())

    def atom(self):
        tok = self.take()
        if tok == "(":
            self.deeper()
            node = self.expr()
            self.take(")")
            self.depth -= 1
            return node
        if tok in FUNCTIONS:
            return self.call(tok)
        if tok == "act":
            return self.act()
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
        self.deeper()  # a call nests as parentheses do
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
        self.depth -= 1
        return Call(name, tuple(args))

    def act(self):
        """act(HOOK) or act(HOOK, POS): the dotted hook name and the position are read as written."""
        self.take("(")
        hook, at = self.raw(), None
        if self.peek() == ",":
            self.take()
            at = self.raw()
        self.take(")")
        if not any(pattern.match(hook) for pattern, _ in ACT_SHAPES):
            raise ExpressionError(f"act() cannot read {hook!r} in {self.text!r}", ACT_HINT)
        return Act(hook, at or None)

    def raw(self) -> str:
        parts = []
        while self.peek() not in (",", ")", None):
            parts.append(self.take())
        return "".join(parts)

    def postfix(self, node):
        while self.peek() in ("[", "."):
            if self.take() == ".":
                self.take("T")
                self.deeper()  # each `.T` is a level of the tree: counted, never given back
                node = Op("T", (node,))
                continue
            self.deeper()  # as `.T`: each index is a level of the tree
            parts = [self.index_part()]
            while self.peek() == ",":
                self.take()
                parts.append(self.index_part())
            self.take("]")
            node = Index(node, tuple(parts))
        return node

    def index_part(self):
        start = self.number() if self.peek() not in (":", ",", "]") else None
        if self.peek() != ":":
            if start is None:
                raise ExpressionError(f"empty index in weight expression {self.text!r}", HINT)
            return start
        self.take(":")
        stop = self.number() if self.peek() not in (",", "]") else None
        return (start, stop)

    def number(self) -> int:
        tok = self.take()
        if not re.fullmatch(r"-?\d+", tok):
            raise ExpressionError(f"an index is a whole number, not {tok!r}, in weight expression {self.text!r}", HINT)
        return int(tok)


def _children(tree) -> list:
    if isinstance(tree, (Weight, Act)):
        return []
    return [tree.of] if isinstance(tree, Index) else [a for a in tree.args if not isinstance(a, int)]


def heads_and_layers(tree):
    """Every (name, select) the expression reads, to check heads and layers against the model."""
    if isinstance(tree, Weight):
        return [tree]
    return [w for c in _children(tree) for w in heads_and_layers(c)]


def acts(tree) -> list:
    """Every `act(...)` in the expression, once each, in the order written."""
    if isinstance(tree, Act):
        return [tree]
    return list(dict.fromkeys(a for c in _children(tree) for a in acts(c)))


# ---------------------------------------------------------------- evaluation (torch from here on)
def evaluate(model, tree, means: dict | None = None):
    """The expression's value on `model`, as a float64 tensor; `means` gives each `act(...)`'s value."""
    if isinstance(tree, Weight):
        return _weight(model, tree)
    if isinstance(tree, Act):
        return means[tree]
    if isinstance(tree, Index):
        x = evaluate(model, tree.of, means)
        key = tuple(slice(None) if p == (None, None) else (slice(*p) if isinstance(p, tuple) else p)
                    for p in tree.index)
        if len(key) > x.dim():
            raise ExpressionError(f"{len(key)} indices into a {x.dim()}-d value of shape {tuple(x.shape)}")
        try:
            out = x[key]
        except IndexError as exc:
            raise ExpressionError(f"index out of range on a value of shape {tuple(x.shape)}: {exc}") from None
        if out.numel() == 0:
            raise ExpressionError(f"the slice selects nothing from shape {tuple(x.shape)}: an empty value would make "
                                  "any claim about it vacuous", "give each slice start < stop")
        return out
    if isinstance(tree, Call):
        return _call(tree.name, [a if isinstance(a, int) else evaluate(model, a, means) for a in tree.args])
    args = [evaluate(model, a, means) for a in tree.args]
    if any(a.numel() == 0 for a in args):
        raise ExpressionError("a slice selects nothing: a value of no entries would make any claim about it vacuous")
    if tree.op == "neg":
        return -args[0]
    if tree.op == "T":  # a vector's transpose is itself (torch deprecates .T below 2-d)
        return args[0].T if args[0].dim() == 2 else args[0]
    a, b = args
    if tree.op == "/" and not bool(b.all()):
        raise ExpressionError(f"division by a value with {int((b == 0).sum())} zero entries", "divide by a scale or norm")
    try:
        return {"@": a.__matmul__, "*": a.__mul__, "/": a.__truediv__, "+": a.__add__, "-": a.__sub__}[tree.op](b)
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
    if not bool(s.any()):
        raise ExpressionError(f"the matrix of shape {tuple(matrix.shape)} is zero: it has no singular values to compare")
    if top > len(s) - (take == "ratio"):
        raise ExpressionError(f"the matrix has {len(s)} singular values; `top: {top}` with `{take}` needs "
                              f"{top + (take == 'ratio')}")
    if take == "value":
        return float(s[top - 1])
    if take == "ratio":
        if s[top] == 0:
            raise ExpressionError(f"singular value {top + 1} is 0: the ratio s{top}/s{top + 1} is infinite",
                                  "compare with `take: value` or `take: share`")
        return float(s[top - 1] / s[top])
    return float((s[:top] ** 2).sum() / (s ** 2).sum())


def cosine(a, b) -> float:
    import torch

    if a.dim() != 1 or b.dim() != 1 or a.shape != b.shape:
        raise ExpressionError(f"cosine compares two vectors of one length, got shapes {tuple(a.shape)} and "
                              f"{tuple(b.shape)}", "index a row `[3]` or a column `[:, 3]`")
    if not bool(a.any()) or not bool(b.any()):
        raise ExpressionError("cosine of a zero vector has no direction to compare (torch would report 0)",
                              "check the expression: `W_U[:, 3] - W_U[:, 3]` is zero by construction")
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def norm(x) -> float:
    """The Euclidean norm of a vector, the Frobenius norm of a matrix."""
    return float(x.norm())


# ---------------------------------------------------------------- in a hypothesis file
def _checker(runs: bool):
    def checked(text: str) -> str:
        if "$" in text:  # checked again once a quantifier or sweep binds the variable
            return text
        try:
            parse(text, runs)
        except ExpressionError as exc:
            raise ValueError(f"{exc} ({exc.hint})" if exc.hint else str(exc)) from None
        return text
    return checked


Expression = Annotated[str, AfterValidator(_checker(False)), Field(
    description="a weight expression: `OV[L0H1]`, `W_E @ OV[L0H1] @ W_U`, `W_U[:, 3] - W_U[:, 5]`, `W_in[0][:, 12]`")]
RunExpression = Annotated[str, AfterValidator(_checker(True)), Field(
    description="a weight expression that may read a run: `act(blocks.1.ln1.hook_scale, last)`, "
                "`mean(norm(W_in[0], 0)) / act(ln_final.hook_scale)`")]


# The size a model config names for each axis of a weight, where the config says: an index into
# that axis (`W_E[90]`, `W_in[0][:, 300]`) is checked against it at collection.
AXES = {"W_E": ("d_vocab", None), "W_pos": ("n_ctx", None), "W_U": (None, "d_vocab_out"), "b_U": ("d_vocab_out",),
        "W_in": (None, "d_mlp"), "W_out": ("d_mlp", None), "b_in": ("d_mlp",)}


def references(text: str, loc: tuple, dims: int | None = None, runs: bool = False):
    """(loc, value, what) for the heads and layers a weight expression names, the indices it
    takes into vocabulary, position and neuron axes ((size name, index, weight)), the hooks and
    positions its `act(...)` read, and the expression itself with the number of axes its measure
    needs (`shape_of`), checked at collection."""
    tree = parse(text, runs)
    for act in acts(tree):
        yield loc, act.hook, "hook"
        if act.at is not None:
            yield loc, act.at, "position"
    for w in heads_and_layers(tree):
        if len(w.select) == 2:
            yield loc, f"L{w.select[0]}H{w.select[1]}", "head"
        elif len(w.select) == 1:
            yield loc, w.select[0], "mlp" if w.name in MLP_NAMES else "layer"
    for weight, axis, index in indices(tree):
        size = AXES.get(weight.name, ())[axis:axis + 1]
        if size and size[0]:
            yield loc, (size[0], index, weight.name), "index"
    yield loc, (tree, dims), "expression"  # last: a head, layer or index out of range says so in its own words


# Each weight's axes, by the config sizes that give their lengths (TransformerLens's shapes).
SHAPES = {"W_E": ("d_vocab", "d_model"), "W_pos": ("n_ctx", "d_model"), "W_U": ("d_model", "d_vocab_out"),
          "b_U": ("d_vocab_out",), "W_Q": ("d_model", "d_head"), "W_K": ("d_model", "d_head"),
          "W_V": ("d_model", "d_head"), "W_O": ("d_head", "d_model"), "b_Q": ("d_head",), "b_K": ("d_head",),
          "b_V": ("d_head",), "OV": ("d_model", "d_model"), "QK": ("d_model", "d_model"), "b_O": ("d_model",),
          "W_in": ("d_model", "d_mlp"), "W_out": ("d_mlp", "d_model"), "b_in": ("d_mlp",), "b_out": ("d_model",),
          **{name: ("d_model",) for name in LN_KEYS}}


def shape_of(tree, sizes: dict, dims: int | None = None) -> tuple:
    """The expression's shape from the config's sizes (None for an axis whose size the config does
    not give), checked as evaluation would check it: an ExpressionError for too many indices, an
    index out of range, a slice that selects nothing, shapes that `@`, `+` or `-` cannot join, a
    difference of a value with itself (zero by construction), or other than `dims` axes."""
    shape = _shape(tree, sizes)
    if dims is not None and len(shape) != dims:
        raise ExpressionError(f"this measure needs {('a vector', 'a matrix')[dims - 1]}, and the expression has "
                              f"shape {_text(shape)}", "index a row `[3]` or a column `[:, 3]`" if dims == 1 else HINT)
    return shape


def _text(shape) -> str:
    return "(" + ", ".join("?" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _shape(tree, sizes) -> tuple:
    if isinstance(tree, Weight):
        return tuple(sizes.get(axis) for axis in SHAPES[tree.name])
    if isinstance(tree, Act):
        return tuple(sizes.get(axis) for axis in next(axes for p, axes in ACT_SHAPES if p.match(tree.hook)))
    if isinstance(tree, Index):
        return _indexed(_shape(tree.of, sizes), tree.index)
    if isinstance(tree, Call):
        return _called(tree.name, [a if isinstance(a, int) else _shape(a, sizes) for a in tree.args])
    shapes = [_shape(a, sizes) for a in tree.args]
    if tree.op == "neg":
        return shapes[0]
    if tree.op == "T":
        return shapes[0][::-1]
    a, b = shapes
    if tree.op == "@":
        return _matmul(a, b)
    if tree.op in ("-", "/") and tree.args[0] == tree.args[1]:
        raise ExpressionError(f"a value {('minus', 'divided by')[tree.op == '/']} itself is "
                              f"{('zero', 'one')[tree.op == '/']} by construction: no measure of it says anything")
    return _broadcast(a, b, tree.op)


def _indexed(shape: tuple, index: tuple) -> tuple:
    if len(index) > len(shape):
        raise ExpressionError(f"{len(index)} indices into a value of shape {_text(shape)}", HINT)
    out = []
    for n, part in zip(shape, index):
        if isinstance(part, int):
            if n is not None and not -n <= part < n:
                raise ExpressionError(f"index {part} is out of range for an axis of {n}", f"indices run 0..{n - 1}")
            continue
        start, stop = part
        length = len(range(n)[slice(start, stop)]) if n is not None else None
        if length == 0 or (length is None and start is not None and stop is not None and 0 <= stop <= start):
            raise ExpressionError(f"the slice [{'' if start is None else start}:{'' if stop is None else stop}] "
                                  "selects nothing: an empty value would make any claim about it vacuous",
                                  "give each slice start < stop")
        out.append(length)
    return tuple(out) + shape[len(index):]


def _called(name: str, args: list) -> tuple:
    """The shape of `sq`, `abs`, `cos(X, v)` and the reductions (`_call`), checked as `_call` checks it."""
    x = args[0]
    if name in ("sq", "abs"):
        return x
    if name == "cos":
        v = args[1]
        if len(v) != 1 or not x or None not in (x[0], v[0]) and x[0] != v[0]:
            raise ExpressionError(f"cos(X, v) compares each column of X {_text(x)} with a vector of its length, got "
                                  f"{_text(v)}", "e.g. cos(W_in[0], W_U[:, 3])")
        return x[1:]
    axis = args[1] if len(args) == 2 else None
    if axis is None:
        return ()
    if not -len(x) <= axis < len(x):
        raise ExpressionError(f"{name}(X, {axis}): X has shape {_text(x)}, with axes 0..{len(x) - 1}")
    return x[:axis % len(x)] + x[axis % len(x) + 1:]


def _matmul(a: tuple, b: tuple) -> tuple:
    if not a or not b or len(a) > 2 or len(b) > 2:
        raise ExpressionError(f"`@` joins vectors and matrices, not shapes {_text(a)} and {_text(b)}", HINT)
    inner_a, inner_b = a[-1], b[0]
    if None not in (inner_a, inner_b) and inner_a != inner_b:
        raise ExpressionError(f"shapes {_text(a)} and {_text(b)} do not fit `@`: {inner_a} ≠ {inner_b}", HINT)
    return a[:-1] + b[1:]


def _broadcast(a: tuple, b: tuple, op: str) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x, y = (a[-i] if i <= len(a) else 1), (b[-i] if i <= len(b) else 1)
        if None not in (x, y) and x != y and 1 not in (x, y):
            raise ExpressionError(f"shapes {_text(a)} and {_text(b)} do not fit `{op}`", HINT)
        out.append(x if y in (1, None) and x is not None else y)
    return tuple(reversed(out))


def indices(tree):
    """(weight, axis, int) for every single index taken directly into a named weight."""
    if isinstance(tree, (Weight, Act)):
        return []
    if isinstance(tree, Index):
        own = [(tree.of, axis, i) for axis, i in enumerate(tree.index) if isinstance(tree.of, Weight)
               and isinstance(i, int)]
        return own + indices(tree.of)
    return [found for a in tree.args if not isinstance(a, int) for found in indices(a)]
