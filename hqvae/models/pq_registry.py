"""Named PQ-VAE configurations: ``pqvae`` and its "global residual VQ" control ``global_rvq``.

Both accept every ``PQConfig`` field except name / in_channels / image_size as an override
(``hqvae.create_model("pqvae", 1, 28, depth=8, groups=2, lambda_h=0.5)``), except the options
only the other quantizer kind reads (``pq_config.QUANTIZER_OPTIONS``: ``beta`` on SQ steps,
``logit_scale``, ``gamma``, ``entropy_sign`` on VQ steps). Size defaults follow
the HQ-VAE registry so that PQ-VAE and RSQ-VAE share the backbone at a given input size:
hidden 64 if min(H, W) ≤ 32 else 128, downsample 4 if ≤ 128, 8 if ≤ 256, else 16.

    pqvae       SQ steps, factorised cosine codes (d_c = 16, κ₀ = 10), L = 16, G = 1, K = 256,
                c = 16, λ_h = 0.05, γ = 1, λ_pre = 1, entropy sign "pq", SSE reconstruction
    global_rvq  the same network with VQ steps (straight-through, commitment 0.25), no entropy
                terms (λ_h = 0) and no prefix loss (λ_pre = 0)
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from .pq_config import QUANTIZER_OPTIONS, PQConfig
from .pqvae import PQVAE
from .registry import check_quantizer_options, default_factor, default_hidden, register_model, train_defaults

OPTION_KEYS = tuple(f.name for f in fields(PQConfig) if f.name not in ("name", "in_channels", "image_size"))


def _configure(name: str, in_channels: int, size: tuple[int, int], base: dict[str, Any],
               overrides: dict[str, Any]) -> PQConfig:
    """Size defaults, then the entry's settings, then the user's overrides (an option only the other
    quantizer kind reads raises a ValueError)."""
    config = PQConfig(name=name, in_channels=in_channels, image_size=size, hidden=default_hidden(size),
                      downsample=default_factor(size))
    config = replace(config, **{**base, **overrides})
    check_quantizer_options(name, overrides, {config.quantizer}, QUANTIZER_OPTIONS)
    if "train_defaults" not in overrides:
        config.train_defaults = train_defaults(config.stochastic)
    return config


@register_model("pqvae", model_class=PQVAE, option_keys=OPTION_KEYS)
def pqvae(in_channels: int, image_size: tuple[int, int], **overrides) -> PQConfig:
    """PQ-VAE (SPEC §4): L stochastic residual steps on the global latent vector."""
    return _configure("pqvae", in_channels, image_size, {}, overrides)


@register_model("global_rvq", model_class=PQVAE, option_keys=OPTION_KEYS)
def global_rvq(in_channels: int, image_size: tuple[int, int], **overrides) -> PQConfig:
    """Global residual VQ: PQ-VAE's network with VQ steps, no entropy terms and no prefix loss."""
    base = {"quantizer": "vq", "lambda_h": 0.0, "lambda_prefix": 0.0}
    return _configure("global_rvq", in_channels, image_size, base, overrides)
