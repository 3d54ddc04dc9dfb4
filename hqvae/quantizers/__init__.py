"""Quantizers: one output contract (``QuantizerOutput``), three building blocks.

* ``VectorQuantizer``      — deterministic nearest code + straight-through (VQ-VAE family).
* ``StochasticQuantizer``  — SQ-VAE's Gumbel-softmax stochastic quantizer (Gaussian I–IV, vMF).
* ``ResidualQuantizer``    — residual stacks of either (RQ-VAE / RSQ-VAE).
"""
from .base import QuantizerOutput, entropy, perplexity_of_counts
from .residual import ResidualQuantizer
from .sq import StochasticQuantizer
from .vq import VectorQuantizer, kmeans

__all__ = [
    "QuantizerOutput",
    "VectorQuantizer",
    "StochasticQuantizer",
    "ResidualQuantizer",
    "entropy",
    "perplexity_of_counts",
    "kmeans",
]
