"""One view of every model's codes: a list with one integer tensor (B, *positions) per layer.

HQ-VAE models (``HQVAE``) encode to that list already, positions (h_l, w_l), coarse to fine.
A PQ-VAE (``PQVAE``) encodes to step-major tokens (B, L·G); its layer l is step l, positions (G,).
Evaluation, codes files and decoding work on the list and convert back with :func:`from_layers`
before calling ``model.decode``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from hqvae.models import PQVAE


def codebook_sizes(model: nn.Module) -> list[int]:
    """K_l of every layer, coarse to fine."""
    return [layer.codebook_size for layer in model.config.layers]


def to_layers(model: nn.Module, codes: Sequence[Tensor] | Tensor) -> list[Tensor]:
    """``model.encode``'s output -> one (B, *positions) tensor per layer."""
    if isinstance(model, PQVAE):
        return list(codes.reshape(codes.shape[0], model.num_layers, -1).unbind(1))
    return list(codes)


def from_layers(model: nn.Module, layers: Sequence[Tensor]) -> Sequence[Tensor] | Tensor:
    """The inverse of :func:`to_layers`: what ``model.decode`` takes."""
    if isinstance(model, PQVAE):
        return torch.stack(list(layers), 1).reshape(layers[0].shape[0], -1)
    return list(layers)


def expected_shapes(model: nn.Module, layers: Sequence[Tensor]) -> list[tuple[int, ...]]:
    """Positions per layer that ``model`` makes for inputs of the size ``layers`` imply (an HQ-VAE
    is fully convolutional: the size follows from the first grid; a PQ-VAE has one size)."""
    if isinstance(model, PQVAE):
        return [tuple(shape) for shape in model.code_shapes()]
    factor = model.config.downsamples[0]
    height, width = layers[0].shape[1] * factor, layers[0].shape[2] * factor
    return [tuple(shape) for shape in model.code_shapes((height, width))]
