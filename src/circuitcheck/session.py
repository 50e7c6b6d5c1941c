"""A session: load files, plan, run, measure, estimate, judge. The library's entry point.

    >>> from circuitcheck import check
    >>> for r in check("hypotheses/max_of_list.hyp.yaml"):
    ...     print(r.claim_id, r.verdict, r.main.estimate.statistic)
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hypothesis_file as H
from . import models, registry
from .model_files import ModelFileError
from .plan import Plan, run_key
from .spec import processing_flags
from .verdict import ERROR, FAIL, RECORDED, CaseResult, Result, combine, judge
from .where import evaluate as where_filter


@dataclass(frozen=True)
class Options:
    """Run-wide defaults; a file's own `model: {device, dtype}` wins over them."""

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1024
    cache: str = "off"  # value cache for reruns: on | read | write | off (see cache.py)
    cache_dir: str | None = None
    family: str = "file"  # Holm's family: the claims of each file, or of the whole run ("run")
    record: bool = False  # every claim as `expect: record`: numbers, no verdicts (`circuitcheck measure`)
    dump_values: str | None = None  # a directory for each case's per-prompt values (dump.py)
    device_map: str | None = None  # accelerate's placement of Hugging Face models where a file names none


@dataclass
class Row:
    """One judged quantity of a claim: a case's bound, or a sweep's curve."""

    label: str
    bound: object  # stats.Bound
    region: tuple[float, float]
    clean: object | None = None  # stats.Bound of the clean run, for drop/rise/change
    curve: list | None = None

    @property
    def undefined(self) -> bool:
        """The quantity does not exist for these data (R² of a flat curve): the case fails."""
        return bool(getattr(self.bound, "flat", False))


class Session:
    def __init__(self, options: Options = Options()):
        self.options = options
        self.plan = Plan()
        self.runs: dict[tuple, object] = {}
        self.measured: dict[tuple, np.ndarray] = {}  # a measure of a run, shared by the claims that read it
        self.streamed: dict[tuple, dict] = {}  # prompt set -> values computed for the plan, not yet asked for
        self.whole_needs: dict[tuple, dict] = {}  # prompt set -> run key -> hooks of its whole-run measures
        self.results: dict[Path, dict[str, Result]] = {}
        self.files: dict[Path, H.LoadedFile] = {}
        # Each claim's own measuring time; work claims share (loading the model, the clean and
        # intervention runs) is counted apart, so a file's first claim is not charged for it.
        self.seconds: dict[tuple[Path, str], float] = {}
        self.shared_seconds = 0.0
        self._sharing = False
        self.cache = None
        if options.cache != "off" and options.cache_dir:
            from .cache import ValueCache

            self.cache = ValueCache(options.cache_dir, options.cache)
        self.fingerprints: dict[tuple, dict] = {}
        self.roles: dict = {}  # key -> claim id -> role -> head; a file with roles plans once they are bound

    def add(self, loaded: H.LoadedFile, key=None) -> None:
        """`key` (default: the file's path) tells apart one file run on several checkpoints."""
        self.files[key or loaded.path] = loaded
        if not loaded.spec.roles:
            self.plan.add(loaded)

    def result(self, path: Path, claim_id: str) -> Result:
        if path not in self.results:
            paths = list(self.files) if self.options.family == "run" else [path]
            failed = self._bind_roles(paths)
            ok = [p for p in paths if p not in failed]
            with self._remembering():
                self.results.update(self._judged(ok) if ok else {})
            for p, error in failed.items():  # a scan that cannot run: every claim of the file says why
                self.results[p] = {lc.claim.id: self._result(self.files[p], lc, [], error) for lc in self.files[p].claims}
            for p in paths:
                self._regression_fields(p)
        return self.results[path][claim_id]

    def _bind_roles(self, keys) -> dict:
        """Bind the roles of each file among `keys` that has some; {key: why} for scans that cannot run."""
        failed = {}
        for key in keys:
            if self.files[key].spec.roles and key not in self.roles:
                try:
                    self._bind_file_roles(key)
                except models.ModelUnavailable:
                    raise
                except Exception as exc:
                    failed[key] = f"binding roles: {exc}"
        return failed

    def _bind_file_roles(self, key) -> None:
        """Scan for the file's roles on its model, then read the file again with them bound (roles.py)."""
        import dataclasses

        from . import roles

        loaded = self.files[key]
        dims = (loaded.n_layers, loaded.n_heads)
        if None in dims:  # the config did not say: ask the model
            dims = (self.model(loaded).cfg.n_layers, self.model(loaded).cfg.n_heads)
        scanned = roles.scan(loaded, lambda measures, spec: self._clean_values(loaded, spec, measures), *dims)
        heads = {name: r["head"] for name, r in scanned.items()}
        bound = dataclasses.replace(H.load(loaded.path, heads, loaded.store), model_source=loaded.model_source,
                                    n_layers=loaded.n_layers, n_heads=loaded.n_heads)
        raw = H.HypothesisFile.model_validate(H._plain(H.read_yaml(loaded.path)))  # `$role` left in
        used = roles.uses(raw, heads)
        roles.relabel(bound, raw, used)
        # claim id -> the heads filling the roles it uses
        self.roles[key] = {cid: {n: heads[n] for n in names} for cid, names in used.items()}
        self.files[key] = bound
        self.plan.add(bound)

    def _regression_fields(self, key) -> None:
        """What each result ran on (fingerprint.py), which checkpoint, and each case's interventions."""
        from .fingerprint import fingerprint

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
        return sum(r.forward_passes for r in self.runs.values())

    # ------------------------------------------------------------ running
    def load_options(self, loaded: H.LoadedFile) -> models.LoadOptions:
        return load_options(loaded.spec.model, self.options, loaded.model_source)

    def model(self, loaded: H.LoadedFile):
        with self._shared_work():
            return models.load(loaded.model_source, self.load_options(loaded))

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

    def _runs(self, loaded: H.LoadedFile, spec, prompts_key: tuple):
        """The runs over one prompt set (made on first use; `_streamed` runs the plan through them)."""
        k = self.plan.key(loaded, prompts_key)
        if k not in self.runs:
            with self._shared_work():
                self.runs[k] = self._new_runs(loaded, spec, prompts_key)
        return self.runs[k]

    def _new_runs(self, loaded: H.LoadedFile, spec, prompts_key: tuple):
        from .runs import Runs

        group = self.plan.groups[self.plan.key(loaded, prompts_key)]
        return Runs(self.model(loaded), self._prompts(loaded, spec, prompts_key), loaded.spec.seed, self.options.batch_size,
                    source_prompts=lambda s: H.prompt_set(group.loaded, H.prompts_key(group.loaded.path, s), s))

    def _streamed(self, loaded, spec, prompts_key: tuple) -> dict:
        """The values every planned case reads over one prompt set, computed in one sweep on first
        use ({(run key, measure JSON): values}; see Runs.stream). A run's logits and activations are
        dropped chunk by chunk; only these values are kept, and each leaves when it is asked for."""
        k = self.plan.key(loaded, prompts_key)
        if k not in self.streamed:
            runs = self._runs(loaded, spec, prompts_key)
            planned = {rk: (under, {name: m for name, m in ms.items() if streamable(m)})
                       for rk, (under, ms) in self.plan.groups[k].measured().items()}
            with self._shared_work():
                self.streamed[k] = runs.stream({rk: p for rk, p in planned.items() if p[1]})
        return self.streamed[k]

    def _measure(self, loaded, case, under) -> np.ndarray:
        """The case's per-prompt values under `under` (measure minus versus, where it has one)."""
        value = self._measure_one(loaded, case, under, case.measure)
        if case.versus is None:
            return value
        return value - self._measure_one(loaded, case, under, case.versus)

    def _measure_one(self, loaded, case, under, m) -> np.ndarray:
        k = (self.plan.key(loaded, case.prompts_key), run_key(under), m.model_dump_json())
        if k not in self.measured:
            ck = self._cache_key(loaded, case, under, m)
            value = self.cache.get(ck) if ck else None
            if value is None:
                value = self._compute(loaded, case, under, m)
                if ck:
                    self.cache.put(ck, value)
            self.measured[k] = value
        return self.measured[k]

    def _cache_key(self, loaded, case, under, m=None) -> str | None:
        if self.cache is None:
            return None
        from . import interventions as I

        m = m or case.measure
        specs = [(case.prompts, case.prompts_key), *case.variants]
        specs += [(s.prompts, H.prompts_key(loaded.path, s.prompts)) for s in I.sources(under)]
        return self.cache.key(loaded.model_source, [self._prompts(loaded, *s) for s in specs], under,
                              m, self.load_options(loaded), self.options.batch_size, loaded.spec.seed)

    def _clean_values(self, loaded, spec, measures) -> list[np.ndarray]:
        """Per-prompt values of `measures` on the clean run over `spec` (a role scan's candidates),
        read from the value cache where it has them; one clean run computes the rest."""
        ps = H.prompt_set(loaded, H.prompts_key(loaded.path, spec), spec)
        keys = [self.cache.key(loaded.model_source, [ps], (), m, self.load_options(loaded), self.options.batch_size,
                               loaded.spec.seed) if self.cache else None for m in measures]
        values = [self.cache.get(k) if k else None for k in keys]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            from . import measures as M
            from .runs import Runs

            with self._shared_work():
                model = self.model(loaded)
                todo = {str(i): measures[i] for i in missing}
                got = Runs(model, ps, loaded.spec.seed, self.options.batch_size).stream({(): ((), todo)})
                for i in missing:
                    values[i] = got[((), str(i))]
                    if isinstance(values[i], M.MeasureFailed):
                        raise values[i]
                    if keys[i]:
                        self.cache.put(keys[i], values[i])
        return values

    def _prompts(self, loaded, spec, prompts_key):
        """The (numpy) prompt set of `spec`: the one its runs use, built without torch."""
        group = self.plan.groups.get(self.plan.key(loaded, prompts_key))  # paths are relative to the first file
        return H.prompt_set(group.loaded if group else loaded, prompts_key, spec)

    def _compute(self, loaded, case, under, m) -> np.ndarray:
        from . import measures as M

        kind = M.kind_of(m)
        if kind.is_weights_only(m.body):
            return np.asarray(M.compute(m, M.Run(None, {}, None, self.model(loaded))), dtype=np.float64)
        if streamable(m):
            streamed, k = self._streamed(loaded, case.prompts, case.prompts_key), (run_key(under), m.model_dump_json())
            if isinstance(streamed.get(k), M.MeasureFailed):
                raise streamed[k]  # left in place: every claim reading this measure gets the same error
            value = streamed.pop(k, None)
            if value is not None:
                return value
        pairs = case.variants if kind.variants(m.body) else ()  # the prompt variants this measure compares
        views = [self._view(loaded, spec, key, under, m) for spec, key in pairs]
        run = self._view(loaded, case.prompts, case.prompts_key, under, m) if not views else views[0]
        run.variants = views  # not planned (a specificity mutant), or comparing runs: whole runs
        return M.compute(m, run)

    def _view(self, loaded, spec, prompts_key, under, m):
        """What a measure reads: the run over one prompt set under `under`, with its activations."""
        from . import measures as M

        runs = self._runs(loaded, spec, prompts_key)
        run = runs.run(under, M.needs(m, runs.model.cfg) | self._whole_run_needs(loaded, prompts_key, under, runs.model.cfg))
        return M.Run(run.logits, run.cache, runs.prompts, runs.model)

    def _whole_run_needs(self, loaded, prompts_key, under, cfg) -> set[str]:
        """The hooks of every planned measure that reads whole runs (not streamed) on this run: the
        first of them asks for all, so they share one forward pass instead of one pass each.
        Worked out once per prompt set, for all its runs; a case planned later still gets its own
        hooks (`_view` adds them), it only misses the sharing."""
        k = self.plan.key(loaded, prompts_key)
        if k not in self.whole_needs:
            group = self.plan.groups.get(k)
            planned = group.measured() if group else {}
            self.whole_needs[k] = {rk: _whole_run_hooks(ms.values(), cfg) for rk, (_, ms) in planned.items()}
        return self.whole_needs[k].get(run_key(under), set())

    def values(self, loaded, claim, case) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-prompt values of a case; for drop/rise/change, the paired difference and the clean values."""
        value = self._measure(loaded, case, case.under)
        rel = claim.expect.relative
        if rel not in ("drop", "rise", "change"):
            return value, None
        clean = self._measure(loaded, case, ())
        return (clean - value if rel == "drop" else value - clean), clean

    # ------------------------------------------------------------ judging
    def recording(self, claim) -> bool:
        """Whether a claim is measured without a verdict (`expect: record`, `circuitcheck measure`)."""
        return self.options.record or claim.expect.record is not None

    def _rows(self, loaded: H.LoadedFile, lc) -> list[Row]:
        """Every judged quantity of one claim (one per case; one for a sweep's curve)."""
        from . import measures as M
        from . import stats as S

        claim, seed = lc.claim, loaded.spec.seed
        expect = claim.expect
        region = expect.region.bounds()
        if expect.swept is not None and not self.recording(claim):
            return [self._curve_row(loaded, lc, region)]
        rows = []
        for case in lc.cases:
            value, clean = self.values(loaded, claim, case)
            ps = self._prompts(loaded, case.prompts, case.prompts_key)
            kept = np.arange(value.size)
            measure_kind = M.kind_of(case.measure)
            vector_recorded = self.recording(claim) and expect.order is None and value.size > 1
            if measure_kind.is_weights_only(case.measure.body) and not vector_recorded:  # exact: no sampling
                rows.append(Row(case.label, _exact(measure_kind, case.measure, expect, value), region))
                continue
            value_kind = self._value_kind(loaded, case)
            mask = None
            if case.where is not None:
                mask = where_filter(case.where, ps)
                if expect.relative == "contrast":
                    self._dump(loaded, claim, case, kept, value, None, mask, ps)
                    groups = [S.bound_for(v, seed, **value_kind) for v in (value[mask], value[~mask])]
                    rows.append(Row(case.label, S.Difference(*groups), region))
                    continue
                kept, value = kept[mask], value[mask]
                clean = clean[mask] if clean is not None else None
            self._dump(loaded, claim, case, kept, value, clean, None, ps)
            if expect.correlates is not None:
                rows.append(Row(case.label, self._correlation(loaded, case, value, mask, expect.correlates.with_),
                                region))
                continue
            if clean is not None:
                bound = S.bound_for(value, seed, value_range=_spread(value_kind.get("value_range")),
                                    paired_binary=value_kind.get("binary", False))
                rows.append(Row(case.label, bound, region, S.bound_for(clean, seed, **value_kind)))
            else:
                rows.append(Row(case.label, S.bound_for(value, seed, **value_kind), region))
        return rows

    def _dump(self, loaded, claim, case, kept, value, clean, group, ps):
        if self.options.dump_values and value.size == kept.size:  # per-prompt values (not ov_norm's per token)
            from . import dump

            dump.write(self.options.dump_values, loaded, claim, case, kept, value, clean, group, ps)

    def _correlation(self, loaded, case, value, mask, spec: str):
        from . import correlation as C

        data = C.quantity(self._prompts(loaded, case.prompts, case.prompts_key), spec)
        return C.Correlation(value, data if mask is None else data[mask], loaded.spec.seed, spec)

    def _value_kind(self, loaded, case) -> dict:
        """What the per-prompt values are, by construction: 0/1 outcomes, or values in a known range;
        with `versus`, the difference of two such values, paired by prompt."""
        one = self._one_kind(loaded, case, case.measure)
        if case.versus is None:
            return one
        other = self._one_kind(loaded, case, case.versus)
        if one.get("binary") and other.get("binary"):
            return {"paired_binary": True}
        a, b = _range_of(one), _range_of(other)
        return {"value_range": (a[0] - b[1], a[1] - b[0]) if a and b else None}

    def _one_kind(self, loaded, case, measure) -> dict:
        from . import measures as M

        ps = self._prompts(loaded, case.prompts, case.prompts_key)
        return M.kind_of(measure).values(measure.body, ps, lambda: self._d_vocab(loaded))

    def _d_vocab(self, loaded) -> int:
        d_vocab = loaded.limits.get("d_vocab_out") or loaded.limits.get("d_vocab")
        return d_vocab or self.model(loaded).cfg.d_vocab_out  # the config did not say: ask the model

    def _curve_row(self, loaded, lc, region) -> Row:
        from . import stats as S

        claim, seed = lc.claim, loaded.spec.seed
        matrix = np.stack([self.values(loaded, claim, c)[0] for c in lc.cases])
        for c, row in zip(lc.cases, matrix):
            self._dump(loaded, claim, c, np.arange(row.size), row, None, None, self._prompts(loaded, c.prompts, c.prompts_key))
        xs = np.array([float(c.value) for c in lc.cases])
        expect, name = claim.expect, next(iter(claim.sweep))
        kind = self._value_kind(loaded, lc.cases[0])
        if claim.expect.relative in ("drop", "rise", "change"):
            kind = {"value_range": _spread(kind.get("value_range")), "paired_binary": kind.get("binary", False)}
        curve = [(c.value, float(v)) for c, v in zip(lc.cases, matrix.mean(1))]
        if expect.crosses is not None:
            c = expect.crosses
            mode = {None: "bracket", True: "linear", False: "discrete"}[c.interpolate]
            what = f"first {name} where the mean is {'≥' if c.direction == 'up' else '≤'} {c.level:g} ({mode})"
            bound = S.Crossing(xs, [S.bound_for(row, seed, **kind) for row in matrix], c.level, c.direction == "up",
                               mode, what)
            region = (region[0], min(region[1], float(xs.max())))  # a crossing beyond the sweep cannot be claimed
        elif expect.slope is not None:
            per_prompt = S.slope_weights(xs) @ matrix
            rng = S.slope_range(xs, kind.get("value_range") or ((-1, 1) if kind.get("paired_binary") else
                                                                 (0, 1) if kind.get("binary") else None))
            bound = S.bound_for(per_prompt, seed, value_range=rng)
            bound.method = f"slope of the mean against {name}: {bound.method}"
        else:
            bound = S.R2(xs, matrix, seed)
        return Row(f"curve over {name}", bound, region, curve=curve)

    def _judged(self, paths: list[Path]) -> dict[Path, dict[str, Result]]:
        """Judge the claims of `paths` as one family: Holm's step-down over their claims."""
        from . import measures as M
        from . import stats as S

        entries, errors = [], {}
        for path in paths:
            loaded = self.files[path]
            for lc in loaded.claims:
                start, shared = time.perf_counter(), self.shared_seconds
                try:
                    entries.append((path, loaded, lc, self._rows(loaded, lc)))
                except models.ModelUnavailable:
                    raise
                except (models.ModelError, registry.CodeError) as exc:  # registered code: its own words
                    errors[(path, lc.claim.id)] = str(exc), ""
                except ModelFileError as exc:  # weights swapped after collection
                    errors[(path, lc.claim.id)] = f"{exc} ({exc.hint})", ""
                except M.MeasureFailed as exc:  # its own words, and where its measure raised
                    errors[(path, lc.claim.id)] = str(exc), _trace(exc.error)
                except Exception as exc:  # one claim that cannot be measured must not take the others down
                    errors[(path, lc.claim.id)] = H.unexpected("measuring this claim", exc), _trace(exc)
                finally:
                    own = time.perf_counter() - start - (self.shared_seconds - shared)
                    self.seconds[(path, lc.claim.id)] = max(own, 0.0)
        # Recorded claims test nothing: they stay out of Holm's family, with bounds at the file's alpha.
        recorded = [e for e in entries if self.recording(e[2].claim)]
        entries = [e for e in entries if not self.recording(e[2].claim)]
        alpha = min(self.files[p].spec.alpha for p in paths)
        levels = S.holm([claim_p(lc.claim, rows) for _, _, lc, rows in entries], alpha)
        family = f"Holm over {len(entries)} claims of {'this file' if len(paths) == 1 else f'{len(paths)} files'}"
        out: dict[Path, dict[str, Result]] = {p: {} for p in paths}
        for path, loaded, lc, rows in recorded:  # path: the session's key for the file
            cases = [_case(row, loaded.spec.alpha) for row in rows]
            for c in cases:
                c.verdict = RECORDED
            out[path][lc.claim.id] = self._result(loaded, lc, cases, family="recorded, not judged")
        for (path, loaded, lc, rows), level in zip(entries, levels):
            out[path][lc.claim.id] = self.judge_at(loaded, lc, level, rows, f"{family}, α={level:.3g}")
        for path in paths:
            loaded = self.files[path]
            for lc in loaded.claims:
                if (path, lc.claim.id) in errors:
                    error, trace = errors[(path, lc.claim.id)]
                    out[path][lc.claim.id] = self._result(loaded, lc, [], error, trace=trace)
        return out

    def judge_at(self, loaded, lc, level: float, rows=None, family: str = "") -> Result:
        """One claim judged at a given error level (its Holm level, or the level of the claim a
        specificity mutant stands for)."""
        with self._remembering():
            rows = self._rows(loaded, lc) if rows is None else rows
            cases = [_case(row, case_level(lc.claim, rows, level)) for row in rows]
        result = self._result(loaded, lc, cases, family=family or f"judged alone at α={level:.3g}")
        result.level = level
        return result

    @contextmanager
    def _remembering(self):
        """Bounds answer from the value cache what a run before computed on the same values (stats.py)."""
        from . import stats as S

        with S.remembering(self.cache):
            yield
        if self.cache is not None:
            self.cache.flush()

    def _result(self, loaded, lc, cases, error=None, family="", trace="") -> Result:
        claim = lc.claim
        q = claim.for_.kind if claim.for_ else None
        verdict = ERROR if error else RECORDED if self.recording(claim) else combine(q, [c.verdict for c in cases])
        expected = "recorded" if self.options.record and claim.expect.record is None else \
            ("difference " if claim.versus or claim.ranks else "") + claim.expect.text()
        return Result(
            claim.id, claim.says, expected, q, verdict, cases, str(loaded.path), lc.line, loaded.spec.seed,
            loaded.model_source.describe(), self._record(loaded, lc), describe_measure(claim.measure), error,
            under=describe_under(claim.under), family=family, traceback=trace,
        )

    def _record(self, loaded, lc) -> dict:
        """What was applied: the load options, and the padding of the claim's prompts if any."""
        out = self.load_options(loaded).record()
        ps = self._prompts(loaded, lc.cases[0].prompts, lc.cases[0].prompts_key) if lc.cases else None
        if ps is not None and ps.mask is not None:
            out.update(attention_mask=f"{ps.extra['padding']} padding", pad_token=ps.extra["pad_token"])
        return out


def _trace(exc: BaseException) -> str:
    """The traceback of an error, for pytest to show on request (-v, --tb=long)."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _whole_run_hooks(measures, cfg) -> set[str]:
    from . import measures as M

    need = set()
    for x in measures:
        if streamable(x) or M.kind_of(x).is_weights_only(x.body):
            continue
        try:
            need |= M.needs(x, cfg)
        except Exception:  # a python measure's `reads` that fails is its own claim's error, not this one's
            continue
    return need


def streamable(m) -> bool:
    """Whether a measure's values on some prompts come from those prompts' rows of one run alone,
    so that they can be computed chunk by chunk (not: weights-only kinds, kinds comparing runs, a
    measure averaging over the run such as a centred dla)."""
    from . import measures as M

    kind = M.kind_of(m)
    return kind.streams_for(m.body) and not kind.weights_only and not kind.variants(m.body)


def claim_p(claim, rows: list["Row"]) -> float:
    """The p-value of a claim, from the tests that decide its cases: every case must pass (all, or a
    plain claim: intersection-union), one must (any: Bonferroni over its cases), every case must fail (none)."""
    from . import stats as S

    q = claim.for_.kind if claim.for_ else None
    if q == "none":
        return max(S.p_outside(r.bound, *r.region) for r in rows)
    ps = [1.0 if r.undefined else S.p_inside(r.bound, *r.region) for r in rows]
    return min(1.0, len(ps) * min(ps)) if q == "any" else max(ps)


def case_level(claim, rows, level: float) -> float:
    """The one-sided error level each case's bounds use, so that case verdicts match `claim_p`."""
    q = claim.for_.kind if claim.for_ else None
    if q == "any":
        return level / len(rows)
    if q == "none":
        return level / max(1, sum(map(math.isfinite, rows[0].region)))
    return level


def _case(row: "Row", a: float) -> CaseResult:
    est = row.bound.at(a)
    verdict = FAIL if row.undefined else judge(est, *row.region)
    clean = row.clean.at(a) if row.clean is not None else None
    return CaseResult(row.label, verdict, est, row.region, clean, a, row.curve, bound=row.bound)


def _range_of(kind: dict):
    """The range a value kind's values lie in (0/1 outcomes: [0, 1]), or None."""
    return (0.0, 1.0) if kind.get("binary") else kind.get("value_range")


def _spread(value_range):
    """The range of a difference of two values that each lie in `value_range`."""
    if value_range is None:
        return None
    width = value_range[1] - value_range[0]
    return (-width, width)


def describe_measure(measure) -> str:
    """`accuracy`, or `attention(head=L0H1, from=ANS, to=argmax)`: the measure as a reader names it."""
    from . import measures as M

    return M.kind_of(measure).describe(measure.body)


def describe_under(under) -> str:
    """`ablate(heads=[L0H1], method=mean); scale_attention(...)`: the interventions, as a reader names them."""
    from . import interventions as I

    return "; ".join(I.kind_of(iv).describe(iv.body) for iv in under)


def load_options(m, options: Options, source: models.ModelSource) -> models.LoadOptions:
    """How a file's model loads: its own dtype and device (or device_map) win over the run's defaults."""
    device_map, max_memory = _placement(m, options, source)
    device = None if device_map is not None else _device(m.device or options.device)
    return models.LoadOptions(device, m.dtype or options.dtype, processing_flags(m), m.attention, device_map,
                              max_memory)


def _placement(m, options: Options, source: models.ModelSource) -> tuple:
    """(device_map, max_memory) of a model loaded the Hugging Face way: the file's, else --cc-device-map
    where the file names no device. Other models load whole on one device (a file's map is refused
    at collection; `--cc-model` may put a native model in its place, which loads on `device`)."""
    from .placement import frozen, memory

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
        loaded = H.load(ref)
        return models.load(loaded.model_source, load_options(loaded.spec.model, options, loaded.model_source))
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


def _exact(kind, measure, expect, value):
    """The exact 'bound' of a weights-only measure: whether its units' order holds, or its one number."""
    from . import stats as S

    value = np.atleast_1d(value)  # a kind may give one number as a 0-d array
    if expect.order is not None:
        units = kind.units(measure.body) or list(range(value.size))  # a python vector: units 0, 1, ...
        if value.size < 2:
            raise registry.CodeError(f"{kind.describe(measure.body)} returned one number: `order` ranks a vector's "
                                     "units; judge one number with at_least/at_most/...")
        holds = _order_holds(expect.order, units, value)
        return S.Exact(float(holds), value.size, _order_text(value, units, kind.unit))
    if value.size != 1:
        raise registry.CodeError(f"{kind.describe(measure.body)} returned {value.size} values: judge a vector with "
                                 "`expect: {order: {largest: [...]}}`")
    return S.Exact(float(value[0]), 1, "exact, from weights")


def _order_holds(order, tokens, values) -> bool:
    ranked = [t for _, t in sorted(zip(values, tokens))]
    k_l, k_s = len(order.largest or []), len(order.smallest or [])
    ok = order.largest is None or set(ranked[len(ranked) - k_l:]) == set(order.largest)
    ok &= order.smallest is None or set(ranked[:k_s]) == set(order.smallest)
    if order.monotonic is not None:
        d = np.diff(values)
        ok &= bool(np.all(d >= 0) or np.all(d <= 0)) == order.monotonic
    return bool(ok)


def _order_text(values, units, unit: str) -> str:
    pairs = ", ".join(f"{t}:{v:.3g}" for t, v in zip(units, values))
    return f"exact, from weights ({unit}:value {pairs})"


def check(path, options: Options = Options()) -> list[Result]:
    """Load one hypothesis file, run it, and return one `Result` per claim (no pytest needed); a file
    with `checkpoints:` gives one per claim and checkpoint (`result.checkpoint` says which)."""
    from .override import variants

    session = Session(options)
    loaded = H.load(path, store=session.cache)
    out = []
    for name, run_on in variants(loaded, []):
        key = (loaded.path, name) if name else loaded.path
        session.add(run_on, key)
        out += [session.result(key, lc.claim.id) for lc in loaded.claims]
    return out
