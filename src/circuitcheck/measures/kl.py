"""`measure: {kl: model}`: KL(model ‖ this run), the divergence of this run's next-token distribution
from the full model's at each target (in nats, averaged over a prompt's targets): how far a circuit
(`circuit:`) or any intervention moves the model's whole prediction, not only the correct token's."""
from __future__ import annotations

from typing import Literal

import numpy as np

from .base import Kind, over_targets, register, to_numpy


@register
class KLKind(Kind):
    name = "kl"
    schema = Literal["model"]
    streams = False  # reads the clean run's logits beside this run's (Values gives it as `run.clean`)
    reads_clean = True

    @property
    def form(self) -> str:
        return "{kl: model}: KL(model ‖ this run) at the targets"

    def compute(self, body, run) -> np.ndarray:
        import torch

        if run.clean is None:
            raise ValueError("the kl measure needs the clean run beside this one")
        rows = torch.arange(run.n)[:, None]
        pos = torch.as_tensor(run.prompts.target_pos)
        p = torch.log_softmax(run.clean.logits[rows, pos].to(torch.float64), -1)  # the model's, [n, k, vocab]
        q = torch.log_softmax(run.logits[rows, pos].to(torch.float64), -1)
        kl = (p.exp() * (p - q)).sum(-1).clamp_min(0.0)  # ≥ 0 exactly; rounding may leave -1e-16
        return to_numpy(over_targets(kl, run.prompts))

    def describe(self, body) -> str:
        return "KL(model ‖ run)"
