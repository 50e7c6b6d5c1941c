"""Model files checked at collection, without torch: a native config's JSON and keys, and the
header of a weights file (its tensor names and shapes), so that a config that disagrees with its
weights, a truncated file, a web page saved as weights or a pickle that would run code is refused
with one sentence before any model loads.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
# Config keys that are whole numbers, and the ones a native model cannot do without.
SIZES = ("n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_vocab", "d_mlp", "d_vocab_out")
REQUIRED = ("n_layers", "d_model", "n_ctx", "d_head")
# What a PyTorch state dict's pickle may name; anything else (os.system, builtins.eval) would run code.
SAFE_GLOBALS = ("torch", "collections.OrderedDict", "_codecs.encode", "numpy.core.multiarray._reconstruct",
                "numpy.dtype", "numpy.ndarray")


class ModelFileError(ValueError):
    """A config or weights file that cannot be used: `key` is the config key at fault, if one is."""

    def __init__(self, message: str, hint: str = "", key: str = ""):
        super().__init__(message)
        self.hint, self.key = hint, key


def read_config(path: Path) -> dict:
    """A TransformerLens config from JSON; a zoo card keeps it under "config"."""
    cfg = read_json(path)
    if isinstance(cfg, dict) and isinstance(cfg.get("config"), dict):
        cfg = cfg["config"]
    return check_config(cfg, path.name)


def read_json(path: Path):
    """A JSON file (a UTF-8 byte-order mark is fine), its errors located by line."""
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ModelFileError(f"config {path.name} is not UTF-8 text", "save it as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"config {path.name} is not valid JSON: {exc.msg} (line {exc.lineno}, column "
                             f"{exc.colno})", "JSON allows no trailing commas, comments or single quotes") from None


def check_config(cfg, name: str = "the config") -> dict:
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{name} must be a JSON object of TransformerLens config keys, not a "
                             f"{type(cfg).__name__}", 'e.g. {"n_layers": 2, "d_model": 64, ...}')
    for key in REQUIRED:
        if key not in cfg:
            raise ModelFileError(f"{name} has no {key!r}", f"a native config needs {', '.join(REQUIRED)}", key)
    for key in SIZES:
        v = cfg.get(key)
        if v is None or (key == "d_vocab_out" and v == -1):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ModelFileError(f"{name}: {key} must be a positive whole number, not {v!r}",
                                 "sizes in a config are JSON numbers, not strings", key)
    return cfg


def weight_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor names and shapes of a weights file, read from its header (safetensors) or its pickle's
    names (a PyTorch file, scanned for code it would run; shapes are not read there)."""
    with open(path, "rb") as f:
        head = f.read(8)
        size = path.stat().st_size
        if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
            return pt_contents(path)[0]
        if head.lstrip()[:1] == b"<":
            raise ModelFileError(f"weights {path.name} are a web page (HTML), not weights",
                                 "download the file itself, not the page that links to it")
        if path.suffix != ".safetensors":
            raise ModelFileError(f"weights {path.name} are neither safetensors nor a PyTorch file",
                                 _CONVERT)
        if len(head) < 8:
            raise ModelFileError(f"weights {path.name} are {size} bytes: too short to be safetensors", _CONVERT)
        n = struct.unpack("<Q", head)[0]
        if n > min(MAX_HEADER, size - 8):
            raise ModelFileError(f"weights {path.name} are not safetensors (or are cut short): the header claims "
                                 f"{n:,} bytes, the file has {size:,}", _CONVERT)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFileError(f"weights {path.name} have no readable safetensors header",
                                 _CONVERT) from None
    return _shapes(path, header, size - 8 - n)


def _shapes(path, header, data_size) -> dict[str, list[int]]:
    if not isinstance(header, dict):
        raise ModelFileError(f"weights {path.name} have a malformed safetensors header", _CONVERT)
    shapes, end = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shapes[name] = [int(d) for d in info["shape"]]
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise ModelFileError(f"weights {path.name}: tensor {name!r} has a malformed entry", _CONVERT) from None
    if end > data_size:
        raise ModelFileError(f"weights {path.name} are cut short: the tensors need {end:,} bytes of data, the file "
                             f"has {data_size:,}", "download or copy the file again")
    return shapes


_CONVERT = ("save the weights with safetensors.torch.save_file(model.state_dict(), 'model.safetensors'); "
            "see `model` in docs/reference.md")


def pt_contents(path: Path) -> tuple[dict[str, list[int]], str | None]:
    """(tensor names and shapes, the key the state dict is under or None) of a PyTorch file, read from
    its pickle without torch and without running it; ({}, None) where its layout is not the zip one
    `torch.save` writes (the state dict is then found when the model loads, by the same rule)."""
    data = scan_pickle(path)
    if data is None:
        return {}, None
    try:
        found = _Stubs(io.BytesIO(data)).load()
    except Exception:  # noqa: BLE001 - a layout the stubs do not know: left to torch.load at load time
        return {}, None
    state, key = state_dict_of(found, lambda v: isinstance(v, _Tensor), path.name)
    return {name: t.shape for name, t in state.items()}, key


# Where training loops keep the model's state dict in a checkpoint, in the order they are tried.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights", "params")


def state_dict_of(found, is_tensor, name: str) -> tuple[dict, str | None]:
    """The state dict in what a `.pt` file holds: the file itself, or a checkpoint with it under one of
    STATE_DICT_KEYS, or under the only key that holds tensors alone; (state dict, that key or None)."""
    def is_state(v):
        return isinstance(v, dict) and bool(v) and all(isinstance(k, str) and is_tensor(x) for k, x in v.items())

    if is_state(found):
        return found, None
    if not isinstance(found, dict):
        raise ModelFileError(f"weights {name} hold a {type(found).__name__}, not a state dict", _CONVERT)
    held = [k for k, v in found.items() if isinstance(k, str) and is_state(v)]
    key = next((k for k in STATE_DICT_KEYS if k in held), held[0] if len(held) == 1 else None)
    if key is not None:
        return found[key], key
    keys = ", ".join(repr(k) for k in list(found)[:8])
    if held:
        raise ModelFileError(f"weights {name} hold several state dicts ({', '.join(map(repr, held))}) and none under "
                             f"a usual name ({', '.join(STATE_DICT_KEYS)})",
                             f"save the model's alone: torch.save(checkpoint[{held[0]!r}], 'model.pt')")
    raise ModelFileError(f"weights {name} hold a dict ({keys}) with no state dict in it (a mapping of names to "
                         "tensors, itself or under one key)", "save model.state_dict(), or a checkpoint with it "
                         "under 'state_dict' or 'model_state_dict'")


class _Tensor:
    """A tensor in a pickled state dict: its shape alone (the bytes are never read here)."""

    def __init__(self, shape):
        self.shape = [int(d) for d in shape]


class _Opaque:
    """Any other name the scan allowed (a storage type, a dtype): nothing here needs its value."""

    def __init__(self, *args, **kwargs):
        pass


class _Dict(dict):
    """An OrderedDict: a state dict's pickle sets attributes on it (`_metadata`), which dict refuses."""


def _rebuild_tensor(storage, offset, size, *rest):
    return _Tensor(size)


def _rebuild_parameter(data, *rest):
    return data


class _Stubs(pickle.Unpickler):
    """Reads a state dict's pickle into plain containers and `_Tensor`s: torch's rebuild functions are
    replaced by stubs, and any name the scan did not allow is refused (so nothing runs)."""

    STUBS = {"torch._utils._rebuild_tensor_v2": _rebuild_tensor, "torch._utils._rebuild_tensor": _rebuild_tensor,
             "torch._utils._rebuild_parameter": _rebuild_parameter, "collections.OrderedDict": _Dict}

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if full in self.STUBS:
            return self.STUBS[full]
        if full.startswith(SAFE_GLOBALS):
            return _Opaque
        raise pickle.UnpicklingError(f"{full} is not allowed")

    def persistent_load(self, pid):
        return None  # a storage: its bytes stay in the file


def scan_pickle(path: Path) -> bytes | None:
    """Refuse a PyTorch file whose pickle names anything but tensors and plain containers; its pickle
    bytes when the file is the zip `torch.save` writes (None for the legacy layout)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if pkl is None:
                    raise ModelFileError(f"weights {path.name} are a zip file without a PyTorch state dict", _CONVERT)
                data = z.read(pkl)
        else:
            data = path.read_bytes()
        names = _globals(data)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"weights {path.name} are not a readable PyTorch file ({exc})", _CONVERT) from None
    unsafe = [g for g in names if not g.startswith(SAFE_GLOBALS)]
    if unsafe:
        raise refused(path, f"it names {', '.join(sorted(set(unsafe))[:3])}")
    return data if zipfile.is_zipfile(path) else None


def refused(path: Path, why: str) -> ModelFileError:
    return ModelFileError(
        f"weights {path.name} are refused because loading them would run code ({why}); circuitcheck never "
        "unpickles a model file", "if you trust where the file came from, convert it to safetensors once, yourself: "
        "torch.load(path, weights_only=False), then safetensors.torch.save_file(state_dict, 'model.safetensors'), "
        "and name the .safetensors file")


def _globals(data: bytes) -> list[str]:
    """The `module.name` of every global a pickle imports (GLOBAL, or STACK_GLOBAL of two strings)."""
    import pickletools  # here: building its opcode tables costs 27 ms, and only a .pt file needs it

    names, strings, memo = [], [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING",
                       "BINSTRING", "STRING"):
            strings.append(str(arg))
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE") and strings:
            memo[arg if op.name != "MEMOIZE" else len(memo)] = strings[-1]
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
            strings.append(memo[arg])
        elif op.name == "GLOBAL":
            names.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            names.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
    return names


def check_dims(cfg: dict, shapes: dict[str, list[int]]) -> None:
    """The config's sizes against the weights' shapes (both naming conventions TransformerLens uses)."""
    found = _dims_from(shapes)
    for key, (value, why) in found.items():
        if cfg.get(key) is not None and cfg[key] != value:
            raise ModelFileError(f"the config says {key} {cfg[key]}, but the weights have {value} ({why})",
                                 "the config and the weights come from different models: use the config saved "
                                 "with these weights", key)


def _dims_from(shapes) -> dict[str, tuple[int, str]]:
    """Sizes the weights fix: {config key: (size, the tensor that shows it)}."""
    def shown(name, dim):
        return shapes[name][dim], f"{name} has shape {shapes[name]}"

    out = {}
    for name in ("embed.weight", "embed.W_E"):
        if len(shapes.get(name, ())) == 2:
            out["d_vocab"], out["d_model"] = shown(name, 0), shown(name, 1)
    for name in ("pos_embed.weight", "pos_embed.W_pos"):
        if len(shapes.get(name, ())) == 2:
            out["n_ctx"] = shown(name, 0)
    layers = {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if layers:
        out["n_layers"] = (max(layers) + 1, f"their blocks are numbered 0..{max(layers)}")
    if len(shapes.get("blocks.0.attn.W_Q", ())) == 3:
        out["n_heads"], out["d_head"] = shown("blocks.0.attn.W_Q", 0), shown("blocks.0.attn.W_Q", 2)
    return out
