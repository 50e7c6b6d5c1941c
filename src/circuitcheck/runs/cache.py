"""A value cache for reruns: the per-prompt values of a measure, stored under a hash of everything
they depend on, so that rerunning unchanged claims on an unchanged model reads them back without
importing torch or running a forward pass. The statistics are judged anew on the values, but the
costly answers of a bound (betting bounds and p-values, `stats.remembered`) are stored
too, under a hash of the exact values and of this code (`answers`), so a rerun repeats no bisection
or resampling and imports no scipy.

The key of a value hashes:
- the model's files, byte for byte (sha256 of the config and weights; a hash is remembered by
  path, size and mtime so that big weights are not reread every run). A factory model (Python) or
  a hub name (files outside the project) has no files to hash: its values are never cached; nor are
  the values of a `python:` measure (registered code, which the cache cannot see), unless it was
  registered with `cache=True`: then the source of the file its function is written in is hashed;
- the load options (device, dtype) and the batch size (they change the floating-point numbers);
- every prompt set the value reads, byte for byte (tokens, positions, targets), the file's seed;
- the interventions and the measure (their JSON);
- circuitcheck's version and a hash of its source files, and the torch and transformer_lens
  versions, so that a code change or an upgrade recomputes everything.

Values live as `.npy` files (read with `allow_pickle=False`) in pytest's cache directory
(`.pytest_cache/d/circuitcheck/`), so `pytest --cache-clear` clears them and `-p no:cacheprovider`
turns the cache off. Modes (`--cc-cache`): on (read and write, the default), read, write
(recompute and store), off.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import io
import os
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..files import atomic
from ..models.fingerprint import file_sha256
from .seal import Unsealed, key as seal_key, seal, unseal  # not `from . import`: runs/__init__'s
# forwarding __getattr__ would answer first, importing the engine and torch

MODES = ("on", "read", "write", "off")
PACKAGE = Path(__file__).parents[1]  # the whole circuitcheck package: its code version
MAX_ENTRY_BYTES = 1 << 30  # an entry larger than this was not written by a run of circuitcheck


class CacheWarning(UserWarning):
    """The cache refused an entry (it is computed anew) or could not be written (the run goes on)."""


class ValueCache:
    def __init__(self, directory: Path | str, mode: str = "on"):
        if mode not in MODES:
            raise ValueError(f"cache mode {mode!r}: choose one of {', '.join(MODES)}")
        self.directory, self.mode = Path(directory), mode
        self.hits = self.misses = 0
        self._models: dict = {}  # model source -> fingerprint (None: not cacheable)
        self._prompt_sets: dict[int, tuple] = {}  # id(prompt set) -> (prompt set, hash)
        self._answers: dict[str, tuple[dict, int]] = {}  # key -> (answers, how many were read)
        self._python: dict[str, str | None] = {}  # registered measure name -> its source hash
        self.rejected = 0  # entries refused: not sealed under this machine's key, or not what they should be
        self._said: set[str] = set()
        self.unwritable: str | None = None  # why the cache stopped storing (a full disk, a read-only folder)

    def key(self, source, prompt_sets, under, measure, *settings) -> str | None:
        """The key of a measure's values on a run: None when the values depend on Python the cache
        cannot see (a factory model, a registered `python:` measure) or on files outside the project."""
        texts = [iv.model_dump_json(by_alias=True) for iv in under] + [measure.model_dump_json()]
        if getattr(measure, "python", None) is not None:
            code = self._python_source(measure.python)
            if code is None:
                return None
            texts.append(code)
        if source not in self._models:
            self._models[source] = model_fingerprint(source)
        if self._models[source] is None:
            return None
        return digest(code_version(), self._models[source], *settings, *map(self._prompts_hash, prompt_sets), *texts)

    def get(self, key: str | None) -> np.ndarray | None:
        if key is None or self.mode not in ("on", "read"):
            return None
        payload = self._read("values", key, self._path(key))
        value = None
        if payload is not None:
            try:
                value = np.load(io.BytesIO(payload), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                self._reject("values", key, "not a readable array")
            else:
                if value.dtype.kind not in "fiub" or value.ndim > 2:
                    self._reject("values", key, f"an array of dtype {value.dtype} and shape {value.shape}, not numbers")
                    value = None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str | None, value: np.ndarray) -> None:
        if key is None or self.mode not in ("on", "write"):
            return
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value), allow_pickle=False)
        self._write("values", key, self._path(key), buffer.getvalue())

    # ------------------------------------------------------------ sealed entries
    def _read(self, kind: str, name: str, path: Path) -> bytes | None:
        """An entry's payload, or None: absent (a plain miss), or refused (said, as a CacheWarning)."""
        try:
            st = path.stat()
        except OSError:  # absent, or the cache directory is not one
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
            self._reject(kind, name, "not a regular file of a sane size")
            return None
        try:
            return unseal(kind, name, path.read_bytes())
        except OSError as exc:
            self._reject(kind, name, f"unreadable ({exc.strerror or exc})")
        except Unsealed as exc:
            self._reject(kind, name, str(exc))
        return None

    def _write(self, kind: str, name: str, path: Path, payload: bytes) -> None:
        """Store a sealed entry whole (a temporary name, then a rename: pytest-xdist workers never
        read half a file); a cache that cannot be written is said once, and the run goes on."""
        if self.unwritable is not None:
            return
        try:
            atomic.write(path, seal(kind, name, payload))
        except OSError as exc:
            self.unwritable = f"{exc.strerror or exc}: {exc.filename or self.directory}"
            warnings.warn(CacheWarning(f"circuitcheck: the value cache cannot be written, so this run stores "
                                       f"nothing in it: {self.unwritable}"), stacklevel=3)

    def _reject(self, kind: str, name: str, why: str) -> None:
        self.rejected += 1
        self._say(f"circuitcheck cache: a {kind} entry ({name[:12]}...) was refused and is computed anew: {why}. "
                  f"Entries authenticate under the key in {seal_key()[1]}")

    def _say(self, text: str) -> None:
        head = text.split(":")[1] if ":" in text else text  # one warning per kind of trouble, not per entry
        if head not in self._said:
            self._said.add(head)
            warnings.warn(CacheWarning(text), stacklevel=3)

    def _path(self, key: str) -> Path:
        return self.directory / "values" / key[:2] / f"{key}.npy"

    # ------------------------------------------------------------ the answers of bounds
    def answers(self, data: tuple) -> dict:
        """A bound's remembered answers (stats.remembered), by a hash of its data and of this code:
        {"lower:0.005": 0.43, ...}. Written back by `flush`."""
        key = digest(code_version(), *(_data_hash(d) for d in data))
        if key not in self._answers:
            known = self._read_answers(key) if self.mode in ("on", "read") else {}
            self._answers[key] = (known, len(known))
        return self._answers[key][0]

    def _read_answers(self, key: str) -> dict:
        payload = self._read("answers", key, self._answers_path(key))
        if payload is None:
            return {}
        try:
            known = json.loads(payload)
        except ValueError:
            known = None
        if not (isinstance(known, dict) and all(isinstance(k, str) and type(v) in (float, int) for k, v in known.items())):
            self._reject("answers", key, "not a map of names to numbers")
            return {}
        return {k: float(v) for k, v in known.items()}

    def flush(self) -> None:
        """Write the answers that grew since they were read."""
        if self.mode not in ("on", "write"):
            return
        for key, (known, size) in self._answers.items():
            if len(known) > size:
                self._write("answers", key, self._answers_path(key), json.dumps(known).encode())
                self._answers[key] = (known, len(known))

    # ------------------------------------------------------------ built prompt sets
    def prompts(self, identity: str, files: list[Path] | None, build):
        """The prompt set `build()` makes, read back where it was built before from the same
        `identity` (the generator's arguments) over the same `files` (hashed byte for byte) by this
        code: collection then tokenises nothing and reads no JSONL. `files` None: always built."""
        if files is None:
            return build()
        key = digest(code_version(), identity, *(file_sha256(f) for f in files))
        path = self.directory / "prompts" / key[:2] / f"{key}.npz"
        if self.mode in ("on", "read"):
            payload = self._read("prompts", key, path)
            ps = read_prompt_set(io.BytesIO(payload)) if payload is not None else None
            if ps is not None:
                return ps
            if payload is not None:
                self._reject("prompts", key, "not a readable prompt set")
        ps = build()
        if self.mode in ("on", "write"):
            payload = prompt_set_bytes(ps)
            if payload is not None:
                self._write("prompts", key, path, payload)
        return ps

    def _answers_path(self, key: str) -> Path:
        return self.directory / "answers" / key[:2] / f"{key}.json"

    def _python_source(self, body) -> str | None:
        name = body if isinstance(body, str) else body.name
        if name not in self._python:  # worked out once per session, however many claims use it
            self._python[name], why = python_source(name)
            if self._python[name] is None and why != "registered without cache=True":
                self._say(f"circuitcheck cache: python measure {name!r} is registered with cache=True but its "
                          f"values are computed anew each run: {why}")
        return self._python[name]

    def _prompts_hash(self, ps) -> str:
        if id(ps) not in self._prompt_sets:  # the set is kept with its hash, so its id is never reused
            self._prompt_sets[id(ps)] = (ps, prompt_set_hash(ps))
        return self._prompt_sets[id(ps)][1]


def prompt_set_bytes(ps) -> bytes | None:
    """A prompt set as the bytes of one .npz of arrays (no pickle: its metadata is a JSON string),
    only if they read back equal, field for field (`prompt_set_hash`); else None (store nothing)."""
    arrays, meta = {}, {"positions": list(ps.positions), "fields": {}, "extra": _jsonable(ps.extra)}
    for f in dataclasses.fields(ps):
        value = getattr(ps, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif f.name == "positions":
            arrays.update({f"positions/{k}": v for k, v in value.items()})
        elif f.name == "fields":
            meta["fields"] = {k: v.tolist() for k, v in value.items()}
        elif f.name != "extra":
            meta[f.name] = value
    buffer = io.BytesIO()
    try:
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    except (TypeError, ValueError):  # metadata JSON cannot hold: built again next time
        return None
    back = read_prompt_set(io.BytesIO(buffer.getvalue()))
    return buffer.getvalue() if back is not None and prompt_set_hash(back) == prompt_set_hash(ps) else None


def read_prompt_set(source):
    """A prompt set `prompt_set_bytes` made (a path or a file object), or None (not one)."""
    from ..prompts import PromptSet

    try:
        with np.load(source, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(str(arrays.pop("meta")))
        positions = {k: arrays.pop(f"positions/{k}") for k in meta.pop("positions")}
        fields = {k: np.array(v, dtype=object) for k, v in meta.pop("fields").items()}
        return PromptSet(positions=positions, fields=fields, extra=_unjsonable(meta.pop("extra")), **meta, **arrays)
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile):
        return None


def _jsonable(extra: dict) -> dict:
    """A prompt set's `extra` as JSON: paths are tagged so that they read back as paths."""
    return {k: {"path": str(v)} if isinstance(v, Path) else v for k, v in extra.items()}


def _unjsonable(extra: dict) -> dict:
    return {k: Path(v["path"]) if isinstance(v, dict) and set(v) == {"path"} else v for k, v in extra.items()}


def python_source(name: str) -> tuple[str | None, str]:
    """The hash a `python:` measure's values are keyed by, when it was registered with `cache=True`:
    every source file and plain value its function reaches (language/code_hash.py), and why not
    (None) otherwise. A registered function may call anything (files, state it keeps), which the
    cache cannot see: only its author can promise that, so values are never read back by default."""
    from ..language import registry

    try:
        reg = registry.measure(name)
    except registry.NotRegistered:
        return None, "not registered"
    return reg.code_key() if reg.cache else (None, "registered without cache=True")


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _data_hash(d) -> str:
    """An array by dtype, shape and bytes; a number or name by its repr."""
    if isinstance(d, np.ndarray):
        a = np.ascontiguousarray(d)
        return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()
    return repr(d)


def prompt_set_hash(ps) -> str:
    """Every field of a prompt set, byte for byte (new fields are covered as they are added)."""
    h = hashlib.sha256()
    for f in dataclasses.fields(ps):
        _update(h, f.name, getattr(ps, f.name))
    return h.hexdigest()


def _update(h, name: str, value) -> None:
    h.update(f"\0{name}:{type(value).__name__}:".encode())
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            _update(h, f"{name}.{k}", value[k])
    elif isinstance(value, np.ndarray) and value.dtype != object:
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(value, np.ndarray):  # per-prompt metadata
        h.update(json.dumps(value.tolist(), default=repr).encode())
    else:
        h.update(json.dumps(value, sort_keys=True, default=repr).encode())


_CODE: list[str] = []


def code_version() -> str:
    """circuitcheck's version and source hash, with the versions of the libraries that compute values."""
    if not _CODE:
        from importlib import metadata

        h = hashlib.sha256()
        for path in sorted(PACKAGE.rglob("*.py")):
            h.update(path.relative_to(PACKAGE).as_posix().encode())
            h.update(path.read_bytes())
        versions = []
        for dist in ("circuitcheck", "torch", "transformer_lens", "numpy"):
            try:
                versions.append(f"{dist}={metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                versions.append(f"{dist}=?")
        _CODE.append(" ".join(versions) + " source=" + h.hexdigest())
    return _CODE[0]


def model_fingerprint(source) -> str | None:
    """sha256 over the files a model is built from, or None when it is not built from files
    (a factory runs Python; a hub name lives outside the project)."""
    files = model_files(source)
    if files is None:
        return None
    parts = [f"{source.kind}:{source.config or ''}"]
    parts += [f"{p.name}:{file_sha256(p)}" for p in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def model_files(source) -> list[Path] | None:
    from .. import models

    if source.kind == "zoo":
        d = models.ZOO_DIR / source.ref
        return [d / "config.json", d / "model.safetensors"]
    if source.kind == "native":
        files = [] if source.config else [Path(source.ref)]
        return files + ([Path(source.weights)] if source.weights else [])
    if source.kind == "hf" and Path(source.ref).is_dir():
        return sorted(p for p in Path(source.ref).iterdir() if p.is_file())
    return None


