"""The configuration of ``hqvae prior train``: typed sections (data, model, optim, train: each a dataclass
below, whose docstring says what its keys mean; logging: ``hqvae.train.config.LoggingConfig``) with dotted
``key=value`` overrides.

Values come from the dataclass defaults, then the overrides (each value read as a YAML scalar,
e.g. ``train.steps=3000 model.d_model=192 data.limit=null``). Unknown keys and values of the
wrong type are rejected with the valid keys of the section, as in ``hqvae.train.config``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from hqvae.priors.base import TransformerConfig
from hqvae.train.config import (AT_LEAST_ONE, NON_NEGATIVE, LoggingConfig, LoopConfig, OptimConfig,
                                SectionedConfig, apply_overrides)


@dataclass
class PriorDataConfig:
    """``data``: the codes to train on.

    checkpoint: the tokenizer checkpoint whose codes are modelled (best | last).
    limit: train on this many evenly spaced items of the run's train split; null: all.
    val_items: validate on this many evenly spaced items of the val split; null: all; 0: never.
    encode_batch_size: batch size of the one-off encoding of the splits (cached in the folder).
    root: where the run's data set is now, if not at the root recorded in its run.json.
    """

    checkpoint: Literal["best", "last"] = "best"
    limit: int | None = None
    val_items: int | None = 2000
    encode_batch_size: int = 256
    root: str | None = None

    ranges = {"limit": AT_LEAST_ONE, "val_items": NON_NEGATIVE, "encode_batch_size": AT_LEAST_ONE}


@dataclass
class PriorModelConfig(TransformerConfig):
    """``model``: the transformer (``hqvae.priors.base.TransformerConfig`` says what its keys mean), and

    kind: also auto (the default): depth for an HQ-VAE whose layers all share one grid, a residual
        stack such as rqvae / rsqvae, where it reached a much lower test NLL in less training time
        (benchmarks/results/prior-kinds-fashion_mnist.json); flat otherwise, and for PQ-VAE tokens,
        which keep their own order.
    class_conditional: condition on the data set's class labels (the start token is the class);
        the prior also learns the unconditional distribution (the label is dropped with
        probability class_dropout), which compression uses.
    """

    kind: str = "auto"
    class_conditional: bool = False
    class_dropout: float = 0.1

    extra_kinds = ("auto",)
    ranges = {"class_dropout": (lambda v: 0 <= v <= 1, "in [0, 1]")}


@dataclass
class PriorOptimConfig:
    """``optim``: AdamW; the keys and their ranges those of ``hqvae.train.config.OptimConfig`` (no name)."""

    lr: float = 1e-3
    schedule: Literal["constant", "cosine"] = "cosine"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    warmup_steps: int = 100
    min_lr: float = 1e-4

    ranges = OptimConfig.ranges


@dataclass
class PriorLoopConfig:
    """``train``: the keys and their ranges those of ``hqvae.train.config.LoopConfig`` (batch_size in
    sequences; no epochs, channels_last or val_batches)."""

    steps: int = 2000
    batch_size: int = 32
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["fp32", "bf16"] = "fp32"
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: int = 500

    ranges = LoopConfig.ranges


@dataclass
class PriorTrainConfig(SectionedConfig):
    """Everything ``hqvae prior train`` needs besides the run and the output folder."""

    what = "prior config"

    data: PriorDataConfig = field(default_factory=PriorDataConfig)
    model: PriorModelConfig = field(default_factory=PriorModelConfig)
    optim: PriorOptimConfig = field(default_factory=PriorOptimConfig)
    train: PriorLoopConfig = field(default_factory=PriorLoopConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def load_prior_config(overrides: Sequence[str] = (), base: dict[str, Any] | None = None) -> PriorTrainConfig:
    """The defaults (or ``base``, a stored config) with ``overrides`` applied."""
    return PriorTrainConfig.from_dict(apply_overrides(base or {}, overrides, PriorTrainConfig, "train.steps=3000"))
