"""The flags the pytest plugin and `circuitcheck check` share, declared once for both.

`add(add_option)` takes pytest's `addoption` or argparse's `add_argument` (the same signature);
`options(get)` builds the session's `Options` from either (`get("cc_device")`).
"""
from __future__ import annotations

from .cache import MODES


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def add(add_option) -> None:
    """Every run flag: how claims run and are judged, then the regression flags (regression.py)."""
    from .regression import add_options

    add_option("--cc-inconclusive", choices=("fail", "skip"), default="fail",
               help="what an inconclusive claim does (default: fail)")
    add_option("--cc-require-models", action="store_true",
               help="fail, instead of skip, claims whose model is not available (for CI)")
    add_option("--cc-device", default="cpu", help="torch device where a file names none (default: cpu)")
    add_option("--cc-dtype", default="float32", help="model dtype where a file names none (default: float32)")
    add_option("--cc-allow-path", action="append", default=[], metavar="DIR",
               help="also read files that hypothesis files name from DIR (repeatable; default: only "
                    "each file's own folder tree)")
    add_option("--cc-batch-size", type=positive_int, default=1024, help="prompts per forward pass (default: 1024)")
    add_option("--cc-cache", choices=MODES, default="on",
               help="per-prompt values kept in pytest's cache (.pytest_cache/d/circuitcheck) for reruns: on (read "
                    "and write, default), read, write (recompute and store), off")
    add_option("--cc-specificity", action="store_true",
               help="fail a passing claim that still passes with a named head swapped for another head of "
                    "its layer, or with its direction flipped (see `circuitcheck specificity`)")
    add_option("--cc-family", choices=("file", "run"), default="file",
               help="Holm's multiple-testing family: the claims of each file (default), or every claim of the run")
    add_option("--cc-dump-values", metavar="DIR", default=None,
               help="write each claim case's per-prompt values to DIR/<file>/<claim>[.<case>].json")
    add_options(add_option)


def options(get, cache_dir: str | None):
    """The session options the flags give (`get`: option name -> value)."""
    from .session import Options

    return Options(get("cc_device"), get("cc_dtype"), get("cc_batch_size"), get("cc_cache"), cache_dir,
                   get("cc_family"), dump_values=get("cc_dump_values"))
