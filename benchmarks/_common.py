"""Helpers shared by the benchmark scripts (not part of circuitcheck, not part of the test suite).

Each benchmark script puts this folder on `sys.path` itself (it is the script's own folder), so
`python benchmarks/NAME.py` works from the repository root without installing anything else.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def pin_threads(default: int = 1) -> int:
    """Thread count for torch and BLAS, from `--threads N` on the command line (default 1).

    Call before numpy or torch is imported. One thread by default: on a small shared machine
    (2 cores, other processes training models) a multi-threaded torch or OpenBLAS stalls whenever
    a core is taken, which turns a 2 s measurement into 30 s outliers. Both sides of every
    comparison run in the same process with the same setting."""
    import sys

    n = default
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = int(sys.argv[i + 1])
        elif a.startswith("--threads="):
            n = int(a.split("=", 1)[1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def parser(doc: str):
    """The command line every benchmark shares: --repeats and --threads (see pin_threads)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side; the fastest is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    return ap


def start(threads: int) -> None:
    set_torch_threads(threads)
    print(f"machine: {machine()}")


ZOO = REPO / "src" / "circuitcheck" / "zoo" / "models"


def timed(fn, repeats: int = 3, warmup: int = 1):
    """(fastest seconds, every timing, the last return value) of `repeats` calls after `warmup` calls.
    The fastest, not the median: on a shared machine other processes only ever add time."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), times, out


def interleaved(fns: dict, repeats: int = 3, warmup: int = 1) -> dict:
    """Time several functions side by side, alternating A B A B ..., so that load from other
    processes on the machine hits every side alike. Returns name -> (fastest, timings, last value)."""
    last = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            last[name] = fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {name: (min(ts), ts, last[name]) for name, ts in times.items()}


def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(c) for c in r] for r in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.2f} at the start")


def load_bridge(config: dict, weights: Path | None = None):
    """A TransformerLens 4.3 native bridge, built by hand the way a notebook would build it."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_native(TransformerBridgeConfig(**config))
    if weights is not None:
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=True)
        assert not missing and not unexpected
    model.eval()
    return model


def zoo_bridge(name: str):
    config = json.loads((ZOO / name / "config.json").read_text())
    return load_bridge(config.get("config", config), ZOO / name / "model.safetensors")


class PassCounter:
    """Counts the forward passes of the hand-written references, and the tokens they process."""

    def __init__(self):
        self.n = 0
        self.tokens = 0

    def __call__(self, tokens=None):
        self.n += 1
        if tokens is not None:  # a torch tensor or a numpy array
            self.tokens += int(tokens.numel() if hasattr(tokens, "numel") else tokens.size)


def count_tokens(model, counter: dict):
    """Wrap a model instance's run_with_hooks so that `counter["tokens"]` adds up the tokens of
    every batch it runs (circuitcheck's passes all go through run_with_hooks)."""
    if getattr(model, "_bench_counter", None) is counter:
        return model
    original = model.run_with_hooks

    def counted(tokens, *a, **k):
        counter["tokens"] += int(tokens.numel())
        return original(tokens, *a, **k)

    model.run_with_hooks = counted
    model._bench_counter = counter
    return model


def fmt_times(ts) -> str:
    return "[" + ", ".join(f"{t:.2f}" for t in ts) + "]"


def full_passes():
    """Within: every pass of circuitcheck runs from block 0, as before intervened passes started at
    their first intervened block (for timing both ways in one process)."""
    from unittest import mock

    from circuitcheck.runs import engine as runs

    return mock.patch.object(runs, "block_output", lambda model: None)


def block_work(session) -> tuple[int, int]:
    """(prompts x blocks computed, prompts x blocks skipped) by every pass of a session."""
    return (sum(r.blocks_run for r in session.runs.values()), sum(r.blocks_skipped for r in session.runs.values()))


def block_line(session) -> str:
    run, skipped = block_work(session)
    return (f"blocks computed (prompts x blocks) {run:,} of {run + skipped:,}: {skipped:,} skipped "
            f"({100 * skipped / max(run + skipped, 1):.0f}%)")
