"""`measure: accuracy` (or prob, loss, logprob, logit_diff, rank): a metric at the prompt set's targets."""
from __future__ import annotations

from typing import Literal

import numpy as np

from .base import Kind, over_targets, register, shared, to_numpy

Metric = Literal["accuracy", "prob", "loss", "logit_diff", "rank", "logprob"]


@register
class MetricKind(Kind):
    name = "metric"
    schema = Metric
    bare = True

    @property
    def form(self) -> str:
        return f"a metric name ({', '.join(Metric.__args__)})"

    def compute(self, body, run) -> np.ndarray:
        return metric(body, run.logits, run.prompts, run.memo)

    def values(self, body, prompts, d_vocab) -> dict:
        return metric_values(body, prompts.target_tok.shape[1] == 1, d_vocab)

    def describe(self, body) -> str:
        return body


def metric_values(name: str, one_target: bool, d_vocab) -> dict:
    """What a metric's per-prompt values are (see `Kind.values`), read at one target or a mean of several."""
    if name == "accuracy" and one_target:  # a mean over several targets is not 0/1
        return {"binary": True}
    if name == "rank":
        return {"value_range": (1.0, float(d_vocab()))}
    return {"value_range": (0.0, 1.0) if name in ("accuracy", "prob") else None}


def metric(name: str, logits, prompts, memo: dict | None = None, chosen=None) -> np.ndarray:
    """Mean over each prompt's targets (or those `chosen` [n, k] marks) of: accuracy, prob, loss,
    logprob, logit_diff or rank. `memo` (a run's own, `Run.memo`): every metric of one run reads one
    gather of the target logits and one log-softmax."""
    import torch

    tok, at, correct, logp = shared(memo, "metric", logits, lambda: _targets(logits, prompts))
    if name == "accuracy":
        value = (at.argmax(-1) == tok).to(torch.float64)
    elif name == "prob":
        value = logp.exp()
    elif name == "loss":
        value = -logp
    elif name == "logprob":
        value = logp
    elif name == "logit_diff":  # minus the counterfactual's logit where a target names one
        others = at.scatter(-1, tok[..., None], float("-inf")).max(-1).values
        if prompts.target_cf is not None:
            cf = torch.as_tensor(prompts.target_cf).to(logits.device)
            named = at.gather(-1, cf.clamp(min=0)[..., None])[..., 0]
            others = torch.where(cf >= 0, named, others)
        value = correct - others
    else:  # rank: 1 when the correct token is the top prediction
        value = 1 + (at > correct[..., None]).sum(-1).to(torch.float64)
    return to_numpy(over_targets(value, prompts, chosen))


def _targets(logits, prompts) -> tuple:
    """The target tokens, the logits at the targets [n, k, vocab] in float64, the target's logit and
    its log-probability [n, k]."""
    import torch

    rows = torch.arange(prompts.n)[:, None]
    pos = torch.as_tensor(prompts.target_pos)
    tok = torch.as_tensor(prompts.target_tok).to(logits.device)
    at = logits[rows, pos].to(torch.float64)  # [n, k, vocab]
    correct = at.gather(-1, tok[..., None])[..., 0]
    logp = torch.log_softmax(at, -1).gather(-1, tok[..., None])[..., 0]
    return tok, at, correct, logp
