"""How the codes of any tokenizer become one token sequence for the prior, and back.

This is the one adapter between the tokenizers (``hqvae.models``) and the priors: everything in
``hqvae.priors`` sees codes only as a :class:`CodeLayout` and the per-layer list that every
model's ``encode`` gives (one (B, *positions) integer tensor per layer).

Order: layers coarse to fine (an HQ-VAE's injected and residual layers in the model's order, a
PQ-VAE's steps in their own order), raster order inside a layer. A residual stack is flattened
layer after layer (all positions of its first layer, then all of its second, ...), so a prefix of
the sequence is always a prefix of the layers and decodes coarse to fine.

Sequence: ``T = Σ_l n_l`` tokens, ``n_l = prod(positions_l)``; token ``t`` belongs to layer
``layer_of[t]`` and takes values in ``[0, K_{layer_of[t]})``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class CodeLayout:
    """Shapes of the code layers: ``code_shapes[l]`` the positions of layer l (e.g. (7, 7) or
    (G,)), ``codebook_sizes[l]`` its K_l."""

    code_shapes: tuple[tuple[int, ...], ...]
    codebook_sizes: tuple[int, ...]

    def __post_init__(self):
        if len(self.code_shapes) != len(self.codebook_sizes) or not self.code_shapes:
            raise ValueError(f"a code layout needs one shape per codebook size, got {self.code_shapes} and "
                             f"{self.codebook_sizes}")

    @classmethod
    def of(cls, code_shapes: Sequence[Sequence[int]], sizes: Sequence[int]) -> "CodeLayout":
        return cls(tuple(tuple(int(n) for n in shape) for shape in code_shapes), tuple(int(k) for k in sizes))

    @classmethod
    def from_codes(cls, model: nn.Module, layers: Sequence[Tensor]) -> "CodeLayout":
        """The layout of ``layers`` (one (B, *positions) tensor per layer) made by ``model``."""
        return cls.of([code.shape[1:] for code in layers], model.codebook_sizes)

    @property
    def num_layers(self) -> int:
        return len(self.code_shapes)

    @property
    def lengths(self) -> list[int]:
        """n_l, the positions of every layer."""
        return [math.prod(shape) for shape in self.code_shapes]

    @property
    def length(self) -> int:
        """T, the tokens per item."""
        return sum(self.lengths)

    def layer_of(self) -> Tensor:
        """(T,) long: the layer of every token."""
        return torch.cat([torch.full((n,), layer, dtype=torch.long) for layer, n in enumerate(self.lengths)])

    def uniform_bits(self) -> float:
        """Σ_l n_l log2 K_l: the bits per item of a fixed-length code."""
        return sum(n * math.log2(k) for n, k in zip(self.lengths, self.codebook_sizes))

    def to_dict(self) -> dict:
        return {"code_shapes": [list(shape) for shape in self.code_shapes], "codebook_sizes": list(self.codebook_sizes)}

    def describe(self) -> str:
        return " + ".join(f"{'×'.join(map(str, shape))}/K={k}" for shape, k in zip(self.code_shapes,
                                                                                 self.codebook_sizes))

    def flatten(self, layers: Sequence[Tensor]) -> Tensor:
        """One (B, *positions_l) tensor per layer -> tokens (B, T) long."""
        self.check_layers(layers)
        return torch.cat([code.reshape(code.shape[0], -1).long() for code in layers], dim=1)

    def unflatten(self, tokens: Tensor) -> list[Tensor]:
        """tokens (B, T) -> one (B, *positions_l) long tensor per layer."""
        if tokens.dim() != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"expected tokens of shape (B, {self.length}), got {tuple(tokens.shape)}")
        pieces = torch.split(tokens.long(), self.lengths, dim=1)
        return [piece.reshape(tokens.shape[0], *shape) for piece, shape in zip(pieces, self.code_shapes)]

    def check_layers(self, layers: Sequence[Tensor], what: str = "codes") -> None:
        """A ValueError saying what differs when ``layers`` do not have this layout (layer count,
        grids, or an index outside a codebook)."""
        shapes = [tuple(code.shape[1:]) for code in layers]
        if len(layers) != self.num_layers or shapes != list(self.code_shapes):
            raise ValueError(f"{what} have {len(layers)} layers with positions {shapes}, but the prior was trained on "
                             f"{self.num_layers} layers with positions {list(self.code_shapes)} ({self.describe()}); "
                             f"use a prior trained on codes of this run (hqvae prior train --run ...)")
        if len({code.shape[0] for code in layers}) != 1:
            raise ValueError(f"{what}: every layer must hold the same number of items, got "
                             f"{[code.shape[0] for code in layers]}")
        for layer, (code, k) in enumerate(zip(layers, self.codebook_sizes)):
            if code.dtype.is_floating_point:
                raise ValueError(f"{what}: layer {layer} holds {code.dtype} values; codes are integers")
            if code.numel() and (int(code.min()) < 0 or int(code.max()) >= k):
                raise ValueError(f"{what}: layer {layer} holds indices in [{int(code.min())}, {int(code.max())}] "
                                 f"but its codebook has {k} entries; these codes come from another model")


# ---------------------------------------------------------------------- the tokenizer side


@torch.no_grad()
def decode_layers(model: nn.Module, layers: Sequence[Tensor], batch_size: int = 256, upto: int | None = None) -> Tensor:
    """One (N, *positions_l) tensor per layer -> x̂ (N, C, H, W) clamped to [0, 1], on the CPU, decoded
    ``batch_size`` items at a time from the first ``upto`` layers (default all)."""
    device = next(model.parameters()).device
    return torch.cat([model.decode([code[i:i + batch_size].to(device).long() for code in layers], upto=upto)
                      .clamp(0, 1).cpu() for i in range(0, layers[0].shape[0], batch_size)])
