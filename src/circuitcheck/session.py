"""A session: load files, plan, run, measure, estimate, judge. The library's entry point.

    >>> from circuitcheck import check
    >>> for r in check("hypotheses/max_of_list.hyp.yaml"):
    ...     print(r.claim_id, r.verdict, r.main.estimate.statistic)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import hypothesis_file as H
from . import models
from .plan import Plan, run_key
from .where import evaluate as where_filter
from .verdict import ERROR, CaseResult, Result, combine, judge


@dataclass(frozen=True)
class Options:
    """Run-wide defaults; a file's own `model: {device, dtype}` wins over them."""

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1024
    cache: str = "off"  # value cache for reruns: on | read | write | off (see cache.py)
    cache_dir: str | None = None


@dataclass
class Row:
    """One judged quantity of a file, before Holm's correction fixes its interval level."""

    claim: int
    label: str
    point: float
    se: float
    bounds: tuple[float, float]
    estimate_at: Callable  # level -> Estimate
    clean: np.ndarray | None = None
    curve: list | None = None


class Session:
    def __init__(self, options: Options = Options()):
        self.options = options
        self.plan = Plan()
        self.runs: dict[tuple, object] = {}
        self.measured: dict[tuple, np.ndarray] = {}  # a measure of a run, shared by the claims that read it
        self.results: dict[Path, dict[str, Result]] = {}
        self.files: dict[Path, H.LoadedFile] = {}
        self.cache = None
        if options.cache != "off" and options.cache_dir:
            from .cache import ValueCache

            self.cache = ValueCache(options.cache_dir, options.cache)

    def add(self, loaded: H.LoadedFile) -> None:
        self.files[loaded.path] = loaded
        self.plan.add(loaded)

    def result(self, path: Path, claim_id: str) -> Result:
        if path not in self.results:
            self.results[path] = self._check_file(self.files[path])
        return self.results[path][claim_id]

    def forward_passes(self) -> int:
        return sum(r.forward_passes for r in self.runs.values())

    # ------------------------------------------------------------ running
    def load_options(self, loaded: H.LoadedFile) -> models.LoadOptions:
        m = loaded.spec.model
        return models.LoadOptions(_device(m.device or self.options.device), m.dtype or self.options.dtype)

    def model(self, loaded: H.LoadedFile):
        return models.load(loaded.model_source, self.load_options(loaded))

    def _runs(self, loaded: H.LoadedFile, spec):
        """The runs over one prompt set: on first use, the clean run and every planned intervention."""
        from .runs import Runs

        k = self.plan.key(loaded, spec)
        if k not in self.runs:
            group = self.plan.groups[k]
            model = self.model(loaded)
            runs = Runs(model, self._prompts(loaded, spec), loaded.spec.seed, self.options.batch_size,
                        source_prompts=lambda s: H.build_prompts(group.loaded.path, s))
            clean, planned = group.needs(model.cfg)
            runs.clean(clean)
            runs.run_many(list(planned.values()))
            self.runs[k] = runs
        return self.runs[k]

    def _measure(self, loaded, case, under) -> np.ndarray:
        k = (self.plan.key(loaded, case.prompts), run_key(under), case.measure.model_dump_json())
        if k not in self.measured:
            ck = self._cache_key(loaded, case, under)
            value = self.cache.get(ck) if ck else None
            if value is None:
                value = self._compute(loaded, case, under)
                if ck:
                    self.cache.put(ck, value)
            self.measured[k] = value
        return self.measured[k]

    def _cache_key(self, loaded, case, under) -> str | None:
        if self.cache is None:
            return None
        specs = [case.prompts] + H.variant_specs(case) + [iv.patch.source for iv in under if iv.patch is not None]
        return self.cache.key(loaded.model_source, [self._prompts(loaded, s) for s in specs], under, case.measure,
                              self.load_options(loaded), self.options.batch_size, loaded.spec.seed)

    def _prompts(self, loaded, spec):
        """The (numpy) prompt set of `spec`: the one its runs use, built without torch."""
        k = self.plan.key(loaded, spec)
        group = self.plan.groups.get(k)  # prompt paths are relative to the first file naming the group
        return H.prompt_set(group.loaded if group else loaded, k[-1], spec)

    def _compute(self, loaded, case, under) -> np.ndarray:
        from . import measures as M

        m = case.measure
        if m.ov_norm is not None:
            return M.ov_norm(self.model(loaded), m.ov_norm.head, m.ov_norm.tokens)
        if m.similarity is not None:
            acts = []
            for spec in H.variant_specs(case):
                runs = self._runs(loaded, spec)
                run = runs.run(under, M.needs(m, runs.model.cfg))
                acts.append(M.activation(m.similarity, run.cache, runs.prompts, runs.model))
            return M.similarity(acts)
        runs = self._runs(loaded, case.prompts)
        run = runs.run(under, M.needs(m, runs.model.cfg))
        return M.measure(m, run.logits, run.cache, runs.prompts, runs.model)

    def values(self, loaded, claim, case) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-prompt values of a case; for drop/rise/change, the paired difference and the clean values."""
        value = self._measure(loaded, case, case.under)
        rel = claim.expect.relative
        if rel not in ("drop", "rise", "change"):
            return value, None
        clean = self._measure(loaded, case, ())
        return (clean - value if rel == "drop" else value - clean), clean

    # ------------------------------------------------------------ judging a file
    def _rows(self, loaded: H.LoadedFile, ci: int, lc) -> list[Row]:
        from . import stats as S

        claim, seed = lc.claim, loaded.spec.seed
        expect = claim.expect
        bounds = expect.region.bounds()
        if expect.swept is not None:
            return [self._curve_row(loaded, ci, lc, bounds)]
        rows = []
        for case in lc.cases:
            value, clean = self.values(loaded, claim, case)
            if expect.order is not None:
                holds = _order_holds(expect.order, case.measure.ov_norm.tokens, value)
                rows.append(Row(ci, case.label, float(holds), 0.0, bounds,
                                lambda level, h=holds, v=value: S.exact(float(h), len(v), _order_text(v, case))))
                continue
            if case.where is not None:
                mask = where_filter(case.where, self._prompts(loaded, case.prompts))
                if expect.contrast is not None:
                    a, b = value[mask], value[~mask]
                    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
                    rows.append(Row(ci, case.label, float(a.mean() - b.mean()), se, bounds,
                                    lambda level, a=a, b=b: S.contrast(a, b, level, seed)))
                    continue
                value = value[mask]
                clean = clean[mask] if clean is not None else None
            se = value.std(ddof=1) / math.sqrt(value.size) if value.size > 1 else 0.0
            proportion = clean is None and case.measure.metric == "accuracy"  # 0/1 outcomes, not ranks
            rows.append(Row(ci, case.label, float(value.mean()), se, bounds,
                            lambda level, v=value, p=proportion: S.estimate(v, level, seed, proportion=p), clean))
        return rows

    def _curve_row(self, loaded, ci, lc, bounds) -> Row:
        from . import stats as S

        claim, seed = lc.claim, loaded.spec.seed
        matrix = np.stack([self.values(loaded, claim, c)[0] for c in lc.cases])
        xs = np.array([float(c.value) for c in lc.cases])
        expect, name = claim.expect, next(iter(claim.sweep))
        if expect.crosses is not None:
            c = expect.crosses
            stat = S.crossing(xs, c.level, c.direction == "up", c.interpolate)
            what = f"first {name} where the mean is {'≥' if c.direction == 'up' else '≤'} {c.level:g}"
        else:
            stat = S.slope(xs) if expect.slope is not None else S.r2(xs)
            what = f"{expect.swept} of the mean against {name}"
        if expect.crosses is not None:  # a crossing beyond the last sweep value cannot be claimed
            bounds = (bounds[0], min(bounds[1], float(xs.max())))
        probe = S.curve(matrix, stat, 0.95, seed, what)
        curve = [(c.value, float(v)) for c, v in zip(lc.cases, matrix.mean(1))]
        return Row(ci, f"curve over {name}", probe.statistic, probe.sd / math.sqrt(matrix.shape[1]), bounds,
                   lambda level: S.curve(matrix, stat, level, seed, what), curve=curve)

    def _check_file(self, loaded: H.LoadedFile) -> dict[str, Result]:
        """Every claim of the file, with Holm's correction over all its judged quantities."""
        from . import stats as S

        rows, errors = [], {}
        for ci, lc in enumerate(loaded.claims):
            try:
                rows += self._rows(loaded, ci, lc)
            except models.ModelUnavailable:
                raise
            except models.ModelError as exc:
                errors[ci] = str(exc)
            except Exception as exc:  # one claim that cannot be measured must not take the others down
                errors[ci] = H.unexpected("measuring this claim", exc)
        alphas = S.holm_alphas([S.p_inside(r.point, r.se, *r.bounds) for r in rows], loaded.spec.alpha)
        cases: dict[int, list[CaseResult]] = {}
        for row, a in zip(rows, alphas):
            region = loaded.claims[row.claim].claim.expect.region
            level = 1 - a if region.about is None else 1 - 2 * a  # `about` is an equivalence test (TOST)
            est = row.estimate_at(level)
            clean = S.estimate(row.clean, level, loaded.spec.seed) if row.clean is not None else None
            cases.setdefault(row.claim, []).append(
                CaseResult(row.label, judge(est, *row.bounds), est, row.bounds, clean, a, row.curve))
        return {lc.claim.id: self._result(loaded, lc, cases.get(ci, []), errors.get(ci))
                for ci, lc in enumerate(loaded.claims)}

    def _result(self, loaded, lc, cases, error=None) -> Result:
        claim = lc.claim
        q = claim.for_.kind if claim.for_ else None
        return Result(
            claim.id, claim.says, claim.expect.text(), q, ERROR if error else combine(q, [c.verdict for c in cases]),
            cases, str(loaded.path), lc.line, loaded.spec.seed, loaded.model_source.describe(),
            self.load_options(loaded).record(), claim.measure.kind, error,
        )


def _device(device: str) -> str:
    """Under pytest-xdist with several GPUs, `cuda` means this worker's own GPU."""
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if device != "cuda" or not worker.startswith("gw"):
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{int(worker[2:]) % count}" if count > 1 else device


def _order_holds(order, tokens, values) -> bool:
    ranked = [t for _, t in sorted(zip(values, tokens))]
    k_l, k_s = len(order.largest or []), len(order.smallest or [])
    ok = order.largest is None or set(ranked[len(ranked) - k_l:]) == set(order.largest)
    ok &= order.smallest is None or set(ranked[:k_s]) == set(order.smallest)
    if order.monotonic is not None:
        d = np.diff(values)
        ok &= bool(np.all(d >= 0) or np.all(d <= 0)) == order.monotonic
    return bool(ok)


def _order_text(values, case) -> str:
    pairs = ", ".join(f"{t}:{v:.3g}" for t, v in zip(case.measure.ov_norm.tokens, values))
    return f"exact, from weights (token:value {pairs})"


def check(path, options: Options = Options()) -> list[Result]:
    """Load one hypothesis file, run it, and return one `Result` per claim (no pytest needed)."""
    session = Session(options)
    loaded = H.load(path)
    session.add(loaded)
    return [session.result(loaded.path, lc.claim.id) for lc in loaded.claims]
