"""The plan: every case of a session grouped by model and prompt set, so that each group runs clean
once and each distinct intervention once however many claims use it, and every measure its cases
read on a run is computed in the same pass (`Group.measured`, `Runs.stream`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..interventions import run_key
from ..models import ModelSource


@dataclass
class Group:
    source: ModelSource
    dtype: str | None
    prompts: "PromptSpec"
    loaded: "LoadedFile"  # the first file naming this group: prompt paths are relative to it
    cases: list[tuple["Case", bool]] = field(default_factory=list)  # (case, compares with clean)

    def measured(self) -> dict[tuple, tuple]:
        """Each run of the group with the measures its cases read on it: run key -> (under,
        {measure's JSON: measure}); the clean run's key is ()."""
        out: dict[tuple, tuple] = {}
        for case, relative in self.cases:
            for under, measures in reads(case, relative):
                _, have = out.setdefault(run_key(under), (under, {}))
                have.update((m.model_dump_json(), m) for m in measures)
        return out


def reads(case, relative: bool) -> list[tuple[tuple, list]]:
    """(interventions, measures) of each run a case reads: its own run; the clean run for
    drop/rise/change; the compared run of `versus` (its own run, or one under its own `under:`)."""
    own = [case.measure] + ([case.versus] if case.versus is not None and case.versus_under is None else [])
    out = [(case.under, own)] if not case.runs else []  # a circuit claim reads its named runs alone
    if case.under and relative:
        out.append(((), own))
    if case.versus_under is not None:
        out.append((case.versus_under, [case.versus]))
    out += [(under, [case.measure]) for _, under in case.runs]  # a circuit claim's runs
    return out


class Plan:
    """Cases of hypothesis files (hypothesis_file.LoadedFile), grouped by model and prompt set."""

    def __init__(self):
        self.groups: dict[tuple, Group] = {}
        self.runs: set[tuple] = set()  # (group key, run key) of every run planned: what progress counts

    def add(self, loaded) -> None:
        for lc in loaded.claims:
            relative = lc.claim.expect.relative in ("drop", "rise", "change")
            for case in lc.cases:
                for spec, prompts_key in [(case.prompts, case.prompts_key), *case.variants]:
                    self.group(loaded, spec, prompts_key).cases.append((case, relative))
                    k = self.key(loaded, prompts_key)
                    self.runs.update((k, run_key(under)) for under, ms in reads(case, relative) if not weights_only(ms))

    def key(self, loaded, prompts_key: tuple) -> tuple:
        # every field of the file's `model:` (dtype, device, placement, weight processing, attention):
        # two files loading one model differently must not share its runs
        return (loaded.model_source, loaded.spec.model.model_dump_json(), prompts_key)

    def group(self, loaded, spec, prompts_key: tuple) -> Group:
        k = self.key(loaded, prompts_key)
        if k not in self.groups:
            self.groups[k] = Group(loaded.model_source, loaded.spec.model.dtype, spec, loaded)
        return self.groups[k]


def weights_only(measures) -> bool:
    """Whether every measure reads the weights alone: no run of the model is made for them."""
    from .. import measures as M

    return all(M.kind_of(m).is_weights_only(m.body) for m in measures)
