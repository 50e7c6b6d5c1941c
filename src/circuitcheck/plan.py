"""The plan: every claim of a session grouped by model and prompt set, so that each group gets one
clean run holding the union of the activations its claims read, and each distinct intervention
runs once however many claims use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .hypothesis_file import Case, LoadedFile
from .models import ModelSource


@dataclass
class Group:
    source: ModelSource
    dtype: str
    prompts_key: tuple
    loaded: LoadedFile  # the first file naming this group: it builds the prompts
    cases: list[tuple[Case, bool]] = field(default_factory=list)  # (case, compares with clean)

    def needs(self, cfg) -> tuple[set[str], dict[tuple, tuple]]:
        """Activations of the clean run, and of each intervened run (key -> (under, names))."""
        from . import interventions as I  # torch loads when runs are planned, not at collection
        from . import measures as M
        from .runs import key as run_key

        clean: set[str] = set()
        runs: dict[tuple, tuple] = {}
        for case, relative in self.cases:
            names = M.needs(case.measure, cfg)
            clean |= I.clean_needs(case.under, cfg)
            if not case.under or relative:
                clean |= names
            if case.under:
                under, have = runs.get(run_key(case.under), (case.under, set()))
                runs[run_key(case.under)] = (under, have | names)
        return clean, runs


class Plan:
    def __init__(self):
        self.groups: dict[tuple, Group] = {}

    def add(self, loaded: LoadedFile) -> None:
        for lc in loaded.claims:
            g = self.group_of(loaded, lc)
            relative = lc.claim.expect.relative is not None
            g.cases += [(c, relative) for c in lc.cases]

    def group_of(self, loaded: LoadedFile, lc) -> Group:
        k = self.key(loaded, lc)
        if k not in self.groups:
            self.groups[k] = Group(loaded.model_source, loaded.spec.model.dtype, lc.prompts_key, loaded)
        return self.groups[k]

    def key(self, loaded: LoadedFile, lc) -> tuple:
        return (loaded.model_source, loaded.spec.model.dtype, lc.prompts_key)
