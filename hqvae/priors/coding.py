"""Range coding of token sequences with a prior (``constriction``), in segments of whole layers.

Items are coded in chunks of ``coding_batch`` items (the last chunk padded with token 0 rows that
are not coded). For each chunk the prior runs token by token with its KV cache
(``hqvae.priors.sampling.run_steps``) in float64 on the CPU, on one thread; at generation step t
the distributions of the chunk's real rows go, with their tokens, to a range coder through
``constriction.stream.model.Categorical(perfect=False)``. The decoder runs the very same
computation (same chunk shapes, same padding, same incremental path), feeding back the tokens it
decodes.

Probabilities. Format version 2 snaps the logits to a grid and builds them with integer
arithmetic (``hqvae.priors.grid``), so that CPU kernels that disagree in the last float64 bits
still give the same coder tables. Version 1 files were coded with float64 softmax(logits) taken
as they come (``probabilities_v1``), which decodes only where the kernels agree bit for bit.

Segments. With ``progressive`` every layer of the layout (an HQ-VAE layer, an RQ depth, a PQ-VAE
step) has its own range coder, hence its own stream of words: segment l holds layer l of every
chunk. A prefix of segments decodes on its own when the prior generates the layers one after the
other (``order`` layer by layer: every flat prior); a prior that interleaves them (the depth
prior, which predicts position p's codes from all depths of the positions before it) cannot,
and progressive coding refuses it (:func:`check_progressive`). Without ``progressive`` there is
one segment.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from hqvae.priors.grid import grid_probabilities
from hqvae.priors.sampling import run_steps
from hqvae.priors.base import PriorBase

DEFAULT_CODING_BATCH = 64


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


def probabilities_v1(logits: torch.Tensor) -> np.ndarray:
    """Version 1: float64 softmax of logits (B, K) as computed, a C-contiguous array."""
    return np.ascontiguousarray(torch.softmax(logits.double(), dim=-1).numpy())


PROBABILITIES = {1: probabilities_v1, 2: grid_probabilities}
VERSION = 2  # the probabilities of files written now


def progressive_problem(prior: PriorBase) -> str | None:
    """None when a prefix of the prior's layers can be coded on its own (its generation order
    goes layer by layer), else the reason it cannot."""
    layers = prior.layout.layer_of()[prior.order]
    if bool((layers[1:] >= layers[:-1]).all()):
        return None
    return (f"this prior ({prior.config.kind}) predicts the codes position by position with all "
            f"{prior.layout.num_layers} layers of a position together, conditioning on every layer of the "
            f"positions before, so a prefix of layers cannot be decoded on its own")


def check_progressive(prior: PriorBase) -> None:
    problem = progressive_problem(prior)
    if problem:
        raise ValueError(f"{problem}; write the file in one segment (progressive=False, "
                         f"`hqvae compress --no-progressive`), or train a flat prior (hqvae prior train ... "
                         f"model.kind=flat) for progressive files")


def segment_of_steps(prior: PriorBase, progressive: bool) -> list[int]:
    """The segment of every generation step: its layer when progressive, else 0."""
    if not progressive:
        return [0] * prior.layout.length
    check_progressive(prior)
    return prior.layout.layer_of()[prior.order].tolist()


def encode_tokens(prior64: PriorBase, tokens: torch.Tensor, coding_batch: int = DEFAULT_CODING_BATCH,
                  progressive: bool = False, version: int = VERSION) -> list[np.ndarray]:
    """tokens (N, T) -> the compressed words (uint32) of every segment: one per layer when
    ``progressive`` (coarse to fine), else one."""
    stream, probabilities = _constriction(), PROBABILITIES[version]
    segments = segment_of_steps(prior64, progressive)
    family = stream.model.Categorical(perfect=False)
    encoders = [stream.queue.RangeEncoder() for _ in range(max(segments) + 1)]
    order = prior64.order.tolist()
    no_class = torch.full((coding_batch,), prior64.no_class, dtype=torch.long)
    for start in range(0, tokens.shape[0], coding_batch):
        rows = min(coding_batch, tokens.shape[0] - start)
        padded = torch.zeros(coding_batch, tokens.shape[1], dtype=torch.long)
        padded[:rows] = tokens[start:start + rows]
        symbols = padded[:rows].to(torch.int32).numpy()

        def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
            column = order[t]  # the prior's generation order
            encoders[segments[t]].encode(np.ascontiguousarray(symbols[:, column]), family, probabilities(logits[:rows]))
            return padded[:, column]

        with single_thread():
            run_steps(prior64, no_class, choose)
    return [encoder.get_compressed() for encoder in encoders]


def decode_tokens(prior64: PriorBase, segments_words: list[np.ndarray], items: int,
                  coding_batch: int = DEFAULT_CODING_BATCH, progressive: bool = False,
                  version: int = VERSION) -> torch.Tensor:
    """The inverse of :func:`encode_tokens` for the first ``len(segments_words)`` segments:
    -> tokens (items, T') of the layers they hold (T' = T unless a prefix of a progressive file)."""
    stream, probabilities = _constriction(), PROBABILITIES[version]
    segments = segment_of_steps(prior64, progressive)
    if not 1 <= len(segments_words) <= max(segments) + 1:
        raise ValueError(f"expected 1 to {max(segments) + 1} segments, got {len(segments_words)}")
    steps = sum(1 for segment in segments if segment < len(segments_words))
    family = stream.model.Categorical(perfect=False)
    decoders = [stream.queue.RangeDecoder(np.asarray(words, dtype=np.uint32)) for words in segments_words]
    no_class = torch.full((coding_batch,), prior64.no_class, dtype=torch.long)
    pieces = []
    for start in range(0, items, coding_batch):
        rows = min(coding_batch, items - start)
        def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
            column = torch.zeros(coding_batch, dtype=torch.long)
            decoded = decoders[segments[t]].decode(family, probabilities(logits[:rows]))
            column[:rows] = torch.from_numpy(decoded.astype(np.int64))
            return column

        with single_thread():
            pieces.append(run_steps(prior64, no_class, choose, steps)[:rows])
    tokens = torch.cat(pieces) if pieces else torch.zeros(0, prior64.layout.length, dtype=torch.long)
    return tokens[:, :steps]  # a prefix in generation order is a prefix of the layer-major sequence
