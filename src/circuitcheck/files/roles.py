"""Roles: heads named by what they do, bound by a scan when the claims run.

    roles:
      induction: {best: {head_score: {head: $head, pattern: induction}}, among: layer 1}
    claims:
      - id: induction-head-copies
        measure: {head_score: {head: $induction, pattern: induction}}

A retrain permutes heads; a role follows the circuit. Each candidate in `among` (a list of heads,
`layer N`, or `all`) is put where the role's `best:` measure writes `$head`, measured on the
file's generator drawn with another seed (held out from the claims; or the role's own `prompts:`;
`prompts: claims` for the claims' own), and the candidate with the highest mean (or the
`rank`-th highest; ties keep candidate order) fills the role. Claims write `$induction` wherever
a head goes; their case labels keep the role's name (`$induction`), so baselines compare roles,
not head names, and each result records which head filled each role.

Collection needs no torch: the file is read with each role standing in as its first candidate,
which checks every claim; the session scans and reads the file again before its claims run.
"""
from __future__ import annotations

import re

import numpy as np

ROLE_REF = re.compile(r"^\$(\w+)$")
VAR = re.compile(r"\$(\w+)\b")


def candidates(role, n_layers: int | None, n_heads: int | None) -> list[str]:
    if isinstance(role.among, list):
        return list(role.among)
    if n_heads is None or (role.among == "all" and n_layers is None):
        return []
    layers = range(n_layers) if role.among == "all" else [int(role.among.split()[1])]
    return [f"L{layer}H{h}" for layer in layers for h in range(n_heads)]


def placeholder(role) -> str:
    """A valid head standing in for the role at collection."""
    if isinstance(role.among, list):
        return role.among[0]
    return "L0H0" if role.among == "all" else f"L{role.among.split()[1]}H0"


def bind(tree: dict, spec, heads: dict[str, str] | None) -> dict:
    """The file's plain tree with `$role` in its claims replaced by the role's head (or stand-in)."""
    values = {name: (heads or {}).get(name) or placeholder(role) for name, role in spec.roles.items()}
    return {**tree, "claims": substitute(tree["claims"], values)}


def substitute(x, values: dict[str, str]):
    """`x` with each `$name` whose name is in `values` replaced by its head: a whole string, or a
    head inside a weight expression (`OV[$strongest]`). A claim's `id` and `says` are left as written."""
    if isinstance(x, str):
        return VAR.sub(lambda m: values.get(m[1], m[0]), x)
    if isinstance(x, dict):
        return {k: v if k in ("id", "says") else substitute(v, values) for k, v in x.items()}
    if isinstance(x, list):
        return [substitute(v, values) for v in x]
    return x


def uses(raw, names) -> dict[str, list[str]]:
    """Claim id -> the roles it names (`raw`: the file's spec read with `$role` left in)."""
    out = {}
    for c in raw.claims:
        text = repr(c.model_dump(exclude={"id", "says"}))
        out[c.id] = [n for n in names if re.search(rf"\${n}\b", text)]
    return out


def scan(loaded, clean_values, n_layers: int | None, n_heads: int | None) -> dict[str, dict]:
    """Role name -> {"head": the head that fills it, "scores": candidate -> mean}.

    `clean_values(measures, spec)` gives each measure's per-prompt values on the clean run over the
    prompt spec (the session reads them from the value cache where it can, so a rerun needs no model)."""
    from .spec import Measure

    out = {}
    for name, role in loaded.spec.roles.items():
        cands = candidates(role, n_layers, n_heads)
        if len(cands) < role.rank:
            raise ValueError(f"role ${name}: rank {role.rank} among {len(cands)} candidates ({role.among})")
        body = role.best.model_dump(by_alias=True, exclude_none=True)
        measures = [Measure.model_validate(_put(body, c)) for c in cands]
        values = clean_values(measures, scan_prompts(role, loaded.spec.prompts))
        scores = {c: float(np.mean(v)) for c, v in zip(cands, values)}
        ranked = sorted(cands, key=lambda c: -scores[c])
        out[name] = {"head": ranked[role.rank - 1], "scores": scores}
    return out


# A role's default scan draws the file's generator with this much added to its seed: prompts held
# out from the claims (a head chosen as the best of k on the very prompts a claim then judges it on
# looks better than it is), and far from the seeds files and `--cc-prompt-seed` name.
HELD_OUT_SEED = 1_000_003


def scan_prompts(role, file_prompts):
    """The prompt spec a role is scanned on: its own `prompts:`, the file's prompts with `claims`,
    else the file's generator with another seed (held out)."""
    if role.prompts == "claims":
        return file_prompts
    if role.prompts is not None:
        return role.prompts
    return file_prompts.model_copy(update={"seed": file_prompts.seed + HELD_OUT_SEED})


def _put(x, head: str):
    if isinstance(x, str):  # `$head` alone, or inside a weight expression: `OV[$head]`
        return VAR.sub(lambda m: head if m[1] == "head" else m[0], x)
    if isinstance(x, dict):
        return {k: _put(v, head) for k, v in x.items()}
    if isinstance(x, list):
        return [_put(v, head) for v in x]
    return x


def relabel(loaded, raw, used: dict[str, list[str]]) -> None:
    """Case labels name roles, not heads (`$induction`, `$a,L0H2`, `$strongest>L0H0`), so runs line
    up across retrains.

    The labels come from the claim as written, so two roles filled by one head stay apart."""
    import dataclasses

    for lc, claim in zip(loaded.claims, raw.claims):
        labels = _labels(lc, claim) if used.get(claim.id) else None
        if labels is not None:
            lc.cases = [dataclasses.replace(c, label=label) for c, label in zip(lc.cases, labels)]


def _labels(lc, claim) -> list[str] | None:
    """The cases' labels with roles as written, or None where the labels name no head."""
    from .spec import head_sets

    sets = claim.for_.sets if claim.for_ else None
    if sets is not None and sets.values is None:
        return [",".join(hs) for hs in head_sets(sets)]
    if claim.ranks is not None:  # `heads: $strongest` gives cases `L0H3>L0H0`: the named side is the role
        written = [claim.ranks.heads] if isinstance(claim.ranks.heads, str) else claim.ranks.heads  # `$role` alone
        named = dict(zip(lc.claim.ranks.heads, written))
        pairs = [c.label.partition(">") for c in lc.cases]
        return [f"{named.get(h, h)}>{other}" for h, _, other in pairs]
    return None
