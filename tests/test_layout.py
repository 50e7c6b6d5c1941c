"""The package's layout: one package per stage of the pipeline, imports one way down, no circles.

The floors, bottom to top; a module imports only packages on floors below its own, and modules
of its own package:

    language            names, fields, registered code: what every stage is written in
    prompts, models,    what runs: prompt sets (generators, JSONL, text, where) and models;
      circuits          circuits as values (nodes, edges, graph files), no torch
    interventions,      what a run does (hooks) and what it reads (one number per prompt)
      measures
    files               hypothesis files read into specs (they name every kind below)
    runs                the plan, forward passes, the values they give, the value cache
    judge               statistics, verdicts, claims judged as families, specificity
    report              tables, JSON, HTML, baselines, regression runs
    session, zoo        the library's entry point; the zoo's training and inspection
    plugin, cli         pytest's adapter and the command line
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import header

SRC = Path(__file__).resolve().parents[1] / "src" / "circuitcheck"
FLOORS = [{"language"}, {"prompts", "models", "circuits"}, {"interventions", "measures"}, {"files"}, {"runs"}, {"judge"},
          {"report"}, {"session", "zoo"}, {"plugin", "cli", "__init__"}]
TOP = {"__init__.py", "session.py", "plugin.py", "cli.py"}  # the only modules outside a stage's package


def floor(room: str) -> int:
    return next(i for i, f in enumerate(FLOORS) if room in f)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def room(module: str) -> str:
    """The package (or top module) a module belongs to: `measures` for measures.dla."""
    return module.split(".")[0]


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every package import of `path`, lazy ones too."""
    out = []
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    package = [] if package == ["__init__"] else package
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "circuitcheck":
                parts = node.module.split(".")[1:]
            else:
                continue
            base = ".".join(parts)
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                if sub in MODULES:  # `from . import stats`: the module itself
                    out.append((sub, [], node.lineno))
                else:
                    out.append((base or "__init__", [a.name], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name.removeprefix("circuitcheck."), [], node.lineno) for a in node.names
                    if a.name.startswith("circuitcheck.")]
    return out


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(p) if t != m} for m, p in MODULES.items()}


def test_the_top_holds_only_the_entry_points_and_the_stage_packages():
    modules = {p.name for p in SRC.glob("*.py")}
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert modules == TOP
    assert packages == set().union(*FLOORS) - {m.removesuffix(".py") for m in TOP}


def test_imports_go_down_the_floors():
    wrong = []
    for m, p in MODULES.items():
        for target, _, line in imports(p):
            a, b = room(m), room(target)
            if a != b and floor(b) >= floor(a):
                wrong.append(f"{p.relative_to(SRC)}:{line} imports {target} ({b} is not below {a})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_round_a_circle():
    g, state, circles = graph(), {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(g.get(m, ())):
            if state.get(t) == "open":
                circles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    # a package's __init__ that imports its own modules is no circle: they import siblings, not it
    assert not circles, "\n".join(circles)


def test_no_package_reaches_into_another_s_private_names():
    wrong = []
    for m, p in MODULES.items():
        aliases = {}
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("circuitcheck")):
                for target, names, line in imports_of(node, p):
                    if room(target) != room(m):
                        wrong += [f"{p.relative_to(SRC)}:{line} imports {target}.{n}" for n in names if _private(n)]
                        if not names:
                            aliases[next(a.asname or a.name for a in node.names
                                         if target.endswith(a.name))] = target
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _private(node.attr)):
                wrong.append(f"{p.relative_to(SRC)}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def imports_of(node, path):
    """`imports` for one ImportFrom node of `path`."""
    return [i for i in imports(path) if i[2] == node.lineno]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_the_checker_sees_lazy_and_relative_imports():
    assert "runs.engine" in graph()["runs.values"]  # imported inside a method, for torch to load late
    assert {"language.names", "language.fields"} <= graph()["measures.attention"]
    assert "files.loader" in graph()["judge.claims"]


NEW_KIND = '''
"""`measure: {twice_attention: {head, from, to}}`: twice an attention weight (a test kind)."""
from ..language.fields import Head, Position, Strict
from pydantic import Field
from .base import Kind, register
from .attention import AttentionKind


class TwiceAttention(Strict):
    head: Head
    from_: Position = Field(alias="from")
    to: Position


@register
class TwiceAttentionKind(AttentionKind):
    name = "twice_attention"
    schema = TwiceAttention
    value_range = (0.0, 2.0)

    def compute(self, body, run):
        return 2 * super().compute(body, run)

    def describe(self, body):
        return f"twice {body.head}'s attention"
'''


def test_a_new_measure_kind_is_one_new_file(tmp_path, tiny_dir):
    """Copy the package, add one file to measures/, and a hypothesis file can use the new kind,
    with its heads and positions checked at collection, its value computed, its body in the JSON
    Schema and its own name in the report."""
    pkg = tmp_path / "src" / "circuitcheck"
    shutil.copytree(SRC, pkg, ignore=shutil.ignore_patterns("__pycache__", "zoo"))
    (pkg / "measures" / "twice_attention.py").write_text(NEW_KIND)
    hyp = tmp_path / "t.hyp.yaml"
    claim = """\
        claims:
          - id: twice
            says: twice the attention
            measure: {{twice_attention: {{head: L1H2, from: S2, to: {to}}}}}
            expect: {{at_least: 0}}
        """
    hyp.write_text(header(tiny_dir, folder=tmp_path) + textwrap.dedent(claim.format(to="S1+1")))
    bad = tmp_path / "bad.hyp.yaml"
    bad.write_text(header(tiny_dir, folder=tmp_path) + textwrap.dedent(claim.format(to="NOWHERE")))
    code = textwrap.dedent(f"""\
        import numpy as np
        from circuitcheck import check, load, HypothesisError
        from circuitcheck.report import table as report
        from circuitcheck.files.spec import json_schema
        r = check({str(hyp)!r})[0]
        schema = json_schema()["$defs"]
        print("schema:", sorted(schema["TwiceAttention"]["properties"]), "twice_attention" in str(schema["Measure"]))
        print("expected:", dict(report.properties(r))["expected"])
        print("method:", r.main.estimate.method)
        try:
            load({str(bad)!r})
        except HypothesisError as e:
            print("refused:", e)
        print(r.verdict, r.main.estimate.statistic)
        """)
    env = {"PYTHONPATH": str(pkg.parent), "PATH": "", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "refused:" in res.stdout and "unknown position 'NOWHERE'" in res.stdout
    assert "measure.twice_attention.to" in res.stdout
    assert "schema: ['from', 'head', 'to'] True" in res.stdout
    assert "expected: twice L1H2's attention ≥ 0" in res.stdout, res.stdout
    assert "method: betting confidence bound (range [0, 2]" in res.stdout, res.stdout  # its own value_range
    verdict, value = res.stdout.strip().splitlines()[-1].split()
    assert verdict == "pass" and float(value) > 0


@pytest.mark.parametrize("package", ["measures", "interventions"])
def test_every_kind_module_registers_one_kind(package):
    import importlib

    mod = importlib.import_module(f"circuitcheck.{package}")
    files = {p.stem for p in (SRC / package).glob("*.py")} - {"__init__", "base"} - set(mod.HELPERS)
    owners = {type(k).__module__.rsplit(".", 1)[1] for k in mod.KINDS.values()}
    assert owners == files
