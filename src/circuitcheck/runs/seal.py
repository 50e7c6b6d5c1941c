"""Sealed cache entries: what the value cache writes carries an HMAC under a key kept outside the
cache directory, so an entry planted in `.pytest_cache/` (restored from shared CI storage, copied
from another machine, edited by hand) is never read back as if this machine had computed it.

The key is, in this order:
- `CIRCUITCHECK_CACHE_KEY` (an environment variable): the secret itself, for CI jobs that share a
  cache between runners on purpose (store it as a CI secret, never in the repository);
- the file `$XDG_CONFIG_HOME/circuitcheck/cache-key` (default `~/.config/circuitcheck/`): 32 random
  bytes made on first use, readable by its owner only (0600). A key file that others may read or
  write, or that is not a regular file of this user, is not trusted;
- else (no home to write to, or a key file that is not trusted) a key for this process only: the
  cache is then written and read within the run, and never read back by a later one.

An entry's HMAC covers its kind, its name (the hash it is stored under) and its bytes, so an entry
moved to another name does not authenticate either.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

MAGIC = b"circuitcheck-sealed-1\n"
ENV = "CIRCUITCHECK_CACHE_KEY"
_KEY: list[tuple[bytes, str]] = []  # (key, where it came from), found once per process


class Unsealed(ValueError):
    """An entry that does not authenticate: not sealed, cut short, or sealed under another key."""


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "circuitcheck" / "cache-key"


def key() -> tuple[bytes, str]:
    """The key entries are sealed with, and a sentence saying where it comes from."""
    if not _KEY:
        _KEY.append(_find_key())
    return _KEY[0]


def forget_key() -> None:
    """Find the key again on next use (tests that change the environment)."""
    _KEY.clear()


def _find_key() -> tuple[bytes, str]:
    if os.environ.get(ENV):
        return os.environ[ENV].encode(), f"the {ENV} environment variable"
    path = key_path()
    try:
        return _read_or_make(path), str(path)
    except (OSError, RuntimeError) as exc:
        return secrets.token_bytes(32), (f"a key for this run only ({exc}): the cache is not read back by later "
                                         f"runs; set {ENV}, or make {path} writable")


def _read_or_make(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:  # O_EXCL: of two processes starting at once (xdist workers), one makes it, the other reads it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return _read_trusted(path)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32).hex().encode())
    return _read_trusted(path)


def _read_trusted(path: Path) -> bytes:
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise RuntimeError(f"{path} is not a regular file")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise RuntimeError(f"{path} belongs to another user")
    if st.st_mode & 0o077:
        raise RuntimeError(f"{path} can be read or written by others (chmod 600 it)")
    data = path.read_bytes().strip()
    if len(data) < 32:
        raise RuntimeError(f"{path} holds {len(data)} bytes, too few for a key (delete it to make a new one)")
    return data


def _mac(kind: str, name: str, payload: bytes) -> bytes:
    h = hmac.new(key()[0], digestmod=hashlib.sha256)
    h.update(f"{kind}\0{name}\0".encode())
    h.update(payload)
    return h.hexdigest().encode()


def seal(kind: str, name: str, payload: bytes) -> bytes:
    """The bytes to store for `payload` under `name`."""
    return MAGIC + _mac(kind, name, payload) + b"\n" + payload


def unseal(kind: str, name: str, data: bytes) -> bytes:
    """The payload of a sealed entry, or Unsealed when it does not authenticate."""
    if not data.startswith(MAGIC):
        raise Unsealed("not written by circuitcheck's cache (no seal)")
    mac, payload = data[len(MAGIC):len(MAGIC) + 64], data[len(MAGIC) + 65:]
    if not hmac.compare_digest(mac, _mac(kind, name, payload)):
        raise Unsealed("its seal does not match (written under another key, moved, or changed)")
    return payload
