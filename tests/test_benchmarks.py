"""The benchmark scripts' own logic, where it can run without their hardware."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

CLAIM = """\
- id: acc
  says: "accuracy"
  measure: accuracy
  expect: {at_least: 0}
"""


def test_gpu_bare_passes_use_each_group_s_own_prompt_set(hyp):
    import gpu

    from circuitcheck.files import loader as H
    from circuitcheck.session import Session

    session = Session()
    for n, length in ((40, 6), (60, 10)):
        session.add(H.load(hyp(CLAIM, prompts=f"{{generator: repeated_tokens, n: {n}, seed: 1, length: {length}}}",
                               name=f"p{n}.hyp.yaml")))
    shapes = sorted((ps.n, ps.seq_len) for _, ps in gpu.prompt_shapes(session))
    built = [H.build_prompts(g.loaded.path, g.prompts) for g in session.plan.groups.values()]
    assert shapes == sorted((ps.n, ps.seq_len) for ps in built) and len(shapes) == 2, shapes
