"""YAML → maps, lists and scalars that remember their line, read safely and fast.

PyYAML's safe loader builds only maps, lists and scalars (no Python objects); with libyaml (the
C parser its wheels ship) it reads 1,000 claims in a few tens of milliseconds, which keeps
`pytest --collect-only` quick. Scalars follow YAML 1.2, as editors and most tools read them:
`1e-3` is a number, `yes`/`no`/`on`/`off` and dates stay strings, `012` is twelve.

Only plain data is built: any tag other than str, int, float, bool, null, map and seq is refused,
and so is a document nested deeper than MAX_DEPTH or one that anchors and aliases expand to more
than MAX_NODES values (a "billion laughs" file is a few lines that alias one list into another).
Both limits are checked before anything is built, so such a file is refused in milliseconds.
"""
from __future__ import annotations

import re

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import MarkedYAMLError, YAMLError  # noqa: F401  (re-exported: what `read` raises)

_TAG = "tag:yaml.org,2002:"
MAX_DEPTH = 50  # levels of nested mappings and lists; the shipped files use fewer than 10
MAX_NODES = 200_000  # values after expanding aliases; a file of 1,000 claims has about 30,000
MAX_DIGITS = 30  # an integer longer than this is a mistake (and Python refuses 4,300 digits)


class Map(dict):
    """A mapping with the 0-based line of itself (`line`) and of each key (`lines`)."""

    line = 0

    def __init__(self, line: int = 0):
        super().__init__()
        self.line, self.lines = line, {}


class Seq(list):
    """A sequence with the 0-based line of itself and of each item."""

    def __init__(self, line: int = 0):
        super().__init__()
        self.line, self.lines = line, []


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    pass


# YAML 1.2 core scalars in place of YAML 1.1's (null and merge keys are the same in both).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in (_TAG + "null", _TAG + "merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_Loader.add_implicit_resolver(_TAG + "int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+0123456789."))


def _scalar(loader, node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ConstructorError(None, None, f"`!!{what}` must tag a plain value, not a mapping or list", node.start_mark)
    return loader.construct_scalar(node)


def _int(loader, node) -> int:
    text = _scalar(loader, node, "int").strip()
    digits = text.lstrip("+-")
    if len(digits) > MAX_DIGITS:
        raise ConstructorError(None, None, f"an integer of {len(digits)} digits is too large for a hypothesis file",
                               node.start_mark)
    try:
        if digits.startswith("0o"):
            return int(text.replace("0o", "", 1), 8)
        return int(text, 16) if digits.startswith("0x") else int(text, 10)
    except ValueError:
        raise ConstructorError(None, None, f"{text!r} is tagged `!!int` but is not an integer",
                               node.start_mark) from None


def _float(loader, node) -> float:
    text = _scalar(loader, node, "float").strip()
    if not _FLOAT.match(text) and not _INT.match(text):
        raise ConstructorError(None, None, f"{text!r} is tagged `!!float` but is not a number", node.start_mark)
    if _INT.match(text):
        return float(_int(loader, node))
    return float({".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}.get(text.lower(), text))


def _bool(loader, node) -> bool:
    text = _scalar(loader, node, "bool").strip()
    if text.lower() not in ("true", "false"):
        raise ConstructorError(None, None, f"{text!r} is tagged `!!bool` but is not true or false", node.start_mark)
    return text.lower() == "true"


def _refuse(loader, node):
    tag = node.tag.replace(_TAG, "!!")
    raise ConstructorError(None, None, f"the YAML tag `{tag}` is not allowed: a hypothesis file holds only "
                           "mappings, lists, strings, numbers, true/false and null", node.start_mark)


def _map(loader, node) -> Map:
    if not isinstance(node, yaml.MappingNode):
        raise ConstructorError(None, None, "`!!map` must tag a mapping", node.start_mark)
    out, merged = Map(node.start_mark.line), {}
    for key_node, value_node in node.value:
        if key_node.tag == _TAG + "merge":  # `<<: *defaults`: keys written here win over merged ones
            for src in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                if not isinstance(src, yaml.MappingNode) or src.tag != _TAG + "map":
                    raise ConstructorError(None, None, "a merge key `<<` takes a mapping (`<<: *defaults`) or a "
                                           "list of mappings", src.start_mark)
                base = loader.construct_object(src, deep=True)
                for k, v in base.items():
                    merged.setdefault(k, (v, base.lines.get(k, base.line)))
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (Map, Seq)):
            raise ConstructorError(None, None, "a mapping key must be a plain value", key_node.start_mark)
        if key in out:
            raise ConstructorError(None, None, f"found duplicate key {key!r} (first on line {out.lines[key] + 1})",
                                   key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line
    for k, (v, line) in merged.items():
        if k not in out:
            out[k], out.lines[k] = v, line
    return out


def _seq(loader, node) -> Seq:
    if not isinstance(node, yaml.SequenceNode):
        raise ConstructorError(None, None, "`!!seq` must tag a list", node.start_mark)
    out = Seq(node.start_mark.line)
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.lines.append(item.start_mark.line)
    return out


# Only these tags build anything; any other (`!!binary`, `!!set`, `!!python/...`, `!foo`) is refused.
_Loader.yaml_constructors = {
    _TAG + "null": SafeConstructor.construct_yaml_null, _TAG + "bool": _bool, _TAG + "int": _int,
    _TAG + "float": _float, _TAG + "str": SafeConstructor.construct_yaml_str,
    _TAG + "merge": SafeConstructor.construct_yaml_str,  # a `<<` that is a value, not a key, is text
    _TAG + "map": _map, _TAG + "seq": _seq, None: _refuse,
}


def read(text: str):
    """The document in `text` as Map/Seq/scalars; raises yaml's MarkedYAMLError on bad YAML,
    on a tag that is not plain data, and on a document too deep or too large once expanded."""
    aliases = _check_events(text)  # before composing: libyaml's composer recurses in C, and crashes when too deep
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if aliases:  # without aliases, the events already counted every value
            _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_events(text: str) -> bool:
    """Refuse a document nested deeper than MAX_DEPTH or with more than MAX_NODES values as written;
    whether it has aliases (which expand beyond what is written)."""
    depth, nodes, aliases = 0, 0, False
    for event in _events(text):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(event.start_mark)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        aliases |= isinstance(event, yaml.AliasEvent)
        nodes += isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if nodes > MAX_NODES:
            raise _too_large(event.start_mark, "this document has")
    return aliases


def _events(text: str):
    """yaml.parse, with libyaml's own nesting limit (PyYAML 6.0.4 on; it scans ahead of our count)
    reported as ours."""
    try:
        yield from yaml.parse(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" not in str(exc.problem):
            raise
        raise _too_deep(exc.problem_mark) from None


def _too_deep(mark):
    return ConstructorError(None, None, f"mappings and lists are nested more than {MAX_DEPTH} levels deep", mark)


def _too_large(mark, what="anchors and aliases expand this document to"):
    return ConstructorError(None, None, f"{what} more than {MAX_NODES:,} values", mark)


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root):
    """Refuse a node graph that aliases expand past MAX_NODES values or MAX_DEPTH levels, or that
    contains itself; without building it (the graph shares aliased nodes, the expansion would not)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # the current path: an alias to one of these is a loop
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        k = id(node)
        if finished:
            kids = _children(node)
            size[k] = 1 + sum(size[id(c)] for c in kids)
            depth[k] = 1 + max((depth[id(c)] for c in kids), default=0)
            open_nodes.discard(k)
            if size[k] > MAX_NODES:
                raise _too_large(node.start_mark)
            if depth[k] > MAX_DEPTH + 1:
                raise _too_deep(node.start_mark)
            continue
        if k in size:
            continue
        if k in open_nodes:
            raise ConstructorError(None, None, "an alias refers to a mapping or list that contains it, which "
                                   "would never end", node.start_mark)
        open_nodes.add(k)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def line_of(tree, loc) -> int | None:
    """The 1-based line of the deepest part of `loc` (keys and list indices) found in `tree`."""
    line, node = None, tree
    for part in loc:
        if isinstance(node, Map) and part in node:
            line = node.lines[part] + 1
        elif isinstance(node, Seq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lines[part] + 1
        else:
            break
        node = node[part]
    if line is None and isinstance(node, (Map, Seq)):
        line = node.line + 1
    return line
