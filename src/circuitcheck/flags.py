"""The flags the pytest plugin and `circuitcheck check` share, declared once for both.

`add(add_option)` takes pytest's `addoption` or argparse's `add_argument` (the same signature);
`options(get)` builds the session's `Options` from either (`get("cc_device")`). `circuitcheck
measure` and `specificity` take the flags that mean something to them (`MEASURE`, `SPECIFICITY`).
"""
from __future__ import annotations

from .cache import MODES
from .placement import STRATEGIES


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


# How and on what claims run: what every command that runs claims takes.
RUN = ("--cc-model", "--cc-device", "--cc-device-map", "--cc-dtype", "--cc-batch-size", "--cc-cache", "--cc-allow-path",
       "--cc-require-models")
MEASURE = RUN + ("--cc-dump-values",)  # numbers, no verdicts: nothing judged, reported or compared
SPECIFICITY = RUN + ("--cc-family",)  # mutants are judged at their claim's level, which the family sets


def add(add_option, only: tuple[str, ...] | None = None) -> None:
    """Every run flag: how claims run and are judged, then the regression flags (regression.py);
    with `only`, those flags alone."""
    from .regression import add_options

    if only is not None:
        add_option = _only(add_option, only)

    add_option("--cc-inconclusive", choices=("fail", "skip"), default="fail",
               help="what an inconclusive claim does (default: fail)")
    add_option("--cc-require-models", action="store_true",
               help="fail, instead of skip, claims whose model is not available (for CI)")
    add_option("--cc-device", default="cpu", help="torch device where a file names none (default: cpu)")
    add_option("--cc-device-map", choices=STRATEGIES, default=None,
               help="place Hugging Face models (hf:, zoo:ioi) over the devices with accelerate where a file names "
                    "no device or device_map (docs/scaling.md); other models load on --cc-device")
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
    if only is not None:
        add_option.check()


def _only(add_option, names: tuple[str, ...]):
    """`add_option` for the flags in `names` only; `check()` says which of them no flag is."""
    seen = set()

    def add(name, **kw):
        seen.add(name)
        if name in names:
            add_option(name, **kw)

    def check():
        unknown = set(names) - seen
        if unknown:
            raise ValueError(f"no such flag: {', '.join(sorted(unknown))}")

    add.check = check
    return add


def defaults() -> dict:
    """Every flag's default by its option name (`cc_device`: "cpu"), for commands taking some only."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add(parser.add_argument)
    return vars(parser.parse_args([]))


def options(get, cache_dir: str | None):
    """The session options the flags give (`get`: option name -> value)."""
    from .session import Options

    return Options(get("cc_device"), get("cc_dtype"), get("cc_batch_size"), get("cc_cache"), cache_dir,
                   get("cc_family"), dump_values=get("cc_dump_values"), device_map=get("cc_device_map"))
