"""Files written whole or not at all: reports, baselines, cache entries and trained zoo models.

Each is written to a temporary name in its own folder and renamed into place once complete, so a
full disk, a crash or Ctrl-C half way leaves the file that was there before (last week's report)
and never a cut-short one that looks complete. The rename is atomic on one file system, which a
temporary name in the same folder guarantees. No fsync: what this guards against is a write that
fails, not a machine that loses power.

    write(path, text)                       text or bytes
    with replacing(path) as tmp:            anything that writes to a path (np.save, save_file)
        save_file(state, str(tmp))
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

_os_write = os.write  # one name for the single place bytes reach the disk (tests inject ENOSPC here)


class OutputError(ValueError):
    """An output of the run that would overwrite an input, or another output of the same run."""


@contextmanager
def replacing(path, suffix: str = ""):
    """A temporary path beside `path` to write; renamed onto `path` when the block ends without an
    exception, removed when it raises (what was at `path` stays). `suffix` keeps an extension that
    a writer insists on (np.save adds `.npy` to a name without it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write(path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write `data` to `path` whole, or leave `path` as it was and raise the OSError."""
    blob = data.encode(encoding) if isinstance(data, str) else data
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(blob)
            while view:
                view = view[_os_write(fd, view):]
        finally:
            os.close(fd)
    return Path(path)
