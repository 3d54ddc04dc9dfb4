"""Reading and extracting tar archives (``.tar``, ``.tar.gz``, ``.tgz``) safely.

Only regular files are read or written; links, devices and names that are absolute or climb
out of the destination with ``..`` are refused, so a hostile archive cannot write outside it.
"""

import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from hqvae.data.errors import CorruptFileError, DataError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def is_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` names a tar archive by its suffix."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def iter_members(archive: str | os.PathLike, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes | None]]:
    """Stream the regular files of ``archive`` in stored order as ``(name, data)``.

    ``data`` is the member's bytes when ``want(name)`` is true and None otherwise (so callers
    see every name at the cost of reading only what they need).  A damaged archive raises
    :class:`CorruptFileError` naming it.
    """
    archive = Path(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.split("/")  # normalised below; absolute or climbing out: refused
                if member.name.startswith("/") or ".." in parts:
                    raise CorruptFileError(f"{archive}: member {member.name!r} has an unsafe path; refusing to read "
                                           f"this archive")
                name = "/".join(part for part in parts if part not in ("", "."))
                yield name, tar.extractfile(member).read() if want(name) else None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise CorruptFileError(f"{archive}: cannot read the archive ({error}); delete it and fetch it again") from error


def extract(archive: str | os.PathLike, dest: str | os.PathLike, want: Callable[[str], bool]) -> None:
    """Extract the regular files of ``archive`` for which ``want(name)`` is true into ``dest``.

    Files are written to a temporary folder beside ``dest`` and moved into place at the end,
    so an interrupted extraction leaves nothing that looks complete.
    """
    archive, dest = Path(archive), Path(dest)
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    names = []
    for name, data in iter_members(archive, want):
        if data is not None:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
            names.append(name)
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, dest / name)
    shutil.rmtree(staging, ignore_errors=True)
    if not names:
        raise DataError(f"{archive}: none of the expected files are in this archive; is it the right file?")
