"""Reconstruction terms of the model losses (SPEC §2), shared by HQ-VAE and PQ-VAE.

With x̂, x of shape (B, C, H, W), D = C·H·W and sse = mean_b Σ_pixels (x̂ − x)²:

    "mse"     mean of (x̂ − x)² over everything            (VQ-only HQ-VAE models)
    "sse"     sse                                          (PQ-VAE default)
    "arelbo"  (D/2)·log(sse)                               (stochastic models: ARELBO)

Computed in float32 (half-precision inputs are upcast).
"""
from __future__ import annotations

import torch
from torch import Tensor

RECON_LOSSES = ("sse", "arelbo", "mse")


def reconstruction(x_hat: Tensor, x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """x̂, x (B, C, H, W) -> (the ``kind`` reconstruction term, the mse), both scalars with gradients."""
    squared = (x_hat.float() - x.float()).pow(2)  # (B, C, H, W)
    mse = squared.mean()
    if kind == "mse":
        return mse, mse
    sse = squared.flatten(1).sum(1).mean()
    if kind == "sse":
        return sse, mse
    if kind == "arelbo":
        return 0.5 * x[0].numel() * torch.log(sse), mse
    raise ValueError(f"reconstruction loss must be one of {RECON_LOSSES}, got {kind!r}")
