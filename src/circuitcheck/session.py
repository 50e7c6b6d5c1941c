"""A session ties the stages together: files are added to a plan, their values come from the runs
(`runs.values`), claims are judged (`judge.claims`), and each result learns what it ran on. The
library's entry point, as `plugin.py` is pytest's.

    >>> from circuitcheck import check
    >>> for r in check("hypotheses/max_of_list.hyp.yaml"):
    ...     print(r.claim_id, r.verdict, r.main.estimate.statistic)
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import models
from .files import loader as H
from .files.spec import DTYPES, processing_flags
from .judge.claims import Judge
from .judge.verdict import Result
from .models.placement import STRATEGIES
RUNNERS = ("transformer_lens", "nnsight", "nnsight:local", "nnsight:ndif")
from .runs.cache import MODES
from .runs.plan import Plan
from .runs.values import Values


@dataclass(frozen=True)
class Options:
    """Run-wide defaults; a file's own `model: {device, dtype}` wins over them."""

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1024
    cache: str = "off"  # value cache for reruns: on | read | write | off (see runs/cache.py)
    cache_dir: str | None = None
    family: str = "file"  # Holm's family: the claims of each file, or of the whole run ("run")
    record: bool = False  # every claim as `expect: record`: numbers, no verdicts (`circuitcheck measure`)
    dump_values: str | None = None  # a directory for each case's per-prompt values (report/dump.py)
    device_map: str | None = None  # accelerate's placement of Hugging Face models where a file names none
    runner: str | None = None  # what computes the runs where a file names none: transformer_lens | nnsight[:local|:ndif]


# ------------------------------------------------------------ the flags that set the options
# Declared once for the pytest plugin and `circuitcheck check`: `add_flags(add_option)` takes pytest's
# `addoption` or argparse's `add_argument` (the same signature); `options_from_flags(get)` builds
# `Options` from either. `circuitcheck measure` and `specificity` take the flags that mean something
# to them (`MEASURE_FLAGS`, `SPECIFICITY_FLAGS`).
def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def run_device(text: str) -> str:
    """--cc-device: a device this machine has (`meta` holds no numbers, `disk` is no device to run
    on), refused as a usage error before any file is read."""
    import argparse

    from .models.placement import unusable

    wrong = unusable(text)
    if wrong is not None:
        raise argparse.ArgumentTypeError(f"{wrong[0].replace('this file asks for', 'asked for')}; {wrong[1].split(', or remove')[0]}")
    return text


# How and on what claims run: what every command that runs claims takes.
RUN_FLAGS = ("--cc-model", "--cc-device", "--cc-device-map", "--cc-dtype", "--cc-batch-size", "--cc-cache",
             "--cc-allow-path", "--cc-require-models", "--cc-runner", "--cc-prompt-seed")
MEASURE_FLAGS = RUN_FLAGS + ("--cc-dump-values",)  # numbers, no verdicts: nothing judged, reported or compared
SPECIFICITY_FLAGS = RUN_FLAGS + ("--cc-family",)  # mutants are judged at their claim's level, which the family sets


def add_flags(add_option, only: tuple[str, ...] | None = None) -> None:
    """Every run flag: how claims run and are judged, then the regression flags (regression.py);
    with `only`, those flags alone."""
    from .report.regression import add_options

    if only is not None:
        add_option = _only(add_option, only)

    add_option("--cc-inconclusive", choices=("fail", "skip"), default="fail",
               help="what an inconclusive claim does (default: fail)")
    add_option("--cc-require-models", action="store_true",
               help="fail, instead of skip, claims whose model is not available (for CI)")
    add_option("--cc-device", default="cpu", type=run_device,
               help="torch device where a file names none: cpu, cuda, cuda:N or mps (default: cpu)")
    add_option("--cc-device-map", choices=STRATEGIES, default=None,
               help="place Hugging Face models (hf:, zoo:ioi) over the devices with accelerate where a file names "
                    "no device or device_map (docs/scaling.md); other models load on --cc-device")
    add_option("--cc-runner", choices=RUNNERS, default=None,
               help="what computes the runs where a file names no `model: {runner: ...}`: transformer_lens "
                    "(default), nnsight (Hugging Face models, docs/reference.md#runners), nnsight:local (through "
                    "NDIF's serialisation, offline), nnsight:ndif (NDIF's hosted models; needs NDIF_API_KEY)")
    add_option("--cc-dtype", default="float32", choices=DTYPES,
               help="model dtype where a file names none (default: float32)")
    add_option("--cc-allow-path", action="append", default=[], metavar="DIR",
               help="also read files that hypothesis files name from DIR (repeatable; default: only "
                    "each file's own folder tree)")
    add_option("--cc-prompt-seed", type=int, default=0, metavar="N",
               help="draw every generated prompt set with its seed + N (JSONL data keep their rows): the same "
                    "claims on fresh prompts (default 0: the seeds the files give)")
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


def flag_specs() -> list[tuple[str, dict]]:
    """(flag, its add_option keywords) of every run flag: what its `cc_*` ini key takes (files/ini.py)."""
    specs: list[tuple[str, dict]] = []
    add_flags(lambda flag, **kw: specs.append((flag, kw)))
    return specs


def flag_defaults() -> dict:
    """Every flag's default by its option name (`cc_device`: "cpu"), for commands taking some only."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser.add_argument)
    return vars(parser.parse_args([]))


def options_from_flags(get, cache_dir: str | None) -> Options:
    """The session options the flags give (`get`: option name -> value)."""
    return Options(get("cc_device"), get("cc_dtype"), get("cc_batch_size"), get("cc_cache"), cache_dir,
                   get("cc_family"), dump_values=get("cc_dump_values"), device_map=get("cc_device_map"),
                   runner=get("cc_runner"))

class Session:
    def __init__(self, options: Options = Options()):
        self.options = options
        self.plan = Plan()
        self.results: dict[Path, dict[str, Result]] = {}
        self.files: dict[Path, H.LoadedFile] = {}
        # Work claims share (loading the model, the clean and intervention runs) is counted apart
        # from each claim's own time, so a file's first claim is not charged for it.
        self.shared_seconds = 0.0
        self._sharing = False
        self.cache = None
        if options.cache != "off" and options.cache_dir:
            from .runs.cache import ValueCache

            self.cache = ValueCache(options.cache_dir, options.cache)
        self.fingerprints: dict[tuple, dict] = {}
        self.roles: dict = {}  # key -> claim id -> role -> head; a file with roles plans once they are bound
        # Told of model loads and of planned runs done (the plugin's terminal progress); None: nobody.
        self.progress = None
        self.run_values = Values(self.plan, self.model, self.load_options, options.batch_size, self.cache,
                                 self._shared_work, self._ran)
        self.judge = Judge(self.run_values, options.record, self.cache, _dumper(options.dump_values),
                           lambda: self.shared_seconds)

    # What the stages keep, under the names callers have always used.
    runs = property(lambda self: self.run_values.runs)
    measured = property(lambda self: self.run_values.measured)
    streamed = property(lambda self: self.run_values.streamed)
    seconds = property(lambda self: self.judge.seconds)

    def add(self, loaded: H.LoadedFile, key=None) -> None:
        """`key` (default: the file's path) tells apart one file run on several checkpoints."""
        self.files[key or loaded.path] = loaded
        if not _chosen_later(loaded):
            self.plan.add(loaded)

    def result(self, path: Path, claim_id: str) -> Result:
        if path not in self.results:
            paths = list(self.files) if self.options.family == "run" else [path]
            failed = {p: self.files[p].checkpoint_problem for p in paths if self.files[p].checkpoint_problem}
            failed.update(self._bind_roles([p for p in paths if p not in failed]))
            ok = [p for p in paths if p not in failed]
            with self.judge.remembering():
                self.results.update(self.judge.judged({p: self.files[p] for p in ok}) if ok else {})
            for p, error in failed.items():  # a scan that cannot run: every claim of the file says why
                self.results[p] = {lc.claim.id: self.judge.result(self.files[p], lc, [], error) for lc in self.files[p].claims}
            for p in paths:
                self._regression_fields(p)
        return self.results[path][claim_id]

    def _bind_roles(self, keys) -> dict:
        """Bind the roles (and choose the greedy K's) of each file among `keys` that has some; {key: why}
        for scans that cannot run."""
        failed = {}
        for key in keys:
            if _chosen_later(self.files[key]) and key not in self.roles:
                try:
                    self._bind_file_roles(key)
                except models.ModelUnavailable:
                    raise
                except Exception as exc:
                    failed[key] = f"{'binding roles' if self.files[key].spec.roles else 'choosing the greedy K'}: {exc}"
        return failed

    def _bind_file_roles(self, key) -> None:
        """Scan for the file's roles on its model, then read the file again with them bound (roles.py);
        choose its greedy K's on held-out prompts (greedy.py); then plan it."""
        import dataclasses

        from .files import greedy, roles

        loaded = self.files[key]
        self.roles[key] = {lc.claim.id: {} for lc in loaded.claims}
        if loaded.spec.roles:
            dims = (loaded.n_layers, loaded.n_heads)
            if None in dims:  # the config did not say: ask the model
                dims = (self.model(loaded).cfg.n_layers, self.model(loaded).cfg.n_heads)
            scanned = roles.scan(loaded, lambda measures, spec: self.run_values.clean_values(loaded, spec, measures),
                                 *dims)
            heads = {name: r["head"] for name, r in scanned.items()}
            loaded = dataclasses.replace(H.load(loaded.path, heads, loaded.store), model_source=loaded.model_source,
                                         n_layers=loaded.n_layers, n_heads=loaded.n_heads)
            raw = H.HypothesisFile.model_validate(H.plain_tree(loaded.path))  # `$role` left in
            used = roles.uses(raw, heads)
            roles.relabel(loaded, raw, used)
            # claim id -> the heads filling the roles it uses
            self.roles[key] = {cid: {n: heads[n] for n in names} for cid, names in used.items()}
        self._choose_greedy(loaded)
        for cid, by_method in loaded.greedy_chosen.items():  # reported, and compared with baselines, as roles are
            self.roles[key][cid] = {**self.roles[key].get(cid, {}), **greedy.picks(by_method)}
        self.files[key] = loaded
        self.plan.add(loaded)

    def _choose_greedy(self, loaded) -> bool:
        """Choose the greedy K's of a file read without them, on held-out prompts (greedy.py); whether it did."""
        from .files import greedy

        if not greedy.claims(loaded) or loaded.greedy_chosen:
            return False
        greedy.bind(loaded, greedy.choose(loaded, self._step_values))
        return True

    def _step_values(self, step) -> list[dict]:
        """Per-prompt values on each named run of each case of a greedy step's file (planned here)."""
        self.plan.add(step)
        return [self.run_values.named(step, case) for case in step.claims[0].cases]

    def _regression_fields(self, key) -> None:
        """What each result ran on (fingerprint.py), which checkpoint, and each case's interventions."""
        from .models.fingerprint import fingerprint

        loaded = self.files[key]
        fk = (loaded.model_source, self.load_options(loaded))
        if fk not in self.fingerprints:
            self.fingerprints[fk] = fingerprint(loaded.model_source, self.load_options(loaded).record(),
                                                lambda: self.model(loaded))
        for lc in loaded.claims:
            r = self.results[key][lc.claim.id]
            r.fingerprint = self.fingerprints[fk]
            r.checkpoint = key[1] if isinstance(key, tuple) else ""
            r.drift = lc.claim.drift
            r.roles = self.roles.get(key, {}).get(lc.claim.id, {})
            r.case_under = {c.label: [iv.model_dump(mode="json", by_alias=True, exclude_none=True) for iv in c.under]
                            for c in lc.cases}

    def forward_passes(self) -> int:
        return self.run_values.forward_passes()

    def values(self, loaded, claim, case):
        """Per-prompt values of a case; for drop/rise/change, the paired difference and the clean values."""
        return self.run_values.values(loaded, claim, case)

    def judge_at(self, loaded, lc, level: float, rows=None, family: str = "") -> Result:
        """One claim judged at a given error level (`judge.claims.Judge.judge_at`); a file read on its own
        (a near twin, a mutant) gets its greedy K's chosen first."""
        if self._choose_greedy(loaded):
            self.plan.add(loaded)
        return self.judge.judge_at(loaded, lc, level, rows, family)

    # ------------------------------------------------------------ models
    def load_options(self, loaded: H.LoadedFile) -> models.LoadOptions:
        return load_options(loaded.spec.model, self.options, loaded.model_source)

    def model(self, loaded: H.LoadedFile):
        options = self.load_options(loaded)
        if self.progress is not None and not models.is_loaded(loaded.model_source, options):
            self.progress.loading(loaded.model_source.describe())
        with self._shared_work():
            return models.load(loaded.model_source, options)

    def _ran(self, done: int, planned: int) -> None:
        if self.progress is not None:
            self.progress.ran(done, planned)

    @contextmanager
    def _shared_work(self):
        """Time work that several claims share (the outermost such block only)."""
        if self._sharing:
            yield
            return
        self._sharing, start = True, time.perf_counter()
        try:
            yield
        finally:
            self._sharing = False
            self.shared_seconds += time.perf_counter() - start


def _chosen_later(loaded) -> bool:
    """Whether part of the file is chosen by running the model (roles, greedy K's) before it is planned."""
    from .files import greedy

    return bool(loaded.spec.roles or greedy.claims(loaded))


def load_options(m, options: Options, source: models.ModelSource) -> models.LoadOptions:
    """How a file's model loads: its own dtype and device (or device_map) win over the run's defaults."""
    device_map, max_memory = _placement(m, options, source)
    device = None if device_map is not None else _device(m.device or options.device)
    return models.LoadOptions(device, m.dtype or options.dtype, processing_flags(m), m.attention, device_map,
                              max_memory, m.runner or options.runner or "transformer_lens")

def _placement(m, options: Options, source: models.ModelSource) -> tuple:
    """(device_map, max_memory) of a model loaded the Hugging Face way: the file's, else --cc-device-map
    where the file names no device. Other models load whole on one device (a file's map is refused
    at collection; `--cc-model` may put a native model in its place, which loads on `device`)."""
    from .models.placement import frozen, memory

    if not models.loads_hf(source):
        return None, None
    if m.device_map is not None:
        return frozen(m.device_map), frozen(memory(m.max_memory))
    return (options.device_map if m.device is None else None), None

def load_model(ref, device: str | None = None, dtype: str | None = None, device_map: str | None = None):
    """The model a hypothesis file names, loaded as its claims load it (weight processing,
    attention, dtype, device), for notebooks:

        model = circuitcheck.load_model("hypotheses/induction.hyp.yaml")
        model = circuitcheck.load_model("zoo:induction")
        model = circuitcheck.load_model({"zoo": "max-of-list", "weight_processing": "default"})

    `ref` is a path to a `*.hyp.yaml` file, or a `model:` value as a file writes it (native paths
    relative to the working directory). `device`/`dtype`/`device_map` apply where the file names none.
    """
    options = Options(device or "cpu", dtype or "float32", device_map=device_map)
    if isinstance(ref, (str, Path)) and str(ref).endswith(".yaml"):
        source, spec = H.file_model_source(ref)  # the model only: its claims need not be checkable here
    else:
        source, spec = H.model_source(ref)
    return models.load(source, load_options(spec, options, source))

def _device(device: str) -> str:
    """Under pytest-xdist with several GPUs, `cuda` means this worker's own GPU."""
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if device != "cuda" or not worker.startswith("gw"):
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{int(worker[2:]) % count}" if count > 1 else device

def check(path, options: Options = Options()) -> list[Result]:
    """Load one hypothesis file, run it, and return one `Result` per claim (no pytest needed); a file
    with `checkpoints:` gives one per claim and checkpoint (`result.checkpoint` says which)."""
    from .models.override import variants

    session = Session(options)
    loaded = H.load(path, store=session.cache)
    out = []
    for name, run_on in variants(loaded, []):
        key = (loaded.path, name) if name else loaded.path
        session.add(run_on, key)
        out += [session.result(key, lc.claim.id) for lc in loaded.claims]
    return out


def _dumper(directory):
    """`--cc-dump-values DIR`: each case's per-prompt values written under DIR (report/dump.py)."""
    if not directory:
        return None
    from .report import dump

    return dump.Dumps(directory)
