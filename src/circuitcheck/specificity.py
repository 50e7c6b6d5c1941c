"""Specificity: does a passing claim single out what it names?

Each passing claim is judged again as mutants, at the level the claim itself was judged at:
- every head it names swapped for each other head of the same layer (all its occurrences at once;
  heads the claim already names are skipped, since a swap onto them tells nothing);
- its claimed direction flipped: the inequality reversed, and `all` <-> `any` by De Morgan (see
  `direction_mutants`), so that the mutant claims roughly the opposite.
A mutant that still passes is a survivor: "also passes with L0H2 in place of L0H1" means the claim
does not single out L0H1. Mutants are planned with the original claims, so they share their runs.

    circuitcheck specificity hypotheses/*.hyp.yaml
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import hypothesis_file as H
from .verdict import PASS

HEAD = re.compile(r"^L(\d+)H(\d+)$")
FLIPS = {"at_least": "at_most", "at_most": "at_least"}


@dataclass
class Mutant:
    what: str  # "L0H1 -> L0H2", "at_least -> at_most"
    kind: str  # "head" | "direction"
    claim: dict
    verdict: str = ""

    @property
    def survived(self) -> bool:
        return self.verdict == PASS


@dataclass
class ClaimSpecificity:
    path: str
    claim_id: str
    verdict: str
    mutants: list[Mutant] = field(default_factory=list)

    @property
    def survivors(self) -> list[Mutant]:
        return [m for m in self.mutants if m.survived]

    def lines(self) -> list[str]:
        head = f"{Path(self.path).name}::{self.claim_id}"
        if self.verdict != PASS:
            return [f"{head}: not checked ({self.verdict}, only passing claims are)"]
        if not self.mutants:
            return [f"{head}: no mutant (it names every head of the layers it uses, or none, and its "
                    "region has two sides)"]
        killed = len(self.mutants) - len(self.survivors)
        out = [f"{head}: {killed} of {len(self.mutants)} mutants fail" + ("" if self.survivors else " (specific)")]
        for m in self.survivors:
            out.append("    " + explain(m))
        return out


def explain(m: Mutant) -> str:
    if m.kind == "head":
        old, new = m.what.split(" -> ")
        return f"also passes with {new} in place of {old}: this claim does not single out {old}"
    return f"also passes with its direction flipped ({m.what}): this claim cannot fail that way"


# ---------------------------------------------------------------- making mutants
def heads_named(node) -> list[str]:
    """Every head string in a claim's values, in order of first appearance (not in `id`/`says`)."""
    found: list[str] = []

    def walk(x):
        if isinstance(x, str) and HEAD.match(x) and x not in found:
            found.append(x)
        elif isinstance(x, dict):
            for k, v in x.items():
                if k not in ("id", "says"):
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(node)
    return found


def _replace(node, old: str, new: str):
    if node == old:
        return new
    if isinstance(node, dict):
        return {k: (v if k in ("id", "says") else _replace(v, old, new)) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    return node


def head_mutants(claim: dict, n_heads: int) -> list[Mutant]:
    named = heads_named(claim)
    out = []
    for h in named:
        layer = HEAD.match(h)[1]
        for k in range(n_heads):
            other = f"L{layer}H{k}"
            if other not in named:
                out.append(Mutant(f"{h} -> {other}", "head", _replace(claim, h, other)))
    return out


def direction_mutants(claim: dict) -> list[Mutant]:
    """The claim's (approximate) negation: each one-sided inequality flipped (`at_least` <-> `at_most`,
    inside `drop`/`rise`/`change`/`contrast`/`slope` too; a crossing `up` <-> `down`), and by De
    Morgan `all` <-> `any`; the negation of `none` is `any` with the inequality as it was."""
    expect, quant = claim.get("expect", {}), claim.get("for")
    flipped = _flip(expect)
    kind = next(iter(quant)) if isinstance(quant, dict) and len(quant) == 1 else None
    if kind == "none":
        return [_mutant(claim, expect, {"any": quant["none"]}, "none -> any")]
    if flipped is None:
        return []
    what, expect2 = flipped
    if kind in ("all", "any"):
        other = "any" if kind == "all" else "all"
        return [_mutant(claim, expect2, {other: quant[kind]}, f"{what}, {kind} -> {other}")]
    return [_mutant(claim, expect2, quant, what)]


def _flip(expect: dict):
    """(description, flipped expect), or None when the region has two sides (about, between)."""
    if len(expect) == 1:
        (key, value), = expect.items()
        if key in FLIPS:
            return f"{key} -> {FLIPS[key]}", {FLIPS[key]: value}
        if key == "crosses" and isinstance(value, dict):
            d = value.get("direction", "up")
            other = "down" if d == "up" else "up"
            return f"crosses {d} -> {other}", {"crosses": {**value, "direction": other}}
        if isinstance(value, dict) and len(value) == 1:
            (side, x), = value.items()
            if side in ("at_least", "at_most"):
                return f"{key} {side} -> {FLIPS[side]}", {key: {FLIPS[side]: x}}
    return None


def _mutant(claim: dict, expect: dict, quant, what: str) -> Mutant:
    c = copy.deepcopy(claim)
    c["expect"] = expect
    if quant is not None:
        c["for"] = quant
    return Mutant(what, "direction", c)


# ---------------------------------------------------------------- judging them
def check(session, loaded: H.LoadedFile) -> list[ClaimSpecificity]:
    """Mutants of every claim of a file added to `session`, judged at each original claim's level."""
    tree = H.plain_tree(loaded.path)
    return [check_claim(session, loaded, i, tree) for i in range(len(loaded.claims))]


def check_claim(session, loaded: H.LoadedFile, index: int, tree: dict | None = None) -> ClaimSpecificity:
    lc = loaded.claims[index]
    tree = tree or H.plain_tree(loaded.path)
    result = session.result(loaded.path, lc.claim.id)
    rep = ClaimSpecificity(str(loaded.path), lc.claim.id, result.verdict)
    if result.verdict != PASS:
        return rep
    raw = tree["claims"][index]
    rep.mutants = head_mutants(raw, loaded.n_heads or 0) + direction_mutants(raw)
    for j, m in enumerate(rep.mutants):
        m.verdict = judge_mutant(session, loaded, tree, m.claim, f"{lc.claim.id}--mutant-{j}", result.level)
    return rep


def judge_mutant(session, loaded, tree, claim: dict, cid: str, level: float) -> str:
    """One mutant's verdict at `level`; a mutant the loader refuses (say, a position its head
    cannot attend to) is killed: it cannot pass."""
    mutant_tree = {**tree, "claims": [{**claim, "id": cid}]}
    path = loaded.path.with_name(loaded.path.name + f"#{cid}")  # same folder: relative paths still resolve
    try:
        mutant = H.load_tree(path, mutant_tree)
    except H.HypothesisError:
        return "refused"
    session.add(mutant)
    return session.judge_at(mutant, mutant.claims[0], level).verdict


def run(paths, options=None) -> list[ClaimSpecificity]:
    from .session import Options, Session

    session = Session(options or Options())
    loaded = [H.load(p) for p in paths]
    for f in loaded:
        session.add(f)
    return [r for f in loaded for r in check(session, f)]
