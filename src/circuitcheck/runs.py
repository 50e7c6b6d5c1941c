"""Model runs: forward passes over one prompt set, clean once and each distinct intervention once.

Only the activations some claim reads are kept (the capture hooks are the names asked for), the
prompts go through in chunks of `batch_size`, and every pass runs under `torch.inference_mode`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import interventions as I
from . import prompts as P


@dataclass
class Run:
    logits: torch.Tensor  # [n, seq, vocab]
    cache: dict[str, torch.Tensor]  # hook name -> activation over all prompts


def key(under) -> tuple:
    return tuple(iv.model_dump_json(by_alias=True) for iv in under)


class Runs:
    def __init__(self, model, prompts: P.PromptSet, seed: int = 0, batch_size: int = 1024, source_prompts=None):
        self.model, self.prompts, self.seed, self.batch_size = model, prompts, seed, batch_size
        self.source_prompts = source_prompts  # PromptSpec -> PromptSet, for patching
        self.device = next(model.parameters()).device
        self.tokens = torch.as_tensor(prompts.tokens, device=self.device)
        self.done: dict[tuple, Run] = {}
        self.sources: dict[tuple, torch.Tensor] = {}  # patch source activations
        self.forward_passes = 0

    def clean(self, need: set[str]) -> Run:
        return self.run((), need)

    def run(self, under, need: set[str]) -> Run:
        """The run under `under`, keeping at least the activations in `need`."""
        k = key(under)
        have = self.done.get(k)
        if have is not None and need <= set(have.cache):
            return have
        need = set(need) | (set(have.cache) if have else set())
        clean = self.clean(I.clean_needs(under, self.model.cfg)).cache if under else {}
        self._sources(under)
        self.done[k] = self._forward(self.tokens, under, need, clean)
        return self.done[k]

    def _sources(self, under):
        for iv in under:
            if iv.patch is not None and I.patch_key(iv.patch) not in self.sources:
                ps = self.source_prompts(iv.patch.source)
                if ps.tokens.shape != self.prompts.tokens.shape:
                    raise ValueError(f"patch source prompts have shape {ps.tokens.shape}, "
                                     f"the target prompts {self.prompts.tokens.shape}: they must match")
                tokens = torch.as_tensor(ps.tokens, device=self.device)
                name = I.patch_hook_name(iv.patch)
                self.sources[I.patch_key(iv.patch)] = self._forward(tokens, (), {name}, {}).cache[name]

    def _forward(self, tokens, under, need, clean) -> Run:
        logits, caches = [], {name: [] for name in need}
        with torch.inference_mode():
            for start in range(0, tokens.shape[0], self.batch_size):
                rows = slice(start, min(start + self.batch_size, tokens.shape[0]))
                ctx = I.Context(self.model.cfg, self.prompts, clean, rows, self.seed, self.sources)
                hooks = I.hooks(under, ctx) + [(name, _keep(caches[name])) for name in need]
                logits.append(self.model.run_with_hooks(tokens[rows], fwd_hooks=hooks))
                self.forward_passes += 1
        return Run(torch.cat(logits), {name: torch.cat(v) for name, v in caches.items()})


def _keep(store: list):
    def hook(x, hook):
        store.append(x.detach().clone())
        return x

    return hook
