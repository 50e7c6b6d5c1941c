"""`--cc-dump-values DIR`: the per-prompt values behind every claim case, one JSON file each.

    DIR/<file stem>/<claim id>[.<case label>].json
    {"file", "claim", "case", "measure", "expect", "prompts": [kept prompt indices],
     "lines": [their JSONL lines] (JSONL prompts), "values": [...], "clean": [...] (drop/rise/change)}

`values` are what the claim's interval is computed from: after the `where:` filter, and the paired
change for drop/rise/change; for a contrast, `group` marks the prompts meeting `where`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..files import atomic


def path(directory: Path, hyp: Path, claim_id: str, label: str, checkpoint: str = "") -> Path:
    stem = hyp.name.removesuffix(".hyp.yaml")
    safe = re.sub(r"[^\w.=,+-]", "_", label)
    folder = Path(directory) / stem / (re.sub(r"[^\w.=,+-]", "_", checkpoint) if checkpoint else "")
    return folder / (f"{claim_id}.{safe}.json" if label else f"{claim_id}.json")


class Dumps:
    """Writes each case's values under `directory`, and refuses a second case whose file name is
    taken already in this run (two files of one name in different folders, labels that differ only
    in characters a file name cannot hold): its values would replace the first case's."""

    def __init__(self, directory):
        self.directory = directory
        self.owners: dict[Path, str] = {}  # dump file -> the case that wrote it

    def __call__(self, loaded, claim, case, *args, **kw) -> None:
        out = path(self.directory, loaded.path, claim.id, case.label, getattr(loaded, "checkpoint", ""))
        who = f"{loaded.path}::{claim.id}" + (f"[{case.label}]" if case.label else "")
        if self.owners.setdefault(out, who) != who:
            raise atomic.OutputError(f"--cc-dump-values: {out} holds the values of {self.owners[out]} already, "
                                     f"and {who} would overwrite them; rename one of the two files or claims, "
                                     "or dump them in separate runs")
        try:
            write(out, loaded, claim, case, *args, **kw)
        except OSError as exc:
            raise atomic.OutputError(f"--cc-dump-values: could not write {out}: {exc.strerror or exc}") from None


def write(out: Path, loaded, claim, case, kept: np.ndarray, values: np.ndarray, clean=None, group=None,
          prompts=None) -> None:
    lines = (prompts.extra.get("lines") if prompts is not None else None)
    record = {
        "file": str(loaded.path), "claim": claim.id, "case": case.label,
        "measure": case.measure.model_dump(by_alias=True, exclude_none=True),
        "expect": claim.expect.text(), "where": case.where,
        "prompts": [int(i) for i in kept],
        **({"lines": [int(lines[i]) for i in kept]} if lines is not None else {}),
        "values": [float(v) for v in values],
        **({"clean": [float(v) for v in clean]} if clean is not None else {}),
        **({"group": [bool(g) for g in group]} if group is not None else {}),
    }
    atomic.write(out, json.dumps(record) + "\n")
