"""Named configurations: ``list_models()``, ``model_config(...)`` and ``create_model(...)``.

Each entry is a builder ``(in_channels, image_size, *, <structure keys>, **overrides) -> config``
registered with ``@register_model(name)``. Overrides that are ``ModelConfig`` fields replace
them (``hidden=16``, ``layers=[...]``); ``codebook_size``, ``dim`` and ``shared_codebook`` are set on
every layer, a quantizer option on every layer whose kind reads it (``beta=0.5`` on VQ layers,
``init_variance=5`` on SQ layers; an option no layer of the model reads is rejected); structure keys (``downsample``, ``downsamples``, ``depth``,
``quantizer``) are per entry.

Defaults by image size (H, W), s = min(H, W) — each VQ/SQ pair shares backbone and codebooks:

    hidden            64 if s ≤ 32 else 128;  2 residual blocks;  K = 512, d = 64 every layer
    fine factor f     4 if s ≤ 128, 8 if s ≤ 256, else 16
    vqvae / sqvae     one layer at ÷f
    vqvae2 / sqvae2   ÷2f (top) and ÷f (bottom) if H, W are multiples of 2f, else ÷f and ÷f/2
    rqvae / rsqvae    ÷f, depth 4
    hqvae             the vqvae2 resolutions, 2 layers each (injected + residual), SQ by default
    rate weight ρ     stochastic models: min(1, (C/2) / Σ_l ln K_l / f_l²)  (``balanced_rate_weight``);
                      sqvae2 at most 0.25 (``SQ_LEVELS_MAX_RATE_WEIGHT``)

    28×28 (Fashion-MNIST):  ÷4 (7×7) | ÷4 + ÷2 (7×7, 14×14) | ÷4 × 4
    32×32 (CIFAR-10):       ÷4 (8×8) | ÷8 + ÷4 (4×4, 8×8)   | ÷4 × 4
    64×64:                  ÷4 (16×16) | ÷8 + ÷4 (8×8, 16×16) | ÷4 × 4      (hidden 128)
    256×256:                ÷8 (32×32) | ÷16 + ÷8 (16×16, 32×32) | ÷8 × 4   (hidden 128)
    80×T log-mel:           as for s = min(80, T), e.g. 80×32: ÷4 (20×8) | ÷8 + ÷4 | ÷4 × 4

At 3×32×32 with the defaults, ``sqvae`` is the public SQ-VAE CIFAR-10 network.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import fields, replace
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from torch import nn

from ..quantizers.registry import KINDS as QUANTIZER_KINDS
from .base import as_pair
from .config import PQ_QUANTIZER_OPTIONS, LayerConfig, ModelConfig, PQConfig
from .hierarchical import HQVAE
from .pqvae import PQVAE
from .pretrained import MODEL_CLASSES

SQVAE_REFERENCE = (
    "SQ-VAE CIFAR-10 network of the public SQ-VAE code (sony/sqvae, vision/networks/net_32.py, "
    "configs/cifar10_gauss_1.yaml): d = 64, K = 512, 8×8 latents, 2 residual blocks, BatchNorm, "
    "sigmoid output, Gaussian type I with s² = 1 + exp(log_s2), exp(log_s2) initialised at 20, "
    "conv N(0, 0.02²) init, Adam lr 1e-3, batch 32"
)

# How the registry's SQ layers start (chosen on the Fashion-MNIST validation split with two seeds,
# benchmarks/results/sq-defaults-fashion_mnist.{json,md}): like the k-means VQ baselines, from the
# layer's own inputs on the first training batch — codebook = random rows + 0.2·σ noise,
# s² = 2·s²₀·sigmoid(θ) with s²₀ = INIT_VARIANCE_RATIO × the inputs' mean per-dimension variance.
# The bound keeps s² from drifting up at Adam's pace (s² otherwise grows through training at these
# budgets and the posteriors stay broad). ``SQOptions``' own defaults stay the public SQ-VAE
# code's (N(0, 1) codebook, s² = 1 + exp(log_s2) from 20), which every saved config without these
# keys was trained with: create_model("sqvae", sq_init="normal", var_floor=True,
# bounded_variance=False, affine_codebook=False) is the public network.
SQ_START = {"sq_init": "data", "var_floor": False, "bounded_variance": True, "init_variance_ratio": 1.0}

# overrides every HQVAE entry accepts besides its structure keys: model fields, layer fields, the
# built-in quantizer kinds' options
MODEL_KEYS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("name", "in_channels", "image_size"))
LAYER_KEYS = ("codebook_size", "dim", "shared_codebook")
OPTION_KEYS = tuple(key for kind in QUANTIZER_KINDS.values() for key in kind.option_names)


class ModelEntry(NamedTuple):
    build: Callable[..., Any]
    valid_keys: list[str]  # structure keys (the builder's keyword-only parameters) and the option keys


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, model_class: type[nn.Module] = HQVAE, option_keys: Sequence[str] = MODEL_KEYS + LAYER_KEYS + OPTION_KEYS
) -> Callable:
    """Decorator registering ``build(in_channels, image_size, *, ..., **overrides) -> config``."""

    def decorate(build: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        params = inspect.signature(build).parameters.values()
        structure = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        _REGISTRY[name] = ModelEntry(build, sorted(structure | set(option_keys)))
        MODEL_CLASSES[name] = model_class
        return build

    return decorate


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(_REGISTRY)


def _entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return _REGISTRY[name]


def model_config(name: str, in_channels: int = 3, image_size: int | Sequence[int] = 32, **overrides: Any):
    """The configuration ``create_model`` would build (validated)."""
    entry = _entry(name)
    unknown = sorted(set(overrides) - set(entry.valid_keys))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for model {name!r}; valid keys: {entry.valid_keys}")
    config = entry.build(in_channels, as_pair(image_size), **overrides)
    config.validate()
    return config


def create_model(name: str, in_channels: int = 3, image_size: int | Sequence[int] = 32, **overrides: Any) -> nn.Module:
    """Build the named model for ``in_channels``×H×W inputs (``image_size`` = H = W or (H, W)).

    Every other hyperparameter is an override with a size-dependent default (module docstring);
    an unknown override raises a ValueError listing the valid keys.
    """
    config = model_config(name, in_channels, image_size, **overrides)  # (an unknown name raises here)
    return MODEL_CLASSES[name](config)


# ----------------------------------------------------------------------------- defaults


def default_hidden(size: tuple[int, int]) -> int:
    return 64 if min(size) <= 32 else 128


def default_factor(size: tuple[int, int]) -> int:
    """Downsampling of single-resolution models and of the finest level of hierarchical ones."""
    side = min(size)
    return 4 if side <= 128 else 8 if side <= 256 else 16


def train_defaults(stochastic: bool, codebook_lr_scale: float = 1.0) -> dict[str, Any]:
    """Shared by every model so that VQ/SQ pairs train at equal budget (SQ-VAE's settings); a
    ``codebook_lr_scale`` ≠ 1 is the model's ``optim.codebook_lr_scale``."""
    defaults: dict[str, Any] = {"lr": 1e-3, "batch_size": 32, "epochs": 100}
    if stochastic:
        defaults.update(temperature_init=1.0, temperature_min=0.0)  # decay: the budget's (default_temperature_decay)
    if codebook_lr_scale != 1.0:
        defaults["codebook_lr_scale"] = codebook_lr_scale
    return defaults


# sqvae's and sqvae2's codebooks learn at this × the network's lr (``optim.codebook_lr_scale``): an
# SQ code the posterior never picks gets gradients of 1e-6 to 1e-10 and stays where it started
# (docs/dead-codes.md). Chosen on the CIFAR-10 validation split, seeds 0 and 1, at 2,000 and 15,000
# steps (sq-defaults-cifar10-codebook-lr.json, sq-defaults-cifar10-long15000-codebook-lr.json);
# rsqvae keeps 1: at 3× its RMSE is worse at 2,000 steps (0.0604 against 0.0598) and a tie at 15,000
# (0.0372 / 0.0415 against 0.0369 / 0.0419, fewer codes in use; docs/rsqvae-first-depth.md).
SQ_CODEBOOK_LR_SCALE = 3.0

# sqvae's and sqvae2's codebooks are e_k = a ⊙ w_k + b with a shared scale and shift
# (``affine_codebook``), so codes the posterior never picks still move as the latents contract. Chosen
# on the CIFAR-10 validation split, seeds 0 and 1, at 2,000 and 15,000 steps
# (sq-defaults-cifar10-affine-codebook.json, sq-defaults-cifar10-long15000-affine-codebook.json):
# sqvae better in RMSE, bits and codes in use on all four runs; sqvae2 better in RMSE, bottom-layer
# bits and codes in use on all four, its top layer's bits a tie at 15,000 steps and 5–7 fewer at
# 2,000. rsqvae keeps the plain codebook (the same use spread over more codes, worse RMSE on seed 1).
SQ_AFFINE_CODEBOOK = True

# rsqvae's s² stays below 1.25 × its start s²₀ (``variance_bound_ratio``; 2 for the other SQ models,
# the SQ-VAE authors' bound). Its first depth otherwise climbs to the bound 2·s²₀ over a long run,
# because the deeper depths correct its sample's noise and nothing in the ELBO pulls it down; the
# lower bound keeps the start and ends training with a sharper first depth. Chosen on the CIFAR-10
# validation split, seeds 0 and 1, at 2,000 and 15,000 steps (better on the mean at both, by less than
# the spread between seeds; fewer codes in use at depths 0 and 1: docs/rsqvae-first-depth.md).
RSQ_VARIANCE_BOUND_RATIO = 1.25


# sqvae2's ρ at most this: the balanced rule gives 1 on CIFAR-10 and FSDD, where the top layer then
# carries fewer bits than VQ-VAE-2's. 0.25 was chosen on the validation splits, seeds 0 and 1: CIFAR-10
# at 2,000 steps (a tie in RMSE once training ends with the BatchNorm recalibration,
# bn-recalibration-cifar10-val.json) and at 15,000 (a tie, sq-defaults-cifar10-long15000-lr.json), with
# more bits in the top layer at both; FSDD at 500 steps, better on both seeds (sq-defaults-fsdd.json).
# On Fashion-MNIST the rule already gives 0.2565. docs/rate-weight-sqvae2.md has the numbers.
SQ_LEVELS_MAX_RATE_WEIGHT = 0.25


def balanced_rate_weight(config: ModelConfig) -> float:
    """ρ = min(1, (D/2) / Σ_l n_l·ln K_l), rounded to 4 digits: the registry's weight of a stochastic
    model's latent terms (``ModelConfig.rate_weight``).

    Σ_l n_l·ln K_l is the latent terms' nominal size (the KL to the uniform prior of a point-mass
    posterior), D/2 the ARELBO's weight of log-distortion. Both grow with the image area, so ρ
    depends on the channels, factors and codebooks only. The papers' networks have ρ = 1 as is
    (SQ-VAE on CIFAR-10: 399 nats against 1536); at 28×28 with a 14×14 layer the latent terms are
    3.9× D/2 and the ELBO keeps the posteriors broad. Chosen on the Fashion-MNIST validation split
    with two seeds (benchmarks/results/sq-defaults-fashion_mnist.{json,md}).
    """
    nats_per_pixel = sum(math.log(layer.codebook_size) / group[0].downsample ** 2
                         for group in config.groups for layer in group)
    return min(1.0, round(0.5 * config.in_channels / nats_per_pixel, 4))


def check_quantizer_options(
    name: str, options: Iterable[str], kinds: set[str], table: dict[str, tuple[str, ...]] | None = None
) -> None:
    """Reject the ``options`` of the registered model ``name`` that only quantizer kinds it does not
    have read (``table``: kind -> its options; the registered kinds'), with a ValueError listing the valid keys."""
    table = table or {kind: entry.option_names for kind, entry in QUANTIZER_KINDS.items()}
    read = {key for kind in kinds for key in table.get(kind, ())}
    ignored = {key for keys in table.values() for key in keys} - read
    unread = sorted(set(options) & ignored)
    if unread:
        owners = sorted({kind for kind, keys in table.items() for key in unread if key in keys})
        valid = sorted(set(_entry(name).valid_keys) - ignored)
        raise ValueError(
            f"option(s) {unread} are {'/'.join(owners)} quantizer options, and model {name!r} has "
            f"{'/'.join(sorted(kinds))} quantizers only; valid keys: {valid}"
        )


def _layer(kind: str, quantizer: str, downsample: int | None = None) -> LayerConfig:
    """A registry layer: VQ layers start from k-means (``LayerConfig``'s default), SQ layers with ``SQ_START``."""
    return LayerConfig(kind=kind, quantizer=quantizer, downsample=downsample, options=SQ_START if quantizer == "sq" else None)


def _pyramid(name, quantizer, in_channels, size, downsamples, depth, overrides,
             max_rate_weight: float = 1.0, codebook_lr_scale: float = 1.0,
             sq_options: dict[str, Any] | None = None) -> ModelConfig:
    """Injected layers at ``downsamples``, each followed by ``depth − 1`` residual layers; then size
    defaults, model-level overrides, and layer options set on every layer whose quantizer kind reads
    them (an option no layer reads raises a ValueError). A stochastic model without a ``rate_weight``
    override gets min(``max_rate_weight``, ``balanced_rate_weight``); its ``train_defaults`` the
    ``codebook_lr_scale``; its SQ layers the entry's ``sq_options`` unless an override sets them."""
    if quantizer == "sq" and sq_options:
        overrides = {**sq_options, **overrides}
    if depth < 1:
        raise ValueError(f"depth (layers per resolution) must be ≥ 1, got {depth}")
    if not downsamples:  # two levels: (2f, f) when the size allows, else (f, f/2)
        fine = default_factor(size)
        fits = size[0] % (2 * fine) == 0 and size[1] % (2 * fine) == 0
        downsamples = (2 * fine, fine) if fits else (fine, fine // 2)
    layers = []
    for factor in downsamples:
        layers += [_layer("injected", quantizer, factor)] + [_layer("residual", quantizer) for _ in range(depth - 1)]
    model_options = {key: value for key, value in overrides.items() if key in MODEL_KEYS}
    layer_options = {key: value for key, value in overrides.items() if key not in MODEL_KEYS}
    config = ModelConfig(name=name, in_channels=in_channels, image_size=size,
                         **{"hidden": default_hidden(size), "layers": layers, **model_options})
    check_quantizer_options(name, layer_options, {layer.quantizer for layer in config.layers})
    layer_fields = {key: value for key, value in layer_options.items() if key in LAYER_KEYS}
    config.layers = [replace(layer, **layer_fields).with_options(layer_options) for layer in config.layers]
    if config.stochastic and "rate_weight" not in overrides:
        config.rate_weight = min(max_rate_weight, balanced_rate_weight(config))
    if "train_defaults" not in overrides:
        config.train_defaults = train_defaults(config.stochastic, codebook_lr_scale if config.stochastic else 1.0)
    return config


# ----------------------------------------------------------------------------- entries


def _pair(vq_name: str, sq_name: str, what: str, entry: Callable[[str, str], Callable]) -> None:
    """Register the VQ/SQ pair (in that order): ``entry(name, quantizer)`` is the builder."""
    for name, quantizer in ((vq_name, "vq"), (sq_name, "sq")):
        build = entry(name, quantizer)
        build.__doc__ = f"{name}: {what}, {quantizer.upper()} layers."
        register_model(name)(build)


def _single_entry(name: str, quantizer: str) -> Callable:
    def build(in_channels: int, image_size: tuple[int, int], *, downsample: int | None = None, **overrides):
        config = _pyramid(name, quantizer, in_channels, image_size, [downsample or default_factor(image_size)], 1,
                          overrides, codebook_lr_scale=SQ_CODEBOOK_LR_SCALE,
                          sq_options={"affine_codebook": SQ_AFFINE_CODEBOOK})
        # the public SQ-VAE CIFAR-10 network is what the defaults of ModelConfig, LayerConfig and SQOptions describe
        is_reference = replace(config, name="custom", rate_weight=1.0, train_defaults={}, reference="") == ModelConfig()
        if quantizer == "sq" and "reference" not in overrides and is_reference:
            config.reference = SQVAE_REFERENCE
        return config

    return build


def _levels_entry(name: str, quantizer: str) -> Callable:
    def build(in_channels: int, image_size: tuple[int, int], *, downsamples: Sequence[int] | None = None, **overrides):
        return _pyramid(name, quantizer, in_channels, image_size, downsamples, 1, overrides,
                        max_rate_weight=SQ_LEVELS_MAX_RATE_WEIGHT, codebook_lr_scale=SQ_CODEBOOK_LR_SCALE,
                        sq_options={"affine_codebook": SQ_AFFINE_CODEBOOK})

    return build


def _stack_entry(name: str, quantizer: str) -> Callable:
    def build(in_channels: int, image_size: tuple[int, int], *, downsample: int | None = None, depth: int = 4, **overrides):
        factor = downsample or default_factor(image_size)
        return _pyramid(name, quantizer, in_channels, image_size, [factor], depth, overrides,
                        sq_options={"variance_bound_ratio": RSQ_VARIANCE_BOUND_RATIO})

    return build


_pair("vqvae", "sqvae", "VQ-VAE / SQ-VAE, one layer at ÷downsample", _single_entry)
_pair("vqvae2", "sqvae2", "VQ-VAE-2 / SQ-VAE-2, injected layers at downsamples (coarse to fine; 2 or 3 levels)", _levels_entry)
_pair("rqvae", "rsqvae", "RQ-VAE / RSQ-VAE, depth residual layers at one resolution", _stack_entry)


@register_model("hqvae")
def hqvae(
    in_channels: int,
    image_size: tuple[int, int],
    *,
    downsamples: Sequence[int] | None = None,
    depth: int = 2,
    quantizer: str = "sq",
    **overrides,
) -> ModelConfig:
    """HQ-VAE: injected layers at ``downsamples``, each followed by ``depth − 1`` residual layers."""
    return _pyramid("hqvae", quantizer, in_channels, image_size, downsamples, depth, overrides)


# ----------------------------------------------------------------------------- PQ-VAE
# ``pqvae`` and its "global residual VQ" control ``global_rvq`` accept every ``PQConfig`` field except
# name / in_channels / image_size as an override (``hqvae.create_model("pqvae", 1, 28, depth=8, groups=2,
# lambda_h=0.5)``), except the options only the other quantizer kind reads (``config.PQ_QUANTIZER_OPTIONS``:
# ``beta`` on SQ steps, ``logit_scale``, ``gamma``, ``entropy_sign`` on VQ steps). Hidden width and
# downsampling follow the size defaults above, so that PQ-VAE and RSQ-VAE share the backbone at a given size.
#
#     pqvae       SQ steps, factorised cosine codes (d_c = 16, κ₀ = 10), L = 16, G = 1, K = 256,
#                 c = 16, λ_h = 0.05, γ = 1, λ_pre = 1, entropy sign "pq", SSE reconstruction
#     global_rvq  the same network with VQ steps (straight-through, commitment 0.25), no entropy
#                 terms (λ_h = 0) and no prefix loss (λ_pre = 0)

PQ_KEYS = tuple(f.name for f in fields(PQConfig) if f.name not in ("name", "in_channels", "image_size"))


def _pq_entry(name: str, base: dict[str, Any], doc: str) -> None:
    """Register the PQ-VAE entry ``name``: size defaults, then ``base``, then the user's overrides (an
    option only the other quantizer kind reads raises a ValueError)."""

    def build(in_channels: int, image_size: tuple[int, int], **overrides) -> PQConfig:
        defaults = {"hidden": default_hidden(image_size), "downsample": default_factor(image_size)}
        config = PQConfig(name=name, in_channels=in_channels, image_size=image_size,
                          **{**defaults, **base, **overrides})
        check_quantizer_options(name, overrides, {config.quantizer}, PQ_QUANTIZER_OPTIONS)
        if "train_defaults" not in overrides:
            config.train_defaults = train_defaults(config.stochastic)
        return config

    build.__doc__ = doc
    register_model(name, PQVAE, PQ_KEYS)(build)


_pq_entry("pqvae", {}, "PQ-VAE (SPEC §4): L stochastic residual steps on the global latent vector.")
_pq_entry("global_rvq", {"quantizer": "vq", "lambda_h": 0.0, "lambda_prefix": 0.0},
          "Global residual VQ: PQ-VAE's network with VQ steps, no entropy terms and no prefix loss.")
