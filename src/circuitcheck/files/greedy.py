"""Completeness's greedy worst case: the knocked-out set K grows one node at a time, each step adding
the circuit's node v that most raises |F(C∖(K∪v)) − F(M∖(K∪v))| (IOI, Wang et al. 2022, the greedy
search of its completeness section).

    circuit: {name: ioi, knock: {greedy: 3}}
    expect: {completeness: {at_most: 0.2}}

The plan fixes every run when the file is read, and the greedy K depends on measured values, so the
session chooses it in a step of its own before the file is planned (as it binds roles): on held-out
prompts (loader.greedy_prompts: the claim's generator with another seed, or `knock.prompts`), since a
K chosen as the worst on the prompts that then judge it makes the claim look worse than it is.
`bind` then gives the claim each step's K as a case `K=greedy1`, `K=greedy2`, ... judged on the
claim's own prompts like the other sets K. Until then a greedy claim has only its other K's.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import circuit_cases as CC
from . import loader as H


def claims(loaded) -> list:
    """The file's claims with a greedy K to choose."""
    return [lc for lc in loaded.claims if lc.claim.circuit is not None and lc.claim.circuit.knock.greedy]


def choose(loaded, named_values) -> dict[str, dict[str, list[list[str]]]]:
    """claim id -> ablation -> the K of each greedy step (node names, in forward order).

    `named_values(step_file)` gives, for each case of the file's one claim, its per-prompt values on
    each of its named runs (the session plans the file and reads `Values.named`)."""
    return {lc.claim.id: {method: steps(loaded, lc, method, named_values) for method in lc.claim.circuit.ablations}
            for lc in claims(loaded)}


def steps(loaded, lc, method: str, named_values) -> list[list[str]]:
    """Greedy K's for one ablation: at each step the candidate node whose addition gives the largest
    gap on the held-out prompts (ties: the first in forward order)."""
    circuit = CC.circuit_of(lc.claim.circuit, loaded.circuits, shape(loaded))
    pool = sorted(CC.inside(circuit))
    chosen: frozenset = frozenset()
    out = []
    for _ in range(min(lc.claim.circuit.knock.greedy, len(pool))):
        tried = [chosen | {v} for v in pool if v not in chosen]
        scores = gaps(loaded, lc, method, tried, named_values)
        chosen = tried[int(np.argmax(scores))]
        out.append([str(n) for n in sorted(chosen)])
    return out


def gaps(loaded, lc, method: str, sets: list[frozenset], named_values) -> list[float]:
    """|m(C∖K) − m(M∖K)| of each K on the held-out prompts: |F(C∖K) − F(M∖K)| times m(M) − m(∅), which
    every K shares, so the largest is the same K (and a denominator that is not positive on these
    prompts, which the judged claim refuses on its own prompts, does not stop the choice)."""
    step = step_file(loaded, lc, method, sets)
    out = []
    for case, named in zip(step.claims[0].cases, named_values(step)):
        k = case.label.split("=", 1)[1]
        out.append(abs(float(np.mean(named[f"circuit-K:{k}"] - named[f"model-K:{k}"]))))
    return out


def step_file(loaded, lc, method: str, sets: list[frozenset]):
    """The file with one claim whose cases are completeness at each K of `sets`, on held-out prompts."""
    ps = loaded.greedy_prompts[lc.claim.id][0]
    circuit = CC.circuit_of(lc.claim.circuit, loaded.circuits, shape(loaded))
    runs = CC.Runs(lc.claim.circuit, circuit, method)
    named = [(f"try{i}", K) for i, K in enumerate(sets)]
    cases = [dataclasses.replace(H._case(loaded.path, label, runs.keep(circuit), lc.claim.measure, ps), runs=runs_)
             for label, runs_ in CC.completeness_cases(circuit, runs, named)]
    cases = [H._source_tokenizers(loaded.path, {}, (), case, loaded.model_source) for case in cases]
    return dataclasses.replace(loaded, claims=[H.LoadedClaim(lc.claim, lc.line, cases)])


def bind(loaded, chosen: dict) -> None:
    """Give each greedy claim of `loaded` its cases with the chosen K's (in place)."""
    for i, lc in enumerate(loaded.claims):
        if lc.claim.id in chosen:
            ps = loaded.greedy_prompts[lc.claim.id][1]
            cases = H.circuit_cases(loaded, {}, ("claims", i), lc.claim, ps, chosen[lc.claim.id])
            lc.cases = [H._source_tokenizers(loaded.path, {}, ("claims", i), c, loaded.model_source) for c in cases]
    loaded.greedy_chosen = dict(chosen)


def picks(by_method: dict[str, list[list[str]]]) -> dict[str, str]:
    """What each greedy step chose, as a result records the heads filling its roles:
    {"greedy1": "L2H0", "greedy2": "L1H3+L2H0"} (prefixed `mean:` ... under several ablations)."""
    tag = len(by_method) > 1
    return {f"{method + ':' if tag else ''}greedy{t + 1}": "+".join(K)
            for method, ks in by_method.items() for t, K in enumerate(ks)}


def shape(loaded):
    return CC.shape_of(loaded.n_layers, loaded.n_heads, loaded.sizes.get("d_mlp"),
                       attn_only=loaded.sizes.get("d_mlp") is None)
