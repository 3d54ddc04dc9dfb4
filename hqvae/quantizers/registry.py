"""The quantizer kinds a layer can name (``LayerConfig.quantizer``): kind -> :class:`QuantizerKind`
(its builder, its options dataclass, whether it is stochastic).

A new kind is one file with a ``Quantizer`` subclass, its options dataclass and one
:func:`register_quantizer` call; its layers hold an instance as ``layer.options``, and the models build
every layer through :func:`build_quantizer`. Option names are unique across the built-in kinds, so a
model override (``beta=0.5``) names one; ``vq_init`` / ``sq_init`` reach their quantizer as ``init``.
Built in: "vq" (``VectorQuantizer`` with the baselines' heuristics: EMA codebook, commitment β,
k-means start) and "sq" (``StochasticQuantizer`` of Gaussian type I).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, Callable

from .base import Quantizer
from .sq import StochasticQuantizer
from .vq import VectorQuantizer


@dataclass
class VQOptions:
    """``VectorQuantizer`` options (SPEC §1.1): commitment weight ``beta``; an EMA codebook (``ema``,
    ``decay``) or a gradient-trained one; its start ``vq_init`` ("kmeans" | "data" | "normal");
    codes used less than ``dead_code_threshold`` (EMA count) restart from batch vectors."""

    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    vq_init: str = "kmeans"
    dead_code_threshold: float = 0.0


@dataclass
class SQOptions:
    """``StochasticQuantizer`` options (SPEC §1.2): s² = [1 +] exp(log_s2) (``var_floor``) from
    ``init_variance``, or c·s²₀·sigmoid(θ) (``bounded_variance``, c = ``variance_bound_ratio``);
    ``sq_init="normal"`` starts from an N(0, 1) codebook, ``"data"`` from the layer's inputs on the
    first training batch (codebook = rows + ``init_noise``·σ noise, s² = ``init_variance_ratio`` ×
    their variance), ``"kmeans"`` the same with k-means centroids of those rows in place of the rows;
    ``affine_codebook``: codes a ⊙ w_k + b with a scale and shift shared by all codes."""

    init_variance: float = 20.0
    var_floor: bool = True
    bounded_variance: bool = False
    sq_init: str = "normal"
    init_noise: float = 0.2
    init_variance_ratio: float = 1.0
    affine_codebook: bool = False
    variance_bound_ratio: float = 2.0


@dataclass(frozen=True)
class QuantizerKind:
    """build(layer) -> a ``Quantizer`` over ``layer.dim`` channels with ``layer.codebook_size`` codes
    and ``layer.options``; options: the dataclass of its options; stochastic: its layers make a model
    stochastic (ARELBO loss, unscaled latent terms, a Gumbel temperature in training)."""

    build: Callable[[Any], Quantizer]
    options: type
    stochastic: bool = False

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.options))


KINDS: dict[str, QuantizerKind] = {}


def register_quantizer(kind: str, builder: Callable[[Any], Quantizer], options: type, stochastic: bool = False) -> None:
    """Let layers say ``LayerConfig(quantizer=kind, options=...)``: their quantizer is
    ``builder(layer)`` (see :class:`QuantizerKind`)."""
    if kind in KINDS:
        raise ValueError(f"a quantizer kind {kind!r} is already registered ({', '.join(KINDS)})")
    if not (isinstance(options, type) and is_dataclass(options)):
        raise TypeError(f"the options of quantizer kind {kind!r} must be a dataclass, got {options!r}")
    KINDS[kind] = QuantizerKind(builder, options, stochastic)


def make_options(kind: str, options: Any = None) -> Any:
    """``options`` (None: the defaults; a dict; an options dataclass) as the options dataclass of
    ``kind``; an unknown name raises a ValueError listing the valid ones."""
    entry = KINDS[kind]
    if isinstance(options, entry.options):
        return options
    options = asdict(options) if is_dataclass(options) else dict(options or {})  # another kind's: its names
    unknown = sorted(set(options) - set(entry.option_names))
    if unknown:
        raise ValueError(f"unknown {kind} quantizer option(s) {unknown}; valid: {list(entry.option_names)}")
    return entry.options(**options)


def options_of(layer) -> dict[str, Any]:
    """``layer.options`` as the quantizer's keyword arguments (``vq_init`` / ``sq_init`` are its ``init``)."""
    return {f.name.removeprefix(f"{layer.quantizer}_"): getattr(layer.options, f.name) for f in fields(layer.options)}


def build_quantizer(layer) -> Quantizer:
    """The quantizer of a ``LayerConfig``."""
    return KINDS[layer.quantizer].build(layer)


register_quantizer("vq", lambda layer: VectorQuantizer(layer.dim, layer.codebook_size, **options_of(layer)), VQOptions)
register_quantizer("sq", lambda layer: StochasticQuantizer(layer.dim, layer.codebook_size, **options_of(layer)),
                   SQOptions, stochastic=True)
