"""Beside `--cc-html report.html`: each attention example of the report in the shape CircuitsVis's
`attention_patterns(tokens, attention)` takes (`report.attention.json`), and, where the optional
`circuitsvis` package is installed, those patterns rendered by it (`report.circuitsvis.html`),
where a reader can hover over tokens. circuitcheck never needs circuitsvis: without it the JSON is
written alone, and three lines of Python render it (docs/reference.md).
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..files import atomic

FORMAT = "circuitcheck-attention/1"


def path_for(html_path) -> Path:
    """report.html -> report.attention.json"""
    return Path(html_path).with_suffix(".attention.json")


def patterns(records: list[dict]) -> list[dict]:
    """One entry per record with an attention example: its claim, and `tokens` (n_pos labels) and
    `attention` ([1 head, query position, key position]) as `attention_patterns` takes them."""
    return [{"file": r["file"], "claim": r["id"], "checkpoint": r.get("checkpoint", ""),
             "head": r["attention"]["head"], "prompts": r["attention"]["n"],
             "tokens": list(r["attention"]["tokens"]), "attention": [r["attention"]["pattern"]]}
            for r in records if r.get("attention")]


def write(path, records: list[dict], root: str) -> str:
    """Write the JSON (paths relative to the run's `root`, as in the JSON report), and the circuitsvis
    page where circuitsvis is installed; what was written."""
    from .json_report import relative

    found = relative({"format": FORMAT, "patterns": patterns(records)}, root)["patterns"]
    atomic.write(path, json.dumps({"format": FORMAT, "patterns": found}, indent=1, ensure_ascii=False) + "\n")
    page = rendered(found)
    if page is None:
        return f"{path} (no circuitsvis here: install it for an interactive page)"
    out = Path(path).with_suffix("").with_suffix(".circuitsvis.html")
    atomic.write(out, page)
    return f"{path} and {out}"


def rendered(found: list[dict]) -> str | None:
    """A page of circuitsvis's attention views, one per pattern (its script loads from circuitsvis's CDN when
    the page is opened); None without circuitsvis."""
    try:
        from circuitsvis.attention import attention_patterns
    except ImportError:
        return None
    parts = [f"<h3>{html.escape(p['claim'])}: {html.escape(p['head'])}, averaged over {p['prompts']} prompts "
             f"({html.escape(p['file'])})</h3>\n{attention_patterns(tokens=p['tokens'], attention=p['attention'])}"
             for p in found]
    return "<!doctype html><meta charset=utf-8><title>circuitcheck attention</title>\n" + "\n".join(parts) + "\n"
