"""`circuitcheck`: run hypothesis files without pytest, write the JSON Schema, train the zoo.

    circuitcheck check hypotheses/max_of_list.hyp.yaml [--cc-model REF=SOURCE] [--cc-json PATH] ...
    circuitcheck diff A.json B.json
    circuitcheck measure hypotheses/max_of_list.hyp.yaml     (numbers, no verdicts)
    circuitcheck specificity hypotheses/                      (a folder: every *.hyp.yaml in it)
    circuitcheck schema [PATH]                                (no PATH: print it)
    circuitcheck circuit convert IN OUT --from auto-circuit|acdc|circuitkit|eap [--layers N --heads H]
    circuitcheck circuit export FILE.hyp.yaml NAME OUT        (a named circuit as EAP-IG JSON)
    circuitcheck zoo train NAME|all --out DIR
    circuitcheck --version
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCHEMA = Path(__file__).parent / "schema" / "hypothesis.schema.json"


def schema_text() -> str:
    from .files.spec import json_schema

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("circuitcheck")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """The command line; Ctrl-C stops it with exit 2 (as pytest's), a line and no traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("circuitcheck: interrupted", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="circuitcheck")
    ap.add_argument("--version", action="version", version=f"circuitcheck {version()}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="run hypothesis files and print one line per claim")
    sp = sub.add_parser("specificity", help="re-judge each passing claim with its heads swapped and its "
                        "direction flipped; list the mutants that still pass")
    m = sub.add_parser("measure", help="measure every claim of hypothesis files without judging it: value, "
                       "interval and every case (as `expect: record`)")
    for p in (c, sp, m):
        p.add_argument("files", nargs="+", help="hypothesis files, or folders: every *.hyp.yaml in them")
    from .session import MEASURE_FLAGS, SPECIFICITY_FLAGS, add_flags

    add_flags(c.add_argument)  # the plugin's flags, the same names and meanings
    add_flags(m.add_argument, MEASURE_FLAGS)
    add_flags(sp.add_argument, SPECIFICITY_FLAGS)
    d = sub.add_parser("diff", help="compare two --cc-json reports: verdict flips and drift (exit 1 on a flip)")
    d.add_argument("a", help="the reference report")
    d.add_argument("b", help="the new report")
    d.add_argument("--cc-drift", choices=("warn", "fail"), default="warn", help="whether drift alone exits 1")
    s = sub.add_parser("schema", help="print the hypothesis-file JSON Schema (for editors), or write it to PATH")
    s.add_argument("path", nargs="?", help="write here instead of printing")
    ci = sub.add_parser("circuit", help="convert circuit files to EAP-IG JSON, or export a file's circuit")
    csub = ci.add_subparsers(dest="circuit_cmd", required=True)
    cv = csub.add_parser("convert", help="a circuit file of auto-circuit, ACDC, CircuitKit or EAP-IG names -> "
                         "EAP-IG JSON")
    cv.add_argument("src")
    cv.add_argument("out")
    cv.add_argument("--from", dest="form", required=True, choices=("auto-circuit", "acdc", "circuitkit", "eap"))
    cv.add_argument("--layers", type=int, help="the model's layers (another tool's file does not say)")
    cv.add_argument("--heads", type=int, help="the model's heads per layer")
    cv.add_argument("--attn-only", action="store_true", help="the model has no MLPs")
    ex = csub.add_parser("export", help="a circuit named in a hypothesis file -> EAP-IG JSON for its model")
    ex.add_argument("file")
    ex.add_argument("name")
    ex.add_argument("out")
    sub.add_parser("zoo", help="train or compile the zoo models (see `circuitcheck zoo train -h`, `zoo compile -h`)",
                   add_help=False)
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "zoo":
        from .zoo.__main__ import main as zoo_main

        return zoo_main(rest)
    if rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.cmd == "schema":
        if args.path is None:
            sys.stdout.write(schema_text())
        else:
            Path(args.path).write_text(schema_text())
            print(f"wrote {args.path}", file=sys.stderr)
        return 0
    if args.cmd == "diff":
        return _diff(args)
    if args.cmd == "circuit":
        return _circuit(args)

    from .files.loader import set_prompt_seed_shift
    from .files.paths import allow

    args.argv = ["circuitcheck", *(sys.argv[1:] if argv is None else argv)]  # for the JSON report's run header
    if not _with_ini(args, args.argv[1:]):
        return 2
    allow(args.cc_allow_path)
    set_prompt_seed_shift(args.cc_prompt_seed)
    if args.cmd == "check":
        return _check_regression(args)
    if args.cmd == "specificity":
        return _specificity(args)
    return _measure(args)


def _with_ini(args, argv) -> bool:
    """The `cc_*` keys of the ini file pytest would read for these files, for the flags the command line
    does not give (as under pytest); False, said on stderr, when a key's value is bad."""
    import os

    from .files import ini
    from .session import flag_specs

    try:
        folder = Path(os.path.commonpath([str(Path(f).resolve()) for f in args.files]))
        path, keys = ini.find(folder if folder.is_dir() else folder.parent)
        ini.apply(flag_specs(), args, argv, keys, str(path))
    except ini.IniError as exc:
        print(f"circuitcheck: {exc}", file=sys.stderr)
        return False
    return True


def _circuit(args) -> int:
    from .circuits import CircuitError, Shape
    from .files import circuit_files
    from .files.loader import HypothesisError

    try:
        if args.circuit_cmd == "convert":
            if (args.layers is None) != (args.heads is None):
                raise CircuitError("give both --layers and --heads")
            shape = None if args.layers is None else Shape(args.layers, args.heads, not args.attn_only)
            text = circuit_files.convert(Path(args.src), args.form, shape)
        else:
            text = _export(Path(args.file), args.name)
    except (CircuitError, HypothesisError) as exc:
        print(f"{getattr(args, 'src', None) or args.file}: {exc}" + (f"\n  hint: {exc.hint}" if getattr(exc, "hint", "")
                                                                      and isinstance(exc, CircuitError) else ""),
              file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        print(f"{getattr(args, 'src', None) or args.file}: cannot be read: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _export(hyp: Path, name: str) -> str:
    """The EAP-IG JSON of the circuit `name` of a hypothesis file, for the file's model."""
    from .circuits import CircuitError, Shape, eap
    from .files.loader import load

    loaded = load(hyp)
    if name not in loaded.circuits:
        raise CircuitError(f"names no circuit {name!r}", "its circuits: " + (", ".join(loaded.circuits) or "none"))
    d_mlp = loaded.sizes.get("d_mlp")
    return eap.dumps(loaded.circuits[name], Shape(loaded.n_layers, loaded.n_heads, d_mlp is not None, d_mlp))


def hypothesis_files(args) -> tuple[list[Path], list[str]]:
    """The files the arguments name (a folder: every *.hyp.yaml below it), and a message per bad one."""
    files, problems = [], []
    for arg in map(Path, args):
        if arg.is_dir():
            found = sorted(arg.rglob("*.hyp.yaml"))
            files += found
            if not found:
                problems.append(f"{arg}: no hypothesis files (*.hyp.yaml) in this folder")
        elif arg.exists() or arg.is_symlink():
            files.append(arg)  # not a regular file: the loader says so, with the file
        else:
            problems.append(f"{arg}: no such file or folder")
    return files, problems


CACHE_DIR = str(Path(".pytest_cache") / "d" / "circuitcheck")  # where pytest keeps the value cache


def _session_with(args, cache: str, required: bool = False, **options):
    """A session holding every file that loads; the others' errors go to stderr."""
    from .session import Options

    return _session_for(args, Options(cache=cache, cache_dir=CACHE_DIR, **options), required)


def _session_for(args, options, required: bool = False):
    """`required`: a file whose model is not on this machine fails the run (--cc-require-models)."""
    from .files.conftests import ConftestError, load_beside
    from .files.loader import HypothesisError, load
    from .models import ModelUnavailable
    from .session import Session

    session = Session(options)
    files, problems = hypothesis_files(args)
    for problem in problems:
        print(problem, file=sys.stderr)
    loaded, failed = [], bool(problems)
    for f in files:
        try:
            load_beside(f)  # registered models and measures, as pytest would load them
            loaded.append(load(f))
        except (HypothesisError, ConftestError) as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        except ModelUnavailable as exc:  # as under pytest: the file's claims skip (fail when models are required)
            print(f"{f}: {'failed (--cc-require-models)' if required else 'skipped'}: model not available: {exc}",
                  file=sys.stderr)
            failed = failed or required
            continue
        session.add(loaded[-1])
    return session, loaded, failed


def _run_all(args, record: bool = False):
    """Start the run and run every file it names: (run, session, [(key, claims, or None where the
    file could not run)], whether any failed), or None when the run cannot start."""
    started = _start(args, record=record)
    if started is None:
        return None
    run, session, files, failed = started
    ran = [(key, claims) for f in files for key, claims in _run_file(args, run, session, f)]
    return run, session, ran, failed or any(claims is None for _, claims in ran)


def _measure(args) -> int:
    """`measure`: every case of every claim with its value and interval, no verdict."""
    from .report import table as report

    started = _run_all(args, record=True)
    if started is None:
        return 2
    run, _, ran, failed = started
    results = [r for _, claims in ran for r in claims or []]
    print("\n\n".join(report.describe(r) for r in results))
    _unmatched(run)
    return 1 if failed or any(r.error for r in results) else 0


def _specificity(args) -> int:
    from .judge import specificity

    started = _run_all(args)
    if started is None:
        return 2
    run, session, ran, failed = started
    reports = [r for key, claims in ran if claims for r in specificity.check(session, session.files[key], key)]
    for r in reports:
        print("\n".join(r.lines()))
    _unmatched(run)
    flagged = [r for r in reports if r.survivors]
    print(f"\n{len(flagged)} of {len(reports)} claims do not single out what they name" if flagged
          else f"\nevery passing claim of {len(reports)} fails when its heads are swapped or its direction flipped")
    return 1 if failed or flagged else 0


def _start(args, **options):
    """(regression run, session, files, whether a file failed to load) under the flags the command
    takes (the plugin's defaults for the others); None where the flags cannot run (said on stderr)."""
    import dataclasses

    from .models.override import OverrideError
    from .report import regression
    from .session import flag_defaults, options_from_flags

    given, default = vars(args), flag_defaults()
    get = lambda name: given[name] if name in given else default[name]  # noqa: E731
    try:
        run = regression.Run.from_options(get)
    except (OverrideError, regression.ReportPathError) as exc:
        print(exc, file=sys.stderr)
        return None
    run.argv = args.argv
    session = _session_for([], dataclasses.replace(options_from_flags(get, CACHE_DIR), **options))[0]
    _, files, failed = _session_with(args.files, "off", get("cc_require_models"))  # checked here; run on `session`
    typos = run.unmatched_by(files)
    if typos:  # running the file's own model instead would pass on the wrong model
        print("\n".join(typos), file=sys.stderr)
        return None
    return run, session, files, failed


def _unmatched(run) -> None:
    for line in run.unmatched():
        print(line, file=sys.stderr)



def _check_regression(args) -> int:
    """`check`: the plugin's flags, every claim's line, --cc-model overrides and `checkpoints:`,
    baselines and the JSON/HTML reports; a message, never a traceback, for what cannot run."""
    from .report import regression, table as report
    from .report.baseline import BaselineError

    started = _start(args)
    if started is None:
        return 2
    run, session, files, failed = started
    results, records, said = [], [], set()
    for f in files:
        for key, claims in _run_file(args, run, session, f):
            if claims is None:
                failed = True
                continue
            for r in claims:
                try:
                    records.append(run.record(r, session, key))
                except BaselineError as exc:  # that file's claims fail saying so; the other files still run
                    if str(exc) not in said:
                        print(exc, file=sys.stderr)
                    said.add(str(exc))
                    failed = True
                    continue
                results.append((key, r))
    import shutil

    # the terminal's width ($COLUMNS, else asked of it); whole rows where stdout is a pipe or a file, which
    # scripts and tests read (an inherited $COLUMNS must not cut them)
    width = shutil.get_terminal_size().columns - 1 if sys.stdout.isatty() else None
    print("\n".join(report.table([dict(regression.properties(r)) for _, r in results], width)))
    for line in run.finish(records):
        print(line)
    bad = [r for key, r in results if _fails(args, run, session, key, r)]
    if not results and not failed:
        print("no claims ran", file=sys.stderr)
    return 1 if failed or bad or run.write_failed else 0


def _run_file(args, run, session, f):
    """(key, results) for each model the file runs on; results None where that is an error (said on stderr)."""
    from .files.loader import HypothesisError
    from .models import ModelUnavailable

    try:
        variants = run.variants(f)
    except HypothesisError as err:
        print(err, file=sys.stderr)
        yield f.path, None
        return
    for checkpoint, run_on in variants:
        key = (f.path, checkpoint) if checkpoint else f.path
        session.add(run_on, key)
        try:
            yield key, [session.result(key, lc.claim.id) for lc in f.claims]
        except ModelUnavailable as exc:  # as under pytest: skipped with the reason, or failed when required
            what = "failed (--cc-require-models)" if args.cc_require_models else "skipped"
            print(f"{f.path}{f'[{checkpoint}]' if checkpoint else ''}: {len(f.claims)} claims {what}: "
                  f"model not available: {exc}", file=sys.stderr)
            yield key, None if args.cc_require_models else []


def _fails(args, run, session, key, r) -> bool:
    """Whether a claim fails the run, as under pytest: inconclusive per --cc-inconclusive, drift per
    --cc-drift, and with --cc-specificity a passing claim whose mutants pass too (said on stderr)."""
    from .judge import specificity

    if r.verdict == "inconclusive":
        return args.cc_inconclusive == "fail"
    if r.verdict not in ("pass", "recorded") or run.drift_fails(r):
        return True
    if args.cc_specificity and r.verdict == "pass":
        loaded = session.files[key]
        index = [lc.claim.id for lc in loaded.claims].index(r.claim_id)
        rep = specificity.check_claim(session, loaded, index, key=key)
        if rep.survivors:
            print("\n".join(rep.lines()), file=sys.stderr)
            return True
    return False


def _diff(args) -> int:
    from .report.json_report import ReportError, diff_lines, read

    try:
        lines, flipped, drifted = diff_lines(read(args.a), read(args.b))
    except ReportError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 1 if flipped or (drifted and args.cc_drift == "fail") else 0


if __name__ == "__main__":
    sys.exit(main())
