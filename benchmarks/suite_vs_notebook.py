"""circuitcheck's Session against a notebook-style reference doing the same claims by hand.

    python benchmarks/suite_vs_notebook.py [FILE.hyp.yaml ...]     (default: hypotheses/*.hyp.yaml)
    python benchmarks/suite_vs_notebook.py --generated 100         (scaling.py's claims on one model)

The references are written against TransformerLens directly and import nothing from
circuitcheck's runs, interventions or measures modules (circuitcheck's `load()` only reads the
claims and the prompt sets; circuitcheck's own numbers come from `Session`):

- **strong notebook** (the reference every ratio is against): what a careful researcher writes.
  One clean `run_with_cache` per prompt set, shared by all claims, with a `names_filter` for the
  hooks the claims read; `torch.inference_mode`; one `run_with_hooks` per intervened case with
  hand-written hooks and measures; scipy's BCa bootstrap (4000 resamples) and Wilson; a sweep's
  percentile bootstrap computed for all resamples in one array operation.
- **strong notebook, hooked runs kept**: the same, and each hooked run kept in a dict, so a case
  another claim repeats is not run again.
- **weak notebook** (labelled weak; earlier figures used it): each claim starts with a fresh,
  unfiltered `run_with_cache` under `torch.no_grad`, and the sweep bootstrap loops over resamples
  with `np.polyfit`; "clean run per case" also re-runs the clean model before every intervened case.

Every case's per-prompt values are compared (np.allclose, atol 1e-4): for drop/rise/change
claims the paired differences and the clean values, for sweeps every point of the curve.
Models are loaded (and warmed up) before the clock starts, on both sides.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import math
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import circuitcheck  # noqa: E402
from circuitcheck.files import loader as H  # noqa: E402  (reads claims and prompt sets only)
from circuitcheck import models  # noqa: E402
from circuitcheck.session import Options, Session  # noqa: E402

ATOL = 1e-4


# ====================================================================== the notebook-style reference
# Everything below is written against TransformerLens directly.

def position(ps, expr) -> np.ndarray:
    """`ANS`, `S1+1`, `argmax`, `3`, `-1` -> one index per prompt."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w#]*|-?\d+)\s*(?:([+-])\s*(\d+))?\s*", str(expr))
    name, sign, off = m[1], m[2], int(m[3] or 0)
    seq = ps.tokens.shape[1]
    if re.fullmatch(r"-?\d+", name):
        base = np.full(len(ps.tokens), int(name) % seq)
    else:
        base = np.asarray(ps.positions[name])
    return base + (-off if sign == "-" else off)


def heads_by_layer(heads) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for h in heads:
        layer, head = map(int, re.fullmatch(r"L(\d+)H(\d+)", h).groups())
        out.setdefault(layer, []).append(head)
    return out


def head(h) -> tuple[int, int]:
    layer, hh = map(int, re.fullmatch(r"L(\d+)H(\d+)", h).groups())
    return layer, hh


# ---------------------------------------------------------------- hook functions
def z_ablation_hook(heads, method, clean_z, at, seed):
    """Replace heads' z by zeros, their mean over the prompts, or another prompt's z."""

    def hook(z, hook):
        if method == "zero":
            new = torch.zeros_like(z)
        elif method == "mean":
            new = clean_z.mean(dim=0, keepdim=True).expand_as(z)
        else:  # resample: each prompt takes a seeded other prompt's z (circuitcheck's documented order)
            n = z.shape[0]
            rng = np.random.default_rng(seed + 7919)
            new = clean_z[torch.as_tensor((np.arange(n) + rng.integers(1, n, size=n)) % n)]
        z = z.clone()
        for h in heads:
            if at is None:
                z[:, :, h] = new[:, :, h]
            else:
                for j in range(at.shape[1]):
                    rows = torch.arange(z.shape[0])
                    z[rows, at[:, j], h] = new[rows, at[:, j], h]
        return z

    return hook


def bos_hook(heads, at):
    """The head attends only to position 0 (from every query, or from the `at` queries)."""

    def hook(pattern, hook):
        pattern = pattern.clone()
        for h in heads:
            if at is None:
                pattern[:, h] = 0
                pattern[:, h, :, 0] = 1
            else:
                for j in range(at.shape[1]):
                    rows = torch.arange(pattern.shape[0])
                    pattern[rows, h, at[:, j]] = 0
                    pattern[rows, h, at[:, j], 0] = 1
        return pattern

    return hook


def scale_score_hooks(layer, h, src, dst, factor, cfg):
    """Multiply one pre-softmax score by `factor`: recompute the query row's scores from q and k
    (TransformerLens 4.3 drops edits made at hook_attn_scores) and write its softmax into the pattern."""
    store = {}
    scale = cfg.attn_scale if getattr(cfg, "attn_scale", -1) and cfg.attn_scale > 0 else math.sqrt(cfg.d_head)

    def save(name):
        def hook(x, hook):
            store[name] = x
            return x

        return hook

    def edit(pattern, hook):
        n, _, seq, _ = pattern.shape
        rows = torch.arange(n)
        q = store["q"][rows, src, h]  # [n, d_head]
        k = store["k"][:, :, h]  # [n, seq, d_head]
        scores = torch.einsum("nd,nsd->ns", q, k) / scale
        scores = scores.masked_fill(torch.arange(seq)[None, :] > src[:, None], float("-inf"))
        scores[rows, dst] = scores[rows, dst] * factor
        pattern = pattern.clone()
        pattern[rows, h, src] = torch.softmax(scores, dim=-1)
        return pattern

    base = f"blocks.{layer}.attn"
    return [(f"{base}.hook_q", save("q")), (f"{base}.hook_k", save("k")), (f"{base}.hook_pattern", edit)]


def patch_hook(source_act, at):
    def hook(x, hook):
        if at is None:
            return source_act.clone()
        x = x.clone()
        for j in range(at.shape[1]):
            rows = torch.arange(x.shape[0])
            x[rows, at[:, j]] = source_act[rows, at[:, j]]
        return x

    return hook


def capture_hook(store, name):
    def hook(x, hook):
        store[name] = x.clone()
        return x

    return hook


PATCH_NAMES = {"resid_pre": "blocks.{}.hook_resid_pre", "resid_post": "blocks.{}.hook_resid_post",
               "attn_out": "blocks.{}.hook_attn_out", "z": "blocks.{}.attn.hook_z"}


def at_positions(ps, at):
    if at is None:
        return None
    at = at if isinstance(at, list) else [at]
    return torch.as_tensor(np.stack([position(ps, a) for a in at], axis=1))


# ---------------------------------------------------------------- measures, per prompt
def metric(name, logits, ps) -> np.ndarray:
    pos = torch.as_tensor(ps.target_pos)  # [n, k]
    tok = torch.as_tensor(ps.target_tok)
    at = logits[torch.arange(len(pos))[:, None], pos].double()  # [n, k, vocab]
    correct = torch.take_along_dim(at, tok[..., None], dim=-1)[..., 0]
    logprobs = at.log_softmax(-1)
    lp = torch.take_along_dim(logprobs, tok[..., None], dim=-1)[..., 0]
    if name == "accuracy":
        v = (at.argmax(-1) == tok).double()
    elif name == "prob":
        v = lp.exp()
    elif name == "loss":
        v = -lp
    elif name == "logprob":
        v = lp
    elif name == "logit_diff":
        others = at.clone()
        others.scatter_(-1, tok[..., None], -torch.inf)
        v = correct - others.max(-1).values
    else:  # rank, 1 = top
        v = (at > correct[..., None]).sum(-1).double() + 1
    return v.mean(-1).numpy()


def detection(tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """[n, q, k] 0/1, like transformer_lens.head_detector's patterns, for every sequence at once."""
    n, t = tokens.shape
    qi, ki = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    if kind == "previous_token":
        kind = "offset:1"
    if kind.startswith("offset:"):
        return (qi - ki == int(kind[7:])).double().expand(n, t, t)
    eq = tokens[:, :, None] == tokens[:, None, :]
    if kind == "duplicate_token":
        return (eq & (ki < qi)).double()
    out = torch.zeros(n, t, t, dtype=torch.float64)  # induction: the token after an earlier copy
    out[:, :, 1:] = (eq[:, :, :-1] & (ki[:, 1:] <= qi[:, 1:])).double()
    return out


def row_labels(p, tokens, mass, window):
    t = p.shape[-1]
    qi, ki = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    prev = ((qi - ki >= 1) & (qi - ki <= window)).double()
    ind = detection(tokens, "induction")
    masses = [("previous+induction", (p * torch.clamp(prev + ind, max=1)).sum(-1)),
              ("induction", (p * ind).sum(-1)), ("previous", (p * prev).sum(-1)), ("inactive", p[..., 0])]
    labels = np.full(p.shape[:2], "unknown", dtype=object)
    for name, m in masses:  # later ones take precedence
        labels[m.numpy() >= mass] = name
    return labels


def row_indices(ps, rows):
    n, t = ps.tokens.shape
    if rows == "all":
        return np.tile(np.arange(1, t), (n, 1))
    if isinstance(rows, list):
        return np.stack([position(ps, r) for r in rows], axis=1)
    a, b = (position(ps, r.strip()) for r in rows.split(".."))
    return a[:, None] + np.arange(int((b - a)[0]) + 1)[None, :]


def dla(model, acts, ps, component, share) -> np.ndarray:
    if getattr(model.cfg, "normalization_type", None) is not None:
        raise NotImplementedError("dla through a final LayerNorm")
    rows = torch.arange(len(ps.tokens))[:, None]
    pos, tok = torch.as_tensor(ps.target_pos), torch.as_tensor(ps.target_tok)
    W_U = model.W_U.double()
    b_U = model.b_U.double()
    if component == "embed":
        x = (acts["hook_embed"] + acts["hook_pos_embed"])[rows, pos].double()
    elif component == "bias":
        x = model.b_O.double().sum(0).expand(*pos.shape, -1)
    else:
        layer, h = head(component)
        x = acts[f"blocks.{layer}.attn.hook_z"][rows, pos, h].double() @ model.W_O[layer, h].double()
    part = (x * W_U.T[tok]).sum(-1)  # [n, k]
    if component == "bias":
        part = part + b_U[tok]
    if share:
        total = (acts["ln_final.hook_in"][rows, pos].double() * W_U.T[tok]).sum(-1) + b_U[tok]
        part = part / total
    return part.mean(-1).numpy()


def measure(m, model, logits, acts, ps) -> np.ndarray:
    if m.metric is not None:
        return metric(m.metric, logits, ps)
    n = len(ps.tokens)
    if m.attention is not None:
        layer, h = head(m.attention.head)
        p = acts[f"blocks.{layer}.attn.hook_pattern"]
        return p[torch.arange(n), h, position(ps, m.attention.from_), position(ps, m.attention.to)].double().numpy()
    if m.head_score is not None:
        layer, h = head(m.head_score.head)
        p = acts[f"blocks.{layer}.attn.hook_pattern"][:, h].double()
        if m.head_score.exclude_bos:
            p = p.clone()
            p[:, :, 0] = 0
        det = detection(torch.as_tensor(ps.tokens), m.head_score.pattern)
        return ((p * det).sum((1, 2)) / p.sum((1, 2))).numpy()
    if m.row_class is not None:
        b = m.row_class
        layer, h = head(b.head)
        labels = row_labels(acts[f"blocks.{layer}.attn.hook_pattern"][:, h].double(), torch.as_tensor(ps.tokens),
                            b.mass, b.window)
        picked = labels[np.arange(n)[:, None], row_indices(ps, b.rows)]
        return (picked == b.behaviour).mean(-1).astype(float)
    if m.dla is not None:
        return dla(model, acts, ps, m.dla.component, m.dla.share)
    raise NotImplementedError(m.kind)


def hooks_read(m, cfg) -> list[str]:
    """The activations a measure reads from an intervened run (captured with hooks)."""
    for kind in ("attention", "head_score", "row_class"):
        if getattr(m, kind) is not None:
            return [f"blocks.{head(getattr(m, kind).head)[0]}.attn.hook_pattern"]
    if m.dla is not None:
        return ["hook_embed", "hook_pos_embed", "ln_final.hook_in"] + [
            f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)]
    if m.similarity is not None:
        return [similarity_hook(m.similarity)]
    return []


def similarity_hook(s):
    if s.hook in ("z", "head_out"):
        return f"blocks.{head(s.head)[0]}.attn.hook_z"
    if s.hook == "pattern":
        return f"blocks.{head(s.head)[0]}.attn.hook_pattern"
    return s.hook


def similarity_activation(s, model, acts, ps):
    x = acts[similarity_hook(s)].double()
    rows, at = torch.arange(len(ps.tokens)), position(ps, s.at)
    if s.hook == "pattern":
        return x[rows, head(s.head)[1], at]
    x = x[rows, at]
    if s.head is not None and (s.hook in ("z", "head_out") or x.dim() == 3):
        x = x[:, head(s.head)[1]]
    if s.hook == "head_out":
        x = x @ model.W_O[head(s.head)].double()
    return x.reshape(len(rows), -1)


def cosine_mean(acts):
    sims = [torch.cosine_similarity(a, b, dim=-1) for i, a in enumerate(acts) for b in acts[i + 1:]]
    return torch.stack(sims).mean(0).numpy()


def ov_norm(model, h, tokens):
    layer, hh = head(h)
    x = model.W_E[tokens].double() @ model.W_V[layer, hh].double() + model.b_V[layer, hh].double()
    return (x @ model.W_O[layer, hh].double()).norm(dim=-1).numpy()


WHERE = r"\s*tok\[([^\]]+)\]\s*(==|!=|<=|>=|<|>)\s*(?:tok\[([^\]]+)\]|(-?\d+))\s*"


def where_mask(where, ps):
    m = re.fullmatch(WHERE, where)
    rows = np.arange(len(ps.tokens))
    a = ps.tokens[rows, position(ps, m[1])]
    b = ps.tokens[rows, position(ps, m[3])] if m[3] else int(m[4])
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[m[2]]


# ---------------------------------------------------------------- one claim, notebook style
class Notebook:
    """One claim at a time, no sharing across claims: each claim starts with its own clean run
    (`per_case`: so does every intervened case, the cell that runs the clean model and then the
    hooked one), then one hooked run per case."""

    def __init__(self, model, loaded, prompts_for, count, per_case=False):
        self.model, self.loaded, self.prompts_for, self.count = model, loaded, prompts_for, count
        self.per_case = per_case

    def claim(self, lc) -> list[tuple[np.ndarray, np.ndarray | None]]:
        with torch.no_grad():  # a notebook's `torch.set_grad_enabled(False)`
            return self._claim(lc)

    def start_claim(self):
        self.clean_runs, self.sources = {}, {}  # fresh for every claim

    def _claim(self, lc):
        self.start_claim()
        claim = lc.claim
        if claim.measure.ov_norm is None:  # the cell starts with `logits, cache = model.run_with_cache(tokens)`
            self.clean(self.prompts_for(lc.cases[0].prompts))
        rel = claim.expect.relative if claim.expect.relative in ("drop", "rise", "change") else None
        out = []
        for i, case in enumerate(lc.cases):
            m = case.measure
            if m.ov_norm is not None:
                out.append((ov_norm(self.model, m.ov_norm.head, m.ov_norm.tokens), None))
                continue
            if self.per_case and case.under and i > 0:
                self.clean_runs = {}
                self.clean(self.prompts_for(case.prompts))
            value = self.case_value(case, case.under)
            if rel is None:
                out.append((value, None))
                continue
            clean = self.case_value(case, ())
            out.append((clean - value if rel == "drop" else value - clean, clean))
        return out

    def case_value(self, case, under):
        m = case.measure
        if m.similarity is not None:
            acts = []
            for spec, _ in case.variants:
                ps = self.prompts_for(spec)
                _, cache = self.run(ps, under, hooks_read(m, self.model.cfg))
                acts.append(similarity_activation(m.similarity, self.model, cache, ps))
            return cosine_mean(acts)
        ps = self.prompts_for(case.prompts)
        logits, cache = self.run(ps, under, hooks_read(m, self.model.cfg))
        return measure(m, self.model, logits, cache, ps)

    def clean(self, ps):
        key = id(ps)
        if key not in self.clean_runs:
            with torch.no_grad():
                self.clean_runs[key] = self.model.run_with_cache(torch.as_tensor(ps.tokens))
            self.count(ps.tokens)
        return self.clean_runs[key]

    def run(self, ps, under, read):
        if not under:
            return self.clean(ps)
        hooks = []
        for iv in under:
            hooks += self.hooks(iv, ps)
        store = {}
        hooks += [(name, capture_hook(store, name)) for name in read]
        with torch.no_grad():
            logits = self.model.run_with_hooks(torch.as_tensor(ps.tokens), fwd_hooks=hooks)
        self.count(ps.tokens)
        return logits, store

    def hooks(self, iv, ps):
        cfg = self.model.cfg
        if iv.ablate is not None or iv.keep_only is not None:
            body = iv.ablate or iv.keep_only
            heads = body.heads if iv.ablate is not None else [
                f"L{layer}H{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)
                if f"L{layer}H{h}" not in body.heads]
            at = at_positions(ps, getattr(body, "at", None))
            out = []
            for layer, hs in heads_by_layer(heads).items():
                if body.method == "bos":
                    out.append((f"blocks.{layer}.attn.hook_pattern", bos_hook(hs, at)))
                else:
                    clean_z = self.clean(ps)[1][f"blocks.{layer}.attn.hook_z"] if body.method != "zero" else None
                    out.append((f"blocks.{layer}.attn.hook_z",
                                z_ablation_hook(hs, body.method, clean_z, at, self.loaded.spec.seed)))
            return out
        if iv.scale_attention is not None:
            b = iv.scale_attention
            layer, h = head(b.head)
            return scale_score_hooks(layer, h, torch.as_tensor(position(ps, b.from_)),
                                     torch.as_tensor(position(ps, b.to)), float(b.factor), cfg)
        b = iv.patch
        name = PATCH_NAMES[b.hook].format(b.layer) if b.hook in PATCH_NAMES else b.hook
        src_ps = self.prompts_for(b.source)
        key = (id(src_ps), name)
        if key not in self.sources:
            with torch.no_grad():
                _, cache = self.model.run_with_cache(torch.as_tensor(src_ps.tokens))
            self.count(src_ps.tokens)
            self.sources[key] = cache[name]
        return [(name, patch_hook(self.sources[key], at_positions(ps, b.at)))]


class StrongNotebook(Notebook):
    """What a careful researcher writes (the reference every ratio is against): one clean
    `run_with_cache` per prompt set, shared by every claim and filtered to the hooks the claims read
    (`names_filter`), everything under `torch.inference_mode`, one `run_with_hooks` per intervened
    case; `keep_runs`: each hooked run is also kept in a dict, so a case repeated by another claim
    is not run again."""

    def __init__(self, model, loaded, prompts_for, count, reads, keep_runs=False):
        super().__init__(model, loaded, prompts_for, count)
        self.reads, self.keep_runs = reads, keep_runs
        self.clean_runs, self.sources, self.hooked = {}, {}, {}

    def claim(self, lc):
        with torch.inference_mode():
            return self._claim(lc)

    def start_claim(self):
        pass  # clean runs and patch sources stay for the next claim

    def clean(self, ps):
        key = id(ps)
        if key not in self.clean_runs:
            with torch.inference_mode():
                self.clean_runs[key] = self.model.run_with_cache(torch.as_tensor(ps.tokens),
                                                                 names_filter=lambda name: name in self.reads)
            self.count(ps.tokens)
        return self.clean_runs[key]

    def run(self, ps, under, read):
        if not under or not self.keep_runs:
            return super().run(ps, under, read)
        key = (id(ps), tuple(iv.model_dump_json() for iv in under), tuple(sorted(read)))
        if key not in self.hooked:
            self.hooked[key] = super().run(ps, under, read)
        return self.hooked[key]


def reads_of(files, cfg) -> set[str]:
    """Every hook a clean run must keep: what the measures read, and the clean `z` of mean and
    resample ablations (a researcher writes this list by hand; here it is read off the claims)."""
    names = set()
    for f in files:
        for lc in f.claims:
            for case in lc.cases:
                names |= set(hooks_read(case.measure, cfg))
                for iv in case.under:
                    body = iv.ablate or iv.keep_only
                    if body is not None and body.method in ("mean", "resample"):
                        names |= {f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)}
                    if iv.patch is not None:
                        b = iv.patch
                        names.add(PATCH_NAMES[b.hook].format(b.layer) if b.hook in PATCH_NAMES else b.hook)
    return names


# ---------------------------------------------------------------- statistics at the end
def wilson(k, n, z=1.959964):
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, c - h, c + h


def boot(x):
    from scipy import stats

    if np.ptp(x) == 0:
        return float(x.mean()), float(x.mean()), float(x.mean())
    r = stats.bootstrap((x,), np.mean, n_resamples=4000, method="BCa", rng=np.random.default_rng(0))
    return float(x.mean()), float(r.confidence_interval.low), float(r.confidence_interval.high)


def curve_stat(lc):
    xs = np.array([float(c.value) for c in lc.cases])
    e = lc.claim.expect
    if e.crosses is not None:
        def stat(ys):
            hit = ys >= e.crosses.level if e.crosses.direction == "up" else ys <= e.crosses.level
            if not hit.any():
                return np.inf
            i = int(np.argmax(hit))
            if i == 0 or not e.crosses.interpolate:
                return xs[i]
            return xs[i - 1] + (e.crosses.level - ys[i - 1]) / (ys[i] - ys[i - 1]) * (xs[i] - xs[i - 1])
        return stat
    if e.slope is not None:
        return lambda ys: np.polyfit(xs, ys, 1)[0]
    return lambda ys: 1 - ((ys - np.polyval(np.polyfit(xs, ys, 1), xs)) ** 2).sum() / max(((ys - ys.mean()) ** 2).sum(), 1e-300)


def curve_stat_rows(lc):
    """The curve statistic of every row of `ys` [resamples, points] at once (the strong reference)."""
    xs = np.array([float(c.value) for c in lc.cases])
    e = lc.claim.expect
    dx = xs - xs.mean()
    if e.crosses is not None:
        def stat(ys):
            hit = ys >= e.crosses.level if e.crosses.direction == "up" else ys <= e.crosses.level
            i = hit.argmax(1)
            j, rows = np.maximum(i - 1, 0), np.arange(len(ys))
            with np.errstate(divide="ignore", invalid="ignore"):
                between = xs[j] + (e.crosses.level - ys[rows, j]) / (ys[rows, i] - ys[rows, j]) * (xs[i] - xs[j])
            out = np.where((i > 0) & bool(e.crosses.interpolate), between, xs[i])
            return np.where(hit.any(1), out, np.inf)
        return stat

    def fit(ys):
        dy = ys - ys.mean(1, keepdims=True)
        return dy @ dx / (dx @ dx), dy
    if e.slope is not None:
        return lambda ys: fit(ys)[0]

    def r2(ys):
        b, dy = fit(ys)
        return 1 - ((dy - b[:, None] * dx) ** 2).sum(1) / np.maximum((dy ** 2).sum(1), 1e-300)
    return r2


def statistics_for(loaded, lc, values, vectorised=False) -> list[tuple]:
    """Point estimate and 95% interval per case (per claim for a sweep; `vectorised`: the
    sweep's bootstrap in one array operation instead of a loop over resamples)."""
    claim = lc.claim
    if claim.sweep is not None:
        matrix = np.stack([v for v, _ in values])
        idx = np.random.default_rng(0).integers(0, matrix.shape[1], size=(2000, matrix.shape[1]))
        if vectorised:
            stat = curve_stat_rows(lc)
            boots = stat(matrix[:, idx].mean(2).T)
            return [(stat(matrix.mean(1)[None])[0], *np.quantile(boots, [0.025, 0.975]))]
        stat = curve_stat(lc)
        boots = np.array([stat(matrix[:, i].mean(1)) for i in idx])
        return [(stat(matrix.mean(1)), *np.quantile(boots, [0.025, 0.975]))]
    out = []
    for (v, clean), case in zip(values, lc.cases):
        if case.measure.ov_norm is not None:
            out.append((float(np.argmax(v)), np.nan, np.nan))
        elif claim.where is not None:
            from scipy import stats

            mask = where_mask(claim.where, self_ps(loaded, case))
            if claim.expect.contrast is not None:
                a, b = v[mask], v[~mask]
                r = stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), vectorized=True,
                                    n_resamples=4000, method="BCa", rng=np.random.default_rng(0))
                out.append((a.mean() - b.mean(), r.confidence_interval.low, r.confidence_interval.high))
            else:
                out.append(boot(v[mask]))
        elif clean is None and case.measure.metric == "accuracy":
            out.append(wilson(int(v.sum()), v.size))
        else:
            out.append(boot(v))
    return out


def self_ps(loaded, case):
    return loaded.prompt_sets[case.prompts_key]


# ====================================================================== harness
def supported(loaded, lc) -> str | None:
    """Why the reference cannot do this claim, or None."""
    if loaded.model_source.kind not in ("zoo", "native"):
        return f"model source {loaded.model_source.kind} (the reference loads zoo and native models only)"
    if lc.claim.ranks is not None:
        return "ranks: a head against the others, case by case (not reimplemented)"
    if loaded.spec.roles:
        return "its heads are roles bound by a scan of candidates (not reimplemented)"
    if models.loads_hf(loaded.model_source):
        return f"{loaded.model_source.describe()} is a Hugging Face-format model (the reference boots native ones only)"
    ps = loaded.prompt_sets.get(lc.cases[0].prompts_key)
    if ps is not None and (ps.mask is not None or ps.target_valid is not None or ps.fields):
        return "JSONL prompts with padding, several targets or fields (not reimplemented)"
    if lc.claim.where is not None and not re.fullmatch(WHERE, lc.claim.where):
        return "a where filter beyond tok[...] comparisons (not reimplemented)"
    return None


def reimplemented(files, ref_models, prompts_for, skipped) -> list:
    """The claims the reference can answer: each is tried once, untimed, and one it cannot do (a
    measure or intervention it does not reimplement) is skipped with the reason it gave."""
    out = []
    for f in files:
        keep = []
        for lc in f.claims:
            try:
                nb = Notebook(ref_models[f.model_source], f, prompts_for(f), C.PassCounter())
                statistics_for(f, lc, nb.claim(lc), vectorised=True)
                keep.append(lc)
            except Exception as exc:  # noqa: BLE001 - any claim the reference cannot do is skipped, with why
                skipped.append(f"{f.path.name}::{lc.claim.id}: the reference does not do it "
                               f"({type(exc).__name__}: {str(exc)[:80]})")
        if keep:
            out.append(dataclasses.replace(f, claims=keep))
    return out


def reference_model(loaded):
    src = loaded.model_source
    if src.kind == "zoo":
        return C.zoo_bridge(src.ref)
    config = json.loads(src.config) if src.config else json.loads(Path(src.ref).read_text())
    return C.load_bridge(config.get("config", config), Path(src.weights))


def main(argv=None):
    ap = C.parser(__doc__)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--generated", type=int, default=0, help="instead of files: N generated claims on zoo:induction "
                    "(20 a file, as in scaling.py)")
    ap.add_argument("--batch-size", type=int, default=Options().batch_size)
    args = ap.parse_args(argv)
    C.start(THREADS)
    paths = args.files or sorted(glob.glob(str(C.REPO / "hypotheses" / "*.hyp.yaml")))
    if args.generated:
        import tempfile

        from scaling import write_files

        paths = write_files(Path(tempfile.mkdtemp(prefix="cc-generated-")), args.generated, 20, 200)
    files, skipped = [], []
    for conftest in sorted({Path(p).resolve().parent / "conftest.py" for p in paths}):
        if conftest.exists():  # the `python:` measures a folder's files name, registered as pytest would
            spec = importlib.util.spec_from_file_location(f"conftest_{len(skipped)}", conftest)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    for p in paths:
        loaded = circuitcheck.load(p)
        keep = []
        for lc in loaded.claims:
            why = supported(loaded, lc)
            if why:
                skipped.append(f"{Path(p).name}::{lc.claim.id}: {why}")
            else:
                keep.append(lc)
        if keep:
            files.append(dataclasses.replace(loaded, claims=keep))
    if not files:
        print("no claims the reference can do")
        return 0
    # ---- models, loaded and warmed before any clock starts
    ref_models = {}
    for f in files:
        if f.model_source not in ref_models:
            ref_models[f.model_source] = reference_model(f)
    prompt_cache: dict = {}

    def prompts_for(loaded):
        def get(spec):
            key = H.prompts_key(loaded.path, spec)
            if key in loaded.prompt_sets:
                return loaded.prompt_sets[key]
            if key not in prompt_cache:  # patch sources not named elsewhere: built once, outside the clock
                prompt_cache[key] = H.build_prompts(loaded.path, spec)
            return prompt_cache[key]
        return get

    files = reimplemented(files, ref_models, prompts_for, skipped)
    if not files:
        print("no claims the reference can do")
        return 0
    n_claims = sum(len(f.claims) for f in files)
    n_cases = sum(len(lc.cases) for f in files for lc in f.claims)
    opts = Options(batch_size=args.batch_size)
    cc_tokens = {"tokens": 0}

    def circuitcheck_side(stats=True):
        s = Session(opts)
        for f in files:
            C.count_tokens(s.model(f), cc_tokens)  # loads (cached) and counts the tokens of its passes
            s.add(f)
        cc_tokens["tokens"] = 0
        keys = [(f.path, lc.claim.id) for f in files for lc in f.claims]
        if stats:  # the claims' results; the per-case values are read from the session afterwards
            verdicts = {k: s.result(*k).verdict for k in keys}
            return Side({}, s.forward_passes(), cc_tokens["tokens"], verdicts, s)
        values = {(f.path, lc.claim.id): [s.values(f, lc.claim, c) for c in lc.cases]
                  for f in files for lc in f.claims}
        return Side(values, s.forward_passes(), cc_tokens["tokens"], {}, s)

    reads = {source: reads_of([f for f in files if f.model_source == source], m.cfg)
             for source, m in ref_models.items()}

    def notebook_side(kind, stats=True):
        count = C.PassCounter()
        values, notebooks = {}, {}
        for f in files:
            model = ref_models[f.model_source]
            if kind == "weak" or kind == "weak, per case":
                nb = Notebook(model, f, prompts_for(f), count, per_case=kind == "weak, per case")
            else:  # the strong notebook shares runs across the claims of every file on the model
                key = (f.model_source, kind)
                if key not in notebooks:
                    notebooks[key] = StrongNotebook(model, f, prompts_for(f), count, reads[f.model_source],
                                                    keep_runs=kind == "strong, runs kept")
                nb = notebooks[key]
                nb.loaded, nb.prompts_for = f, prompts_for(f)
            for lc in f.claims:
                values[(f.path, lc.claim.id)] = nb.claim(lc)
        if stats:
            for f in files:
                for lc in f.claims:
                    statistics_for(f, lc, values[(f.path, lc.claim.id)], vectorised=kind.startswith("strong"))
        return Side(values, count.n, count.tokens, {})

    sides = {"circuitcheck": circuitcheck_side,
             "strong notebook (the reference)": lambda stats=True: notebook_side("strong", stats),
             "strong notebook, hooked runs kept": lambda stats=True: notebook_side("strong, runs kept", stats),
             "weak notebook: clean run per claim": lambda stats=True: notebook_side("weak", stats),
             "weak notebook: clean run per case": lambda stats=True: notebook_side("weak, per case", stats)}
    t_all = time.perf_counter()
    full = C.interleaved(sides, repeats=args.repeats)
    runs_only = C.interleaved({k: (lambda f=f: f(False)) for k, f in sides.items()}, repeats=args.repeats, warmup=0)

    # ---- every case's per-prompt values, each notebook against circuitcheck
    cc = full["circuitcheck"][2]
    cc.values = {(f.path, lc.claim.id): [cc.session.values(f, lc.claim, c) for c in lc.cases]
                 for f in files for lc in f.claims}  # the runs are cached: this only re-measures
    bad, checked = [], 0
    for name in list(sides)[1:]:
        for (path, cid), cases in full[name][2].values.items():
            for case_i, ((ref_v, ref_clean), (cc_v, cc_clean)) in enumerate(zip(cases, cc.values[(path, cid)])):
                for what, a, b in (("value", cc_v, ref_v), ("clean", cc_clean, ref_clean)):
                    if a is None and b is None:
                        continue
                    checked += 1
                    a, b = np.asarray(a, float), np.asarray(b, float)
                    if a.shape != b.shape or not np.allclose(a, b, atol=ATOL, rtol=0):
                        diff = np.abs(a - b).max() if a.shape == b.shape else f"shapes {a.shape} {b.shape}"
                        bad.append(f"{name}: {path.name}::{cid}[case {case_i}] {what}: max |diff| {diff}")
    kinds = sorted({k for f in files for lc in f.claims for k in _kinds(lc)})

    print(f"files: {', '.join(Path(p).name for p in paths)}")
    print(f"claims: {n_claims}  cases: {n_cases}  batch_size: {args.batch_size}  "
          f"timings: fastest of {args.repeats} after a warm-up, the sides interleaved\n")
    ref = "strong notebook (the reference)"
    t_ref, m_ref = full[ref][0], runs_only[ref][0]
    rows = []
    for name in sides:
        t, m, side = full[name][0], runs_only[name][0], full[name][2]
        rows.append([name, f"{t:.3f}", f"{t_ref / t:.2f}x", f"{m:.3f}", f"{m_ref / m:.2f}x", side.passes,
                     f"{side.tokens:,}"])
    print(C.table(rows, ["", "end to end s", "speed-up vs reference", "runs+measures s", "speed-up vs reference",
                         "forward passes", "tokens"]))
    print("\nall timings (s): " + "; ".join(f"{k} {C.fmt_times(full[k][1])} / runs+measures {C.fmt_times(runs_only[k][1])}"
                                             for k in sides))
    print(f"claim kinds covered: {', '.join(kinds)}")
    print("circuitcheck verdicts: " + ", ".join(f"{v}: {sum(x == v for x in cc.verdicts.values())}"
                                                for v in sorted(set(cc.verdicts.values()))))
    print(f"skipped (not reimplemented): {'; '.join(skipped) if skipped else 'none'}")
    if bad:
        print(f"\nper-prompt values: {len(bad)} of {checked} comparisons DIFFER (atol {ATOL}):")
        for b in bad:
            print("  " + b)
    else:
        print(f"per-prompt values: all {checked} comparisons equal (np.allclose, atol {ATOL})")
    print(f"[{time.perf_counter() - t_all:.0f} s in all]")
    return 1 if bad else 0


@dataclasses.dataclass
class Side:
    values: dict  # (path, claim id) -> [(per-prompt values, clean values or None) per case]
    passes: int
    tokens: int
    verdicts: dict
    session: Session | None = None


def _kinds(lc) -> list[str]:
    c = lc.claim
    kinds = [c.measure.metric if c.measure.metric else c.measure.kind]
    for iv in c.under:
        k = next(k for k in ("ablate", "keep_only", "scale_attention", "patch") if getattr(iv, k) is not None)
        kinds.append(f"{k}:{getattr(iv, k).method}" if k in ("ablate", "keep_only") else k)
    if c.for_:
        kinds.append(f"for:{c.for_.kind}")
    if c.sweep:
        kinds.append("sweep:" + (c.expect.swept or ""))
    if c.where:
        kinds.append("where" + (":contrast" if c.expect.contrast else ""))
    if c.expect.relative:
        kinds.append(c.expect.relative)
    return kinds


if __name__ == "__main__":
    sys.exit(main())
