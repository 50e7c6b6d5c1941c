"""Text prompts through a model's own tokenizer: templates with `{SLOT}`s, tokenised at collection.

    prompts:
      generator: text
      template: "When {IO} and {S} went to the {PLACE}, {S} gave a {OBJECT} to"
      slots: {IO: [Mary, John, ...], S: [Mary, John, ...], PLACE: [store, park], OBJECT: [drink, ball]}
      answer: IO                # a slot (or a literal word) predicted at the last position
      counterfactual: S         # the token a logit difference compares the answer against

The tokenizer is the model's `tokenizer.json` (a zoo model's directory, a local Hugging Face
directory, or `tokenizer: PATH`), read with the `tokenizers` library only: no torch, no
transformers. The model's BOS token is prepended (from `tokenizer_config.json`), unless the
tokenizer's own post-processor already adds it. Each slot value must be exactly one token, so
that a slot names one position; every slot occurrence is a named position (`S`, `S#2`, `IO`),
and `end` is the last token. `row` is the same tokenisation for one text (a JSONL row), `encode`
for one text without slots.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from .base import PromptError, PromptSet, fill_slots, finish, slot_values

SLOT = re.compile(r"\{(\w+)\}")


def tokenizer_files(path) -> tuple[Path, Path]:
    """The `tokenizer.json` named by `path` (the file, or a directory holding it) and the
    `tokenizer_config.json` beside it: all a text prompt set reads of the model."""
    p = Path(path)
    return (p / "tokenizer.json", p / "tokenizer_config.json") if p.is_dir() else (p, p.parent / "tokenizer_config.json")


@functools.lru_cache(maxsize=16)
def load_tokenizer(path: str):
    """The `tokenizers.Tokenizer` in `path` (a `tokenizer.json`, or a directory holding one)."""
    from tokenizers import Tokenizer

    file = tokenizer_files(path)[0]
    if not file.exists():
        raise PromptError(f"no tokenizer at {str(file)!r}",
                          "text prompts need the model's tokenizer.json: a zoo or local Hugging Face model "
                          "directory, or `tokenizer: PATH`")
    _readable(file, MAX_TOKENIZER_BYTES)
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the tokenizers library's own words: a Rust error naming the JSON defect
        raise PromptError(f"{file.name} at {str(file)!r} is not a tokenizer the tokenizers library reads: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                          "save it with `tokenizer.save(\"tokenizer.json\")` (transformers: "
                          "`save_pretrained`), or point `tokenizer:` at a good one") from None


MAX_TOKENIZER_BYTES = 1 << 30  # the largest tokenizer.json in use is tens of MB
MAX_CONFIG_BYTES = 16 << 20


def _readable(file: Path, limit: int) -> None:
    """A regular file of at most `limit` bytes, or a PromptError: a FIFO would hang the read and
    /dev/zero fill memory."""
    import stat

    st = file.stat()
    if not stat.S_ISREG(st.st_mode):
        raise PromptError(f"{str(file)!r} is not a regular file (a directory, device, pipe or socket)",
                          "the tokenizer's files must be regular files")
    if st.st_size > limit:
        raise PromptError(f"{str(file)!r} is {st.st_size} bytes, over the {limit} a tokenizer file may have",
                          "check that this is the model's tokenizer")


def _tokenizer_config(config: Path) -> dict:
    _readable(config, MAX_CONFIG_BYTES)
    try:
        data = json.loads(config.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise PromptError(f"{config.name} at {str(config)!r} is not JSON: {str(exc)[:200]}",
                          "fix or delete it (it is read only for the BOS token)") from None
    if not isinstance(data, dict):
        raise PromptError(f"{config.name} at {str(config)!r} is a JSON {type(data).__name__}, not an object",
                          "fix or delete it (it is read only for the BOS token)")
    return data


@functools.lru_cache(maxsize=16)
def bos_id(path: str) -> int | None:
    """The BOS token id the model expects, from `tokenizer_config.json` beside the tokenizer."""
    config = tokenizer_files(path)[1]
    if not config.exists():
        return None
    bos = _tokenizer_config(config).get("bos_token")
    if isinstance(bos, dict):  # older transformers write {"content": "<s>", ...}
        bos = bos.get("content")
    if bos is not None and not isinstance(bos, str):
        raise PromptError(f"bos_token in {str(config)!r} is {bos!r}, not a token", "write the BOS token's text, e.g. \"<s>\"")
    return None if bos is None else load_tokenizer(path).token_to_id(bos)


def encode(path: str | Path, text: str, prepend_bos: bool = True) -> list[int]:
    """Token ids of `text` as the model sees them: BOS first (when the model has one), then the text."""
    path = str(path)
    ids = load_tokenizer(path).encode(text).ids
    bos = bos_id(path) if prepend_bos else None
    return ids if bos is None or ids[:1] == [bos] else [bos] + ids


@functools.lru_cache(maxsize=16)
def unk_id(path: str) -> int | None:
    """The unknown-word token (word-level and BPE models with one), which no prompt should contain."""
    unk = getattr(load_tokenizer(path).model, "unk_token", None)
    return None if unk is None else load_tokenizer(path).token_to_id(unk)


@functools.lru_cache(maxsize=8192)  # a JSONL file's rows repeat the same few words and texts
def one_token(path: str, value: str, slot: str, leading: str = "", label: str | None = None) -> int:
    """The single token id of a slot value (with the whitespace before it), or a PromptError
    (`label` names the value in it: `slot S value` by default)."""
    enc = load_tokenizer(path).encode(leading + str(value), add_special_tokens=False)
    if len(enc.ids) != 1 or enc.ids[0] == unk_id(path):
        raise PromptError(
            f"{label or f'slot {slot} value'} {value!r} is not one token of the model's vocabulary: "
            f"it tokenises as {enc.tokens}",
            "each slot value must be exactly one known token: pick values that tokenise to one token, or drop this one",
            param=("slots", slot) if slot not in ("answer", "counterfactual") else (slot,),
        )
    return enc.ids[0]


@functools.lru_cache(maxsize=8192)
def _literal(path: str, text: str) -> tuple[int, ...]:
    """Token ids of a template's fixed text; a word the model does not know is an error, not <unk>."""
    enc = load_tokenizer(path).encode(text, add_special_tokens=False)
    unknown = [text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets) if i == unk_id(path)]
    if unknown:
        raise PromptError(f"words {unknown} of the text are not in the model's vocabulary (they tokenise as unknown)",
                          "use words the model's tokenizer knows", param=("template",))
    return tuple(enc.ids)


@functools.lru_cache(maxsize=8192)
def _pieces(template: str) -> tuple:
    """The template as ("text", literal) and ("slot", name, leading whitespace) pieces."""
    out, at = [], 0
    for m in SLOT.finditer(template):
        literal = template[at:m.start()]
        lead = literal[len(literal.rstrip()):]  # BPE tokenizers fold the space into the next word
        if literal.rstrip():
            out.append(("text", literal.rstrip()))
        out.append(("slot", m[1], lead))
        at = m.end()
    if template[at:]:
        out.append(("text", template[at:]))
    return tuple(out)


def text(n: int, seed: int, template: str | list[str], slots: dict[str, list], answer: str,
         counterfactual: str | None = None, tokenizer: str | None = None, prepend_bos: bool = True,
         distinct: bool = True) -> PromptSet:
    """IOI-style text prompts: `template` with `{SLOT}`s filled at random, tokenised by the model.

    Several templates may be given as a list; each prompt draws one, and they must tokenise to the
    same length. `answer` and `counterfactual` are slot names or literal words; the answer is
    predicted at the last token (`end`).
    """
    if tokenizer is None:
        raise PromptError("the text generator needs a tokenizer",
                          "use a model with a tokenizer.json (zoo:ioi, a local hf: directory) or give `tokenizer: PATH`")
    templates = [template] if isinstance(template, str) else list(template)
    rng = np.random.default_rng(seed)
    words = {str(v): str(v) for values in slots.values() for v in slot_values(values)}  # words stay words
    draws = fill_slots(rng, n, slots, distinct, words)
    which = rng.integers(len(templates), size=n)
    parts = [_tokenise_template(tokenizer, t, slots, draws, prepend_bos, n) for t in templates]
    if len({p[0].shape[1] for p in parts}) != 1:
        lengths = {t: p[0].shape[1] for t, p in zip(templates, parts)}
        raise PromptError(f"templates tokenise to different lengths {lengths}",
                          "give templates of the same token length (or one template per prompt set)", param=("template",))
    tokens = np.stack([parts[w][0][i] for i, w in enumerate(which)])
    names = parts[0][1].keys()
    if any(p[1].keys() != names for p in parts):
        raise PromptError("templates name different slots", "every template must use the same slots")
    positions = {k: np.array([parts[w][1][k] for w in which]) for k in names}
    positions["end"] = np.full(n, tokens.shape[1] - 1)
    end = positions["end"]
    ans = _column(tokenizer, answer, draws, n, "answer")
    counter = None if counterfactual is None else _column(tokenizer, counterfactual, draws, n, "counterfactual")
    ps = finish(tokens, positions, end, ans, "text", counter, tokenizer=str(tokenizer))
    if len(templates) > 1:  # which template each prompt came from: `where:` and `clusters:` read it
        ps.fields["template"] = np.array(which.tolist(), dtype=object)
    return ps


def row(tokenizer, text: str, slots: dict, prepend_bos: bool = True) -> tuple[list[int], dict[str, int]]:
    """One text with its `{SLOT}`s filled from `slots` (a JSONL row): the token ids the model sees
    (BOS first) and the named slot positions (`S`, `S#2`), checked as the generator checks them."""
    used = set(SLOT.findall(text))
    for name in sorted(used - set(slots)):
        raise PromptError(f"the text has {{{name}}} and `slots` gives it no value",
                          f'add "{name}": "word" to the row\'s `slots`', param=("text",))
    for name in sorted(set(slots) - used):
        raise PromptError(f"slot {name} is not in the text", f"write {{{name}}} where it goes, or drop the slot",
                          param=("slots", name))
    draws = {k: np.array([str(v)], dtype=object) for k, v in slots.items()}
    tokens, positions = _tokenise_template(tokenizer, text, slots, draws, prepend_bos, 1)
    return tokens[0].tolist(), {k: int(v) for k, v in positions.items()}


def _tokenise_template(tokenizer, template, slots, draws, prepend_bos, n):
    """[n, seq] token ids for one template, and its named slot positions."""
    for name in SLOT.findall(template):
        if name not in slots:
            raise PromptError(f"template slot {{{name}}} has no values", f"add `{name}: [...]` under `slots`",
                              param=("template",))
    bos = bos_id(str(tokenizer)) if prepend_bos else None
    cols, positions, seen = ([np.full(n, bos)] if bos is not None else []), {}, {}
    for piece in _pieces(template):
        if piece[0] == "text":
            ids = _literal(str(tokenizer), piece[1])
            cols += [np.full(n, i) for i in ids]
            continue
        _, name, lead = piece
        ids = {v: one_token(str(tokenizer), v, name, lead) for v in set(draws[name])}
        seen[name] = seen.get(name, 0) + 1
        positions[name if seen[name] == 1 else f"{name}#{seen[name]}"] = len(cols)
        cols.append(np.array([ids[v] for v in draws[name]]))
    tokens = np.stack(cols, axis=1).astype(np.int64)
    _check_whole(tokenizer, template, draws, tokens, bos is not None)
    return tokens, positions


def _check_whole(tokenizer, template, draws, tokens, with_bos):
    """Slot by slot must tokenise as the whole sentence does, or positions would name the wrong tokens."""
    texts = [SLOT.sub(lambda m: str(draws[m[1]][i]), template) for i in range(tokens.shape[0])]
    whole = load_tokenizer(str(tokenizer)).encode_batch(texts, add_special_tokens=False)
    for i, enc in enumerate(whole):
        if enc.ids != tokens[i, int(with_bos):].tolist():
            raise PromptError(f"template {template!r} tokenises differently as a whole sentence ({enc.tokens}) "
                              f"than slot by slot, in prompt {i}: {texts[i]!r}",
                              "put spaces or punctuation around each {SLOT} so that a slot value is its own token",
                              param=("template",))


def _column(tokenizer, what: str, draws, n: int, field: str) -> np.ndarray:
    """One token per prompt: a slot's drawn value, or a literal word (with a leading space for BPE)."""
    if what in draws:
        lead = " " if _needs_space(str(tokenizer)) else ""
        return np.array([one_token(str(tokenizer), v, what, lead) for v in draws[what]])
    return np.full(n, one_token(str(tokenizer), what, field, " " if _needs_space(str(tokenizer)) else ""))


@functools.lru_cache(maxsize=16)
def _needs_space(path: str) -> bool:
    """Whether words inside a sentence carry their space (GPT-2 BPE: "Ġword"), as answers do."""
    tok = load_tokenizer(path)

    def ids(text):
        return tok.encode(text, add_special_tokens=False).ids

    # a word after a space tokenises differently from the word alone (GPT-2 BPE); a word-level or
    # SentencePiece tokenizer gives both the same tokens
    return ids("a b")[len(ids("a")):] != ids("b")
