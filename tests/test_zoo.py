"""The zoo: shipped models load, are small, carry cards; the training loop runs (one quick smoke)."""
from __future__ import annotations

import hashlib

import pytest
import torch

from circuitcheck import models
from circuitcheck.zoo.train import SPECS, train

NAMES = [n for n in models.zoo_names() if not n.startswith("tracr-")]  # compiled, not trained: test_tracr_zoo.py


def test_every_trainable_model_is_shipped():
    assert sorted([*SPECS, "ioi"]) == NAMES == ["induction", "ioi", "max-of-list"]  # ioi: zoo/ioi.py


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_is_small_documented_and_loads(name):
    d = models.ZOO_DIR / name
    assert (d / "model.safetensors").stat().st_size < 1_000_000
    card = (d / "card.md").read_text()
    for text in ("## Held-out evaluation", "accuracy **", f"circuitcheck zoo train {name} --out DIR", "## Training"):
        assert text in card
    if name in SPECS:  # trained by train.py, which puts the weights' sha256 on the card
        sha = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
        assert f"`model.safetensors` has sha256 `{sha}`" in card
    model = models.load(models.ModelSource("zoo", name))
    assert model.cfg.n_layers == models.zoo_config(name)["n_layers"]


def test_max_of_list_model_really_computes_the_maximum():
    from circuitcheck.prompts import max_of_list

    model = models.load(models.ModelSource("zoo", "max-of-list"))
    ps = max_of_list(500, seed=999)
    with torch.inference_mode():
        pred = model(torch.as_tensor(ps.tokens))[:, -1].argmax(-1).numpy()
    assert (pred == ps.target_tok[:, 0]).mean() > 0.98


def test_training_loop_smoke(tmp_path):
    metrics = train("max-of-list", steps=20, out=tmp_path, measure=False)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.safetensors", "config.json", "card.md"}
    assert metrics["steps"] == 20
    models.load(models.ModelSource("native", str(tmp_path / "config.json"), str(tmp_path / "model.safetensors")))


def test_short_runs_never_overwrite_the_shipped_models():
    with pytest.raises(ValueError, match="--out"):
        train("max-of-list", out=models.ZOO_DIR / "max-of-list", steps=5)


def test_training_writes_only_where_told(tmp_path, monkeypatch, capsys):
    from circuitcheck.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):  # no --out: argparse refuses, nothing is trained or written
        main(["zoo", "train", "max-of-list", "--steps", "2"])
    assert "--out" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_an_interrupted_save_leaves_no_complete_looking_weights(tmp_path, monkeypatch):
    """Ctrl-C while the weights are written: no model.safetensors (before: half a file under the
    final name), and a model already there stays as it was."""
    from pathlib import Path

    import safetensors.torch

    from circuitcheck.zoo.train import train

    real = safetensors.torch.save_file

    def interrupted(state, path, *a, **k):
        real(state, path, *a, **k)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("max-of-list", steps=2, out=tmp_path / "new", measure=False)
    assert not (tmp_path / "new" / "model.safetensors").exists()
    assert not [p for p in (tmp_path / "new").iterdir() if "safetensors" in p.name]
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    train("max-of-list", steps=2, out=tmp_path / "old", measure=False)
    before = (tmp_path / "old" / "model.safetensors").read_bytes()
    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("max-of-list", steps=2, out=tmp_path / "old", measure=False)
    assert (tmp_path / "old" / "model.safetensors").read_bytes() == before
