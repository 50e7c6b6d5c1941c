"""Hypothesis file → validated spec, with every error pointing at file, line and field.

YAML is read safely (maps, lists and scalars only, never Python objects), with the line of every
key kept for error messages and duplicate keys refused (`yaml_lines`). Everything here runs
without torch, so a bad head, position or key is reported at collection, before any model loads.
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import interventions, measures, models, prompts
from ..measures.weights import shape_of
from ..models import model_files, module_map
from . import circuit_files, paths
from ..language import registry
from ..prompts import where as where_mod
from ..language.names import HOOK, parse_head, parse_neuron
from .spec import ONE_INPUT, Claim, Expect, HypothesisFile, Intervention, Measure, PromptSpec, head_sets
from .yaml_lines import MarkedYAMLError, YAMLError, read
from .yaml_lines import line_of as locate  # the line of a field, for error messages

PATTERN = "*.hyp.yaml"


class HypothesisError(Exception):
    """A hypothesis file that cannot be run: where, which field, what is wrong, what to do."""

    def __init__(self, path, line: int | None, field: str, message: str, hint: str = ""):
        self.path, self.line, self.field, self.message, self.hint = Path(path), line, field, message, hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


def unexpected(doing: str, exc: BaseException) -> str:
    """A plain sentence for an error circuitcheck did not foresee, then the internal text, so the
    user reads what happened first and a bug report still has where it came from."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return (f"circuitcheck failed while {doing}, on something it does not check yet (internal error "
            f"{type(exc).__name__}{where}: {text}). If the file looks right, please report this with the file.")


@dataclass(frozen=True)
class Case:
    """One concrete check: a claim with its quantifier or sweep variable bound."""

    label: str  # "" for a plain claim, "L0H1,L0H2" or "factor=0.08" for a bound one
    under: tuple[Intervention, ...]
    measure: Measure
    prompts: PromptSpec
    prompts_key: tuple
    value: object = None  # the swept value
    where: str | None = None  # the claim's `where:`, with bound variables substituted
    versus: Measure | None = None  # judged: measure minus versus, paired by prompt
    variants: tuple = ()  # (PromptSpec, prompts key) of each prompt variant the measure compares
    versus_under: tuple | None = None  # `versus: {under: ...}`: the compared run's interventions (None: this run)
    expect: Expect | None = None  # the claim's `expect:` with its variables bound (None: the claim's own)
    runs: tuple = ()  # a circuit claim's named runs, (name, interventions) each (circuit_cases.py)


@dataclass
class LoadedClaim:
    claim: Claim
    line: int
    cases: list[Case]


@dataclass
class LoadedFile:
    path: Path
    spec: HypothesisFile
    claims: list[LoadedClaim]
    model_source: models.ModelSource
    n_layers: int | None = None
    n_heads: int | None = None
    limits: dict = field(default_factory=dict)  # d_vocab, d_vocab_out, n_ctx where the config says
    sizes: dict = field(default_factory=dict)  # the same and d_mlp: what weight indices are checked against
    prompt_sets: dict = field(default_factory=dict)  # prompts_key -> PromptSet (numpy)
    checkpoints: tuple = ()  # override.Checkpoint for each entry of `checkpoints:`
    checkpoints_line: int = 0
    store: Any = None  # cache.ValueCache: built prompt sets read back on a rerun (None: always built)
    circuits: dict = field(default_factory=dict)  # the file's named circuits: name -> circuits.Circuit
    checkpoint: str = ""  # the checkpoint this copy of the file runs on (override.apply), "" for its own model
    checkpoint_problem: str = ""  # why that checkpoint cannot run the claims (each claim's error), "" if none
    greedy_prompts: dict = field(default_factory=dict)  # claim id -> (held-out prompts its greedy K is chosen on,
    #                                                       the claim's prompts)
    greedy_chosen: dict = field(default_factory=dict)  # claim id -> ablation -> each greedy step's K (greedy.bind)


MAX_FILE_BYTES = 5_000_000  # a hypothesis file is a page of claims; 5 MB is thousands of them
# Characters YAML forbids (C0/C1 controls other than tab and newlines, and U+FFFE/U+FFFF).
_CONTROL = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UTF8 = "save the file as UTF-8 (in most editors: Save with Encoding, UTF-8)"


def read_text(path: Path) -> str:
    """The file's text, refused plainly when it is not a regular UTF-8 text file of sane size."""
    try:
        if not path.is_file():
            raise HypothesisError(path, 1, "", "is not a regular file", "name a hypothesis file, not a directory or device")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise HypothesisError(path, 1, "", f"is {path.stat().st_size:,} bytes, more than the "
                                  f"{MAX_FILE_BYTES:,} a hypothesis file may have", "split it into several files")
        data = path.read_bytes()
    except OSError as exc:
        raise HypothesisError(path, 1, "", f"cannot be read ({exc.strerror or exc})",
                              "check that the file exists and is readable") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise HypothesisError(path, 1, "", "is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8", _UTF8)
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise HypothesisError(path, line, "", f"contains a NUL byte on line {line}: it is a binary file or UTF-16 "
                              "text, not a YAML text file", _UTF8)
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 byte-order mark is harmless: drop it
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise HypothesisError(path, line, "", f"is not UTF-8: byte 0x{data[exc.start]:02X} on line {line} cannot be "
                              "read (Latin-1 or Windows-1252 text?)", _UTF8) from None
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise HypothesisError(path, line, "", f"contains the control character U+{ord(bad[0]):04X} on line {line}, "
                              "which YAML does not allow", "delete it (it often comes from pasting out of a "
                              "terminal or a PDF)")
    return text


_YAML_HINTS = {  # what to do, by the problem yaml_lines reports
    "duplicate key": "each key may appear once in a mapping; remove or rename one",
    "is not allowed": "write the value plainly, without a `!!` tag",
    "is tagged": "fix the value or remove the tag",
    "merge key": "`<<: *name` merges a mapping defined with `&name`",
    "nested more than": "hypothesis files are a few levels deep: see docs/reference.md",
    "expand this document": "anchors and aliases are for sharing a block, not for building large documents: "
                            "see the limits in docs/reference.md",
    "this document has more than": "split the file; see the limits in docs/reference.md",
    "contains it": "an alias may only refer to a block defined before and outside it",
    "digits": "write a smaller number",
}


def read_yaml(path: Path):
    text = read_text(path)
    try:
        return read(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and mark.line >= len(text.splitlines()):
            mark = exc.context_mark  # "got <stream end>": point at what was left open instead
        problem = (exc.problem or exc.context or "").strip()
        line = mark.line + 1 if mark else 1
        hint = next((h for key, h in _YAML_HINTS.items() if key in problem), "")
        if hint:
            raise HypothesisError(path, line, "", f"YAML: {problem}", hint) from None
        tab = mark is not None and text[mark.index:mark.index + 1] == "\t"
        hint = "indent with spaces: YAML does not allow tabs" if tab else "check indentation and quoting near this line"
        raise HypothesisError(path, line, "", f"YAML syntax: {problem}", hint) from None
    except YAMLError as exc:  # the reader's errors carry no mark
        raise HypothesisError(path, 1, "", f"YAML cannot be read: {exc}", _UTF8) from None


# `--cc-prompt-seed N`: every generated prompt set of every file is drawn with its seed + N, so
# that a whole suite can be rerun on fresh prompts (benchmarks/seeds.py). JSONL files are fixed
# data and keep their rows. Set once per run by the plugin and the command line.
PROMPT_SEED_SHIFT = 0


def set_prompt_seed_shift(shift: int) -> None:
    global PROMPT_SEED_SHIFT
    PROMPT_SEED_SHIFT = int(shift)


def shift_seeds(node, shift: int | None = None):
    """A plain tree with each generated prompt set's `seed` moved by `shift` (default: the run's)."""
    shift = PROMPT_SEED_SHIFT if shift is None else shift
    if not shift:
        return node
    if isinstance(node, dict):
        out = {k: shift_seeds(v, shift) for k, v in node.items()}
        if isinstance(out.get("generator"), str) and out["generator"] != "jsonl":
            seed = out.get("seed", 0)
            if isinstance(seed, int) and not isinstance(seed, bool):  # a bad seed keeps its own error
                out["seed"] = seed + shift
        return out
    if isinstance(node, list):
        return [shift_seeds(v, shift) for v in node]
    return node


def _plain(node):
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _field(loc) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _known_keys(loc) -> list[str]:
    """Keys the schema allows at `loc` (for 'did you mean' hints)."""
    model: Any = HypothesisFile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        if part not in fields:
            return []
        model = _inner_model(fields[part].annotation)
        if model is None:
            return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _inner_model(annotation):
    import typing

    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        stack.extend(typing.get_args(a))
    return None


def _union_tag(part) -> bool:
    """pydantic's names for the members of a union in an error's location, not keys of the file."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-")
                                      or re.fullmatch(r"(constrained-)?(str|int|float|bool)", part) is not None)


def _file_loc(tree, loc) -> tuple:
    """An error's location as keys of the file: pydantic's names for union members left out, unless
    the file itself has a key by that name (a mistyped `p[rompts:`)."""
    out, node = [], tree
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) \
                and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif not _union_tag(part):
            out.append(part)
            node = None
    return tuple(out)


REFERENCE = "see docs/reference.md for what each key takes"
_TYPES = {"string_type": "text", "int_type": "a whole number", "int_parsing": "a whole number",
          "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
          "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
          "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
          "tuple_type": "a list", "finite_number": "a finite number"}


_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}


def _describe(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty (null)"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"{value!r}"[:40]


def _validation_error(path, tree, exc: ValidationError) -> HypothesisError:
    errors = exc.errors()
    # A typo in a required key yields "missing" and "unknown key": the unknown key says more; a
    # malformed head in `heads: X` fails both "a list" and "a head": the head's pattern says more.
    err = next((e for kind in ("extra_forbidden", "string_pattern_mismatch") for e in errors if e["type"] == kind),
               errors[0])
    loc = _file_loc(tree, err["loc"])
    line = locate(tree, loc)
    msg, hint = err["msg"], ""
    if err["type"] == "extra_forbidden":
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        msg = f"unknown key {loc[-1]!r}"
        hint = (f"did you mean {close[0]!r}? " if close else "") + (f"allowed here: {', '.join(known)}" if known else "")
    elif err["type"] == "missing":
        msg = f"missing required key {loc[-1]!r}"
        hint = REFERENCE
    elif err["type"] in _TYPES:
        msg, hint = f"must be {_TYPES[err['type']]}, not {_describe(err.get('input'))}", REFERENCE
    elif err["type"] == "literal_error":
        allowed = re.findall(r"'([^']*)'", err["ctx"]["expected"])
        close = difflib.get_close_matches(str(err.get("input")), allowed, n=1)
        msg = f"{_describe(err.get('input'))} is not one of the allowed values"
        hint = (f"did you mean {close[0]!r}? " if close else "") + f"allowed: {err['ctx']['expected']} (docs/reference.md)"
    elif err["type"] == "string_pattern_mismatch":
        hint = "heads are written L<layer>H<head>, e.g. L0H2" if "L\\d+H" in err["ctx"]["pattern"] else ""
    elif err["type"] in _BOUNDS:
        bound, word = _BOUNDS[err["type"]]
        msg = f"must be {word} {err['ctx'][bound]}, not {_describe(err.get('input'))}"
    elif err["type"] in ("too_short", "too_long"):
        word = "at least" if err["type"] == "too_short" else "at most"
        limit = err["ctx"]["min_length" if err["type"] == "too_short" else "max_length"]
        msg = f"must have {word} {limit} item(s), not {err['ctx'].get('actual_length')}"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return HypothesisError(path, line, _field(loc), msg, hint or REFERENCE)


def load(path, roles: dict[str, str] | None = None, store=None) -> LoadedFile:
    """Read, validate and expand one hypothesis file; raise `HypothesisError` on any problem.

    `roles` binds the file's `roles:` (name -> head) before its claims are read; without it each
    role stands in as its first candidate, so that collection checks every claim (roles.py).
    `store` (a `cache.ValueCache`) reads back prompt sets built by an earlier run. Completeness's
    greedy K's are left out until the session chooses them (greedy.py)."""
    path = Path(path)
    return load_tree(path, read_yaml(path), roles, store)


def plain_tree(path) -> dict:
    """A file's YAML as plain dicts and lists (for tools that rewrite claims, like specificity)."""
    return _plain(read_yaml(Path(path)))


def load_tree(path: Path, tree, roles: dict[str, str] | None = None, store=None) -> LoadedFile:
    """Validate and expand an already-read tree as if it were the file at `path` (`roles`: see `load`)."""
    if not isinstance(tree, dict):
        raise HypothesisError(path, 1, "", "a hypothesis file is a mapping with model, prompts and claims",
                              "start from an example in hypotheses/")
    _check_unique_ids(path, tree)
    try:
        spec = HypothesisFile.model_validate(shift_seeds(_plain(tree)))
        if spec.roles:
            from .roles import bind

            spec = HypothesisFile.model_validate(bind(shift_seeds(_plain(tree)), spec, roles))
    except ValidationError as exc:
        raise _validation_error(path, tree, exc) from None
    source, cfg = _model(path, tree, spec)
    loaded = LoadedFile(path, spec, [], source, *_dims(cfg), limits=_limits(cfg), sizes=_sizes(cfg),
                        checkpoints=_checkpoints(path, tree, spec, _dims(cfg)),
                        checkpoints_line=locate(tree, ("checkpoints",)) or 0, store=store)
    _check_expansions(path, tree, spec)
    _check_prompts_given(path, tree, spec)
    shape = circuit_files.shape_of(cfg)
    circuits = loaded.circuits = _circuits(path, tree, spec, shape)
    for i, claim in enumerate(spec.claims):
        loc = ("claims", i)
        ploc = loc + ("prompts",) if claim.prompts else ("prompts",)
        ps = _with_tokenizer(path, tree, ploc, claim.prompts or spec.prompts or NO_PROMPTS, source)
        try:
            if claim.circuit is not None:
                cases = circuit_cases(loaded, tree, loc, claim, ps)
            elif claim.ranks is not None:
                cases = rank_cases(path, claim, ps, loaded.n_layers, loaded.n_heads)
            else:
                cases = expand(path, claim, ps) if claim.for_ or claim.sweep else \
                    expand(path, claim, ps, check_unbound=False)
        except RanksError as exc:
            raise HypothesisError(path, locate(tree, loc + ("ranks",)), _field(loc + ("ranks",)), str(exc),
                                  exc.hint) from None
        except UnboundVariable as exc:
            where = loc + _find(tree["claims"][i], exc.name)
            raise HypothesisError(path, locate(tree, where), _field(where), str(exc),
                                  "use the variable name the quantifier binds: `$heads`, or the `values:` name") from None
        except ValidationError as exc:  # a bound value that does not fit where `$name` stands
            err = _validation_error(path, tree, exc)
            raise HypothesisError(path, locate(tree, loc + ("id",)), _field(loc), f"after binding: {err.message}",
                                  "check the values of `sweep:` or `for:` against where they are used") from None
        cases = [_with_circuits(path, tree, loc, case, circuits, shape) for case in cases]
        cases = [_source_tokenizers(path, tree, loc, case, source) for case in cases]
        _check_claim(loaded, tree, loc, claim, cases)
        loaded.claims.append(LoadedClaim(claim, locate(tree, loc + ("id",)) or 1, cases))
    return loaded


def _circuits(path: Path, tree, spec, shape) -> dict:
    """The file's named circuits, read and checked against the model (circuit_files.py)."""
    try:
        return circuit_files.read_all(path, spec.circuits, shape)
    except circuit_files.CircuitFileError as exc:
        raise _circuit_error(path, tree, (), exc) from None


def _circuit_error(path: Path, tree, base: tuple, exc) -> "HypothesisError":
    where = base + exc.loc
    line = locate(tree, where)
    if exc.file is not None:  # the graph file's own line, and where the hypothesis file names it
        return HypothesisError(exc.file, exc.line, "", str(exc), f"{exc.hint} (named in {path.name}, line {line})")
    return HypothesisError(path, line, _field(where), str(exc), exc.hint)


def _with_circuits(path: Path, tree, loc: tuple, case: "Case", circuits: dict, shape) -> "Case":
    """The case with each `circuit: NAME` written out (in `under:` and in `versus: {under: ...}`), and
    inline circuits checked against the model."""
    versus = None if case.versus_under is None else \
        _resolved(path, tree, loc + ("versus", "under"), case.versus_under, circuits, shape)
    return dataclasses.replace(case, under=_resolved(path, tree, loc + ("under",), case.under, circuits, shape),
                               versus_under=versus)


def _resolved(path: Path, tree, loc: tuple, under: tuple, circuits: dict, shape) -> tuple:
    try:
        out = circuit_files.resolve_under(under, circuits)
        circuit_files.check_inline(out, shape)
    except KeyError as exc:
        j, name = exc.args
        where = loc + (j, under[j].kind, "circuit")
        known = ", ".join(circuits) or "none: add a `circuits:` section"
        close = difflib.get_close_matches(name, list(circuits), 1)
        raise HypothesisError(path, locate(tree, where), _field(where), f"no circuit named {name!r}",
                              (f"did you mean {close[0]!r}? " if close else "") + f"the file's circuits: {known}") \
            from None
    except circuit_files.CircuitFileError as exc:
        raise _circuit_error(path, tree, loc[:-1], exc) from None
    return out


MAX_CASES = 10_000  # concrete cases a file's quantifiers and sweeps may expand to

# Weights-only claims read no prompts, but a case carries a prompt set: in a file without `prompts:`
# they carry this one, two tiny rows that fit every model and are never run.
NO_PROMPTS = PromptSpec(generator="repeated_tokens", n=2, length=2, vocab=3, bos=None)


def _check_prompts_given(path, tree, spec) -> None:
    """A file may leave out `prompts:` when every claim reads the weights alone or has its own, and
    every role scans on its own; otherwise the error names the first claim (or role) that needs them."""
    if spec.prompts is not None:
        return
    for name, role in spec.roles.items():
        if role.prompts is None:
            raise HypothesisError(path, locate(tree, ("roles", name)), f"roles.{name}",
                                  f"role `{name}` scans heads on the file's prompts, and this file has no `prompts:`",
                                  "add `prompts:` to the file, or to the role")
    for i, claim in enumerate(spec.claims):
        if claim.prompts is None and not measures.kind_of(claim.measure).is_weights_only(claim.measure.body):
            what = measures.kind_of(claim.measure).describe(claim.measure.body)
            raise HypothesisError(path, locate(tree, ("claims", i, "measure")), f"claims[{i}].measure",
                                  f"{what} is measured on a run over prompts, and this file has no `prompts:`",
                                  "add `prompts:` to the file (or to this claim); only files whose claims all "
                                  "read the weights alone (cosine, norm, singular_values, ov_norm, weights-only "
                                  "python measures) may leave it out")


def case_count(claim: Claim) -> tuple[int, str]:
    """How many cases a claim expands to, and what they are, computed without expanding it."""
    if claim.sweep is not None:
        return len(next(iter(claim.sweep.values()))), "sweep values"
    if claim.for_ is None:
        return 1, ""
    s = claim.for_.sets
    if s.pairs is not None:
        return math.comb(len(s.pairs), 2), f"pairs of {len(s.pairs)} head(s)"
    if s.cross is not None:
        return math.prod(len(g) for g in s.cross), "combinations of one head per group"
    if s.within is not None:
        return sum(math.comb(len(g), 2) for g in s.within), "pairs inside the groups"
    if s.values is not None:
        lengths = [len(v) for v in s.values.values()]
        return (math.prod(lengths) if s.combine == "product" else min(lengths)), "`values` bindings"
    kind = next(k for k in ("each", "subsets") if getattr(s, k) is not None)
    return len(getattr(s, kind)), f"`{kind}` entries"


def _check_expansions(path, tree, spec):
    """Every claim expands to at least one case, and the file to at most MAX_CASES, before any is built."""
    total = 0
    for i, claim in enumerate(spec.claims):
        n, what = case_count(claim)
        where = ("claims", i, "for") if claim.for_ is not None else ("claims", i, "sweep")
        if n == 0:
            raise HypothesisError(path, locate(tree, where), _field(where),
                                  f"expands to no case at all ({what}): a claim over nothing checks nothing",
                                  "`pairs` needs two heads or more, `within` groups of two or more")
        total += n
        if total > MAX_CASES:
            raise HypothesisError(path, locate(tree, where), _field(where),
                                  f"the file expands to more than {MAX_CASES:,} cases (this claim alone to {n:,} "
                                  f"{what})", "split the claim, or use fewer heads or values; see the limits in "
                                  "docs/reference.md")


def _check_unique_ids(path, tree):
    claims = tree.get("claims")
    seen: dict = {}
    for i, c in enumerate(claims if isinstance(claims, list) else []):
        cid = c.get("id") if isinstance(c, dict) else None
        if isinstance(cid, (dict, list)):
            continue  # not a claim id at all: validation says so
        if cid in seen:
            raise HypothesisError(path, locate(tree, ("claims", i, "id")), f"claims[{i}].id",
                                  f"duplicate claim id {cid!r} (first at line {seen[cid]})",
                                  "claim ids name pytest items: make each unique in the file")
        if cid is not None:
            seen[cid] = locate(tree, ("claims", i, "id"))


# ---------------------------------------------------------------- model
def _model(path, tree, spec) -> tuple[models.ModelSource, dict]:
    source, cfg = _source(path, tree, spec.model)
    _check_placement(path, tree, spec.model, source)
    _check_runner(path, tree, spec.model, source)
    return source, cfg


def _check_runner(path, tree, m, source) -> None:
    """`runner: nnsight` needs a Hugging Face checkpoint of an architecture the module map knows,
    run as it was saved (runs/nnsight_runner.py)."""
    if not (m.runner or "").startswith("nnsight"):
        return
    line = locate(tree, ("model", "runner"))
    if not models.loads_hf(source):
        raise HypothesisError(path, line, "model.runner", f"the nnsight runner runs a Hugging Face model's own module "
                              f"tree, and {source.describe()} is a TransformerLens-native or registered model",
                              "remove `runner:` (TransformerLens runs it), or give the model as hf:DIR")
    if m.weight_processing != "none":
        raise HypothesisError(path, line, "model.runner", "the nnsight runner runs the checkpoint's own weights, and "
                              "this file asks for TransformerLens weight processing",
                              "remove `weight_processing:`, or `runner:`")
    why = module_map.unsupported([], runner_architecture(source))
    if why:
        raise HypothesisError(path, line, "model.runner", why, "remove `runner:` (TransformerLens runs it)")


def runner_architecture(source) -> str | None:
    """The transformers class a Hugging Face checkpoint names in its config.json (None: not known here)."""
    d = models.ZOO_DIR / source.ref if source.kind == "zoo" else Path(source.ref)
    try:
        names = model_files.read_json(d / "config.json").get("architectures") or [None]
    except (OSError, ValueError, AttributeError, model_files.ModelFileError):
        return None
    return names[0]


def _check_placement(path, tree, m, source) -> None:
    """`device:` naming a device this machine has; `device_map:`/`max_memory:` (placement.py): for a
    model loaded the Hugging Face way, instead of `device:`, naming devices this machine has."""
    from ..models import placement

    def error(field, message, hint, key=None):  # at the line of the entry at fault where there is one
        line = locate(tree, ("model", field) + ((key,) if key is not None else ()))
        return HypothesisError(path, line, f"model.{field}", message, hint)

    if m.device is not None and m.device_map is None:
        wrong = placement.unusable(m.device)
        if wrong:
            raise error("device", *wrong)
    if m.device_map is None:
        if m.max_memory is not None:
            raise error("max_memory", "`max_memory:` bounds what `device_map: auto` puts on each device, and this "
                        "file names no `device_map:`", "add `device_map: auto`, or remove `max_memory:`")
        return
    if not models.loads_hf(source):
        raise error("device_map", f"`device_map:` places the layers of a Hugging Face model over devices; "
                    f"{source.describe()} is a {'registered' if source.kind == 'factory' else 'TransformerLens-native'}"
                    " model, loaded whole on one device", "use `device: cuda:1` (or cpu) instead")
    if m.device is not None:
        raise error("device_map", "give `device:` (one device) or `device_map:` (several), not both",
                    "remove `device:`: the map says where every layer goes")
    max_memory = placement.memory(m.max_memory)
    try:
        placement.check(m.device_map, max_memory)
    except placement.PlacementError as exc:
        raise error(exc.field, str(exc), exc.hint, exc.key) from None
    missing = placement.absent(m.device_map, max_memory)
    if missing:
        field, key, why = missing
        raise error(field, why, "name the devices this machine has, or write `device_map: auto` "
                    "to let accelerate choose among them", key)


def _source(path, tree, m) -> tuple[models.ModelSource, dict]:
    where = locate(tree, ("model",))
    hub_zoo = m.zoo is not None and m.zoo in models.zoo_names() and models.is_hf_dir(models.ZOO_DIR / m.zoo)
    if m.attention is not None and (m.hf is not None or m.factory is not None or hub_zoo):
        raise HypothesisError(path, locate(tree, ("model", "attention")), "model.attention",
                              "`attention:` sets the attention_dir of a zoo or native config; a Hugging Face or "
                              "registered model keeps its own", "remove `attention:`, or build the model with it")
    if m.zoo is not None:
        names = models.zoo_names()
        if m.zoo not in names:
            close = difflib.get_close_matches(m.zoo, names, n=1)
            raise HypothesisError(path, where, "model.zoo", f"no zoo model named {m.zoo!r}",
                                  (f"did you mean {close[0]!r}? " if close else "") + f"shipped: {', '.join(names)}")
        return models.ModelSource("zoo", m.zoo), models.zoo_config(m.zoo)
    if m.native is not None:
        return _native(path, tree, m.native)
    if m.hf is not None:
        return _hf(path, tree, m.hf)
    return _factory(path, tree, m.factory), {}


HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")  # `gpt2`, `org/name`: never a path


def _hf(path, tree, name: str) -> tuple[models.ModelSource, dict]:
    """A hub name, or a folder `save_pretrained` wrote, relative to the hypothesis file and confined to
    its folder tree like every other path (paths.py). A name that could be either (`my-gpt2`) is the
    folder when the hypothesis file's folder has it, else the hub name."""
    loc = ("model", "hf")
    line = locate(tree, loc) or locate(tree, ("model",))  # `model: hf:./dir` has no `hf:` key of its own
    base = path.resolve().parent
    if HUB_NAME.match(name) and not (base / name).exists():
        return models.ModelSource("hf", name), {}
    try:
        folder = paths.inside(path, str(Path(name).expanduser()), "Hugging Face folder")
    except paths.PathRefused as exc:
        raise HypothesisError(path, line, _field(loc), str(exc), exc.hint) from None
    if not (folder / "config.json").is_file():
        what = "is not a folder" if not folder.is_dir() else "has no config.json"
        raise HypothesisError(path, line, _field(loc), f"the Hugging Face folder {name!r} ({folder}) {what}",
                              "name the folder `save_pretrained` wrote (config.json, the weights, tokenizer.json), "
                              "relative to the hypothesis file; a hub name is `NAME` or `ORG/NAME`")
    _data_file(path, tree, loc, str(folder / "config.json"), "Hugging Face config")  # a symlink must not lead out
    cfg = _model_file(path, tree, loc, model_files.read_json, folder / "config.json")
    return models.ModelSource("hf", str(folder)), models.hf_dims(cfg if isinstance(cfg, dict) else {})


def file_model_source(path):
    """(source, validated model spec) of a hypothesis file's `model:` alone (`load_model`): its claims,
    prompts and roles are not read, so a claim naming code registered elsewhere does not stop it."""
    path = Path(path)
    tree = read_yaml(path)
    if not isinstance(tree, dict) or "model" not in tree:
        raise HypothesisError(path, 1, "model", "a hypothesis file names its model under `model:`",
                              "start from an example in hypotheses/")
    return model_source(tree["model"], path=path, tree=tree)


def model_source(ref, base: Path = Path("."), path: Path | None = None, tree=None):
    """(source, validated model spec) for a `model:` value outside a file (`load_model`), or of the
    file at `path` whose YAML is `tree` (paths relative to it, errors at its lines)."""
    from types import SimpleNamespace

    from .spec import ModelSpec

    path = path or base / "<model>"
    tree = tree if tree is not None else {"model": ref}
    try:
        spec = ModelSpec.model_validate(_plain(ref) if isinstance(ref, dict) else ref)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise HypothesisError(path, locate(tree, ("model",)), "model", err["msg"].removeprefix("Value error, "),
                              REFERENCE) from None
    return _model(path, tree, SimpleNamespace(model=spec))[0], spec


def _factory(path, tree, name: str) -> models.ModelSource:
    """A registered model: the file names it; nothing is imported or called because of the file."""
    line = locate(tree, ("model", "factory")) or locate(tree, ("model",))
    if not re.match(registry.NAME, name):
        raise HypothesisError(path, line, "model.factory",
                              f"{name!r} is not a registered name: a hypothesis file never names a module or "
                              "function to import",
                              "register the function in a conftest.py beside the file with "
                              "`@circuitcheck.register_model(\"my-model\")` and write `model: factory:my-model` "
                              "(README, Security)")
    try:
        registry.model(name)
    except registry.NotRegistered as exc:
        raise HypothesisError(path, line, "model.factory", str(exc), exc.hint) from None
    return models.ModelSource("factory", name)


def _native(path, tree, native) -> tuple[models.ModelSource, dict]:
    import json

    cloc = ("model", "native", "config")
    weights = _data_file(path, tree, ("model", "native", "weights"), native.weights, "weights file")
    if isinstance(native.config, dict):
        cfg = _model_file(path, tree, cloc, model_files.check_config, native.config, "the inline config", inline=True)
        ref, inline = str(path), json.dumps(native.config, sort_keys=True)
    else:
        cfg_path = _data_file(path, tree, cloc, native.config, "config file")
        cfg, ref, inline = _model_file(path, tree, cloc, model_files.read_config, cfg_path), str(cfg_path), None
    wloc = ("model", "native", "weights")
    shapes = _model_file(path, tree, wloc, model_files.weight_shapes, weights)
    _model_file(path, tree, cloc, model_files.check_dims, cfg, shapes, inline=isinstance(native.config, dict))
    key = _model_file(path, tree, wloc, model_files.pt_contents, weights)[1] if weights.suffix != ".safetensors" \
        else None
    return models.ModelSource("native", ref, str(weights), inline, key), cfg


def _checkpoints(path: Path, tree, spec, dims) -> tuple:
    """The file's `checkpoints:`, each a model folder or weights file in its folder tree (paths.py),
    with the file's model's layers and heads; a glob in natural order."""
    from ..models import override

    given = spec.checkpoints
    if given is None:
        return ()
    found = []  # (where in the file, path)
    for i, text in enumerate([given] if isinstance(given, str) else given):
        loc = ("checkpoints",) if isinstance(given, str) else ("checkpoints", i)
        found += [(loc, p) for p in _checkpoint_paths(path, tree, loc, text)]
    out = []
    for (loc, p), name in zip(found, _checkpoint_names(path, tree, found)):
        try:
            source, ck_dims = override.source(str(p))
        except override.OverrideError as exc:
            raise HypothesisError(path, locate(tree, loc), _field(loc), str(exc).removeprefix("--cc-model: "),
                                  "a checkpoint is a folder with config.json and model.safetensors (as `circuitcheck "
                                  "zoo train --save-every` writes), or a weights file with config.json beside it") from None
        for f in (source.ref, source.weights) if source.kind == "native" else _files_in(Path(source.ref)):
            _data_file(path, tree, loc, f, "checkpoint file")  # a symlink inside must not lead out either
        if None not in dims and None not in ck_dims and tuple(ck_dims) != tuple(dims):
            raise HypothesisError(path, locate(tree, loc), _field(loc),
                                  f"the checkpoint {name!r} has {ck_dims[0]} layers of {ck_dims[1]} heads; the file's "
                                  f"model has {dims[0]} of {dims[1]}", "checkpoints are of the file's model")
        out.append(override.Checkpoint(name, source, ck_dims))
    return tuple(out)


def _files_in(folder: Path) -> list[str]:
    """Every file of a Hugging Face checkpoint folder (its weights too, which a symlink may lead elsewhere)."""
    return sorted(str(p) for p in folder.iterdir() if p.is_file() or p.is_symlink())


def _checkpoint_names(path: Path, tree, found) -> list[str]:
    """Column names: each folder's name or file's stem, or paths from the file's folder where two share one."""
    names = [p.name if p.is_dir() else p.stem for _, p in found]
    if len(set(names)) == len(names):
        return names
    base = path.resolve().parent
    names = [str(p.relative_to(base)) if p.is_relative_to(base) else str(p) for _, p in found]
    for i, (loc, _) in enumerate(found):
        if names[i] in names[:i]:
            raise HypothesisError(path, locate(tree, loc), _field(loc), f"the checkpoint {names[i]!r} is listed twice",
                                  "name each checkpoint once")
    return names


def _checkpoint_paths(path: Path, tree, loc, text: str) -> list[Path]:
    """The folders or files one `checkpoints:` entry names (a glob: every match), inside the file's tree."""
    from ..models.override import matches

    base = path.resolve().parent
    plain = (base / text).exists() or not any(ch in text for ch in "*?[")  # `step[1]/` is a folder
    try:
        hits = [text] if plain else matches(str(base / text))
    except ValueError as exc:  # no match, or too many (a glob that matches thousands of folders)
        why = (f"the pattern {text!r} matches no checkpoint (looked in {base})" if "matches no" in str(exc)
               else str(exc).replace(str(base / text), text))
        raise HypothesisError(path, locate(tree, loc), _field(loc), why,
                              "paths are relative to the hypothesis file") from None
    try:
        return [paths.inside(path, h, "checkpoint") for h in hits]
    except paths.PathRefused as exc:
        raise HypothesisError(path, locate(tree, loc), _field(loc), str(exc), exc.hint) from None


def _model_file(path, tree, loc, check, *args, inline=False):
    """`check(*args)`, its ModelFileError as this file's error at `loc` (with `inline`, a config key's
    error at that key of the file's inline config)."""
    try:
        return check(*args)
    except model_files.ModelFileError as exc:
        where = loc + ((exc.key,) if exc.key and inline else ())
        raise HypothesisError(path, locate(tree, where), _field(where), str(exc), exc.hint) from None


def _data_file(path, tree, loc, name, what) -> Path:
    """A file the hypothesis file names, confined to its folder tree and a regular file (paths.py)."""
    try:
        return paths.resolve(path, name, what)
    except paths.PathRefused as exc:
        raise HypothesisError(path, locate(tree, loc), _field(loc), str(exc), exc.hint) from None


def _with_tokenizer(path: Path, tree, loc: tuple, p: PromptSpec, source: models.ModelSource) -> PromptSpec:
    """Text prompts (and JSONL rows with `text`) tokenise with the model's tokenizer unless the
    file names a tokenizer.json."""
    if p.generator not in ("text", "jsonl"):
        return p
    given = (p.model_extra or {}).get("tokenizer")
    if given is not None:
        found = _data_file(path, tree, loc + ("tokenizer",), given, "tokenizer")
    else:
        found = models.tokenizer_dir(source)
        if found is None:
            _hub_model_here(source)
    return p if found is None else p.model_copy(update={"tokenizer": str(found)})


def _hub_model_here(source: models.ModelSource) -> None:
    """A hub model whose tokenizer is not on this machine cannot build text prompts at collection:
    when the model itself cannot load either (not cached, offline), its claims skip with the reason
    (`ModelUnavailable`), as they do at run time, instead of a 'needs a tokenizer' error."""
    from ..models import hub

    if source.kind == "hf" and not Path(source.ref).is_dir():
        why = hub.unavailable(source.ref)
        if why:
            raise models.ModelUnavailable(why)


def _source_tokenizers(path: Path, tree, loc: tuple, case: "Case", source: models.ModelSource) -> "Case":
    """Text prompts an intervention reads from (a patch's `source`, an ablation's `mean_from`) tokenise
    as the claim's do."""
    import dataclasses

    def tokenised(base: tuple, ivs):
        out = []
        for i, iv in enumerate(ivs):
            for name in ("source", "mean_from"):  # a patch's source, an ablation's reference set
                spec = getattr(iv.body, name, None)
                if isinstance(spec, PromptSpec) and spec.generator == "text":
                    spec = _with_tokenizer(path, tree, loc + base + (i, iv.kind, name), spec, source)
                    iv = iv.model_copy(update={iv.kind: iv.body.model_copy(update={name: spec})})
            out.append(iv)
        return tuple(out)

    versus = None if case.versus_under is None else tokenised(("versus", "under"), case.versus_under)
    runs = tuple((name, tokenised(("circuit",), under)) for name, under in case.runs)  # a circuit claim's patch runs
    return dataclasses.replace(case, under=tokenised(("under",), case.under), versus_under=versus, runs=runs)


def runs_of(case: "Case"):
    """(where in the claim, index, intervention) of every intervention a case's runs apply: its
    `under:`, and the compared run's of `versus: {under: ...}`."""
    yield from ((("under",), i, iv) for i, iv in enumerate(case.under))
    yield from ((("versus", "under"), i, iv) for i, iv in enumerate(case.versus_under or ()))
    yield from ((("circuit",), i, iv) for _, under in case.runs for i, iv in enumerate(under))


def _dims(cfg: dict) -> tuple:
    return cfg.get("n_layers"), cfg.get("n_heads")


def _limits(cfg: dict) -> dict:
    d_vocab = cfg.get("d_vocab")
    out = cfg.get("d_vocab_out", -1)
    return {"d_vocab": d_vocab, "d_vocab_out": out if out and out > 0 else d_vocab, "n_ctx": cfg.get("n_ctx")}


def _sizes(cfg: dict) -> dict:
    """The sizes indices into weights are checked against (neurons too: `d_mlp`)."""
    sizes = {k: cfg.get(k) for k in ("d_model", "d_head")}
    return {**_limits(cfg), **sizes, "d_mlp": None if cfg.get("attn_only") else cfg.get("d_mlp"),
            "attn_only": bool(cfg.get("attn_only"))}


# ---------------------------------------------------------------- claims
def expand(path: Path, claim: Claim, prompts_spec: PromptSpec, check_unbound: bool = True) -> list[Case]:
    """The concrete cases of a claim: one per sweep value, one per set of its quantifier, or itself."""
    if not check_unbound:  # a claim with no `for:` or `sweep:` keeps `$x` for _check_claim to report
        return [_case(path, "", tuple(claim.under), claim.measure, prompts_spec, where=claim.where,
                      versus=claim.versus_measure,
                      versus_under=None if claim.versus_under is None else tuple(claim.versus_under))]
    if claim.sweep is not None:
        (name, values), = claim.sweep.items()
        return [_bind(path, claim, prompts_spec, f"{name}={v}", {name: v}, v) for v in values]
    sets = claim.for_.sets
    if sets.values is not None:
        return [_bind(path, claim, prompts_spec, ",".join(f"{k}={v}" for k, v in b.items()), b)
                for b in bindings(sets.values, sets.combine)]
    return [_bind(path, claim, prompts_spec, ",".join(hs), {"heads": list(hs), **({"head": hs[0]} if len(hs) == 1 else {})})
            for hs in head_sets(sets)]


def bindings(values: dict[str, list], combine: str | None) -> list[dict]:
    """One {name: value} per case: the i-th values together (`zip`) or every combination (`product`)."""
    names = list(values)
    rows = zip(*values.values()) if combine != "product" else itertools.product(*values.values())
    return [dict(zip(names, row)) for row in rows]


class UnboundVariable(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def _find(node, value) -> tuple:
    """The path inside a YAML node to the first scalar equal to `value` (empty if none)."""
    items = node.items() if isinstance(node, dict) else (enumerate(node) if isinstance(node, list) else [])
    for k, v in items:
        if v == value:
            return (k,)
        sub = _find(v, value)
        if sub:
            return (k,) + sub
    return ()


_VARIABLE = re.compile(r"\$(\w+)")


def _unbound(x):
    if isinstance(x, dict) and "$" not in repr(x):  # most cases: no variable left anywhere in it
        return None
    if isinstance(x, str) and _VARIABLE.search(x):
        return _VARIABLE.search(x)[0]
    items = x.values() if isinstance(x, dict) else (x if isinstance(x, list) else [])
    return next((u for u in map(_unbound, items) if u), None)


def _bind(path: Path, claim: Claim, prompts_spec: PromptSpec, label: str, values: dict, value=None,
          versus_values: dict | None = None) -> Case:
    def sub(x):
        if isinstance(x, str) and x.startswith("$") and x[1:] in values:
            return values[x[1:]]
        if isinstance(x, str):  # inside text: `21 - $q` becomes `21 - 3`, a position
            return _VARIABLE.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], x)
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        if isinstance(x, list):
            return [sub(v) for v in x]
        return x

    def dump(model):
        out = sub(model.model_dump(by_alias=True, exclude_none=True))
        left = _unbound(out)
        if left:
            bound = ", ".join(f"${k}" for k in values) or "nothing"
            raise UnboundVariable(left, f"{left} is not bound: this claim's `for:` or `sweep:` binds {bound}")
        return out

    under = tuple(Intervention.model_validate(dump(i)) for i in claim.under)
    measure = Measure.model_validate(dump(claim.measure))
    ps = PromptSpec.model_validate(dump(prompts_spec))
    where = dump_where(claim.where, sub, values)
    versus = Measure.model_validate(dump(claim.versus_measure)) if claim.versus is not None else None
    expect = Expect.model_validate(dump(claim.expect)) if claim.expect.bound_later else None
    versus_under = None if claim.versus_under is None else \
        tuple(Intervention.model_validate(dump(i)) for i in claim.versus_under)
    if versus_values is not None:  # a ranking: the same measure, bound to the other head
        values = versus_values  # `sub` reads `values`: from here on it binds the other head
        versus = Measure.model_validate(dump(claim.measure))
    return _case(path, label, under, measure, ps, value, where, versus, versus_under, expect)


def circuit_cases(loaded: LoadedFile, tree, loc: tuple, claim: Claim, ps: PromptSpec, greedy=None) -> list[Case]:
    """The cases of a `circuit:` claim, each with the named runs its quantity reads (circuit_cases.py)."""
    import dataclasses

    from ..circuits import CircuitError
    from . import circuit_cases as CC

    if claim.circuit.knock.greedy:
        loaded.greedy_prompts[claim.id] = (greedy_prompts(loaded, tree, loc + ("circuit", "knock"), claim.circuit.knock,
                                                          ps), ps)
    try:
        shape = CC.shape_of(loaded.n_layers, loaded.n_heads, loaded.sizes.get("d_mlp"),
                            attn_only=loaded.sizes.get("d_mlp") is None)
        parts = CC.expand(claim.circuit, claim.expect.circuit_form, shape, loaded.circuits, greedy)
    except CircuitError as exc:
        where = loc + ("circuit",) + getattr(exc, "field", ())
        raise HypothesisError(loaded.path, locate(tree, where), _field(where), str(exc), exc.hint) from None
    return [dataclasses.replace(_case(loaded.path, label, under, claim.measure, ps), runs=runs)
            for label, under, runs in parts]


# The greedy worst-case K is chosen on the claim's generator drawn with this much added to its seed:
# held out from the judged prompts (a K chosen as the worst on the prompts that then judge it makes
# the claim look worse than it is), and apart from the mean reference set (+1,000,003).
GREEDY_SEED_OFFSET = 2_000_003


def greedy_prompts(loaded: LoadedFile, tree, loc: tuple, knock, ps: PromptSpec) -> PromptSpec:
    """The held-out prompts completeness's greedy K is chosen on: `knock.prompts`, else the claim's
    generator with its seed moved (a JSONL set or a population has no other draw: it must name one)."""
    if knock.prompts is not None:
        return _with_tokenizer(loaded.path, tree, loc + ("prompts",), knock.prompts, loaded.model_source)
    if ps.generator == "jsonl" or ps.population:
        raise HypothesisError(loaded.path, locate(tree, loc + ("greedy",)), _field(loc + ("greedy",)),
                              "the greedy K is chosen on held-out prompts, and a JSONL set or a population has "
                              "no other draw", "name them: `knock: {greedy: N, prompts: {generator: jsonl, path: ...}}`")
    return ps.model_copy(update={"seed": (ps.seed + GREEDY_SEED_OFFSET) % 2**63})


class RanksError(ValueError):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def rank_cases(path: Path, claim: Claim, prompts_spec: PromptSpec, n_layers, n_heads) -> list[Case]:
    """One paired case per (named head, other head): the measure with $head bound to each."""
    if "$head" not in str(claim.measure.model_dump()):
        raise RanksError("`ranks` compares heads through `$head`, which the measure does not name",
                         "write the measure for one head as `head: $head` (or `component: $head`)")
    return [_bind(path, claim, prompts_spec, f"{h}>{o}", {"head": h, "heads": [h]}, None,
                  {"head": o, "heads": [o]}) for h, o in rank_pairs(claim.ranks, n_layers, n_heads)]


def rank_pairs(ranks, n_layers, n_heads) -> list[tuple[str, str]]:
    named = list(ranks.heads)
    if isinstance(ranks.above, list):
        clash = sorted(set(named) & set(ranks.above))
        if clash:
            raise RanksError(f"{', '.join(clash)} is both among `heads` and `above`", "a head cannot beat itself")
        return [(h, o) for h in named for o in ranks.above]
    if n_layers is None or n_heads is None:
        raise RanksError(f"`above: {ranks.above}` needs the model's heads, which are known only for zoo and native "
                         "models", "list the heads: `above: [L0H0, L0H2]`")
    layers = {parse_head(h)[0] for h in named} if ranks.above == "layer" else range(n_layers)
    others = [f"L{layer}H{i}" for layer in sorted(layers) for i in range(n_heads) if f"L{layer}H{i}" not in named]
    if not others:
        raise RanksError("`ranks` names every head, so there is no other head to beat", "name fewer heads")
    same = ranks.above == "layer"
    return [(h, o) for h in named for o in others if not same or parse_head(o)[0] == parse_head(h)[0]]


def _case(path: Path, label: str, under: tuple, measure: Measure, ps: PromptSpec, value=None, where=None,
          versus=None, versus_under=None, expect=None) -> Case:
    base = ps.model_dump()
    variants = [PromptSpec.model_validate({**base, **v})
                for v in measures.kind_of(measure).variants(measure.body)]
    return Case(label, under, measure, ps, prompts_key(path, ps), value, where, versus,
                tuple((v, prompts_key(path, v)) for v in variants), versus_under, expect)


def dump_where(where: str | None, sub, values: dict) -> str | None:
    if where is None:
        return None
    out = sub(where)
    left = _unbound(out)
    if left:
        raise UnboundVariable(left, f"{left} is not bound: this claim's `for:` or `sweep:` binds "
                              + (", ".join(f"${k}" for k in values) or "nothing"))
    return out


# `method: mean` (ablate, keep_only, keep_circuit, knock_out, circuit claims) takes its means over a
# reference set drawn apart from the judged prompts: the same generator and parameters with this
# offset on the seed, so the judged per-prompt values are independent given the means (issue 22
# item 1). Far above any `--cc-prompt-seed` shift, so a shifted suite never judges its own reference.
# It equals roles.HELD_OUT_SEED (a claim on the file's prompts averages over its roles' scan set) and
# the zoo's TRAIN_SEED_BASE (a reference set may repeat a training batch). Both sets are independent of
# the judged prompts, which is all validity needs, so the offsets stay shared (docs/reference.md).
REFERENCE_SEED_OFFSET = 1_000_003


def reference_spec(p):
    """The prompt spec `method: mean` averages over for claims judged on `p`, or None where the mean
    is over the judged prompts themselves: a JSONL data set (fixed rows; `mean_from:` names another
    set) and a population (its own mean is the population's, exactly)."""
    if p.generator == "jsonl" or p.population:
        return None
    return p.model_copy(update={"seed": (p.seed + REFERENCE_SEED_OFFSET) % 2**63})


def prompts_key(path: Path, p) -> tuple:
    """Identifies a prompt set across files; a JSONL set is also identified by its directory."""
    base = str(path.parent.resolve()) if p.generator == "jsonl" else ""
    return (base,) + tuple(sorted((k, _freeze(v)) for k, v in p.model_dump().items()))


def _freeze(v):
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


DEFAULT_N = 200  # prompts a generator makes when the file gives no `n`
_GENERATED: dict[tuple, prompts.PromptSet] = {}  # generator sets are pure functions of their spec


def prompt_set(loaded: LoadedFile, key: tuple, spec=None):
    """The (numpy) prompt set for `key`, built once per file; a generated set once per process,
    so that many files over the same prompts build them once."""
    if key not in loaded.prompt_sets:
        spec = spec or loaded.spec.prompts
        if spec.generator == "jsonl":  # a file on disk: read it anew for each hypothesis file
            ps = _built(loaded, spec)
        else:
            if key not in _GENERATED:
                _GENERATED[key] = _built(loaded, spec)
            ps = _GENERATED[key]
        if ps.n < 2 and not spec.population:
            raise prompts.PromptError(f"this prompt set has {ps.n} prompt; {ONE_INPUT}",
                                      "write `population: true` under `prompts:` for a claim about this one input, "
                                      "or add rows")
        prompts.check_fit(ps, **loaded.limits)
        loaded.prompt_sets[key] = ps
    return loaded.prompt_sets[key]


def build_prompts(path: Path, spec) -> prompts.PromptSet:
    gen, n, seed, params = _generator_args(path, spec)
    return prompts.build(gen, n, seed, **params)


def _built(loaded: LoadedFile, spec) -> prompts.PromptSet:
    """A prompt set built, or read back from `loaded.store` where the same generator arguments over
    the same files (a JSONL file, a tokenizer) were built before."""
    if loaded.store is None:
        return build_prompts(loaded.path, spec)
    gen, n, seed, params = args = _generator_args(loaded.path, spec)
    return loaded.store.prompts(repr(args), _files_read(params), lambda: prompts.build(gen, n, seed, **params))


def _generator_args(path: Path, spec) -> tuple:
    """(generator, n, seed, parameters) of a prompt spec, its JSONL path resolved from `path`."""
    p = spec.model_dump()
    gen, n, seed = p.pop("generator"), p.pop("n"), p.pop("seed")
    p.pop("population")  # how claims are judged, not how prompts are made
    if gen == "jsonl" and "path" in p:
        try:
            p["path"] = str(paths.resolve(path, p.get("path"), "prompt file"))
        except paths.PathRefused as exc:
            raise prompts.PromptError(str(exc), exc.hint) from None
    if gen == "jsonl":
        p["base"] = path.parent
    elif n is None:
        n = DEFAULT_N
    return gen, n, seed, p


def _files_read(params: dict) -> list[Path] | None:
    """The files a generator reads: its JSONL file and the tokenizer's two files (text_prompts.py);
    None where one is missing (the build then says what is wrong)."""
    from ..prompts.text import tokenizer_files

    files = []
    if isinstance(params.get("path"), str):
        files.append(Path(params.get("base") or ".") / params["path"])
    if isinstance(params.get("tokenizer"), str):
        file, config = tokenizer_files(params["tokenizer"])
        files += [file, config] if config.exists() else [file]
    return files if all(f.is_file() for f in files) else None


def _check_clusters(loaded: LoadedFile, tree, loc, claim: Claim, cases: list[Case]):
    """`clusters: FIELD` names a field every prompt has, on a claim judged as one mean per case."""
    sub = loc + ("clusters",)
    e = claim.expect
    if claim.sweep or e.relative == "contrast" or e.correlates is not None or e.order is not None:
        raise HypothesisError(loaded.path, locate(tree, sub), _field(sub), "`clusters:` bounds one mean over "
                              "groups of prompts; it does not go with a sweep, a contrast, `correlates` or `order`",
                              "drop `clusters:`, or state the claim as a mean")
    for case in cases[:1]:
        ps = prompt_set(loaded, case.prompts_key, case.prompts)
        if claim.clusters not in ps.fields:
            known = ", ".join(sorted(ps.fields)) or "none"
            raise HypothesisError(loaded.path, locate(tree, sub), _field(sub),
                                  f"the prompts have no field {claim.clusters!r} naming each prompt's group",
                                  f"name a field of the prompts (fields: {known}); a text generator with a list "
                                  "of templates has `template`")


def _check_claim(loaded: LoadedFile, tree, loc, claim: Claim, cases: list[Case]):
    path = loaded.path
    ploc = loc + ("prompts",) if claim.prompts else ("prompts",)
    if claim.clusters is not None:
        _check_clusters(loaded, tree, loc, claim, cases)
    if claim.ranks is not None:
        for where, head in _rank_heads(claim.ranks):
            try:
                _check_head(loaded, head)
            except prompts.PromptError as exc:
                sub = loc + ("ranks",) + where
                raise HypothesisError(path, locate(tree, sub), _field(sub), str(exc), exc.hint) from None
    elif claim.for_ is None and claim.sweep is None and _mentions(claim, "$"):
        raise HypothesisError(path, locate(tree, loc + ("id",)), _field(loc), "uses a `$variable` but has no `for:` "
                              "or `sweep:` to bind it", "add `for: {all: {each: [...]}}`, a sweep, or write the value")
    if claim.for_ is not None:
        floc = loc + ("for", claim.for_.kind)
        for where, head in _quantifier_heads(claim.for_.sets):
            try:
                _check_head(loaded, head)
            except prompts.PromptError as exc:
                raise HypothesisError(path, locate(tree, floc + where), _field(floc + where), str(exc), exc.hint) from None
    for case in cases:
        ps = _case_prompts(loaded, tree, ploc, case)
        for spec, _ in case.variants:
            _case_prompts(loaded, tree, loc + ("measure", case.measure.kind, "variants"), None, spec)
        for name, m in (("measure", case.measure), ("versus", case.versus)):
            if m is not None:
                _check_kind(loaded, tree, loc + (name, m.kind), measures.kind_of(m), m.body, ps)
        if case.where is not None:
            _check_where(loaded, tree, loc, case.where, ps, claim.expect.relative == "contrast")
        expect = case.expect or claim.expect
        if expect.correlates is not None:
            _check_quantity(loaded, tree, loc + ("expect", "correlates", "with"), expect.correlates.with_, ps)
        for base, i, iv in runs_of(case):
            for source in interventions.kind_of(iv).sources(iv.body):
                sloc = loc + base + (i, iv.kind) + source.loc
                src = _case_prompts(loaded, tree, sloc, None, source.prompts)
                why = source.mismatch(src, ps)
                if why:
                    raise HypothesisError(path, locate(tree, sloc), _field(sloc), f"{iv.kind} {why}",
                                          "give the source as many prompts of the same length, or patch "
                                          "their mean (`mean: true`)")
        for where, value, what in _references(case):
            sub = loc + where
            try:
                if what == "head":
                    _check_head(loaded, value)
                elif what == "hook":
                    _check_hook(loaded, value)
                elif what == "layer":
                    _check_layer(loaded, value)
                elif what == "mlp":
                    _check_mlp(loaded, value)
                elif what == "index":
                    _check_index(loaded, *value)
                elif what == "expression":
                    shape_of(value[0], loaded.sizes, value[1])
                elif what == "condition":
                    prompts.condition(value, ps)
                elif what == "neuron":
                    _check_neuron(loaded, value)
                elif what == "registered measure":
                    _check_registered_measure(value)
                else:
                    prompts.position(ps, value)
            except (prompts.PromptError, ValueError) as exc:
                raise HypothesisError(path, locate(tree, sub), _field(sub), str(exc), getattr(exc, "hint", "")) from None
        for base, i, iv in runs_of(case):  # after the references: positions are known to resolve
            _check_kind(loaded, tree, loc + base + (i, iv.kind), interventions.kind_of(iv), iv.body, ps)


def _check_kind(loaded, tree, where, kind, body, ps):
    """A kind's own checks against the prompt set (an edge the mask hides, padded rows, ...)."""
    try:
        kind.check(body, ps)
    except prompts.PromptError as exc:
        where += (exc.param,) if isinstance(exc.param, str) and exc.param else tuple(exc.param or ())
        raise HypothesisError(loaded.path, locate(tree, where), _field(where), str(exc), exc.hint) from None


def _case_prompts(loaded, tree, ploc, case, spec=None):
    spec = spec or case.prompts
    try:
        return prompt_set(loaded, prompts_key(loaded.path, spec), spec)
    except (prompts.PromptError, TypeError) as exc:
        hint = getattr(exc, "hint", "") or "check the generator's parameters in docs/reference.md"
        line = locate(tree, ploc)
        if getattr(exc, "file", None) is not None:  # a row of a data file: point at its own line
            raise HypothesisError(exc.file, exc.line, exc.field, exc.detail,
                                  f"{hint} (prompts of {loaded.path.name}, line {line})") from None
        param = getattr(exc, "param", "")  # a name, or a path such as ("slots", "S")
        ploc += (param,) if isinstance(param, str) and param else tuple(param or ())
        raise HypothesisError(loaded.path, locate(tree, ploc), _field(ploc), str(exc), hint) from None


def _check_where(loaded, tree, loc, where, ps, contrast: bool):
    """A filter must keep at least two prompts; a contrast must split the prompts in two groups."""
    wloc = loc + ("where",)
    try:
        mask = where_mod.evaluate(where, ps)
    except prompts.PromptError as exc:
        raise HypothesisError(loaded.path, locate(tree, wloc), _field(wloc), str(exc), exc.hint) from None
    kept = int(mask.sum())
    if contrast and (mask.all() or not mask.any()):
        raise HypothesisError(loaded.path, locate(tree, wloc), _field(wloc),
                              f"`{where}` holds for {'every' if mask.all() else 'no'} prompt: nothing to compare",
                              "pick a condition that splits the prompt set")
    if not contrast and kept < 2:
        raise HypothesisError(loaded.path, locate(tree, wloc), _field(wloc),
                              f"`{where}` matches {kept} of {ps.n} prompts: a claim needs at least 2",
                              "loosen the condition, or check the field names and values it compares")


def _check_quantity(loaded, tree, where, spec, ps):
    try:
        prompts.quantity(ps, spec)
    except prompts.PromptError as exc:
        raise HypothesisError(loaded.path, locate(tree, where), _field(where), str(exc), exc.hint) from None


def _rank_heads(ranks):
    yield from ((("heads", j), h) for j, h in enumerate(ranks.heads))
    if isinstance(ranks.above, list):
        yield from ((("above", j), h) for j, h in enumerate(ranks.above))


def _quantifier_heads(sets):
    for name in ("each", "pairs", "cross", "within", "subsets"):
        for i, item in enumerate(getattr(sets, name) or []):
            if isinstance(item, list):
                yield from (((name, i, j), h) for j, h in enumerate(item))
            else:
                yield (name, i), item


def _check_hook(loaded: LoadedFile, name: str):
    m = HOOK.match(name)
    if not m:
        raise prompts.PromptError(
            f"unknown hook {name!r}",
            "use blocks.<layer>.hook_resid_pre / hook_resid_post / hook_attn_out, blocks.<layer>.attn.hook_z / "
            "hook_pattern / hook_q / hook_k / hook_v, hook_embed, hook_pos_embed, or the short forms of the measure")
    if (loaded.spec.model.runner or "").startswith("nnsight"):
        why = module_map.unsupported([name], runner_architecture(loaded.model_source))
        if why:
            raise prompts.PromptError(why, "use `runner: transformer_lens` for this file")
    if MLP_HOOK.search(name):
        _check_mlp(loaded, None, f"hook {name!r}")
    layer = m.group(3)
    if layer is not None and loaded.n_layers is not None and int(layer) >= loaded.n_layers:
        raise prompts.PromptError(f"hook {name!r} is in layer {layer}, but the model has {loaded.n_layers} layers",
                                  f"layers are numbered 0..{loaded.n_layers - 1}")


def _mentions(claim: Claim, text: str) -> bool:
    return text in str(claim.model_dump(exclude={"says", "id"}))


# Hooks that only a block with an MLP has
MLP_HOOK = re.compile(r"hook_mlp_(in|out)$|\.mlp\.|\.ln2\.")


def _check_mlp(loaded: LoadedFile, layer: int | None, what: str = ""):
    """An MLP layer (a neuron, `mlp1`, `W_in[1]`, `hook_mlp_out`): the model must have MLPs, and that layer."""
    if loaded.sizes.get("attn_only"):
        what = what or f"MLP layer {layer}"
        raise prompts.PromptError(f"{what}: the model is attention-only (its config says `attn_only`), so it has "
                                  "no MLP layers", "an attention-only model has heads (`L0H1`), `attn0` and "
                                  "`hook_attn_out`, embeddings and the residual stream")
    if layer is not None:
        _check_layer(loaded, layer)


def _check_layer(loaded: LoadedFile, layer: int):
    if loaded.n_layers is not None and layer >= loaded.n_layers:
        raise prompts.PromptError(f"layer {layer} does not exist: the model has {loaded.n_layers} layers",
                                  f"layers are numbered 0..{loaded.n_layers - 1}")


def _check_index(loaded: LoadedFile, size: str, index: int, what: str):
    """An index into a vocabulary, position or neuron axis, against the size the config gives."""
    n = loaded.sizes.get(size)
    if n is not None and not -n <= index < n:
        raise prompts.PromptError(f"{what} index {index} is out of range: {size} is {n}",
                                  f"indices run 0..{n - 1}")


def _check_neuron(loaded: LoadedFile, neuron: str):
    layer, i = parse_neuron(neuron)
    if loaded.n_layers is not None and layer >= loaded.n_layers:
        raise prompts.PromptError(f"neuron {neuron} is in layer {layer}, but the model has {loaded.n_layers} layers",
                                  f"layers are numbered 0..{loaded.n_layers - 1}")
    d_mlp = loaded.sizes.get("d_mlp")
    if d_mlp is not None and i >= d_mlp:
        raise prompts.PromptError(f"neuron {neuron} does not exist: the MLPs have {d_mlp} neurons",
                                  f"neurons are numbered 0..{d_mlp - 1}")


def _check_registered_measure(name: str):
    """A `python:` measure names code registered in a conftest.py or entry point, never a module path."""
    if not re.match(registry.NAME, name):
        raise prompts.PromptError(f"{name!r} is not a registered name: a hypothesis file never names a module or "
                                  "function to import", "register the function in a conftest.py beside the file with "
                                  "`@circuitcheck.register_measure(\"my-measure\", reads=[...])` and write "
                                  "`measure: {python: my-measure}` (README, Measures in Python)")
    try:
        registry.measure(name)
    except registry.NotRegistered as exc:
        raise prompts.PromptError(str(exc), exc.hint) from None


def _check_head(loaded: LoadedFile, head: str):
    layer, h = parse_head(head)
    if loaded.n_layers is not None and layer >= loaded.n_layers:
        raise prompts.PromptError(f"head {head} is in layer {layer}, but the model has {loaded.n_layers} layers",
                                  f"layers are numbered 0..{loaded.n_layers - 1}")
    if loaded.n_heads is not None and h >= loaded.n_heads:
        raise prompts.PromptError(f"head {head} does not exist: the model has {loaded.n_heads} heads per layer",
                                  f"heads are numbered 0..{loaded.n_heads - 1}")


def _references(case: Case):
    """(loc inside the claim, value, 'head' | 'position' | 'hook' | 'layer' | 'condition') for everything a
    case names."""
    for base, i, iv in runs_of(case):
        for where, value, what in interventions.kind_of(iv).references(iv.body):
            yield base + (i, iv.kind) + where, value, what
    for name, m in (("measure", case.measure), ("versus", case.versus)):
        if m is not None:
            for where, value, what in measures.kind_of(m).references(m.body):
                yield (name, m.kind) + where, value, what
