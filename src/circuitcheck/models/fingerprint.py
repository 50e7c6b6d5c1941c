"""What a result ran on: the sha256 of the model's weights, library versions, dtype and device.

`weights_sha256` is the sha256 of the weight file itself (`sha256sum model.safetensors` gives the
same), or, for a model in several files (a sharded Hugging Face checkpoint), the sha256 of the
lines `<file name> <sha256>` in name order. A model with no file on disk (a factory, or a hub
model not in the local cache) is hashed from its state dict: each tensor's name, dtype, shape
and bytes, in name order (`weights_from` says which). A file is read once per process however
many claims run on it: its hash is remembered, in memory only, under a stamp that changes whenever
its bytes do (the inode and the change time, which writing the file sets and `touch` or `os.utime`
cannot set back, with the size and mtime). Nothing is remembered between runs: a weights file
changed in place with the same size and mtime is hashed anew by the next run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from . import loading as models

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FILE_HASHES: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_of(path)
    return _FILE_HASHES[key]


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_files(source: models.ModelSource) -> list[Path]:
    """The files holding a model's weights, where they are known without loading it."""
    if source.kind == "zoo":
        return [models.ZOO_DIR / source.ref / "model.safetensors"]
    if source.kind == "native":
        return [Path(source.weights)] if source.weights else []
    if source.kind == "hf":
        d = Path(source.ref) if Path(source.ref).is_dir() else _hub_snapshot(source.ref)
        if d is None:
            return []
        files = sorted(p for p in d.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.name != "training_args.bin")
        safetensors = [p for p in files if p.suffix == ".safetensors"]
        return safetensors or files  # transformers prefers safetensors where both are there
    return []


def _hub_snapshot(name: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached, or no huggingface_hub: fall back to the loaded state dict
        return None


def files_sha256(paths: list[Path]) -> str:
    if len(paths) == 1:
        return file_sha256(paths[0])
    lines = "".join(f"{p.name} {file_sha256(p)}\n" for p in sorted(paths, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def state_dict_sha256(model) -> str:
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformer_lens", "circuitcheck"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def fingerprint(source: models.ModelSource, load: dict, model=None) -> dict:
    """The record of what ran: weights hash (from files, else from `model`'s state dict), versions, dtype,
    and the device (or the device_map and max_memory accelerate placed the model with)."""
    files = [p for p in weight_files(source) if p.exists()]
    if files:
        sha, where = files_sha256(files), [p.name for p in files]  # names: a baseline holds no machine's paths
    else:
        sha, where = _loaded_sha256(model)
    return {"weights_sha256": sha, "weights_from": where, **versions(),
            "dtype": load.get("dtype"), **{k: load[k] for k in ("device", "device_map", "max_memory") if k in load}}


def _loaded_sha256(model) -> tuple[str | None, list[str]]:
    """From the state dict of `model()` (called only when no file holds the weights)."""
    if model is None:
        return None, []
    try:
        return state_dict_sha256(model()), ["state_dict"]
    except Exception:  # a model that cannot load: its claims already say why
        return None, []
