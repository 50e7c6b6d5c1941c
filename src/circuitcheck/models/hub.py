"""Is a Hugging Face model loadable here? Answered in milliseconds, before transformers is asked.

Asked for a hub name it has not cached, transformers retries the network with backoff for about
half a minute before it gives up. A machine without network should skip such claims at once, and
say how to make that the default (`HF_HUB_OFFLINE=1`).
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

PROBE_SECONDS = 3.0  # a connection to the hub, DNS included, that takes longer counts as none
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def unavailable(ref: str) -> str | None:
    """Why hub model `ref` cannot load on this machine, or None when it may (cached, or reachable)."""
    if Path(ref).is_dir():
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(ref, "config.json"), str):
        return None
    if offline():
        return (f"Hugging Face model {ref!r} is not in the local cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
                "is set; download it once with network access, e.g. `huggingface-cli download` it")
    if any(os.environ.get(p) for p in PROXIES):
        return None  # the hub may be reachable through the proxy only: let transformers try
    url = urlparse(constants.ENDPOINT)
    if not reachable(url.hostname, url.port or (443 if url.scheme == "https" else 80)):
        return (f"Hugging Face model {ref!r} is not in the local cache and {url.hostname} cannot be reached; "
                "set HF_HUB_OFFLINE=1 on machines without network so that such claims skip at once")
    return None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")


def reachable(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port opens within PROBE_SECONDS (name lookup included)."""
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo itself has no timeout
    thread.start()
    thread.join(PROBE_SECONDS)
    return bool(result and result[0])
