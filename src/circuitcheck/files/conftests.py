"""conftest.py files for `circuitcheck check`, loaded the way pytest loads them.

Registered models and measures usually live in a conftest.py beside the hypothesis files. pytest
imports those itself; the command line, which runs without pytest, imports the conftest.py files
in the file's folder and every folder above it up to the project root (the nearest folder with a
pytest.ini, pyproject.toml, tox.ini, setup.cfg or setup.py, as pytest finds its rootdir), outermost
first, each once per process.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

ROOT_MARKERS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "setup.py")
_LOADED: set[Path] = set()


class ConftestError(Exception):
    """A conftest.py failed to import: the sentence names it and what it raised."""


def load_beside(path: Path) -> list[Path]:
    """Import the conftest.py files that pytest would load for `path`; return the ones imported now."""
    new = []
    for conftest in _candidates(Path(path).resolve().parent):
        if conftest not in _LOADED:
            _LOADED.add(conftest)
            _import(conftest)
            new.append(conftest)
    return new


def _candidates(folder: Path) -> list[Path]:
    chain = [folder]
    while not any((chain[-1] / m).is_file() for m in ROOT_MARKERS) and chain[-1].parent != chain[-1]:
        chain.append(chain[-1].parent)
    if not any((chain[-1] / m).is_file() for m in ROOT_MARKERS):
        chain = [folder]  # no project root above: only the file's own folder, as pytest's rootdir would be
    return [d / "conftest.py" for d in reversed(chain) if (d / "conftest.py").is_file()]


def _import(conftest: Path) -> None:
    name = "circuitcheck_conftest_" + hashlib.sha1(str(conftest).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, conftest)
    module = importlib.util.module_from_spec(spec)
    if str(conftest.parent) not in sys.path:  # pytest's default import mode: the folder goes on sys.path
        sys.path.insert(0, str(conftest.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a broken conftest is reported, not a reason to stop
        del sys.modules[name]
        raise ConftestError(f"{conftest}: importing it raised {type(exc).__name__}: {exc}") from None
