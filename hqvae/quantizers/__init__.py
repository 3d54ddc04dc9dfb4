"""Quantizers: one output contract (``QuantizerOutput``), one base class of the one-layer kinds
(``Quantizer``), three building blocks.

* ``VectorQuantizer``      — deterministic nearest code + straight-through (VQ-VAE family).
* ``StochasticQuantizer``  — SQ-VAE's Gumbel-softmax stochastic quantizer (Gaussian I–IV, vMF).
* ``ResidualQuantizer``    — residual stacks of either (RQ-VAE / RSQ-VAE).

``registry.py``: the kinds a layer can name, ``register_quantizer`` adds one.
"""
from .base import Quantizer, QuantizerOutput, entropy, perplexity_of_counts
from .residual import ResidualQuantizer
from .sq import StochasticQuantizer
from .registry import KINDS, build_quantizer, register_quantizer
from .vq import VectorQuantizer, kmeans


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
