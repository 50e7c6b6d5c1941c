"""Shared fixtures: a tiny random TL-native model on disk, and hypothesis files written around it."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from circuitcheck.plugin import HYPOTHESIS_PLUGIN

pytest_plugins = ["pytester"]
# The value cache's key (runs/seal.py) for every run the suite starts, subprocesses too: the suite
# never writes the user's ~/.config, and reads its own caches back wherever HOME is read-only.
# tests/test_cache_trust.py unsets it to test the key file.
os.environ.setdefault("CIRCUITCHECK_CACHE_KEY", "the circuitcheck test suite's cache key")
# A $COLUMNS inherited from the shell that runs the suite asks the plugin for a table that width even
# in a log (plugin._table_width); tests read whole rows unless they set a width themselves.
os.environ.pop("COLUMNS", None)

TINY = dict(n_layers=2, d_model=32, n_ctx=32, d_head=8, n_heads=4, d_vocab=64, attn_only=True,
            act_fn="relu", normalization_type="LN", seed=0)
TINY_NO_LN = dict(TINY, n_layers=1, normalization_type=None)
TINY_MLP = dict(TINY, attn_only=False, d_mlp=48, act_fn="gelu")  # MLPs and LayerNorm, as in GPT-2
SHARED = Path(__file__).resolve().parents[2] / "shared"


def save_model(directory: Path, config: dict, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    from circuitcheck.models import native

    torch.manual_seed(seed)
    model = native(config)
    with torch.no_grad():  # random weights big enough that heads attend somewhere in particular
        for name, p in model.named_parameters():
            p.normal_(0, 0.5 if "weight" in name else 0.1)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
    return directory


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester, whose in-process runs leave Hypothesis's plugin off, as pyproject's addopts does here.

    Why: that plugin counts "still initialising" up when its module is imported and down at session
    start. pytester drops every module a run imported, so each in-process run imports the plugin again
    (+1), and a run that stops on a usage error never starts its session (no -1). Every such run left
    Hypothesis one step further from initialised, and the property tests that ran later in the same
    process raised HypothesisSideeffectWarning on each strategy they built (123 of the suite's 124
    warnings). Subprocess runs are left alone: they start from a fresh count and exit."""
    inline_run = pytester.inline_run

    def without_hypothesis_plugin(*args, **kwargs):
        return inline_run(*args, "-p", f"no:{HYPOTHESIS_PLUGIN}", **kwargs)

    monkeypatch.setattr(pytester, "inline_run", without_hypothesis_plugin)
    return pytester


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny"), TINY)


@pytest.fixture(scope="session")
def tiny_no_ln_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny_no_ln"), TINY_NO_LN)


@pytest.fixture(scope="session")
def tiny_mlp_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny_mlp"), TINY_MLP)


@pytest.fixture(scope="session")
def tiny_mlp_model(tiny_mlp_dir):
    from circuitcheck import models

    d = tiny_mlp_dir
    return models.load(models.ModelSource("native", str(d / "config.json"), str(d / "model.safetensors")))


@pytest.fixture(scope="session")
def sw(tiny_mlp_model):
    """The MLP model's weight matrices, rebuilt by hand from its state dict (tests/manual.py)."""
    import manual

    return manual.state_weights(tiny_mlp_model)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    from circuitcheck import models

    return models.load(models.ModelSource("native", str(tiny_dir / "config.json"), str(tiny_dir / "model.safetensors")))


@pytest.fixture(scope="session")
def tiny_no_ln_model(tiny_no_ln_dir):
    from circuitcheck import models

    d = tiny_no_ln_dir
    return models.load(models.ModelSource("native", str(d / "config.json"), str(d / "model.safetensors")))


def header(model_dir: Path, prompts: str = "{generator: repeated_tokens, n: 120, seed: 1}",
           folder: Path | None = None) -> str:
    """A file's model and prompts. With `folder` (where the file will be), the model is copied into
    `folder/<model dir name>/` and named relative to the file: files read only their own folder tree."""
    if folder is not None:
        model_dir = copy_model(model_dir, folder).relative_to(folder)
    return textwrap.dedent(f"""\
        model:
          native: {{config: {model_dir / 'config.json'}, weights: {model_dir / 'model.safetensors'}}}
        prompts: {prompts}
        """)


def copy_hyp(path: Path, dest: Path) -> Path:
    """Copy a file `hyp` wrote, with the model folder beside it that it names."""
    import shutil

    for model_dir in path.parent.iterdir():
        if (model_dir / "model.safetensors").is_file():
            copy_model(model_dir, dest.parent)
    return Path(shutil.copy(path, dest))


def copy_model(model_dir: Path, folder: Path) -> Path:
    import shutil

    dest = folder / model_dir.name
    if not dest.exists():
        shutil.copytree(model_dir, dest)
    return dest


def writer(tmp_path: Path, model_dir: Path):
    def write(claims: str, prompts: str | None = None, name: str = "t.hyp.yaml", extra: str = "") -> Path:
        text = header(model_dir, prompts or "{generator: repeated_tokens, n: 120, seed: 1}", tmp_path) + extra + "claims:\n" + textwrap.indent(
            textwrap.dedent(claims), "  ")
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def hyp(tmp_path, tiny_dir):
    """Write a hypothesis file on the tiny model: hyp(claims_yaml, prompts=...) -> path."""
    return writer(tmp_path, tiny_dir)


@pytest.fixture
def hyp_mlp(tmp_path, tiny_mlp_dir):
    """The same on the tiny model with MLPs and LayerNorm."""
    return writer(tmp_path, tiny_mlp_dir)


@pytest.fixture
def stacking(monkeypatch):
    """Runs stack several interventions in one pass on the CPU too (by default only on a GPU), for
    the tests that check stacking."""
    from circuitcheck.runs import engine as runs

    monkeypatch.setattr(runs, "STACK_ON_CPU", True)
