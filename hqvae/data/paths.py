"""Where hqvae keeps downloads and caches, and where it looks for local copies of data sets.

Two environment variables:

``HQVAE_DATA``
    The cache directory: downloads, extracted archives and decoded ``.safetensors`` caches.
    Default ``$XDG_CACHE_HOME/hqvae/data``, i.e. ``~/.cache/hqvae/data``.
``HQVAE_DATA_ROOT``
    A read-only folder of local copies, searched before anything is downloaded, e.g. a
    shared ``data/`` folder holding ``cifar10-jpeg-q75.tar.gz`` and ``fsdd/recordings/``.
    Unset by default.

Every loader also takes ``root=`` to point at one data set directly; that path wins over both.
"""

import os
from pathlib import Path


def cache_dir(create: bool = True) -> Path:
    """The cache directory (``$HQVAE_DATA`` or ``~/.cache/hqvae/data``), created unless ``create=False``."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hqvae" / "data"
    path = Path(os.environ.get("HQVAE_DATA") or default).expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> Path | None:
    """The folder of local copies named by ``$HQVAE_DATA_ROOT``, or None when unset."""
    configured = os.environ.get("HQVAE_DATA_ROOT")
    return Path(configured).expanduser() if configured else None
