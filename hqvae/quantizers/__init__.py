"""Quantizers: one output contract (``QuantizerOutput``), one base class of the one-layer kinds
(``Quantizer``), three building blocks.

* ``VectorQuantizer``      — deterministic nearest code + straight-through (VQ-VAE family).
* ``StochasticQuantizer``  — SQ-VAE's Gumbel-softmax stochastic quantizer (Gaussian I–IV, vMF).
* ``ResidualQuantizer``    — residual stacks of either (RQ-VAE / RSQ-VAE).

``kmeans.py``: the codebook start from the first batch's k-means centroids.
``registry.py``: the kinds a layer can name and their options, ``register_quantizer`` adds one.
"""
from .base import Quantizer, QuantizerOutput, entropy, perplexity_of_counts
from .residual import ResidualQuantizer
from .sq import StochasticQuantizer
from .registry import KINDS, build_quantizer, register_quantizer
from .kmeans import kmeans
from .vq import VectorQuantizer


__all__ = [
    "KINDS",
    "build_quantizer",
    "register_quantizer",
    "Quantizer",
    "QuantizerOutput",
    "VectorQuantizer",
    "StochasticQuantizer",
    "ResidualQuantizer",
    "entropy",
    "perplexity_of_counts",
    "kmeans",
]
