"""Registered Python code: the only Python a hypothesis file may name.

A hypothesis file is data that researchers share and review like a data file, so it never
imports a module or calls a function by its path. Code that builds a model, or computes a measure
the vocabulary lacks, is registered in code (a `conftest.py` that pytest loads, or the module a
notebook imports) under a plain name, and a file names only that:

    # conftest.py
    import circuitcheck

    @circuitcheck.register_model("my-model")
    def build():
        return ...                              # a TransformerBridge

    @circuitcheck.register_measure("my-measure", reads=["blocks.0.attn.hook_pattern"], range=(0, 1))
    def my_measure(run):                        # run: circuitcheck.Run (measures/base.py)
        return ...                              # one float per prompt

    # my.hyp.yaml
    model: factory:my-model
    claims: [{..., measure: {python: my-measure}}]

Where registrations come from: under pytest, the conftest.py files pytest loads (pytest imports
a directory's conftest.py before it collects the files in it); for `circuitcheck check`, the
conftest.py files beside and above each named file (`conftests.load_beside`); and everywhere, the
modules an installed package lists under the `circuitcheck` entry-point group, imported on the
first lookup:

    # pyproject.toml of a package that ships models
    [project.entry-points.circuitcheck]
    my-models = "my_pkg.circuitcheck_models"     # a module whose import registers them
"""
from __future__ import annotations

import difflib
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

NAME = r"^[A-Za-z0-9][\w.-]*$"


class NotRegistered(LookupError):
    """A file names Python code that no conftest.py or imported module registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=1)
        how = f"register it in a conftest.py with @circuitcheck.register_{kind}({name!r})"
        self.hint = (f"did you mean {close[0]!r}? " if close else "") + (
            f"registered {kind}s: {', '.join(sorted(known))}" + ("" if close else f"; or {how}") if known else how)
        super().__init__(f"no {kind} named {name!r} is registered")


class Ambiguous(NotRegistered):
    """Two files register the same name: a claim would run whichever was imported last."""

    def __init__(self, kind: str, name: str, places: list[str]):
        LookupError.__init__(self, f"{kind} {name!r} is registered {len(places)} times: " + "; ".join(places))
        self.kind, self.name, self.known = kind, name, []
        self.hint = (f"rename one of them (each file then names its own), or register {name!r} once, in a "
                     "conftest.py above every folder that uses it")


@dataclass(frozen=True)
class Registered:
    """One registered callable, with what the planner needs to know about it."""

    name: str
    fn: Callable
    reads: object = ()  # hook names a measure reads (or a function of the model config and the file's
    # `args` giving them), so planning and batching still apply
    weights_only: bool = False  # a measure of the weights alone (no run)
    value_range: tuple[float, float] | None = None  # what its values can be, by construction (None: unbounded)
    cache: bool = False  # its values depend on nothing but the run, its args and the code it reaches
    timeout: float | None = None  # seconds a call may take before it is that claim's error
    meta: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        """`name at file.py:line`, for error messages."""
        code = getattr(self.fn, "__code__", None)
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"{name} at {code.co_filename}:{code.co_firstlineno}" if code else name

    def source_hash(self) -> str | None:
        """What the value cache keys a `cache=True` measure by (None: values never cached)."""
        return self.code_key()[0]

    def code_key(self) -> tuple[str | None, str]:
        """(sha256 over the code and data the function and its `reads` function reach, what that
        covers), or (None, why it cannot be known): language/code_hash.py says what is followed."""
        import hashlib

        from .code_hash import code_hash

        h = hashlib.sha256(f"{self.name}|{self.value_range}|{self.reads if not callable(self.reads) else ''}".encode())
        covers = []
        for fn in (self.fn, self.reads) if callable(self.reads) else (self.fn,):
            digest, what = code_hash(fn)
            if digest is None:
                return None, what
            h.update(digest.encode())
            covers.append(what)
        return h.hexdigest(), ", ".join(covers)


class CodeError(Exception):
    """Registered code raised, or returned something circuitcheck cannot judge: the claim's error,
    never a crash of the file. The text names the function and where it is."""


MODELS: dict[str, Registered] = {}
MEASURES: dict[str, Registered] = {}
CONFLICTS: dict[tuple[str, str], list[str]] = {}  # (kind, name) -> where each registration of it is
ENTRY_POINT_GROUP = "circuitcheck"
_entry_points: dict[str, str | None] = {}  # entry point -> None when imported, else why it failed


def register_model(name: str):
    """Decorator: `@register_model("name")` makes `model: factory:name` build a model with `fn()`."""
    return _register(MODELS, "model", name)


def register_measure(name: str, reads=(), weights_only: bool = False, range=None, cache: bool = False,  # noqa: A002
                     timeout: float | None = None):
    """Decorator: `@register_measure("name", reads=[hook names])` makes `measure: {python: name}`
    call `fn(run, **args)` and judge the one float per prompt it returns (`weights_only`:
    `fn(model, **args)`, one number or a vector). `reads` may be a function `(cfg, **args) -> names`.
    `range=(lo, hi)` declares what the values can be (bounded measures get tighter bounds); the
    values are checked against it. Without it a measure is treated as unbounded.
    `cache=True` promises that the values depend on nothing but the run, the args and the code the
    function reaches (no data read from disk, no state kept between calls): the value cache then
    keeps them under a hash of every source file and plain value the function reaches, through
    decorators, helpers in other modules and closures (language/code_hash.py), so a rerun reads them
    back and an edit anywhere there computes them anew. A function reaching an object whose results
    its source cannot tell is never cached (a CacheWarning says which name). Without `cache=True`
    values are computed on every run. `timeout=SECONDS`: a call that runs longer is stopped, and is
    its claim's error (as an exception or `sys.exit` inside it is); the other claims run."""
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"register_measure({name!r}, timeout=...) takes a number of seconds > 0, got {timeout!r}")
    if not callable(reads) and (isinstance(reads, str) or not all(isinstance(r, str) for r in reads)):
        raise TypeError(f"register_measure({name!r}, reads=...) takes a list of hook names, or a function "
                        f"(cfg, **args) -> hook names; got {reads!r}")
    return _register(MEASURES, "measure", name, reads=reads if callable(reads) else tuple(reads),
                     weights_only=bool(weights_only), value_range=_range(name, range), cache=bool(cache),
                     timeout=timeout)


def _range(name: str, value) -> tuple[float, float] | None:
    import math

    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"register_measure({name!r}, range=...) takes (lo, hi), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"register_measure({name!r}, range=({lo}, {hi})): need finite lo < hi "
                         "(leave `range` out for an unbounded measure)")
    return (lo, hi)


def _register(table: dict, kind: str, name: str, **extra):
    import re

    if not isinstance(name, str) or not re.match(NAME, name):
        raise ValueError(f"a registered {kind} name is letters, digits, '.', '_' or '-': got {name!r}")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"register_{kind}({name!r}) decorates a function, not {type(fn).__name__}")
        new, old = Registered(name, fn, **extra), table.get(name)
        if old is not None and _origin(old.fn) != _origin(fn) and not _replaceable(old.fn, fn):
            # Two files register one name: which one a claim runs would depend on import order. The
            # first stays; files that name it get a collection error naming both (_lookup).
            CONFLICTS.setdefault((kind, name), [old.where])
            if new.where not in CONFLICTS[(kind, name)]:
                CONFLICTS[(kind, name)].append(new.where)
            return fn
        table[name] = new
        return fn

    return decorate


def _origin(fn) -> tuple:
    code = getattr(fn, "__code__", None)
    return (code.co_filename, getattr(fn, "__qualname__", "")) if code else (id(fn),)


def _replaceable(old, new) -> bool:
    """A function from no file (a notebook cell run again) replaces one from no file."""
    files = [getattr(getattr(f, "__code__", None), "co_filename", "<") for f in (old, new)]
    return all(f.startswith("<") for f in files)


def model(name: str) -> Registered:
    return _lookup(MODELS, "model", name)


def measure(name: str) -> Registered:
    return _lookup(MEASURES, "measure", name)


def _lookup(table: dict, kind: str, name: str) -> Registered:
    load_entry_points()
    if (kind, name) in CONFLICTS:
        raise Ambiguous(kind, name, CONFLICTS[(kind, name)])
    if name not in table:
        err = NotRegistered(kind, name, list(table))
        broken = [f"entry point {ep!r} failed to import ({why})" for ep, why in _entry_points.items() if why]
        if broken:
            err.hint += "; " + "; ".join(broken)
        raise err
    return table[name]


_listed_for: list = []  # the sys.path the entry points were last listed for


def load_entry_points() -> None:
    """Import, once per process, the modules installed packages list under the `circuitcheck` group.
    Listing them reads every installed package's metadata (20 ms a time here), so it is done again
    only when sys.path changed, which is where new packages would come from."""
    import sys
    from importlib.metadata import entry_points

    if _listed_for == sys.path:
        return
    _listed_for[:] = sys.path
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _entry_points:
            continue
        try:
            ep.load()
            _entry_points[ep.name] = None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken package must not stop the claims that do not need it
            _entry_points[ep.name] = f"{type(exc).__name__}: {exc}"
