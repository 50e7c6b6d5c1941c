"""`circuitcheck`: run hypothesis files without pytest, write the JSON Schema, train the zoo.

    circuitcheck check hypotheses/max_of_list.hyp.yaml
    circuitcheck schema [PATH]
    circuitcheck zoo train NAME|all
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cache import MODES

SCHEMA = Path(__file__).parent / "schema" / "hypothesis.schema.json"


def schema_text() -> str:
    from .spec import json_schema

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="circuitcheck")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="run hypothesis files and print one line per claim")
    c.add_argument("files", nargs="+")
    c.add_argument("--cc-cache", choices=MODES, default="on",
                   help="per-prompt values kept in .pytest_cache/d/circuitcheck for reruns (as under pytest)")
    c.add_argument("--cc-allow-path", action="append", default=[], metavar="DIR",
                   help="also read files that hypothesis files name from DIR (repeatable, as under pytest)")
    s = sub.add_parser("schema", help="write the hypothesis-file JSON Schema (for editors)")
    s.add_argument("path", nargs="?", default=str(SCHEMA))
    sub.add_parser("zoo", help="train the zoo models (see `circuitcheck zoo -h`)", add_help=False)
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "zoo":
        from .zoo.__main__ import main as zoo_main

        return zoo_main(rest)
    if rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.cmd == "schema":
        Path(args.path).write_text(schema_text())
        print(f"wrote {args.path}")
        return 0
    from .paths import allow

    allow(args.cc_allow_path)
    return _check(args.files, args.cc_cache)


def _check(files, cache: str = "off") -> int:
    from . import report
    from .conftests import ConftestError, load_beside
    from .hypothesis_file import HypothesisError, load
    from .session import Options, Session

    session = Session(Options(cache=cache, cache_dir=str(Path(".pytest_cache") / "d" / "circuitcheck")))
    results, failed = [], False
    for f in files:
        try:
            load_beside(f)  # registered models and measures, as pytest would load them
            loaded = load(f)
        except (HypothesisError, ConftestError) as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        session.add(loaded)
        results += [session.result(loaded.path, lc.claim.id) for lc in loaded.claims]
    print("\n".join(report.table([dict(report.properties(r)) for r in results])))
    return 1 if failed or any(r.verdict != "pass" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
