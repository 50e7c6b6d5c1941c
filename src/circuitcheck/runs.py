"""Model runs: forward passes over one prompt set, clean once and each distinct intervention once.

Only the activations some claim reads are captured (the capture hooks are the names asked for), the
prompts go through in chunks of `batch_size`, and every pass runs under `torch.inference_mode`.

`stream` is how a session runs its plan: each chunk of a run is measured as soon as it is computed
and then dropped, so that only one float per prompt per value outlives it, and memory is bounded by
the batch size, not by the number of runs. The clean activations interventions read (means,
resamples) are the only activations kept over every prompt. `run` keeps a whole run, for what was
not planned (a specificity mutant) and for measures that compare runs (similarity).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import interventions as I
from . import prompts as P
from .interventions import run_key as key
from .models import input_device


@dataclass
class Run:
    logits: torch.Tensor  # [n, seq, vocab]
    cache: dict[str, torch.Tensor]  # hook name -> activation over all prompts


class Runs:
    def __init__(self, model, prompts: P.PromptSet, seed: int = 0, batch_size: int = 1024, source_prompts=None):
        self.model, self.prompts, self.seed, self.batch_size = model, prompts, seed, batch_size
        self.source_prompts = source_prompts  # PromptSpec -> PromptSet, for patching
        self.device = input_device(model)  # the embedding's; a layer's activations stay on its own device
        self.tokens = torch.as_tensor(prompts.tokens, device=self.device)
        self.mask = _mask(prompts, self.device)
        self.done: dict[tuple, Run] = {}
        self.sources: dict[tuple, torch.Tensor] = {}  # patch source activations
        self.forward_passes = 0
        self._chunk_prompts: dict[int, P.PromptSet] = {}  # first row -> the prompts of that chunk

    def stream(self, planned: dict) -> dict[tuple, np.ndarray]:
        """Per-prompt values of every measure on every run of `planned` (run key -> (under, {name:
        measure})), as {(run key, name): values}. Each chunk of a run (or block of a stacked pass) is
        measured as a `measures.Run` of its own rows, and dropped: only the values are kept."""
        cfg, n = self.model.cfg, self.prompts.n
        parts: dict[tuple, list] = {(k, name): [] for k, (_, ms) in planned.items() for name in ms}
        clean_need = set().union(set(), *(I.clean_needs(u, cfg) for u, _ in planned.values()))
        _, clean_ms = planned.get((), ((), {}))
        clean: dict[str, list] = {name: [] for name in clean_need}  # kept whole: interventions read them
        clean_passes = self._chunks((), _needs(clean_ms, cfg) | clean_need, {}) if clean_ms or clean_need else ()
        for rows, logits, cache in clean_passes:
            for name in clean_need:
                clean[name].append(cache[name])
            self._measure_into(parts, (), clean_ms, rows, logits, cache)
            del logits, cache  # before the next chunk is computed
        clean = {name: torch.cat(v) for name, v in clean.items()}
        todo = [(k, under, ms) for k, (under, ms) in planned.items() if k != ()]
        for _, under, _ in todo:
            self._sources(under)
        per_pass = self.batch_size // n
        if per_pass < 2:  # the prompt set alone fills a pass: chunk prompts
            for k, under, ms in todo:
                for rows, logits, cache in self._chunks(under, _needs(ms, cfg), clean):
                    self._measure_into(parts, k, ms, rows, logits, cache)
                    del logits, cache
        else:  # several runs stacked in one pass, one block of n rows each
            for start in range(0, len(todo), per_pass):
                group = todo[start:start + per_pass]
                blocks = self._stacked([(under, _needs(ms, cfg)) for _, under, ms in group], clean)
                for (k, _, ms), (logits, cache) in zip(group, blocks):
                    self._measure_into(parts, k, ms, slice(0, n), logits, cache)
                del blocks, logits, cache
                release_memory()
        return {key: _joined(v) for key, v in parts.items()}

    def _measure_into(self, parts, k, measures, rows, logits, cache) -> None:
        """Append each measure's values on these rows to `parts`; a measure that raises leaves its
        `MeasureFailed` there instead, for the claims reading it, and the pass goes on for the others."""
        from . import measures as M

        prompts = self.prompts if rows == slice(0, self.prompts.n) else self._prompts_of(rows)
        run = M.Run(logits, cache, prompts, self.model)
        for name, m in measures.items():
            if isinstance(parts[(k, name)], M.MeasureFailed):  # failed on an earlier chunk
                continue
            try:
                parts[(k, name)].append(np.asarray(M.compute(m, run), dtype=np.float64))
            except M.MeasureFailed as exc:
                parts[(k, name)] = exc

    def _prompts_of(self, rows: slice) -> P.PromptSet:
        if rows.start not in self._chunk_prompts:
            self._chunk_prompts[rows.start] = self.prompts.subset(np.arange(rows.start, rows.stop))
        return self._chunk_prompts[rows.start]

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
            group = todo[start:start + per_pass]
            for (under, need), (logits, cache) in zip(group, self._stacked(group, clean)):
                self.done[key(under)] = Run(logits, cache)

    def _stacked(self, group, clean) -> list[tuple]:
        """One pass over the prompt set repeated once per (under, need) of `group`, each copy under its
        own interventions: (logits, cache) of each copy."""
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
        blocks = [slice(i * n, (i + 1) * n) for i in range(len(group))]
        return [(logits[b], {name: caches[name][0][b] for name in need}) for b, (_, need) in zip(blocks, group)]

    def _sources(self, under):
        for source in I.sources(under):
            if source.key not in self.sources:
                ps = self.source_prompts(source.prompts)
                why = source.mismatch(ps, self.prompts)
                if why:
                    raise ValueError(why)
                tokens = torch.as_tensor(ps.tokens, device=self.device)
                mask = _mask(ps, self.device)
                act = self._forward(tokens, (), {source.hook}, {}, mask).cache[source.hook]
                self.sources[source.key] = act if source.reduce is None else source.reduce(act, ps)

    def _forward(self, tokens, under, need, clean, mask=False) -> Run:
        logits, caches = [], {name: [] for name in need}
        for _, part, cache in self._chunks(under, need, clean, tokens, mask):
            logits.append(part)
            for name in need:
                caches[name].append(cache[name])
        return Run(torch.cat(logits), {name: torch.cat(v) for name, v in caches.items()})

    def _chunks(self, under, need, clean, tokens=None, mask=False):
        """(rows, logits, activations in `need`) of each chunk of `batch_size` prompts of one run."""
        tokens = self.tokens if tokens is None else tokens
        mask = self.mask if mask is False else mask
        for start in range(0, tokens.shape[0], self.batch_size):
            rows = slice(start, min(start + self.batch_size, tokens.shape[0]))
            ctx = I.Context(self.model.cfg, self.prompts, clean, rows, self.seed, self.sources)
            caches = {name: [] for name in need}
            hooks = I.hooks(under, ctx) + [(name, _keep(caches[name])) for name in need]
            part = None if mask is None else mask[rows]
            with torch.inference_mode():
                logits = self.model.run_with_hooks(tokens[rows], fwd_hooks=hooks, **_masked(part))
            self.forward_passes += 1
            yield rows, logits, {name: v[0] for name, v in caches.items()}
            del logits, caches  # the caller's chunk is the only one alive while the next is computed
            release_memory()


def release_memory() -> None:
    """Hand memory freed by a run back to the operating system. glibc keeps freed heap memory for
    reuse, and the many mid-sized tensors of chunked runs leave it fragmented: measured, 24 runs of
    10,000 prompts on zoo:induction left the process 270 MB above its start with nothing alive, and
    malloc_trim gave all of it back. A no-op where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_TRIM: list = []


def _malloc_trim():
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    return _TRIM[0]


def _joined(parts):
    """A measure's values over every chunk, or the `MeasureFailed` it left in their place."""
    return parts if isinstance(parts, Exception) else np.concatenate(parts)


def _needs(measures: dict, cfg) -> set[str]:
    from . import measures as M

    return set().union(set(), *(M.needs(m, cfg) for m in measures.values()))


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
