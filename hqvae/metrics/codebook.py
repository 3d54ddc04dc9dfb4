"""Codebook statistics of one quantiser layer (histogram, perplexity, usage, entropy) and the rates
of a hierarchical discrete code, in bits per item.

Two accumulators, both fed the hard code indices batch by batch:

* :class:`CodebookUsage` sums the histogram of indices over the whole data set; its
  ``perplexity()`` is ``exp(H(p))`` of that dataset-level histogram, ``usage()`` the fraction of
  codes used at least once, ``entropy_bits()`` ``H(p)`` in bits.
* :class:`MinibatchPerplexity` computes ``exp(H)`` of each mini-batch's own histogram and
  averages over batches: the value papers usually report.  It depends on the batch size
  (it is usually smaller than the dataset-level value, as small batches see fewer codes),
  so it records and reports the batch size.

Both merge across batches (``merge``) and DDP ranks (``all_reduce``) by summing counts, so the
result equals a one-shot computation on all the data.  Under DDP the mini-batches are the
per-rank batches.

Rates, for layers l with ``n_l`` code positions per item and codebooks of ``K_l`` entries:

* nominal rate ``Σ_l n_l · log2 K_l``: the bits of a fixed-length code;
* empirical-entropy rate ``Σ_l n_l · H(p_l)``, with ``p_l`` the dataset-level histogram of
  layer l and H in bits: what an ideal entropy coder that ignores dependencies between
  positions would spend.
"""

import math
from collections.abc import Iterable

import torch

from hqvae.distributed import all_reduce


class Accumulator:
    """Sums over batches, named in ``SUMS`` (tensors or numbers), that ``merge`` and ``all_reduce``
    add up (see above; every rank must call ``all_reduce``, a no-op outside DDP); both return self."""

    SUMS: tuple[str, ...] = ()

    def merge(self, other):
        size, other_size = getattr(self, "codebook_size", None), getattr(other, "codebook_size", None)
        if size != other_size:
            raise ValueError(f"cannot merge codebooks of size {size} and {other_size}")
        for name in self.SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def all_reduce(self):
        for name in self.SUMS:
            value = getattr(self, name)
            total = all_reduce(torch.as_tensor(value, dtype=torch.float64 if isinstance(value, float) else None))
            setattr(self, name, total if isinstance(value, torch.Tensor) else type(value)(total))
        return self


def _histogram(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """int64 counts (codebook_size,) of integer ``indices`` of any shape; values must be in range."""
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise TypeError(f"code indices must be an integer tensor, got {indices.dtype}")
    flat = indices.detach().reshape(-1).to(torch.int64)
    if flat.numel() and (flat.min() < 0 or flat.max() >= codebook_size):
        raise ValueError(f"code indices must lie in [0, {codebook_size}), got values in "
                         f"[{flat.min().item()}, {flat.max().item()}]")
    return torch.bincount(flat, minlength=codebook_size).cpu()


def entropy_bits(counts: torch.Tensor) -> float:
    """Entropy in bits of the distribution given by non-negative ``counts`` (0 when all are 0)."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0].double() / total
    return max(0.0, float(-(p * torch.log2(p)).sum()))  # max: a one-code histogram gives -0.0


class CodebookUsage(Accumulator):
    """Dataset-level histogram of one layer's code indices; see the module docstring.

    ``update(indices)``: integer tensor (B, *positions), e.g. (B, H, W); every item must have the
    same number of positions ``n``, which :attr:`positions_per_item` reports (the ``n_l`` of the
    rate ``Σ n_l log2 K_l``).
    """

    SUMS = ("counts", "num_items")

    def __init__(self, codebook_size: int):
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.int64)
        self.num_items = 0

    def update(self, indices: torch.Tensor) -> None:
        if indices.ndim == 0:
            raise ValueError("code indices need a batch dimension: (B, *positions)")
        positions = indices[0].numel() if indices.shape[0] else 0
        if self.num_items and indices.shape[0] and positions != self.positions_per_item:
            raise ValueError(f"{positions} codes per item in this batch, {self.positions_per_item} before")
        self.counts += _histogram(indices, self.codebook_size)
        self.num_items += indices.shape[0]

    @property
    def positions_per_item(self) -> int:
        """Code positions per item (0 before any update)."""
        return int(self.counts.sum()) // self.num_items if self.num_items else 0

    def entropy_bits(self) -> float:
        """H(p) in bits of the dataset-level histogram."""
        return entropy_bits(self.counts)

    def perplexity(self) -> float:
        """exp(H(p)) = 2^H_bits of the dataset-level histogram, between 1 and codebook_size."""
        return 2.0 ** self.entropy_bits()

    def usage(self) -> float:
        """Fraction of the codebook used at least once."""
        return float((self.counts > 0).sum()) / self.codebook_size

    def compute(self) -> dict:
        return {"perplexity": self.perplexity(), "usage": self.usage(), "entropy_bits": self.entropy_bits(),
                "codes_used": int((self.counts > 0).sum()), "codebook_size": self.codebook_size,
                "positions_per_item": self.positions_per_item, "items": self.num_items}


class MinibatchPerplexity(Accumulator):
    """Mean over mini-batches of exp(H) of each batch's own histogram; see the module docstring.

    ``compute()`` reports the value with ``batch_size`` (the largest batch seen: the nominal
    size, as only a last batch is usually smaller), ``batches`` and ``items``.
    """

    SUMS = ("perplexity_sum", "num_batches", "num_items")

    def __init__(self, codebook_size: int):
        self.codebook_size = codebook_size
        self.perplexity_sum = 0.0
        self.num_batches = 0
        self.num_items = 0
        self.batch_size = 0

    def update(self, indices: torch.Tensor) -> None:
        """One mini-batch of indices (B, *positions)."""
        self.perplexity_sum += 2.0 ** entropy_bits(_histogram(indices, self.codebook_size))
        self.num_batches += 1
        self.num_items += indices.shape[0]
        self.batch_size = max(self.batch_size, indices.shape[0])

    def merge(self, other: "MinibatchPerplexity") -> "MinibatchPerplexity":
        self.batch_size = max(self.batch_size, other.batch_size)
        return super().merge(other)

    def all_reduce(self) -> "MinibatchPerplexity":
        self.batch_size = int(all_reduce(torch.tensor([self.batch_size]), op="max"))
        return super().all_reduce()

    def perplexity(self) -> float:
        return self.perplexity_sum / self.num_batches if self.num_batches else math.nan

    def compute(self) -> dict:
        return {"perplexity": self.perplexity(), "batch_size": self.batch_size, "batches": self.num_batches,
                "items": self.num_items}


def bits_per_item(layers: Iterable[CodebookUsage | tuple[int, int]]) -> float:
    """Nominal rate ``Σ n_l log2 K_l``; each layer is a :class:`CodebookUsage` or a pair ``(n_l, K_l)``."""
    pairs = [(layer.positions_per_item, layer.codebook_size) if isinstance(layer, CodebookUsage) else layer
             for layer in layers]
    return sum((positions * math.log2(size) for positions, size in pairs), 0.0)


def entropy_bits_per_item(layers: Iterable[CodebookUsage]) -> float:
    """Empirical-entropy rate ``Σ n_l H(p_l)`` in bits, from each layer's dataset-level histogram."""
    return sum(layer.positions_per_item * layer.entropy_bits() for layer in layers)
