"""Model runs: forward passes over one prompt set, clean once and each distinct intervention once.

Only the activations some claim reads are kept (the capture hooks are the names asked for), the
prompts go through in chunks of `batch_size`, and every pass runs under `torch.inference_mode`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import interventions as I
from . import prompts as P
from .interventions import run_key as key


@dataclass
class Run:
    logits: torch.Tensor  # [n, seq, vocab]
    cache: dict[str, torch.Tensor]  # hook name -> activation over all prompts


class Runs:
    def __init__(self, model, prompts: P.PromptSet, seed: int = 0, batch_size: int = 1024, source_prompts=None):
        self.model, self.prompts, self.seed, self.batch_size = model, prompts, seed, batch_size
        self.source_prompts = source_prompts  # PromptSpec -> PromptSet, for patching
        self.device = next(model.parameters()).device
        self.tokens = torch.as_tensor(prompts.tokens, device=self.device)
        self.mask = _mask(prompts, self.device)
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

    def run_many(self, planned: list[tuple]) -> None:
        """Run many interventions, stacked along the batch dimension: each pass holds as many copies
        of the prompt set as `batch_size` allows, each copy under its own intervention."""
        todo = [(u, n) for u, n in planned if key(u) not in self.done or not n <= set(self.done[key(u)].cache)]
        per_pass = self.batch_size // self.prompts.n
        if per_pass < 2:  # the prompt set alone fills a pass: chunk prompts instead
            for under, need in todo:
                self.run(under, need)
            return
        clean_need = set().union(*(I.clean_needs(u, self.model.cfg) for u, _ in todo)) if todo else set()
        clean = self.clean(clean_need).cache
        for u, _ in todo:
            self._sources(u)
        for start in range(0, len(todo), per_pass):
            self._stacked(todo[start:start + per_pass], clean)

    def _stacked(self, group, clean):
        n = self.prompts.n
        ctx = I.Context(self.model.cfg, self.prompts, clean, slice(0, n), self.seed, self.sources)
        parts: dict[str, list] = {}  # hook name -> (block, fn) of every stacked intervention
        names = set()
        for i, (under, need) in enumerate(group):
            for name, fn in I.hooks(under, ctx):
                parts.setdefault(name, []).append((slice(i * n, (i + 1) * n), fn))
            names |= need
        caches = {name: [] for name in names}
        hooks = [(name, _on_blocks(p)) for name, p in parts.items()] + [(name, _keep(caches[name])) for name in names]
        mask = None if self.mask is None else self.mask.repeat(len(group), 1)
        with torch.inference_mode():
            logits = self.model.run_with_hooks(self.tokens.repeat(len(group), 1), fwd_hooks=hooks, **_masked(mask))
        self.forward_passes += 1
        for i, (under, need) in enumerate(group):
            block = slice(i * n, (i + 1) * n)
            self.done[key(under)] = Run(logits[block], {name: caches[name][0][block] for name in need})

    def _sources(self, under):
        for source in I.sources(under):
            if source.key not in self.sources:
                ps = self.source_prompts(source.prompts)
                if ps.tokens.shape != self.prompts.tokens.shape:
                    raise ValueError(f"source prompts have shape {ps.tokens.shape}, "
                                     f"the target prompts {self.prompts.tokens.shape}: they must match")
                tokens = torch.as_tensor(ps.tokens, device=self.device)
                mask = _mask(ps, self.device)
                self.sources[source.key] = self._forward(tokens, (), {source.hook}, {}, mask).cache[source.hook]

    def _forward(self, tokens, under, need, clean, mask=False) -> Run:
        mask = self.mask if mask is False else mask
        logits, caches = [], {name: [] for name in need}
        with torch.inference_mode():
            for start in range(0, tokens.shape[0], self.batch_size):
                rows = slice(start, min(start + self.batch_size, tokens.shape[0]))
                ctx = I.Context(self.model.cfg, self.prompts, clean, rows, self.seed, self.sources)
                hooks = I.hooks(under, ctx) + [(name, _keep(caches[name])) for name in need]
                part = None if mask is None else mask[rows]
                logits.append(self.model.run_with_hooks(tokens[rows], fwd_hooks=hooks, **_masked(part)))
                self.forward_passes += 1
        return Run(torch.cat(logits), {name: torch.cat(v) for name, v in caches.items()})


def _mask(prompts: P.PromptSet, device):
    """The attention mask of a padded prompt set (None when no prompt is padded)."""
    return None if prompts.mask is None else torch.as_tensor(prompts.mask, device=device)


def _masked(mask) -> dict:
    """`run_with_hooks` keywords: TransformerBridge.forward takes `attention_mask` and derives the
    positions of left-padded rows from it (checked against unpadded runs in tests/test_jsonl.py)."""
    return {} if mask is None else {"attention_mask": mask}


def _on_blocks(parts):
    """One hook for a stacked batch: each (block, fn) edits its own block, the rest is left alone.
    One copy of the activation per pass, however many interventions share the hook."""

    def hook(x, hook):
        x = x.clone()
        for block, fn in parts:
            x[block] = fn(x[block], hook)
        return x

    return hook


def _keep(store: list):
    def hook(x, hook):
        store.append(x.detach().clone())
        return x

    return hook
