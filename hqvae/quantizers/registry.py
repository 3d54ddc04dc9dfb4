"""The quantizer kinds a layer can name (``LayerConfig.quantizer``): kind -> :class:`QuantizerKind`
(its builder, the layer options it reads, whether it is stochastic).

A new kind is one file with a ``Quantizer`` subclass and one :func:`register_quantizer` call; the
models build every layer through :func:`build_quantizer`. Built in: "vq" (``VectorQuantizer``
with the baselines' heuristics: EMA codebook, commitment β, k-means start) and "sq"
(``StochasticQuantizer`` of Gaussian type I).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .base import Quantizer
from .sq import StochasticQuantizer
from .vq import VectorQuantizer


@dataclass(frozen=True)
class QuantizerKind:
    """build(layer) -> a ``Quantizer`` over ``layer.dim`` channels with ``layer.codebook_size`` codes;
    options: the LayerConfig fields it reads besides codebook_size, dim and shared_codebook (a model
    override of one of them goes to the layers whose kind reads it); stochastic: its layers make a
    model stochastic (ARELBO loss, unscaled latent terms, a Gumbel temperature in training)."""

    build: Callable[[Any], Quantizer]
    options: tuple[str, ...] = ()
    stochastic: bool = False


KINDS: dict[str, QuantizerKind] = {}


def register_quantizer(kind: str, builder: Callable[[Any], Quantizer], options: Sequence[str] = (),
                       stochastic: bool = False) -> None:
    """Let layers say ``LayerConfig(quantizer=kind)``: their quantizer is ``builder(layer)`` (see
    :class:`QuantizerKind`)."""
    if kind in KINDS:
        raise ValueError(f"a quantizer kind {kind!r} is already registered ({', '.join(KINDS)})")
    KINDS[kind] = QuantizerKind(builder, tuple(options), stochastic)


def quantizer_options() -> dict[str, tuple[str, ...]]:
    """kind -> the layer options it reads."""
    return {kind: entry.options for kind, entry in KINDS.items()}


def options_of(layer) -> dict[str, Any]:
    """The options of ``layer`` that its kind reads, as the quantizer's keyword arguments
    (``vq_init`` / ``sq_init`` are its ``init``)."""
    return {key.removeprefix(f"{layer.quantizer}_"): getattr(layer, key) for key in KINDS[layer.quantizer].options}


def build_quantizer(layer) -> Quantizer:
    """The quantizer of a ``LayerConfig``."""
    return KINDS[layer.quantizer].build(layer)


register_quantizer("vq", lambda layer: VectorQuantizer(layer.dim, layer.codebook_size, **options_of(layer)),
                   ("beta", "ema", "decay", "vq_init", "dead_code_threshold"))
register_quantizer("sq", lambda layer: StochasticQuantizer(layer.dim, layer.codebook_size, **options_of(layer)),
                   ("init_variance", "var_floor", "bounded_variance", "sq_init", "init_noise", "init_variance_ratio"),
                   stochastic=True)
