"""The coder's probabilities on a grid, so that a file decodes on any CPU (``.hqz`` version 2).

The prior's logits z (B, K) are computed in float64, whose last bits may differ between CPU
kernels (AVX-512 or AVX2 or scalar ATen kernels, oneDNN's ISA, BLAS summation order). The
coder must see identical numbers on both sides, so they are snapped to a coarse grid first and
everything after that is exact integer arithmetic:

    q_k = round(256 · z_k)                     (round half to even; 256 · z is exact in float64)
    d_k = min(max_j q_j − q_k, 256 · 24)       (integer distance to the most likely token)
    w_k = E[d_k],  E[d] = max(1, round(2^40 · exp(−d / 256)))   (a table of 6,145 integers)
    p_k = w_k / Σ_j w_j                        (int64 sums; one correctly rounded IEEE division)

E is computed once with Python's ``decimal`` module, whose ``exp`` is correctly rounded on every
platform, so the table is the same everywhere. ``p`` then goes to constriction's
``Categorical(perfect=False)``, whose quantisation to the coder's fixed point uses IEEE basic
operations only. Two machines therefore give the same table unless a float64 difference moves
some 256·z_k across a half-integer: a grid tie, which needs |256·z_k − (n + ½)| below the size of
the kernels' disagreement (about 1e-12 here); :func:`tie_margin` measures how close a set of
logits comes. The grid costs rate: logits off by at most 1/512 nat, tails floored at e^−24
relative to the mode (measured in ``benchmarks/codec.py``).
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

import numpy as np
import torch

STEPS_PER_NAT = 256
FLOOR_NATS = 24
SCALE_BITS = 40


def _table() -> np.ndarray:
    context = Context(prec=40, rounding=ROUND_HALF_EVEN)
    scale = Decimal(2) ** SCALE_BITS
    return np.array([max(1, int((context.exp(Decimal(-d) / STEPS_PER_NAT) * scale)
                                .to_integral_value(ROUND_HALF_EVEN, context)))
                     for d in range(STEPS_PER_NAT * FLOOR_NATS + 1)], dtype=np.int64)


EXP_TABLE = _table()


def grid_weights(logits: torch.Tensor) -> np.ndarray:
    """logits (B, K) float64 -> integer weights (B, K) int64, w_k ∝ exp(z_k) on the grid (see the module)."""
    q = torch.round(logits.double() * STEPS_PER_NAT).to(torch.int64)
    distance = (q.max(dim=1, keepdim=True).values - q).clamp(max=STEPS_PER_NAT * FLOOR_NATS)
    return EXP_TABLE[distance.numpy()]


def grid_probabilities(logits: torch.Tensor) -> np.ndarray:
    """logits (B, K) -> the coder's float64 probabilities (B, K), exact functions of the grid."""
    weights = grid_weights(logits)
    return np.ascontiguousarray(weights / weights.sum(axis=1, keepdims=True))


def tie_margin(logits: torch.Tensor) -> float:
    """The smallest |256·z − (n + ½)| over all logits: how far the closest one is from a grid tie
    (a kernel difference smaller than this cannot change the table)."""
    scaled = logits.double() * STEPS_PER_NAT
    return float((scaled - torch.floor(scaled) - 0.5).abs().min()) if scaled.numel() else float("inf")
