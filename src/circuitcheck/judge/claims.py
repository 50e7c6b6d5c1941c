"""Claims judged: each claim's rows (one per case, or one for a sweep's curve) from its per-prompt
values, the claims of a family judged together (Holm's step-down), and the `Result` a reader gets.

The values come from the session's `runs.values.Values` (`source`), never computed here.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import models
from .. import prompts as P
from ..files import loader as H
from ..files.atomic import OutputError
from ..language import registry
from ..models.model_files import ModelFileError
from ..prompts.where import evaluate as where_filter
from .verdict import ERROR, FAIL, RECORDED, CaseResult, Result, combine, judge


@dataclass
class Row:
    """One judged quantity of a claim: a case's bound, or a sweep's curve."""

    label: str
    bound: object  # stats.Bound
    region: tuple[float, float]
    clean: object | None = None  # stats.Bound of the clean run, for drop/rise/change
    curve: list | None = None
    # the per-prompt values the bound came from, a digest of their prompts and what the values are
    # (bound_for's keywords): a baseline keeps them, so drift is a paired test (report/drift.py)
    values: np.ndarray | None = None
    prompts: str = ""
    kind: dict | None = None

    @property
    def undefined(self) -> bool:
        """The quantity does not exist for these data (R² of a flat curve): the case fails."""
        return bool(getattr(self.bound, "flat", False))


class Judge:
    """Judges claims on the values `source` gives (`values`, `prompts`, `model`, `load_options`).

    `record`: every claim measured without a verdict; `dump(loaded, claim, case, kept, values,
    clean, group, prompts)`: called with each case's per-prompt values (`--cc-dump-values`);
    `shared_seconds()`: time spent so far on work claims share, kept out of each claim's own time."""

    def __init__(self, source, record: bool = False, cache=None, dump=None, shared_seconds=lambda: 0.0):
        self.source, self.record, self.cache, self.dump = source, record, cache, dump
        self.shared_seconds = shared_seconds
        self.seconds: dict[tuple, float] = {}  # each claim's own measuring time, by (file key, claim id)

    def recording(self, claim) -> bool:
        """Whether a claim is measured without a verdict (`expect: record`, `circuitcheck measure`)."""
        return self.record or claim.expect.record is not None

    def rows(self, loaded: H.LoadedFile, lc) -> list[Row]:
        """Every judged quantity of one claim (one per case; one for a sweep's curve)."""
        from .. import measures as M
        from . import stats as S

        claim, seed = lc.claim, loaded.spec.seed
        expect = claim.expect
        region = None if expect.bound_later else expect.region.bounds()  # else: each case's own
        if expect.swept is not None and not self.recording(claim):
            return [self._curve_row(loaded, lc, region)]
        if expect.circuit_form is not None:
            return [self._circuit_row(loaded, claim, case, region) for case in lc.cases]
        rows = []
        for case in lc.cases:
            if case.expect is not None:  # `at_least: $v`: each case has its own region
                expect, region = case.expect, case.expect.region.bounds()
            value, clean = self.source.values(loaded, claim, case)
            ps = self.source.prompts(loaded, case.prompts, case.prompts_key)
            kept = np.arange(value.size)
            measure_kind = M.kind_of(case.measure)
            vector_recorded = self.recording(claim) and expect.order is None and value.size > 1
            if measure_kind.is_weights_only(case.measure.body) and not vector_recorded:  # exact: no sampling
                rows.append(Row(case.label, _exact(measure_kind, case.measure, expect, value), region))
                continue
            value_kind = self._value_kind(loaded, case)
            mask, has = None, _defined(case, ps)
            whole = case.prompts.population
            if case.where is not None:
                mask = where_filter(case.where, ps)
                if expect.relative == "contrast":
                    self._dump(loaded, claim, case, kept, value, None, mask, ps)
                    groups = [S.bound_for(value[m & has], seed, population=whole, **value_kind) for m in (mask, ~mask)]
                    rows.append(Row(case.label, S.Difference(*groups), region))
                    continue
            if case.where is not None or not has.all():
                mask = has if mask is None else mask & has
                kept, value = kept[mask], value[mask]
                clean = clean[mask] if clean is not None else None
            self._dump(loaded, claim, case, kept, value, clean, None, ps)
            if expect.correlates is not None:
                r = self._correlation(loaded, case, value, mask, expect.correlates.with_)
                rows.append(Row(case.label, S.exactly(r) if whole and not r.flat else r, region))
                continue
            kept_digest = prompt_digest(ps, kept)
            if claim.clusters is not None:  # one value per group: the bound is over group means
                value, clean, value_kind = cluster_means(ps.fields[claim.clusters][kept], value, clean, value_kind)
            if clean is not None:
                kind = {"value_range": _spread(value_kind.get("value_range")),
                        "paired_binary": value_kind.get("binary", False)}
                rows.append(Row(case.label, S.bound_for(value, seed, population=whole, **kind), region,
                                S.bound_for(clean, seed, population=whole, **value_kind), values=value,
                                prompts=kept_digest, kind=kind))
            else:
                rows.append(Row(case.label, S.bound_for(value, seed, population=whole, **value_kind), region,
                                values=value, prompts=kept_digest, kind=value_kind))
        return rows

    def _circuit_row(self, loaded, claim, case, region) -> Row:
        """A case of a claim about a circuit: its quantity from its named runs (judge/circuit.py)."""
        from . import circuit as C

        form = claim.expect.circuit_form
        named = self.source.named(loaded, case)
        bound = C.bound(form, named, loaded.spec.seed, self._value_kind(loaded, case))
        return Row(case.label, bound, C.region(form, region))

    def _dump(self, loaded, claim, case, kept, value, clean, group, ps):
        if self.dump is not None and value.size == kept.size:  # per-prompt values (not ov_norm's per token)
            self.dump(loaded, claim, case, kept, value, clean, group, ps)

    def _correlation(self, loaded, case, value, mask, spec: str):
        from . import correlation as C

        data = P.quantity(self.source.prompts(loaded, case.prompts, case.prompts_key), spec)
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
        from .. import measures as M

        ps = self.source.prompts(loaded, case.prompts, case.prompts_key)
        return M.kind_of(measure).values(measure.body, ps, lambda: self._d_vocab(loaded))

    def _d_vocab(self, loaded) -> int:
        d_vocab = loaded.limits.get("d_vocab_out") or loaded.limits.get("d_vocab")
        return d_vocab or self.source.model(loaded).cfg.d_vocab_out  # the config did not say: ask the model

    def _curve_row(self, loaded, lc, region) -> Row:
        from . import stats as S

        claim, seed = lc.claim, loaded.spec.seed
        matrix = np.stack([self.source.values(loaded, claim, c)[0] for c in lc.cases])
        for c, row in zip(lc.cases, matrix):
            self._dump(loaded, claim, c, np.arange(row.size), row, None, None, self.source.prompts(loaded, c.prompts, c.prompts_key))
        xs = np.array([float(c.value) for c in lc.cases])
        expect, name = claim.expect, next(iter(claim.sweep))
        kind = self._value_kind(loaded, lc.cases[0])
        whole = lc.cases[0].prompts.population
        if claim.expect.relative in ("drop", "rise", "change"):
            kind = {"value_range": _spread(kind.get("value_range")), "paired_binary": kind.get("binary", False)}
        curve = [(c.value, float(v)) for c, v in zip(lc.cases, matrix.mean(1))]
        if expect.crosses is not None:
            c = expect.crosses
            mode = {None: "bracket", True: "linear", False: "discrete"}[c.interpolate]
            shown = "interpolated; interval: the bracket" if mode == "linear" else mode
            what = f"first {name} where the mean is {'≥' if c.direction == 'up' else '≤'} {c.level:g} ({shown})"
            bound = S.Crossing(xs, [S.bound_for(row, seed, population=whole, **kind) for row in matrix], c.level,
                               c.direction == "up",
                               mode, what)
            region = (region[0], min(region[1], float(xs.max())))  # a crossing beyond the sweep cannot be claimed
        elif expect.slope is not None:
            per_prompt = S.slope_weights(xs) @ matrix
            rng = S.slope_range(xs, kind.get("value_range") or ((-1, 1) if kind.get("paired_binary") else
                                                                 (0, 1) if kind.get("binary") else None))
            bound = S.bound_for(per_prompt, seed, value_range=rng, population=whole)
            bound.method = f"slope of the mean against {name}: {bound.method}"
        else:
            bound = S.R2(xs, matrix)
            bound = S.exactly(bound) if whole and not bound.flat else bound
        return Row(f"curve over {name}", bound, region, curve=curve)

    def judged(self, files: dict) -> dict[Path, dict[str, Result]]:
        """Judge the claims of `files` ({key: loaded file}) as one family: Holm's step-down over their claims."""
        from .. import measures as M
        from . import stats as S

        entries, errors = [], {}
        for path, loaded in files.items():
            for lc in loaded.claims:
                start, shared = time.perf_counter(), self.shared_seconds()
                try:
                    entries.append((path, loaded, lc, self.rows(loaded, lc)))
                except models.ModelUnavailable:
                    raise
                except (models.ModelError, registry.CodeError, OutputError) as exc:  # their own words
                    errors[(path, lc.claim.id)] = str(exc), ""
                except ModelFileError as exc:  # weights swapped after collection
                    errors[(path, lc.claim.id)] = f"{exc} ({exc.hint})", ""
                except M.MeasureFailed as exc:  # its own words, and where its measure raised
                    errors[(path, lc.claim.id)] = str(exc), _trace(exc.error)
                except Exception as exc:  # one claim that cannot be measured must not take the others down
                    errors[(path, lc.claim.id)] = H.unexpected("measuring this claim", exc), _trace(exc)
                finally:
                    own = time.perf_counter() - start - (self.shared_seconds() - shared)
                    self.seconds[(path, lc.claim.id)] = max(own, 0.0)
        # Recorded claims test nothing: they stay out of Holm's family, with bounds at the file's alpha.
        recorded = [e for e in entries if self.recording(e[2].claim)]
        entries = [e for e in entries if not self.recording(e[2].claim)]
        alpha = min(f.spec.alpha for f in files.values())
        # A claim that errors was not tested, yet it is one of the file's claims: it stays in Holm's
        # family with p = 1 (a valid p-value of any hypothesis; it is never rejected), so an error
        # never loosens the others' levels and the family is the one the file states.
        failed = sum(not self.recording(lc.claim) for p, loaded in files.items() for lc in loaded.claims
                     if (p, lc.claim.id) in errors)
        levels = S.holm([claim_p(lc.claim, rows) for _, _, lc, rows in entries] + [1.0] * failed, alpha)
        family = f"Holm over {len(entries) + failed} claims of {'this file' if len(files) == 1 else f'{len(files)} files'}"
        out: dict[Path, dict[str, Result]] = {p: {} for p in files}
        for path, loaded, lc, rows in recorded:  # path: the session's key for the file
            cases = [_case(row, loaded.spec.alpha) for row in rows]
            for c in cases:
                c.verdict = RECORDED
            out[path][lc.claim.id] = self.result(loaded, lc, cases, family="recorded, not judged")
        for (path, loaded, lc, rows), level in zip(entries, levels):
            out[path][lc.claim.id] = self.judge_at(loaded, lc, level, rows, f"{family}, α={level:.3g}")
        for path, loaded in files.items():
            for lc in loaded.claims:
                if (path, lc.claim.id) in errors:
                    error, trace = errors[(path, lc.claim.id)]
                    out[path][lc.claim.id] = self.result(loaded, lc, [], error, trace=trace)
        return out

    def judge_at(self, loaded, lc, level: float, rows=None, family: str = "") -> Result:
        """One claim judged at a given error level (its Holm level, or the level of the claim a
        specificity mutant stands for)."""
        with self.remembering():
            rows = self.rows(loaded, lc) if rows is None else rows
            cases = [_case(row, case_level(lc.claim, rows, level)) for row in rows]
        result = self.result(loaded, lc, cases, family=family or f"judged alone at α={level:.3g}")
        result.level = level
        return result

    @contextmanager
    def remembering(self):
        """Bounds answer from the value cache what a run before computed on the same values (stats.py)."""
        from . import stats as S

        with S.remembering(self.cache):
            yield
        if self.cache is not None:
            self.cache.flush()

    def result(self, loaded, lc, cases, error=None, family="", trace="") -> Result:
        claim = lc.claim
        q = claim.for_.kind if claim.for_ else None
        verdict = ERROR if error else RECORDED if self.recording(claim) else combine(q, [c.verdict for c in cases])
        expected = "recorded" if self.record and claim.expect.record is None else \
            _compared(claim) + claim.expect.text()
        return Result(
            claim.id, claim.says, expected, q, verdict, cases, str(loaded.path), lc.line, loaded.spec.seed,
            loaded.model_source.describe(), self._record(loaded, lc), describe_measure(claim.measure), error,
            under=describe_under(claim.under), family=family, traceback=trace,
        )

    def _record(self, loaded, lc) -> dict:
        """What was applied: the load options, and the padding of the claim's prompts if any."""
        out = self.source.load_options(loaded).record()
        ps = self.source.prompts(loaded, lc.cases[0].prompts, lc.cases[0].prompts_key) if lc.cases else None
        if ps is not None and ps.mask is not None:
            out.update(attention_mask=f"{ps.extra['padding']} padding", pad_token=ps.extra["pad_token"])
        return out


def _compared(claim) -> str:
    """How the expectation's quantity compares two values, for the report's `expected`."""
    if claim.versus_under is not None:
        other = describe_under(claim.versus_under) or "nothing (the clean run)"
        return f"difference from the run under {other}: "
    return "difference " if claim.versus or claim.ranks else ""


def _trace(exc: BaseException) -> str:
    """The traceback of an error, for pytest to show on request (-v, --tb=long)."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

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
    return CaseResult(row.label, verdict, est, row.region, clean, a, row.curve, bound=row.bound,
                      values=row.values, prompts=row.prompts, kind=row.kind)

def cluster_means(labels, value, clean, kind: dict):
    """Per-group means of a claim's values (and clean values), in the order groups first appear, and
    what they are: a group's mean of 0/1 outcomes lies in [0, 1], of paired changes in [-1, 1].
    A claim that generalises over templates or sentences is judged over groups, not prompts: prompts
    of one template are not independent (for one shipped claim the se over sentences was 2.7 times
    the se over prompts; issue 22, item 11)."""
    _, first, inverse = np.unique(np.asarray(labels).astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)
    means = lambda x: np.array([x[inverse == g].mean() for g in order])  # noqa: E731
    if kind.get("binary"):
        kind = {"value_range": (0.0, 1.0)}
    elif kind.get("paired_binary"):
        kind = {"value_range": (-1.0, 1.0)}
    return means(value), (means(clean) if clean is not None else None), kind


def prompt_digest(ps, kept) -> str:
    """sha256 of the kept prompts' tokens and targets: which prompts a case's values belong to, so
    that a baseline compares per prompt only where the prompts are the same."""
    import hashlib

    kept = np.asarray(kept, dtype=np.int64)
    h = hashlib.sha256()
    for part in (ps.tokens, ps.target_pos, ps.target_tok):
        h.update(np.ascontiguousarray(np.asarray(part)[kept]).tobytes())
    return h.hexdigest()[:32]

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
    from .. import measures as M

    return M.kind_of(measure).describe(measure.body)

def describe_under(under) -> str:
    """`ablate(heads=[L0H1], method=mean); scale_attention(...)`: the interventions, as a reader names them."""
    from .. import interventions as I

    return "; ".join(I.kind_of(iv).describe(iv.body) for iv in under)

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


def _defined(case, ps) -> np.ndarray:
    """The prompts the case's measures have a value on: a selection inside a row (`targets`, a query
    set `{where: ...}`) that is empty in a prompt leaves that prompt out, as `where:` would."""
    from .. import measures as M

    has = np.ones(ps.n, bool)
    for m in (case.measure, case.versus):
        d = None if m is None else M.kind_of(m).defined(m.body, ps)
        if d is not None:
            has &= d
    return has
