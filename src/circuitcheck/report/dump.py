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


def path(directory: Path, hyp: Path, claim_id: str, label: str) -> Path:
    stem = hyp.name.removesuffix(".hyp.yaml")
    safe = re.sub(r"[^\w.=,+-]", "_", label)
    return Path(directory) / stem / (f"{claim_id}.{safe}.json" if label else f"{claim_id}.json")


def write(directory, loaded, claim, case, kept: np.ndarray, values: np.ndarray, clean=None, group=None,
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
    out = path(directory, loaded.path, claim.id, case.label)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record) + "\n")
