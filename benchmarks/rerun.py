"""A cached rerun of `pytest hypotheses/`: this checkout against earlier commits, side by side.

    python benchmarks/rerun.py [--against REV ...] [--repeats 7]

Each side is a clone of this repository at its commit (this checkout's own files for `HEAD+`),
run with this interpreter and that clone's `src/` first on the path, in its own folder so that
each keeps its own `.pytest_cache`. Every side runs `pytest hypotheses/ -q` once to fill its
cache, then the sides take turns (A B C A B C ...) for `--repeats` rounds, so that load from
other processes hits them alike. Printed per side: wall and CPU seconds of the whole process
(interpreter start to exit), min and median, and whether torch was imported (it must not be on a
rerun). Every run must end with the same "N passed" line as the side's first run.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PROBE = ("import sys, pytest; rc = pytest.main(['hypotheses/', '-q']); "
         "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")


def side(rev: str, into: Path) -> Path:
    """A clone of this repository at `rev` in `into` (`HEAD+`: this checkout's working tree)."""
    subprocess.run(["git", "clone", "-q", "--shared", str(C.REPO), str(into)], check=True)
    if rev == "HEAD+":
        for name in ("src", "hypotheses"):
            shutil.rmtree(into / name)
            shutil.copytree(C.REPO / name, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
        subprocess.run(["git", "-C", str(into), "checkout", "-q", rev], check=True)
    shared = C.REPO.parent / "shared"  # some claims read ../shared beside the checkout
    if shared.exists() and not (into.parent / "shared").exists():
        (into.parent / "shared").symlink_to(shared)
    return into


def run(folder: Path) -> tuple[float, float, str, bool]:
    env = dict(os.environ, PYTHONPATH=str(folder / "src"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    lines = [line for line in res.stdout.splitlines() if " passed" in line or " failed" in line]
    return wall, cpu, lines[-1].split(" in ")[0] if lines else res.stdout[-500:], "TORCH True" in res.stdout


def main() -> int:
    ap = C.parser(__doc__)
    ap.add_argument("--against", action="append", default=[], help="an earlier commit (repeatable)")
    ap.set_defaults(repeats=7)
    args = ap.parse_args()
    revs = [*args.against, "HEAD+"]
    tmp = Path(tempfile.mkdtemp(prefix="cc-rerun-"))
    folders = {rev: side(rev, tmp / "sides" / f"side{i}") for i, rev in enumerate(revs)}
    first = {rev: run(folder)[2] for rev, folder in folders.items()}  # fills each side's cache
    times: dict[str, list] = {rev: [] for rev in revs}
    load = os.getloadavg()
    for _ in range(args.repeats):
        for rev, folder in folders.items():
            wall, cpu, outcome, torch = run(folder)
            if outcome != first[rev]:
                raise SystemExit(f"{rev}: {outcome!r} on a rerun, {first[rev]!r} on the first run")
            times[rev].append((wall, cpu, torch))
    rows = []
    for rev, t in times.items():
        walls, cpus = sorted(w for w, _, _ in t), sorted(c for _, c, _ in t)
        rows.append([rev, first[rev], f"{walls[0]:.2f}", f"{walls[len(walls) // 2]:.2f}", f"{cpus[0]:.2f}",
                     f"{cpus[len(cpus) // 2]:.2f}", "yes" if any(x for _, _, x in t) else "no"])
    print(f"machine: {C.machine()}; load average {load} before the rounds, {os.getloadavg()} after; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    print(C.table(rows, ["side", "outcome", "wall min s", "wall median s", "CPU min s", "CPU median s", "torch"]))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
