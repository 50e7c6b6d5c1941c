"""Specificity: a passing claim re-judged with its heads swapped and its direction flipped."""
from __future__ import annotations

import pytest

from circuitcheck.judge import specificity as SP
from circuitcheck.session import Session

# On the tiny random model every head attends somewhere: a low bar passes for every head.
LOOSE_AND_TIGHT = """\
- id: loose
  says: "L0H1 puts some attention on the previous token"
  measure: {head_score: {head: L0H1, pattern: previous_token}}
  expect: {at_least: 0.0001}
- id: unlike-its-neighbours
  says: "L0H1's previous-token score exceeds what every other layer-0 head scores"
  measure: {head_score: {head: L0H1, pattern: previous_token}}
  expect: {at_least: %s}
"""


def _run(hyp, text):
    from circuitcheck import load

    path = hyp(text, prompts="{generator: repeated_tokens, n: 2000, seed: 1}")
    session = Session()
    loaded = load(path)
    session.add(loaded)
    return session, loaded


def test_mutants_swap_each_named_head_and_flip_the_direction():
    claim = {"id": "x", "says": "L0H1", "for": {"all": {"each": ["L0H1", "L0H3"]}},
             "measure": {"attention": {"head": "$head", "from": 1, "to": 0}}, "expect": {"at_least": 0.5}}
    heads = {m.what for m in SP.head_mutants(claim, 4)}
    assert heads == {"L0H1 -> L0H0", "L0H1 -> L0H2", "L0H3 -> L0H0", "L0H3 -> L0H2"}
    (flip,) = SP.direction_mutants(claim)
    assert flip.claim["expect"] == {"at_most": 0.5} and "any" in flip.claim["for"]  # De Morgan
    none = {**claim, "for": {"none": {"each": ["L0H1"]}}}
    assert SP.direction_mutants(none)[0].claim["for"] == {"any": {"each": ["L0H1"]}}
    assert SP.direction_mutants({**claim, "expect": {"about": 1, "tol": 0.1}}) == []


def _ranked_previous_token_heads(hyp) -> list[tuple[float, int]]:
    """(previous-token score, head) of the four layer-0 heads on the fixture's prompts, lowest first."""
    probe = "".join(f"""\
- id: h{h}
  says: "probe"
  measure: {{head_score: {{head: L0H{h}, pattern: previous_token}}}}
  expect: {{at_least: 0}}
""" for h in range(4))
    session, loaded = _run(hyp, probe)
    return sorted((session.result(loaded.path, f"h{h}").main.estimate.statistic, h) for h in range(4))


def test_a_claim_any_head_meets_is_flagged_and_one_that_singles_out_its_head_is_not(hyp):
    scores = _ranked_previous_token_heads(hyp)
    (second, _), (top, best) = scores[-2], scores[-1]
    claims = f"""\
- id: loose
  says: "L0H{best} puts some attention on the previous token"
  measure: {{head_score: {{head: L0H{best}, pattern: previous_token}}}}
  expect: {{at_least: 0.0001}}
- id: tight
  says: "L0H{best} scores above the midpoint between it and the next layer-0 head"
  measure: {{head_score: {{head: L0H{best}, pattern: previous_token}}}}
  expect: {{at_least: {(top + second) / 2}}}
"""
    session, loaded = _run(hyp, claims)
    loose, tight = SP.check(session, loaded)
    assert loose.verdict == "pass" and len(loose.survivors) == 3
    assert f"also passes with L0H{(best + 1) % 4} in place of L0H{best}: this claim does not single out L0H{best}" \
        in "\n".join(loose.lines())
    assert tight.verdict == "pass" and tight.mutants and not tight.survivors  # 3 heads and the flip, all killed


def test_the_pytest_option_fails_a_claim_that_does_not_single_out_its_head(pytester, hyp):
    path = hyp("""\
        - id: loose
          says: "L0H1 puts some attention on the previous token"
          measure: {head_score: {head: L0H1, pattern: previous_token}}
          expect: {at_least: 0.0001}
        """)
    pytester.runpytest(str(path), "-p", "no:cacheprovider").assert_outcomes(passed=1)
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider", "--cc-specificity")
    res.assert_outcomes(failed=1)
    assert "does not single out L0H1" in res.stdout.str()


def test_role_mutants_fill_each_role_with_each_other_candidate():
    claim = {"id": "x", "says": "s", "for": {"all": {"each": ["$top", "L0H2"]}},
             "measure": {"attention": {"head": "$head", "from": 1, "to": 0}}, "expect": {"at_least": 0.5}}
    bound, cands = {"top": "L0H1"}, {"top": ["L0H0", "L0H1", "L0H2", "L0H3"]}
    mutants = SP.role_mutants(claim, bound, cands)
    # L0H1 is the scan's choice and L0H2 is named already: two mutants, the role filled by L0H0 and L0H3
    assert [m.what for m in mutants] == ["$top: L0H1 -> L0H0", "$top: L0H1 -> L0H3"]
    assert mutants[0].claim["for"] == {"all": {"each": ["L0H0", "L0H2"]}}
    # the plain head L0H2 is swapped as before, with the role filled by its head and never swapped onto
    heads = SP.head_mutants(claim, 4, bound)
    assert [m.what for m in heads] == ["L0H2 -> L0H0", "L0H2 -> L0H3"]
    assert heads[0].claim["for"] == {"all": {"each": ["L0H1", "L0H0"]}}
    assert "also passes with L0H0 filling $top (the scan chose L0H1)" in SP.explain(mutants[0])


ROLE_CLAIMS = """\
- id: loose
  says: "the previous-token head puts some attention on the previous token"
  measure: {head_score: {head: $prev, pattern: previous_token}}
  expect: {at_least: 0.0001}
- id: tight
  says: "the previous-token head scores above the midpoint between it and the next layer-0 head"
  measure: {head_score: {head: $prev, pattern: previous_token}}
  expect: {at_least: %s}
"""


def test_a_role_bound_claim_any_candidate_meets_is_flagged(hyp):
    """A claim about the head a scan chose must fail when another candidate fills the role."""
    from circuitcheck import load

    roles = "roles:\n  prev: {best: {head_score: {head: $head, pattern: previous_token}}, among: layer 0}\n"
    probe = hyp("- id: p\n  says: p\n  for: {all: {each: [L0H0, L0H1, L0H2, L0H3]}}\n"
                "  measure: {head_score: {head: $head, pattern: previous_token}}\n  expect: record\n",
                prompts="{generator: repeated_tokens, n: 2000, seed: 1}", name="probe.hyp.yaml")
    session = Session()
    session.add(load(probe))
    scores = sorted(c.estimate.statistic for c in session.result(probe, "p").cases)
    path = hyp(ROLE_CLAIMS % ((scores[-1] + scores[-2]) / 2), prompts="{generator: repeated_tokens, n: 2000, seed: 1}",
               extra=roles)
    session = Session()
    loaded = load(path)
    session.add(loaded)
    loose, tight = SP.check(session, loaded)
    chosen = session.result(path, "loose").roles["prev"]
    assert loose.verdict == "pass" and {m.kind for m in loose.survivors} == {"role"} and len(loose.survivors) == 3
    assert f"(the scan chose {chosen}): this claim does not single out the head its scan chooses" \
        in "\n".join(loose.lines())
    assert tight.verdict == "pass" and len(tight.mutants) == 4 and not tight.survivors  # 3 candidates and the flip


def test_heads_inside_weight_expressions_are_swapped_too():
    """A weight-space claim names its head inside an expression (`OV[L2H0]`): the mutants swap it
    there (and only whole head names: L12H1 is not L2H1)."""
    from circuitcheck.judge import specificity as SP

    claim = {"id": "c", "says": "OV[L2H0]", "measure": {"cosine": {"a": "W_E[$t] @ OV[L2H0]", "b": "W_in[2][:, 12]"}},
             "under": {"ablate": {"heads": ["L12H1"]}}, "expect": {"at_most": -0.6}}
    assert SP.heads_named(claim) == ["L2H0", "L12H1"]
    mutants = {m.what: m.claim for m in SP.head_mutants(claim, 4)}
    assert mutants["L2H0 -> L2H3"]["measure"]["cosine"]["a"] == "W_E[$t] @ OV[L2H3]"
    assert mutants["L2H0 -> L2H3"]["says"] == "OV[L2H0]" and mutants["L2H0 -> L2H3"]["under"] == claim["under"]


# ---------------------------------------------------------------- issue 22, item 16
def test_an_inconclusive_mutant_is_not_killed(hyp):
    """A claim whose threshold sits on the next head's mean passes, and the mutant naming that head
    is inconclusive: the data do not show the claim singles out its head, so it is not killed."""
    scores = _ranked_previous_token_heads(hyp)
    (second, runner_up), (_, best) = scores[-2], scores[-1]
    claim = f"""\
- id: on-the-next-head
  says: "L0H{best} scores at least what the next layer-0 head scores on average"
  measure: {{head_score: {{head: L0H{best}, pattern: previous_token}}}}
  expect: {{at_least: {second}}}
"""
    session, loaded = _run(hyp, claim)
    (rep,) = SP.check(session, loaded)
    assert rep.verdict == "pass"
    verdicts = {m.what: m.verdict for m in rep.mutants}
    assert verdicts[f"L0H{best} -> L0H{runner_up}"] == "inconclusive"
    assert [m.what for m in rep.survivors] == [f"L0H{best} -> L0H{runner_up}"]
    assert f"is inconclusive, not failing, with L0H{runner_up} in place of L0H{best}" in "\n".join(rep.lines())


def test_layer_components_swap_for_other_layers_and_the_other_kind():
    claim = {"id": "c", "says": "mlp2", "measure": {"dla": {"component": "mlp2"}},
             "under": {"ablate": {"hook": "attn_out", "layer": 1, "method": "zero"}}, "expect": {"at_least": 0.25}}
    whats = {m.what for m in SP.component_mutants(claim, 3)}
    assert {"mlp2 -> mlp0", "mlp2 -> mlp1", "mlp2 -> attn2"} <= whats
    assert {"ablate attn_out layer 1 -> 0", "ablate attn_out layer 1 -> 2", "ablate attn_out -> mlp_out"} <= whats
    swapped = next(m for m in SP.component_mutants(claim, 3) if m.what == "ablate attn_out -> mlp_out")
    assert swapped.claim["under"][0]["ablate"] == {"hook": "mlp_out", "layer": 1, "method": "zero"}


class _Values:
    """A session stand-in whose values name the neuron a mutant claims about: neuron k gives k / 10."""

    def add(self, loaded, key=None):
        pass

    def values(self, loaded, claim, case):
        import numpy as np

        k = int(case.measure.dla.component.split("N")[1])
        return np.full(4, k / 10), None


def test_neuron_rivals_are_the_strongest_by_the_claims_measure(hyp_mlp):
    """Not an even grid: the neurons whose values come nearest to the claimed region (here at_least
    4.0, with neuron k at k/10: neurons 47 down to 40 are the nearest, 40..47 all pass)."""
    from circuitcheck import load
    from circuitcheck.files.loader import plain_tree

    path = hyp_mlp("""\
- id: n
  says: "neuron 3"
  measure: {dla: {component: L1N3}}
  expect: {at_least: 4.0}
""", prompts="{generator: repeated_tokens, n: 20, seed: 1}")
    loaded, tree = load(path), plain_tree(path)
    ((old, swaps),) = SP.neuron_swaps(tree["claims"][0], 48)
    assert old == "L1N3" and len(swaps) == 47
    rivals = SP.strongest(_Values(), loaded, tree, swaps, "n--rival")
    assert [m.what for m in rivals] == [f"L1N3 -> L1N{k}" for k in range(40, 48)]


class _TwoNeurons(_Values):
    """Values of a claim naming two neurons of a layer (`$n` over L1N3 and L1N5): the two named
    neurons at fixed values, every other neuron k at k / `scale`."""

    def __init__(self, named: dict, scale: float):
        self.named, self.scale = named, scale

    def values(self, loaded, claim, case):
        import numpy as np

        k = int(case.measure.dla.component.split("N")[1])
        return np.full(4, self.named.get(k, k / self.scale)), None


# at_least 4.0. `all`: L1N3 at 3 (1 short), L1N5 at 0 (4 short), neuron k at k/10. A rival swapping out
# L1N3 still has L1N5 4 short; one swapping out L1N5 is 1 short at worst: the L1N5 swaps rank first.
# `any`: L1N3 at 3, L1N5 at 3.95, neuron k at k/100 (3.53 short or more). A rival swapping out L1N3
# keeps L1N5 0.05 short; one swapping out L1N5 is 1 short at best: the L1N3 swaps rank first.
# Ranked by the first case alone (the old way) each would pick the other.
@pytest.mark.parametrize("quant, named, scale, expected", [("all", {3: 3.0, 5: 0.0}, 10, "L1N5"),
                                                          ("any", {3: 3.0, 5: 3.95}, 100, "L1N3")])
def test_neuron_rivals_are_ranked_over_every_case_by_the_quantifier(hyp_mlp, quant, named, scale, expected):
    from circuitcheck import load
    from circuitcheck.files.loader import plain_tree

    path = hyp_mlp(f"""\
- id: n
  says: "two neurons"
  for: {{{quant}: {{values: {{n: [L1N3, L1N5]}}}}}}
  measure: {{dla: {{component: $n}}}}
  expect: {{at_least: 4.0}}
""", prompts="{generator: repeated_tokens, n: 20, seed: 1}")
    loaded, tree = load(path), plain_tree(path)
    swaps = [m for _, rivals in SP.neuron_swaps(tree["claims"][0], 48) for m in rivals]
    rivals = SP.strongest(_TwoNeurons(named, scale), loaded, tree, swaps, "n--rival", k=4)
    assert {m.what.split(" -> ")[0] for m in rivals} == {expected}


def test_nearness_to_passing_follows_the_quantifier():
    """at_least 4 with case means 0 and 5: `all` is 4 short (the 0), `any` passes (the 5), `none`
    needs the 5 to fall by 1 to leave the region."""
    region = (4.0, float("inf"))
    assert [SP.nearness(region, [0.0, 5.0], q) for q in ("all", "any", "none")] == [4.0, 0.0, 1.0]


def test_the_negation_of_a_passing_all_claim_is_killed(hyp):
    """`all heads at_most T` passes; its De Morgan negation `any head at_least T` fails when every
    case's bound at the claim's level lies under T. T sits between the decisive head's upper bound at
    the level and at level / 4 (the Bonferroni level a pass of `any` needs), where the negation used
    to come back inconclusive."""
    heads = "[L0H0, L0H1, L0H2, L0H3]"
    probe = f"""\
- id: probe
  says: "probe"
  for: {{all: {{each: {heads}}}}}
  measure: {{head_score: {{head: $head, pattern: previous_token}}}}
  expect: {{at_most: 1}}
"""
    session, loaded = _run(hyp, probe)
    probed = session.result(loaded.path, "probe")
    cases, level = probed.cases, probed.level  # the file's one claim: judged at alpha
    top = max(cases, key=lambda c: c.bound.at(level).high)
    at_level, at_quarter = top.bound.at(level).high, top.bound.at(level / 4).high
    assert at_level < at_quarter
    threshold = (at_level + at_quarter) / 2
    session, loaded = _run(hyp, probe.replace("at_most: 1", f"at_most: {threshold}"))
    (rep,) = SP.check(session, loaded)
    assert rep.verdict == "pass"
    (flip,) = [m for m in rep.mutants if m.kind == "direction"]
    assert flip.claim["for"] == {"any": {"each": ["L0H0", "L0H1", "L0H2", "L0H3"]}}
    assert flip.verdict == "fail" and flip not in rep.survivors
