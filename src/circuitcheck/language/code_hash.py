"""What a registered function's values depend on, as one hash: the value cache keys a `cache=True`
measure by it (runs/cache.py), so an edit anywhere the function reaches computes its values anew.

Starting from the function (and what it wraps: `__wrapped__`, a decorator's closure), every global
name and closure value its code reads, its nested functions' too, is followed:
- a function or class of your own code: the source file it is written in, and, in turn, what it reads;
- a module of your own code: its source file, and the attributes of it the code names (as they are
  now, so one replaced at run time is followed too);
- an installed library (site-packages, the standard library, circuitcheck itself): its name and
  version (circuitcheck, torch, numpy and transformer_lens are in every key already);
- a plain value (numbers, text, None, tuples, lists, dicts and sets of them, numpy arrays): its
  contents, as it is when the key is made;
- anything else (an object holding state, an open file, a model): what it will give cannot be
  known, so the function's values are not cached at all, and `why` says which name.

Not seen: what the code reads at run time from outside Python (files, the network, environment
variables read inside the function) and attributes reached through an object's methods at run time;
`cache=True` promises there is none.
"""
from __future__ import annotations

import hashlib
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np

PLAIN = (int, float, complex, str, bytes, bool, type(None))
LIMIT = 500  # functions, classes and modules followed: past that, it is not known


class Unknown(Exception):
    """A function reads something the cache cannot hash."""


def code_hash(fn) -> tuple[str | None, str]:
    """(sha256 over everything `fn` reaches, what it covers), or (None, why it cannot be known)."""
    walk = _Walk()
    try:
        walk.function(fn, getattr(fn, "__qualname__", repr(fn)))
    except Unknown as exc:
        return None, str(exc)
    covered = sorted(walk.files)
    h = hashlib.sha256()
    for path in covered:
        h.update(f"\0file {path}\0".encode() + walk.files[path])
    for part in sorted(walk.parts):
        h.update(f"\0{part}".encode())
    return h.hexdigest(), ", ".join(Path(p).name for p in covered) or "no source file"


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    roots.add(str(Path(__file__).resolve().parents[1]))  # circuitcheck: in every key by its source hash
    return tuple(str(Path(r).resolve()) for r in roots if r)


class _Walk:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.parts: set[str] = set()
        self.seen: set[int] = set()
        self.roots = _library_roots()

    def _first(self, obj) -> bool:
        if id(obj) in self.seen:
            return False
        self.seen.add(id(obj))
        if len(self.seen) > LIMIT:
            raise Unknown(f"it reaches more than {LIMIT} functions, classes and modules")
        return True

    def _library(self, path: str | None) -> bool:
        return path is not None and str(Path(path).resolve()).startswith(self.roots)

    def _file(self, path: str | None, what: str) -> None:
        try:
            self.files.setdefault(str(Path(path).resolve()), Path(path).read_bytes())
        except (TypeError, OSError):
            raise Unknown(f"{what} has no source file to read (defined in a notebook cell or by exec)") from None

    def function(self, fn, name: str) -> None:
        if not self._first(fn):
            return
        fn = getattr(fn, "__func__", fn)  # a bound method: its function
        code = getattr(fn, "__code__", None)
        if code is None:
            raise Unknown(f"{name} is {type(fn).__name__}, not a Python function")
        if self._library(code.co_filename):
            self.parts.add(f"library function {fn.__module__}.{fn.__qualname__} {_version(fn.__module__)}")
            return
        self._file(code.co_filename, name)
        for cell, var in zip(fn.__closure__ or (), code.co_freevars):
            try:
                self.value(cell.cell_contents, f"{name}'s closure variable {var!r}")
            except ValueError:  # an empty cell: a name bound later
                pass
        for default in (fn.__defaults__ or ()) + tuple((fn.__kwdefaults__ or {}).values()):
            self.value(default, f"a default argument of {name}")
        if hasattr(fn, "__wrapped__"):
            self.value(fn.__wrapped__, f"the function {name} wraps")
        self._globals(code, fn.__globals__, name)

    def _globals(self, code, namespace: dict, name: str) -> None:
        for n in code.co_names:
            if n not in namespace:
                continue
            self.value(namespace[n], f"{name} reads {n!r}, which")
            if isinstance(namespace[n], types.ModuleType) and not self._library(getattr(namespace[n], "__file__", None)):
                for attr in code.co_names:  # `helper.value`: what the module holds now, set at run time too
                    if attr in vars(namespace[n]):
                        self.value(vars(namespace[n])[attr], f"{name} reads {n}.{attr}, which")
        for const in code.co_consts:
            if isinstance(const, types.CodeType):  # nested functions, lambdas, comprehensions
                self._globals(const, namespace, name)

    def value(self, obj, what: str) -> None:
        if isinstance(obj, PLAIN):
            self.parts.add(f"{what}={obj!r}")
        elif isinstance(obj, (tuple, list, set, frozenset, dict)):
            self._container(obj, what)
        elif isinstance(obj, np.ndarray) and obj.dtype != object:
            self.parts.add(f"{what}=array {obj.dtype} {obj.shape} {hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}")
        elif isinstance(obj, types.ModuleType):
            self.module(obj)
        elif isinstance(obj, (types.FunctionType, types.MethodType)) or hasattr(obj, "__wrapped__"):
            self.function(obj, getattr(obj, "__qualname__", what))
        elif isinstance(obj, type):
            self.klass(obj)
        elif isinstance(obj, (types.BuiltinFunctionType, np.ufunc)) or type(obj).__module__ in ("builtins", "numpy"):
            self.parts.add(f"{what}: builtin {getattr(obj, '__qualname__', type(obj).__name__)}")
        else:
            raise Unknown(f"{what} is a {type(obj).__module__}.{type(obj).__qualname__}, an object whose "
                          "results the cache cannot know from its source")

    def _container(self, obj, what: str) -> None:
        if not self._first(obj):
            return
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            self.value(k, what)
            self.value(v, f"{what}[{k!r}]")

    def module(self, module) -> None:
        if not self._first(module):
            return
        path = getattr(module, "__file__", None)
        if path is None or self._library(path):
            self.parts.add(f"module {module.__name__} {_version(module.__name__)}")
        else:
            self._file(path, f"module {module.__name__}")

    def klass(self, cls) -> None:
        if not self._first(cls):
            return
        mod = sys.modules.get(cls.__module__)
        if mod is None or self._library(getattr(mod, "__file__", None)) or not hasattr(mod, "__file__"):
            self.parts.add(f"class {cls.__module__}.{cls.__qualname__} {_version(cls.__module__)}")
            return
        self._file(mod.__file__, f"class {cls.__qualname__}")
        for attr in vars(cls).values():  # its methods, and what they read
            if isinstance(attr, (types.FunctionType, staticmethod, classmethod)):
                self.function(getattr(attr, "__func__", attr), cls.__qualname__)


def _version(module: str) -> str:
    top = sys.modules.get(module.split(".")[0])
    return str(getattr(top, "__version__", "")) + f" python {sys.version.split()[0]}"
