"""YAML → maps, lists and scalars that remember their line, read safely and fast.

PyYAML's safe loader builds only maps, lists and scalars (no Python objects); with libyaml (the
C parser its wheels ship) it reads 1,000 claims in a few tens of milliseconds, which keeps
`pytest --collect-only` quick. Scalars follow YAML 1.2, as editors and most tools read them:
`1e-3` is a number, `yes`/`no`/`on`/`off` and dates stay strings, `012` is twelve.
"""
from __future__ import annotations

import re

import yaml
from yaml.constructor import ConstructorError
from yaml.error import MarkedYAMLError  # noqa: F401  (re-exported: what `read` raises)

_TAG = "tag:yaml.org,2002:"


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
_Loader.add_implicit_resolver(_TAG + "int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    _TAG + "float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _int(loader, node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 8) if text.startswith("0o") else int(text, 0 if text.startswith("0x") else 10)


def _map(loader, node) -> Map:
    out, merged = Map(node.start_mark.line), {}
    for key_node, value_node in node.value:
        if key_node.tag == _TAG + "merge":  # `<<: *defaults`: keys written here win over merged ones
            for src in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
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
    out = Seq(node.start_mark.line)
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.lines.append(item.start_mark.line)
    return out


_Loader.add_constructor(_TAG + "int", _int)
_Loader.add_constructor(_TAG + "map", _map)
_Loader.add_constructor(_TAG + "seq", _seq)


def read(text: str):
    """The document in `text` as Map/Seq/scalars; raises yaml's MarkedYAMLError on bad YAML."""
    return yaml.load(text, Loader=_Loader)


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
