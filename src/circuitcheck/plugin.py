"""The pytest plugin: a thin adapter from hypothesis files to pytest items.

`*.hyp.yaml` files collect into one item per claim; items ask the session for their result.
Collection reads YAML and numpy only; torch is imported when the first claim runs.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def _not_rewritten() -> None:
    """pytest rewrites the asserts of every module of a package that ships a plugin, and where no
    bytecode is written (PYTHONDONTWRITEBYTECODE) it parses and rewrites them all again on every
    run: 0.2-0.4 s of a cached rerun of `pytest hypotheses/`. circuitcheck's asserts are internal
    invariants, not test assertions, so the modules below are imported plainly. pytest has no
    public switch for this (PYTEST_DONT_REWRITE in a docstring still parses the module); where its
    internals differ, nothing changes but the speed."""
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if type(finder).__name__ == "AssertionRewritingHook" and isinstance(marked, set):
            marked.discard(__name__.split(".")[0])


_not_rewritten()  # before the rest of circuitcheck is imported

from .files import loader as H  # noqa: E402
from .files import ini, paths  # noqa: E402
from .interventions import KINDS as INTERVENTIONS  # noqa: E402
from .judge.verdict import INCONCLUSIVE, PASS, RECORDED  # noqa: E402
from .measures import KINDS as MEASURES  # noqa: E402
from .models import ModelUnavailable, override  # noqa: E402
from .report import regression  # noqa: E402
from .report import table as report  # noqa: E402
from .report.baseline import BaselineError  # noqa: E402
from .session import Session, add_flags, flag_specs, options_from_flags  # noqa: E402

SESSION = pytest.StashKey[Session]()
RUN = pytest.StashKey["regression.Run"]()
FINISHED = pytest.StashKey[list]()  # what writing the reports said, for the terminal summary
CLAIMS: list[dict] = []  # each claim's numbers, gathered from reports (they also arrive from xdist workers)
RECORDS: list[dict] = []  # each claim's JSON record (report_json), gathered the same way
KINDS = (*MEASURES, *INTERVENTIONS, "quantified", "sweep")


def pytest_addoption(parser):
    add_flags(parser.getgroup("circuitcheck", "circuit claims in hypothesis files (*.hyp.yaml)").addoption)
    for flag, spec in flag_specs():  # each flag as an ini key too; the command line wins (files/ini.py)
        parser.addini(ini.key_of(flag), f"{spec.get('help', flag)} [ini form of {flag}]", type=ini.ini_type(spec),
                      default=None)


def _apply_ini(config) -> None:
    """`cc_*` keys of the ini file into the options the command line left unset."""
    import os
    import shlex

    argv = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
            *config.getini("addopts")]
    keys = {ini.key_of(flag): config.getini(ini.key_of(flag)) for flag, _ in flag_specs()}
    try:
        ini.apply(flag_specs(), config.option, argv, keys, str(config.inipath or "ini"))
    except ini.IniError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config):
    for k in KINDS:
        config.addinivalue_line("markers", f"{k}: circuitcheck claims of kind {k}")
    config.addinivalue_line("markers", "circuitcheck: every hypothesis-file claim")
    _apply_ini(config)
    options = options_from_flags(config.getoption, _cache_dir(config))
    paths.allow(config.getoption("cc_allow_path"))
    H.set_prompt_seed_shift(config.getoption("cc_prompt_seed"))
    config.stash[SESSION] = Session(options)
    try:
        config.stash[RUN] = regression.Run.from_options(config.getoption)
        config.stash[RUN].root = str(config.rootpath)  # the JSON report's paths are relative to it, as node ids are
    except (override.OverrideError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from None
    CLAIMS.clear()
    RECORDS.clear()


def _cache_dir(config) -> str | None:
    """The value cache's folder in pytest's cache; None without pytest's cache (`-p no:cacheprovider`,
    as in CI) or where it cannot be made (a file in its place, a read-only checkout): the cache is a
    helper, and the run goes on without it, saying so once."""
    if getattr(config, "cache", None) is None:
        return None
    try:
        return str(config.cache.mkdir("circuitcheck"))
    except OSError as exc:
        from .runs.cache import CacheWarning

        config.issue_config_time_warning(CacheWarning(f"circuitcheck: no value cache in this run: "
                                                      f"{exc.strerror or exc}: {exc.filename or '.pytest_cache'}"), 2)
        return None


def pytest_collection_finish(session):
    # A --cc-model whose REF matches no collected file's model is a typo: running the files' own
    # models instead would pass on the wrong model. Stop before any claim runs.
    run = session.config.stash.get(RUN, None)
    typos = run.unmatched() if run is not None else []
    if typos:
        raise pytest.UsageError("\n".join(typos) + "\n  hint: REF is the model a file names (zoo:induction, "
                                "hf:gpt2, a native config path), as written in its `model:`")
    # What collection built (claim specs, prompt sets, the pydantic models) lives to the end of the
    # run: frozen, the cycle collector skips it. Measured on a cached rerun of hypotheses/, pytest's
    # two closing gc.collect() calls took 0.205 s and take 0.005 s. Only reference cycles among
    # these objects that become garbage later would stay in memory; plain references are freed.
    # Once per process: a pytest run inside this one (pytester) must not freeze the garbage of the
    # runs before it.
    if gc.get_freeze_count() == 0:
        gc.freeze()
    _warn_spread(session)


class SpreadWarning(UserWarning):
    """`-n N` without `--dist loadgroup`: each model's claims spread over the workers."""


def _warn_spread(session) -> None:
    """Under plain `-n N`, xdist hands a model's claims to every worker, and each loads the model and
    repeats the file's shared runs (a file's claims are judged together). Said once, by the first
    worker, only when hypothesis-file claims were collected."""
    worker = getattr(session.config, "workerinput", None)
    if worker is None or worker.get("workerid") != "gw0" or worker.get("workercount", 1) < 2:
        return
    if getattr(session.config.option, "loadgroup", False) or not any(isinstance(i, ClaimItem) for i in session.items):
        return
    import warnings

    warnings.warn(SpreadWarning(
        f"circuitcheck: -n {worker['workercount']} without --dist loadgroup spreads each model's claims over the "
        "workers, and every worker loads the model and repeats its file's runs; add --dist loadgroup to send the "
        "claims on one model to one worker (README, 'Running in parallel')"))


def pytest_collect_file(file_path: Path, parent):
    if file_path.name.endswith(".hyp.yaml"):
        return HypothesisFile.from_parent(parent, path=file_path)
    return None


class HypothesisFile(pytest.File):
    def collect(self):
        try:
            loaded = H.load(self.path, store=self.config.stash[SESSION].cache)
        except H.HypothesisError as err:
            # One broken file must not stop the other files' claims from running.
            self.config.option.continue_on_collection_errors = True
            raise self.CollectError(str(err)) from None
        except ModelUnavailable as exc:  # a hub model offline: its claims skip, as they would at run time
            yield from self._unavailable(exc)
            return
        except Exception as exc:  # a case the loader does not check yet: still this file's error only
            self.config.option.continue_on_collection_errors = True
            raise self.CollectError(f"{self.path}: {H.unexpected('reading this hypothesis file', exc)}") from None
        model = _mark_name(loaded.model_source.ref)
        self.config.addinivalue_line("markers", f"{model}: claims on model {loaded.model_source.describe()}")
        for mark in {m for lc in loaded.claims for m in lc.claim.marks}:  # so that --strict-markers accepts them
            self.config.addinivalue_line("markers", f"{mark}: a mark hypothesis files give their claims (marks:)")
        group = _group(self.config, loaded)
        try:
            variants = self.config.stash[RUN].variants(loaded)
        except H.HypothesisError as err:
            self.config.option.continue_on_collection_errors = True
            raise self.CollectError(str(err)) from None
        for checkpoint, run_on in variants:
            key = (loaded.path, checkpoint) if checkpoint else loaded.path
            self.config.stash[SESSION].add(run_on, key)
            for lc in loaded.claims:
                name = f"{lc.claim.id}[{checkpoint}]" if checkpoint else lc.claim.id
                nodeid = f"{self.nodeid}::{name}@{group}" if group else None
                item = ClaimItem.from_parent(self, name=name, loaded=run_on, line=lc.line, key=key,
                                             claim_id=lc.claim.id, nodeid=nodeid)
                item.extra_keyword_matches.add(loaded.model_source.ref)  # `-k max-of-list` selects by model
                for mark in {"circuitcheck", model, *_kinds(lc.claim), *lc.claim.marks}:
                    item.add_marker(mark)
                yield item


    def _unavailable(self, exc: ModelUnavailable):
        """One item per claim the file names (read from its YAML alone), each skipping with the reason."""
        tree = H.read_yaml(self.path)
        claims = tree.get("claims") if isinstance(tree, dict) else None
        for i, claim in enumerate(claims if isinstance(claims, list) else []):
            name = str(claim.get("id", f"claim-{i}")) if isinstance(claim, dict) else f"claim-{i}"
            item = ClaimItem.from_parent(self, name=name, loaded=None, key=self.path,
                                         line=H.locate(tree, ("claims", i)) or 1)
            item.unavailable = exc
            item.add_marker("circuitcheck")
            yield item


class Progress:
    """What a run is doing, when it takes more than a few seconds: a line as each file's shared work
    starts (which file of how many, an ETA from the claims measured so far, `ETA unknown` before the
    first file is done), a line before each model is loaded, and, every few seconds of shared work,
    the planned runs done out of all planned (runs whose values the value cache has are not made, so
    a cached rerun ends below the count). Only on a terminal, not under -q nor in a CI log (no tty),
    nor on pytest-xdist workers (they cannot write to it)."""

    AFTER = 3.0  # seconds into a run before a line is worth printing
    EVERY = 5.0  # seconds between two lines counting runs

    def __init__(self, terminal, items):
        import time

        self.terminal, self.clock, self.start = terminal, time.perf_counter, time.perf_counter()
        self.files = list(dict.fromkeys(i.key for i in items if isinstance(i, ClaimItem)))
        self.claims = {k: sum(1 for i in items if isinstance(i, ClaimItem) and i.key == k) for k in self.files}
        self.counted = None  # when the last line counting runs was written

    def starting(self, item) -> None:
        elapsed = self.clock() - self.start
        index = self.files.index(item.key) if item.key in self.files else len(self.files)
        if elapsed < self.AFTER and index > 0:
            return
        done = sum(self.claims[k] for k in self.files[:index])
        left = sum(self.claims[k] for k in self.files[index:])
        model = item.loaded.model_source.describe() if item.loaded is not None else "?"
        where = item.key[0].name + f"[{item.key[1]}]" if isinstance(item.key, tuple) else Path(item.key).name
        self._write(f"circuitcheck: {where}: measuring {self.claims.get(item.key, 0)} claims on {model} "
                    f"(file {index + 1} of {len(self.files)}, {_seconds(elapsed)} in; {_eta(elapsed, done, left)})")

    def loading(self, model: str) -> None:
        """Before a model is loaded (a hub model's first load can take minutes)."""
        self._write(f"circuitcheck: loading {model} ({_seconds(self.clock() - self.start)} in)")

    def ran(self, done: int, planned: int) -> None:
        """A planned run is done: said when the run is past AFTER and the last count EVERY seconds back."""
        now = self.clock()
        elapsed = now - self.start
        if elapsed < self.AFTER or (self.counted is not None and now - self.counted < self.EVERY):
            return
        self.counted = now
        self._write(f"circuitcheck: {done} of {planned} planned runs done "
                    f"({_seconds(elapsed)} in; {_eta(elapsed, done, planned - done)})")

    def _write(self, line: str) -> None:
        """To the terminal, not into the current claim's captured output."""
        config = getattr(self.terminal, "config", None)
        capture = config.pluginmanager.get_plugin("capturemanager") if config is not None else None
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            self.terminal.write_line(line)


def _eta(elapsed: float, done: int, left: int) -> str:
    """The time `left` more steps take at the pace of the `done` ones so far."""
    return f"about {_seconds(elapsed / done * left)} left" if done and elapsed > 0 else "ETA unknown"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


PROGRESS = pytest.StashKey[Progress]()


def pytest_collection_modifyitems(session, config, items):
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    quiet = config.get_verbosity() < 0 or hasattr(config, "workerinput") or terminal is None
    if not quiet and terminal.isatty() and any(isinstance(i, ClaimItem) for i in items):
        config.stash[PROGRESS] = config.stash[SESSION].progress = Progress(terminal, items)


def _group(config, loaded) -> str | None:
    """Under `-n N --dist loadgroup`, the model's group name, for every claim on the same model to
    run on one worker (which loads it and runs the shared passes once).

    pytest-xdist reads the group from the node id's `@group` suffix, which it adds itself for
    items marked `xdist_group`; pytest 9.2 keeps node ids where xdist 3.8 no longer reaches them,
    so the claims carry the suffix from the start."""
    if not getattr(config.option, "loadgroup", False):  # set on pytest-xdist workers under --dist loadgroup
        return None
    source = loaded.model_source
    if source.kind == "zoo":
        return _mark_name(source.ref)
    return f"{_mark_name(source.ref)}_{hashlib.sha1(source.describe().encode()).hexdigest()[:10]}"


def _mark_name(ref: str) -> str:
    return "model_" + "".join(ch if ch.isalnum() else "_" for ch in Path(ref).name)


def _kinds(claim) -> list[str]:
    kinds = [claim.measure.kind] + [iv.kind for iv in claim.under]
    return kinds + (["quantified"] if claim.for_ or claim.ranks else []) + (["sweep"] if claim.sweep else [])


class NotSpecific(Exception):
    """A passing claim whose mutants pass too (`--cc-specificity`)."""


class ClaimFailed(Exception):
    def __init__(self, result):
        self.result = result


class ClaimItem(pytest.Item):
    def __init__(self, *, loaded, line, key=None, claim_id=None, **kw):
        super().__init__(**kw)
        self.loaded, self.line = loaded, line
        self.key, self.claim_id = key or loaded.path, claim_id or self.name
        self.cc_record = None
        self.unavailable: ModelUnavailable | None = None
        self.measured_here = 0.0  # seconds of claims measured in this item's setup

    def setup(self):
        if self.loaded is None:  # collected without a model (HypothesisFile._unavailable): nothing to measure
            return
        # A file's claims are judged together (Holm), so the first claim's setup measures them all:
        # its setup carries the shared work, and each claim's call is charged its own measuring.
        session = self.config.stash[SESSION]
        before = set(session.seconds)
        progress = self.config.stash.get(PROGRESS, None)
        if progress is not None and self.key not in session.results:
            progress.starting(self)
        try:
            session.result(self.key, self.claim_id)
        except ModelUnavailable as exc:
            self.unavailable = exc
        self.measured_here = sum(session.seconds[k] for k in set(session.seconds) - before)

    def runtest(self):
        if self.unavailable is not None:
            if self.config.getoption("cc_require_models"):
                raise ClaimFailed(None) from self.unavailable
            self._skip(f"model not available: {self.unavailable}")
        result = self.config.stash[SESSION].result(self.key, self.claim_id)
        run = self.config.stash[RUN]
        self.cc_record = run.record(result, self.config.stash[SESSION], self.key)
        self.user_properties.extend(regression.properties(result))
        if result.verdict == RECORDED:  # `expect: record`: passes, and its numbers print at the end
            self.user_properties.append(("recorded", report.describe(result)))
            return
        if result.verdict == PASS and not run.drift_fails(result):
            if self.config.getoption("cc_specificity"):
                self._check_specificity()
            return
        if result.verdict == INCONCLUSIVE and self.config.getoption("cc_inconclusive") == "skip":
            self._skip(f"inconclusive: {report.why(result.main)}")
        raise ClaimFailed(result)

    def _check_specificity(self):
        from .judge import specificity

        index = [lc.claim.id for lc in self.loaded.claims].index(self.claim_id)
        rep = specificity.check_claim(self.config.stash[SESSION], self.loaded, index, key=self.key)
        if rep.survivors:
            raise NotSpecific("\n".join(rep.lines()))

    def _skip(self, reason: str):
        raise pytest.skip.Exception(reason, _use_item_location=True)  # reported at the claim's YAML line

    def charge(self, rep) -> None:
        """Durations per claim: the setup keeps the shared work, each call gets its claim's own time."""
        own = self.config.stash[SESSION].seconds.get((self.key, self.claim_id))
        if rep.when == "setup":
            rep.duration = max(rep.duration - self.measured_here, 0.0)
        elif rep.when == "call" and own is not None:
            rep.duration += own

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, NotSpecific):
            return f"{self.path}:{self.line}: claim {self.name!r} passes but does not single out what it names\n" \
                   + str(excinfo.value)
        if isinstance(excinfo.value, ClaimFailed):
            if excinfo.value.result is None:
                return f"model not available and --cc-require-models is set: {excinfo.value.__cause__}"
            result = excinfo.value.result
            text = regression.describe(result)
            if result.traceback and self._full_trace():
                text += "\n\n" + result.traceback.rstrip()
            return ClaimRepr(text, headline(result))
        if isinstance(excinfo.value, BaselineError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _full_trace(self) -> bool:
        """Whether a claim's error shows its traceback: when asked for, as pytest shows its own (-v, --tb=long)."""
        cfg = self.config
        return cfg.getoption("tbstyle", "auto") == "long" or cfg.getoption("fulltrace", False) or cfg.get_verbosity() > 0

    def reportinfo(self):
        return self.path, self.line - 1, f"claim {self.name}"


@dataclass
class Crash:
    message: str  # what pytest's short summary and JUnit XML's message show


class ClaimRepr:
    """A failed claim as pytest shows it: the full description, and the verdict with its numbers
    for the one-line short summary (`FAILED ...::claim - FAIL 0.31 [0.29, 0.32] expected ≥ 0.6`)."""

    def __init__(self, text: str, summary: str):
        self.text, self.reprcrash = text, Crash(summary)

    def toterminal(self, tw) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:  # how pytest-xdist sends it to the controller: the summary line first
        return f"{self.reprcrash.message}\n{self.text}"


def headline(result) -> str:
    """`FAIL 0.31 [0.29, 0.32] expected ≥ 0.6`: a claim's verdict and numbers in one line."""
    if result.error or result.main is None:
        return f"{result.verdict.upper()}: {(result.error or 'no cases').splitlines()[0]}"
    c = result.main
    case = f" (case {c.label} of {len(result.cases)})" if len(result.cases) > 1 else ""
    return (f"{result.verdict.upper()} {c.estimate.statistic:.4g} {report.interval(c)} "
            f"expected {result.expected}{case}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each claim's own durations; its full record rides on its report (plain JSON values), so it
    reaches the controller under pytest-xdist."""
    outcome = yield
    if isinstance(item, ClaimItem):
        rep = outcome.get_result()
        item.charge(rep)
        if call.when == "call" and item.cc_record is not None:
            rep.cc_record = item.cc_record


def pytest_runtest_logreport(report):
    """Collect each claim's numbers from its report, so the table works under pytest-xdist too."""
    props = dict(report.user_properties)
    if report.when == "call" and "claim" in props:
        CLAIMS.append(props)
        if getattr(report, "cc_record", None) is not None:
            RECORDS.append(report.cc_record)
    elif report.when == "???" and ".hyp.yaml::" in report.nodeid:  # pytest-xdist: the worker running it died
        from .report.json_report import died

        record = died(report.nodeid, str(report.longrepr).strip().splitlines()[0])
        if not any(r["file"] == record["file"] and r["id"] == record["id"] and r["checkpoint"] == record["checkpoint"]
                   for r in RECORDS):  # xdist retries it on each replacement worker: one record
            RECORDS.append(record)


HYPOTHESIS_PLUGIN = "hypothesispytest"  # the Hypothesis library's pytest plugin, by its entry point


def _drop_idle_hypothesis_summary(config) -> None:
    """The Hypothesis library's pytest plugin (6.170) imports the whole library in its terminal
    summary, to list observability files, even when no test used it: measured, 0.8 s at the end of
    every run in a project where it is installed (this one turns the plugin off in pyproject's
    addopts; a researcher's project would not know to). When the library was never imported in this process
    and no report carries its statistics or failing examples (pytest-xdist workers' reports would),
    that summary has nothing to say, so the plugin is dropped before it runs. It never is while the
    user asked for its statistics."""
    plugin = config.pluginmanager.get_plugin(HYPOTHESIS_PLUGIN)
    if plugin is None or "hypothesis" in sys.modules or config.getoption("hypothesis_show_statistics", False):
        return
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    reports = [r for rs in (terminal.stats.values() if terminal else ()) for r in rs]
    if not any(k.startswith("_hypothesis") for r in reports for k in getattr(r, "__dict__", {})):
        config.pluginmanager.unregister(plugin)


def _table_width(terminal) -> int | None:
    """The terminal's width (pytest's, which follows $COLUMNS); None, the whole rows, in a log that is no
    terminal and asked for no width (a CI log keeps every character)."""
    import os

    if not terminal.isatty() and "COLUMNS" not in os.environ:
        return None
    return terminal.config.get_terminal_writer().fullwidth - 1


def pytest_terminal_summary(terminalreporter, config):
    if CLAIMS:
        terminalreporter.section("circuitcheck claims")
        for line in report.table(CLAIMS, width=_table_width(terminalreporter)):
            terminalreporter.write_line(line)
        recorded = [p["recorded"] for p in CLAIMS if "recorded" in p]
        if recorded:
            terminalreporter.section("circuitcheck recorded values (expect: record, not judged)")
            for text in recorded:
                terminalreporter.write_line(text)
        CLAIMS.clear()
    for line in config.stash.get(FINISHED, []):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session):
    """Write the reports and baselines once every claim's record is in (under pytest-xdist, on the
    controller; workers hold only their own). A report that cannot be written fails the run, as it
    makes `circuitcheck check` exit 1; the terminal summary, printed after this, says why."""
    config = session.config
    _drop_idle_hypothesis_summary(config)
    if RUN not in config.stash or hasattr(config, "workerinput"):
        return
    run = config.stash[RUN]
    config.stash[FINISHED] = run.finish(RECORDS)
    RECORDS.clear()
    if run.write_failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
