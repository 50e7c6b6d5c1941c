"""Specificity: does a passing claim single out what it names?

Each passing claim is judged again as mutants, at the level the claim itself was judged at:
- every head it names swapped for each other head of the same layer (all its occurrences at once;
  heads the claim already names are skipped, since a swap onto them tells nothing);
- every role it uses (`$strongest`, bound by a scan: roles.py) filled by each other candidate the
  scan chose among instead of the head it chose: a claim about "the head that attends most to the
  max" must fail when another head stands in that place;
- every MLP neuron it names swapped for the strongest rivals of its layer by the claim's own measure
  (the other neurons whose values come nearest to the claimed region), every MLP or attention layer
  it names (`mlp2`, `attn0` in a `dla` component; `mlp_out`/`attn_out` hooks) for each other layer
  and for the other kind of the same layer, and every layer of an intervention's `hook:` for each
  other layer;
- its claimed direction flipped: the inequality reversed, and `all` <-> `any` by De Morgan (see
  `direction_mutants`), so that the mutant claims roughly the opposite.
A mutant that still passes is a survivor: "also passes with L0H2 in place of L0H1" means the claim
does not single out L0H1. Only a mutant that fails (or that the loader refuses) is killed: an
inconclusive one is not shown to differ, and counts against the claim as well. A mutant with `any` is
killed when every case fails at the claim's level (failing `any` needs no Bonferroni split: see
`judge_mutant`). Mutants are planned with the original claims, so they share their runs.

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
from .verdict import FAIL, INCONCLUSIVE, PASS

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
        """Not killed: it passes, or it is inconclusive (the data do not show the claim singles it out)."""
        return self.verdict not in (FAIL, "refused")


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
    text = _explain_pass(m)
    if m.verdict == INCONCLUSIVE:  # not shown to fail: the claim is not shown to single out what it names
        return text.replace("also passes with", "is inconclusive, not failing, with", 1) + \
            " (more prompts would decide)"
    return text


def _explain_pass(m: Mutant) -> str:
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
LAYER_COMPONENT = re.compile(r"^(mlp|attn)(\d+)$")  # a whole layer as a `dla` component
LAYER_HOOKS = {"mlp_out": "attn_out", "attn_out": "mlp_out"}  # the other kind of the same layer
NEURON_RIVALS = 8  # the strongest other neurons of the layer tried per named neuron
NEURON_SCAN = 1024  # neurons of a wider layer scanned for rivals: this many, spread evenly over it


def component_mutants(claim: dict, n_layers: int) -> list[Mutant]:
    """Each MLP or attention layer the claim names (`mlp2` as a `dla` component) swapped for every
    other layer and for the other kind of the same layer (`mlp2` -> `attn2`); each layer of an
    intervention's `hook:` (a short form's `layer:`, or a full hook name's `blocks.N.`) swapped for
    every other layer, and `mlp_out` <-> `attn_out`. Named neurons: `neuron_rivals`."""
    out = []
    named = _strings(claim, lambda x: [x] if LAYER_COMPONENT.match(x) else [])
    for old in named:
        kind, layer = LAYER_COMPONENT.match(old).groups()
        other_kind = "attn" if kind == "mlp" else "mlp"
        news = [f"{kind}{k}" for k in range(n_layers) if k != int(layer)] + [f"{other_kind}{layer}"]
        for new in (n for n in news if n not in named):
            out.append(Mutant(f"{old} -> {new}", "component", _replace(claim, old, new)))
    for j, iv in enumerate(_under(claim)):
        for kind, body in iv.items():
            if isinstance(body, dict) and "hook" in body:
                out += [_with_body(claim, j, iv, kind, moved, what) for moved, what in _hook_moves(body, n_layers)]
    return out


def _hook_moves(body: dict, n_layers: int) -> list[tuple[dict, str]]:
    """(moved body, what moved) for each other layer of a hook, and the other kind of a layer output."""
    layer = body.get("layer")
    full = FULL_HOOK.match(str(body["hook"]))
    current = layer if isinstance(layer, int) else int(full[1]) if full else None
    out = []
    for other in range(n_layers) if current is not None else ():
        if other != current:
            moved = {**body, "layer": other} if isinstance(layer, int) else \
                {**body, "hook": FULL_HOOK.sub(f"blocks.{other}.", body["hook"])}
            out.append((moved, f"{body['hook']} layer {current} -> {other}"))
    if body["hook"] in LAYER_HOOKS:
        out.append(({**body, "hook": LAYER_HOOKS[body["hook"]]}, f"{body['hook']} -> {LAYER_HOOKS[body['hook']]}"))
    return out


def _with_body(claim: dict, j: int, iv: dict, kind: str, body: dict, what: str) -> Mutant:
    c = copy.deepcopy(claim)
    c["under"] = [dict(x) for x in _under(claim)]
    c["under"][j] = {**iv, kind: body}
    return Mutant(f"{kind} {what}", "component", c)


def neuron_swaps(claim: dict, d_mlp: int) -> list[tuple[str, list[Mutant]]]:
    """(named neuron, a mutant for every other neuron of its layer) for each neuron the claim names;
    `check_claim` keeps the strongest rivals by the claim's own measure (`strongest`)."""
    named = _strings(claim, lambda x: [x] if NEURON.match(x) else [])
    out = []
    for old in named:
        layer = NEURON.match(old)[1]
        step = max(1, -(-d_mlp // NEURON_SCAN))
        others = [f"L{layer}N{k}" for k in range(0, d_mlp, step) if f"L{layer}N{k}" not in named]
        out.append((old, [Mutant(f"{old} -> {new}", "component", _replace(claim, old, new)) for new in others]))
    return out


def distance_to(region: tuple[float, float], value: float) -> float:
    """How far a value lies outside a region (0 inside): how near a rival comes to passing."""
    lo, hi = region
    return max(lo - value, value - hi, 0.0)


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
    kind = _quantifier(claim)
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
    raw = tree["claims"][index]
    if chosen_by_greedy(raw):
        return rep
    bound = result.roles  # only a greedy claim's roles carry greedy picks, and it returned above
    cands = {name: candidates(loaded.spec.roles[name], loaded.n_layers, loaded.n_heads) for name in bound}
    plain = substitute(raw, bound)
    swaps = [] if shared_property(raw) else head_mutants(raw, loaded.n_heads or 0, bound)
    rep.mutants = (swaps + role_mutants(raw, bound, cands)
                   + direction_mutants(plain) + component_mutants(plain, loaded.n_layers or 0)
                   + [m for _, rivals in neuron_swaps(plain, loaded.sizes.get("d_mlp") or 0)
                      for m in strongest(session, loaded, tree, rivals, f"{lc.claim.id}--rival")])
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


def chosen_by_greedy(raw: dict) -> bool:
    """A completeness claim with a greedy K: its K's are chosen for its circuit on held-out prompts
    before it is planned (files/greedy.py), which a mutant read on its own would skip, leaving only
    the other K's; such claims are checked by their false twins."""
    circuit = raw.get("circuit")
    knock = circuit.get("knock") if isinstance(circuit, dict) else None
    return isinstance(knock, dict) and bool(knock.get("greedy"))


def strongest(session, loaded, tree, swaps: list[Mutant], cid: str, k: int = NEURON_RIVALS) -> list[Mutant]:
    """The `k` mutants whose mean values (paired change for drop/rise/change) come nearest to passing
    the claim, over all of its cases (`nearness`): the rivals most likely to pass too, not an even grid."""
    import numpy as np

    scored = []
    for j, m in enumerate(swaps):
        mutant = _mutant_file(loaded, tree, m.claim, f"{cid}-{j}")
        if mutant is None:
            continue
        session.add(mutant)
        lc = mutant.claims[0]
        means = [float(np.mean(session.values(mutant, lc.claim, case)[0])) for case in lc.cases]
        quant = lc.claim.for_.kind if lc.claim.for_ is not None else "all"
        scored.append((nearness(lc.claim.expect.region.bounds(), means, quant), j, m))
    return [m for _, _, m in sorted(scored, key=lambda t: t[:2])[:k]]


def nearness(region: tuple[float, float], means: list[float], quant: str) -> float:
    """How far a rival's cases are from passing the claim (0: they pass on their means). `all` (and a
    claim with one case or a sweep) passes when every case does, so its farthest case counts; `any`
    when one does, so its nearest; `none` when no case lies in the region, so its deepest inside."""
    if quant == "any":
        return min(distance_to(region, v) for v in means)
    if quant == "none":
        lo, hi = region
        return max(max(min(v - lo, hi - v), 0.0) for v in means)
    return max(distance_to(region, v) for v in means)


def _mutant_file(loaded, tree, claim: dict, cid: str):
    """A mutant claim as a file of its own, on the model the claim ran on, added to the session's
    plan; None where the loader refuses it."""
    mutant_tree = {**{k: v for k, v in tree.items() if k != "roles"}, "claims": [{**claim, "id": cid}]}
    path = loaded.path.with_name(loaded.path.name + f"#{cid}")  # same folder: relative paths still resolve
    try:
        mutant = H.load_tree(path, mutant_tree)
    except H.HypothesisError:
        return None
    # on the model the claim ran on (after --cc-model, or a checkpoint), not the one the file names
    return dataclasses.replace(mutant, model_source=loaded.model_source, n_layers=loaded.n_layers,
                               n_heads=loaded.n_heads)


def judge_mutant(session, loaded, tree, claim: dict, cid: str, level: float) -> str:
    """One mutant's verdict at `level`; a mutant the loader refuses (say, a position its head
    cannot attend to) is killed: it cannot pass. Its roles are already filled, so it scans none."""
    mutant = _mutant_file(loaded, tree, claim, cid)
    if mutant is None:
        return "refused"
    session.add(mutant)
    lc = mutant.claims[0]
    result = session.judge_at(mutant, lc, level)
    m = len(result.cases)
    if result.verdict == INCONCLUSIVE and _quantifier(claim) == "any" and m > 1:
        # `any` is false when every case fails (intersection-union), each tested at `level` itself;
        # judge_at bounds each case at level / m, which only a pass needs (Bonferroni). Without this
        # the De Morgan negation of a passing `all` claim came back inconclusive, not failing.
        if all(c.verdict == FAIL for c in session.judge_at(mutant, lc, min(1.0, level * m)).cases):
            return FAIL
    return result.verdict


def _quantifier(claim: dict) -> str | None:
    quant = claim.get("for")
    return next(iter(quant)) if isinstance(quant, dict) and len(quant) == 1 else None

