"""Reports: what a researcher reads, and what a later run is compared with.

- `table.py`        the words and table of a result, in the terminal and in pytest's failures
- `json_report.py`  `--cc-json`: every claim and case, in a versioned schema
- `html_report.py`  `--cc-html`: one self-contained page
- `dump.py`         `--cc-dump-values`: the per-prompt values behind every case
- `baseline.py`     baselines beside the hypothesis files, the syrupy way
- `series.py`       a checkpoint series as one table
- `regression.py`   the flags and end-of-run work that ties these together
"""
from __future__ import annotations

from ..language.moved import forward

# `circuitcheck.report` was one module until 0.2: its names still resolve, with a warning, for one release.
__getattr__ = forward(__name__, "table")
