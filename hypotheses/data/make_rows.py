"""Writes the JSONL prompt files of induction_jsonl.hyp.yaml (and the copies its false twins read):

    python hypotheses/data/make_rows.py

induction_rows.jsonl: `BOS s1..sL` then either the same segment again (category `repeat`) or a
shuffle of it (`shuffled`), L from 5 to 12, so rows have different lengths (the file pads them on
the left). Targets: the next token at the first three positions of the second half whose next
token is in the row, each with a counterfactual (the token that followed in the first half, for
shuffles; a token absent from the row, for repeats). induction_first_token.jsonl: the same kind of
rows with one target read at BOS (position 0): the first segment token, which nothing before it
predicts.

ioi_rows.jsonl (for ioi_jsonl.hyp.yaml, on `zoo:ioi`): text rows, as a researcher's IOI data set
comes: one sentence a row, drawn from zoo:ioi's 6 training sentences and its held-out one, each in
ABBA or BABA order, so rows have different lengths (padded on the right); the slots name the
positions (IO, S, S#2, PLACE, OBJECT, end), the answer and its counterfactual are words, and the
fields say which sentence, which order and which split a row is.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TWINS = HERE.parents[1] / "tests" / "twins" / "data"


def rows(seed: int, n: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(5, 13))
        seg = rng.choice(np.arange(1, 64), size=length, replace=False)
        category = "repeat" if i % 2 == 0 else "shuffled"
        second = seg if category == "repeat" else rng.permutation(seg)
        tokens = [0, *seg.tolist(), *second.tolist()]
        unused = [t for t in range(1, 64) if t not in seg]
        targets = []
        for j in range(3):
            at = length + 1 + j  # second half, token j; the next token is second[j + 1]
            follows = {int(a): int(b) for a, b in zip(seg[:-1], seg[1:])}.get(int(second[j]))
            cf = follows if category == "shuffled" and follows is not None and follows != second[j + 1] \
                else int(rng.choice(unused))
            targets.append({"at": at, "token": int(second[j + 1]), "counterfactual": cf})
        out.append({"tokens": tokens, "targets": targets, "positions": {"S1": 1, "S2": length + 1},
                    "fields": {"category": category, "length": length}})
    return out


def first_token(seed: int, n: int) -> list[dict]:
    return [{"tokens": r["tokens"], "answer": r["tokens"][1], "at": 0, "fields": r["fields"]} for r in rows(seed, n)]


def ioi_rows(seed: int, n: int) -> list[dict]:
    from circuitcheck.zoo.ioi import HELD_OUT, NAMES, OBJECTS, PLACES, SENTENCES

    rng = np.random.default_rng(seed)
    sentences = [(s, "train") for s in SENTENCES] + [(s, "held-out") for s in HELD_OUT]
    out = []
    for _ in range(n):
        k = int(rng.integers(len(sentences)))
        sentence, split = sentences[k]
        order = "BABA" if rng.integers(2) else "ABBA"  # BABA: IO first, as zoo.ioi.templates names them
        first, second = ("{IO}", "{S}") if order == "BABA" else ("{S}", "{IO}")
        io, s = (str(x) for x in rng.choice(NAMES, size=2, replace=False))
        out.append({"text": sentence.replace("{A}", first).replace("{B}", second),
                    "slots": {"IO": io, "S": s, "PLACE": str(rng.choice(PLACES)), "OBJECT": str(rng.choice(OBJECTS))},
                    "answer": io, "counterfactual": s,
                    "fields": {"sentence": k, "order": order, "split": split}})
    return out


def write(name: str, data: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in data)
    for folder in (HERE, TWINS):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


if __name__ == "__main__":
    write("induction_rows.jsonl", rows(seed=0, n=400))
    write("induction_first_token.jsonl", first_token(seed=1, n=100))
    write("ioi_rows.jsonl", ioi_rows(seed=0, n=400))
