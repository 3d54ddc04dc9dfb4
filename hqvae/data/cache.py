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
from collections.abc import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hqvae.data.paths import cache_dir
from hqvae.io import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def cached(kind: str, key: dict, use_cache: bool, decode: Callable[[], dict]) -> dict:
    """``decode()``'s result for ``key`` (a JSON-serialisable dict) of loader ``kind``, read from its cache
    file when ``use_cache`` and that file is readable (an unreadable one is deleted), else decoded and
    written there atomically (``hqvae.io``): the tensors as tensors, the rest as JSON metadata."""
    if not use_cache:
        return decode()
    text = json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True)
    path = cache_dir() / "decoded" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.safetensors"
    if path.is_file():
        try:
            with safe_open(path, framework="pt") as f:
                stored = {name: f.get_tensor(name) for name in f.keys()}
                stored.update(json.loads(f.metadata()["meta"]))
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(f"ignoring unreadable cache file {path} ({error}); it will be rebuilt", stacklevel=3)
            path.unlink(missing_ok=True)
        else:
            log.info("loaded decoded data from %s", path)
            return stored
    decoded = decode()
    tensors = {name: value.contiguous() for name, value in decoded.items() if isinstance(value, torch.Tensor)}
    meta = json.dumps({name: value for name, value in decoded.items() if name not in tensors})
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"meta": meta}))
    return decoded
