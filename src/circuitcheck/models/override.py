"""`--cc-model REF=SOURCE`: run a file's claims on another model without editing the file.

REF names a model reference as the files write it: `zoo:max-of-list`, `hf:gpt2`,
`factory:NAME`, or the config/weights path of a file's `native:` model. SOURCE is any form a file
accepts (`zoo:NAME`, `hf:NAME`, `factory:NAME`) or a plain path:

- a directory with a TransformerLens-native `config.json` (a zoo card or bare config) and
  `model.safetensors` (or `model.pt`), as `circuitcheck zoo train --out DIR` writes;
- a Hugging Face directory (`config.json` with `model_type`), loaded through `boot_transformers`;
- a weights file (`.safetensors`/`.pt`) with a native `config.json` beside it.

Several sources, comma-separated or as a glob (`REF=ckpts/step-*`), make a checkpoint series:
every claim runs on each, as `claim[step-400]`. Claim ids and JUnit names stay those of the file
(plus the checkpoint name for a series). Parsing needs no torch.
"""
from __future__ import annotations

import dataclasses
import glob
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from .. import models

WEIGHT_NAMES = ("model.safetensors", "model.pt", "model.pth")
MAX_CHECKPOINTS = 500  # a series runs every claim on each: a glob that matches more is a mistake, not a series


class OverrideError(ValueError):
    """A `--cc-model` value that cannot name a model; the message says what to write."""


@dataclass(frozen=True)
class Checkpoint:
    name: str  # "" for a single override; the directory or file stem in a series
    source: models.ModelSource
    dims: tuple  # (n_layers, n_heads) where known without torch


@dataclass(frozen=True)
class Override:
    ref: str
    checkpoints: tuple[Checkpoint, ...]

    @property
    def series(self) -> bool:
        return len(self.checkpoints) > 1


def parse(text: str) -> Override:
    ref, sep, value = text.partition("=")
    ref, value = ref.strip(), value.strip()
    if not sep or not ref or not value:
        raise OverrideError(f"--cc-model {text!r}: write REF=SOURCE, e.g. zoo:max-of-list=runs/seed1")
    paths = _expand(value)
    if len(paths) == 1:
        one = Checkpoint("", *source(paths[0]))
        _check_weights(one.source)
        return Override(ref, (one,))
    return Override(ref, tuple(Checkpoint(n, *source(p)) for n, p in zip(names(paths), paths)))


def _check_weights(src: models.ModelSource) -> None:
    """A native model's weights read as far as their header and checked against its config, as a
    file's own `model:` is at collection: a truncated or foreign file is refused before the run."""
    from . import model_files

    if src.kind != "native" or not src.weights:
        return
    try:
        shapes = model_files.weight_shapes(Path(src.weights))
        if shapes:
            model_files.check_dims(models.read_config(Path(src.ref)), shapes)
    except model_files.ModelFileError as exc:
        raise OverrideError(f"--cc-model: {exc}" + (f" ({exc.hint})" if exc.hint else "")) from None


def names(paths: list[str]) -> list[str]:
    """Each checkpoint's column name: its folder name or file stem (the full text where two share one)."""
    out = [_name(p) for p in paths]
    return out if len(set(out)) == len(out) else list(paths)


def _expand(value: str) -> list[str]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    out = []
    for p in parts:
        out += matches(p, OverrideError, "--cc-model: ")
    return out


def matches(pattern: str, error=ValueError, prefix: str = "") -> list[str]:
    """What one path or glob names, in natural order. A path that exists is itself, brackets and all
    (`ckpt[1]` is a folder, not a pattern); a glob stops at MAX_CHECKPOINTS matches, with an error."""
    if not any(ch in pattern for ch in "*?[") or Path(pattern).exists():
        return [pattern]
    hits = list(itertools.islice(glob.iglob(pattern), MAX_CHECKPOINTS + 1))
    if not hits:
        raise error(f"{prefix}the pattern {pattern!r} matches no file or directory")
    if len(hits) > MAX_CHECKPOINTS:
        raise error(f"{prefix}the pattern {pattern!r} matches more than {MAX_CHECKPOINTS} files or directories, and "
                    "a series runs every claim on each; narrow the pattern (e.g. ckpts/step-*000) or list them")
    return sorted(hits, key=natural)


def natural(text: str):
    """step-400 before step-1200: digits compare as numbers."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _name(text: str) -> str:
    p = Path(text)
    if p.exists():
        return p.stem if p.is_file() else p.name
    return text.partition(":")[2] or text


def source(text: str) -> tuple[models.ModelSource, tuple]:
    """The model source (and its dims, where known) that SOURCE names."""
    kind, sep, rest = text.partition(":")
    if sep and kind in ("zoo", "hf", "factory") and not Path(text).exists():
        if kind == "zoo":
            if rest not in models.zoo_names():
                raise OverrideError(f"--cc-model: no zoo model named {rest!r}; shipped: {', '.join(models.zoo_names())}")
            return models.ModelSource("zoo", rest), _dims(models.zoo_config(rest))
        return models.ModelSource(kind, rest), (None, None)
    path = Path(text)
    if path.is_file():
        return _weights_file(path)
    if path.is_dir():
        return _directory(path)
    raise OverrideError(f"--cc-model: {text!r} is neither a file, a directory, nor zoo:/hf:/factory:NAME")


def _weights_file(path: Path):
    cfg = path.parent / "config.json"
    if path.suffix not in (".safetensors", ".pt", ".pth") or not cfg.exists():
        raise OverrideError(f"--cc-model: {str(path)!r}: give a .safetensors/.pt file with a config.json beside it, "
                            "or a model directory")
    return models.ModelSource("native", str(cfg), str(path)), _dims(models.read_config(cfg))


def _directory(path: Path):
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise OverrideError(f"--cc-model: directory {str(path)!r} has no config.json")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise OverrideError(f"--cc-model: {str(cfg_path)!r} is not JSON ({exc})") from None
    if "model_type" in raw or "architectures" in raw:  # a Hugging Face directory
        return models.ModelSource("hf", str(path)), (raw.get("n_layer", raw.get("num_hidden_layers")),
                                                     raw.get("n_head", raw.get("num_attention_heads")))
    weights = next((path / n for n in WEIGHT_NAMES if (path / n).exists()), None)
    if weights is None:
        raise OverrideError(f"--cc-model: directory {str(path)!r} has config.json but none of {', '.join(WEIGHT_NAMES)}")
    return models.ModelSource("native", str(cfg_path), str(weights)), _dims(models.read_config(cfg_path))


def _dims(cfg: dict) -> tuple:
    return cfg.get("n_layers"), cfg.get("n_heads")


# ---------------------------------------------------------------- matching files
def refs(source: models.ModelSource) -> set[str]:
    """The texts a `--cc-model` REF may use for a file's model."""
    if source.kind != "native":
        return {f"{source.kind}:{source.ref}"}
    out = {source.ref, str(Path(source.ref).resolve())}
    if source.weights:
        out |= {source.weights, str(Path(source.weights).resolve())}
    return out


def find(overrides: list[Override], source: models.ModelSource) -> Override | None:
    names = refs(source)
    for o in overrides:
        if o.ref in names or (source.kind == "native" and str(Path(o.ref).resolve()) in names):
            return o
    return None


def problem(checkpoint: Checkpoint, limits: dict) -> str:
    """Why a native checkpoint cannot run the file's claims, found without torch, or "": weights cut
    short, a config that disagrees with its weights, or (in a series) another vocabulary or context
    than the file's model, under which its token ids and positions mean other things."""
    from .model_files import ModelFileError, check_dims, weight_shapes

    source = checkpoint.source
    if source.kind != "native" or not source.weights:
        return ""
    try:
        cfg = models.read_config(Path(source.ref))
        check_dims(cfg, weight_shapes(Path(source.weights)))
    except (ModelFileError, OSError, ValueError) as exc:
        return f"checkpoint {checkpoint.name or source.weights}: {exc}" + (f" ({exc.hint})" if getattr(exc, "hint", "") else "")
    for key in ("d_vocab", "n_ctx") if checkpoint.name else ():
        if limits.get(key) and cfg.get(key) and cfg[key] != limits[key]:
            return (f"checkpoint {checkpoint.name}: its {key} is {cfg[key]}, the file's model's is {limits[key]}: "
                    "the file's token ids and positions would mean other things on it; checkpoints are of the file's model")
    return ""


def apply(loaded, checkpoint: Checkpoint):
    """The loaded file with its model re-pointed (its claims, ids and prompts unchanged); what keeps
    the checkpoint from running them (`problem`) is each of its claims' error, and the other
    checkpoints still run."""
    n_layers, n_heads = checkpoint.dims
    return dataclasses.replace(loaded, model_source=checkpoint.source, checkpoint=checkpoint.name,
                               checkpoint_problem=problem(checkpoint, loaded.limits),
                               n_layers=n_layers if n_layers is not None else loaded.n_layers,
                               n_heads=n_heads if n_heads is not None else loaded.n_heads)


def variants(loaded, overrides: list[Override]) -> list[tuple[str, object]]:
    """(checkpoint name, file) for each model a file runs on: itself, one override, a series, or the
    file's own `checkpoints:` (an override of its model wins over them)."""
    o = find(overrides, loaded.model_source)
    checkpoints = o.checkpoints if o is not None else loaded.checkpoints
    if not checkpoints:
        return [("", loaded)]
    return [(c.name, apply(loaded, c)) for c in checkpoints]
