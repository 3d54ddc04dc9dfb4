"""Rates of a hierarchical discrete code, in bits per item.

For layers l with ``n_l`` code positions per item and codebooks of ``K_l`` entries:

* nominal rate ``Σ_l n_l · log2 K_l``: the bits of a fixed-length code;
* empirical-entropy rate ``Σ_l n_l · H(p_l)``, with ``p_l`` the dataset-level histogram of
  layer l and H in bits: what an ideal entropy coder that ignores dependencies between
  positions would spend.
"""

import math
from collections.abc import Iterable

from hqvae.metrics.codebook import CodebookUsage


def bits_per_item(layers: Iterable[CodebookUsage | tuple[int, int]]) -> float:
    """Nominal rate ``Σ n_l log2 K_l``; each layer is a :class:`CodebookUsage` or a pair ``(n_l, K_l)``."""
    total = 0.0
    for layer in layers:
        positions, size = ((layer.positions_per_item, layer.codebook_size) if isinstance(layer, CodebookUsage)
                           else layer)
        total += positions * math.log2(size)
    return total


def entropy_bits_per_item(layers: Iterable[CodebookUsage]) -> float:
    """Empirical-entropy rate ``Σ n_l H(p_l)`` in bits, from each layer's dataset-level histogram."""
    return sum(layer.positions_per_item * layer.entropy_bits() for layer in layers)
