"""The ``.hqz`` file of ``hqvae compress``: versions 2 (written) and 1 (still read).

Version 2, all integers little-endian, "varint" an unsigned LEB128 integer:

    magic         4 bytes  b"\\x89HQZ"
    version       uint16   2
    flags         uint8    bit 0: progressive (one segment per layer, coarse to fine);
                           bit 1: the prior's folder is recorded; bit 2: the last (not best) checkpoint
    prior         4 bytes  fingerprint of the prior's weights (the first 4 bytes of its sha256)
    tokenizer     4 bytes  fingerprint of the tokenizer's weights
    items         varint
    coding_batch  varint   items coded together
    layers        varint   L, the prior's layer count
    segments      varint   S (L when progressive, else 1)
    S times:      varint bytes b_s of the segment, uint16 CRC-16 (CCITT) of them
    [path]        varint length + UTF-8, the prior's folder (when flag bit 1)
    header CRC    uint16   CRC-16 of every byte before it
    payload       segment 0's bytes, then segment 1's, ...

A segment is its range coder's 32-bit words, big-endian, without the zero bytes that end its last
word (at most 3; the reader puts them back), so that a short segment costs what it holds, not 4-byte steps:
the header is 21 bytes plus 3 per segment. Segment s ends at byte ``header_end + b_0 + ... + b_s``:
these prefix offsets are what ``read_hqz(path, upto=l)`` reads up to, and a file cut after a
whole segment still decodes its first segments (``complete`` says how many are there).

Version 1 (hqvae 0.1.0 before progressive files): magic, uint16 version 1, uint32 header_len,
a JSON header (fingerprints, layout, items, coding_batch, words, prior_path, ...), the words,
and the sha256 of everything before it. It is read and decoded with version 1's probabilities.

Anything else, a damaged or a foreign file, is refused with an ``HqzError`` that says what is
wrong and what to do.
"""
from __future__ import annotations

import binascii
import hashlib
import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hqvae._version import __version__

MAGIC = b"\x89HQZ"
VERSION = 2
READABLE = (1, 2)
FORMAT_V1 = "hqvae.hqz"
_PREAMBLE = struct.Struct("<4sH")
_V1_LENGTH = struct.Struct("<I")
SHA256_BYTES = 32
FINGERPRINT_BYTES = 4
PROGRESSIVE, HAS_PATH, LAST_CHECKPOINT = 1, 2, 4
REMAKE = "compress the images or codes again with `hqvae compress --prior <prior> ... --out <file>.hqz`"


class HqzError(ValueError):
    """A ``.hqz`` file that cannot be decoded as it is, with the reason and the fix."""


@dataclass
class Hqz:
    """A parsed file: what the coder needs (``segments``: the words of the complete segments read,
    in order) and where every prefix ends (``prefix_bytes[s]``: bytes of the file up to the end
    of segment s)."""

    version: int
    items: int
    coding_batch: int
    layers: int
    progressive: bool
    prior_fingerprint: str
    model_fingerprint: str
    prior_checkpoint: str
    prior_path: str | None
    segment_bytes: list[int]
    prefix_bytes: list[int]
    segments: list[np.ndarray] = field(default_factory=list)
    bytes_read: int = 0
    extra: dict = field(default_factory=dict)  # version 1's other header fields

    @property
    def total_segments(self) -> int:
        return len(self.segment_bytes)

    @property
    def complete(self) -> int:
        """The segments read whole."""
        return len(self.segments)


# ------------------------------------------------------------------------------ varints, CRC


def _trim(words: bytes) -> bytes:
    """Big-endian words without the (at most 3) zero bytes that end the last one: padding the
    result with zeros to a multiple of 4 bytes gives back exactly the same words."""
    return words[:max(len(words.rstrip(b"\0")), len(words) - 3)] if words else words


def _crc(data: bytes) -> int:
    """CRC-16 (CCITT, initial value 0xFFFF) of ``data``."""
    return binascii.crc_hqx(data, 0xFFFF)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    """Reads a header from ``stream`` (at the file's start), keeping the bytes read for its checksum."""

    def __init__(self, stream: BinaryIO, name: str):
        self.stream, self.name, self.data = stream, name, bytearray()

    def take(self, count: int) -> bytes:
        piece = self.stream.read(count)
        self.data += piece
        if len(piece) < count:
            raise HqzError(f"{self.name} is truncated inside its header ({len(self.data)} bytes); copy the whole file "
                           f"again, or {REMAKE}")
        return piece

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
            if shift > 63:
                raise HqzError(f"{self.name} is damaged: a header number does not end; {REMAKE}")


# ------------------------------------------------------------------------------ version 2


def pack(segments: list[np.ndarray], *, items: int, coding_batch: int, layers: int, progressive: bool,
         prior_fingerprint: str, model_fingerprint: str, prior_checkpoint: str = "best",
         prior_path: str | None = None) -> bytes:
    """The version-2 bytes of the segments' words (uint32 each), coarse to fine."""
    words = [_trim(np.asarray(segment, dtype=">u4").tobytes()) for segment in segments]
    flags = (PROGRESSIVE if progressive else 0) | (HAS_PATH if prior_path else 0) | (
        LAST_CHECKPOINT if prior_checkpoint == "last" else 0)
    header = bytearray(_PREAMBLE.pack(MAGIC, VERSION))
    header += bytes([flags]) + bytes.fromhex(prior_fingerprint)[:FINGERPRINT_BYTES]
    header += bytes.fromhex(model_fingerprint)[:FINGERPRINT_BYTES]
    header += _varint(items) + _varint(coding_batch) + _varint(layers) + _varint(len(words))
    for piece in words:
        header += _varint(len(piece)) + struct.pack("<H", _crc(piece))
    if prior_path:
        encoded = prior_path.encode()
        header += _varint(len(encoded)) + encoded
    header += struct.pack("<H", _crc(header))
    return bytes(header) + b"".join(words)


def _parse_header(stream: BinaryIO, name: str) -> tuple[Hqz, list[int]]:
    """The version-2 header at the start of ``stream`` (its checksum verified) and the segments' CRCs."""
    reader = _Reader(stream, name)
    reader.take(_PREAMBLE.size)
    flags = reader.take(1)[0]
    prior_fingerprint = reader.take(FINGERPRINT_BYTES).hex()
    model_fingerprint = reader.take(FINGERPRINT_BYTES).hex()
    items, coding_batch, layers, count = reader.varint(), reader.varint(), reader.varint(), reader.varint()
    table = [(reader.varint(), struct.unpack("<H", reader.take(2))[0]) for _ in range(count)]
    path = reader.take(reader.varint()).decode("utf-8", "replace") if flags & HAS_PATH else None
    crc = _crc(reader.data)
    if struct.unpack("<H", reader.take(2))[0] != crc:
        raise HqzError(f"{name} is corrupted: its header checksum does not match; copy the file again, or {REMAKE}")
    sizes = [size for size, _ in table]
    prefix_bytes = [len(reader.data) + sum(sizes[:s + 1]) for s in range(count)]
    hqz = Hqz(2, items, coding_batch, layers, bool(flags & PROGRESSIVE), prior_fingerprint, model_fingerprint,
              "last" if flags & LAST_CHECKPOINT else "best", path, sizes, prefix_bytes)
    if count == 0 or count != (layers if hqz.progressive else 1):
        raise HqzError(f"{name} is damaged: {count} segments for {layers} layers; {REMAKE}")
    return hqz, [crc for _, crc in table]


def _parse_v2(data: bytes, name: str, upto: int | None) -> Hqz:
    hqz, crcs = _parse_header(io.BytesIO(data), name)
    count = hqz.total_segments
    wanted = count if upto is None or not hqz.progressive else upto
    if not 1 <= wanted <= count:
        raise HqzError(f"{name} holds {count} layers, one segment each; upto must be between 1 and {count}, "
                       f"got {upto}")
    if len(data) > hqz.prefix_bytes[-1]:
        raise HqzError(f"{name} has {len(data) - hqz.prefix_bytes[-1]} bytes after its end ({hqz.prefix_bytes[-1]} "
                       f"expected); it is damaged or two files were joined; {REMAKE}")
    for index, (size, end) in enumerate(zip(hqz.segment_bytes[:wanted], hqz.prefix_bytes)):
        piece = data[end - size:end]
        if len(piece) < size:
            break  # truncated: the segments before it are whole
        if _crc(piece) != crcs[index]:
            raise HqzError(f"{name} is corrupted: segment {index} (bytes {end - size}–{end}) does not match its "
                           f"checksum; copy the file again, or {REMAKE}")
        hqz.segments.append(np.frombuffer(piece + bytes(-len(piece) % 4), dtype=">u4").astype(np.uint32))
    if not hqz.segments:
        raise HqzError(f"{name} is truncated: {len(data)} bytes, not even its first segment (which ends at byte "
                       f"{hqz.prefix_bytes[0]}) is whole; copy the whole file again, or {REMAKE}")
    return hqz


# ------------------------------------------------------------------------------ version 1


def _parse_v1(data: bytes, name: str, upto: int | None) -> Hqz:
    if len(data) < _PREAMBLE.size + _V1_LENGTH.size:
        raise HqzError(f"{name} is truncated ({len(data)} bytes, shorter than the file preamble); {REMAKE}")
    (header_len,) = _V1_LENGTH.unpack_from(data, _PREAMBLE.size)
    end = _PREAMBLE.size + _V1_LENGTH.size + header_len
    if len(data) < end + SHA256_BYTES:
        raise HqzError(f"{name} is truncated ({len(data)} bytes, its header alone needs {end + SHA256_BYTES}); "
                       f"copy the whole file again, or {REMAKE}")
    try:
        header = json.loads(data[_PREAMBLE.size + _V1_LENGTH.size:end])
        expected = end + 4 * int(header["words"]) + SHA256_BYTES
    except (ValueError, KeyError, TypeError) as error:
        raise HqzError(f"{name} is damaged: its header is not readable ({error}); {REMAKE}") from None
    if len(data) < expected:
        raise HqzError(f"{name} is truncated: {len(data)} bytes, expected {expected} (a version 1 file decodes only "
                       f"whole); copy the whole file again, or {REMAKE}")
    if len(data) > expected:
        raise HqzError(f"{name} has {len(data) - expected} bytes after its end ({expected} expected); it is damaged "
                       f"or two files were joined; {REMAKE}")
    if hashlib.sha256(data[:-SHA256_BYTES]).digest() != data[-SHA256_BYTES:]:
        raise HqzError(f"{name} is corrupted: its sha256 checksum does not match its contents; copy the file "
                       f"again, or {REMAKE}")
    if header.get("format") != FORMAT_V1:
        raise HqzError(f"{name}: header format {header.get('format')!r} is not {FORMAT_V1!r}; {REMAKE}")
    words = np.frombuffer(data[end:expected - SHA256_BYTES], dtype="<u4").astype(np.uint32)
    return Hqz(1, int(header["items"]), int(header["coding_batch"]), len(header["code_shapes"]), False,
               header.get("prior_fingerprint"), header.get("model_fingerprint"), header.get("prior_checkpoint", "best"),
               header.get("prior_path"), [4 * int(words.size)], [expected], [words], extra=header)


# ------------------------------------------------------------------------------ reading


def unpack(data: bytes, name: str = "the file", upto: int | None = None) -> Hqz:
    """The file in ``data`` (whole, or a prefix holding whole segments), reading the first ``upto``
    segments of a progressive file (default all; other files are read whole); an HqzError naming
    the problem and the fix otherwise."""
    if len(data) < _PREAMBLE.size or data[:4] != MAGIC:
        if len(data) < _PREAMBLE.size and MAGIC.startswith(data[:4]):
            raise HqzError(f"{name} is truncated ({len(data)} bytes, shorter than the file preamble); {REMAKE}")
        raise HqzError(f"{name} is not an hqvae compressed file (it does not start with the .hqz magic bytes); "
                       f"pass a file written by `hqvae compress`")
    _, version = _PREAMBLE.unpack_from(data)
    if version not in READABLE:
        raise HqzError(f"{name} has format version {version}, but this hqvae {__version__} reads versions "
                       f"{' and '.join(map(str, READABLE))} only; decompress it with the hqvae version that wrote it, "
                       f"or {REMAKE}")
    hqz = (_parse_v1 if version == 1 else _parse_v2)(data, name, upto)
    hqz.bytes_read = len(data)
    return hqz


def read_hqz(path: str | Path, upto: int | None = None) -> Hqz:
    """Read ``path``; of a progressive file with ``upto``, only the bytes up to the end of segment
    ``upto`` (its prefix offset)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; make one with `hqvae compress --prior <prior> ... "
                                f"--out {path.name}`")
    with open(path, "rb") as handle:
        if upto is not None and handle.read(_PREAMBLE.size) == _PREAMBLE.pack(MAGIC, VERSION):
            handle.seek(0)
            hqz, _ = _parse_header(handle, str(path))
            if hqz.progressive and 1 <= upto <= hqz.total_segments:  # then only the first upto segments
                handle.seek(0)
                return unpack(handle.read(hqz.prefix_bytes[upto - 1]), str(path), upto)
        handle.seek(0)
        return unpack(handle.read(), str(path), upto)
