"""A session: load files, plan, run, measure, estimate, judge. The library's entry point.

    >>> from circuitcheck import check
    >>> for r in check("hypotheses/max_of_list.hyp.yaml"):
    ...     print(r.claim_id, r.verdict, r.main.estimate.statistic)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import hypothesis_file as H
from . import models
from . import stats as S
from .plan import Plan
from .verdict import CaseResult, Result, combine, judge


@dataclass(frozen=True)
class Options:
    device: str = "cpu"
    dtype: str | None = None  # overrides every file's model.dtype
    batch_size: int = 1024


class Session:
    def __init__(self, options: Options = Options()):
        self.options = options
        self.plan = Plan()
        self.runs: dict[tuple, object] = {}
        self.results: dict[Path, dict[str, Result]] = {}
        self.files: dict[Path, H.LoadedFile] = {}

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
        return models.LoadOptions(self.options.device, self.options.dtype or loaded.spec.model.dtype)

    def _runs(self, loaded: H.LoadedFile, lc):
        from .runs import Runs

        k = self.plan.key(loaded, lc)
        if k not in self.runs:
            group = self.plan.groups[k]
            model = models.load(loaded.model_source, self.load_options(loaded))
            ps = H.prompt_set(group.loaded, group.prompts_key, lc.claim.prompts)
            runs = Runs(model, ps, loaded.spec.seed, self.options.batch_size,
                        source_prompts=lambda spec: H.build_prompts(loaded.path, spec))
            clean, planned = group.needs(model.cfg)
            runs.clean(clean)
            for under, names in planned.values():
                runs.run(under, names)
            self.runs[k] = runs
        return self.runs[k]

    def _values(self, loaded, lc, case):
        from .measures import measure, needs

        runs = self._runs(loaded, lc)
        cfg = runs.model.cfg
        run = runs.run(case.under, needs(case.measure, cfg))
        value = measure(case.measure, run.logits, run.cache, runs.prompts, runs.model)
        rel = lc.claim.expect.relative
        if rel is None:
            return value, None
        clean_run = runs.clean(needs(case.measure, cfg))
        clean = measure(case.measure, clean_run.logits, clean_run.cache, runs.prompts, runs.model)
        return (clean - value if rel == "drop" else value - clean), clean

    # ------------------------------------------------------------ judging a file
    def _check_file(self, loaded: H.LoadedFile) -> dict[str, Result]:
        """Every claim of the file, with Holm's correction over all its cases."""
        alpha, seed = loaded.spec.alpha, loaded.spec.seed
        rows = []  # (claim index, case, values, clean values, bounds)
        for ci, lc in enumerate(loaded.claims):
            bounds = lc.claim.expect.region.bounds()
            for case in lc.cases:
                value, clean = self._values(loaded, lc, case)
                rows.append((ci, case, value, clean, bounds))
        pvals = [S.p_inside(v.mean(), v.std(ddof=1) if v.size > 1 else 0.0, v.size, *b) for _, _, v, _, b in rows]
        alphas = S.holm_alphas(pvals, alpha)
        cases: dict[int, list[CaseResult]] = {}
        for (ci, case, value, clean, bounds), a in zip(rows, alphas):
            two_sided = loaded.claims[ci].claim.expect.region.about is None
            level = 1 - a if two_sided else 1 - 2 * a  # `about` is an equivalence test (TOST)
            est = S.estimate(value, level, seed)
            clean_est = S.estimate(clean, level, seed) if clean is not None else None
            cases.setdefault(ci, []).append(CaseResult(case.label, judge(est, *bounds), est, bounds, clean_est, a))
        return {lc.claim.id: self._result(loaded, lc, cases[ci]) for ci, lc in enumerate(loaded.claims)}

    def _result(self, loaded, lc, cases) -> Result:
        claim = lc.claim
        q = claim.for_.kind if claim.for_ else None
        return Result(
            claim.id, claim.says, claim.expect.text(), q, combine(q, [c.verdict for c in cases]), cases,
            str(loaded.path), lc.line, loaded.spec.seed, loaded.model_source.describe(),
            self.load_options(loaded).record(), claim.measure.kind,
        )


def check(path, options: Options = Options()) -> list[Result]:
    """Load one hypothesis file, run it, and return one `Result` per claim (no pytest needed)."""
    session = Session(options)
    loaded = H.load(path)
    session.add(loaded)
    return [session.result(loaded.path, lc.claim.id) for lc in loaded.claims]
