"""Evaluation metrics: reconstruction quality, codebook usage and rate.

Per item (pure torch, shape (B,)): :func:`mse`, :func:`rmse`, :func:`psnr`, :func:`ssim`.
Accumulators (``update`` per batch, ``merge``, ``all_reduce`` for DDP, then ``compute``):
:class:`ReconstructionMetrics`, :class:`CodebookUsage`, :class:`MinibatchPerplexity`,
:class:`LayerInformation` (plug-in mutual information between the data and a layer's codes).
Rates: :func:`bits_per_item`, :func:`entropy_bits_per_item`.  LPIPS only with user-supplied
weights: :func:`load_lpips`.
"""

from hqvae.metrics.codebook import (CodebookUsage, MinibatchPerplexity, bits_per_item, entropy_bits,
                                   entropy_bits_per_item)
from hqvae.metrics.image import mse, psnr, rmse, ssim
from hqvae.metrics.information import LayerInformation
from hqvae.metrics.lpips import LPIPS, load_lpips
from hqvae.metrics.reconstruction import ReconstructionMetrics

__all__ = [
    "LPIPS", "CodebookUsage", "LayerInformation", "MinibatchPerplexity", "ReconstructionMetrics", "bits_per_item", "entropy_bits",
    "entropy_bits_per_item", "load_lpips", "mse", "psnr", "rmse", "ssim",
]
