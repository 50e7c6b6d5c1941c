"""The package's layout: imports go one way down the pipeline, and a new kind is one file.

The pipeline, top to bottom:
    hypothesis_file → spec → plan → runs/interventions → measures → stats → verdict → report
A module may import modules below it (and its own stage), never one above it. Leaf modules (names,
fields, prompts, models, registry, yaml_lines) import no stage at all; session, plugin and cli tie
the stages together and nothing below imports them.
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
STAGES = [{"hypothesis_file"}, {"spec"}, {"plan"}, {"runs", "interventions"},
          {"measures", "attribution", "keysets", "weights"}, {"stats"}, {"verdict"},
          {"report"}]
LEAVES = {"names", "fields", "prompts", "models", "registry", "yaml_lines", "where", "jsonl", "cache", "paths"}
TOP = {"session", "plugin", "cli", "flags", "__init__", "__main__", "zoo", "specificity"}
# Known imports against the direction, each a (module, imported) pair, kept on purpose: the judging
# stage's result types are defined where they are computed (stats.Estimate in stats, verdict.Result
# in verdict) and the stages after it read them (verdict judges an Estimate, report renders a Result).
# Removing them means moving those types to a leaf module of their own, a change to the statistics
# code for no behaviour; the test below fails when one of them is gone, so the list stays true.
KNOWN_UPWARD = {("verdict", "stats"), ("report", "verdict")}


def stage(module: str) -> int | None:
    return next((i for i, s in enumerate(STAGES) if module in s), None)


def top_name(path: Path) -> str:
    """The first component of a module's name inside the package (`measures` for measures/dla.py)."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported(path: Path) -> set[str]:
    """Package modules `path` imports anywhere (also inside functions), by first component."""
    out = set()
    package = path.relative_to(SRC).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = list(package[:len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif (node.module or "").split(".")[0] == "circuitcheck":
                parts = node.module.split(".")[1:]
                names = [parts[0]] if parts else [a.name for a in node.names]
            else:
                continue
            out.update(names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("circuitcheck."))
    return out


def edges() -> set[tuple[str, str]]:
    return {(top_name(p), m) for p in SRC.rglob("*.py") for m in imported(p) if m != top_name(p)}


def test_imports_go_down_the_pipeline():
    wrong = []
    for a, b in sorted(edges()):
        if a in TOP:
            continue
        if b in TOP:
            wrong.append(f"{a} imports {b}, which ties the stages together")
        elif a in LEAVES and stage(b) is not None:
            wrong.append(f"leaf module {a} imports pipeline stage {b}")
        elif stage(a) is not None and stage(b) is not None and stage(b) < stage(a) and (a, b) not in KNOWN_UPWARD:
            wrong.append(f"{a} imports {b}, which is above it in the pipeline")
    assert not wrong, "\n".join(wrong)


def test_the_known_upward_imports_are_still_there():
    assert KNOWN_UPWARD <= edges(), "an upward import is gone: remove it from KNOWN_UPWARD"


def test_the_checker_sees_lazy_and_relative_imports():
    assert "runs" in imported(SRC / "session.py")  # imported inside a method, for torch to load late
    assert {"names", "fields"} <= imported(SRC / "measures" / "attention.py")


NEW_KIND = '''
"""`measure: {twice_attention: {head, from, to}}`: twice an attention weight (a test kind)."""
from ..fields import Head, Position, Strict
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
        from circuitcheck import report
        from circuitcheck.spec import json_schema
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
    files = {p.stem for p in (SRC / package).glob("*.py")} - {"__init__", "base"}
    owners = {type(k).__module__.rsplit(".", 1)[1] for k in mod.KINDS.values()}
    assert owners == files
