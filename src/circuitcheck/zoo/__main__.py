"""`circuitcheck zoo train NAME|all --out DIR [--steps N] [--seed S]` (also `python -m circuitcheck.zoo`),
and `circuitcheck zoo compile tracr-NAME|all --out DIR [--hypotheses DIR]` (tracr models; needs the
`tracr` extra).

Training writes only where `--out` says: never into the installed package by default. To
regenerate a shipped model, name its folder: `--out src/circuitcheck/zoo/models/NAME`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from .tracr_models import PROGRAMS
    from .train import SPECS

    SPECS = {**SPECS, "ioi": None}  # zoo:ioi trains through circuitcheck.zoo.ioi (a Hugging Face model)
    ap = argparse.ArgumentParser(prog="python -m circuitcheck.zoo", description="Train the zoo models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a zoo model from scratch (CPU, seeded)")
    t.add_argument("name", help=f"one of: {', '.join(SPECS)}, or 'all'")
    t.add_argument("--steps", type=int, default=None, help="override the number of steps (smoke runs)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (with 'all': DIR/NAME for each); nothing is written anywhere else")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=None, metavar="N",
                   help="also write DIR/step-N/ every N steps and at the last (needs --out): a checkpoint series")
    t.add_argument("--no-measure", action="store_true", help="skip the 'Measured behaviour' section")
    t.add_argument("--quiet", action="store_true")
    c = sub.add_parser("compile", help="compile a tracr program into a zoo model (needs: pip install -e '.[tracr]')")
    c.add_argument("name", help=f"one of: {', '.join(PROGRAMS)}, or 'all'")
    c.add_argument("--out", required=True, metavar="DIR", help="output folder (with 'all': DIR/NAME for each)")
    c.add_argument("--hypotheses", metavar="DIR", default=None,
                   help="also write the rows (DIR/data/NAME.jsonl) and circuit files (DIR/circuits/NAME*.json)")
    sub.add_parser("list", help="list the models this module can train or compile")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        print("\n".join([*SPECS, *PROGRAMS]))
        return 0
    if args.cmd == "compile":
        return _compile(ap, args)
    names = list(SPECS) if args.name == "all" else [args.name]
    for name in names:
        if name not in SPECS:
            ap.error(f"unknown model {name!r}; known: {', '.join(SPECS)}, all")
    if args.save_every is not None and args.save_every < 1:
        ap.error("--save-every N needs N >= 1")
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps {args.steps}: training needs at least one step (leave --steps out for the model's own)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        ap.error(f"--out {out}: is a file; name a folder (it is made if missing)")
    try:
        return _train(ap, args, names)
    except KeyboardInterrupt:  # every file is renamed into place whole: what was there is intact
        print(f"\ninterrupted: the model being trained was not written to {out}", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:
        print(f"circuitcheck zoo train: {exc}", file=sys.stderr)
        return 1


def _train(ap, args, names) -> int:
    from .train import train

    for name in names:
        out = Path(args.out) / name if args.name == "all" else Path(args.out)
        if name == "ioi":
            from . import ioi

            if args.save_every is not None:
                ap.error("--save-every is not supported for ioi yet (only the TransformerLens-native zoo models)")
            m = ioi.train(steps=args.steps, out=out, seed=args.seed, measure=not args.no_measure, verbose=not args.quiet)
        else:
            m = train(name, out=out, steps=args.steps, seed=args.seed, measure=not args.no_measure,
                      verbose=not args.quiet, save_every=args.save_every)
        summary = {k: m[k] for k in ("name", "steps", "final_train_loss", "train_time_s", "held_out", "out")}
        print(json.dumps(summary), flush=True)
    return 0


def _compile(ap, args) -> int:
    from .tracr_models import PROGRAMS, write

    names = list(PROGRAMS) if args.name == "all" else [args.name]
    if any(name not in PROGRAMS for name in names):
        ap.error(f"unknown tracr model {args.name!r}; known: {', '.join(PROGRAMS)}, all")
    for name in names:
        out = Path(args.out) / name if args.name == "all" else Path(args.out)
        meta = write(name, out, Path(args.hypotheses) if args.hypotheses else None)
        print(json.dumps({"name": name, "out": str(out), "sha256": meta["sha256"],
                          "residual_max_abs_diff": meta["residual_max_abs_diff"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
