"""Regression checks for the pytest plugin and `circuitcheck check` alike: `--cc-model` overrides
and checkpoint series, baselines, the JSON and HTML reports.

`Run` holds one run's options; the plugin and the CLI call `variants` while loading files,
`record` for each result, and `finish` once with every record (under pytest-xdist, on the
controller, where the records arrive on the test reports).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import baseline, table as report, json_report as report_json
from .drift import ladder
from ..models import override


def add_options(add) -> None:
    """The regression flags, for pytest's `addoption` and argparse's `add_argument` alike."""
    add("--cc-model", action="append", default=[], metavar="REF=SOURCE",
        help="run the claims on model REF (zoo:NAME, hf:NAME, a file's native config/weights path) on SOURCE "
             "instead: zoo:/hf:/factory:NAME, a model directory or weights file; a,b,c or a glob runs a "
             "checkpoint series (repeatable)")
    add("--cc-json", default=None, metavar="PATH", help="write every claim and case as JSON (circuitcheck-report/1)")
    add("--cc-html", default=None, metavar="PATH", help="write a self-contained HTML report")
    add("--cc-update-baselines", action="store_true",
        help="write each hypothesis file's results to __baselines__/<name>.json beside it")
    add("--cc-drift", choices=("warn", "fail", "require"), default="warn",
        help="whether drift from the baseline alone fails a claim (default: warn); require: also a claim "
             "without a baseline entry fails")
    add("--cc-drift-alpha", type=_level, default=baseline.DRIFT_ALPHA, metavar="A",
        help="the run's drift level: the chance that an unchanged model drifts anywhere in the run, spread "
             "over the baseline cases compared (Bonferroni; default 0.05)")


SETTINGS = ("cc_device", "cc_dtype", "cc_runner", "cc_device_map", "cc_prompt_seed", "cc_family", "cc_batch_size")


def _settings(get) -> dict:
    """The run-wide options the JSON report's header names (`prompt_seed`: the shift of every seed)."""
    out = {}
    for name in SETTINGS:
        try:
            out[name.removeprefix("cc_")] = get(name)
        except (KeyError, ValueError, AttributeError):  # a command that does not take the flag
            continue
    return out


def _level(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a level between 0 and 1")
    return value


INPUT_SUFFIXES = (".hyp.yaml", ".safetensors", ".pt", ".pth", ".jsonl")


class ReportPathError(ValueError):
    """A report path that cannot be written, found before any claim runs."""


def check_writable(flag: str, path: Path, example: str) -> None:
    """Refuse, before any model runs, a report path that cannot be written: a folder, a place below
    a file, a folder without write permission. What only the write finds (a full disk) still fails
    the run at its end (`Run.write_failed`)."""
    if path.is_dir():
        raise ReportPathError(f"{flag} {path}: is a folder; name a file in it, e.g. {path / example}")
    if path.name.endswith(INPUT_SUFFIXES):  # refused here too, where no file is loaded (the xdist controller)
        raise ReportPathError(f"{flag} {path}: names an input (a hypothesis, model or prompt file), which the "
                              f"report would overwrite; name a file of its own, e.g. {path.parent / example}")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ReportPathError(f"{flag} {path}: the file is not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the folders the write would create
        parent = parent.parent
    if not parent.is_dir():
        raise ReportPathError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ReportPathError(f"{flag} {path}: cannot create files in {parent} (no permission)")


@dataclass
class Run:
    overrides: list[override.Override] = field(default_factory=list)
    json_path: str | None = None
    html_path: str | None = None
    update: bool = False
    drift: str = "warn"
    baselines: baseline.Baselines = field(default_factory=baseline.Baselines)
    matched: set = field(default_factory=set)
    loaded_here: bool = False  # False on the xdist controller, which loads no files
    write_failed: bool = False  # a report that could not be written (said in `finish`'s lines)
    claim_ids: dict = field(default_factory=dict)  # file -> its claims' ids, as loaded here
    drift_alpha: float = baseline.DRIFT_ALPHA
    _family: int | None = None  # baseline cases of the run's files: the drift test's multiplicity
    settings: dict = field(default_factory=dict)  # the run-wide options, for the JSON report's run header
    started: float = field(default_factory=time.time)
    argv: list | None = None  # the command line, where it is not sys.argv (`circuitcheck check` called in-process)
    root: str | None = None  # what the JSON report's paths are relative to: pytest's rootdir (None: the working directory)
    refused: dict = field(default_factory=dict)  # report path -> why it is not written (an input of the run)

    @classmethod
    def from_options(cls, get) -> "Run":
        overrides = [override.parse(t) for t in get("cc_model") or []]
        run = cls(overrides, get("cc_json"), get("cc_html"), bool(get("cc_update_baselines")), get("cc_drift"),
                  drift_alpha=get("cc_drift_alpha") or baseline.DRIFT_ALPHA, settings=_settings(get))
        for flag, path, example in (("--cc-json", run.json_path, "report.json"), ("--cc-html", run.html_path, "report.html")):
            if path:
                check_writable(flag, Path(path), example)
        if run.json_path and run.html_path and Path(run.json_path).resolve() == Path(run.html_path).resolve():
            raise ReportPathError(f"--cc-json and --cc-html both name {run.json_path}: one report would replace "
                                  "the other; give each its own file")
        if run.update and any(o.series for o in overrides):
            raise override.OverrideError("--cc-update-baselines writes one baseline per file: "
                                         "give --cc-model one checkpoint, not a series")
        return run

    def variants(self, loaded) -> list[tuple[str, object]]:
        """(checkpoint name, file) for each model the file runs on; a `HypothesisError` where its own
        `checkpoints:` meet --cc-update-baselines (one baseline per file)."""
        self.loaded_here = True
        self.claim_ids[str(loaded.path)] = [lc.claim.id for lc in loaded.claims]
        self._refuse_inputs(loaded)
        o = override.find(self.overrides, loaded.model_source)
        if o is not None:
            self.matched.add(o.ref)
        elif self.update and loaded.checkpoints:
            from ..files.loader import HypothesisError

            raise HypothesisError(loaded.path, loaded.checkpoints_line, "checkpoints",
                                  "--cc-update-baselines writes one baseline per file, and this file runs on "
                                  f"{len(loaded.checkpoints)} checkpoints",
                                  "write it from one checkpoint: --cc-model REF=PATH (REF: the file's model, e.g. zoo:induction)")
        return override.variants(loaded, self.overrides)

    def outputs(self, loaded) -> list[tuple[str, Path]]:
        """(what, path) for each file this run writes that concerns `loaded`."""
        out = [(flag, Path(p)) for flag, p in (("--cc-json", self.json_path), ("--cc-html", self.html_path)) if p]
        return out + ([("--cc-update-baselines", baseline.path_for(loaded.path))] if self.update else [])

    def _refuse_inputs(self, loaded) -> None:
        """A report or baseline path that is a file this hypothesis file reads (itself, its model's
        files, its prompt data) or another output of the run: the file's error at collection, and
        that output is not written at the end, so that no input is overwritten."""
        from ..files.loader import HypothesisError

        reads = input_files(loaded)
        outputs = self.outputs(loaded)
        for flag, path in outputs:
            clash = reads.get(path.resolve()) or next(
                (f"the path {other} also writes" for other, p in outputs if other != flag and p.resolve() == path.resolve()), None)
            if clash:
                self.refused[str(path)] = f"it is {clash}"
                raise HypothesisError(loaded.path, 1, "", f"{flag} {path} is {clash}: writing it would overwrite it",
                                      "write reports to their own files (e.g. --cc-json report.json)")

    def record(self, result, session=None, key=None) -> dict:
        """The result's JSON record, compared with its baseline; with --cc-html, an attention example."""
        if not self.update:
            self.baselines.attach(result, self.case_level())
            # --cc-drift=require: a claim with no baseline entry cannot pass unseen (describe says why)
            result.baseline_required = self.drift == "require" and result.baseline is None and not result.error
        rec = report_json.record(result)
        if self.update:  # a case with no per-prompt values keeps its interval at a ladder of levels
            for case, made in zip(rec.get("cases") or [], result.cases):
                if "values" not in case and getattr(made, "bound", None) is not None:
                    case["ladder"] = ladder(made.bound)
        if self.html_path and session is not None and not result.error:
            rec["attention"] = attention_example(session, key, result.claim_id)
        return rec

    def case_level(self) -> float:
        """Each baseline case's drift level: the run's level over the baseline cases of its files."""
        if self._family is None:
            self._family = self.baselines.cases(self.claim_ids)
        return self.drift_alpha / max(1, self._family)

    def drift_fails(self, result) -> bool:
        if getattr(result, "baseline_required", False):
            return True
        return self.drift in ("fail", "require") and result.baseline is not None and result.baseline.drift

    # ------------------------------------------------------------ end of the run
    def unmatched(self) -> list[str]:
        """A line for each --cc-model that no file's model matched (where files were loaded)."""
        if not self.loaded_here:
            return []
        return [f"--cc-model {o.ref}=...: no file's model is {o.ref}" for o in self.overrides if o.ref not in self.matched]

    def unmatched_by(self, loaded_files) -> list[str]:
        """What `unmatched` says, for files read but not yet run (the command line checks first)."""
        found = {o.ref for f in loaded_files if (o := override.find(self.overrides, f.model_source))}
        models = sorted({f.model_source.describe() for f in loaded_files})
        return [f"--cc-model {o.ref}=...: no file's model is {o.ref} (the files' models: {', '.join(models)})"
                for o in self.overrides if o.ref not in found] if loaded_files else []

    def finish(self, records: list[dict]) -> list[str]:
        """Write the reports and baselines; the summary lines for the terminal."""
        lines = self.unmatched()
        if any(r.get("checkpoint") for r in records):
            from .series import onset_lines, table

            lines += ["", "claims across checkpoints:"] + table(records)
            onsets = onset_lines(records)
            if onsets:
                lines += ["", "onset (simultaneous bands over the checkpoints, not the first passing column):"] + onsets
        unused, missing = self._unused(records)
        if self.update:
            lines += self._write_baselines(records)
        else:
            lines += _baseline_summary(records, unused, missing)
        if self.json_path:
            run = report_json.header(records, self.settings, self.started, self.argv, self.root)
            lines.append(self._write("JSON report", self.json_path, report_json.write, records, unused, missing, run))
        if self.html_path:
            from . import html_report as report_html

            lines.append(self._write("HTML report", self.html_path, report_html.write, records))
            if any(r.get("attention") for r in records):
                from . import attention_export

                lines.append(self._write("attention patterns", str(attention_export.path_for(self.html_path)),
                                         attention_export.write, records, self.root or os.getcwd()))
        return lines

    def _write(self, what: str, path: str, write, *args) -> str:
        if str(path) in self.refused:
            self.write_failed = True
            return f"circuitcheck: did not write the {what} to {path}: {self.refused[str(path)]}"
        try:
            return f"circuitcheck: wrote {write(path, *args)}"
        except (OSError, ValueError) as exc:  # a folder, a full disk; a value JSON cannot hold: said, no traceback
            self.write_failed = True
            return f"circuitcheck: could not write the {what} to {path}: {getattr(exc, 'strerror', None) or exc}"

    def _unused(self, records) -> tuple[list[dict], list[dict]]:
        unused, missing = [], []
        files = _by_file(records)
        if self.drift == "warn" and not any(baseline.path_for(f).exists() for f in files):
            return [], []  # a run that uses no baselines hears nothing about them
        for f, recs in files.items():
            try:
                gone, lacking = baseline.unused(f, self._claim_ids(f, recs), sorted({r["id"] for r in recs}))
            except baseline.BaselineError:  # each claim of the file already failed saying so
                continue
            unused += [{"file": f, "claim": c} for c in gone]
            missing += [{"file": f, "claim": c} for c in lacking]
        return unused, missing

    def _write_baselines(self, records) -> list[str]:
        files = _by_file(records)
        a = self.drift_alpha / max(1, self.baselines.cases(list(files)))
        return [self._write_baseline(f, recs, a) for f, recs in files.items()]

    def _write_baseline(self, f, recs, a: float) -> str:
        """One file's baseline; a baseline that cannot be read or written is said, and the others are
        still written. An unreadable old baseline is replaced by this run's entries alone."""
        ids, note = self._claim_ids(f, recs), ""
        try:
            try:
                written = baseline.write(f, ids, recs, a)
            except baseline.BaselineError as exc:
                written, note = baseline.write(f, ids, recs, a, keep=False), f"; the old one was unreadable ({exc})"
        except OSError as exc:
            self.write_failed = True
            return f"circuitcheck: could not write the baseline {baseline.path_for(f)}: {exc.strerror or exc}"
        return f"circuitcheck: wrote baseline {written} ({len(recs)} claims){note}"

    def _claim_ids(self, path, ran: list[dict]) -> list[str]:
        """The file's claims (not only those that ran), as loaded in this process, else read again
        (the pytest-xdist controller loads no files)."""
        return self.claim_ids.get(str(path)) or _read_claim_ids(path, ran)


def input_files(loaded) -> dict[Path, str]:
    """The files a loaded hypothesis file reads, resolved: {path: what it is}."""
    from ..runs.cache import model_files

    found = {}
    for source in [loaded.model_source] + [c.source for c in loaded.checkpoints]:
        for f in model_files(source) or []:
            found[Path(f).resolve()] = f"a model file of {loaded.path.name}"
    for ps in loaded.prompt_sets.values():
        if isinstance(ps.extra.get("path"), Path):
            found[ps.extra["path"].resolve()] = f"a prompt file of {loaded.path.name}"
    found[Path(loaded.path).resolve()] = "a hypothesis file of this run"
    return found


def _by_file(records) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["file"], []).append(r)
    return out


def _read_claim_ids(path, ran: list[dict]) -> list[str]:
    from ..files.loader import load

    try:
        return [lc.claim.id for lc in load(Path(path)).claims]
    except Exception:  # the file's own error was reported when it was collected
        return [r["id"] for r in ran]


def _baseline_summary(records, unused, missing) -> list[str]:
    compared = [r for r in records if r.get("baseline")]
    if not compared and not unused and not missing:
        return []
    flips = [(r, _flips(r["baseline"])) for r in compared if _flips(r["baseline"])]
    drifted = [r for r in compared if r["baseline"]["drift"]]
    lines = ["", f"circuitcheck baselines: {len(compared)} claims compared, {len(flips)} with verdict flips, "
             f"{len(drifted)} drifted"]
    for r, text in flips:
        lines.append(f"  flip   {_name(r)}: {text}")
    for r in drifted:
        changes = ", ".join(f"{c['label'] or 'value'} Δ{c['change']:+.3g}" for c in r["baseline"]["cases"] if c["drift"])
        lines.append(f"  drift  {_name(r)}: {changes} ({r['baseline']['tolerance']})")
    for r in compared:
        for role, v in r["baseline"]["roles"].items():
            lines.append(f"  role   {_name(r)}: ${role} was {v['baseline']}, now {v['now']}")
    for u in unused:
        lines.append(f"  unused baseline {Path(u['file']).name}::{u['claim']}: the claim is gone from the file")
    for m in missing:
        lines.append(f"  no baseline for {Path(m['file']).name}::{m['claim']} (write one with --cc-update-baselines)")
    return lines


def _flips(cmp: dict) -> str:
    """The claim's verdict flip, then its cases' (`pass→fail; [L0H1] pass→inconclusive`)."""
    cases = [f"[{c['label']}] {c['flip']}" for c in cmp["cases"] if c["flip"] and c["label"]]
    return "; ".join(([cmp["flip"]] if cmp["flip"] else []) + cases)


def _name(r: dict) -> str:
    return f"{Path(r['file']).name}::{r['id']}" + (f"[{r['checkpoint']}]" if r.get("checkpoint") else "")


# ------------------------------------------------------------ per-result text
def properties(result) -> list[tuple[str, object]]:
    """`report.properties`, with the checkpoint in the claim's name and the baseline cell when compared."""
    props = report.properties(result)
    if result.checkpoint:
        props = [(k, f"{v}[{result.checkpoint}]" if k == "claim" else v) for k, v in props]
    if result.fingerprint.get("weights_sha256"):
        props.append(("weights_sha256", result.fingerprint["weights_sha256"]))
    if result.baseline is not None:
        props.append(("baseline", result.baseline.cell()))
    return props


def describe(result) -> str:
    text = report.describe(result)
    if result.roles:
        text += "\n  roles: " + ", ".join(f"${k} = {v}" for k, v in result.roles.items())
    if result.baseline is not None:
        text += "\n" + "\n".join(result.baseline.lines())
        if result.verdict == "pass" and result.baseline.drift:
            text += "\n  drift from the baseline fails this claim (--cc-drift=fail)"
    elif getattr(result, "baseline_required", False):
        text += ("\n  no baseline entry for this claim, and --cc-drift=require fails it: write one with "
                 "--cc-update-baselines (and review it), or run with --cc-drift=fail")
    return text


# ------------------------------------------------------------ the HTML report's attention example
EXAMPLE_POSITIONS = 24  # the heatmap shows at most the last 24 positions
EXAMPLE_PROMPTS = 64  # ... averaged over at most 64 prompts of the first prompt's length


def head_of(case) -> str | None:
    """The head a case is about: its measure's head, else the first head its interventions name."""
    from ..language.names import HEAD

    body = getattr(case.measure, case.measure.kind, None)
    for name in ("head", "component"):
        h = getattr(body, name, None)
        if isinstance(h, str) and HEAD.match(h):
            return h
    for iv in case.under:
        heads = getattr(iv.body, "heads", None) or [getattr(iv.body, "head", None)]
        if heads and isinstance(heads[0], str) and HEAD.match(heads[0]):
            return heads[0]
    return None


def attention_example(session, key, claim_id: str) -> dict | None:
    """{head, tokens, pattern, n}: the head's attention averaged over up to EXAMPLE_PROMPTS of the
    claim's prompts that share the first prompt's length (one prompt alone can mislead), last
    EXAMPLE_POSITIONS positions; a position is labelled by its token where every averaged prompt has
    the same token there, else by its name in the prompt set or its index."""
    import torch

    from ..files import loader as H
    from .. import models
    from ..language.names import parse_head, pattern_name

    loaded = session.files[key]
    lc = next(lc for lc in loaded.claims if lc.claim.id == claim_id)
    head = head_of(lc.cases[0]) if lc.cases else None
    if head is None:
        return None
    case, (layer, h) = lc.cases[0], parse_head(head)
    model = session.model(loaded)
    ps = H.prompt_set(loaded, case.prompts_key, case.prompts)
    same = np.flatnonzero(ps.length == ps.length[0])[:EXAMPLE_PROMPTS]
    start = int(ps.start[0])  # padding is on the same side for every row
    ids = ps.tokens[same, start:start + int(ps.length[0])][:, -EXAMPLE_POSITIONS:]
    kept = {}

    def keep(x, hook):
        kept["pattern"] = x[:, h].detach().float().mean(0).cpu()

    with torch.inference_mode():
        tokens = torch.as_tensor(ids, device=models.input_device(model))
        model.run_with_hooks(tokens, fwd_hooks=[(pattern_name(layer), keep)])
    labels = _labels(model, ps, same, ids, start + int(ps.length[0]) - ids.shape[1])
    return {"head": head, "tokens": labels, "n": len(same),
            "pattern": [[round(float(v), 4) for v in row] for row in kept["pattern"]]}


def _labels(model, ps, rows, ids, offset: int) -> list[str]:
    tok = getattr(model, "tokenizer", None)
    names = {}
    for name, where in (ps.positions or {}).items():
        at = np.asarray(where)[rows]
        if len(set(at.tolist())) == 1:  # a named position at one index in every averaged prompt
            names.setdefault(int(at[0]) - offset, name)
    out = []
    for j in range(ids.shape[1]):
        column = set(ids[:, j].tolist())
        if len(column) == 1:
            i = int(ids[0, j])
            out.append(tok.convert_ids_to_tokens([i])[0] if tok is not None else str(i))
        else:
            out.append(names.get(j, f"#{offset + j}"))
    return out
