"""An independent forward pass of a 1-layer attention-only model without LayerNorm, written out
from the weights, so interventions and measures can be checked against a hand computation."""
from __future__ import annotations

import math

import torch


def forward(model, tokens, edit_pattern=None, edit_z=None):
    """Logits, pattern [b, h, q, k] and z [b, q, h, d]; `edit_*` functions may change the latter two."""
    W = {k: getattr(model, k).detach().to(torch.float64) for k in ("W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O",
                                                                  "b_Q", "b_K", "b_V", "b_O", "W_U", "b_U")}
    t = tokens.shape[1]
    resid = W["W_E"][tokens] + W["W_pos"][:t]
    q = torch.einsum("bpd,hde->bphe", resid, W["W_Q"][0]) + W["b_Q"][0]
    k = torch.einsum("bpd,hde->bphe", resid, W["W_K"][0]) + W["b_K"][0]
    v = torch.einsum("bpd,hde->bphe", resid, W["W_V"][0]) + W["b_V"][0]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(model.cfg.d_head)
    if edit_pattern is not None and getattr(edit_pattern, "edits_scores", False):
        scores = edit_pattern(scores)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    pattern = torch.softmax(scores.masked_fill(mask, float("-inf")), -1)
    if edit_pattern is not None and not getattr(edit_pattern, "edits_scores", False):
        pattern = edit_pattern(pattern)
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    if edit_z is not None:
        z = edit_z(z)
    out = torch.einsum("bqhe,hed->bqd", z, W["W_O"][0]) + W["b_O"][0]
    logits = (resid + out) @ W["W_U"] + W["b_U"]
    return logits, pattern, z


def scores_edit(fn):
    fn.edits_scores = True
    return fn


def layer_norm(sd: dict, x, name: str, eps: float):
    """The LayerNorm `name` of a state dict on x; the identity where there is none (zoo:induction)."""
    if f"{name}.weight" not in sd:
        return x
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def affine(sd: dict, x, name: str):
    """The nn.Linear `name` of a state dict on x."""
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def forward_mlp(model, tokens, edit=None):
    """A hand forward of a TL-native model with LayerNorm and GELU MLPs, read from the bridge's
    state dict (nn.Linear layouts, not TransformerLens's W_* views); attention-only models and
    models without LayerNorm (zoo:induction) leave those parts out. Returns the logits and every
    intermediate by name: resid_pre{l}, q{l}/k{l}/v{l}/z{l} [b, q, h, e], pattern{l} [b, h, q, k],
    attn_out{l}, resid_mid{l}, pre{l}/post{l} [b, q, m], mlp_out{l}, final_in. `edit(name, x)`
    may replace any of them but the pattern as the forward goes (returns the new value)."""
    edit = edit or (lambda name, x: x)
    cfg = model.cfg
    sd = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()}
    h, e = cfg.n_heads, cfg.d_head

    def ln(x, name):
        return layer_norm(sd, x, name, cfg.eps)

    def linear(x, name):
        return affine(sd, x, name)

    t = tokens.shape[1]
    resid = sd["embed.weight"][tokens] + sd["pos_embed.weight"][:t]
    out = {}
    def keep(name, x):
        out[name] = edit(name, x)
        return out[name]

    for layer in range(cfg.n_layers):
        resid = keep(f"resid_pre{layer}", resid)
        a = f"blocks.{layer}.attn"
        x = ln(resid, f"blocks.{layer}.ln1")
        q, k, v = (keep(f"{n}{layer}", linear(x, f"{a}.{n}").reshape(*x.shape[:2], h, e)) for n in "qkv")
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(e)
        scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
        pattern = out[f"pattern{layer}"] = torch.softmax(scores, -1)
        z = keep(f"z{layer}", torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        attn_out = keep(f"attn_out{layer}", linear(z.reshape(*z.shape[:2], h * e), f"{a}.o"))
        resid = keep(f"resid_mid{layer}", resid + attn_out)
        if cfg.attn_only:
            continue
        pre = keep(f"pre{layer}", linear(ln(resid, f"blocks.{layer}.ln2"), f"blocks.{layer}.mlp.in"))
        post = keep(f"post{layer}", 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2))))
        mlp_out = keep(f"mlp_out{layer}", linear(post, f"blocks.{layer}.mlp.out"))
        resid = resid + mlp_out
    out["final_in"] = resid
    logits = ln(resid, "ln_final") @ sd["unembed.weight"].T + sd["unembed.bias"]
    return logits, out


def state_weights(model) -> dict:
    """Per-head and per-layer weight matrices rebuilt by hand from the state dict's nn.Linear layouts."""
    cfg = model.cfg
    sd = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()}
    h, e = cfg.n_heads, cfg.d_head
    out = {"W_E": sd["embed.weight"], "W_pos": sd["pos_embed.weight"], "W_U": sd["unembed.weight"].T}
    for layer in range(cfg.n_layers):
        a = f"blocks.{layer}.attn"
        for n in "QKV":
            out[f"W_{n}{layer}"] = sd[f"{a}.{n.lower()}.weight"].reshape(h, e, -1).transpose(1, 2)  # [h, d, e]
        out[f"W_O{layer}"] = sd[f"{a}.o.weight"].T.reshape(h, e, -1)  # [h, e, d]
        if f"blocks.{layer}.mlp.in.weight" in sd:
            out[f"W_in{layer}"] = sd[f"blocks.{layer}.mlp.in.weight"].T  # [d, m]
            out[f"W_out{layer}"] = sd[f"blocks.{layer}.mlp.out.weight"].T  # [m, d]
    return out


def run_of(model, prompts, hooks: set[str]):
    """What a measure reads (`circuitcheck.Run`): the model's clean run over `prompts`, keeping `hooks`."""
    from circuitcheck.measures.base import Run
    from circuitcheck.runs.engine import Runs

    raw = Runs(model, prompts).clean(hooks)
    return Run(raw.logits, raw.cache, prompts, model)


def reference_prompts(path, claim: int = 0):
    """The prompt set `method: mean` averages over by default for a claim of the file at `path`: its
    prompt spec with the seed moved by 1,000,003 (issue 22 item 1), built by the prompt generator."""
    from circuitcheck.files import loader as H

    loaded = H.load(path)
    case = loaded.claims[claim].cases[0]
    spec = case.prompts.model_copy(update={"seed": case.prompts.seed + 1_000_003})
    return H.prompt_set(loaded, H.prompts_key(path, spec), spec)

