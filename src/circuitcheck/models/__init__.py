"""Models: a file's `model:` turned into a TransformerLens 4 `TransformerBridge`, checked first.

- `loading.py`      one interface over four sources (zoo, native, Hugging Face, registered factory)
- `model_files.py`  a native config and a weights file's header, checked at collection without torch
- `hub.py`          whether a Hugging Face model is loadable here, answered before transformers is asked
- `placement.py`    `device_map:` and `max_memory:` for models placed over several devices
- `override.py`     `--cc-model REF=SOURCE` and checkpoint series: another model for a file's claims
- `fingerprint.py`  what a result ran on: the weights' hash, library versions, dtype, device

The names below (from `loading.py`) are the stage's interface. torch is imported only inside
functions, so that collecting files never pays for it.
"""
from __future__ import annotations

from .loading import (PROCESSING_STEPS, ZOO_DIR, LoadOptions, ModelError, ModelSource, ModelUnavailable, forget,
                      hf_dims, hf_module, hf_offline, input_device, is_hf_dir, is_loaded, load, load_hf, loads_hf, native, prepare,
                      read_config, read_weights, tokenizer_dir, zoo_config, zoo_names)

__all__ = ["PROCESSING_STEPS", "ZOO_DIR", "LoadOptions", "ModelError", "ModelSource", "ModelUnavailable", "forget", "hf_dims",
           "hf_module",
           "hf_offline", "input_device", "is_hf_dir", "is_loaded", "load", "load_hf", "loads_hf", "native", "prepare", "read_config",
           "read_weights", "tokenizer_dir", "zoo_config", "zoo_names"]
