"""The plan: every case of a session grouped by model and prompt set, so that each group gets one
clean run holding the union of the activations its cases read, and each distinct intervention
runs once however many claims use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .hypothesis_file import Case, LoadedFile, prompts_key, variant_specs
from .models import ModelSource
from .spec import PromptSpec


@dataclass
class Group:
    source: ModelSource
    dtype: str | None
    prompts: PromptSpec
    loaded: LoadedFile  # the first file naming this group: prompt paths are relative to it
    cases: list[tuple[Case, bool]] = field(default_factory=list)  # (case, compares with clean)

    def needs(self, cfg) -> tuple[set[str], dict[tuple, tuple]]:
        """Activations of the clean run, and of each intervened run (key -> (under, names))."""
        from . import interventions as I  # torch loads when runs are planned, not at collection
        from . import measures as M

        clean: set[str] = set()
        runs: dict[tuple, tuple] = {}
        for case, relative in self.cases:
            names = M.needs(case.measure, cfg) | (M.needs(case.versus, cfg) if case.versus is not None else set())
            clean |= I.clean_needs(case.under, cfg)
            if not case.under or relative:
                clean |= names
            if case.under:
                under, have = runs.get(run_key(case.under), (case.under, set()))
                runs[run_key(case.under)] = (under, have | names)
        return clean, runs


def run_key(under) -> tuple:
    """Identifies a run by its interventions (torch-free, so cached values are found without it)."""
    return tuple(iv.model_dump_json(by_alias=True) for iv in under)


class Plan:
    def __init__(self):
        self.groups: dict[tuple, Group] = {}

    def add(self, loaded: LoadedFile) -> None:
        for lc in loaded.claims:
            relative = lc.claim.expect.relative in ("drop", "rise", "change")
            for case in lc.cases:
                for spec in [case.prompts] + variant_specs(case):
                    self.group(loaded, spec).cases.append((case, relative))

    def key(self, loaded: LoadedFile, spec: PromptSpec) -> tuple:
        m = loaded.spec.model
        return (loaded.model_source, m.dtype, m.device, prompts_key(loaded.path, spec))

    def group(self, loaded: LoadedFile, spec: PromptSpec) -> Group:
        k = self.key(loaded, spec)
        if k not in self.groups:
            self.groups[k] = Group(loaded.model_source, loaded.spec.model.dtype, spec, loaded)
        return self.groups[k]
