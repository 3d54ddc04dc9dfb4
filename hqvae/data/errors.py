"""Exceptions raised by the data loaders.

Every message names the offending file (or folder) and says how to fix the problem.
"""


class DataError(RuntimeError):
    """A data set cannot be found, read or trusted."""


class ChecksumError(DataError):
    """A file's checksum differs from the published one."""


class CorruptFileError(DataError):
    """A file exists but cannot be decoded, or decodes to something of the wrong shape or type."""
