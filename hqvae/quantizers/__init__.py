"""Quantizers: one output contract (``QuantizerOutput``), one base class of the one-layer kinds
(``Quantizer``), three building blocks.

* ``VectorQuantizer``      — deterministic nearest code + straight-through (VQ-VAE family).
* ``StochasticQuantizer``  — SQ-VAE's Gumbel-softmax stochastic quantizer (Gaussian I–IV, vMF).
* ``ResidualQuantizer``    — residual stacks of either (RQ-VAE / RSQ-VAE).
"""
from .base import Quantizer, QuantizerOutput, entropy, perplexity_of_counts
from .residual import ResidualQuantizer
from .sq import StochasticQuantizer
from .vq import VectorQuantizer, kmeans


def register_quantizer(kind, builder, options=(), stochastic=False) -> None:
    """A new ``LayerConfig.quantizer`` kind, built by ``builder(layer)`` (``hqvae.models.topdown.register_quantizer``)."""
    from ..models.topdown import register_quantizer as register

    register(kind, builder, options, stochastic)


__all__ = [
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
