"""What training and inspecting a zoo model both read off it: the loss on a prompt set's
targets, and each head's weight norm (the penalty training adds, the table the card shows)."""
from __future__ import annotations

from .. import prompts as P


def target_loss(logits, ps: P.PromptSet, torch):
    """(mean cross-entropy, accuracy) over the prompt set's (target_pos, target_tok) pairs."""
    pos = torch.as_tensor(ps.target_pos)
    tok = torch.as_tensor(ps.target_tok)
    rows = torch.arange(pos.shape[0])[:, None].expand_as(pos)
    sel = logits[rows, pos]  # [n, k, vocab]
    loss = torch.nn.functional.cross_entropy(sel.reshape(-1, sel.shape[-1]), tok.reshape(-1))
    acc = (sel.argmax(-1) == tok).float().mean()
    return loss, acc


def head_norms(model, config: dict):
    """Norm of each head's weights (W_Q, W_K, W_V, W_O together), [n_layers, n_heads] (differentiable)."""
    import torch

    sd = model.state_dict(keep_vars=True)
    dh, nh = config["d_head"], config["n_heads"]
    rows = []
    for layer in range(config["n_layers"]):
        a = f"blocks.{layer}.attn."
        o = sd[a + "o.weight"]  # [d_model, n_heads * d_head]; head h: columns h*dh..(h+1)*dh
        sq = o.reshape(o.shape[0], nh, dh).pow(2).sum((0, 2))
        for m in "qkv":  # [n_heads * d_head, d_model]; head h: rows h*dh..(h+1)*dh
            w = sd[a + m + ".weight"]
            sq = sq + w.reshape(nh, dh, w.shape[1]).pow(2).sum((1, 2))
        rows.append(sq.add(1e-12).sqrt())
    return torch.stack(rows)
