"""Files a hypothesis file names: inside its own folder tree, and regular files, checked before reading.

A hypothesis file is shared like a data file, so the paths in it (a native config or weights, a
JSONL prompt file) must not reach elsewhere on the reader's machine: `../../secrets`, an absolute
path, or a symlink out of the folder is refused unless a folder is allowed explicitly
(`--cc-allow-path DIR`, repeatable, for pytest and `circuitcheck check`; `allow()` in a notebook).
A path must name a regular file: a directory, a device such as /dev/zero, or a pipe is refused,
since reading one could hang or fill memory.
"""
from __future__ import annotations

from pathlib import Path

ALLOWED: list[Path] = []  # folders outside a file's own tree that the user allowed


class PathRefused(ValueError):
    """A path a hypothesis file names that circuitcheck will not read; `hint` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def allow(folders) -> None:
    """Allow files under `folders` (relative to the working directory) besides each file's own tree."""
    if isinstance(folders, (str, Path)):  # one folder, not the characters of its name
        folders = [folders]
    ALLOWED[:] = [Path(f).resolve() for f in folders]


allow_paths = allow  # `circuitcheck.allow_paths(...)`, the name the package exports


def resolve(hypothesis_file: Path, name, what: str) -> Path:
    """The regular file `name` means, relative to `hypothesis_file`'s folder, or `PathRefused`."""
    path = inside(hypothesis_file, name, what)
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "a device, pipe or socket"
        raise PathRefused(f"the {what} {name!r} is {kind}, not a regular file", "name a file")
    return path


def inside(hypothesis_file: Path, name, what: str) -> Path:
    """The existing path `name` means (a file or a folder), inside the allowed folders, or `PathRefused`."""
    if not isinstance(name, str) or not name.strip():
        raise PathRefused(f"the {what} path is {'empty' if isinstance(name, str) else repr(name)}",
                          "write a file name, relative to the hypothesis file")
    base = Path(hypothesis_file).resolve().parent
    path = (base / name).resolve()  # symlinks and `..` resolved: where the bytes would come from
    roots = [base, *ALLOWED]
    if not any(path.is_relative_to(root) for root in roots):
        raise PathRefused(f"the {what} {name!r} is {path}, outside the hypothesis file's folder {base}",
                          "keep data files in the hypothesis file's folder or below it, "
                          "or allow the folder with --cc-allow-path DIR")
    if not path.exists():
        raise PathRefused(f"the {what} {name!r} does not exist (looked for {path})",
                          "paths are relative to the hypothesis file")
    return path
