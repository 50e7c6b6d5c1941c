"""Specificity: does a passing claim single out what it names?

Each passing claim is judged again as mutants, at the level the claim itself was judged at:
- every head it names swapped for each other head of the same layer (all its occurrences at once;
  heads the claim already names are skipped, since a swap onto them tells nothing);
- every role it uses (`$strongest`, bound by a scan: roles.py) filled by each other candidate the
  scan chose among instead of the head it chose: a claim about "the head that attends most to the
  max" must fail when another head stands in that place;
- every MLP neuron it names swapped for a sample of other neurons of its layer, and every layer of
  an intervention's `hook:` for each other layer;
- its claimed direction flipped: the inequality reversed, and `all` <-> `any` by De Morgan (see
  `direction_mutants`), so that the mutant claims roughly the opposite.
A mutant that still passes is a survivor: "also passes with L0H2 in place of L0H1" means the claim
does not single out L0H1. Mutants are planned with the original claims, so they share their runs.

    circuitcheck specificity hypotheses/*.hyp.yaml
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..files import loader as H
from ..files.roles import candidates, substitute
from ..language.names import NEURON
from .verdict import PASS

HEAD = re.compile(r"^L(\d+)H(\d+)$")
HEAD_IN = re.compile(r"(?<![A-Za-z0-9_])L\d+H\d+(?![0-9])")  # a head inside a text (`OV[L2H0]`)
FLIPS = {"at_least": "at_most", "at_most": "at_least"}


@dataclass
class Mutant:
    what: str  # "L0H1 -> L0H2", "$strongest: L0H3 -> L0H0", "at_least -> at_most"
    kind: str  # "head" | "role" | "component" | "direction"
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
    checkpoint: str = ""  # the checkpoint it ran on, in a series (--cc-model REF=a,b,c; `checkpoints:`)

    @property
    def survivors(self) -> list[Mutant]:
        return [m for m in self.mutants if m.survived]

    def lines(self) -> list[str]:
        head = f"{Path(self.path).name}::{self.claim_id}" + (f"[{self.checkpoint}]" if self.checkpoint else "")
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
    if m.kind == "role":
        role, _, change = m.what.partition(": ")
        chosen, new = change.split(" -> ")
        return (f"also passes with {new} filling {role} (the scan chose {chosen}): this claim does not single out "
                f"the head its scan chooses")
    if m.kind == "component":
        return f"also passes with {m.what}: this claim does not single out the component it names"
    return f"also passes with its direction flipped ({m.what}): this claim cannot fail that way"


# ---------------------------------------------------------------- making mutants
def heads_named(node) -> list[str]:
    """Every head in a claim's values, in order of first appearance (not in `id`/`says`): a head
    string, or a head inside a text such as a weight expression (`W_E[3] @ OV[L2H0]`)."""
    return _strings(node, lambda x: [m[0] for m in HEAD_IN.finditer(x)])


def _replace(node, old: str, new: str):
    if isinstance(node, str):
        return re.sub(rf"(?<![A-Za-z0-9_]){old}(?![0-9])", new, node)
    if isinstance(node, dict):
        return {k: (v if k in ("id", "says") else _replace(v, old, new)) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    return node


def head_mutants(claim: dict, n_heads: int, bound: dict[str, str] | None = None) -> list[Mutant]:
    """Each head the claim writes swapped for each other head of its layer. `bound` (role -> head)
    fills the roles the claim uses; their heads count as named, and are swapped by `role_mutants`."""
    bound = bound or {}
    named = heads_named(substitute(claim, bound))
    out = []
    for h in heads_named(claim):
        layer = HEAD.match(h)[1]
        for k in range(n_heads):
            other = f"L{layer}H{k}"
            if other not in named:
                out.append(Mutant(f"{h} -> {other}", "head", substitute(_replace(claim, h, other), bound)))
    return out


def role_mutants(claim: dict, bound: dict[str, str], candidates: dict[str, list[str]]) -> list[Mutant]:
    """Each role the claim uses filled by each other candidate of its scan (`candidates`: role -> the
    heads it was chosen among), the other roles as bound; heads the claim already names are skipped."""
    named = heads_named(substitute(claim, bound))
    return [Mutant(f"${role}: {head} -> {other}", "role", substitute(claim, {**bound, role: other}))
            for role, head in bound.items() for other in candidates.get(role, []) if other not in named]


FULL_HOOK = re.compile(r"^blocks\.(\d+)\.")
NEURON_SAMPLE = 8  # other neurons of the layer tried per named neuron (all of them would be hundreds of runs)


def component_mutants(claim: dict, n_layers: int, d_mlp: int) -> list[Mutant]:
    """Each named MLP neuron swapped for NEURON_SAMPLE other neurons of its layer, spread evenly over
    it; each layer of an intervention's `hook:` (a short form's `layer:`, or a full hook name's
    `blocks.N.`) swapped for every other layer."""
    out = []
    named = _strings(claim, lambda x: [x] if NEURON.match(x) else [])
    for old in named:
        layer, i = map(int, NEURON.match(old).groups())
        step = max(1, d_mlp // (NEURON_SAMPLE + 1))
        others = [f"L{layer}N{(i + k * step) % d_mlp}" for k in range(1, NEURON_SAMPLE + 1)] if d_mlp > 1 else []
        for new in dict.fromkeys(o for o in others if o not in named):
            out.append(Mutant(f"{old} -> {new}", "component", _replace(claim, old, new)))
    for j, iv in enumerate(_under(claim)):
        for kind, body in iv.items():
            if not isinstance(body, dict) or "hook" not in body:
                continue
            layer = body.get("layer")
            full = FULL_HOOK.match(str(body["hook"]))
            current = layer if isinstance(layer, int) else int(full[1]) if full else None
            for other in range(n_layers) if current is not None else ():
                if other == current:
                    continue
                moved = {**body, "layer": other} if isinstance(layer, int) else \
                    {**body, "hook": FULL_HOOK.sub(f"blocks.{other}.", body["hook"])}
                c = copy.deepcopy(claim)
                c["under"] = [dict(x) for x in _under(claim)]
                c["under"][j] = {**iv, kind: moved}
                out.append(Mutant(f"{kind} {_where(body)} layer {current} -> {other}", "component", c))
    return out


def _under(claim: dict) -> list:
    under = claim.get("under", [])
    return [under] if isinstance(under, dict) else list(under or [])


def _where(body: dict) -> str:
    return str(body["hook"])


def _strings(node, pick) -> list[str]:
    """What `pick(text)` finds in every string of a claim (not in `id`/`says`), each once, in order."""
    found: list[str] = []

    def walk(x):
        if isinstance(x, str):
            found.extend(h for h in dict.fromkeys(pick(x)) if h not in found)
        elif isinstance(x, dict):
            for k, v in x.items():
                if k not in ("id", "says"):
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(node)
    return found


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
def check(session, loaded: H.LoadedFile, key=None) -> list[ClaimSpecificity]:
    """Mutants of every claim of a file added to `session`, judged at each original claim's level
    (`key`: as in `check_claim`)."""
    tree = H.plain_tree(loaded.path)
    return [check_claim(session, loaded, i, tree, key) for i in range(len(loaded.claims))]


def check_claim(session, loaded: H.LoadedFile, index: int, tree: dict | None = None, key=None) -> ClaimSpecificity:
    """`key`: the file's key in the session where it is not its path (a checkpoint: `(path, name)`)."""
    lc = loaded.claims[index]
    tree = tree or H.plain_tree(loaded.path)
    result = session.result(key or loaded.path, lc.claim.id)
    rep = ClaimSpecificity(str(loaded.path), lc.claim.id, result.verdict, checkpoint=result.checkpoint)
    if result.verdict != PASS:
        return rep
    raw, bound = tree["claims"][index], result.roles
    cands = {name: candidates(loaded.spec.roles[name], loaded.n_layers, loaded.n_heads) for name in bound}
    swaps = [] if shared_property(raw) else head_mutants(raw, loaded.n_heads or 0, bound)
    rep.mutants = (swaps + role_mutants(raw, bound, cands)
                   + direction_mutants(substitute(raw, bound))
                   + component_mutants(substitute(raw, bound), loaded.n_layers or 0, loaded.sizes.get("d_mlp") or 0))
    for j, m in enumerate(rep.mutants):
        m.verdict = judge_mutant(session, loaded, tree, m.claim, f"{lc.claim.id}--mutant-{j}", result.level)
    return rep


def shared_property(raw: dict) -> bool:
    """A circuit claim of minimality or of beating random circuits: a property a circuit has or
    lacks, which other circuits may share. Swapping one of its heads makes another circuit, whose
    passing says nothing about this one's heads; such claims are checked by their false twins."""
    expect = raw.get("expect")
    return isinstance(raw.get("circuit"), dict) and isinstance(expect, dict) and \
        any(k in expect for k in ("minimality", "beats_random"))


def judge_mutant(session, loaded, tree, claim: dict, cid: str, level: float) -> str:
    """One mutant's verdict at `level`; a mutant the loader refuses (say, a position its head
    cannot attend to) is killed: it cannot pass. Its roles are already filled, so it scans none."""
    mutant_tree = {**{k: v for k, v in tree.items() if k != "roles"}, "claims": [{**claim, "id": cid}]}
    path = loaded.path.with_name(loaded.path.name + f"#{cid}")  # same folder: relative paths still resolve
    try:
        mutant = H.load_tree(path, mutant_tree)
    except H.HypothesisError:
        return "refused"
    # on the model the claim ran on (after --cc-model, or a checkpoint), not the one the file names
    mutant = dataclasses.replace(mutant, model_source=loaded.model_source, n_layers=loaded.n_layers,
                                 n_heads=loaded.n_heads)
    session.add(mutant)
    return session.judge_at(mutant, mutant.claims[0], level).verdict

