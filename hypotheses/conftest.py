"""Measures the shipped hypothesis files name as `measure: {python: NAME}`, registered here (pytest
imports this file before it collects the files beside it; `circuitcheck check` does the same).
See README, "Measures in Python"."""
import re

import circuitcheck


def parse_head(head: str) -> tuple[int, int]:
    layer, h = re.fullmatch(r"L(\d+)H(\d+)", head).groups()
    return int(layer), int(h)


# cache=True: it reads only the run, its `head` and the model's weights, and calls nothing outside
# this file but torch, so the value cache may keep its values under a hash of this file.
@circuitcheck.register_measure("head-writes-io-minus-s", cache=True,
                               reads=lambda cfg, head: [f"blocks.{parse_head(head)[0]}.attn.hook_z"])
def head_writes_io_minus_s(run: circuitcheck.Run, head: str):
    """What one head writes at the last position along W_U[IO] - W_U[S] (the answer minus its
    counterfactual), before the final LayerNorm's scale: its direct effect on the logit difference."""
    import torch  # here, not at the top: pytest imports this file for every run of hypotheses/, and a
    # rerun served from the value cache must not pay for importing torch

    layer, h = parse_head(head)
    z = run[f"blocks.{layer}.attn.hook_z"][:, :, h]
    end = torch.as_tensor(run.position("end"))
    out = z[torch.arange(run.n), end] @ run.model.W_O[layer, h]
    io = torch.as_tensor(run.prompts.target_tok[:, 0])
    s = torch.as_tensor(run.prompts.target_cf[:, 0])
    return (out * (run.model.W_U[:, io] - run.model.W_U[:, s]).T).sum(-1)
