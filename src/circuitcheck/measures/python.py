"""`measure: {python: NAME}` (or `{python: {name: NAME, args: {...}}}`): a measure written in Python,
registered in code with `@circuitcheck.register_measure(NAME, reads=[hook names])`; a file names
only the registered name, never a module or function.

The function receives a `Run` (measures/base.py: `logits`, `cache` holding exactly the hooks it
declared in `reads`, `prompts`, `model`, `n`, `tokens`, `position(expr)`) and the file's `args` as
keyword arguments, and returns one finite float per prompt. A weights-only measure
(`weights_only=True`) receives the model and returns one number (judged exactly with at_least,
...) or a vector (judged with `expect: {order: ...}`, its units numbered from 0). What it raises,
or returns that cannot be judged, is that claim's error, naming the function and its line.
"""
from __future__ import annotations

import traceback
from contextlib import contextmanager
from typing import Any, Union

import numpy as np
from pydantic import Field

from ..language import registry
from ..language.fields import Strict
from .base import Kind, Run, register


class PythonCall(Strict):
    name: str = Field(description="the name the measure was registered under")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the function "
                                 "(plain values; `$head` and other bound variables are substituted first)")


@register
class PythonKind(Kind):
    name = "python"
    schema = Union[str, PythonCall]
    streams = False  # a user's function may read across prompts (a mean, a centring): it sees the whole run

    @property
    def form(self) -> str:
        return "python (a registered measure)"

    def registered(self, body) -> registry.Registered:
        return registry.measure(call(body).name)

    def is_weights_only(self, body) -> bool:
        try:
            return self.registered(body).weights_only
        except registry.NotRegistered:  # collection reports it, with the line
            return False

    def values(self, body, prompts, d_vocab) -> dict:
        return {"value_range": self.registered(body).value_range}  # declared at registration; None: unbounded

    def needs(self, body, cfg) -> set[str]:
        reg, c = self.registered(body), call(body)
        if not callable(reg.reads):
            return set(reg.reads)
        reads = invoke(registry.Registered(reg.name, reg.reads), cfg, c.args)
        if isinstance(reads, str) or not all(isinstance(r, str) for r in reads):
            raise registry.CodeError(f"python measure {reg.name!r}: its `reads` function returned {reads!r}, "
                                     "not a list of hook names")
        return set(reads)

    def compute(self, body, run: Run) -> np.ndarray:
        reg, c = self.registered(body), call(body)
        before = handed_digest(run)
        if reg.weights_only:  # weights only: no gradients to track (and no graph kept alive by the result)
            import torch

            with torch.no_grad():
                value = invoke(reg, run.model, c.args)
        else:
            declared = self.needs(body, run.model.cfg)
            view = Run(run.logits, {k: v for k, v in run.cache.items() if k in declared}, copied(run.prompts),
                       run.model)
            value = invoke(reg, view, c.args)
        if handed_digest(run) != before:
            raise HandedChanged(f"python measure {reg.name!r} ({reg.where}) changed the model's weights, the logits "
                                "or the activations it was handed: the claim cannot be judged, and the model and "
                                "its runs are loaded afresh for the other claims. Copy what you change "
                                "(`run.logits.clone()`, `W.detach().clone()`)")
        return checked(reg, value, None if reg.weights_only else run.n)

    def references(self, body):
        loc = ("name",) if isinstance(body, PythonCall) else ()
        yield loc, call(body).name, "registered measure"
        try:
            reads = self.registered(body).reads
        except registry.NotRegistered:
            return
        for hook in reads if not callable(reads) else ():  # declared hooks must exist in the model
            yield loc, hook, "hook"


class HandedChanged(registry.CodeError):
    """A measure changed what it shares with other claims (weights, logits, activations)."""


def handed_digest(run: Run) -> str:
    """sha256 over the model's state dict and the run's logits and activations: what other claims
    read after this one, so a measure must leave it as it was handed (checked after each call)."""
    import hashlib

    import torch

    from ..models.fingerprint import state_dict_sha256

    h = hashlib.sha256(state_dict_sha256(run.model).encode())
    tensors = [("logits", run.logits)] if run.logits is not None else []
    for name, t in tensors + sorted(run.cache.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def copied(prompts):
    """A copy of the prompt set for a measure to do with as it likes: what it writes there never
    reaches the claims after it. (Writable, not read-only: `torch.as_tensor` of a read-only array
    warns, and measures commonly make tensors of the targets.)"""
    import dataclasses

    def copy(a):
        return a.copy() if isinstance(a, np.ndarray) else a

    changes = {}
    for f in dataclasses.fields(prompts):
        value = getattr(prompts, f.name)
        changes[f.name] = {k: copy(v) for k, v in value.items()} if isinstance(value, dict) else copy(value)
    return dataclasses.replace(prompts, **changes)


def call(body) -> PythonCall:
    return body if isinstance(body, PythonCall) else PythonCall(name=body)


def invoke(reg: registry.Registered, arg, args: dict):
    """Call the registered function; what it raises (SystemExit too), or running past its declared
    `timeout`, becomes a CodeError naming it and the line."""
    try:
        with time_limit(reg.timeout, reg):
            return reg.fn(arg, **args)
    except KeyboardInterrupt:
        raise
    except registry.CodeError:
        raise
    except (Exception, SystemExit) as exc:
        raise registry.CodeError(f"python measure {reg.name!r} ({reg.where}) raised {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
                                 f"{_line(reg, exc)}") from exc


@contextmanager
def time_limit(seconds: float | None, reg: registry.Registered):
    """Stop the function after `seconds` (a SIGALRM timer: the main thread of a POSIX process, as
    pytest and the command line run it; elsewhere no limit is enforced)."""
    import signal
    import threading

    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise registry.CodeError(f"python measure {reg.name!r} ({reg.where}) ran past its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _line(reg, exc) -> str:
    """`, at conftest.py:12` where the error came from inside the function's own file."""
    code = getattr(reg.fn, "__code__", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if code and f.filename == code.co_filename]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _complex(value) -> bool:
    if hasattr(value, "is_complex") and callable(value.is_complex):  # a torch tensor
        return bool(value.is_complex())
    try:
        return bool(np.iscomplexobj(value)) or any(isinstance(v, complex) for v in np.ravel(np.asarray(value, dtype=object)))
    except (TypeError, ValueError):  # not array-like: the conversion below says so
        return False


def checked(reg: registry.Registered, value, n: int | None) -> np.ndarray:
    """The values as float64, after the checks a claim's statistics rely on: n finite floats (a
    weights-only measure: one or more), inside the declared range."""
    what = f"python measure {reg.name!r} ({reg.where})"
    if _complex(value):  # float64 would drop the imaginary part without a word
        raise registry.CodeError(f"{what} returned complex numbers: return real ones (e.g. `.real`, `.abs()`)")
    try:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().to("cpu").double().numpy()
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise registry.CodeError(f"{what} returned {type(value).__name__}, not numbers ({exc})") from None
    if n is None:
        out = out.reshape(-1) if out.ndim <= 1 else out
        if out.ndim != 1 or out.size == 0:
            raise registry.CodeError(f"{what} returned shape {out.shape}: a weights-only measure returns one "
                                     "number or a vector")
    elif out.shape != (n,):
        raise registry.CodeError(f"{what} returned shape {out.shape}, not one value per prompt ({n},)")
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise registry.CodeError(f"{what} returned {out[bad[0]]} at index {bad[0]} ({bad.size} values not finite): "
                                 "every value must be a finite number")
    if reg.value_range is not None:
        lo, hi = reg.value_range
        outside = np.flatnonzero((out < lo) | (out > hi))
        if outside.size:
            raise registry.CodeError(f"{what} returned {out[outside[0]]:g} at index {outside[0]}, outside its "
                                     f"declared range ({lo:g}, {hi:g})")
    return out
