"""Streaming (Runs.stream): every value computed chunk by chunk as a run goes, each run dropped as
soon as it is measured, gives exactly the numbers of whole runs measured afterwards."""
from __future__ import annotations

import numpy as np
import pytest

from circuitcheck.files import loader as H
from circuitcheck import measures as M
from circuitcheck import prompts as P
from circuitcheck import session as S
from circuitcheck.runs import values as V
from circuitcheck.runs.plan import run_key
from circuitcheck.runs.engine import Runs
from circuitcheck.files.spec import Intervention, Measure

MEASURES = [Measure.model_validate(m) for m in (
    "accuracy", "loss", "prob", "logprob", "rank", "logit_diff",
    {"attention": {"head": "L1H0", "from": "S2", "to": "S1+1"}},
    {"head_score": {"head": "L0H1", "pattern": "previous_token"}},
    {"head_score": {"head": "L1H2", "pattern": "induction", "exclude_bos": True}},
    {"row_class": {"head": "L1H1", "behaviour": "induction", "rows": "S2..last", "mass": 0.5, "window": 1}},
    {"dla": {"component": "L1H0", "share": False}},  # a share of a total crossing 0 is an error (issue 22 item 12)
    {"dla": {"component": "embed", "share": False}},
)]
UNDERS = [(), *[(Intervention.model_validate(u),) for u in (
    {"ablate": {"heads": ["L1H0"], "method": "mean"}},
    {"ablate": {"heads": ["L0H1"], "method": "resample", "at": "S2"}},
    {"keep_only": {"heads": ["L0H0", "L1H1"], "method": "zero"}},
    {"scale_attention": {"head": "L1H3", "from": "S2", "to": "S1+1", "factor": 0.1}},
    {"patch": {"hook": "z", "layer": 0, "at": "S2+1",
               "source": {"generator": "repeated_tokens", "n": 16, "seed": 4, "length": 8}}},
)]]


def build(spec):
    return P.build(**spec.model_dump(exclude={"population"}))


@pytest.mark.parametrize("batch_size", [5, 64])  # chunks of 5 prompts (the last one short); runs stacked 4 a pass
def test_streamed_values_equal_whole_runs_exactly(tiny_model, batch_size, stacking):
    ps = P.repeated_tokens(n=16, seed=3, length=8)
    planned = {run_key(u): (u, {m.model_dump_json(): m for m in MEASURES}) for u in UNDERS}
    streaming = Runs(tiny_model, ps, 0, batch_size, source_prompts=build)
    streamed = streaming.stream(planned)
    assert not streaming.done  # nothing of a run outlives its chunk
    for values in streamed.values():  # arrays of their own, not views into a chunk's arrays
        assert values.base is None and values.flags.owndata and values.shape[0] == ps.n
    whole = Runs(tiny_model, ps, 0, batch_size, source_prompts=build)
    need = set().union(*(M.needs(m, tiny_model.cfg) for m in MEASURES))
    whole.run_many([(u, need) for u in UNDERS[1:]])  # stacked as the stream stacks them, where they fit
    for under in UNDERS:
        run = whole.run(under, need)
        for m in MEASURES:
            expected = M.compute(m, M.Run(run.logits, run.cache, ps, tiny_model))
            assert np.array_equal(streamed[(run_key(under), m.model_dump_json())], expected), (under, m)
    assert streaming.forward_passes <= whole.forward_passes


CLAIMS = """\
- id: acc
  says: "accuracy"
  measure: accuracy
  expect: {at_least: 0}
- id: ablated-loss
  says: "loss under ablation"
  under: {ablate: {heads: [L1H0], method: mean}}
  measure: loss
  expect: {rise: {at_least: -100}}
- id: scores
  says: "head scores under resampling"
  under: {ablate: {heads: [L0H0], method: resample}}
  measure: {head_score: {head: L1H1, pattern: induction}}
  expect: {at_least: 0}
- id: attends
  says: "attention"
  measure: {attention: {head: L1H0, from: S2, to: S1+1}}
  expect: {at_least: 0}
"""


def answers(path, batch_size):
    session = S.Session(S.Options(batch_size=batch_size))
    loaded = H.load(path)
    session.add(loaded)
    results = [session.result(loaded.path, lc.claim.id) for lc in loaded.claims]
    return session, [(r.verdict, [(c.estimate.statistic, c.estimate.low, c.estimate.high) for c in r.cases])
                     for r in results]


def test_a_session_keeps_no_run_and_gives_the_numbers_of_whole_runs(hyp, monkeypatch):
    path = hyp(CLAIMS)
    session, streamed = answers(path, 50)  # 120 prompts in chunks of 50
    assert all(not runs.done for runs in session.runs.values())
    assert all(not left for left in session.streamed.values())  # every value was asked for
    monkeypatch.setattr(V, "streamable", lambda m: False)  # every value from a whole run, as before streaming
    whole_session, whole = answers(path, 50)
    assert whole == streamed and any(runs.done for runs in whole_session.runs.values())


DLA_CLAIMS = CLAIMS + """\
- id: dla-logit
  says: "L1H0's logit (a share is a ratio of means over the run: not streamed)"
  measure: {dla: {component: L1H0, share: false}}
  expect: {at_least: -100}
- id: dla-diff-ablated
  says: "the embedding toward the answer against S1's token, L0H1 ablated"
  under: {ablate: {heads: [L0H1], method: mean}}
  measure: {dla: {component: embed, toward: {diff: [correct, "tok[S1]"]}, share: false, at: S2}}
  expect: {at_least: -100}
"""


def test_dla_streams_unless_it_averages_over_the_run(hyp, monkeypatch):
    centred = Measure.model_validate({"dla": {"component": "L1H0", "centre": "all"}})
    assert V.streamable(Measure.model_validate({"dla": {"component": "L1H0", "share": False}}))
    assert not V.streamable(centred) and not V.streamable(Measure.model_validate({"dla": {"component": "L1H0"}}))
    path = hyp(DLA_CLAIMS)
    session, streamed = answers(path, 50)  # 120 prompts in chunks of 50
    assert all(not runs.done for runs in session.runs.values())  # dla too: no run kept
    monkeypatch.setattr(V, "streamable", lambda m: False)
    _, whole = answers(path, 50)
    assert whole == streamed
