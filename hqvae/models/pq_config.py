"""Serialisable description of a PQ-VAE (SPEC §4): the backbone, the token layout, the codewords
and the loss weights.

``config.json`` of a saved PQ-VAE holds ``PQConfig.to_dict()``; ``PQConfig.from_dict`` rebuilds
it, rejecting unknown keys. The token layout, for an input of ``image_size`` (H, W):

    f ∈ R^{dim × h × w},  h = H / downsample,  w = W / downsample       (encoder output)
    z = flatten(f) ∈ R^{dim·h·w}, split into ``groups`` G contiguous chunks of size
        dim·h·w / G (whole channel groups, as G divides dim)
    ``depth`` L quantisation steps, each picking one token per group: L·G tokens per item,
        ``L·G·log2 K`` bits under the uniform prior.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import BackboneConfig
from .losses import RECON_LOSSES

# the options only one quantizer kind reads (the others apply to both)
QUANTIZER_OPTIONS = {"sq": ("logit_scale", "gamma", "entropy_sign"), "vq": ("beta",)}
QUANTIZERS = tuple(QUANTIZER_OPTIONS)
ENTROPY_SIGNS = ("pq", "elbo")


@dataclass(frozen=True)
class TokenStep:
    """What one quantisation step looks like to code that walks ``config.layers`` (the
    training loop's validation counts each step's codes against ``codebook_size``)."""

    step: int
    codebook_size: int
    quantizer: str
    stochastic: bool
    kind: str = "global"


@dataclass
class PQConfig(BackboneConfig):
    """Everything needed to build a ``PQVAE``.

    name: registry name (``config.json``'s ``model_type``): "pqvae" or "global_rvq".
    in_channels: C of the input.
    image_size: (H, W). The latent grid is flattened into one vector, so inputs must have
        exactly this size (unlike the fully convolutional HQ-VAE models).
    hidden, num_res_blocks, batch_norm, init_std: the ResNet backbone, as in ``ModelConfig``.
    downsample: encoder output grid = image_size / downsample (a power of 2 ≥ 2).
    dim: channels c of the encoder output f (1×1 conv from ``hidden``).
    depth: L, the number of residual quantisation steps (tokens per group).
    groups: G, the number of chunks z is split into (G tokens per step); must divide ``dim``.
    codebook_size: K, codewords per step and group (every step and group has its own codebook).
    code_dim: d_c, factorised codewords: the residual is projected to d_c dims (one linear map
        per step and group), logits are κ·cos(W_in r, e_k), the chosen code image is W_out ê_k.
        None or 0: raw codewords e_k ∈ R^{dim·h·w / G}, logits κ·cos(r, e_k), code image e_k
        (SQ only).
    logit_scale: initial κ; κ = exp(log κ_l) is learnt, one per step (SQ only).
    quantizer: "sq": Gumbel-softmax relaxed sample in training, argmax at test (SPEC §1.2);
        "vq": nearest code (max cosine) with the straight-through estimator in code space,
        commitment ``beta`` and a gradient-trained codebook (the "global residual VQ" control).
    beta: VQ commitment weight (encoder side, SPEC §1.1).
    lambda_h: λ_h, weight of the entropy terms (SQ only; VQ has no posterior, so it must be 0).
    gamma: γ, weight of the marginal entropy inside the λ_h bracket.
    lambda_prefix: λ_pre, weight of the reconstruction from a random prefix of m steps.
    entropy_sign: "pq" adds + λ_h·E H(q) (posteriors driven to certainty, the PQ-VAE paper);
        "elbo" adds − λ_h·E H(q) (posteriors kept spread, like SQ-VAE's discrete term).
    recon_loss: "sse" Σ_pixels (x̂ − x)² per item, batch mean; "arelbo"
        (D/2)·log(mean_batch Σ_pixels (x̂ − x)²) (SPEC §2); "mse" mean over everything.
    train_defaults: training hyperparameters a trainer may pick up (lr, batch_size, ...).
    reference: free-text note.
    """

    name: str = "pqvae"
    downsample: int = 4
    dim: int = 16
    depth: int = 16
    groups: int = 1
    codebook_size: int = 256
    code_dim: int | None = 16
    logit_scale: float = 10.0
    quantizer: str = "sq"
    beta: float = 0.25
    lambda_h: float = 0.05
    gamma: float = 1.0
    lambda_prefix: float = 1.0
    entropy_sign: str = "pq"
    recon_loss: str = "sse"
    train_defaults: dict[str, Any] = field(default_factory=dict)
    reference: str = ""

    # ------------------------------------------------------------------ derived

    @property
    def stochastic(self) -> bool:
        """SQ steps: a Gumbel temperature matters."""
        return self.quantizer == "sq"

    @property
    def factorised(self) -> bool:
        return bool(self.code_dim)

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the encoder output."""
        return self.image_size[0] // self.downsample, self.image_size[1] // self.downsample

    @property
    def latent_size(self) -> int:
        """dim·h·w, the length of the global vector z."""
        return self.dim * self.grid[0] * self.grid[1]

    @property
    def group_size(self) -> int:
        """dim·h·w / G, the length of one group's chunk of z."""
        return self.latent_size // self.groups

    @property
    def layers(self) -> list[TokenStep]:
        """One entry per quantisation step (a step's codes are (B, G) indices < K)."""
        return [TokenStep(step, self.codebook_size, self.quantizer, self.stochastic) for step in range(self.depth)]

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Raise a ValueError naming the offending field and the fix."""
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be ≥ 1, got {self.in_channels}")
        if self.downsample < 2 or self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample must be a power of 2 ≥ 2, got {self.downsample}")
        height, width = self.image_size
        if height % self.downsample or width % self.downsample:
            raise ValueError(
                f"image_size {height}×{width} is not divisible by downsample={self.downsample}; "
                f"use a multiple of {self.downsample} or a smaller downsample factor"
            )
        stages = self.downsample.bit_length() - 1
        if self.hidden % (1 << (stages - 1)):
            raise ValueError(f"hidden={self.hidden} must be divisible by {1 << (stages - 1)} (halved per extra stage)")
        for key in ("dim", "depth", "groups"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.dim % self.groups:
            raise ValueError(f"groups={self.groups} must divide dim={self.dim} (each group is a block of channels)")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be ≥ 2, got {self.codebook_size}")
        if self.code_dim is not None and self.code_dim < 0:
            raise ValueError(f"code_dim must be None/0 (raw codewords) or ≥ 1, got {self.code_dim}")
        for key, choices in (("quantizer", QUANTIZERS), ("entropy_sign", ENTROPY_SIGNS), ("recon_loss", RECON_LOSSES)):
            if getattr(self, key) not in choices:
                raise ValueError(f"{key} must be one of {choices}, got {getattr(self, key)!r}")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale}")
        if min(self.lambda_h, self.gamma, self.lambda_prefix, self.beta) < 0:
            raise ValueError("lambda_h, gamma, lambda_prefix and beta must be ≥ 0")
        if self.quantizer == "vq":
            if not self.factorised:
                raise ValueError("quantizer='vq' needs factorised codewords: set code_dim ≥ 1")
            if self.lambda_h:
                raise ValueError("quantizer='vq' has no posterior to take entropies of: set lambda_h=0")

    # ------------------------------------------------------------------ serialisation

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PQConfig":
        return cls(**cls._checked_keys(data))
