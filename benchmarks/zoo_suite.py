"""The shipped claims (`hypotheses/`, the zoo models) answered with intervened passes starting at
their first intervened block, and with every pass from block 0, side by side.

    python benchmarks/zoo_suite.py [--repeats 3]

One `Session` answers every claim of every file (no value cache), as `pytest hypotheses/
--cc-cache=off` does; the measures `hypotheses/conftest.py` registers are registered first. Printed:
the fastest wall time of each side, its forward passes, the blocks its passes computed (prompts x
blocks) and skipped, and whether every claim's statistic and bounds agree between the sides.
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads()
HYPOTHESES = C.REPO / "hypotheses"


def register_measures() -> None:
    spec = importlib.util.spec_from_file_location("hypotheses_conftest", HYPOTHESES / "conftest.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def answers(files, full: bool):
    """(session, every claim's (verdict, [(statistic, low, high) per case]))."""
    from circuitcheck.session import Options, Session

    with C.full_passes() if full else contextlib.nullcontext():
        session = Session(Options())
        for loaded in files:
            session.add(loaded)
        got = []
        for loaded in files:
            for lc in loaded.claims:
                r = session.result(loaded.path, lc.claim.id)
                got.append((r.verdict, [(c.estimate.statistic, c.estimate.low, c.estimate.high) for c in r.cases]))
    return session, got


def main():
    args = C.parser(__doc__).parse_args()
    C.start(THREADS)
    t0 = time.perf_counter()
    import circuitcheck

    register_measures()
    files = [circuitcheck.load(p) for p in sorted(HYPOTHESES.glob("*.hyp.yaml"))]
    answers(files, full=False)  # warm-up: models loaded, every code path run once
    timing = C.interleaved({"late": lambda: answers(files, False), "full": lambda: answers(files, True)},
                           repeats=args.repeats, warmup=0)
    (late, late_got), (full, full_got) = timing["late"][2], timing["full"][2]
    n_claims = sum(len(f.claims) for f in files)
    print(f"{n_claims} claims in {len(files)} files; fastest of {args.repeats}\n")
    rows = [[label, f"{timing[k][0]:.2f}", s.forward_passes(), C.block_line(s)]
            for k, label, s in (("full", "every pass from block 0", full),
                                ("late", "intervened passes from their first block", late))]
    print(C.table(rows, ["", "seconds", "forward passes", "blocks"]))
    print(f"\nevery claim's verdict, statistic and bounds equal between the sides: {late_got == full_got}")
    print("all timings (s): " + "; ".join(f"{k} {C.fmt_times(v[1])}" for k, v in timing.items()))
    print(f"[{time.perf_counter() - t0:.0f} s in all]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
