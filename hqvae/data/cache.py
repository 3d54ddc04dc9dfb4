"""Decoded data sets cached as ``.safetensors`` files in ``$HQVAE_DATA/decoded/``.

Decoding tens of thousands of JPEG files takes seconds; reading back the decoded uint8 tensor
takes a fraction of one.  A cache file's name is a hash of everything that determines its
contents (the source's path, size and modification times, the decoding options and a format
version), so a changed source or option never returns stale data: it just makes a new file.
Delete the folder to reclaim the space.
"""

import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hqvae.data.paths import cache_dir
from hqvae.io import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def cache_path(kind: str, key: dict) -> Path:
    """Where the decoded data for ``key`` (a JSON-serialisable dict) of loader ``kind`` live."""
    text = json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return cache_dir() / "decoded" / f"{kind}-{digest}.safetensors"


def load_cached(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """``(tensors, meta)`` stored at ``path``, or None when absent or unreadable (then it is deleted)."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"ignoring unreadable cache file {path} ({error}); it will be rebuilt", stacklevel=3)
        path.unlink(missing_ok=True)
        return None
    log.info("loaded decoded data from %s", path)
    return tensors, meta


def save_cached(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to ``path`` atomically (``hqvae.io``)."""
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"meta": json.dumps(meta)}))
