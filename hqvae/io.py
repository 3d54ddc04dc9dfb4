"""Atomic file writes: a temporary file in the same folder, flushed to the disk, then ``os.replace``.

An interrupted write (crash, kill, power loss, full disk) leaves the previous version of the file
intact. A write that fails because of the disk (full, I/O error, no permission) raises
:class:`WriteFailed`, whose message names the file and the fix.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from hqvae import faults


class WriteFailed(OSError):
    """A file could not be written (full disk, I/O error, permissions); its previous version is unchanged.
    ``error``: what the write raised (an OSError, or a library error that carries an errno)."""

    def __init__(self, path: Path, error: BaseException):
        code = _error_code(error)
        reason = os.strerror(code) if code else str(error)
        super().__init__(code, reason)
        self.path = path
        self.message = (f"could not write {path}: {reason}; the previous version of the file, if any, is "
                        f"unchanged. {_fix(path, code)}")

    def __str__(self) -> str:
        return self.message


def _fix(path: Path, code: int | None) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f" ({shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free now)"
        except OSError:
            free = ""
        return f"Free space on the disk of {path.parent}{free}, or write to another disk."
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Make {path.parent} writable, or write elsewhere."
    if code == errno.EIO:
        return "The disk reported an I/O error: check it, or write to another disk."
    return f"Check the disk and the permissions of {path.parent}."


def _error_code(error: BaseException) -> int | None:
    """The errno of a failed write: an OSError's, or the one a Rust library (safetensors) puts in its message."""
    if isinstance(error, OSError):
        return error.errno
    match = re.search(r"os error (\d+)", str(error))
    return int(match.group(1)) if match else None


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_fingerprint(path: str | os.PathLike) -> str:
    """Short sha256 (16 hex digits) of a file's bytes: tells one checkpoint's weights from another's."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON document in ``path``; a ValueError saying the file is damaged, and ``fix``, when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): it is damaged; {fix}") from None


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` (not atomic by itself: the writer :func:`atomic_write_bytes` uses)."""
    with open(path, "wb") as handle:
        handle.write(data)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it over ``path``. The file gets the
    usual permissions for a new file, not the private ones of a temporary file. An OSError (or a
    library error carrying an errno) becomes :class:`WriteFailed`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        faults.point("write")
        umask = os.umask(0)  # the mode a plain open(path, "w") gives a new file: 0o666 less the umask
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, Exception) and (isinstance(error, OSError) or _error_code(error) is not None) \
                and not isinstance(error, WriteFailed):
            raise WriteFailed(path, error) from error
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda tmp: write_bytes(tmp, data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())
