"""`--cc-prompt-seed N`: the same claims on fresh prompts (issue 22, item 17), and the script in
benchmarks/ that reruns the suite on many seeds and says which claims move."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from circuitcheck.files import loader as H

ROOT = Path(__file__).resolve().parents[1]
CLAIM = """\
- id: prev
  says: "a previous-token score"
  measure: {head_score: {head: L0H0, pattern: previous_token}}
  prompts: {generator: repeated_tokens, n: 20, seed: 5}
  expect: {at_least: 0}
"""


def test_a_prompt_seed_moves_every_generated_prompt_set(hyp, monkeypatch):
    path = hyp(CLAIM, prompts="{generator: repeated_tokens, n: 20}")
    monkeypatch.setattr(H, "PROMPT_SEED_SHIFT", 0)
    before = H.load(path)
    H.set_prompt_seed_shift(3)
    after = H.load(path)
    assert (before.spec.prompts.seed, after.spec.prompts.seed) == (0, 3)
    assert (before.spec.claims[0].prompts.seed, after.spec.claims[0].prompts.seed) == (5, 8)


def test_jsonl_data_keep_their_rows():
    tree = {"prompts": {"generator": "jsonl", "path": "rows.jsonl"},
            "claims": [{"under": {"patch": {"source": {"generator": "text", "seed": 2}}}}]}
    shifted = H.shift_seeds(tree, 4)
    assert shifted["prompts"] == tree["prompts"]
    assert shifted["claims"][0]["under"]["patch"]["source"]["seed"] == 6


def _seeds_script():
    spec = importlib.util.spec_from_file_location("seeds", ROOT / "benchmarks" / "seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_seed_check_names_the_claims_that_move(tmp_path):
    seeds = _seeds_script()

    def report(seed, verdict):
        case = {"label": "", "value": 0.3, "low": 0.2, "high": 0.4, "verdict": verdict}
        claims = [{"file": "h/a.hyp.yaml", "id": "steady", "expected": "x ≥ 0", "verdict": "pass", "cases": [case]},
                  {"file": "h/a.hyp.yaml", "id": "moves", "expected": "x ≥ 0.25", "verdict": verdict,
                   "cases": [case]}]
        p = tmp_path / f"seed-{seed}.json"
        p.write_text(json.dumps({"claims": claims}))
        return p

    by_seed = {0: seeds.verdicts(report(0, "pass")), 1: seeds.verdicts(report(1, "inconclusive"))}
    flagged = seeds.moved(by_seed)
    assert list(flagged) == ["a.hyp.yaml::moves"]
    assert flagged["a.hyp.yaml::moves"][1]["verdict"] == "inconclusive"
    assert seeds.seeds("0-3") == [0, 1, 2, 3] and seeds.seeds("2,5") == [2, 5]


def test_the_seed_check_shows_the_case_nearest_to_moving():
    """On a seed where every case passes, the case printed is the one whose interval lies least inside
    its region (`all`), most inside (`any`), or least outside (`none`), not the first case."""
    seeds = _seeds_script()

    def case(label, low, high, bounds):
        return {"label": label, "value": (low + high) / 2, "low": low, "high": high, "verdict": "pass",
                "bounds": bounds}

    at_least = [case("far", 0.95, 0.99, [0.9, None]), case("near", 0.905, 0.95, [0.9, None])]
    assert seeds._deciding({"quantifier": "all", "cases": at_least})["label"] == "near"
    assert seeds._deciding({"quantifier": "any", "cases": at_least})["label"] == "far"
    below = [case("clear", 0.80, 0.85, [0.91, None]), case("close", 0.88, 0.905, [0.91, None])]
    assert seeds._deciding({"quantifier": "none", "cases": below})["label"] == "close"
    at_most = [case("low", 0.01, 0.02, [None, 0.1]), case("edge", 0.05, 0.09, [None, 0.1])]
    assert seeds._deciding({"quantifier": None, "cases": at_most})["label"] == "edge"


def test_the_seed_check_says_what_the_baseline_compare_said(tmp_path):
    """Per seed: cases compared, how many by the old overlap rule, and the claims that drifted or flipped."""
    seeds = _seeds_script()
    two = {"test": "Δ in [-0.1, 0.1] at 0.99 per side, test of no change; two samples (300 and 300 prompts)"}
    old = {"test": "baseline without per-prompt values: the intervals do not overlap"}
    claims = [{"file": "h/a.hyp.yaml", "id": "steady", "baseline": {"drift": False, "flip": None, "cases": [two, old]}},
              {"file": "h/a.hyp.yaml", "id": "shifted", "baseline": {"drift": True, "flip": "pass -> fail",
                                                                     "cases": [two]}},
              {"file": "h/b.hyp.yaml", "id": "new", "baseline": None}]
    p = tmp_path / "seed-3.json"
    p.write_text(json.dumps({"claims": claims}))
    assert seeds.drift(p) == {"cases": 3, "overlap_rule": 1, "drifted": ["a.hyp.yaml::shifted"],
                              "flipped": ["a.hyp.yaml::shifted"]}
