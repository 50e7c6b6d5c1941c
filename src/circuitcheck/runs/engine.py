"""Model runs: forward passes over one prompt set, clean once and each distinct intervention once.

Only the activations some claim reads are captured (the capture hooks are the names asked for), the
prompts go through in chunks of `batch_size`, and every pass runs under `torch.inference_mode`.

`stream` is how a session runs its plan: each chunk of a run is measured as soon as it is computed
and then dropped, so that only one float per prompt per value outlives it, and memory is bounded by
the batch size, not by the number of runs. The clean activations interventions read (means,
resamples) are the only activations kept over every prompt. An intervened pass starts at the first
block its hooks touch, from the clean residual entering that block (captured by the clean pass of
the same chunk), where the model's architecture allows it (`block_output`). `run` keeps a whole run, for what was
not planned (a specificity mutant) and for measures that compare runs (similarity).
"""
from __future__ import annotations

import os
import re
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .. import interventions as I
from .. import prompts as P
from ..interventions import run_key as key
from ..models import input_device


@dataclass
class Run:
    logits: torch.Tensor  # [n, seq, vocab]
    cache: dict[str, torch.Tensor]  # hook name -> activation over all prompts


class Runs:
    def __init__(self, model, prompts: P.PromptSet, seed: int = 0, batch_size: int = 1024, source_prompts=None,
                 reference=None):
        self.model, self.prompts, self.seed, self.batch_size = model, prompts, seed, batch_size
        self.source_prompts = source_prompts  # PromptSpec -> PromptSet, for patching
        # () -> the prompt set `method: mean` takes its means over (a draw apart from the judged
        # prompts, files/loader.reference_spec); None: the judged prompts themselves (fixed data)
        self.reference_prompts = reference
        self.reference: I.Reference | None = None  # made when a mean is first needed
        self.device = input_device(model)  # the embedding's; a layer's activations stay on its own device
        self.tokens = torch.as_tensor(prompts.tokens, device=self.device)
        self.mask = _mask(prompts, self.device)
        self.done: dict[tuple, Run] = {}
        self.sources: dict[tuple, torch.Tensor] = {}  # patch source activations
        self.forward_passes = 0
        self.blocks_run = 0  # prompts x blocks computed, over every pass
        self.blocks_skipped = 0  # prompts x blocks a pass started at a later block did not compute
        self.late_start = block_output(model)  # how a pass hands on a skipped block's output; None: never
        self._chunk_prompts: dict[int, P.PromptSet] = {}  # first row -> the prompts of that chunk
        self.on_run = None  # called with a run's key when its last rows are measured (progress)

    def stream(self, planned: dict) -> dict[tuple, np.ndarray]:
        """Per-prompt values of every measure on every run of `planned` (run key -> (under, {name:
        measure})), as {(run key, name): values}. Each chunk of a run (or block of a stacked pass) is
        measured as a `measures.Run` of its own rows, and dropped: only the values are kept.

        Chunk by chunk: the clean pass of a chunk, then every intervened pass of that chunk, each
        started at the first block its hooks touch from the clean residual entering that block
        (captured by the clean pass, dropped with the chunk). Where interventions read clean
        activations over every prompt (means, resamples) and the prompts take several chunks, the
        clean pass goes over every chunk first and intervened passes start at block 0."""
        cfg, n = self.model.cfg, self.prompts.n
        # What outlives a chunk is allocated once, before or at the first chunk, and filled row by row:
        # small arrays left behind by every chunk among its big temporary ones kept glibc's heap from
        # shrinking (1,000 claims x 10,000 prompts peaked at 1.8-5.8 GB; benchmarks/README section 7).
        parts: dict[tuple, object] = {(k, name): np.empty(n) for k, (_, ms) in planned.items() for name in ms}
        chunks = self._rows(n)
        for rows in chunks[1:]:
            self._prompts_of(rows)
        _, clean_ms = planned.get((), ((), {}))
        todo = [(k, under, _needs(ms, cfg), ms) for k, (under, ms) in planned.items() if k != ()]
        for _, under, _, _ in todo:
            self._sources(under)
        clean_need = set().union(set(), *(I.clean_needs(under, cfg) for _, under, _, _ in todo))
        self._reference(clean_need)
        has_clean = bool(clean_ms or clean_need)
        late = self.late_start is not None and has_clean and (not clean_need or n <= self.batch_size)
        starts = {k: self._first_block(under, need) if late else 0 for k, under, need, _ in todo}
        resid = {s: resid_pre(s) for s in set(starts.values()) - {0}}
        clean: dict[str, torch.Tensor] = {}  # kept whole: interventions read them
        for rows in chunks if has_clean else ():
            logits, cache = self._chunk(rows, (), _needs(clean_ms, cfg) | clean_need | set(resid.values()), {})
            self._measure_into(parts, (), clean_ms, rows, logits, cache)
            for name in clean_need:
                _fill(clean, name, n, rows, cache[name])
            del logits  # before the intervened passes of this chunk are computed
            if late:  # the chunk is every prompt, or no intervention reads the clean run
                self._intervened(parts, todo, clean, rows, starts, {s: cache[h] for s, h in resid.items()})
            del cache
            release_memory()
        if not late:
            for rows in chunks:
                self._intervened(parts, todo, clean, rows, starts, {})
        return parts

    def _intervened(self, parts, todo, clean, rows, starts, resid) -> None:
        """Measure every intervened run of `todo` on the prompts `rows`: a pass of its own for each,
        or, on a GPU where the prompt set fits a pass twice (`_per_pass`), several runs stacked in one
        pass (`rows` is then every prompt), runs that start at the same block together."""
        per_pass = self._per_pass()
        if per_pass < 2:
            for k, under, need, ms in todo:
                s = starts[k]
                logits, cache = self._chunk(rows, under, need, clean, start=s, resid=resid.get(s))
                self._measure_into(parts, k, ms, rows, logits, cache)
                del logits, cache
                release_memory()
            return
        for s, group in _groups(todo, starts, per_pass):
            blocks = self._stacked([(under, need) for _, under, need, _ in group], clean, s, resid.get(s))
            for (k, _, _, ms), (logits, cache) in zip(group, blocks):
                self._measure_into(parts, k, ms, rows, logits, cache)
            del blocks, logits, cache
            release_memory()

    def _per_pass(self) -> int:
        """How many runs one pass stacks: as many copies of the prompt set as `batch_size` holds on
        a GPU, where a pass costs its launches; one on a CPU, where a pass costs its arithmetic and
        stacking only adds the copies and the per-copy hooks (benchmarks/README section 1)."""
        if self.device.type == "cpu" and not STACK_ON_CPU:
            return 1
        return self.batch_size // self.prompts.n

    def _first_block(self, under, need: set[str]) -> int:
        """The first block a run under `under` reading `need` must compute: the lowest block any of
        its hooks (interventions' and captures') sits in."""
        ctx = self._context({}, slice(0, self.prompts.n))
        names = [name for name, _ in I.hooks(under, ctx)] + sorted(need)
        return first_block(names, self.model.cfg.n_layers)

    def _rows(self, n: int):
        return [slice(start, min(start + self.batch_size, n)) for start in range(0, n, self.batch_size)]

    def _measure_into(self, parts, k, measures, rows, logits, cache) -> None:
        """Write each measure's values on these rows into `parts`; a measure that raises leaves its
        `MeasureFailed` there instead, for the claims reading it, and the pass goes on for the others."""
        from .. import measures as M

        prompts = self.prompts if rows == slice(0, self.prompts.n) else self._prompts_of(rows)
        run = M.Run(logits, cache, prompts, self.model)
        for name, m in measures.items():
            if isinstance(parts[(k, name)], M.MeasureFailed):  # failed on an earlier chunk
                continue
            try:
                _fill(parts, (k, name), self.prompts.n, rows, np.asarray(M.compute(m, run), dtype=np.float64))
            except M.MeasureFailed as exc:
                parts[(k, name)] = exc
        if rows.stop == self.prompts.n and self.on_run is not None:
            self.on_run(k)

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
        self._reference(I.clean_needs(under, self.model.cfg) if under else set())
        self._sources(under)
        self.done[k] = self._forward(self.tokens, under, need, clean)
        if self.on_run is not None:
            self.on_run(k)
        return self.done[k]

    def run_many(self, planned: list[tuple]) -> None:
        """Run many interventions; on a GPU stacked along the batch dimension (`_per_pass`): each pass
        holds as many copies of the prompt set as `batch_size` allows, each under its own intervention."""
        todo = [(u, n) for u, n in planned if key(u) not in self.done or not n <= set(self.done[key(u)].cache)]
        per_pass = self._per_pass()
        if per_pass < 2:  # the prompt set alone fills a pass: chunk prompts instead
            for under, need in todo:
                self.run(under, need)
            return
        clean_need = set().union(*(I.clean_needs(u, self.model.cfg) for u, _ in todo)) if todo else set()
        clean = self.clean(clean_need).cache
        self._reference(clean_need)
        for u, _ in todo:
            self._sources(u)
        for start in range(0, len(todo), per_pass):
            group = todo[start:start + per_pass]
            for (under, need), (logits, cache) in zip(group, self._stacked(group, clean)):
                self.done[key(under)] = Run(logits, cache)

    def _stacked(self, group, clean, start: int = 0, resid=None) -> list[tuple]:
        """One pass over the prompt set repeated once per (under, need) of `group`, each copy under its
        own interventions, from block `start` on: (logits, cache) of each copy."""
        n = self.prompts.n
        ctx = self._context(clean, slice(0, n))
        parts: dict[str, list] = {}  # hook name -> (block, fn) of every stacked intervention
        names = set()
        for i, (under, need) in enumerate(group):
            for name, fn in I.hooks(under, ctx):
                parts.setdefault(name, []).append((slice(i * n, (i + 1) * n), fn))
            names |= need
        caches = {name: [] for name in names}
        hooks = [(name, _on_blocks(p)) for name, p in parts.items()] + [(name, _keep(caches[name])) for name in names]
        mask = None if self.mask is None else self.mask.repeat(len(group), 1)
        resid = None if resid is None else resid.repeat(len(group), 1, 1)
        logits = self._run(self.tokens.repeat(len(group), 1), hooks, mask, start, resid)
        blocks = [slice(i * n, (i + 1) * n) for i in range(len(group))]
        return [(logits[b], {name: caches[name][0][b] for name in need}) for b, (_, need) in zip(blocks, group)]

    def _context(self, clean, rows) -> I.Context:
        return I.Context(self.model.cfg, self.prompts, clean, rows, self.seed, self.sources, self.model,
                         self.reference)

    def _reference(self, need: set[str]) -> None:
        """The reference set's clean activations at the hooks in `need` not read from it yet: one pass."""
        if self.reference_prompts is None or not need:
            return
        if self.reference is None:
            self.reference = I.Reference(self.reference_prompts(), {})
        if need <= set(self.reference.clean):
            return
        ps = self.reference.prompts
        tokens = torch.as_tensor(ps.tokens, device=self.device)
        run = self._forward(tokens, (), need - set(self.reference.clean), {}, _mask(ps, self.device))
        self.reference.clean.update(run.cache)

    def _sources(self, under):
        """The activations patch sources read: one pass per source prompt set, every hook read from it at once."""
        todo: dict[str, list] = {}
        for source in I.sources(under, self.model.cfg):
            if source.key not in self.sources:
                todo.setdefault(source.prompts.model_dump_json(), []).append(source)
        for group in todo.values():
            ps = self.source_prompts(group[0].prompts)
            for source in group:
                why = source.mismatch(ps, self.prompts)
                if why:
                    raise ValueError(why)
            tokens = torch.as_tensor(ps.tokens, device=self.device)
            cache = self._forward(tokens, (), {s.hook for s in group}, {}, _mask(ps, self.device)).cache
            for source in group:
                act = cache[source.hook]
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
        for rows in self._rows(tokens.shape[0]):
            logits, cache = self._chunk(rows, under, need, clean, tokens, mask)
            yield rows, logits, cache
            del logits, cache  # the caller's chunk is the only one alive while the next is computed
            release_memory()

    def _chunk(self, rows, under, need, clean, tokens=None, mask=False, start: int = 0, resid=None):
        """(logits, activations in `need`) of the prompts `rows` under `under`, from block `start` on."""
        tokens = self.tokens if tokens is None else tokens
        mask = self.mask if mask is False else mask
        ctx = self._context(clean, rows)
        caches = {name: [] for name in need}
        hooks = I.hooks(under, ctx) + [(name, _keep(caches[name])) for name in need]
        logits = self._run(tokens[rows], hooks, None if mask is None else mask[rows], start, resid)
        return logits, {name: v[0] for name, v in caches.items()}

    def _run(self, tokens, hooks, mask, start: int = 0, resid=None):
        """The logits of one pass with `hooks`; from block `start` on, fed `resid`, the clean residual
        entering that block (its earlier blocks are not computed; none of `hooks` may sit in them)."""
        n_layers = self.model.cfg.n_layers
        with torch.inference_mode(), skipping(self.model, start, resid, self.late_start):
            logits = self.model.run_with_hooks(tokens, fwd_hooks=hooks, **_masked(mask))
        self.forward_passes += 1
        self.blocks_run += tokens.shape[0] * (n_layers - start)
        self.blocks_skipped += tokens.shape[0] * start
        return logits


# Blocks whose model hands nothing from one block to the next but the residual stream: the model's
# forward makes the attention mask and positions (absolute, or rotary: native attention rotates q
# and k by the position ids every block is given) from the tokens, before its blocks, and gives
# them to every block. So a pass that runs the model's own forward on the same tokens and mask,
# with blocks 0..L-1 handing on the clean residual entering block L instead of computing, computes
# in blocks L.. exactly what a full pass does (tests/test_start_layer.py, on zoo models, padded
# prompts and rotary positions). Other architectures may carry more between blocks (T5's position
# bias, Gemma-3n's AltUp streams, layers sharing keys and values) and have not been checked here:
# their passes start at block 0. TransformerLens 4.3's own `start_at_layer` does not save the
# work: it still runs blocks 0..L-1 and discards their output (TransformerBridge.forward).
STACK_ON_CPU = False  # tests that check stacking turn it on
RESIDUAL_ONLY_BLOCKS = {"NativeBlock", "GPT2Block"}
BLOCK = re.compile(r"^blocks\.(\d+)\.")
AFTER_BLOCKS = ("ln_final.", "unembed.", "hook_unembed")
_BLOCK_OUTPUT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def resid_pre(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def first_block(hooks, n_layers: int) -> int:
    """The first block a pass must compute for every hook of `hooks` to see what a full pass shows
    it: the lowest block any sits in. A hook before the blocks (embeddings, tokens) needs block 0;
    one after them (ln_final, unembed) none, but a pass computes the last block at least."""
    def block(name: str) -> int:
        m = BLOCK.match(name)
        if m:
            return int(m[1])
        return n_layers - 1 if name.startswith(AFTER_BLOCKS) else 0

    return min([block(name) for name in hooks] + [n_layers - 1])


def block_output(model):
    """How `model`'s forward takes a block's output, "tuple" or "tensor", found by watching block 0
    in a one-token pass (it differs between architectures and transformers versions); None where
    passes must start at block 0: blocks not in RESIDUAL_ONLY_BLOCKS, or whose forward accelerate
    wrapped to move or load a placed model's weights (skipping would replace that wrapper)."""
    blocks = getattr(model, "blocks", None)
    if not blocks or any(type(getattr(b, "original_component", None)).__name__ not in RESIDUAL_ONLY_BLOCKS
                         or "forward" in vars(b) for b in blocks):  # a forward another library wrapped
        return None  # (accelerate, for a model placed with device_map) is left as it is
    if model not in _BLOCK_OUTPUT:
        seen = []
        handle = blocks[0].register_forward_hook(lambda module, args, out: seen.append(isinstance(out, tuple)))
        try:
            with torch.inference_mode():
                model(torch.zeros((1, 1), dtype=torch.long, device=input_device(model)))
        finally:
            handle.remove()
        _BLOCK_OUTPUT[model] = "tuple" if seen[0] else "tensor"
    return _BLOCK_OUTPUT[model]


@contextmanager
def skipping(model, start: int, resid, output):
    """Within: blocks 0..start-1 of `model` compute nothing and hand on `resid`, the residual
    entering block `start`, in the form the model's forward takes (`output`). Their hooks do not fire."""
    if start == 0:
        yield
        return
    handed = (resid,) if output == "tuple" else resid
    blocks = model.blocks[:start]
    for b in blocks:  # on the bridge's block itself: its setattr would pass `forward` on to the wrapped block
        object.__setattr__(b, "forward", lambda *args, **kwargs: handed)
    try:
        yield
    finally:
        for b in blocks:
            object.__delattr__(b, "forward")


def release_memory() -> None:
    """Hand memory freed by a run back to the operating system. glibc keeps freed heap memory for
    reuse, and the many mid-sized tensors of chunked runs leave it fragmented: measured, 24 runs of
    10,000 prompts on zoo:induction left the process 270 MB above its start with nothing alive, and
    malloc_trim gave all of it back. A trim costs about 2 ms, as much as a small pass, so it is done
    only once the resident set has grown `TRIM_AFTER` bytes past what the last trim left (always,
    where /proc cannot say). A no-op where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is None:
        return
    rss = _resident()
    if rss is not None and rss - _TRIMMED[0] < TRIM_AFTER:
        return
    trim(0)
    _TRIMMED[0] = _resident() or 0


TRIM_AFTER = 32 * 2 ** 20
_TRIMMED = [0]  # the resident set in bytes right after the last trim


def _resident() -> int | None:
    """The resident set in bytes (/proc/self/statm), or None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_TRIM: list = []


def _malloc_trim():
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    return _TRIM[0]


def _fill(out: dict, key, n: int, rows: slice, part) -> None:
    """Copy one chunk's `part` into `out[key]`, an array over all `n` prompts made at the first chunk
    (numpy or torch, like `part`): a copy, so that nothing of the chunk stays alive with it."""
    shape = (n, *part.shape[1:])
    if out.get(key) is None or out[key].shape != shape:
        out[key] = np.empty(shape, part.dtype) if isinstance(part, np.ndarray) else part.new_empty(shape)
    out[key][rows] = part


def _needs(measures: dict, cfg) -> set[str]:
    from .. import measures as M

    return set().union(set(), *(M.needs(m, cfg) for m in measures.values()))


def _groups(todo, starts: dict, per_pass: int) -> list[tuple[int, list]]:
    """(start block, runs) of each stacked pass: runs that start at the same block together, at most
    `per_pass` a pass, so that no run computes a block it could skip."""
    by_start: dict[int, list] = {}
    for run in todo:
        by_start.setdefault(starts[run[0]], []).append(run)
    return [(s, runs[i:i + per_pass]) for s, runs in sorted(by_start.items()) for i in range(0, len(runs), per_pass)]


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
