"""Serialisable description of an HQ-VAE: the backbone hyperparameters and the list of latent layers.

A model is fully determined by a ``ModelConfig``; ``config.json`` of a saved model holds
``ModelConfig.to_dict()`` and ``ModelConfig.from_dict`` rebuilds it, rejecting unknown keys.

Layers are listed coarse to fine (SPEC §3). Each is

* ``kind="injected"``: a new, finer resolution ``downsample`` (factor relative to the input,
  a power of 2; strictly decreasing along the list), or
* ``kind="residual"``: same resolution and code dimension as the layer before; it quantises
  the residual. An injected layer and the residual layers that follow it form one
  *resolution group*, quantised by one ``ResidualQuantizer`` (the injected layer is depth 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..quantizers.registry import KINDS as QUANTIZER_KINDS

KINDS = ("injected", "residual")


def _reject_unknown(cls, data: dict[str, Any]) -> None:
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {valid}")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@dataclass
class LayerConfig:
    """One layer of discrete latents and its quantizer.

    kind: "injected" (new resolution) or "residual" (quantises the previous layers' residual).
    quantizer: "vq" (deterministic, SPEC §1.1), "sq" (stochastic, SPEC §1.2, Gaussian type I) or a
        kind added with ``hqvae.quantizers.register_quantizer``.
    codebook_size: K.   dim: code dimension d (residual layers: same as their group).
    downsample: injected layers: input size / latent grid size (power of 2, ≥ 2);
        residual layers: None (they inherit their group's resolution).
    beta, ema, decay, vq_init, dead_code_threshold: ``VectorQuantizer`` options (VQ layers).
    init_variance, var_floor, bounded_variance, sq_init, init_noise, init_variance_ratio:
        ``StochasticQuantizer`` options (SQ layers): s² = [1 +] exp(log_s2) or 2·s²₀·sigmoid(θ);
        ``sq_init="normal"`` starts from an N(0, 1) codebook and ``init_variance``, ``"data"`` from
        the layer's inputs on the first training batch (codebook = rows + ``init_noise``·σ noise,
        s² = ``init_variance_ratio`` × their variance).
    shared_codebook: residual groups: share the codebook of depth 0 with every depth
        (must agree within a group).
    """

    kind: str = "injected"
    quantizer: str = "sq"
    codebook_size: int = 512
    dim: int = 64
    downsample: int | None = 4
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    vq_init: str = "kmeans"
    dead_code_threshold: float = 0.0
    init_variance: float = 20.0
    var_floor: bool = True
    bounded_variance: bool = False
    sq_init: str = "normal"
    init_noise: float = 0.2
    init_variance_ratio: float = 1.0
    shared_codebook: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerConfig":
        _reject_unknown(cls, data)
        return cls(**data)


@dataclass
class BackboneConfig:
    """The fields every model configuration starts with: its registry name and the ResNet backbone
    (documented on ``ModelConfig``), plus the checked JSON round trip the subclasses share."""

    name: str = "custom"
    in_channels: int = 3
    image_size: tuple[int, int] = (32, 32)
    hidden: int = 64
    num_res_blocks: int = 2
    batch_norm: bool = True
    init_std: float | None = 0.02

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def _checked_keys(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` with unknown keys rejected and ``image_size`` made a tuple."""
        _reject_unknown(cls, data)
        data = dict(data)
        if "image_size" in data:
            data["image_size"] = tuple(data["image_size"])
        return data


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
    layers: the latent layers, coarse to fine.
    rate_weight: stochastic models: weight ρ of the latent (rate) terms, loss = ARELBO + ρ·Σ_l (layer
        loss); 1 is the ELBO. The registry sets ρ = min(1, (D/2)/Σ_l n_l ln K_l)
        (``registry.balanced_rate_weight``). Must be 1 for VQ-only models.
    train_defaults: training hyperparameters a trainer may pick up (lr, batch_size, ...).
    reference: note naming the public network this configuration reproduces, if any.
    """

    layers: list[LayerConfig] = field(default_factory=lambda: [LayerConfig()])
    rate_weight: float = 1.0
    train_defaults: dict[str, Any] = field(default_factory=dict)
    reference: str = ""

    # ------------------------------------------------------------------ derived

    @property
    def stochastic(self) -> bool:
        """Any SQ layer makes the whole model stochastic (ARELBO loss, latent terms weighted by ρ)."""
        kinds = QUANTIZER_KINDS
        return any(kinds[layer.quantizer].stochastic for layer in self.layers if layer.quantizer in kinds)

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

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Raise a ValueError naming the offending field and the fix."""
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be ≥ 1, got {self.in_channels}")
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
            unknown = sorted(set(QUANTIZER_KINDS[layer.quantizer].options) - {f.name for f in fields(LayerConfig)})
            if unknown:
                raise ValueError(f"quantizer kind {layer.quantizer!r} reads options {unknown} that are not "
                                 f"LayerConfig fields; valid: {[f.name for f in fields(LayerConfig)]}")
            if layer.codebook_size < 2 or layer.dim < 1:
                raise ValueError(f"layers[{i}] needs codebook_size ≥ 2 and dim ≥ 1")
        if not self.rate_weight > 0 or (self.rate_weight != 1.0 and not self.stochastic):
            raise ValueError(f"rate_weight must be > 0 and applies to stochastic models only (VQ-only: 1), "
                             f"got {self.rate_weight}")
        if self.layers[0].kind != "injected":
            raise ValueError("the first layer must be kind='injected' (residual layers refine a previous layer)")
        for g, group in enumerate(self.groups):
            head = group[0]
            if head.downsample is None or head.downsample < 2 or not _is_power_of_two(head.downsample):
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
        finest_stages = factors[-1].bit_length() - 1
        if self.hidden % (1 << (finest_stages - 1)) != 0:
            raise ValueError(
                f"hidden={self.hidden} must be divisible by {1 << (finest_stages - 1)} "
                f"(the encoder halves it once per extra stride-2 stage)"
            )
        height, width = self.image_size
        if height % self.max_downsample or width % self.max_downsample:
            raise ValueError(
                f"image_size {height}×{width} is not divisible by the largest downsample factor "
                f"{self.max_downsample}; use a multiple of {self.max_downsample} or smaller downsample factors"
            )

    # ------------------------------------------------------------------ serialisation

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = cls._checked_keys(data)
        if "layers" in data:
            data["layers"] = [
                layer if isinstance(layer, LayerConfig) else LayerConfig.from_dict(layer) for layer in data["layers"]
            ]
        return cls(**data)
