"""Models: one interface over TransformerLens 4 `TransformerBridge`, from four sources.

- `zoo:NAME`     a model the project trains and ships (`circuitcheck/zoo/models/NAME/`): a native
                 config + weights, or a Hugging Face directory (`zoo:ioi`) loaded the `hf` way
- native         a TransformerLens-native config (JSON or inline) plus a weights file
                 (`.safetensors`, or a `.pt` state dict read with `weights_only=True`; legacy
                 `HookedTransformer` state dicts are converted with `convert_tl_checkpoint`)
- hf             a Hugging Face model name or local directory, through `boot_transformers`
- factory        a model registered in code with `@circuitcheck.register_model(NAME)` (registry.py);
                 a file names only the registered name, never a module

Models load once per process, cached by source and load options. torch and transformer_lens
are imported inside functions so that collecting hypothesis files never pays for them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ZOO_DIR = Path(__file__).parents[1] / "zoo" / "models"


class ModelUnavailable(Exception):
    """The model's weights are not on this machine (a hub model offline); claims skip or fail."""


class ModelError(Exception):
    """A model could not be built: a sentence each claim on it reports as its error."""


PROCESSING_STEPS = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases")


@dataclass(frozen=True)
class LoadOptions:
    device: str = "cpu"
    dtype: str = "float32"
    processing: tuple[str, ...] = ()  # the process_weights steps applied, e.g. ("fold_ln", "center_unembed")
    attention: str | None = None  # "causal" | "bidirectional": overrides a zoo or native config
    # A Hugging Face model placed over devices by accelerate (placement.py): a strategy ("auto") or
    # module -> device pairs, and max_memory as device -> size pairs (tuples: the options are a cache key).
    device_map: str | tuple | None = None
    max_memory: tuple | None = None
    runner: str = "transformer_lens"  # what computes the runs (runs/nnsight_runner.py); the bridge loads either way

    @property
    def model_options(self) -> "LoadOptions":
        """These options less the runner: the bridge loaded is the same for every runner."""
        return dataclasses.replace(self, runner="transformer_lens")

    def record(self) -> dict:
        """What was applied to the model, for every result."""
        return {**self.placement(), "dtype": self.dtype, "weight_processing": ", ".join(self.processing) or "none",
                **({"attention": self.attention} if self.attention else {}),
                **({"runner": self.runner} if self.runner != "transformer_lens" else {})}

    def placement(self) -> dict:
        """{"device": ...}, or {"device_map": ..., "max_memory": ...} for a model accelerate places."""
        from .placement import thawed

        if self.device_map is None:
            return {"device": self.device}
        return {"device_map": thawed(self.device_map),
                **({"max_memory": {str(k): v for k, v in self.max_memory}} if self.max_memory else {})}


@dataclass(frozen=True)
class ModelSource:
    kind: str  # zoo | native | hf | factory
    ref: str  # zoo name, config path, hf name/dir, or module:function
    weights: str | None = None
    config: str | None = None  # inline native config as JSON text (hashable)
    weights_key: str | None = None  # the key of a checkpoint's state dict (`.pt`), said on every report line

    def describe(self) -> str:
        key = f"[{self.weights_key!r}]" if self.weights_key else ""
        return f"{self.kind}:{self.ref}" + (f" + {self.weights}{key}" if self.weights else "")


_CACHE: dict[tuple, Any] = {}


def load(source: ModelSource, options: LoadOptions = LoadOptions()):
    """The model for `source`, loaded once per process for each set of load options."""
    options = options.model_options
    key = (source, options)
    if key not in _CACHE:
        try:
            _CACHE[key] = prepare(_LOADERS[source.kind](source, options), options)
        except ModelError as exc:  # remembered, so a broken factory runs once, not once per claim
            _CACHE[key] = exc
    if isinstance(_CACHE[key], ModelError):
        raise _CACHE[key]
    return _CACHE[key]


def is_loaded(source: ModelSource, options: LoadOptions = LoadOptions()) -> bool:
    """Whether `load` would answer from memory (a progress line says so before a load that would not)."""
    return (source, options.model_options) in _CACHE


def forget(source: ModelSource) -> None:
    """Load `source` afresh next time (its weights were changed in memory by registered code)."""
    for key in [k for k in _CACHE if k[0] == source]:
        del _CACHE[key]


def prepare(model, options: LoadOptions):
    import contextlib
    import io

    import torch

    model.eval()
    if options.processing:  # on the float32 weights, before any cast
        if not hasattr(model, "process_weights"):
            raise ModelError(f"weight processing needs a TransformerBridge, and this model is a {type(model).__name__}")
        _process(model, options)
    if options.device_map is not None:  # placed and cast at load: .to(device) would pull every layer onto one
        return model
    with contextlib.redirect_stdout(io.StringIO()):  # the bridge prints "Moving model to device"
        return model.to(device=options.device, dtype=getattr(torch, options.dtype))


PROBE_TOLERANCE = 1e-3  # log-probabilities move by ~1e-6 under float32 processing; a wrong fold by ~0.1 to 1


def _process(model, options: LoadOptions) -> None:
    before = _probe(model)
    try:
        model.process_weights(**{step: step in options.processing for step in PROCESSING_STEPS})
    except (NotImplementedError, RuntimeError) as exc:
        if options.device_map is None:
            raise
        # TransformerLens cannot process weights accelerate offloaded to cpu or disk (meta tensors)
        raise ModelError(f"weight processing failed on the model placed with device_map "
                         f"{options.placement()['device_map']!r}: {exc}") from None
    _check_probe(model, before, options)


def _probe(model):
    """Log-probabilities on a few fixed token rows: what processing must keep. None where the model
    cannot be probed here (weights offloaded by accelerate run only inside their layer's pass)."""
    import torch

    cfg = model.cfg
    if any(p.device.type == "meta" for p in model.parameters()):
        return None
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.d_vocab, (2, min(cfg.n_ctx, 8)), generator=gen).to(input_device(model))
    with torch.no_grad():
        return tokens, model(tokens).log_softmax(-1).float().cpu()


def _check_probe(model, before, options: LoadOptions) -> None:
    """Refuse a processed model whose log-probabilities moved: TransformerLens 4.3 folds ln2 into a square
    W_in (d_mlp == d_model) along the wrong axis and centres it along the wrong one, which changes the model."""
    import torch

    if before is None:
        return
    tokens, want = before
    with torch.no_grad():
        got = model(tokens).log_softmax(-1).float().cpu()
    moved = float((got - want).abs().max())
    if not moved <= PROBE_TOLERANCE:
        cfg = model.cfg
        square = getattr(cfg, "d_mlp", None) == cfg.d_model and not getattr(cfg, "attn_only", False)
        why = (f" TransformerLens 4.3 folds and centres a square MLP input (d_mlp == d_model == {cfg.d_model}) "
               "along the wrong axis" if square else "")
        raise ModelError(f"weight processing ({', '.join(options.processing)}) changed the model's "
                         f"log-probabilities by up to {moved:.3g} on a probe batch, and processing must keep them."
                         f"{why}; use `weight_processing: none`, or only the steps that keep them "
                         f"(`{{center_unembed: true, fold_value_biases: true}}`)")


def input_device(model):
    """The device the tokens go to: the embedding's (the first parameter's). Parameters accelerate
    offloaded to cpu or disk sit on `meta` until their layer runs, on the CPU: TransformerLens
    refuses offloading mixed with GPUs, so a model with offloaded weights runs on the CPU."""
    device = next(model.parameters()).device
    return device if device.type != "meta" else type(device)("cpu")


def native(config: dict, state_dict: dict | None = None):
    """A TL-native bridge built from `config`, with `state_dict` loaded strictly if given."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(**config)
    bridge = TransformerBridge.boot_native(cfg)
    if state_dict is not None:
        if any(k.endswith(("W_Q", "W_E", "W_U")) for k in state_dict):
            state_dict = _convert_legacy(state_dict, bridge.cfg)
        result = bridge.load_state_dict(state_dict, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    return bridge


def _convert_legacy(state_dict, cfg):
    import torch
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    converted = convert_tl_checkpoint(state_dict, cfg)
    # Legacy checkpoints without an unembed bias were zero-filled by the old loader.
    converted.setdefault("unembed.bias", torch.zeros(cfg.d_vocab_out if cfg.d_vocab_out > 0 else cfg.d_vocab))
    return converted


def read_weights(path: Path) -> dict:
    """A state dict from `.safetensors`, or from a `.pt`/`.pth` file without unpickling objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import pickle

    import torch

    from .model_files import ModelFileError, refused, scan_pickle, state_dict_of

    scan_pickle(path)  # refused in our words before torch reads it (and warns about a foreign pickle's protocol)
    try:
        found = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text says to retry with weights_only=False: never
        raise refused(path, "it holds Python objects other than tensors") from None
    try:  # a training checkpoint ({"model_state_dict": ..., "epoch": ...}): by the rule collection used
        return state_dict_of(found, torch.is_tensor, path.name)[0]
    except ModelFileError as exc:
        raise ModelError(f"{exc}; {exc.hint}") from None


def read_config(path: Path) -> dict:
    cfg = json.loads(path.read_bytes().decode("utf-8-sig"))
    return cfg.get("config", cfg)  # a zoo card keeps the TL config under "config"


def is_hf_dir(d: Path) -> bool:
    """A directory `transformers` wrote (its config.json names a `model_type`)."""
    return (d / "config.json").exists() and "model_type" in json.loads((d / "config.json").read_text())


def hf_dims(cfg: dict) -> dict:
    """The TransformerLens names of a Hugging Face config's sizes (read without transformers)."""
    pick = lambda *keys: next((cfg[k] for k in keys if k in cfg), None)  # noqa: E731
    return {"n_layers": pick("n_layer", "num_hidden_layers"), "n_heads": pick("n_head", "num_attention_heads"),
            "n_ctx": pick("n_positions", "max_position_embeddings"), "d_vocab": pick("vocab_size"),
            "d_mlp": pick("n_inner", "intermediate_size") or (4 * cfg["n_embd"] if cfg.get("n_embd") else None)}


def _with_attention(config: dict, attention: str | None) -> dict:
    return config if attention is None else {**config, "attention_dir": attention}


@functools.lru_cache(maxsize=64)  # asked for every claim's load options; the zoo's files do not change
def loads_hf(source: ModelSource) -> bool:
    """Whether `source` loads through `boot_transformers` (an hf: model, or a zoo model in Hugging Face format)."""
    return source.kind == "hf" or (source.kind == "zoo" and is_hf_dir(ZOO_DIR / source.ref))


def _load_zoo(source: ModelSource, options: LoadOptions = LoadOptions()):
    d = ZOO_DIR / source.ref
    if is_hf_dir(d):  # a Hugging Face checkpoint keeps its own attention (refused at collection)
        return load_hf(ModelSource("hf", str(d)), options)
    config = _with_attention(read_config(d / "config.json"), options.attention)
    return native(config, read_weights(d / "model.safetensors"))


def _load_native(source: ModelSource, options: LoadOptions = LoadOptions()):
    config = json.loads(source.config) if source.config else read_config(Path(source.ref))
    weights = read_weights(Path(source.weights)) if source.weights else None
    return native(_with_attention(config, options.attention), weights)


def load_hf(source: ModelSource, options: LoadOptions = LoadOptions()):
    from transformer_lens.model_bridge import TransformerBridge

    from . import hub

    why = hub.unavailable(source.ref)
    if why:
        raise ModelUnavailable(why)
    try:
        return TransformerBridge.boot_transformers(source.ref, **_placed(options))
    except (ValueError, RuntimeError) as exc:
        if options.device_map is not None:  # accelerate or TransformerLens refused the placement
            raise ModelError(f"accelerate could not place {source.describe()} with device_map "
                             f"{options.placement()['device_map']!r}: {str(exc).splitlines()[0][:300]}") from None
        if not isinstance(exc, ValueError):
            raise
        raise _unavailable(source, exc) from exc
    except OSError as exc:  # offline, a hub name with no local copy surfaces as an OSError from transformers
        raise _unavailable(source, exc) from exc


def _unavailable(source: ModelSource, exc: Exception) -> ModelUnavailable:
    return ModelUnavailable(f"Hugging Face model {source.ref!r} is not available offline ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]})")


def _placed(options: LoadOptions) -> dict:
    """`boot_transformers` keywords of a placed model: the map, and the dtype given at load (accelerate
    places weights as they are read; a cast afterwards would touch every device again)."""
    if options.device_map is None:
        return {}
    import torch

    from .placement import thawed

    return {"device_map": thawed(options.device_map), "max_memory": thawed(options.max_memory),
            "dtype": getattr(torch, options.dtype)}


def _load_factory(source: ModelSource, options: LoadOptions = LoadOptions()):
    from torch import nn

    from ..language import registry

    reg = registry.model(source.ref)
    code = getattr(reg.fn, "__code__", None)
    where = f" (registered at {code.co_filename}:{code.co_firstlineno})" if code else ""
    try:
        model = reg.fn()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: one broken factory must not end the whole run
        raise ModelError(f"the model factory {source.ref!r}{where} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module) or not hasattr(model, "cfg"):
        raise ModelError(f"the model factory {source.ref!r}{where} returned {type(model).__name__}, not a model: "
                         "return a transformer_lens TransformerBridge")
    return model


_LOADERS = {"zoo": _load_zoo, "native": _load_native, "hf": load_hf, "factory": _load_factory}


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").exists()) if ZOO_DIR.exists() else []


def zoo_config(name: str) -> dict:
    """The TL config of a shipped model (its sizes, for a Hugging Face one), read without torch."""
    cfg = read_config(ZOO_DIR / name / "config.json")
    return hf_dims(cfg) if "model_type" in cfg else cfg


def tokenizer_dir(source: ModelSource) -> Path | None:
    """Where the model's `tokenizer.json` is, without loading the model: a zoo or local
    Hugging Face directory, or a hub model's local cache; None if it has none here."""
    if source.kind == "zoo":
        d = ZOO_DIR / source.ref
    elif source.kind == "hf" and Path(source.ref).is_dir():
        d = Path(source.ref)
    elif source.kind == "hf":
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.ref, "tokenizer.json")
        return Path(found).parent if isinstance(found, str) else None
    else:
        return None
    return d if (d / "tokenizer.json").exists() else None


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


_HF_MODULES: dict[tuple, Any] = {}


def hf_module(source: ModelSource, options: LoadOptions):
    """The checkpoint of an hf: model (or a zoo model in Hugging Face format) as transformers' own
    module tree, with eager attention (its pattern is a value nnsight can reach), for the nnsight runner."""
    options = options.model_options
    key = (source, options)
    if key not in _HF_MODULES:
        if not loads_hf(source):
            raise ModelError(f"the nnsight runner needs a Hugging Face model, and {source.describe()} is a native "
                             "TransformerLens model: use `runner: transformer_lens`")
        if options.processing:
            raise ModelError("the nnsight runner runs the checkpoint's own weights: weight_processing must be none")
        import torch
        from transformers import AutoModelForCausalLM

        path = str(ZOO_DIR / source.ref) if source.kind == "zoo" else source.ref
        placed = {"dtype": getattr(torch, options.dtype), **_placed(options)}
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", **placed)
        _HF_MODULES[key] = model.eval() if options.device_map is not None else model.eval().to(options.device)
    return _HF_MODULES[key]
