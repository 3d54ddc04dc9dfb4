"""Information a layer of codes carries about the data: the plug-in mutual information (SPEC §5).

With P(k | x) the layer's posterior at one position (an SQ layer's softmax; for a VQ layer the
point mass on its nearest code) and p̄ = mean over every test position of P(· | x):

    I(x; k) = H(p̄) − mean_positions H(P(· | x))          bits per position,  × n_l per item.

This is the collapse criterion: a layer whose argmax codes spread over many entries while its
posterior stays near uniform has a high perplexity but carries little information (H(p̄) and the
mean conditional entropy are both close to log2 K). For a VQ layer I = H(p̄) = the entropy of its
code histogram.

:class:`LayerInformation` accumulates Σ P (K,), Σ H(P) and the number of positions batch by
batch; ``merge`` and ``all_reduce`` sum them, so the result equals a one-shot computation.
"""
from __future__ import annotations

import math

import torch

from hqvae.metrics.codebook import Accumulator


class LayerInformation(Accumulator):
    """Plug-in I(x; k) of one layer; see the module docstring."""

    SUMS = ("probability_sum", "entropy_sum", "positions")

    def __init__(self, codebook_size: int):
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        self.codebook_size = codebook_size
        self.probability_sum = torch.zeros(codebook_size, dtype=torch.float64)  # Σ_positions P(k | x)
        self.entropy_sum = 0.0  # Σ_positions H(P(· | x)) in nats
        self.positions = 0

    def update(self, codes: torch.Tensor, posteriors: torch.Tensor | None = None) -> None:
        """One batch: ``codes`` (B, *positions) long and the posterior rows (B·positions, K) in the
        same order, or None for a deterministic layer (the point mass on each code)."""
        flat = codes.reshape(-1)
        if posteriors is None:
            self.probability_sum += torch.bincount(flat.cpu(), minlength=self.codebook_size).double()
        else:
            if tuple(posteriors.shape) != (flat.numel(), self.codebook_size):
                raise ValueError(f"posteriors must be ({flat.numel()}, {self.codebook_size}) rows, one per code, "
                                 f"got {tuple(posteriors.shape)}")
            rows = posteriors.double()
            self.probability_sum += rows.sum(0).cpu()
            self.entropy_sum += float(-torch.special.xlogy(rows, rows).sum())
        self.positions += flat.numel()

    def compute(self, positions_per_item: int) -> dict:
        """Bits: ``marginal_entropy_bits`` H(p̄), ``conditional_entropy_bits`` mean H(P), and
        ``information_bits`` I per position and ``information_bits_per_item`` (× n_l)."""
        if self.positions == 0:
            raise ValueError("no codes seen: nothing to compute")
        mean = self.probability_sum / self.probability_sum.sum()
        marginal = float(-torch.special.xlogy(mean, mean).sum()) / math.log(2)
        conditional = self.entropy_sum / self.positions / math.log(2)
        information = max(0.0, marginal - conditional)
        return {
            "marginal_entropy_bits": marginal,
            "conditional_entropy_bits": conditional,
            "information_bits": information,
            "information_bits_per_item": information * positions_per_item,
        }
