"""Serialisable descriptions of the models: ``ModelConfig`` (an HQ-VAE: the backbone
hyperparameters and the list of latent layers) and ``PQConfig`` (a PQ-VAE, SPEC §4: the backbone,
the token layout, the codewords and the loss weights).

A model is fully determined by its config; ``config.json`` of a saved model holds
``config.to_dict()`` and ``from_dict`` rebuilds it, rejecting unknown keys.

HQ-VAE layers are listed coarse to fine (SPEC §3). Each is

* ``kind="injected"``: a new, finer resolution ``downsample`` (factor relative to the input,
  a power of 2; strictly decreasing along the list), or
* ``kind="residual"``: same resolution and code dimension as the layer before; it quantises
  the residual. An injected layer and the residual layers that follow it form one
  *resolution group*, quantised by one ``ResidualQuantizer`` (the injected layer is depth 0).

The PQ-VAE token layout (L·G tokens per item, L·G·log2 K bits) is drawn in ``hqvae.models.pqvae``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..quantizers.registry import KINDS as QUANTIZER_KINDS, make_options
from .base import RECON_LOSSES

KINDS = ("injected", "residual")
# PQ-VAE: the options only one quantizer kind reads (the others apply to both)
PQ_QUANTIZER_OPTIONS = {"sq": ("logit_scale", "gamma", "entropy_sign"), "vq": ("beta",)}


def _reject_unknown(cls, data: dict[str, Any]) -> None:
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {valid}")


@dataclass
class LayerConfig:
    """One layer of discrete latents and its quantizer.

    kind: "injected" (new resolution) or "residual" (quantises the previous layers' residual).
    quantizer: "vq" (deterministic, SPEC §1.1), "sq" (stochastic, SPEC §1.2, Gaussian type I) or a
        kind added with ``hqvae.quantizers.register_quantizer``.
    codebook_size: K.   dim: code dimension d (residual layers: same as their group).
    downsample: injected layers: input size / latent grid size (power of 2, ≥ 2);
        residual layers: None (they inherit their group's resolution).
    shared_codebook: residual groups: share the codebook of depth 0 with every depth
        (must agree within a group).
    options: the options of the quantizer kind, its dataclass of ``hqvae.quantizers.registry``
        (``VQOptions``, ``SQOptions``); given as None (the defaults) or a dict, they become one.
    """

    kind: str = "injected"
    quantizer: str = "sq"
    codebook_size: int = 512
    dim: int = 64
    downsample: int | None = 4
    shared_codebook: bool = False
    options: Any = None

    def __post_init__(self) -> None:
        if self.quantizer in QUANTIZER_KINDS:  # an unknown kind fails ModelConfig.validate, naming the valid ones
            self.options = make_options(self.quantizer, self.options)

    @property
    def stochastic(self) -> bool:  # its quantizer kind samples in training
        return self.quantizer in QUANTIZER_KINDS and QUANTIZER_KINDS[self.quantizer].stochastic

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerConfig":
        """Also reads the flat format of hqvae ≤ 0.1.0 (every registered kind's options as layer
        keys): the options of the layer's kind are kept, the others' dropped."""
        data = dict(data)
        flat = {key: data.pop(key) for kind in QUANTIZER_KINDS.values() for key in kind.option_names if key in data}
        _reject_unknown(cls, data)
        layer = cls(**data)
        return layer.with_options(flat) if flat and layer.quantizer in QUANTIZER_KINDS else layer

    def with_options(self, values: dict[str, Any]) -> "LayerConfig":
        """A copy whose options take the ``values`` its quantizer kind reads (the others are ignored)."""
        names = QUANTIZER_KINDS[self.quantizer].option_names
        return replace(self, options=replace(self.options, **{k: v for k, v in values.items() if k in names}))


@dataclass
class BackboneConfig:
    """The fields every model configuration has: its registry name, the ResNet backbone, training
    defaults and a note (documented on ``ModelConfig``), plus the checked JSON round trip and checks
    the subclasses share."""

    name: str = "custom"
    in_channels: int = 3
    image_size: tuple[int, int] = (32, 32)
    hidden: int = 64
    num_res_blocks: int = 2
    batch_norm: bool = True
    init_std: float | None = 0.02
    train_defaults: dict[str, Any] = field(default_factory=dict)
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """The configuration ``to_dict`` wrote, unknown keys rejected."""
        _reject_unknown(cls, data)
        if "image_size" in data:
            data = {**data, "image_size": tuple(data["image_size"])}
        return cls(**data)

    def _check_backbone(self, finest: int, largest: int, largest_text: str) -> None:
        """Raise a ValueError unless the encoder's stages fit: ``finest`` / ``largest`` are the
        smallest / largest downsampling factors (powers of 2), ``largest_text`` names the largest."""
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be ≥ 1, got {self.in_channels}")
        finest_stages = finest.bit_length() - 1
        if self.hidden % (1 << (finest_stages - 1)) != 0:
            raise ValueError(
                f"hidden={self.hidden} must be divisible by {1 << (finest_stages - 1)} "
                f"(the encoder halves it once per extra stride-2 stage)"
            )
        height, width = self.image_size
        if height % largest or width % largest:
            raise ValueError(
                f"image_size {height}×{width} is not divisible by {largest_text}; use a multiple of "
                f"{largest} or smaller downsample factors"
            )


@dataclass
class ModelConfig(BackboneConfig):
    """Everything needed to build an ``HQVAE``.

    name: registry name (``config.json``'s ``model_type``).
    in_channels: C of the input (1 for Fashion-MNIST and log-mel spectrograms, 3 for RGB).
    image_size: (H, W) the model is configured for. The network is fully convolutional, so any
        input whose sides are multiples of ``max_downsample`` is accepted; ``image_size`` picks
        the registry defaults and must itself satisfy that rule.
    hidden: channel width of the backbone and of the top-down state.
    num_res_blocks: residual blocks after each encoder resolution and at the decoder input.
    batch_norm: BatchNorm in the backbone convolutions and residual blocks.
    init_std: convolution weights ~ N(0, init_std²), BatchNorm weights ~ N(1, init_std²)
        (the public SQ-VAE code's initialisation); None keeps PyTorch's defaults.
    layers: the latent layers, coarse to fine (``LayerConfig``s, or their dicts).
    rate_weight: stochastic models: weight ρ of the latent (rate) terms, loss = ARELBO + ρ·Σ_l (layer
        loss); 1 is the ELBO. The registry sets ρ = min(1, (D/2)/Σ_l n_l ln K_l)
        (``registry.balanced_rate_weight``), for ``sqvae2`` at most 0.25. Must be 1 for VQ-only models.
    train_defaults: training hyperparameters a trainer may pick up (lr, batch_size, ...).
    reference: note naming the public network this configuration reproduces, if any.
    """

    layers: list[LayerConfig] = field(default_factory=lambda: [LayerConfig()])
    rate_weight: float = 1.0

    # ------------------------------------------------------------------ derived

    @property
    def stochastic(self) -> bool:
        """Any SQ layer makes the whole model stochastic (ARELBO loss, latent terms weighted by ρ)."""
        return any(layer.stochastic for layer in self.layers)

    @property
    def groups(self) -> list[list[LayerConfig]]:
        """The layers split into resolution groups: an injected layer and its residual followers."""
        groups: list[list[LayerConfig]] = []
        for layer in self.layers:
            if layer.kind == "injected":
                groups.append([layer])
            else:
                groups[-1].append(layer)
        return groups

    @property
    def downsamples(self) -> list[int]:
        """Downsampling factor of each resolution group, coarse to fine."""
        return [group[0].downsample for group in self.groups]

    @property
    def max_downsample(self) -> int:
        return max(self.downsamples)

    def validate(self) -> None:
        """Raise a ValueError naming the offending field and the fix."""
        if not self.layers:
            raise ValueError("a model needs at least one layer")
        for i, layer in enumerate(self.layers):
            if layer.kind not in KINDS:
                raise ValueError(f"layers[{i}].kind must be one of {KINDS}, got {layer.kind!r}")
            if layer.quantizer not in QUANTIZER_KINDS:
                raise ValueError(
                    f"layers[{i}].quantizer must be one of {tuple(QUANTIZER_KINDS)} (more kinds: "
                    f"hqvae.quantizers.register_quantizer), got {layer.quantizer!r}"
                )
            layer.options = make_options(layer.quantizer, layer.options)  # (it may have been set since)
            if layer.codebook_size < 2 or layer.dim < 1:
                raise ValueError(f"layers[{i}] needs codebook_size ≥ 2 and dim ≥ 1")
        if not self.rate_weight > 0 or (self.rate_weight != 1.0 and not self.stochastic):
            raise ValueError(f"rate_weight must be > 0 and applies to stochastic models only (VQ-only: 1), "
                             f"got {self.rate_weight}")
        if self.layers[0].kind != "injected":
            raise ValueError("the first layer must be kind='injected' (residual layers refine a previous layer)")
        for g, group in enumerate(self.groups):
            head = group[0]
            if head.downsample is None or head.downsample < 2 or head.downsample & (head.downsample - 1):
                raise ValueError(f"injected layer of group {g} needs downsample = a power of 2 ≥ 2, got {head.downsample}")
            for layer in group[1:]:
                if layer.downsample not in (None, head.downsample):
                    raise ValueError(
                        f"a residual layer keeps its group's resolution: downsample must be None or "
                        f"{head.downsample}, got {layer.downsample}"
                    )
                if layer.dim != head.dim or layer.quantizer != head.quantizer:
                    raise ValueError(
                        f"residual layers of group {g} must have the same dim and quantizer as its "
                        f"injected layer (dim={head.dim}, quantizer={head.quantizer!r})"
                    )
                if layer.shared_codebook != head.shared_codebook:
                    raise ValueError(f"shared_codebook must agree within group {g}")
        factors = self.downsamples
        if any(a <= b for a, b in zip(factors, factors[1:])):
            raise ValueError(f"injected layers go coarse to fine: downsample must strictly decrease, got {factors}")
        self._check_backbone(factors[-1], factors[0], f"the largest downsample factor {factors[0]}")

    def __post_init__(self) -> None:
        self.layers = [layer if isinstance(layer, LayerConfig) else LayerConfig.from_dict(layer) for layer in self.layers]


@dataclass(frozen=True)
class TokenStep:
    """What one quantisation step looks like to code that walks ``config.layers`` (the
    training loop's validation counts each step's codes against ``codebook_size``)."""

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
    hidden, num_res_blocks, batch_norm, init_std, train_defaults, reference: as in ``ModelConfig``.
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
        return [TokenStep(self.codebook_size, self.quantizer, self.stochastic)] * self.depth

    def validate(self) -> None:
        """Raise a ValueError naming the offending field and the fix."""
        if self.downsample < 2 or self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample must be a power of 2 ≥ 2, got {self.downsample}")
        self._check_backbone(self.downsample, self.downsample, f"downsample={self.downsample}")
        for key, least in (("dim", 1), ("depth", 1), ("groups", 1), ("codebook_size", 2)):
            if getattr(self, key) < least:
                raise ValueError(f"{key} must be ≥ {least}, got {getattr(self, key)}")
        if self.dim % self.groups:
            raise ValueError(f"groups={self.groups} must divide dim={self.dim} (each group is a block of channels)")
        if self.code_dim is not None and self.code_dim < 0:
            raise ValueError(f"code_dim must be None/0 (raw codewords) or ≥ 1, got {self.code_dim}")
        for key, choices in (("quantizer", tuple(PQ_QUANTIZER_OPTIONS)), ("entropy_sign", ("pq", "elbo")),
                            ("recon_loss", RECON_LOSSES)):
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
