"""The model zoo: small models the project trains from scratch and ships under `zoo/models/NAME/`.

Each model directory holds `model.safetensors` (the `TransformerBridge` state dict), `config.json`
(`{"config": TransformerBridgeConfig kwargs, "task", "prompts", "training", "eval"}`) and `card.md`.
Load one with `circuitcheck.models.load(ModelSource("zoo", NAME))`; retrain with
`python -m circuitcheck.zoo train NAME` (see `circuitcheck.zoo.train`).
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"


def train(name: str, steps: int | None = None, out=None, seed: int = 0, **kwargs) -> dict:
    """Train zoo model `name` (lazy import of torch); see `circuitcheck.zoo.train.train`."""
    from circuitcheck.zoo.train import train as _train

    return _train(name, steps=steps, out=out, seed=seed, **kwargs)


__all__ = ["MODELS_DIR", "train"]
