"""A case's per-prompt values: read from the value cache, taken from the pass that streamed every
planned measure over a prompt set, or computed on a whole run (a measure comparing runs, a
specificity mutant, a `python:` measure). The session owns one `Values`; judging asks it.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ..files import loader as H
from .plan import run_key


class Values:
    """The runs of a session's plan and the values measured on them, each computed once.

    `model(loaded)` and `load_options(loaded)` give a file's model and how it loads;
    `shared_work()` times work that several claims share (loading, clean and intervened runs);
    `on_run(done, planned)`, where given, hears of each planned run as it is done (progress)."""

    def __init__(self, plan, model, load_options, batch_size: int, cache=None, shared_work=nullcontext,
                 on_run=None):
        self.plan, self.model, self.load_options = plan, model, load_options
        self.batch_size, self.cache, self.shared_work = batch_size, cache, shared_work
        self.on_run = on_run
        self.runs_done: set[tuple] = set()  # (group key, run key) of the planned runs made so far
        self.runs: dict[tuple, object] = {}
        self.measured: dict[tuple, np.ndarray] = {}  # a measure of a run, shared by the claims that read it
        self.streamed: dict[tuple, dict] = {}  # prompt set -> values computed for the plan, not yet asked for
        self.whole_needs: dict[tuple, dict] = {}  # prompt set -> run key -> hooks of its whole-run measures

    def forward_passes(self) -> int:
        return sum(r.forward_passes for r in self.runs.values())

    def _runs(self, loaded: H.LoadedFile, spec, prompts_key: tuple):
        """The runs over one prompt set (made on first use; `_streamed` runs the plan through them)."""
        k = self.plan.key(loaded, prompts_key)
        if k not in self.runs:
            with self.shared_work():
                self.runs[k] = self._new_runs(loaded, spec, prompts_key)
            self.runs[k].on_run = lambda rk: self._ran(k, rk)
        return self.runs[k]

    def _ran(self, group_key: tuple, rk: tuple) -> None:
        """A run is done: counted once if the plan has it (not a mutant's, a scan's, a mean's set)."""
        if (group_key, rk) in self.plan.runs and (group_key, rk) not in self.runs_done:
            self.runs_done.add((group_key, rk))
            if self.on_run is not None:
                self.on_run(len(self.runs_done), len(self.plan.runs))

    def _new_runs(self, loaded: H.LoadedFile, spec, prompts_key: tuple):
        from .engine import Runs

        group = self.plan.groups[self.plan.key(loaded, prompts_key)]
        args = (self.model(loaded), self.prompts(loaded, spec, prompts_key), loaded.spec.seed, self.batch_size)
        source_prompts = lambda s: H.prompt_set(group.loaded, H.prompts_key(group.loaded.path, s), s)  # noqa: E731
        ref = H.reference_spec(spec)  # where `method: mean` takes its means
        kw = dict(source_prompts=source_prompts, reference=None if ref is None else lambda: source_prompts(ref))
        options = self.load_options(loaded)
        if options.runner == "transformer_lens":
            return Runs(*args, **kw)
        from .. import models
        from .nnsight_runner import NNsightRuns

        remote = options.runner.partition(":")[2] or None
        if remote == "ndif":  # NDIF runs the model: nothing of it is loaded here but its config
            return NNsightRuns(*args, **kw, remote=remote, hub_name=loaded.model_source.ref)
        return NNsightRuns(*args, **kw, hf=models.hf_module(loaded.model_source, options), remote=remote)

    def _streamed(self, loaded, spec, prompts_key: tuple) -> dict:
        """The values every planned case reads over one prompt set, computed in one sweep on first
        use ({(run key, measure JSON): values}; see Runs.stream). A run's logits and activations are
        dropped chunk by chunk; only these values are kept, and each leaves when it is asked for."""
        k = self.plan.key(loaded, prompts_key)
        if k not in self.streamed:
            runs = self._runs(loaded, spec, prompts_key)
            planned = {rk: (under, {name: m for name, m in ms.items() if streamable(m)})
                       for rk, (under, ms) in self.plan.groups[k].measured().items()}
            with self.shared_work():
                self.streamed[k] = runs.stream({rk: p for rk, p in planned.items() if p[1]})
        return self.streamed[k]

    def _measure(self, loaded, case, under) -> np.ndarray:
        """The case's per-prompt values under `under` (measure minus versus, where it has one)."""
        value = self._measure_one(loaded, case, under, case.measure)
        if case.versus is None:
            return value
        other = under if case.versus_under is None else case.versus_under
        return value - self._measure_one(loaded, case, other, case.versus)

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
        from .. import interventions as I

        m = m or case.measure
        specs = [(case.prompts, case.prompts_key), *case.variants]
        specs += [(s.prompts, H.prompts_key(loaded.path, s.prompts)) for s in I.sources(under)]
        ref = H.reference_spec(case.prompts) if under else None
        if ref is not None:  # a mean under `under` is over this set (not knowable without the model's cfg)
            specs.append((ref, H.prompts_key(loaded.path, ref)))
        return self.cache.key(loaded.model_source, [self.prompts(loaded, *s) for s in specs], under,
                              m, self.load_options(loaded), self.batch_size, loaded.spec.seed)

    def clean_values(self, loaded, spec, measures) -> list[np.ndarray]:
        """Per-prompt values of `measures` on the clean run over `spec` (a role scan's candidates),
        read from the value cache where it has them; one clean run computes the rest."""
        ps = H.prompt_set(loaded, H.prompts_key(loaded.path, spec), spec)
        keys = [self.cache.key(loaded.model_source, [ps], (), m, self.load_options(loaded), self.batch_size,
                               loaded.spec.seed) if self.cache else None for m in measures]
        values = [self.cache.get(k) if k else None for k in keys]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            from .. import measures as M
            from .engine import Runs

            with self.shared_work():
                model = self.model(loaded)
                todo = {str(i): measures[i] for i in missing}
                got = Runs(model, ps, loaded.spec.seed, self.batch_size).stream({(): ((), todo)})
                for i in missing:
                    values[i] = got[((), str(i))]
                    if isinstance(values[i], M.MeasureFailed):
                        raise values[i]
                    if keys[i]:
                        self.cache.put(keys[i], values[i])
        return values

    def prompts(self, loaded, spec, prompts_key):
        """The (numpy) prompt set of `spec`: the one its runs use, built without torch."""
        group = self.plan.groups.get(self.plan.key(loaded, prompts_key))  # paths are relative to the first file
        return H.prompt_set(group.loaded if group else loaded, prompts_key, spec)

    def _compute(self, loaded, case, under, m) -> np.ndarray:
        from .. import measures as M

        kind = M.kind_of(m)
        if kind.is_weights_only(m.body):
            try:
                return np.asarray(M.compute(m, M.Run(None, {}, None, self.model(loaded))), dtype=np.float64)
            except M.MeasureFailed as exc:
                if isinstance(exc.error, M.HandedChanged):
                    self._forget_model(loaded)
                raise
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
        if getattr(kind, "reads_clean", False):  # kl: this run against the clean run
            run.clean = self._view(loaded, case.prompts, case.prompts_key, (), m)
        try:
            return M.compute(m, run)
        except M.MeasureFailed as exc:
            if isinstance(exc.error, M.HandedChanged):
                self._forget_model(loaded)
            raise

    def _forget_model(self, loaded) -> None:
        """Registered code changed the model or its runs in memory: every run on it, and the model,
        are made afresh for the claims after (values already measured were measured before)."""
        from .. import models

        for store in (self.runs, self.streamed, self.whole_needs):
            for k in [k for k in store if k[0] == loaded.model_source]:
                del store[k]
        models.forget(loaded.model_source)

    def _view(self, loaded, spec, prompts_key, under, m):
        """What a measure reads: the run over one prompt set under `under`, with its activations."""
        from .. import measures as M

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

    def named(self, loaded, case) -> dict[str, np.ndarray]:
        """Per-prompt values of the case's measure on each of a circuit claim's named runs."""
        return {name: self._measure_one(loaded, case, under, case.measure) for name, under in case.runs}

    def values(self, loaded, claim, case) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-prompt values of a case; for drop/rise/change, the paired difference and the clean values."""
        value = self._measure(loaded, case, case.under)
        rel = claim.expect.relative
        if rel not in ("drop", "rise", "change"):
            return value, None
        clean = self._measure(loaded, case, ())
        return (clean - value if rel == "drop" else value - clean), clean


def _whole_run_hooks(measures, cfg) -> set[str]:
    from .. import measures as M

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
    from .. import measures as M

    kind = M.kind_of(m)
    return kind.streams_for(m.body) and not kind.weights_only and not kind.variants(m.body)
