"""Baselines, the syrupy way: a run's results saved beside the hypothesis files, reviewed in git,
and every later run compared with them.

Layout: one baseline file per hypothesis file, in a `__baselines__/` folder beside it,

    hypotheses/max_of_list.hyp.yaml
    hypotheses/__baselines__/max_of_list.json

holding, per claim, its verdict and per case the value, interval, level, method, n and verdict,
plus the fingerprint of the run that wrote it (weights sha256, versions, dtype, device) and the
heads that filled its roles. `--cc-update-baselines` writes them; a claim selected out of the run
(`-k`) keeps its old entry, a claim gone from the file loses it.

A comparison reports, per claim: the baseline value and the change, a verdict flip
(`pass→fail`, `pass→inconclusive`, ...), and drift. Each case keeps the per-prompt values its
interval came from and a digest of their prompts, so drift is a test at a stated level (drift.py):
paired on the same prompts, two samples on other prompts; with `drift: X`, an equivalence test.
Claims with no baseline entry and baseline entries with no claim are listed, as syrupy lists
unused snapshots. `--cc-update-baselines` compares before it writes: an entry that neither flips
nor drifts is kept as it is, so float noise rewrites no line.

Entries are plain dicts in the JSON report's shape (`entry`), so `circuitcheck diff A.json B.json`
compares two saved reports with the same `compare`.
"""
from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import drift as D
from ..files import atomic

FORMAT = "circuitcheck-baseline/1"
FOLDER = "__baselines__"
CASE_FIELDS = ("value", "low", "high", "level", "method", "n", "verdict")
SAMPLE_FIELDS = ("prompts", "kind", "values", "ladder")  # per-prompt values where a case has them, else
# its interval at a ladder of levels (drift.py)
DRIFT_ALPHA = 0.05  # the run's drift level, spread over the cases compared (--cc-drift-alpha)


def path_for(hypothesis_file) -> Path:
    p = Path(hypothesis_file)
    return p.parent / FOLDER / (p.name.removesuffix(".hyp.yaml").removesuffix(".yaml") + ".json")


# ---------------------------------------------------------------- entries
def entry(result) -> dict:
    """A claim's result as a baseline entry (also the core of its JSON report record)."""
    return {
        "verdict": result.verdict,
        "drift": result.drift,
        "roles": dict(result.roles),
        "cases": [_case(c) for c in result.cases],
    }


def _case(c) -> dict:
    out = {"label": c.label, **numbers(c.estimate), "verdict": c.verdict}
    if getattr(c, "values", None) is not None:
        kind = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (c.kind or {}).items() if v}
        out.update(prompts=c.prompts, kind=kind, values=D.rounded(c.values))
    return out


def numbers(e) -> dict:
    """An estimate's value, interval, level, method and n, as plain JSON values; a bound that was
    refused (±inf) is null, as in the JSON report: JSON has no infinity."""
    return {"value": float(e.statistic), "low": _finite(e.low), "high": _finite(e.high),
            "level": float(e.level), "method": e.method, "n": int(e.n)}


def _finite(x) -> float | None:
    return float(x) if math.isfinite(x) else None


# ---------------------------------------------------------------- comparing
@dataclass
class CaseChange:
    label: str
    base: dict | None  # the baseline's case, None for a case the baseline lacks
    now: dict | None  # this run's case, None for a case gone from this run
    drift: bool = False
    test: str = ""  # the test that decided drift, with Δ's bounds (drift.py)

    @property
    def change(self) -> float | None:
        return self.now["value"] - self.base["value"] if self.base and self.now else None

    @property
    def flip(self) -> str | None:
        if self.base and self.now and self.base["verdict"] != self.now["verdict"]:
            return f"{self.base['verdict']}→{self.now['verdict']}"
        return None


@dataclass
class Comparison:
    base_verdict: str
    verdict: str
    cases: list[CaseChange] = field(default_factory=list)
    tolerance: str = "drift: a paired test of no change"
    roles: dict = field(default_factory=dict)  # role -> (baseline head, this run's head), where they differ
    weights_changed: bool | None = None
    models: tuple = ("", "")  # the models that ran (`circuitcheck diff`)

    @property
    def flip(self) -> str | None:
        return f"{self.base_verdict}→{self.verdict}" if self.base_verdict != self.verdict else None

    @property
    def drift(self) -> bool:
        return any(c.drift for c in self.cases)

    @property
    def changed(self) -> bool:
        return bool(self.flip or self.drift or any(c.base is None or c.now is None for c in self.cases))

    def shown(self) -> CaseChange | None:
        """The case a one-line summary shows: the one that flipped or drifted most, else the first."""
        both = [c for c in self.cases if c.base and c.now]
        if not both:
            return None
        return max(both, key=lambda c: (c.flip is not None, c.drift, abs(c.change)))

    def cell(self) -> str:
        """One table cell: `0.93 (Δ-0.12 drift) pass→fail`."""
        c = self.shown()
        label = f"[{c.label}] " if c and c.label and len(self.cases) > 1 else ""
        text = f"{label}{_num(c.base['value'])} (Δ{c.change:+.3g}{' drift' if c.drift else ''})" if c else "-"
        return text + (f" {self.flip}" if self.flip else "")

    def lines(self) -> list[str]:
        """The baseline part of a failure message or summary."""
        out = [f"  baseline: verdict {self.base_verdict}" + (f", now {self.verdict} ({self.flip})" if self.flip else
                                                             " (unchanged)")
               + ("; weights differ from the baseline run's" if self.weights_changed else "")]
        for c in self.cases:
            label = f"[{c.label}] " if c.label else ""
            if c.base is None:
                out.append(f"    {label}new case: no baseline")
            elif c.now is None:
                out.append(f"    {label}in the baseline, not in this run")
            else:
                out.append(f"    {label}{_num(c.base['value'])} [{_num(c.base['low'], '-inf')}, {_num(c.base['high'])}] → "
                           f"{_num(c.now['value'])} [{_num(c.now['low'], '-inf')}, {_num(c.now['high'])}]  Δ{c.change:+.3g}"
                           + (f"  DRIFT ({c.test or self.tolerance})" if c.drift else "")
                           + (f"  {c.flip}" if c.flip else ""))
        for role, (was, now) in self.roles.items():
            out.append(f"    role ${role}: {was} in the baseline, {now} now")
        return out


def compare(now: dict, base: dict, base_sha: str | None = None, now_sha: str | None = None,
            a: float = DRIFT_ALPHA, bounds: dict | None = None) -> Comparison:
    """This run's entry against the baseline's, case by case (matched by label); `a` is each case's
    drift level (the run's level over the cases it compares); `bounds`: this run's stats.Bound per case
    label, where the run has them (a case without per-prompt values is read through them)."""
    tol = now.get("drift") if now.get("drift") is not None else base.get("drift")
    cmp = Comparison(base["verdict"], now["verdict"],
                     tolerance=f"drift: not shown within ±{tol:g}, the claim's `drift:` (equivalence test)"
                     if tol is not None else f"drift: a test of no change at level {a:.3g} per case")
    base_cases = {c["label"]: c for c in base.get("cases", [])}
    now_cases = {c["label"]: c for c in now.get("cases", [])}
    for label in list(now_cases) + [x for x in base_cases if x not in now_cases]:
        b, n = base_cases.get(label), now_cases.get(label)
        drifted, test = D.drifts(b, n, a, tol, bound=(bounds or {}).get(label)) if b and n else (False, "")
        if b and n and _nan(b, n):  # NaN compares false with everything, which would read as no drift
            drifted, test = True, "a NaN value or interval end"
        cmp.cases.append(CaseChange(label, b, n, drifted, test))
    roles_b, roles_n = base.get("roles") or {}, now.get("roles") or {}
    cmp.roles = {r: (roles_b[r], roles_n[r]) for r in roles_n if r in roles_b and roles_b[r] != roles_n[r]}
    if base_sha and now_sha:
        cmp.weights_changed = base_sha != now_sha
    return cmp


def _nan(base: dict, now: dict) -> bool:
    return any(isinstance(x, float) and math.isnan(x) for c in (base, now) for x in (c.get("value"), c.get("low"), c.get("high")))


def _num(x: float | None, unbounded: str = "inf") -> str:
    return unbounded if x is None else f"{x:.4g}"  # None: a refused bound (numbers)


# ---------------------------------------------------------------- baseline files
class Baselines:
    """The baseline files of a run, read once each; compares results and writes updates."""

    def __init__(self):
        self._read: dict[Path, dict | None] = {}

    def read(self, hypothesis_file) -> dict | None:
        p = path_for(hypothesis_file)
        if p not in self._read:
            self._read[p] = _read(p)
        return self._read[p]

    def attach(self, result, a: float = DRIFT_ALPHA) -> None:
        """Set `result.baseline` to its comparison with the baseline, where the baseline has the claim
        (`a`: each case's drift level)."""
        data = self.read(result.path)
        if not data or result.claim_id not in data["claims"] or result.error:
            return
        base = data["claims"][result.claim_id]
        result.baseline = compare(entry(result), base, (data.get("fingerprint") or {}).get("weights_sha256"),
                                  result.fingerprint.get("weights_sha256"), a,
                                  {c.label: c.bound for c in result.cases if getattr(c, "bound", None) is not None})

    def cases(self, hypothesis_files) -> int:
        """How many baseline cases these files' baselines hold: the run's drift family."""
        total = 0
        for f in hypothesis_files:
            try:
                data = self.read(f)
            except BaselineError:
                continue
            total += sum(len(c.get("cases", [])) for c in (data or {}).get("claims", {}).values())
        return total


MAX_BYTES = 50_000_000  # a baseline holds a few numbers per case; more is not a baseline
REWRITE = "rewrite it with --cc-update-baselines"


def _read(p: Path) -> dict | None:
    if not p.exists() and not p.is_symlink():
        return None
    data = _json(p, _bytes(p))
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("claims"), dict):
        raise BaselineError(f"{p}: not a {FORMAT} baseline file; {REWRITE}")
    for cid, claim in data["claims"].items():
        problem = _entry_problem(claim)
        if problem:
            raise BaselineError(f"{p}: the entry of claim {cid!r} {problem}; {REWRITE}")
    return data


def _bytes(p: Path) -> bytes:
    """A regular file's bytes, refused without reading where it is a folder, a FIFO (which would
    wait for a writer forever) or a device such as /dev/zero (which never ends)."""
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise BaselineError(f"{p}: is not a regular file (a folder, FIFO or device); {REWRITE}, or remove it")
        if st.st_size > MAX_BYTES:
            raise BaselineError(f"{p}: is {st.st_size:,} bytes, more than a baseline has ({MAX_BYTES:,}); {REWRITE}")
        return p.read_bytes()
    except OSError as exc:
        raise BaselineError(f"{p}: cannot be read ({exc.strerror or exc})") from None


def _json(p: Path, data: bytes):
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise BaselineError(f"{p}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); {REWRITE}") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise BaselineError(f"{p}: not valid JSON ({str(exc)[:200]}); {REWRITE}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a baseline holds")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_CASE_TYPES = {"label": (str,), "method": (str,), "verdict": (str,)}


def _entry_problem(claim) -> str | None:
    """What is wrong with one claim's baseline entry, or None: the shape `compare` reads."""
    if not isinstance(claim, dict):
        return f"is {type(claim).__name__}, not a mapping"
    if not isinstance(claim.get("verdict"), str):
        return "has no verdict (text)"
    if claim.get("drift") is not None and not _is_number(claim["drift"]):
        return f"has drift {claim['drift']!r}, not a number"
    if not isinstance(claim.get("roles") or {}, dict) or not isinstance(claim.get("cases", []), list):
        return "has roles that are not a mapping or cases that are not a list"
    for i, case in enumerate(claim.get("cases", [])):
        if not isinstance(case, dict):
            return f"has case {i} that is {type(case).__name__}, not a mapping"
        for k in CASE_FIELDS + ("label",):
            ok = isinstance(case.get(k), _CASE_TYPES[k]) if k in _CASE_TYPES else _is_number(case.get(k)) or (
                k in ("low", "high") and case.get(k) is None)  # null: a refused bound (numbers)
            if not ok:
                what = "text" if k in _CASE_TYPES else "a number" + (" or null" if k in ("low", "high") else "")
                return f"has case {i} with {k} {case.get(k)!r}, not {what}"
        if "ladder" in case and not _is_ladder(case["ladder"]):
            return f"has case {i} with a ladder that is not a list of [level, lower or null, upper or null]"
    return None


def _is_ladder(rows) -> bool:
    return isinstance(rows, list) and bool(rows) and all(
        isinstance(r, list) and len(r) == 3 and _is_number(r[0]) and 0 < r[0] < 1
        and all(x is None or _is_number(x) for x in r[1:]) for r in rows)


class BaselineError(ValueError):
    """A baseline file that cannot be read."""


def write(hypothesis_file, claim_ids: list[str], records: list[dict], a: float = DRIFT_ALPHA,
          keep: bool = True) -> Path:
    """Write the baseline of one hypothesis file from this run's records (JSON report claims).

    `claim_ids` are the file's claims now: entries of claims not in this run are kept from the
    old baseline (`keep`), entries of claims gone from the file are dropped. A claim whose new entry neither
    flips nor drifts from its old one (at case level `a`) keeps the old entry byte for byte, as
    syrupy keeps a snapshot that still matches: float noise rewrites nothing."""
    p = path_for(hypothesis_file)
    old = (_read(p) or {}).get("claims", {}) if keep else {}
    ran = {r["id"]: r for r in records}
    claims = {}
    for cid in claim_ids:
        if cid in ran:
            new = _entry_of(ran[cid])
            claims[cid] = old[cid] if cid in old and still_matches(new, old[cid], a) else new
        elif cid in old:
            claims[cid] = old[cid]
    fp = next((r["fingerprint"] for r in records if r.get("fingerprint")), None)
    data = {"format": FORMAT, "hypothesis_file": Path(hypothesis_file).name,
            "model": next((r["model"] for r in records), None), "fingerprint": fp, "claims": claims}
    return atomic.write(p, _dump(data))


def _entry_of(r: dict) -> dict:
    cases = [{k: c[k] for k in ("label",) + CASE_FIELDS + SAMPLE_FIELDS if k in c} for c in r["cases"]]
    return {"verdict": r["verdict"], "drift": r["drift"], "roles": r["roles"], "cases": cases}


def still_matches(new: dict, old: dict, a: float) -> bool:
    """Whether an old entry still stands for a new one: same verdict, roles, `drift:` and cases,
    each with the same verdict and no drift, and values kept where the new entry has them."""
    if (new["verdict"], new["drift"], new["roles"]) != (old.get("verdict"), old.get("drift"), old.get("roles")):
        return False
    if [c["label"] for c in new["cases"]] != [c["label"] for c in old.get("cases", [])]:
        return False
    if any(k in n and k not in o for n, o in zip(new["cases"], old["cases"]) for k in ("values", "ladder")):
        return False  # an old baseline without per-prompt values or a ladder: write them
    cmp = compare(new, old, a=a)
    return not cmp.flip and not cmp.drift and not any(c.flip for c in cmp.cases)


def _dump(data: dict) -> str:
    """Indented JSON with each case on one line: a changed number is a one-line diff in review."""
    one = lambda x: json.dumps(x, ensure_ascii=False, allow_nan=False)  # noqa: E731
    claims = []
    for cid, c in data["claims"].items():
        head = ", ".join(f"{one(k)}: {one(c[k])}" for k in ("verdict", "drift", "roles"))
        cases = ",\n".join(f"    {one(case)}" for case in c["cases"])
        claims.append(f"  {one(cid)}: {{{head}, \"cases\": [\n{cases}\n  ]}}")
    top = {k: v for k, v in data.items() if k != "claims"}
    return (json.dumps(top, indent=1, ensure_ascii=False)[:-2] + ',\n "claims": {\n'
            + ",\n".join(claims) + "\n }\n}\n")


def unused(hypothesis_file, claim_ids: list[str], ran: list[str]) -> tuple[list[str], list[str]]:
    """(baseline entries whose claim is gone from the file, claims that ran without a baseline entry)."""
    data = _read(path_for(hypothesis_file))
    have = set(data["claims"]) if data else set()
    return sorted(have - set(claim_ids)), [c for c in ran if c not in have]
