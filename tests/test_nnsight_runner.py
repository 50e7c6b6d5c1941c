"""The nnsight runner's checks (tests/nnsight_checks.py), in a pytest process of their own.

Importing nnsight patches `object` itself (every object gains a `.save` method), which breaks code
that inspects class attributes later in the same process: anyio's pytest plugin, loaded by the
`pytester` runs of other test files, refuses to define its classes. So nnsight is never imported by
this process, not even to decide whether to skip.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(importlib.util.find_spec("nnsight") is None,
                    reason="the nnsight runner needs nnsight (pip install -e '.[test]')")
def test_the_nnsight_runner_checks_pass_in_a_process_of_their_own():
    done = subprocess.run([sys.executable, "-m", "pytest", str(HERE / "nnsight_checks.py"), "-q", "-p",
                           "no:cacheprovider", "-p", "no:randomly", "-rfE"],
                          cwd=HERE.parent, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]
