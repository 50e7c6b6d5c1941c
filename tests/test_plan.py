"""Planning across files: claims that share a model and a prompt set share one clean run, and an
intervention used by several claims (in any file) runs once, stacked with the others."""
from __future__ import annotations

from circuitcheck import load
from circuitcheck.session import Options, Session

ABLATE_L1H0 = """
- id: {id}
  says: "mean-ablating L1H0 moves the loss"
  under: {{ablate: {{heads: [L1H0], method: mean}}}}
  measure: loss
  expect: {{change: {{between: [-100, 100]}}}}
"""
EACH_HEAD = """
- id: each-head
  says: "ablating each layer-1 head moves the accuracy by at most 1"
  for: {all: {each: [L1H0, L1H1, L1H2, L1H3]}}
  under: {ablate: {heads: $head, method: zero}}
  measure: accuracy
  expect: {drop: {at_most: 1}}
- id: attention
  says: "L0H1 attends somewhere from S2"
  measure: {attention: {head: L0H1, from: S2, to: S1}}
  expect: {at_least: 0}
"""


def passes(files, batch_size):
    s = Session(Options(batch_size=batch_size))
    loaded = [load(f) for f in files]
    for f in loaded:
        s.add(f)
    results = [s.result(f.path, lc.claim.id) for f in loaded for lc in f.claims]
    assert all(r.error is None for r in results), [r.error for r in results]
    return s.forward_passes(), results


def test_claims_of_many_files_share_the_clean_run_and_each_intervention(hyp, monkeypatch):
    from circuitcheck.runs import engine as runs

    a = hyp(ABLATE_L1H0.format(id="a") + EACH_HEAD, name="a.hyp.yaml")
    b = hyp(ABLATE_L1H0.format(id="b"), name="b.hyp.yaml")  # the same intervention as a's first claim
    n = 120  # prompts per set (the fixture's)
    # on a CPU (by default): 1 clean run + 1 clean run of the reference set the mean of L1H0 is taken
    # over (issue 22 item 1; shared by both files) + one pass for each of the 5 distinct interventions
    assert passes([a, b], batch_size=5 * n)[0] == 1 + 1 + 5
    monkeypatch.setattr(runs, "STACK_ON_CPU", True)  # as on a GPU:
    # 1 clean run + the reference run + 5 distinct interventions (mean L1H0, zero L1H0..L1H3) stacked in one pass
    assert passes([a, b], batch_size=5 * n)[0] == 1 + 1 + 1
    # two per pass: 3 passes for the 5 interventions
    assert passes([a, b], batch_size=2 * n)[0] == 1 + 1 + 3
    # a batch smaller than the prompt set: chunks of 60 prompts, 2 per run, none stacked
    assert passes([a, b], batch_size=n // 2)[0] == 2 * (1 + 1 + 5)


ATTENDS = """\
model: %s
prompts: {generator: max_of_list, n: 50, seed: 3}
claims:
  - id: attends
    says: "position 1 attends to position 0"
    measure: {attention: {head: L0H0, from: 1, to: 0}}
    expect: {at_least: 0}
"""


def test_files_loading_one_model_differently_do_not_share_its_runs(tmp_path):
    """zoo:max-of-list causal, and with `attention: bidirectional`, over one prompt set: in one
    session each file gets the values it gets alone (both once got the first file's)."""
    files = []
    for name, model in (("causal", "zoo:max-of-list"), ("both-ways", "{zoo: max-of-list, attention: bidirectional}")):
        files.append(tmp_path / f"{name}.hyp.yaml")
        files[-1].write_text(ATTENDS % model)

    def values(paths):
        s = Session(Options())
        for p in paths:
            s.add(load(p))
        return [s.result(load(p).path, "attends").cases[0].estimate.statistic for p in paths]

    alone = values(files[:1]) + values(files[1:])
    assert alone[0] != alone[1]  # row 1 sees position 2 onwards only when attention goes both ways
    assert values(files) == alone


def test_the_numbers_do_not_depend_on_batching(hyp):
    a = hyp(ABLATE_L1H0.format(id="a") + EACH_HEAD, name="a.hyp.yaml")
    _, big = passes([a], batch_size=10_000)
    _, small = passes([a], batch_size=7)
    for r, s in zip(big, small):
        for c, d in zip(r.cases, s.cases):
            assert abs(c.estimate.statistic - d.estimate.statistic) < 1e-5
            assert c.verdict == d.verdict


OV_NORM = """
- id: ov
  says: "L0H1's OV norms of three tokens are not ordered as the tokens"
  measure: {ov_norm: {head: L0H1, tokens: [3, 7, 9]}}
  expect: {order: {monotonic: false}}
"""


class Heard:
    """A progress listener that keeps what the session tells it."""

    def __init__(self):
        self.loads, self.counts = [], []

    def loading(self, model):
        self.loads.append(model)

    def ran(self, done, planned):
        self.counts.append((done, planned))


def test_progress_hears_each_planned_run_once_and_each_model_load(hyp):
    a = hyp(ABLATE_L1H0.format(id="a") + EACH_HEAD, name="a.hyp.yaml")
    b = hyp(ABLATE_L1H0.format(id="b"), name="b.hyp.yaml")
    c = hyp(OV_NORM, prompts="{generator: repeated_tokens, n: 30, seed: 5}", name="c.hyp.yaml")
    # Planned runs, by hand: the clean run (read by `attention`, and by every drop/change claim as
    # its baseline), mean-ablated L1H0 (both files: one run), zero-ablated L1H0..L1H3: 1 + 1 + 4. Not
    # counted: the reference set's clean run (where the mean comes from), and c's prompt set, which
    # no run is made over (ov_norm reads the weights alone).
    for batch_size in (10_000, 50):  # whole runs, and runs in chunks of 50 of the 120 prompts
        from circuitcheck import models

        models.forget(load(a).model_source)
        s = Session(Options(batch_size=batch_size))
        s.progress = heard = Heard()
        loaded = [load(f) for f in (a, b, c)]
        for f in loaded:
            s.add(f)
        results = [s.result(f.path, lc.claim.id) for f in loaded for lc in f.claims]
        assert all(r.error is None for r in results), [r.error for r in results]
        assert heard.counts == [(i, 6) for i in range(1, 7)], batch_size
        assert heard.loads == [loaded[0].model_source.describe()]
