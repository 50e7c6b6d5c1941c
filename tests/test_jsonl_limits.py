"""A huge JSONL file with a small `n` is read only as far as `n` (rows Python's json reads badly:
tests/ of issue 26)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from circuitcheck import prompts as P

GOOD = '{"tokens": [0, 5, 6, 7], "answer": 3, "fields": {"depth": 1}}\n'


def test_a_huge_file_with_a_small_n_is_read_only_as_far_as_n(tmp_path):
    """300 MB of rows, n=3: the peak memory of a process reading it stays far below the file's size."""
    path = tmp_path / "p.jsonl"
    with open(path, "w") as f:
        for _ in range(300):
            f.write((GOOD * 20000))  # about 1 MB a write
    size = path.stat().st_size
    code = ("import resource, sys; from pathlib import Path; from circuitcheck import prompts as P;"
            "ps = P.build('jsonl', 3, 0, path='p.jsonl', base=Path(sys.argv[1])); assert ps.n == 3;"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    baseline = ("import resource; from circuitcheck import prompts as P;"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    peak = int(subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              check=True).stdout)
    floor = int(subprocess.run([sys.executable, "-c", baseline], capture_output=True, text=True, check=True).stdout)
    assert size > 250e6 and peak - floor < size / 10, (peak, floor, size)
