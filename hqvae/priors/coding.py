"""Real compression of codes with a prior: range coding (``constriction``) and the ``.hqz`` file.

Coding. Items are coded in chunks of ``coding_batch`` items (the last chunk padded with token 0
rows that are not coded). For each chunk the prior runs token by token with its KV cache
(``hqvae.priors.sampling.run_steps``) in float64 on the CPU; at position t the probabilities
softmax(logits_t) in float64 of the real rows go, with their tokens, to a range coder through
``constriction.stream.model.Categorical(perfect=False)``, which quantizes them to fixed point
deterministically. The decoder runs the very same computation (same chunk shapes, same padding,
same incremental path, same dtype and device, one thread), feeding back the tokens it decodes, so encoder and
decoder see bit-identical probabilities whatever batch sizes the caller uses elsewhere.

File (version 1), all integers little-endian:

    magic        4 bytes  b"\\x89HQZ"
    version      uint16   1
    header_len   uint32
    header       header_len bytes of UTF-8 JSON: format, hqvae_version, model_type,
                 model_fingerprint, tokenizer_run, prior_path, prior_checkpoint, prior_fingerprint,
                 code_shapes, codebook_sizes, items, coding_batch, words, image_size,
                 in_channels, log_mel
    payload      words × uint32: the range coder's compressed words
    checksum     32 bytes: sha256 of everything before it

A file of another format, another version, or one that is truncated or damaged is refused with a
``HqzError`` that says what is wrong and what to do; so is a file whose prior or tokenizer
fingerprints differ from the prior used to decode it.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch

import hqvae
from hqvae.priors.layout import CodeLayout
from hqvae.priors.sampling import run_steps
from hqvae.priors.transformer import PriorBase

MAGIC = b"\x89HQZ"
VERSION = 1
FORMAT = "hqvae.hqz"
_PREAMBLE = struct.Struct("<4sHI")
CHECKSUM_BYTES = 32
DEFAULT_CODING_BATCH = 64


class HqzError(ValueError):
    """A ``.hqz`` file that cannot be decoded as it is, with the reason and the fix."""


def _constriction():
    """constriction's ``stream`` module (its submodules are attributes, not importable paths)."""
    try:
        from constriction import stream
    except ImportError:
        raise ImportError("compression needs the constriction package: pip install constriction "
                          "(or pip install 'hqvae[all]')") from None
    return stream


@contextlib.contextmanager
def single_thread():
    """Run the coder's arithmetic on one thread, whatever OMP_NUM_THREADS says, so that the
    summation order of every dot product cannot depend on how the work is split between threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def coding_copy(prior: PriorBase) -> PriorBase:
    """The prior as the coder runs it: a float64 copy on the CPU in eval mode."""
    return copy.deepcopy(prior).to("cpu", torch.float64).eval()


def _probabilities(logits: torch.Tensor, rows: int) -> np.ndarray:
    """float64 softmax of the first ``rows`` rows of logits (B, K), as a C-contiguous array."""
    return np.ascontiguousarray(torch.softmax(logits[:rows].double(), dim=-1).numpy())


def _chunks(items: int, coding_batch: int):
    for start in range(0, items, coding_batch):
        yield start, min(coding_batch, items - start)


def encode_tokens(prior64: PriorBase, tokens: torch.Tensor, coding_batch: int = DEFAULT_CODING_BATCH) -> np.ndarray:
    """tokens (N, T) -> the compressed words (uint32) of all items, coded unconditionally."""
    stream = _constriction()
    family, encoder = stream.model.Categorical(perfect=False), stream.queue.RangeEncoder()
    order = prior64.order.tolist()
    no_class = torch.full((coding_batch,), prior64.no_class, dtype=torch.long)
    for start, rows in _chunks(tokens.shape[0], coding_batch):
        padded = torch.zeros(coding_batch, tokens.shape[1], dtype=torch.long)
        padded[:rows] = tokens[start:start + rows]
        symbols = padded[:rows].to(torch.int32).numpy()

        def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
            column = order[t]  # the prior's generation order
            encoder.encode(np.ascontiguousarray(symbols[:, column]), family, _probabilities(logits, rows))
            return padded[:, column]

        with single_thread():
            run_steps(prior64, no_class, choose)
    return encoder.get_compressed()


def decode_tokens(prior64: PriorBase, words: np.ndarray, items: int,
                  coding_batch: int = DEFAULT_CODING_BATCH) -> torch.Tensor:
    """The inverse of :func:`encode_tokens`: words -> tokens (items, T)."""
    stream = _constriction()
    family, decoder = stream.model.Categorical(perfect=False), stream.queue.RangeDecoder(words)
    no_class = torch.full((coding_batch,), prior64.no_class, dtype=torch.long)
    pieces = []
    for _, rows in _chunks(items, coding_batch):
        def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
            column = torch.zeros(coding_batch, dtype=torch.long)
            column[:rows] = torch.from_numpy(decoder.decode(family, _probabilities(logits, rows)).astype(np.int64))
            return column

        with single_thread():
            pieces.append(run_steps(prior64, no_class, choose)[:rows])
    return torch.cat(pieces) if pieces else torch.zeros(0, prior64.layout.length, dtype=torch.long)


# ---------------------------------------------------------------------------------------- the file


def pack(header: dict, words: np.ndarray) -> bytes:
    """The ``.hqz`` bytes of ``header`` (JSON-ready) and ``words`` (uint32)."""
    words = np.asarray(words, dtype="<u4")
    header = {"format": FORMAT, **header, "words": int(words.size)}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = _PREAMBLE.pack(MAGIC, VERSION, len(text)) + text + words.tobytes()
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, name: str = "the file") -> tuple[dict, np.ndarray]:
    """(header, words) of ``.hqz`` bytes; an HqzError naming the problem and the fix otherwise."""
    remake = "compress the images or codes again with `hqvae compress --prior <prior> ... --out <file>.hqz`"
    if len(data) < _PREAMBLE.size or data[:4] != MAGIC:
        if len(data) < _PREAMBLE.size and MAGIC.startswith(data[:4]):
            raise HqzError(f"{name} is truncated ({len(data)} bytes, shorter than the file preamble); {remake}")
        raise HqzError(f"{name} is not an hqvae compressed file (it does not start with the .hqz magic bytes); "
                       f"pass a file written by `hqvae compress`")
    _, version, header_len = _PREAMBLE.unpack_from(data)
    if version != VERSION:
        raise HqzError(f"{name} has format version {version}, but this hqvae {hqvae.__version__} reads version "
                       f"{VERSION} only; decompress it with the hqvae version that wrote it, or {remake}")
    end = _PREAMBLE.size + header_len
    if len(data) < end + CHECKSUM_BYTES:
        raise HqzError(f"{name} is truncated ({len(data)} bytes, its header alone needs {end + CHECKSUM_BYTES}); "
                       f"copy the whole file again, or {remake}")
    try:
        header = json.loads(data[_PREAMBLE.size:end])
        expected = end + 4 * int(header["words"]) + CHECKSUM_BYTES
    except (ValueError, KeyError, TypeError) as error:
        raise HqzError(f"{name} is damaged: its header is not readable ({error}); {remake}") from None
    if len(data) < expected:
        raise HqzError(f"{name} is truncated: {len(data)} bytes, expected {expected}; copy the whole file again, "
                       f"or {remake}")
    if len(data) > expected:
        raise HqzError(f"{name} has {len(data) - expected} bytes after its end ({expected} expected); it is damaged "
                       f"or two files were joined; {remake}")
    if hashlib.sha256(data[:-CHECKSUM_BYTES]).digest() != data[-CHECKSUM_BYTES:]:
        raise HqzError(f"{name} is corrupted: its sha256 checksum does not match its contents; copy the file "
                       f"again, or {remake}")
    if header.get("format") != FORMAT:
        raise HqzError(f"{name}: header format {header.get('format')!r} is not {FORMAT!r}; {remake}")
    return header, np.frombuffer(data[end:expected - CHECKSUM_BYTES], dtype="<u4").astype(np.uint32)


def read_hqz(path: str | Path) -> tuple[dict, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; make one with `hqvae compress --prior <prior> ... --out {path.name}`")
    return unpack(path.read_bytes(), str(path))


def check_header(header: dict, layout: CodeLayout, prior_fingerprint: str, model_fingerprint: str, name: str) -> None:
    """An HqzError naming the fix when ``header`` was written with another prior or tokenizer."""
    if header.get("prior_fingerprint") != prior_fingerprint:
        raise HqzError(f"{name} was compressed with the prior {header.get('prior_path')} "
                       f"({header.get('prior_checkpoint')} checkpoint, weights {header.get('prior_fingerprint')}), not "
                       f"with this prior (weights {prior_fingerprint}); pass that prior with --prior")
    if header.get("model_fingerprint") != model_fingerprint:
        raise HqzError(f"{name} holds codes of the tokenizer weights {header.get('model_fingerprint')} (run "
                       f"{header.get('tokenizer_run')}), but the prior models those of {model_fingerprint}; pass the "
                       f"prior trained on that run with --prior")
    shapes = [list(shape) for shape in layout.code_shapes]
    if header.get("code_shapes") != shapes or header.get("codebook_sizes") != list(layout.codebook_sizes):
        raise HqzError(f"{name} holds codes of layout {header.get('code_shapes')} / {header.get('codebook_sizes')}, "
                       f"the prior's is {shapes} / {list(layout.codebook_sizes)}; pass the prior it was made with")
