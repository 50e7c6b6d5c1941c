"""The plan: every case of a session grouped by model and prompt set, so that each group gets one
clean run holding the union of the activations its cases read, and each distinct intervention
runs once however many claims use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import interventions as I
from .interventions import run_key  # noqa: F401  (plan.run_key: how runs are told apart)
from . import measures as M
from .models import ModelSource


@dataclass
class Group:
    source: ModelSource
    dtype: str | None
    prompts: "PromptSpec"
    loaded: "LoadedFile"  # the first file naming this group: prompt paths are relative to it
    cases: list[tuple["Case", bool]] = field(default_factory=list)  # (case, compares with clean)

    def needs(self, cfg) -> tuple[set[str], dict[tuple, tuple]]:
        """Activations of the clean run, and of each intervened run (key -> (under, names))."""

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


class Plan:
    """Cases of hypothesis files (hypothesis_file.LoadedFile), grouped by model and prompt set."""

    def __init__(self):
        self.groups: dict[tuple, Group] = {}

    def add(self, loaded) -> None:
        for lc in loaded.claims:
            relative = lc.claim.expect.relative in ("drop", "rise", "change")
            for case in lc.cases:
                for spec, prompts_key in [(case.prompts, case.prompts_key), *case.variants]:
                    self.group(loaded, spec, prompts_key).cases.append((case, relative))

    def key(self, loaded, prompts_key: tuple) -> tuple:
        m = loaded.spec.model
        return (loaded.model_source, m.dtype, m.device, prompts_key)

    def group(self, loaded, spec, prompts_key: tuple) -> Group:
        k = self.key(loaded, prompts_key)
        if k not in self.groups:
            self.groups[k] = Group(loaded.model_source, loaded.spec.model.dtype, spec, loaded)
        return self.groups[k]
