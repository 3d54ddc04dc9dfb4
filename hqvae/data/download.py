"""Downloading with a published checksum, written atomically.

A download goes to a temporary file beside the destination (:func:`hqvae.io.atomic_write`), moved
into place only after its checksum matched, so an interrupted or tampered download never looks
like a finished file.  Any URL that :func:`urllib.request.urlopen` understands works, ``file://``
included (the tests use that; they never touch the network).
"""

import hashlib
import logging
import os
import shutil
import urllib.request
from pathlib import Path

from hqvae.data.errors import ChecksumError, DataError
from hqvae.io import atomic_write

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (``algorithm`` is any name :func:`hashlib.new` accepts)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, algorithm: str, expected: str, hint: str = "") -> None:
    """Raise :class:`ChecksumError` naming ``path`` unless its digest equals ``expected``.

    ``hint`` is appended to the message: it should say how to fix the problem.
    """
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        fix = hint or "delete the file so that it is downloaded again, or point root= at a good copy"
        raise ChecksumError(f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}; {fix}")


def download(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` unless ``dest`` already exists, and check its checksum.

    Give ``md5`` or ``sha256`` (hex).  An existing ``dest`` is checked, not replaced: a mismatch
    raises :class:`ChecksumError` telling the user to delete it.  A fresh download that does not
    match is deleted and raises :class:`ChecksumError` naming the URL.  Returns ``dest``.
    """
    if (md5 is None) == (sha256 is None):
        raise ValueError("give exactly one of md5= or sha256=")
    algorithm, expected = ("md5", md5) if md5 is not None else ("sha256", sha256)
    dest = Path(dest)
    if dest.exists():
        verify_checksum(dest, algorithm, expected,
                        hint=f"delete {dest} so that it is downloaded again from {url}, or pass root= with a good copy")
        return dest

    def fetch(partial: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
        except OSError as error:  # URLError, HTTPError and socket errors are all OSErrors
            raise DataError(f"could not download {url} to {dest}: {error}; check the network, or download the file "
                            f"yourself and pass root= (or set HQVAE_DATA_ROOT) to use the local copy") from error
        actual = file_digest(partial, algorithm)
        if actual != expected.lower():
            raise ChecksumError(f"checksum mismatch for {url}: expected {algorithm} {expected}, got {actual}; the "
                                f"download was deleted; try again later, or download the file yourself and pass root=")

    log.info("downloading %s to %s", url, dest)
    return atomic_write(dest, fetch)  # the partial download is deleted on any error
