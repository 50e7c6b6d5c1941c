"""A checkpoint series (`--cc-model REF=a,b,c`): one row per claim, one column per checkpoint."""
from __future__ import annotations

from pathlib import Path


def cell(rec: dict) -> str:
    """A claim on one checkpoint: its verdict and the value of its first case."""
    if not rec["cases"]:
        return rec["verdict"]
    return f"{rec['verdict']} {rec['cases'][0]['value']:.3g}" + ("*" if len(rec["cases"]) > 1 else "")


def table(records: list[dict]) -> list[str]:
    """Rows `file::claim`, columns in the order the checkpoints ran (their natural order)."""
    columns: list[str] = []
    cells: dict[str, dict[str, str]] = {}
    for r in records:
        ck = r.get("checkpoint") or ""
        if ck not in columns:
            columns.append(ck)
        cells.setdefault(f"{Path(r['file']).name}::{r['id']}", {})[ck] = cell(r)
    rows = [["claim"] + [c or "(file's model)" for c in columns]]
    rows += [[name] + [row.get(c, "-") for c in columns] for name, row in cells.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    if any("*" in x for row in rows[1:] for x in row[1:]):
        out.append("(* the first of several cases)")
    return out
