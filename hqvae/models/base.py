"""The interface of every registered model (``DiscreteAutoencoder``).

    encode(x)            x (B, C, H, W) -> codes: one long tensor (B, *positions_l) per layer,
                         coarse to fine (an HQ-VAE layer: (B, h_l, w_l); a PQ-VAE step: (B, G))
    decode(codes, upto)  the first ``upto`` layers of ``codes`` (any prefix of the list) -> x̂
    embed_codes / decode_latents   the same in two halves (codes -> decoder input -> x̂)
    code_shapes, codebook_sizes, bits(upto)   what the codes look like and their nominal rate
    set_temperature(τ)   Gumbel temperature of the stochastic layers

Analyses that only some models support ask ``model.supports(name)`` instead of checking the
class: "posteriors" (``encode_posteriors``: P(k | x) per layer), "token_statistics"
(``token_posteriors``: PQ-VAE's per-step posteriors for its token statistics and probes) and
"residual_stack" (every layer is a depth of one residual stack on one grid, RQ-VAE style).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from .pretrained import PretrainedMixin


def as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """An image size given as an int or an (H, W) pair -> (H, W)."""
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or an (H, W) pair, got {size!r}")
    return int(size[0]), int(size[1])


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; every submodule's training flag restored after."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in flags:
            module.training = training


@dataclass
class ModelOutput:
    """What ``model(x)`` returns.

    x_hat: reconstruction, (B, C, H, W), in [0, 1].
    codes: one long index tensor per latent layer, coarse to fine, each (B, h_l, w_l);
        a residual group contributes one entry per depth. In training mode the codes of SQ
        layers are the argmax of the posterior (the decoder sees the relaxed sample).
    loss: scalar to minimise; ``loss == Σ_k terms[k]`` over every key except "mse".
    terms: the loss parts, detached: "recon" (the reconstruction term actually used),
        "mse" (mean squared error, for logging only, not part of the sum), and per layer l
        (0-based, as in ``codes``) "discrete/l", "continuous/l" (SQ layers; a residual SQ
        group's single continuous term is filed under its last layer), "commitment/l" and,
        for gradient-trained codebooks, "codebook/l" (VQ layers).
    logs: detached per-layer statistics: "perplexity/l" (of the batch's hard codes), and for
        SQ layers "entropy/l" (mean posterior entropy, nats) and "variance/l" (s²).
    """

    x_hat: Tensor
    codes: list[Tensor]
    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, Tensor] = field(default_factory=dict)


RECON_LOSSES = ("sse", "arelbo", "mse")


def reconstruction(x_hat: Tensor, x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """x̂, x (B, C, H, W) -> (the ``kind`` reconstruction term, the mse), both scalars with gradients,
    computed in float32 (SPEC §2). With D = C·H·W and sse = mean_b Σ_pixels (x̂ − x)²:

        "mse"     mean of (x̂ − x)² over everything            (VQ-only HQ-VAE models)
        "sse"     sse                                          (PQ-VAE default)
        "arelbo"  (D/2)·log(sse)                               (stochastic models: ARELBO)
    """
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


@dataclass(frozen=True)
class LayerInfo:
    """What a consumer needs of one code layer: kind ("injected" | "residual" | "global"),
    quantizer kind, grid (positions per item at the configured size), codebook size K,
    stochastic (its quantizer samples in training)."""

    kind: str
    quantizer: str
    grid: tuple[int, ...]
    codebook_size: int
    stochastic: bool


class DiscreteAutoencoder(PretrainedMixin, nn.Module):
    """Base class of the registered models (module docstring). Subclasses set ``config_class``
    and ``capabilities`` and implement ``forward``, ``encode``, ``embed_codes``,
    ``decode_latents``, ``code_shapes``, ``set_temperature`` and ``check_input``."""

    config_class: type
    capabilities: frozenset[str] = frozenset()

    def evaluating(self):
        """``with model.evaluating():`` eval mode and no gradients inside, training flags restored after."""
        return evaluating(self)

    def supports(self, capability: str) -> bool:
        """Whether this model offers an optional analysis (module docstring)."""
        return capability in self.capabilities

    @property
    def stochastic(self) -> bool:
        return self.config.stochastic

    @property
    def num_layers(self) -> int:
        """L: the number of code tensors ``encode`` returns (``decode``'s ``upto`` counts these)."""
        return len(self.config.layers)

    @property
    def codebook_sizes(self) -> list[int]:
        """K_l of every layer, coarse to fine."""
        return [layer.codebook_size for layer in self.config.layers]

    def layer_info(self) -> list[LayerInfo]:
        """One :class:`LayerInfo` per code layer, coarse to fine (ask this, not ``config.layers``)."""
        return [LayerInfo(layer.kind, layer.quantizer, tuple(grid), layer.codebook_size, layer.stochastic)
                for layer, grid in zip(self.config.layers, self.code_shapes())]

    def code_shapes(self, image_size: int | Sequence[int] | None = None) -> list[tuple[int, ...]]:
        """Positions of each layer's codes (without the batch dim) for ``image_size`` (default: the config's)."""
        raise NotImplementedError

    def code_shapes_like(self, codes: Sequence[Tensor]) -> list[tuple[int, ...]]:
        """Positions per layer that this model makes for inputs of the size ``codes`` imply
        (default: the configured size; a fully convolutional model reads it off the first layer)."""
        return self.code_shapes()

    def bits(self, upto: int | None = None, image_size: int | Sequence[int] | None = None) -> float:
        """Nominal rate of the first ``upto`` layers (default all): Σ_{l≤upto} n_l·log2 K_l bits per item."""
        shapes = self.code_shapes(image_size)[: self.num_layers if upto is None else upto]
        return sum(math.prod(shape) * math.log2(k) for shape, k in zip(shapes, self.codebook_sizes))

    def encode(self, x: Tensor) -> list[Tensor]:
        """x (B, C, H, W) -> one (B, *positions) long tensor per layer (eval mode, no gradients;
        training flags restored)."""
        raise NotImplementedError

    def decode(self, codes: Sequence[Tensor], upto: int | None = None, **options) -> Tensor:
        """codes (a prefix of ``encode``'s list) -> x̂ (B, C, H, W) from the first ``upto`` layers
        (default: all given; ``options`` go to ``embed_codes``). Eval mode, no gradients."""
        latents = self.embed_codes(codes, upto=upto, **options)
        with evaluating(self):
            return self.decode_latents(latents)

    def decode_progressive(self, codes: Sequence[Tensor], **options) -> list[Tensor]:
        """Coarse-to-fine reconstructions [decode(codes, upto=m) for m = 1..len(codes)]."""
        return [self.decode(codes, upto=m, **options) for m in range(1, len(codes) + 1)]

    def check_codes(self, codes: Sequence[Tensor], upto: int | None = None) -> int:
        """Raise a ValueError naming the fix unless ``codes`` is a list of 1..L long tensors and
        1 ≤ ``upto`` ≤ its length; -> ``upto`` (default: its length)."""
        if isinstance(codes, Tensor) or not all(isinstance(code, Tensor) for code in codes):
            raise ValueError(f"codes must be a list with one long tensor per layer (as from encode), "
                             f"got {type(codes).__name__}")
        if not 1 <= len(codes) <= self.num_layers:
            raise ValueError(f"expected between 1 and {self.num_layers} code tensors (one per layer), got {len(codes)}")
        upto = len(codes) if upto is None else upto
        if not 1 <= upto <= len(codes):
            raise ValueError(f"upto must be between 1 and the number of code tensors ({len(codes)}), got {upto}")
        return upto

    def check_image_batch(self, x: Tensor, shape_text: str = "H, W") -> None:
        """Raise a ValueError naming the fix unless ``x`` is a floating-point (B, in_channels, H, W) batch."""
        channels, shape = self.config.in_channels, f"(B, {self.config.in_channels}, {shape_text})"
        if not isinstance(x, Tensor):
            raise ValueError(f"expected a torch.Tensor of shape {shape}, got {type(x).__name__}")
        if x.dim() != 4:
            hint = (
                "use x.unsqueeze(1) for a batch of 1-channel images or spectrograms (B, H, W), "
                "or x.unsqueeze(0) for a single image (C, H, W)"
                if x.dim() == 3
                else "reshape it to (B, C, H, W)"
            )
            raise ValueError(f"expected a 4-D batch {shape}, got shape {tuple(x.shape)}; {hint}")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point pixels in [0, 1], got dtype {x.dtype}; "
                             f"use x.float() / 255")
        if x.shape[1] != channels:
            raise ValueError(
                f"expected {channels} input channel(s), got {x.shape[1]} in shape {tuple(x.shape)}; "
                f"create the model with in_channels={x.shape[1]}, "
                f"e.g. hqvae.create_model({self.config.name!r}, in_channels={x.shape[1]}, ...)"
            )
