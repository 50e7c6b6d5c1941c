"""`device_map:` and `max_memory:`: a Hugging Face model placed over several devices by accelerate.

A file's `model: {hf: NAME, device_map: auto}` (or `zoo:ioi`, which loads the same way) is handed to
`TransformerBridge.boot_transformers(device_map=..., max_memory=...)`: accelerate puts each layer on
a device (GPUs, the CPU, or disk for weights that fit nowhere) and moves activations between them
at layer boundaries. What a file may write is checked here, without torch, at collection; that the
devices it names exist is checked by `absent`, which imports torch only when a GPU is named.

Values are kept hashable (a mapping as a tuple of pairs), because load options key the model cache.
"""
from __future__ import annotations

import difflib
import re

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's own placements
DEVICE = re.compile(r"cpu|disk|mps|cuda(:\d+)?")
SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B)", re.IGNORECASE)  # accelerate's convert_file_size_to_int
HINT = ("write `device_map: auto` (or balanced, balanced_low_0, sequential), or a mapping of module names to "
        "devices such as {\"\": cuda:0} or {transformer.h.0: 0, transformer.h.1: 1}; see docs/scaling.md")


class PlacementError(ValueError):
    """What is wrong with a `device_map:` or `max_memory:` (`field`); `key` is the entry at fault (or None)."""

    def __init__(self, message: str, hint: str = HINT, field: str = "device_map", key=None):
        super().__init__(message)
        self.hint, self.field, self.key = hint, field, key


def check(device_map, max_memory) -> None:
    """Raise PlacementError for a placement accelerate would refuse or TransformerLens cannot run."""
    if isinstance(device_map, str):
        if device_map not in STRATEGIES:
            close = difflib.get_close_matches(device_map, STRATEGIES, n=1)
            raise PlacementError(f"{device_map!r} is not a placement accelerate knows",
                                 (f"did you mean {close[0]!r}? " if close else "") + HINT)
    else:
        _check_map(device_map)
        if max_memory is not None:
            raise PlacementError("`max_memory:` bounds what `device_map: auto` (balanced, sequential) may put on each "
                                 "device; a mapping places every module itself, so it would be ignored",
                                 "remove `max_memory:`, or write `device_map: auto`", "max_memory")
    for device, size in (max_memory or {}).items():
        if not (_is_index(device) or device in ("cpu", "mps", "disk")):
            raise PlacementError(f"`max_memory` names {device!r}, which is not a device",
                                 "keys are GPU indices (0, 1, ...), cpu, mps or disk", "max_memory", device)
        if not (_is_index(size) or (isinstance(size, str) and SIZE.fullmatch(size.strip()))):
            raise PlacementError(f"`max_memory` gives {device!r} {size!r}, which is not a size",
                                 "a number of bytes, or a size such as 70GiB, 500MB", "max_memory", device)


def _check_map(device_map: dict) -> None:
    if not device_map:
        raise PlacementError("`device_map:` is an empty mapping: it places nothing")
    for module, device in device_map.items():
        if device == "meta":
            raise PlacementError(f"{module!r} is placed on `meta`, which holds no weights: the model could not run",
                                 "place it on a GPU, cpu, or disk", key=module)
        if not (_is_index(device) or (isinstance(device, str) and DEVICE.fullmatch(device))):
            raise PlacementError(f"{module!r} is placed on {device!r}, which is not a device",
                                 "devices are GPU indices (0, 1, ...), cuda, cuda:N, mps, cpu or disk", key=module)
    if _offloads(device_map.values()) and any(_is_gpu(d) for d in device_map.values()):
        raise PlacementError("the map puts some modules on GPUs and others on cpu or disk: TransformerLens 4.3 "
                             "refuses such a mixed map (its offloading is verified on CPU-only machines)",
                             "place every module on a GPU, or every module on cpu/disk")


def absent(device_map, max_memory=None) -> tuple[str, object, str] | None:
    """(field, entry, what it says) for the first device named that this machine lacks, or None. Imports torch only
    when a GPU or mps is named: a map over cpu and disk, or a strategy, names nothing that can be missing."""
    named = [("device_map", k, d) for k, d in (device_map.items() if isinstance(device_map, dict) else ())]
    named += [("max_memory", d, d) for d in (max_memory or {})]
    named = [(field, key, d) for field, key, d in named if d not in ("cpu", "disk")]
    if not named:
        return None
    import torch

    for field, key, device in named:
        why = _missing(torch, device)
        if why:
            where = f"{key!r} is placed on" if field == "device_map" else "`max_memory` names"
            return field, key, f"{where} {device!r}, and {why}"
    return None


def unusable(device) -> tuple[str, str] | None:
    """(what is wrong, what to do) with a file's `device:`: not a device, or one this machine lacks;
    None where it can be used. Imports torch only when a GPU or mps is named."""
    if not (isinstance(device, str) and DEVICE.fullmatch(device)) or device == "disk":
        return f"{device!r} is not a device", "write cpu, cuda, cuda:N or mps"
    if device == "cpu":
        return None
    import torch

    why = _missing(torch, device)
    return None if why is None else (f"this file asks for {device!r}, and {why}",
                                     "run it where that device is, or remove `device:` and choose with --cc-device")


def _missing(torch, device) -> str | None:
    if device == "mps":
        return None if torch.backends.mps.is_available() else "this machine has no mps device"
    index = device if isinstance(device, int) else int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index < count:
        return None
    return f"this machine has {count} CUDA device(s)" + (f" (cuda:0 to cuda:{count - 1})" if count else "")


def memory(max_memory: dict | None) -> dict | None:
    """`max_memory` with GPU indices as numbers (a file's keys are read as text: "0" is GPU 0)."""
    if max_memory is None:
        return None
    return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in max_memory.items()}


def frozen(mapping):
    """A mapping as a tuple of pairs (hashable); a string or None as it is."""
    return tuple(mapping.items()) if isinstance(mapping, dict) else mapping


def thawed(value):
    """The mapping or string `frozen` was given, for accelerate and for records."""
    return dict(value) if isinstance(value, tuple) else value


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_gpu(device) -> bool:
    return _is_index(device) or (isinstance(device, str) and device.startswith("cuda"))


def _offloads(devices) -> bool:
    return any(d in ("cpu", "disk") for d in devices)
