"""The model zoo: small models the project trains from scratch and ships under `zoo/models/NAME/`.

Each model directory holds `model.safetensors` (the `TransformerBridge` state dict), `config.json`
(`{"config": TransformerBridgeConfig kwargs, "task", "prompts", "training", "eval"}`) and `card.md`.
Load one with `circuitcheck.models.load(ModelSource("zoo", NAME))`; retrain with
`circuitcheck zoo train NAME --out DIR` (it writes nowhere else), or from Python with
`from circuitcheck.zoo.train import train; train(NAME, out=DIR, steps=None, seed=0)`.
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"

__all__ = ["MODELS_DIR"]
