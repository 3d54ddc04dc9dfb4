"""HQ-VAE: one model class for VQ-VAE, SQ-VAE, VQ-VAE-2, SQ-VAE-2, RQ-VAE, RSQ-VAE and mixes.

    x ─ Encoder ─▶ {h_f(x)} ─ top-down groups, coarse to fine (``topdown.py``) ─▶ t_L ─ Decoder ─▶ x̂

Loss (SPEC §2), with D = C·H·W and every quantizer loss already a batch mean of per-item sums:

* stochastic models (any SQ layer, so mixed VQ/SQ models too):
      loss = (D/2)·log(mean_batch Σ_pixels (x̂ − x)²) + ρ·Σ_layers (layer loss)
  with ρ = ``config.rate_weight`` (1: the ELBO) and no per-layer weights (VQ layers of a mixed
  model enter unscaled as well);
* deterministic models (VQ layers only): each layer's loss is divided by its number of latent
  elements per item, n_l·d_l, which gives the mean-reduced VQ-VAE-2 / RQ-VAE form
      loss = mean((x̂ − x)²) + Σ_l β·mean‖ẑ_l − sg(e)‖².
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

from torch import Tensor, nn

from ..quantizers import QuantizerOutput
from .backbone import Decoder, Encoder, init_weights
from .base import DiscreteAutoencoder, ModelOutput, as_pair, evaluating, reconstruction
from .config import ModelConfig
from .topdown import FILLS, ResolutionGroup


class HQVAE(DiscreteAutoencoder):
    """Hierarchical VAE with discrete latents built from a ``ModelConfig`` (see ``config.py``).

    The network is fully convolutional: inputs (B, in_channels, H, W) with H and W multiples of
    the largest downsampling factor are accepted, whatever ``config.image_size`` is.
    """

    config_class = ModelConfig

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        factors = config.downsamples
        self.encoder = Encoder(config.in_channels, config.hidden, factors, config.num_res_blocks, config.batch_norm)
        self.groups = nn.ModuleList(ResolutionGroup(layers, config.hidden, previous, config.batch_norm)
                                    for layers, previous in zip(config.groups, [None, *factors]))
        self.decoder = Decoder(config.hidden, config.in_channels, factors[-1], config.num_res_blocks, config.batch_norm)
        if config.init_std is not None:
            init_weights(self, config.init_std)
        # index, in the flat coarse-to-fine layer list, of each group's depth 0
        self._first_layer = [0, *itertools.accumulate(group.depth for group in self.groups)]

    # ------------------------------------------------------------------ description

    @property
    def capabilities(self) -> frozenset[str]:
        """"posteriors" always; "residual_stack" when every layer is a depth of one residual group."""
        stack = len(self.groups) == 1 and self.groups[0].depth > 1
        return frozenset({"posteriors", "residual_stack"} if stack else {"posteriors"})

    def code_shapes(self, image_size: int | Sequence[int] | None = None) -> list[tuple[int, int]]:
        """(h_l, w_l) of each layer's code grid, coarse to fine, for ``image_size`` (default: the config's)."""
        height, width = as_pair(self.config.image_size if image_size is None else image_size)
        return [
            (height // group.factor, width // group.factor) for group in self.groups for _ in range(group.depth)
        ]

    def code_shapes_like(self, codes: Sequence[Tensor]) -> list[tuple[int, int]]:
        """Grids of every layer for the input size that the first layer's (B, h_0, w_0) codes imply."""
        return self.code_shapes(tuple(side * self.groups[0].factor for side in codes[0].shape[1:3]))

    def set_temperature(self, temperature: float, hard: bool = False) -> None:
        """Gumbel temperature τ of every SQ layer (residual stacks included) and its ``hard`` variant
        (``StochasticQuantizer.set_temperature``); no-op for VQ-only models."""
        for group in self.groups:
            group.quantizer.set_temperature(temperature, hard)

    # ------------------------------------------------------------------ training forward

    def forward(self, x: Tensor) -> ModelOutput:
        """x (B, C, H, W) in [0, 1] -> ModelOutput (reconstruction, codes, loss and its parts)."""
        self.check_input(x)
        state, outputs = self._top_down(self.encoder(x))
        x_hat = self.decoder(state)

        recon, mse = reconstruction(x_hat, x, "arelbo" if self.stochastic else "mse")
        loss = recon
        terms = {"recon": recon.detach(), "mse": mse.detach()}
        logs: dict[str, Tensor] = {}
        codes: list[Tensor] = []
        for group, first, out in zip(self.groups, self._first_layer, outputs):
            codes += group.split_indices(out.indices)
            scale = self.config.rate_weight if self.stochastic else 1.0 / (out.indices[0, ..., 0].numel() * group.dim)
            loss = loss + scale * out.loss
            for depth, (losses, stats) in enumerate(out.per_depth()):
                layer = first + depth
                terms.update({f"{name}/{layer}": scale * value.detach() for name, value in losses.items()})
                logs.update({f"{name}/{layer}": value for name, value in stats.items()})
        return ModelOutput(x_hat=x_hat, codes=codes, loss=loss, terms=terms, logs=logs)

    def _top_down(
        self, features: dict[int, Tensor], return_probs: bool = False
    ) -> tuple[Tensor, list[QuantizerOutput]]:
        """Run the groups coarse to fine -> (final state, each group's quantizer output with
        indices (B, h, w, depth))."""
        state = None
        outputs = []
        for group in self.groups:
            state, out = group(state, features[group.factor], return_probs=return_probs)
            outputs.append(out)
        return state, outputs

    # ------------------------------------------------------------------ codes

    def encode(self, x: Tensor) -> list[Tensor]:
        """x (B, C, H, W) -> codes, one (B, h_l, w_l) long tensor per layer, coarse to fine (argmax /
        nearest code, in eval mode without gradients)."""
        self.check_input(x)
        with evaluating(self):
            _, outputs = self._top_down(self.encoder(x))
        return [code for group, out in zip(self.groups, outputs) for code in group.split_indices(out.indices)]

    def encode_posteriors(self, x: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """x (B, C, H, W) -> (the codes of ``encode``, and per layer the posterior P(k | x) as
        (B·h_l·w_l, K_l) rows in the codes' order — None for a VQ layer, whose posterior is the
        point mass on its code). In eval mode without gradients, like ``encode``."""
        self.check_input(x)
        with evaluating(self):
            _, outputs = self._top_down(self.encoder(x), return_probs=True)
        codes, posteriors = [], []
        for group, out in zip(self.groups, outputs):
            codes += group.split_indices(out.indices)
            probs = out.probs if isinstance(out.probs, list) else [out.probs]
            posteriors += probs if group.stochastic else [None] * group.depth
        return codes, posteriors

    def embed_codes(self, codes: Sequence[Tensor], upto: int | None = None, fill: str = "mean") -> list[Tensor]:
        """codes (a prefix of ``encode``'s list) -> one quantised latent per resolution group,
        (B, d_g, h_g, w_g), coarse to fine, from the first ``upto`` layers. Missing layers: a
        missing residual layer contributes zero, so a residual group decodes the partial sum
        Σ_{k<m} e_k; a missing injected layer (its whole group) takes the expected code under the
        uniform prior, the codebook mean, at every position (``fill="mean"``) or zero (``"zero"``)."""
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        codes = list(codes)[: self.check_codes(codes, upto)]
        first = codes[0]
        if first.dim() != 3:
            raise ValueError(f"each code tensor must be (B, h, w), got shape {tuple(first.shape)}")
        batch, shapes = first.shape[0], self.code_shapes_like(codes)
        for layer, (code, shape) in enumerate(zip(codes, shapes)):
            if tuple(code.shape) != (batch, *shape):
                raise ValueError(
                    f"codes[{layer}] has shape {tuple(code.shape)}, expected {(batch, *shape)} "
                    f"for the input size implied by codes[0]"
                )
        return [group.embed(codes[start : start + group.depth], (batch, *shapes[start]), fill)
                for group, start in zip(self.groups, self._first_layer)]

    def decode_latents(self, latents: Sequence[Tensor]) -> Tensor:
        """One quantised latent per resolution group (coarse to fine; a residual group's is the
        sum over its layers) -> x̂. Runs in the model's current mode, with gradients."""
        if len(latents) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} latents (one per resolution group), got {len(latents)}")
        state = None
        for group, z_q in zip(self.groups, latents):
            state = group.decode(state, z_q)
        return self.decoder(state)

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the fix when ``x`` cannot go through this model."""
        self.check_image_batch(x)
        height, width = x.shape[2:]
        factor = self.config.max_downsample
        if height % factor or width % factor:
            fixed = f"{math.ceil(height / factor) * factor}×{math.ceil(width / factor) * factor}"
            raise ValueError(
                f"input size {height}×{width} is not divisible by {factor}, the model's largest "
                f"downsampling factor (layers at {', '.join(f'÷{f}' for f in self.config.downsamples)}); "
                f"resize or pad the input to a multiple of {factor} (e.g. {fixed}), "
                f"or create the model with smaller downsample factors"
            )
